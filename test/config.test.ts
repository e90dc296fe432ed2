import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { ConfigError, parseConfig } from '../src/config.ts'
import { runCli, writeConfig } from './gateway-process.ts'

const valid = `
api_key: gw-key-123456
providers:
  - name: groq
    api_key: gsk-abcdef
    base_url: https://api.groq.com/openai/v1
routes:
  - name: fast
    steps:
      - provider: groq
        model: llama
`

function problemsOf(text: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(text, env)
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return [...err.problems]
  }
  assert.fail('expected the config to be rejected')
}

describe('parseConfig', () => {
  test('defaults', () => {
    const config = parseConfig(valid, {})
    assert.equal(config.port, 8080)
    assert.equal(config.host, undefined)
    assert.equal(config.default_timeout, 60_000)
    assert.equal(config.max_body_size, 32 * 1024 * 1024)
    assert.equal(config.max_answer_size, 32 * 1024 * 1024, 'held about four times over: fits 256 MiB')
    assert.equal(config.shutdown_timeout, 30_000)
    assert.equal(config.log_level, 'info')
    assert.deepEqual([...config.secrets].sort(), ['gsk-abcdef', 'gw-key-123456'])
  })

  test('port from the file, else PORT, else 8080; `${PORT}` text works', () => {
    assert.equal(parseConfig(`${valid}\nport: 9000\n`, { PORT: '7000' }).port, 9000)
    assert.equal(parseConfig(valid, { PORT: '7000' }).port, 7000)
    assert.equal(parseConfig(`${valid}\nport: \${PORT}\n`, { PORT: '7001' }).port, 7001)
    assert.deepEqual(problemsOf(valid, { PORT: 'eighty' }), [
      'port: environment variable PORT="eighty" is not a port number',
    ])
    // Digits only, as `port: ${PORT}` takes them: a blank would be port 0 (any free port), 0x1f90 8080.
    for (const text of [' ', '0x1f90', '8e3', '80.0', '+80']) {
      assert.equal(problemsOf(valid, { PORT: text }).length, 1, JSON.stringify(text))
    }
  })

  test('the result is deeply frozen', () => {
    const config = parseConfig(valid, {})
    assert.ok(Object.isFrozen(config))
    assert.ok(Object.isFrozen(config.routes[0]?.steps[0]))
    assert.throws(() => {
      ;(config.providers as unknown as object[]).push({})
    })
  })

  test('durations: ms, s, m, h, combined, fractional, bare seconds', () => {
    const at = (value: string) => parseConfig(`${valid}\ndefault_timeout: ${value}\n`, {}).default_timeout
    assert.equal(at('500ms'), 500)
    assert.equal(at('30s'), 30_000)
    assert.equal(at('5m'), 300_000)
    assert.equal(at('1h30m'), 5_400_000)
    assert.equal(at('1.5s'), 1_500)
    assert.equal(at('45'), 45_000)
  })

  test('${VAR} resolution: values, defaults, escapes, plain dollars', () => {
    const text = `
api_key: \${GW_KEY}
providers:
  - name: p
    api_key: "pa$$word-\${SUFFIX:-dflt}"
    base_url: \${BASE:-http://localhost:1234/v1}
    headers:
      X-Literal: "$\${NOT_A_REF}"
      X-Title: "a: b # not a comment"
routes:
  - name: r
    steps: [{ provider: p, model: m }]
`
    const config = parseConfig(text, { GW_KEY: 'from-env-key' })
    assert.equal(config.api_key, 'from-env-key')
    assert.equal(config.providers[0]?.api_key, 'pa$$word-dflt')
    assert.equal(config.providers[0]?.base_url, 'http://localhost:1234/v1')
    assert.equal(config.providers[0]?.headers?.['X-Literal'], '${NOT_A_REF}')
    assert.equal(config.providers[0]?.headers?.['X-Title'], 'a: b # not a comment')
  })

  test('a default holding another reference is refused, not cut at its first brace', () => {
    const text = valid.replace('api_key: gsk-abcdef', 'api_key: ${KEY:-${OTHER}}')
    assert.deepEqual(problemsOf(text, { KEY: 'sk-live-123' }), [
      'a default cannot hold another ${…} reference: ${KEY:-…}',
    ])
  })

  test('a ${…} in a shell form the gateway does not resolve is refused, each listed; $${ keeps it as text', () => {
    const text = valid
      .replace('api_key: gw-key-123456', 'api_key: "${GATEWAY_API_KEY:?set it}"')
      .replace('api_key: gsk-abcdef', 'api_key: "${PK-}${X:=y}${X:+y}${X?}"')
      .replace('model: llama', 'model: ${MODEL}')
    assert.deepEqual(problemsOf(text, { GATEWAY_API_KEY: 'gw-key-123456', PK: 'gsk-abcdef', X: 'x' }), [
      'unsupported references (only ${VAR} and ${VAR:-default} work; write $${ for a literal ${): ${GATEWAY_API_KEY:?…}, ${PK-}, ${X:=…}, ${X:+…}, ${X?}',
      'missing environment variables: MODEL',
    ])
    const literal = valid.replace('api_key: gsk-abcdef', () => 'api_key: "$${X:?y}-$${PK}"')
    assert.equal(parseConfig(literal, {}).providers[0]?.api_key, '${X:?y}-${PK}')
  })

  // The text after a shell operator is a default or a message, and may be the key itself; a ${…} holding
  // no variable name is most likely part of a key: neither is quoted.
  test('a refused ${…} is told by its name and operator, or by where it is, never by its text', () => {
    const text = valid
      .replace('api_key: gw-key-123456', 'api_key: ${GATEWAY_API_KEY-gw-SECRET-default}')
      .replace('api_key: gsk-abcdef', 'api_key: "${OPENAI_KEY:=sk-SECRET-literal}${X##*SECRET}"')
      .replace('model: llama', 'model: "Q7v${pX9!SECRET}2mZr${ SECRET }"')
    assert.deepEqual(problemsOf(text), [
      'unsupported references (only ${VAR} and ${VAR:-default} work; write $${ for a literal ${): ${GATEWAY_API_KEY-…}, ${OPENAI_KEY:=…}, ${X#…}',
      'routes[0].steps[0].model: a ${…} that is not a variable name (write $${ for a literal ${)',
    ])
    const top = problemsOf('"${SECRET key}"')
    assert.equal(top[0], '(top level): a ${…} that is not a variable name (write $${ for a literal ${)')
    // A valid name is listed in full, as every missing variable is: it cannot be told from a real one.
    assert.deepEqual(problemsOf(valid.replace('gsk-abcdef', '"sk-a8${HJk2}-zz9"')), [
      'missing environment variables: HJk2',
    ])
  })

  test('a value cannot change the document structure', () => {
    const text = valid.replace('model: llama', 'model: ${MODEL}')
    const config = parseConfig(text, { MODEL: 'abc\nport: 1\nroutes: []' })
    assert.equal(config.routes[0]?.steps[0]?.model, 'abc\nport: 1\nroutes: []')
    assert.equal(config.port, 8080)
    assert.equal(config.routes.length, 1)
  })

  test('missing variables are listed together, in one problem', () => {
    const text = `
api_key: \${GW_KEY}
providers:
  - name: p
    api_key: \${P_KEY}
    base_url: \${P_URL}
routes:
  - name: r
    steps:
      - provider: p
        model: \${GW_KEY}
`
    assert.deepEqual(problemsOf(text), ['missing environment variables: GW_KEY, P_KEY, P_URL'])
  })

  test('timeouts, failover and limits: defaults and validation', () => {
    const config = parseConfig(
      `${valid}\ntimeouts: { total: 2m, idle: 5s }\nfailover: { circuit_failures: 5, max_wait: 1s }\n`,
      {},
    )
    assert.equal(config.timeouts.total, 120_000)
    assert.equal(config.timeouts.idle, 5_000)
    assert.equal(config.failover.circuit_failures, 5)
    assert.equal(config.failover.max_wait, 1_000)
    assert.equal(config.failover.rate_limit_cooldown, 10_000)
    const problems = problemsOf(
      `${valid.replace('model: llama', 'model: llama\n        limits: { rpm: -1, rph: 3 }')}\nfailover: { circuit_failures: 0, bogus: 1 }\n`,
    )
    assert.ok(
      problems.some((p) => p.startsWith('routes[0].steps[0].limits.rpm: ')),
      problems.join('\n'),
    )
    assert.ok(problems.includes('routes[0].steps[0].limits: unknown key "rph"'), problems.join('\n'))
    assert.ok(
      problems.some((p) => p.startsWith('failover.circuit_failures: ')),
      problems.join('\n'),
    )
    assert.ok(problems.includes('failover: unknown key "bogus"'), problems.join('\n'))
  })

  test('every problem is reported with its key path', () => {
    const text = `
api_key: ""
port: 70000
default_timeout: soon
colour: blue
providers:
  - name: a
    base_url: ftp://example.com
    extra: 1
  - name: a
    base_url: not a url
routes:
  - name: r
    steps:
      - provider: a
        model: m
      - provider: x
        model: m
        timeout: 5 apples
        conflict_resolution: both
  - name: r
    steps: []
`
    const problems = problemsOf(text)
    const expected = [
      /^api_key: must not be empty$/,
      /^port: /,
      /^default_timeout: invalid duration "soon"/,
      /^\(top level\): unknown key "colour"$/,
      /^providers\[0\]\.base_url: invalid URL "ftp:\/\/example.com"/,
      /^providers\[0\]: unknown key "extra"$/,
      /^providers\[1\]\.base_url: invalid URL "not a url"/,
      /^providers\[1\]\.name: duplicate provider "a"$/,
      /^routes\[0\]\.steps\[1\]\.provider: unknown provider "x"$/,
      /^routes\[0\]\.steps\[1\]\.timeout: invalid duration "5 apples"/,
      /^routes\[0\]\.steps\[1\]\.conflict_resolution: /,
      /^routes\[1\]\.name: duplicate route "r"$/,
      /^routes\[1\]\.steps: a route needs at least one step$/,
    ]
    for (const pattern of expected) {
      assert.ok(
        problems.some((p) => pattern.test(p)),
        `${pattern} not found in:\n${problems.join('\n')}`,
      )
    }
    assert.equal(problems.length, expected.length, problems.join('\n'))
  })

  test('missing sections and YAML syntax errors', () => {
    assert.deepEqual(problemsOf('api_key: k\n').sort(), [
      'providers: Invalid input: expected array, received undefined',
      'routes: Invalid input: expected array, received undefined',
    ])
    assert.match(problemsOf('api_key: [unclosed\n')[0] ?? '', /^YAML line \d+/)
    assert.match(problemsOf('api_key: a\napi_key: b\n')[0] ?? '', /^YAML .*unique/i)
    assert.match(problemsOf('')[0] ?? '', /^\(top level\): /)
  })

  // A key written unquoted is where YAML goes wrong (`*…` is an alias, `&…` an anchor, `!…` a tag), and
  // the library's messages quote the text they stumble on: problems give the position and kind only.
  test('a YAML problem names its line and column, never the text: a key starting with *, & or ! is no alias', () => {
    assert.deepEqual(problemsOf('api_key: *Xk9-SECRET-gwkey-77\n'), [
      'YAML line 1, column 10: a plain value cannot start with * (that makes it an alias): quote it',
    ])
    assert.deepEqual(problemsOf('api_key: &SECRET-gwkey-77\n'), [
      'YAML line 1: a plain value cannot start with & (that makes it an anchor): quote it',
    ])
    const broken = [
      'api_key: ok\nproviders:\n  - name: p\n    api_key: *sk-prov-SECRET-5678\n',
      'api_key: !SECRET-key\n',
      'api_key: !SECRET-key rest\n',
      'api_key: !<SECRET-key> x\n',
      'api_key: !!int SECRET-key\n',
      'api_key: "SECRET-key\\q"\n',
      'api_key: "SECRET\\uZZZZ"\n',
      'api_key: SECRET-key: x\n',
      "api_key: 'SECRET-key\n",
      'api_key: [SECRET-key\n',
      'api_key: "SECRET-key"x\n',
      'api_key: @SECRET-key\n',
      'api_key: >-x SECRET-key\n',
      '- SECRET-key\napi: x\n',
      'SECRET-key: a\nSECRET-key: b\n',
      '%FOO SECRET-key\n---\na: 1\n',
      'x: &a [*a]\n',
      'a: &a [1,2]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n',
    ]
    for (const text of broken) {
      const problems = problemsOf(text)
      assert.ok(problems.length > 0, text)
      for (const problem of problems) {
        assert.match(problem, /^YAML( line \d+(, column \d+)?)?: /, text)
        assert.ok(!problem.includes('SECRET'), `${JSON.stringify(text)}: ${problem}`)
      }
    }
    const anchored = valid
      .replace('name: groq', 'name: &groq groq')
      .replace('provider: groq', 'provider: *groq')
    assert.equal(parseConfig(anchored, {}).routes[0]?.steps[0]?.provider, 'groq', 'anchors still work')
    // An anchor on a mapping or a list that no alias uses (left from a removed alias) is harmless.
    const unused = valid
      .replace('  - name: groq', '  - &groq\n    name: groq')
      .replace('steps:', 'steps: &steps')
    assert.equal(parseConfig(unused, {}).providers[0]?.name, 'groq')
  })

  test('durations a timer cannot keep, and zero timeouts, are refused', () => {
    const problems = problemsOf(
      `${valid}\ndefault_timeout: 1000h\ntimeouts: { idle: 0s, total: 600h }\nfailover: { max_wait: 0s }\n`,
    )
    assert.deepEqual(problems, [
      'default_timeout: duration "1000h" is too long (at most 24 days)',
      'timeouts.idle: a timeout must be longer than 0',
      'timeouts.total: duration "600h" is too long (at most 24 days)',
    ])
    assert.equal(parseConfig(`${valid}\ntimeouts: { total: 24h }\n`, {}).timeouts.total, 86_400_000)
  })

  test('a value of the wrong kind says what is expected, never a bare "Invalid input"', () => {
    const table: [string, string][] = [
      ['port: "80x"', 'port: expected a port number 0–65535'],
      ['port: true', 'port: expected a port number 0–65535'],
      ['port: 80.5', 'port: expected a port number 0–65535'],
      ['port: 70000', 'port: expected a port number 0–65535'],
      ['port: -1', 'port: expected a port number 0–65535'],
      ['metrics: { port: "x" }', 'metrics.port: expected a port number 0–65535'],
      ['failover: { circuit_failures: "3x" }', 'failover.circuit_failures: expected a whole number'],
      ['failover: { circuit_failures: 0 }', 'failover.circuit_failures: must be at least 1'],
      ['failover: { max_attempts: true }', 'failover.max_attempts: expected a whole number'],
      ['failover: { max_retries: 1.5 }', 'failover.max_retries: expected a whole number'],
      ['failover: { max_retries: -1 }', 'failover.max_retries: expected a whole number'],
      ['default_timeout: 5x', 'default_timeout: invalid duration "5x" (use e.g. 500ms, 30s, 5m, 1h30m)'],
      ['default_timeout: true', 'default_timeout: invalid duration true (use e.g. 500ms, 30s, 5m, 1h30m)'],
      ['shutdown_timeout: [1]', 'shutdown_timeout: invalid duration [1] (use e.g. 500ms, 30s, 5m, 1h30m)'],
      ['timeouts: { idle: null }', 'timeouts.idle: invalid duration null (use e.g. 500ms, 30s, 5m, 1h30m)'],
      [
        'failover: { max_wait: { s: 1 } }',
        'failover.max_wait: invalid duration {"s":1} (use e.g. 500ms, 30s, 5m, 1h30m)',
      ],
      ['max_body_size: 12 parsecs', 'max_body_size: invalid size "12 parsecs" (use e.g. 512kb, 32mb)'],
      ['max_answer_size: true', 'max_answer_size: invalid size true (use e.g. 512kb, 32mb)'],
    ]
    for (const [line, problem] of table) assert.deepEqual(problemsOf(`${valid}\n${line}\n`), [problem], line)
    const limit = valid.replace('model: llama', 'model: llama\n        limits: { rpm: "10/min", tpd: 1.5 }')
    assert.deepEqual(problemsOf(limit), [
      'routes[0].steps[0].limits.rpm: expected a whole number',
      'routes[0].steps[0].limits.tpd: expected a whole number',
    ])
  })

  // The quota book treats a limit of 0 as none at all: refused, rather than silently unlimited.
  test('a limit of 0, on a step or a provider, is refused', () => {
    const onStep = valid.replace('model: llama', 'model: llama\n        limits: { rpm: 0, tpm: "0" }')
    assert.deepEqual(problemsOf(onStep), [
      'routes[0].steps[0].limits.rpm: a limit of 0 lets nothing through: remove the step, or the limit',
      'routes[0].steps[0].limits.tpm: a limit of 0 lets nothing through: remove the step, or the limit',
    ])
    const onProvider = valid.replace(
      'api_key: gsk-abcdef',
      'api_key: gsk-abcdef\n    limits: { rpd: "${RPD}" }',
    )
    assert.deepEqual(problemsOf(onProvider, { RPD: '0' }), [
      "providers[0].limits.rpd: a limit of 0 lets nothing through: remove the provider's steps, or the limit",
    ])
    assert.equal(parseConfig(onProvider, { RPD: '1' }).providers[0]?.limits?.rpd, 1)
  })

  test('a provider key is trimmed; a line break inside it, or credentials in base_url, are refused', () => {
    const config = parseConfig(valid.replace('api_key: gsk-abcdef', 'api_key: "gsk-abcdef\\r\\n"'), {})
    assert.equal(config.providers[0]?.api_key, 'gsk-abcdef')
    assert.deepEqual(problemsOf(valid.replace('api_key: gsk-abcdef', 'api_key: "gsk\\nabc"')), [
      'providers[0].api_key: contains a character HTTP headers cannot carry: U+000A at position 4',
    ])
    for (const credentials of ['user:pass@', ':pass@', 'user@']) {
      assert.deepEqual(problemsOf(valid.replace('https://', `https://${credentials}`)), [
        'providers[0].base_url: credentials in base_url are not sent; give the key as api_key, or in headers',
      ])
    }
  })

  // undici refuses such a value on every request, as a connection error that opens the circuit; and a
  // client's key arrives as UTF-8 bytes read as latin1, so a gateway key outside ASCII never matches.
  test('a key or header value HTTP cannot carry is refused, naming the character, never quoting the value', () => {
    const text = `
api_key: \${GW_KEY}
providers:
  - name: p
    api_key: \${P_KEY}
    base_url: https://x.test/v1
    headers: { X-Api-Token: "\${HEADER}", X-Title: "\${TITLE}" }
routes:
  - name: r
    steps: [{ provider: p, model: m }]
`
    const fine = { GW_KEY: 'gw key ~!', P_KEY: 'sk-abc', HEADER: 'tok\tén', TITLE: 'Café app' }
    assert.equal(
      parseConfig(text, fine).providers[0]?.headers?.['X-Api-Token'],
      'tok\tén',
      'latin1 and tabs pass',
    )
    const env = {
      GW_KEY: 'gw-kéy-1',
      P_KEY: 'sk-it’s-copied',
      HEADER: 'tok-\u0007-bell',
      TITLE: 'two\nlines 😀',
    }
    const problems = problemsOf(text, env)
    assert.deepEqual(problems, [
      'api_key: must be printable ASCII, or no client could present it: é (U+00E9) at position 5',
      'providers[0].api_key: contains a character HTTP headers cannot carry: ’ (U+2019) at position 6',
      'providers[0].headers.X-Api-Token: contains a character HTTP headers cannot carry: U+0007 at position 5',
      'providers[0].headers.X-Title: contains a character HTTP headers cannot carry: U+000A at position 4',
    ])
    assert.deepEqual(problemsOf(text, { ...fine, GW_KEY: 'tab\tkey' }), [
      'api_key: must be printable ASCII, or no client could present it: U+0009 at position 4',
    ])
    assert.deepEqual(problemsOf(text, { ...fine, TITLE: 'app 😀' }), [
      'providers[0].headers.X-Title: contains a character HTTP headers cannot carry: 😀 (U+1F600) at position 5',
    ])
  })

  test('metrics switches can come from ${VAR}: exactly "true" or "false"', () => {
    const text = `${valid}\nmetrics:\n  enabled: \${METRICS_ON:-true}\n  require_key: \${METRICS_KEY}\n`
    const on = parseConfig(text, { METRICS_KEY: 'false' }).metrics
    assert.equal(on.enabled, true)
    assert.equal(on.require_key, false)
    const off = parseConfig(text, { METRICS_ON: 'false', METRICS_KEY: 'true' }).metrics
    assert.equal(off.enabled, false)
    assert.equal(off.require_key, true)
    assert.deepEqual(problemsOf(text, { METRICS_ON: 'yes', METRICS_KEY: 'True' }), [
      'metrics.enabled: expected true or false',
      'metrics.require_key: expected true or false',
    ])
  })

  test('a metrics port that is the gateway port is refused', () => {
    assert.deepEqual(problemsOf(`${valid}\nport: 9100\nmetrics: { port: 9100 }\n`), [
      "metrics.port: 9100 is the gateway's own port (leave it out to serve /metrics there)",
    ])
    assert.deepEqual(problemsOf(`${valid}\nmetrics: { port: 9100 }\n`, { PORT: '9100' }).length, 1)
    const apart = `${valid}\nport: 9100\nhost: 127.0.0.1\nmetrics: { port: 9100, host: 127.0.0.2 }\n`
    assert.equal(parseConfig(apart, {}).metrics.port, 9100, 'the same port on another address is fine')
    // An address on every interface takes the port on each of them: no other address can have it.
    for (const [host, metricsHost] of [
      [undefined, '127.0.0.1'],
      ['0.0.0.0', '127.0.0.1'],
      ['"::"', '127.0.0.1'],
      ['"::"', '"::1"'],
      ['127.0.0.1', '0.0.0.0'],
      ['10.0.0.5', '"::"'],
    ]) {
      const text = `${valid}\nport: 9100\n${host === undefined ? '' : `host: ${host}\n`}metrics: { port: 9100, host: ${metricsHost} }\n`
      assert.equal(problemsOf(text).length, 1, `${host} and ${metricsHost}`)
    }
  })

  test('a listening address is an IP address or a host name, without a port, scheme or brackets', () => {
    for (const host of [
      '127.0.0.1',
      '0.0.0.0',
      '"::"',
      '"::1"',
      'localhost',
      'gw-1.internal',
      '"fe80::1%eth0"',
    ]) {
      assert.equal(
        parseConfig(`${valid}\nhost: ${host}\nmetrics: { port: 9100, host: ${host} }\n`, {}).port,
        8080,
      )
    }
    for (const host of ['"127.0.0.1:8080"', '"[::1]"', 'http://0.0.0.0', '"my host"', '"*"']) {
      assert.deepEqual(
        problemsOf(`${valid}\nhost: ${host}\nmetrics: { port: 9100, host: ${host} }\n`).map(
          (p) => p.split(':')[0],
        ),
        ['host', 'metrics.host'],
        host,
      )
    }
  })

  test('a token in a provider header is a secret with or without its scheme, whatever the scheme', () => {
    const text = valid.replace(
      'base_url: https://api.groq.com/openai/v1',
      'base_url: https://x.test\n    headers: { Authorization: "Token r8_secret1", X-Api-Key: plain-key-1, X-Title: app }',
    )
    const { secrets } = parseConfig(text, {})
    for (const secret of ['r8_secret1', 'Token r8_secret1', 'plain-key-1'])
      assert.ok(secrets.includes(secret), secret)
    assert.ok(!secrets.includes('app'), 'a header that does not look secret is not one')
  })

  test('cors origins are browser origins or *', () => {
    const config = parseConfig(
      `${valid}cors:\n  origins: ["https://chat.example", "http://localhost:3000", "tauri://localhost", "*"]\n`,
      {},
    )
    assert.deepEqual(config.cors?.origins, [
      'https://chat.example',
      'http://localhost:3000',
      'tauri://localhost',
      '*',
    ])
    assert.deepEqual(problemsOf(`${valid}cors:\n  origins: ["https://chat.example/app", "chat.example"]\n`), [
      'cors.origins[0]: an origin is scheme://host[:port] (no path), or *',
      'cors.origins[1]: an origin is scheme://host[:port] (no path), or *',
    ])
    assert.deepEqual(problemsOf(`${valid}cors:\n  origins: []\n`), [
      'cors.origins: list the origins allowed, or leave cors out',
    ])
  })

  test('header names and values are checked', () => {
    const bad = valid.replace(
      'base_url: https://api.groq.com/openai/v1',
      'base_url: https://x.test\n    headers: { "bad name": v }',
    )
    assert.match(problemsOf(bad)[0] ?? '', /^providers\[0\]\.headers\.bad name: invalid header name$/)
    const framing = valid.replace(
      'base_url: https://api.groq.com/openai/v1',
      'base_url: https://x.test\n    headers: { Transfer-Encoding: chunked, keep-alive: "5", Connection: close, Accept-Encoding: gzip }',
    )
    assert.deepEqual(problemsOf(framing), [
      'providers[0].headers.Transfer-Encoding: Transfer-Encoding is set by the gateway for each request, not by config',
      'providers[0].headers.keep-alive: keep-alive is set by the gateway for each request, not by config',
      'providers[0].headers.Accept-Encoding: Accept-Encoding is set by the gateway for each request, not by config',
    ])
  })
})

describe('ai-gateway validate', () => {
  test('a valid config exits 0', async () => {
    const { code, stdout } = await runCli(['validate', '--config', writeConfig(valid)])
    assert.equal(code, 0)
    assert.match(stdout, /OK \(1 providers, 1 routes\)/)
  })

  test('an invalid config exits 1 and prints every problem', async () => {
    const file = writeConfig(
      valid
        .replace('provider: groq', 'provider: nope')
        .replace('api_key: gw-key-123456', 'api_key: k\nbogus: 1'),
    )
    const { code, stderr } = await runCli(['validate', '--config', file])
    assert.equal(code, 1)
    assert.match(stderr, /routes\[0\]\.steps\[0\]\.provider: unknown provider "nope"/)
    assert.match(stderr, /unknown key "bogus"/)
  })

  test('missing variables stop startup with the full list', async () => {
    const file = writeConfig(valid.replace('gw-key-123456', '${GW_KEY}').replace('gsk-abcdef', '${GROQ_KEY}'))
    const { code, stderr, stdout } = await runCli(['--config', file])
    assert.equal(code, 1)
    assert.match(stderr, /missing environment variables: GW_KEY, GROQ_KEY/)
    assert.equal(stdout, '', 'nothing half-starts')
  })

  test('a key written as a YAML alias is a config error, not a crash that quotes it', async () => {
    const file = writeConfig(valid.replace('gw-key-123456', '*Xk9-SECRET-gwkey-77'))
    for (const args of [
      ['validate', '--config', file],
      ['--config', file],
    ]) {
      const { code, stdout, stderr } = await runCli(args)
      assert.equal(code, 1, args.join(' '))
      assert.equal(stdout, '')
      assert.match(
        stderr,
        /^ai-gateway: invalid config .*\n {2}YAML line 2, column 10: .* cannot start with \*/,
      )
      assert.ok(!stderr.includes('Xk9'), stderr)
      assert.ok(!stderr.includes('    at '), 'no stack trace')
    }
  })

  // A config problem is printed (into the journal, under systemd) before the secrets are known, so
  // nothing could redact a key quoted there: a URL is quoted with its user info and query masked.
  test('a bad URL holding a key is quoted masked, by validate and by a failed start', async () => {
    const geminiKey = 'AIzaSy-never-printed-0123456789'
    const otlpToken = 'glc_never-printed-token'
    const file = writeConfig(
      valid.replace(
        'https://api.groq.com/openai/v1',
        'htps://generativelanguage.googleapis.com/v1beta/openai?key=${GEMINI_API_KEY}',
      ),
    )
    const env = { GEMINI_API_KEY: geminiKey, OTLP_ENDPOINT: `https://12345:${otlpToken}@host:99999/otlp` }
    for (const args of [
      ['validate', '--config', file],
      ['--config', file],
    ]) {
      const { code, stdout, stderr } = await runCli(args, { env })
      assert.equal(code, 1, args.join(' '))
      for (const secret of [geminiKey, otlpToken]) assert.ok(!(stdout + stderr).includes(secret), stderr)
      assert.ok(
        stderr.includes(
          'providers[0].base_url: invalid URL "htps://generativelanguage.googleapis.com/v1beta/openai?…"',
        ),
        stderr,
      )
      assert.ok(stderr.includes('OTLP_ENDPOINT: "https://…@host:99999/otlp" is not an http(s) URL'), stderr)
    }
  })

  test('config from AI_GATEWAY_CONFIG, else ./config.yaml', async () => {
    const file = writeConfig(valid)
    assert.equal((await runCli(['validate'], { env: { AI_GATEWAY_CONFIG: file } })).code, 0)
    const dir = mkdtempSync(join(tmpdir(), 'ai-gateway-cwd-'))
    writeFileSync(join(dir, 'config.yaml'), valid)
    const fromCwd = await runCli(['validate'], { cwd: dir })
    assert.equal(fromCwd.code, 0)
    assert.match(fromCwd.stdout, /^\.\/config\.yaml: OK/)
  })

  test('config.yaml.example is valid once its variables are set', async () => {
    const example = join(import.meta.dirname, '..', 'config.yaml.example')
    const env = {
      GATEWAY_API_KEY: 'k-123456',
      GROQ_API_KEY: 'g',
      OPENROUTER_API_KEY: 'o',
      GEMINI_API_KEY: 'm',
    }
    const { code, stderr } = await runCli(['validate', '--config', example], { env })
    assert.equal(code, 0, stderr)
  })

  test('an unreadable or absent config is a clear error', async () => {
    const missing = await runCli(['validate', '--config', '/nonexistent/config.yaml'])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /cannot read file: ENOENT/)
  })

  test('--help, --version, and a bad command line', async () => {
    const help = await runCli(['--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /ai-gateway validate/)
    const version = await runCli(['--version'])
    assert.equal(version.code, 0)
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/)
    assert.equal((await runCli(['frobnicate'])).code, 2)
    assert.equal((await runCli(['--no-such-flag'])).code, 2)
  })
})
