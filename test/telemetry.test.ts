// OTLP export against a local fake collector: paths, auth headers, resource, the span tree of a
// fallback, trace context in and out, correlated log records, flush on SIGTERM, and no secrets.

import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, afterEach, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseConfig } from '../src/config.ts'
import { grafanaInstanceId, parseHeaderList, signalUrl, telemetrySettings } from '../src/otlp-config.ts'
import { attributes, CLIENT, ERROR, FakeCollector, SERVER } from './fake-collector.ts'
import {
  baseConfig,
  gatewayKey,
  type RunningGateway,
  runCli,
  startGateway,
  waitFor,
  writeConfig,
} from './gateway-process.ts'
import { completion, json, MockUpstream, ok, sse, status, textChunks } from './mock-upstream.ts'

const providerKey = 'sk-telemetry-provider-key-123'

let mock: MockUpstream
let collector: FakeCollector
const running: RunningGateway[] = []

before(async () => {
  mock = await MockUpstream.start()
  collector = await FakeCollector.start()
})
after(async () => {
  await mock.close()
  await collector.close()
})
afterEach(async () => {
  await Promise.all(running.splice(0).map((gw) => gw.stop()))
  mock.reset()
  collector.exports.length = 0
})

async function gateway(env: Record<string, string>) {
  const gw = await startGateway(
    baseConfig({
      providers: [
        { name: 'a', api_key: providerKey, base_url: mock.url('a') },
        { name: 'b', api_key: 'sk-telemetry-b-key-456', base_url: mock.url('b') },
      ],
      routes: [
        {
          name: 'r',
          steps: [
            { provider: 'a', model: 'model-a' },
            { provider: 'b', model: 'model-b' },
          ],
        },
      ],
    }),
    { env },
  )
  running.push(gw)
  return gw
}

describe('settings from the environment', () => {
  test('signal URLs: base paths, host:port, signal paths kept, no double slash', () => {
    assert.equal(
      signalUrl('https://otlp-gateway-prod-eu-west-2.grafana.net/otlp', 'traces'),
      'https://otlp-gateway-prod-eu-west-2.grafana.net/otlp/v1/traces',
    )
    assert.equal(signalUrl('https://host/otlp/', 'logs'), 'https://host/otlp/v1/logs')
    assert.equal(signalUrl('collector:4318', 'traces'), 'https://collector:4318/v1/traces')
    assert.equal(signalUrl('http://collector:4318/v1/traces', 'traces'), 'http://collector:4318/v1/traces')
    assert.equal(signalUrl('http://collector:4318/v1/traces', 'logs'), 'http://collector:4318/v1/logs')
  })
  test('Grafana Cloud tokens carry the instance id', () => {
    const token = `glc_${Buffer.from(JSON.stringify({ o: '1', n: 'stack-123456-otlp-write-gw', k: 'x', m: { r: 'eu' } })).toString('base64')}`
    assert.equal(grafanaInstanceId(token), '123456')
    assert.equal(grafanaInstanceId('glc_not-base64-json'), undefined)
    assert.equal(grafanaInstanceId('plain-key'), undefined)
    const settings = settingsFrom({ OTLP_ENDPOINT: 'h:1', OTLP_API_KEY: token })
    assert.equal(
      settings.otlp?.tracesHeaders.Authorization,
      `Basic ${Buffer.from(`123456:${token}`).toString('base64')}`,
    )
    const overridden = settingsFrom({
      OTLP_ENDPOINT: 'h:1',
      OTLP_API_KEY: token,
      OTLP_INSTANCE_ID: '42',
    })
    assert.equal(
      overridden.otlp?.tracesHeaders.Authorization,
      `Basic ${Buffer.from(`42:${token}`).toString('base64')}`,
    )
  })
  test("header lists are URL-decoded; OTLP_HEADERS wins over the shared list, a signal's own over both", () => {
    assert.deepEqual(parseHeaderList('a=1, X-Scope-OrgID=team%20one,bad,=x'), {
      a: '1',
      'X-Scope-OrgID': 'team one',
    })
    const settings = settingsFrom({
      OTLP_ENDPOINT: 'h:1',
      OTLP_API_KEY: 'k',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-a=env',
      OTLP_HEADERS: 'Authorization=Bearer%20t,x-b=mine',
    })
    assert.deepEqual(settings.otlp?.tracesHeaders, { 'x-a': 'env', Authorization: 'Bearer t', 'x-b': 'mine' })
    // Each signal's own list beats the shared ones, OTLP_HEADERS included, as its own endpoint does.
    const perSignal = settingsFrom({
      OTLP_ENDPOINT: 'h:1',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-a=env,x-c=shared',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-a=traces,x-b=traces',
      OTLP_HEADERS: 'x-b=mine,x-d=mine',
    })
    assert.deepEqual(perSignal.otlp?.tracesHeaders, {
      'x-a': 'traces',
      'x-b': 'traces',
      'x-c': 'shared',
      'x-d': 'mine',
    })
    assert.deepEqual(perSignal.otlp?.logsHeaders, {
      'x-a': 'env',
      'x-b': 'mine',
      'x-c': 'shared',
      'x-d': 'mine',
    })
  })
  test("traces sent to a backend of their own keep their own Authorization, not OTLP_API_KEY's", () => {
    const split = settingsFrom({
      OTLP_ENDPOINT: 'https://logs.example:4318',
      OTLP_API_KEY: 'logs-backend-key',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://lf.example/api/public/otel/v1/traces',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'authorization=Basic%20langfuse',
    })
    assert.deepEqual(split.otlp?.tracesHeaders, { authorization: 'Basic langfuse' })
    const logsAuth = `Basic ${Buffer.from('logs-backend-key:').toString('base64')}`
    assert.deepEqual(split.otlp?.logsHeaders, { Authorization: logsAuth })
    const { secrets } = parseConfig(
      'api_key: gw-key-1\nproviders: [{ name: p, base_url: "https://x.test" }]\nroutes: [{ name: r, steps: [{ provider: p, model: m }] }]\n',
      {
        OTLP_ENDPOINT: 'https://logs.example:4318',
        OTLP_API_KEY: 'logs-backend-key',
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'authorization=Basic%20langfuse',
      },
    )
    assert.ok(secrets.includes(logsAuth), "the key's Basic form, sent to the logs' backend only")
  })
  // `Name: value` instead of `name=value` splits at a base64 value's padding: the credential became a
  // header name, refused by Node on every export in a warning that quoted it.
  test('a header list HTTP could not send is a problem naming its variable and entry, quoting nothing', () => {
    const credential = 'MTIzNDU2OmdsY19zZWNyZXQtb3RscC10b2tlbg=='
    const problemsFor = (env: Record<string, string>) => {
      const problems: string[] = []
      telemetrySettings({ OTLP_ENDPOINT: 'h:1', ...env }, problems)
      for (const problem of problems) assert.ok(!problem.includes('MTIz'), problem)
      return problems
    }
    const badName = 'is not name=value with a valid header name'
    for (const variable of [
      'OTLP_HEADERS',
      'OTEL_EXPORTER_OTLP_HEADERS',
      'OTEL_EXPORTER_OTLP_TRACES_HEADERS',
      'OTEL_EXPORTER_OTLP_LOGS_HEADERS',
    ]) {
      const problems = problemsFor({ [variable]: `Authorization: Basic ${credential}` })
      assert.equal(problems.length, 1, problems.join('\n'))
      assert.ok(problems[0]?.startsWith(`${variable}: entry 1 ${badName}`), problems[0])
    }
    assert.match(
      problemsFor({ OTLP_HEADERS: `x-a=1,Authorization Basic ${credential}` })[0] ?? '',
      /entry 2 is not/,
    )
    assert.match(problemsFor({ OTLP_HEADERS: 'x%0Aa=1' })[0] ?? '', /entry 1 is not/)
    for (const value of ['a%0D%0Ab', 'a%00b', 'a%0Ab'])
      assert.match(
        problemsFor({ OTLP_HEADERS: `x-a=${value}` })[0] ?? '',
        /^OTLP_HEADERS: the value of entry 1 /,
      )
    assert.deepEqual(problemsFor({ OTLP_HEADERS: 'x-a=1,,x-b=a%20b,' }), [], 'empty entries are no problem')
  })
  test('every OTLP header list is a source of secrets, the per-signal ones too', () => {
    const config = parseConfig(
      'api_key: gw-key-1\nproviders: [{ name: p, base_url: "https://x.test" }]\nroutes: [{ name: r, steps: [{ provider: p, model: m }] }]\n',
      {
        OTLP_ENDPOINT: 'h:1',
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Basic%20shared-secret-1',
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-api-key=traces-secret-2',
        OTEL_EXPORTER_OTLP_LOGS_HEADERS: 'x-api-key=logs-secret-3',
        OTLP_HEADERS: 'Authorization=Bearer%20mine-secret-4',
      },
    )
    for (const secret of ['shared-secret-1', 'traces-secret-2', 'logs-secret-3', 'mine-secret-4'])
      assert.ok(config.secrets.includes(secret), secret)
  })
  test("every endpoint variable's user info and secret-looking query values are secrets, used or not", () => {
    const { secrets } = parseConfig(
      'api_key: gw-key-1\nproviders: [{ name: p, base_url: "https://x.test" }]\nroutes: [{ name: r, steps: [{ provider: p, model: m }] }]\n',
      {
        OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_ENDPOINT: '123456:glc_endpoint%2Dtoken@otlp.example.com:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://c:4318/v1/traces?tenant=a&api_key=query-secret-1',
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: 'https://only-token-1@c:4318/v1/logs',
      },
    )
    for (const secret of [
      '123456:glc_endpoint%2Dtoken',
      'glc_endpoint%2Dtoken',
      'glc_endpoint-token',
      'query-secret-1',
      'only-token-1',
    ])
      assert.ok(secrets.includes(secret), secret)
    assert.ok(!secrets.includes('123456'), 'a user name alone is too common a text')
  })
  test('standard variables, service name precedence, and off by default', () => {
    assert.equal(settingsFrom({}).otlp, undefined)
    assert.equal(settingsFrom({ OTLP_ENDPOINT: 'h:1', OTEL_SDK_DISABLED: 'true' }).otlp, undefined)
    const std = settingsFrom({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:4318/v1/traces',
      OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: 'http://l:4318/custom/logs',
      OTEL_SERVICE_NAME: 'gw-a',
      OTLP_SERVICE_NAME: 'gw-b',
      OTEL_RESOURCE_ATTRIBUTES: 'service.name=ignored,deployment.environment=prod',
    })
    assert.equal(std.otlp?.tracesUrl, 'http://t:4318/v1/traces')
    assert.equal(std.otlp?.logsUrl, 'http://l:4318/custom/logs')
    // OTLP_SERVICE_NAME wins over its OTEL_* twin, as OTLP_RESOURCE_ATTRIBUTES does: the OpenTelemetry
    // Operator injects OTEL_SERVICE_NAME into the pods it instruments.
    assert.equal(std.otlp?.serviceName, 'gw-b')
    assert.equal(settingsFrom({ OTLP_ENDPOINT: 'h:1', OTEL_SERVICE_NAME: 'gw-a' }).otlp?.serviceName, 'gw-a')
    assert.equal(settingsFrom({ OTLP_ENDPOINT: 'h:1' }).otlp?.serviceName, 'ai-gateway')
    const fromAttributes = { OTLP_ENDPOINT: 'h:1', OTEL_RESOURCE_ATTRIBUTES: 'service.name=checkout' }
    assert.equal(settingsFrom(fromAttributes).otlp?.serviceName, 'checkout')
  })
  test("a signal's own endpoint is for that signal alone; OTEL_<SIGNAL>_EXPORTER=none turns one off", () => {
    const tracesOnly = settingsFrom({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://lf.example/api/public/otel/v1/traces',
    })
    assert.equal(tracesOnly.otlp?.tracesUrl, 'https://lf.example/api/public/otel/v1/traces')
    assert.equal(tracesOnly.otlp?.logsUrl, undefined)
    const logsOff = settingsFrom({
      OTLP_ENDPOINT: 'https://lf.example/api/public/otel',
      OTEL_LOGS_EXPORTER: 'none',
    })
    assert.equal(logsOff.otlp?.tracesUrl, 'https://lf.example/api/public/otel/v1/traces')
    assert.equal(logsOff.otlp?.logsUrl, undefined)
    const bothOff = { OTLP_ENDPOINT: 'h:1', OTEL_LOGS_EXPORTER: 'none', OTEL_TRACES_EXPORTER: 'none' }
    assert.equal(settingsFrom(bothOff).otlp, undefined)
  })
  test('an endpoint the exporter could not send to is a problem that names its variable', () => {
    const variablesIn = (env: Record<string, string>) => {
      const problems: string[] = []
      telemetrySettings(env, problems)
      return problems.map((problem) => problem.slice(0, problem.indexOf(':')))
    }
    // One problem, though both signals' URLs come from it.
    assert.deepEqual(variablesIn({ OTLP_ENDPOINT: 'localhost:99999' }), ['OTLP_ENDPOINT'])
    assert.deepEqual(variablesIn({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://[bad' }), [
      'OTEL_EXPORTER_OTLP_ENDPOINT',
    ])
    assert.deepEqual(
      variablesIn({
        OTLP_ENDPOINT: 'collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'ftp://collector/v1/traces',
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: 'http://collector:0/v1/logs',
      }),
      ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_LOGS_ENDPOINT'],
    )
    assert.deepEqual(variablesIn({ OTLP_ENDPOINT: 'http://[bad', OTEL_SDK_DISABLED: 'true' }), [], 'unused')
  })
})

/** Settings from an environment that must leave no problem behind. */
function settingsFrom(env: Record<string, string>) {
  const problems: string[] = []
  const settings = telemetrySettings(env, problems)
  assert.deepEqual(problems, [])
  return settings
}

test('a request that falls back once: a SERVER span with two CLIENT children, the first failed', async () => {
  const gw = await gateway({ OTLP_ENDPOINT: `${collector.url}/otlp/` })
  mock.script('a', status(503)).script('b', ok('from b'))
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const clientSpan = '00f067aa0ba902b7'
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'r', messages: [{ role: 'user', content: 'secret prompt text' }] },
    {
      traceparent: `00-${traceId}-${clientSpan}-01`,
    },
  )
  assert.equal(res.status, 200)
  await waitFor(() => collector.spans().length >= 3, 'three spans')
  assert.ok(collector.exports.some((e) => e.path === '/otlp/v1/traces'))

  const spans = collector.spans()
  const server = spans.find((s) => s.kind === SERVER)
  assert.ok(server)
  assert.equal(server.name, 'POST /v1/chat/completions')
  assert.equal(server.traceId, traceId, 'the client trace is continued')
  assert.equal(server.parentSpanId, clientSpan)
  const serverAttrs = attributes(server.attributes)
  assert.equal(serverAttrs['http.response.status_code'], 200)
  assert.equal(serverAttrs['gateway.route'], 'r')
  assert.equal(serverAttrs['gen_ai.provider.name'], 'b')

  const clients = spans.filter((s) => s.kind === CLIENT && s.parentSpanId === server.spanId)
  assert.equal(clients.length, 2)
  const [first, second] = clients.sort(
    (x, y) =>
      Number(attributes(x.attributes)['gateway.step.index']) -
      Number(attributes(y.attributes)['gateway.step.index']),
  )
  assert.ok(first && second)
  assert.equal(first.status?.code, ERROR)
  const firstAttrs = attributes(first.attributes)
  assert.equal(first.name, 'chat model-a')
  assert.equal(firstAttrs['gen_ai.operation.name'], 'chat')
  assert.equal(firstAttrs['gen_ai.provider.name'], 'a')
  assert.equal(firstAttrs['gen_ai.request.model'], 'model-a')
  assert.equal(firstAttrs['http.response.status_code'], 503)
  assert.equal(firstAttrs['gateway.attempt.outcome'], 'http_error')
  assert.match(String(firstAttrs['gateway.fallback.reason']), /HTTP 503/)
  const secondAttrs = attributes(second.attributes)
  assert.notEqual(second.status?.code, ERROR)
  assert.equal(secondAttrs['gen_ai.request.model'], 'model-b')
  assert.equal(secondAttrs['gen_ai.response.model'], 'model-b')
  assert.equal(secondAttrs['gen_ai.usage.input_tokens'], 5)
  assert.equal(secondAttrs['gen_ai.usage.output_tokens'], 7)

  // The trace context reaches the provider, as the CLIENT span of that attempt.
  const upstreamParent = String(mock.requests('b')[0]?.headers.traceparent)
  assert.equal(upstreamParent, `00-${traceId}-${second.spanId}-01`)
  assert.ok(!JSON.stringify(spans).includes('secret prompt text'), 'prompts are not recorded by default')
})

test("only the gateway's traceparent reaches the provider, never the client's tracestate", async () => {
  const gw = await gateway({ OTLP_ENDPOINT: collector.url })
  mock.script('a', ok())
  const traceId = '0af7651916cd43dd8448eb211c80319c'
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'r', messages: [] },
    { traceparent: `00-${traceId}-b7ad6b7169203331-01`, tracestate: 'client=meant-for-the-gateway' },
  )
  assert.equal(res.status, 200)
  const { headers } = mock.requests('a')[0] ?? assert.fail('the provider was asked')
  assert.match(String(headers.traceparent), new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`))
  assert.equal(headers.tracestate, undefined)
})

test('log records go out over OTLP, correlated with the request trace', async () => {
  const gw = await gateway({ OTLP_ENDPOINT: collector.url })
  mock.script('a', status(500)).script('b', ok())
  await gw.post('/v1/chat/completions', { model: 'r', messages: [] }, { 'x-request-id': 'otlp-log-1' })
  await waitFor(
    () =>
      collector
        .logs()
        .some(
          (l) => attributes(l.attributes).requestId === 'otlp-log-1' && l.body?.stringValue === 'request',
        ),
    'the request log record',
  )
  assert.ok(collector.exports.some((e) => e.path === '/v1/logs'))
  const server = await (async () => {
    await waitFor(() => collector.spans().some((s) => s.kind === SERVER), 'the server span')
    return collector.spans().find((s) => s.kind === SERVER)
  })()
  const line = collector
    .logs()
    .find((l) => attributes(l.attributes).requestId === 'otlp-log-1' && l.body?.stringValue === 'request')
  assert.equal(line?.traceId, server?.traceId)
  assert.equal(line?.spanId, server?.spanId)
  const failed = collector.logs().find((l) => l.body?.stringValue === 'upstream attempt failed')
  assert.equal(failed?.traceId, server?.traceId)
  assert.ok(collector.logs().some((l) => l.body?.stringValue === 'listening'))
})

test('auth headers: Grafana-style Basic, plain Basic, OTLP_HEADERS; resource attributes', async () => {
  const token = `glc_${Buffer.from(JSON.stringify({ o: '9', n: 'stack-777-otlp', k: 'secretpart' })).toString('base64')}`
  const gw = await gateway({
    OTLP_ENDPOINT: collector.url,
    OTLP_API_KEY: token,
    OTLP_HEADERS: 'X-Scope-OrgID=tenant%20a',
    OTEL_SERVICE_NAME: 'my-gateway',
    OTEL_RESOURCE_ATTRIBUTES: 'service.name=ignored,deployment.environment=test',
  })
  mock.script('a', ok())
  await gw.post('/v1/chat/completions', { model: 'r', messages: [] })
  await waitFor(() => collector.spans().length > 0, 'spans')
  const exported = collector.exports.find((e) => e.path === '/v1/traces')
  assert.equal(exported?.headers.authorization, `Basic ${Buffer.from(`777:${token}`).toString('base64')}`)
  assert.equal(exported?.headers['x-scope-orgid'], 'tenant a')
  const resource = collector.resourceAttributes()
  assert.equal(resource['service.name'], 'my-gateway')
  assert.equal(resource['deployment.environment'], 'test')
  assert.equal(typeof resource['service.version'], 'string')
  await gw.stop()

  const plain = await gateway({ OTLP_ENDPOINT: collector.url, OTLP_API_KEY: 'plain-otlp-key' })
  collector.exports.length = 0
  mock.script('a', ok())
  await plain.post('/v1/chat/completions', { model: 'r', messages: [] })
  await waitFor(() => collector.spans().length > 0, 'spans')
  assert.equal(
    collector.exports[0]?.headers.authorization,
    `Basic ${Buffer.from('plain-otlp-key:').toString('base64')}`,
  )
})

test('SIGTERM flushes buffered spans and logs before exit', async () => {
  const gw = await gateway({ OTLP_ENDPOINT: collector.url })
  mock.script('a', ok())
  await gw.post('/v1/chat/completions', { model: 'r', messages: [] }, { 'x-request-id': 'flush-1' })
  assert.equal(await gw.stop(), 0)
  assert.ok(
    collector.spans().some((s) => s.kind === SERVER),
    'the span was exported by shutdown',
  )
  assert.ok(
    collector.logs().some((l) => l.body?.stringValue === 'stopped'),
    'the last log line too',
  )
})

test('a failed start still exports its fatal line, then exits 1', async () => {
  const taken = createServer().listen(0, '127.0.0.1')
  await once(taken, 'listening')
  try {
    const config = writeConfig(
      baseConfig({
        metrics: { port: (taken.address() as AddressInfo).port, host: '127.0.0.1' },
        providers: [{ name: 'a', base_url: mock.url('a') }],
        routes: [{ name: 'r', steps: [{ provider: 'a', model: 'm' }] }],
      }),
    )
    const { code } = await runCli(['--config', config], {
      env: { OTLP_ENDPOINT: collector.url },
      timeoutMs: 15_000,
    })
    assert.equal(code, 1)
    assert.ok(collector.logs().some((l) => l.body?.stringValue === 'failed to start'))
  } finally {
    taken.close()
  }
})

test('an invalid OTLP endpoint is a config error: validate fails, and start-up exits 1 without a trace', async () => {
  const config = writeConfig(
    baseConfig({
      providers: [{ name: 'a', base_url: mock.url('a') }],
      routes: [{ name: 'r', steps: [{ provider: 'a', model: 'm' }] }],
    }),
  )
  for (const endpoint of ['localhost:99999', 'http://[bad']) {
    for (const args of [
      ['validate', '--config', config],
      ['--config', config],
    ]) {
      const { code, stdout, stderr } = await runCli(args, { env: { OTLP_ENDPOINT: endpoint } })
      assert.equal(code, 1, `${args[0]} with ${endpoint}: ${stdout}${stderr}`)
      assert.match(stderr, /^ai-gateway: invalid config .*\n {2}OTLP_ENDPOINT: /)
      assert.ok(!stderr.includes('node_modules'), stderr)
      assert.equal(stdout, '', 'nothing half-starts')
    }
  }
})

test('OTLP headers written as `Name: value` stop validate and start-up, naming the variable only', async () => {
  const config = writeConfig(
    baseConfig({
      providers: [{ name: 'a', base_url: mock.url('a') }],
      routes: [{ name: 'r', steps: [{ provider: 'a', model: 'm' }] }],
    }),
  )
  const credential = 'MTIzNDU2OmdsY19zZWNyZXQtb3RscC10b2tlbg=='
  const env = { OTLP_ENDPOINT: collector.url, OTLP_HEADERS: `Authorization: Basic ${credential}` }
  for (const args of [
    ['validate', '--config', config],
    ['--config', config],
  ]) {
    const { code, stdout, stderr } = await runCli(args, { env })
    assert.equal(code, 1, `${args[0]}: ${stdout}${stderr}`)
    assert.match(stderr, /\n {2}OTLP_HEADERS: entry 1 is not name=value/)
    assert.ok(!(stdout + stderr).includes(credential.slice(0, 12)), stderr)
  }
  assert.equal(collector.exports.length, 0)
})

// Those were dropped: the logger did not exist yet. One of them quotes an endpoint as written.
test('SDK warnings raised while the exporters are built are logged, URLs masked, keys redacted before any cut', async () => {
  // A `(` splits the URL where maskUrls looks for words: redaction must come first.
  const token = 'glc_endpoint(secret-token-42'
  const otlpKey = 'otlp-key-cut-in-two-0123456789'
  // The SDK's warning quotes the value; padded so the key crosses the 300th character, where it is cut.
  const said =
    "Configuration: OTEL_EXPORTER_OTLP_COMPRESSION is invalid, expected 'none' or 'gzip' (actual: '"
  const gw = await gateway({
    OTLP_ENDPOINT: collector.url,
    OTLP_API_KEY: otlpKey,
    OTEL_EXPORTER_OTLP_COMPRESSION: `${'z'.repeat(300 - 6 - said.length)}${otlpKey}`,
    // Read by the SDK alone (OTLP_ENDPOINT wins here), which quotes it when it cannot parse it.
    OTEL_EXPORTER_OTLP_ENDPOINT: `123456:${token}@127.0.0.1:9`,
  })
  const warnings = gw.logs.filter((l) => l.msg === 'telemetry export problem').map((l) => String(l.detail))
  const compression = warnings.find((w) => w.startsWith(said))
  assert.ok(compression?.endsWith('[REDAC'), warnings.join('\n'))
  assert.ok(
    warnings.some((w) => w.includes("environment-provided export URL: '[REDACTED]…@127.0.0.1:9'")),
    warnings.join('\n'),
  )
  await gw.stop()
  const everything = gw.output() + collector.exports.map((e) => e.raw).join('\n')
  assert.ok(collector.logs().some((l) => l.body?.stringValue === 'telemetry export problem'))
  for (const secret of [token, 'glc_endpoint', otlpKey.slice(0, 6)])
    assert.ok(!everything.includes(secret), secret)
})

test('with OTEL_LOGS_EXPORTER=none only traces are sent', async () => {
  const gw = await gateway({ OTLP_ENDPOINT: collector.url, OTEL_LOGS_EXPORTER: 'none' })
  mock.script('a', ok())
  await gw.post('/v1/chat/completions', { model: 'r', messages: [] })
  await gw.stop()
  assert.ok(collector.exports.some((e) => e.path.endsWith('/v1/traces')))
  assert.deepEqual(
    collector.exports.filter((e) => !e.path.endsWith('/v1/traces')).map((e) => e.path),
    [],
  )
})

test('exported bytes contain no configured secret, even when a provider echoes one', async () => {
  const otlpKey = 'otlp-secret-key-987654321'
  const gw = await gateway({ OTLP_ENDPOINT: collector.url, OTLP_API_KEY: otlpKey })
  mock
    .script('a', (req, res) => status(401, `bad key ${req.headers.authorization}`)(req, res))
    .script('b', ok())
  await gw.post('/v1/chat/completions', { model: 'r', messages: [] })
  await gw.get('/v1/models', { authorization: `Bearer ${providerKey}` })
  await gw.stop()
  const raw = collector.exports.map((e) => e.raw).join('\n')
  assert.match(raw, /REDACTED/, 'the echoed key was there, redacted')
  for (const secret of [gatewayKey, providerKey, 'sk-telemetry-b-key-456', otlpKey]) {
    assert.ok(!raw.includes(secret), `exported telemetry contains ${secret}`)
  }
})

// The access log and the error body redact these; a span exports them as they came.
test('a key in the request path, the tracestate or an upstream model name is redacted from spans', async () => {
  const gw = await gateway({ OTLP_ENDPOINT: collector.url })
  mock.script('a', json(200, completion('hi', `echo ${providerKey}`)))
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  const tracestate = `vendor=${gatewayKey}`
  await gw.post('/v1/chat/completions', { model: 'r', messages: [] }, { traceparent, tracestate })
  assert.equal((await gw.get(`/v1/models/${gatewayKey}`)).status, 404)
  assert.equal((await gw.get(`/${gatewayKey}/v1/models`)).status, 404)
  await gw.stop()
  const spans = collector.spans()
  const paths = spans.map((span) => attributes(span.attributes)['url.path'])
  assert.ok(paths.includes('/v1/models/[REDACTED]'), paths.join(' '))
  assert.ok(paths.includes('/[REDACTED]/v1/models'), paths.join(' '))
  const models = spans.map((span) => attributes(span.attributes)['gen_ai.response.model'])
  assert.ok(models.includes('echo [REDACTED]'), models.join(' '))
  const raw = collector.exports.map((e) => e.raw).join('\n')
  for (const secret of [gatewayKey, providerKey]) assert.ok(!raw.includes(secret), `exported: ${secret}`)
})

test('with no OTLP variables nothing is exported', async () => {
  const gw = await gateway({})
  mock.script('a', ok())
  await gw.post('/v1/chat/completions', { model: 'r', messages: [] })
  await gw.stop()
  assert.equal(collector.exports.length, 0)
  assert.equal(gw.logs.find((l) => l.msg === 'listening')?.telemetry, false)
  assert.equal(mock.requests('a').length, 1)
  assert.equal(mock.requests('a')[0]?.headers.traceparent, undefined)
})

test('an unreachable collector neither slows nor breaks requests', async () => {
  const gw = await gateway({ OTLP_ENDPOINT: 'http://127.0.0.1:9' })
  mock.always('a', ok())
  const started = performance.now()
  for (let i = 0; i < 20; i++)
    assert.equal((await gw.post('/v1/chat/completions', { model: 'r', messages: [] })).status, 200)
  assert.ok(performance.now() - started < 2_000)
  await gw.waitForLog((l) => l.msg === 'telemetry export problem', 15_000)
  // What could not be exported is counted as lost, spans and log records alike.
  const lost = async () => {
    const text = await (await gw.get('/metrics')).text()
    const count = (signal: string) =>
      Number(
        new RegExp(`ai_gateway_telemetry_dropped_total\\{signal="${signal}"\\} (\\d+)`).exec(text)?.[1] ?? 0,
      )
    return { traces: count('traces'), logs: count('logs') }
  }
  const deadline = Date.now() + 15_000
  let counted = await lost()
  while (counted.traces < 20 || counted.logs < 20) {
    assert.ok(Date.now() < deadline, `counted as lost: ${JSON.stringify(counted)}`)
    await sleep(250)
    counted = await lost()
  }
})

test('captured prompts are the input of a Responses request too, and a stream cut after commit logs its trace', async () => {
  const gw = await gateway({
    OTLP_ENDPOINT: collector.url,
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true',
  })
  mock.script('a', ok())
  const res = await gw.post('/v1/responses', { model: 'r', input: 'a responses prompt' })
  assert.equal(res.status, 200)
  await waitFor(() => collector.spans().some((s) => s.kind === CLIENT), 'the attempt span')
  const attempt = collector.spans().find((s) => s.kind === CLIENT)
  assert.match(String(attributes(attempt?.attributes ?? [])['gen_ai.input.messages']), /a responses prompt/)

  mock.script('a', sse(textChunks('cut after this').slice(0, -1), { end: 'cut', delayMs: 20 }))
  const cut = await gw.post('/v1/chat/completions', { model: 'r', messages: [], stream: true })
  assert.match(await cut.text(), /stream_interrupted/)
  const line = await gw.waitForLog((l) => l.msg === 'stream failed after commit')
  assert.match(String(line.trace_id), /^[0-9a-f]{32}$/)
})
