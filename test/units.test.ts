// The pure pieces, tested directly: parsing, redaction, and the small decisions.

import assert from 'node:assert/strict'
import { mkdtempSync, openSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { describe, test } from 'node:test'
import { errorMessageOf, sanitizeReason } from '../src/answer.ts'
import { resolveEnvRefs } from '../src/env-refs.ts'
import { createLogging } from '../src/logger.ts'
import { estimatePromptTokens, QuotaBook } from '../src/quota.ts'
import { createRedactor, maskUrl } from '../src/redact.ts'
import { toChatRequest } from '../src/responses-request.ts'
import { parseRetryAfter } from '../src/retry-hints.ts'
import { describeFailure, routeFailed } from '../src/route-error.ts'
import { type Route, rewriteBody, type Step } from '../src/router.ts'
import { normalizePath } from '../src/server.ts'
import { formatEvent, isCommitPoint } from '../src/sse.ts'
import type { Trail } from '../src/trail.ts'
import { parseDuration, parseSize } from '../src/units.ts'

describe('parseDuration', () => {
  test('units and combinations', () => {
    assert.equal(parseDuration('250ms'), 250)
    assert.equal(parseDuration('2h'), 7_200_000)
    assert.equal(parseDuration('1m30s'), 90_000)
    assert.equal(parseDuration('0'), 0)
    assert.equal(parseDuration(12), 12_000)
  })
  test('rejects anything else', () => {
    for (const bad of ['', 'ms', '5 s', '5x', '-1s', '1s junk', 'soon'])
      assert.equal(parseDuration(bad), undefined, bad)
    assert.equal(parseDuration(-1), undefined)
  })
})

describe('parseSize', () => {
  test('units', () => {
    assert.equal(parseSize('512kb'), 512 * 1024)
    assert.equal(parseSize('32MB'), 32 * 1024 * 1024)
    assert.equal(parseSize(1000), 1000)
  })
  test('rejects zero, negatives and words', () => {
    for (const bad of ['0', 'big', '-5mb', '5tb']) assert.equal(parseSize(bad), undefined, bad)
  })
})

describe('resolveEnvRefs', () => {
  test('only in string values, keys untouched, non-strings kept', () => {
    const { value, missing } = resolveEnvRefs(
      { '${K}': '${V}', n: 3, list: ['${V}', true, null] },
      { V: 'v', K: 'k' },
    )
    assert.deepEqual(value, { '${K}': 'v', n: 3, list: ['v', true, null] })
    assert.deepEqual(missing, [])
  })
  test('an empty variable is used as is unless a default is given', () => {
    assert.deepEqual(resolveEnvRefs('${E}', { E: '' }).value, '')
    assert.deepEqual(resolveEnvRefs('${E:-d}', { E: '' }).value, 'd')
  })
  test('each missing name once, in order', () => {
    assert.deepEqual(resolveEnvRefs(['${B}', '${A}', '${B}'], {}).missing, ['B', 'A'])
  })
})

describe('createRedactor', () => {
  test('replaces every secret, raw and JSON-escaped, longest first', () => {
    const redact = createRedactor(['abcd1234', 'abcd1234-long', 'q"uote\\key'])
    assert.equal(redact('x abcd1234-long y abcd1234 z'), 'x [REDACTED] y [REDACTED] z')
    assert.equal(redact(JSON.stringify({ m: 'q"uote\\key' })), '{"m":"[REDACTED]"}')
    assert.equal(redact('a.b*c'), 'a.b*c')
  })
  test('also as other JSON encoders escape it: \\/ (PHP), \\u0026 and friends (Go)', () => {
    const redact = createRedactor(['abc/def+gh&<i>'])
    assert.equal(redact('{"detail":"bad abc\\/def+gh&<i>"}'), '{"detail":"bad [REDACTED]"}')
    assert.equal(redact('{"detail":"bad abc/def+gh\\u0026\\u003ci\\u003e"}'), '{"detail":"bad [REDACTED]"}')
    assert.equal(redact('{"detail":"bad abc\\/def+gh\\u0026\\u003Ci\\u003E"}'), '{"detail":"bad [REDACTED]"}')
  })

  test('a key ending in a character an escape starts with is redacted whole in that spelling', () => {
    const redact = createRedactor(['tail-key\\', 'pct-key%'])
    assert.equal(redact('a tail-key\\u005c b tail-key%5C'), 'a [REDACTED] b [REDACTED]')
    assert.equal(redact('a pct-key%25 b pct-key\\u0025'), 'a [REDACTED] b [REDACTED]')
  })

  test('a run of backslashes in a key costs time in proportion to the text, not exponential in the run', () => {
    /** Near misses pass untouched, and quickly. */
    const missesQuickly = (redact: (text: string) => string, misses: string) => {
      const started = performance.now()
      assert.equal(redact(misses), misses)
      assert.ok(performance.now() - started < 500, `${Math.round(performance.now() - started)} ms`)
    }
    const key = `k${'\\'.repeat(14)}z`
    const redact = createRedactor([key])
    // Four times the run: each backslash of the key may be escaped up to twice in the text.
    missesQuickly(redact, `k${'\\'.repeat(56)}y `.repeat(10))
    assert.equal(redact(`${JSON.stringify(key)} ${key}`), '"[REDACTED]" [REDACTED]')
    // Backslashes next to other escaped characters: the same, and every spelling still found.
    const quoted = `k${'\\"'.repeat(14)}X`
    const quotedRedact = createRedactor([quoted])
    missesQuickly(quotedRedact, `k${'\\\\\\\\"'.repeat(14)}Y `.repeat(10))
    const once = JSON.stringify(quoted)
    for (const text of [quoted, once, JSON.stringify(once), encodeURIComponent(quoted)])
      assert.ok(!quotedRedact(text).includes('X'), text)
    assert.equal(createRedactor(['ab\\\ud800cd'])('x ab\\\ud800cd'), 'x [REDACTED]', 'a lone surrogate')
  })

  test('no secrets: identity', () => {
    assert.equal(createRedactor([])('anything'), 'anything')
  })
})

describe('maskUrl', () => {
  test('masks user info and everything from the query or fragment on, whether the URL parses or not', () => {
    const table: [string, string][] = [
      [
        'htps://generativelanguage.googleapis.com/v1beta/openai?key=AIzaSy1',
        'htps://generativelanguage.googleapis.com/v1beta/openai?…',
      ],
      ['https://12345:glc_token@host:99999/otlp', 'https://…@host:99999/otlp'],
      ['12345:glc_token@host:99999/otlp', '…@host:99999/otlp'],
      // A password holding `?` and a query holding `@` look alike: either way, only the scheme shows.
      ['https://user:pa/ss?w@host/v1', 'https://…'],
      ['htps://generativelanguage.googleapis.com/v1beta/openai?key=AIza@tail', 'htps://…'],
      ['https://user:pa/ss@host/v1', 'https://…@host/v1'],
      ['https://host/v1#token=t', 'https://host/v1#…'],
      ['ftp://example.com/a', 'ftp://example.com/a'],
      ['localhost:99999', 'localhost:99999'],
    ]
    for (const [url, masked] of table) assert.equal(maskUrl(url), masked, url)
  })
})

test('failures are described for people', () => {
  assert.equal(
    describeFailure({ kind: 'http_error', status: 429, reason: 'slow down' }),
    'HTTP 429: slow down',
  )
  assert.equal(
    describeFailure({ kind: 'timeout', phase: 'first_token', afterMs: 500 }),
    'timed out after 500 ms waiting for the first token',
  )
})

describe('isCommitPoint', () => {
  const chunkWith = (delta: object, finish: string | null = null) => ({
    choices: [{ index: 0, delta, finish_reason: finish }],
  })
  test('content, tool calls, reasoning, finish and usage commit', () => {
    assert.ok(isCommitPoint(chunkWith({ content: 'hi' })))
    assert.ok(isCommitPoint(chunkWith({ tool_calls: [{ index: 0, function: { name: 'f' } }] })))
    assert.ok(isCommitPoint(chunkWith({ reasoning_content: 'thinking' })))
    assert.ok(isCommitPoint(chunkWith({}, 'stop')))
    assert.ok(isCommitPoint({ choices: [], usage: { total_tokens: 1 } }))
  })
  test('role-only and empty preambles do not', () => {
    assert.ok(!isCommitPoint(chunkWith({ role: 'assistant', content: '' })))
    assert.ok(!isCommitPoint(chunkWith({ role: 'assistant', content: null, tool_calls: [] })))
    assert.ok(!isCommitPoint({ choices: [] }))
    assert.ok(!isCommitPoint({ id: 'x' }))
  })
})

test('formatEvent keeps event names and multi-line data', () => {
  assert.equal(formatEvent({ data: '{"a":1}' }), 'data: {"a":1}\n\n')
  assert.equal(formatEvent({ event: 'ping', data: 'a\nb' }), 'event: ping\ndata: a\ndata: b\n\n')
})

test('parseRetryAfter: seconds and HTTP dates', () => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  assert.equal(parseRetryAfter('7', now), 7_000)
  assert.equal(parseRetryAfter('1.5', now), 1_500)
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000)
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0)
  assert.equal(parseRetryAfter('soon', now), undefined)
  assert.equal(parseRetryAfter(undefined, now), undefined)
})

test('upstream error text: the message, one line, bounded, redacted', () => {
  assert.equal(errorMessageOf('{"error":{"message":"quota"}}'), 'quota')
  assert.equal(errorMessageOf('{"error":"plain"}'), 'plain')
  assert.equal(errorMessageOf('{"message":"top"}'), 'top')
  assert.equal(errorMessageOf('<html>'), '<html>')
  const redact = createRedactor(['sk-secret'])
  assert.equal(sanitizeReason('bad\n\tkey sk-secret\u0000!', redact), 'bad key [REDACTED] !')
  assert.equal(sanitizeReason('x'.repeat(500), redact).length, 200)
})

test('normalizePath', () => {
  assert.equal(normalizePath('/v1//chat/completions'), '/v1/chat/completions')
  assert.equal(normalizePath('/v1/models/?x=1'), '/v1/models')
  assert.equal(normalizePath('/'), '/')
  assert.equal(normalizePath('//health'), '/health')
  assert.equal(normalizePath('http://gw.example:8080/v1/models?x=1'), '/v1/models')
  assert.equal(normalizePath('HTTPS://gw.example'), '/')
  assert.equal(normalizePath('http://gw.example?x=1'), '/')
})

test('the response store is bounded by count, size and age', async () => {
  const { ResponseStore } = await import('../src/response-store.ts')
  const store = new ResponseStore(2, 1_000, 200)
  store.put('a', { id: 'a' }, undefined, [], 0)
  store.put('b', { id: 'b' }, undefined, [], 0)
  store.put('c', { id: 'c' }, undefined, [], 0)
  assert.equal(store.get('a', 0), undefined, 'count: the oldest went first')
  assert.ok(store.get('c', 0))
  assert.equal(store.get('c', 1_000), undefined, 'age')
  store.put('big', { id: 'big' }, undefined, [{ type: 'message', content: 'x'.repeat(300) }], 0)
  assert.equal(store.get('big', 0), undefined, 'larger than the whole budget: not kept')
  store.put('d', { id: 'd' }, undefined, [{ content: 'y'.repeat(100) }], 0)
  store.put('e', { id: 'e' }, undefined, [{ content: 'z'.repeat(100) }], 0)
  assert.equal(store.get('d', 0), undefined, 'size: the oldest went first')
  assert.ok(store.get('e', 0))
})

test('a continued conversation is stored whole, and its size is counted from the turn before', async () => {
  const { ResponseStore } = await import('../src/response-store.ts')
  const store = new ResponseStore(10, 1_000, 900)
  store.put('1', { id: '1' }, undefined, [{ content: 'a'.repeat(300) }], 0)
  const first = store.get('1', 0)
  store.put('2', { id: '2' }, first, [{ content: 'b'.repeat(300) }], 0)
  const second = store.get('2', 0)
  assert.deepEqual(
    second?.items.map((item) => item.content),
    ['a'.repeat(300), 'b'.repeat(300)],
  )
  assert.ok((second?.itemBytes ?? 0) > 600)
  // Both turns fit the budget alone, not together: the longer conversation is the one that stays.
  assert.equal(store.get('1', 0), undefined)
  store.put('3', { id: '3' }, second, [{ content: 'c'.repeat(300) }], 0)
  assert.equal(store.get('3', 0), undefined, 'three turns are over the budget')
})

test('the access-line fast path writes what pino would, in order, redacted', () => {
  const lines: string[] = []
  const tee = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk))
      done()
    },
  })
  const { logger, infoLine } = createLogging({
    level: 'info',
    redact: createRedactor(['sk-secret-1']),
    tee,
    fd: openSync('/dev/null', 'w'),
  })
  logger.info({ route: 'r', usage: { total_tokens: 3 }, note: 'sk-secret-1' }, 'request')
  infoLine('request', { route: 'r' }, undefined, {}, { usage: { total_tokens: 3 }, note: 'sk-secret-1' })
  logger.warn('after')
  assert.equal(lines.length, 3)
  const [fromPino, fast, after] = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
  assert.deepEqual(Object.keys(fast ?? {}), Object.keys(fromPino ?? {}))
  assert.deepEqual({ ...fast, time: 0 }, { ...fromPino, time: 0 })
  assert.match(String(fast?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  assert.ok(Math.abs(Date.parse(String(fast?.time)) - Date.parse(String(fromPino?.time))) < 1000)
  assert.equal(fast?.note, '[REDACTED]')
  assert.equal(after?.msg, 'after')
  assert.equal(lines[1]?.endsWith('}\n'), true)

  const quiet = createLogging({ level: 'warn', redact: (text) => text, tee, fd: openSync('/dev/null', 'w') })
  quiet.infoLine('request', { route: 'r' })
  assert.equal(lines.length, 3)
})

test('batched log lines reach the file whole and in order: multi-byte text, lines past a batch, past a slab', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'ai-gateway-log-')), 'out.log')
  const { logger, infoLine } = createLogging({
    level: 'info',
    redact: (text) => text,
    fd: openSync(file, 'w'),
  })
  const sent: string[] = []
  // About 600 KB of short lines: batches are cut from 256 KiB slabs, so a few slabs go by.
  for (let i = 0; i < 3000; i++) {
    // Every 50th line is longer than a whole batch; some carry characters of two, three and four bytes.
    const note = i % 50 === 0 ? 'x'.repeat(20_000) : `line ${i} ü € 🙂`.repeat(1 + (i % 7))
    sent.push(note)
    if (i % 2 === 0) infoLine('request', { i, note })
    else logger.info({ i, note }, 'request')
  }
  logger.flush()
  const got = readFileSync(file, 'utf8')
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line).note as string)
  assert.deepEqual(got, sent)
})

test('a route failure counts steps, and attempts only when a step was retried', () => {
  const attempt = (step: number, provider: string) => ({
    step,
    provider,
    model: 'm',
    outcome: 'http_error' as const,
    status: 500,
    reason: 'HTTP 500',
    durationMs: 1,
  })
  const skip = {
    step: 0,
    provider: 'a',
    model: 'm',
    reason: 'circuit_open',
    forMs: 9_000,
    firm: false,
  } as const
  const failure = { kind: 'http_error', status: 500, reason: 'HTTP 500' } as const
  const message = (trail: Trail) =>
    routeFailed({ name: 'r' } as Route, trail, [failure], (text) => text).message
  assert.match(
    message({ attempts: [attempt(1, 'b'), attempt(1, 'b')], skipped: [skip] }),
    /^All 2 step\(s\) of route "r" failed after 2 attempts\. b\/m: HTTP 500; b\/m: HTTP 500; a\/m: skipped/,
  )
  assert.match(
    message({ attempts: [attempt(0, 'a'), attempt(1, 'b')], skipped: [] }),
    /^All 2 step\(s\) of route "r" failed\. a\/m/,
  )
})

test('the prompt estimate counts the text of every endpoint, four characters a token', () => {
  const text = 'x'.repeat(400)
  const image = { type: 'image_url', image_url: { url: `data:image/png;base64,${'A'.repeat(4_000)}` } }
  const chat = { messages: [{ role: 'user', content: [{ type: 'text', text }, image] }] }
  assert.equal(estimatePromptTokens(chat), 100)
  assert.equal(estimatePromptTokens({ messages: [{ role: 'user', content: text }] }), 100)
  assert.equal(estimatePromptTokens({ input: text, instructions: text }), 200)
  const items = [{ role: 'user', content: [{ type: 'input_text', text }] }]
  assert.equal(estimatePromptTokens({ input: items }), 100)
  assert.equal(estimatePromptTokens({ prompt: [text, text] }), 200)
  assert.equal(estimatePromptTokens({ input: [text] }), 100)
  const deep = JSON.parse(`${'['.repeat(50_000)}"${text}"${']'.repeat(50_000)}`) as unknown
  assert.equal(estimatePromptTokens({ messages: [{ role: 'user', content: deep }] }), 100)
})

test('a token correction goes where its estimate went, so it leaves the window with it', () => {
  const step = { provider: 'p', model: 'm', limits: { tpm: 1_000 }, providerLimits: undefined } as Step
  const book = new QuotaBook([step])
  const sent = 1_000_000
  book.countTokens(step, 900, sent) // the estimate, counted when the request is sent
  book.countTokens(step, -900, sent + 20_000, sent) // refunded 20 s later: it got no answer
  book.countTokens(step, 1_000, sent + 60_500) // a minute on, the whole limit is spent
  assert.notEqual(book.blockedUntil(step, sent + 60_600, 900), undefined, '1,000 used: 900 more must wait')
})

test('a stream asks for usage as the client (or the Responses translation) did, except of Mistral, which refuses the field and sends usage unasked', () => {
  const translated = toChatRequest({ model: 'r', input: 'hi', stream: true }, [])
  const langchain = { model: 'r', messages: [], stream: true, stream_options: { include_usage: true } }
  const step = (host: string) => ({ model: 'm', host, conflictResolution: undefined }) as unknown as Step
  for (const body of [translated, langchain]) {
    const sent = (host: string) => JSON.parse(rewriteBody(body, step(host))) as Record<string, unknown>
    assert.deepEqual(sent('api.groq.com').stream_options, { include_usage: true })
    assert.equal(sent('api.mistral.ai').stream_options, undefined)
    assert.equal(sent('api.mistral.ai').stream, true)
    assert.equal(sent('api.mistral.ai').model, 'm')
  }
})
