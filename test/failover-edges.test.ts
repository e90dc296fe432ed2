// Failover at its edges: rate-limit hints a provider gets wrong, answers cut short, and what the
// health board and the client make of them. Health is process state, so every test starts a gateway.

import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect } from 'node:net'
import { after, afterEach, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { baseConfig, gatewayKey, type RunningGateway, startGateway } from './gateway-process.ts'
import { type Behaviour, json, MockUpstream, ok, raw, sse, status, textChunks } from './mock-upstream.ts'

let mock: MockUpstream
const running: RunningGateway[] = []
const messages = [{ role: 'user', content: 'hello there' }]

before(async () => {
  mock = await MockUpstream.start()
})
after(() => mock.close())
afterEach(async () => {
  await Promise.all(running.splice(0).map((gw) => gw.stop()))
  mock.reset()
})

type Steps = { provider: string; model?: string; [key: string]: unknown }[]

async function gateway(
  steps: Steps,
  failover: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) {
  const gw = await startGateway(
    baseConfig({
      ...extra,
      default_timeout: '2s',
      failover: { rate_limit_cooldown: '30s', circuit_open: '30s', retry_backoff: '20ms', ...failover },
      providers: ['a', 'b'].map((name) => ({
        name,
        api_key: `sk-${name}-edge-key`,
        base_url: mock.url(name),
      })),
      routes: [{ name: 'r', steps: steps.map((s) => ({ model: `model-${s.provider}`, ...s })) }],
    }),
  )
  running.push(gw)
  return gw
}

async function ask(gw: RunningGateway, body: Record<string, unknown> = {}) {
  const res = await gw.post('/v1/chat/completions', { model: 'r', messages, ...body })
  const text = await res.text()
  return { status: res.status, provider: res.headers.get('x-gateway-provider'), res, text }
}

test('a Retry-After that is neither seconds nor an HTTP date is no hint: the target still cools down', async () => {
  for (const junk of ['-1', '+5', '1,5', 'soon 1']) {
    const gw = await gateway([{ provider: 'a' }, { provider: 'b' }])
    mock.script('a', status(429, 'slow down', { 'retry-after': junk })).always('b', ok('from b'))
    assert.equal((await ask(gw)).provider, 'b', junk)
    // Cooling down for rate_limit_cooldown (30 s), as after a 429 without a hint: not called again.
    assert.equal((await ask(gw)).provider, 'b', junk)
    assert.equal(mock.requests('a').length, 1, `Retry-After: ${junk}`)
    await gw.stop()
    mock.reset()
  }
})

test('a 429 whose body is cut short is still a 429: its Retry-After is kept, streaming or not', async () => {
  const cut: Behaviour = (_req, res) => {
    res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '30', 'content-length': '500' })
    res.write('{"error":{"message":"rate limit reached, ')
    setTimeout(() => res.socket?.destroy(), 20)
  }
  for (const stream of [false, true]) {
    const gw = await gateway([{ provider: 'a' }])
    mock.script('a', cut)
    const answer = await ask(gw, { stream })
    assert.equal(answer.status, 429, `stream: ${stream}: ${answer.text}`)
    assert.equal(JSON.parse(answer.text).error.code, 'rate_limit_exceeded')
    assert.equal(answer.res.headers.get('retry-after'), '30')
    await gw.stop()
    mock.reset()
  }
})

const target = async (gw: RunningGateway, provider: string) => {
  const snapshot = (await (await gw.get('/v1/gateway/status')).json()) as {
    targets: { provider: string; state: string }[]
  }
  return snapshot.targets.find((t) => t.provider === provider)
}

test('a step waited for until little of the budget is left is not marked down when the budget cuts it', async () => {
  const gw = await gateway([{ provider: 'a' }], { max_retries: 0 }, { timeouts: { total: '2s' } })
  const slowOk: Behaviour = async (req, res) => {
    await sleep(1_000)
    await ok()(req, res)
  }
  mock.script('a', status(429, 'slow down', { 'retry-after': '1.6' }), slowOk)
  assert.equal((await ask(gw)).status, 429)
  // Waits out the 1.6 s the provider asked for, then has well under its share of the budget left.
  const waited = await ask(gw)
  assert.equal(waited.status, 504, waited.text)
  assert.equal(mock.requests('a').length, 2)
  assert.equal((await target(gw, 'a'))?.state, 'healthy', 'a had 0.4 s of its 2 s')
})

test('a request that has used up max_attempts answers at once, without waiting for a retry it cannot make', async () => {
  const gw = await gateway([{ provider: 'a' }], { max_attempts: 1 })
  mock.script('a', status(429, 'slow down', { 'retry-after': '2' }))
  const started = performance.now()
  const answer = await ask(gw)
  const took = performance.now() - started
  assert.equal(answer.status, 429)
  assert.equal(mock.requests('a').length, 1)
  assert.ok(took < 1_000, `took ${Math.round(took)} ms`)
})

test('a failure that opens the circuit is not retried after a wait: the step is answered for at once', async () => {
  const gw = await gateway([{ provider: 'a' }], { circuit_failures: 1 })
  mock.script('a', status(503, 'overloaded', { 'retry-after': '2' }))
  const started = performance.now()
  const answer = await ask(gw)
  const took = performance.now() - started
  assert.equal(answer.status, 502, answer.text)
  assert.equal(mock.requests('a').length, 1)
  assert.ok(took < 1_000, `took ${Math.round(took)} ms`)
})

test('rate-limit headers with requests and tokens to spare are no hint: a 503 on the last step is retried', async () => {
  // Groq and OpenAI send these on every answer; here no limit was hit, so they say nothing of when to retry.
  const spare = {
    'x-ratelimit-limit-requests': '14400',
    'x-ratelimit-remaining-requests': '14370',
    'x-ratelimit-reset-requests': '2m59.56s',
    'x-ratelimit-limit-tokens': '6000',
    'x-ratelimit-remaining-tokens': '5400',
    'x-ratelimit-reset-tokens': '6s',
  }
  const window = { 'x-ratelimit-limit': '60', 'x-ratelimit-remaining': '59', 'x-ratelimit-reset': '45' }
  for (const headers of [spare, window]) {
    const gw = await gateway([{ provider: 'a' }])
    mock.script('a', status(503, 'over capacity', headers), ok('on the retry'))
    const answer = await ask(gw)
    assert.equal(answer.status, 200, answer.text)
    assert.equal(mock.requests('a').length, 2)
    await gw.stop()
    mock.reset()
  }
})

test('a step rate limited while the others refused the request itself: 429 with its Retry-After, not 502 or 400', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }])
  mock
    .script('a', status(429, 'slow down', { 'retry-after': '30' }))
    .always('b', status(400, 'context length exceeded'))
  // a answers 429, then is skipped while it cools down; b refuses this prompt either way.
  for (const turn of ['answered 429', 'skipped']) {
    const answer = await ask(gw)
    assert.equal(answer.status, 429, `${turn}: ${answer.text}`)
    assert.equal(JSON.parse(answer.text).error.code, 'rate_limit_exceeded')
    const retryAfter = Number(answer.res.headers.get('retry-after'))
    assert.ok(retryAfter >= 29 && retryAfter <= 30, `${turn}: Retry-After ${retryAfter}`)
  }
  assert.equal(mock.requests('a').length, 1)
})

test('a 429 without a hint tells the client to wait out the cooldown it started, not one second', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }])
  mock.always('a', status(429, 'slow down')).always('b', status(429, 'slow down'))
  const answer = await ask(gw)
  assert.equal(answer.status, 429, answer.text)
  // Both cool down for rate_limit_cooldown (30 s here): asked again sooner, they would only be tried anyway.
  const retryAfter = Number(answer.res.headers.get('retry-after'))
  assert.ok(retryAfter >= 29 && retryAfter <= 30, `Retry-After ${retryAfter}`)
})

test('a declared quota used up is kept even while the target also cools down or its circuit is open', async () => {
  // Cooling down without a hint, the only step would be tried anyway; its rpm says it may not be.
  const gw = await gateway([{ provider: 'a', limits: { rpm: 2 } }], { max_retries: 0 })
  mock.script('a', ok(), status(429, 'slow down')).always('a', ok('a third call'))
  assert.equal((await ask(gw)).status, 200)
  assert.equal((await ask(gw)).status, 429)
  const third = await ask(gw)
  assert.equal(third.status, 429, third.text)
  assert.equal(mock.requests('a').length, 2, 'rpm 2: no third call within the minute')
  const retryAfter = Number(third.res.headers.get('retry-after'))
  assert.ok(retryAfter > 30 && retryAfter <= 60, `Retry-After ${retryAfter}: when the minute frees a request`)
})

test('a budget spent before any step could start (a slow upload) is a 504, not a 503 with no time to give', async () => {
  const gw = await gateway([{ provider: 'a' }], {}, { timeouts: { total: '500ms' } })
  mock.always('a', ok())
  const body = JSON.stringify({ model: 'r', messages })
  const { port } = new URL(gw.url)
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${gatewayKey}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`,
  )
  socket.write(body.slice(0, 10))
  await sleep(700)
  socket.end(body.slice(10))
  let answer = ''
  for await (const chunk of socket) answer += chunk
  const [head = '', text = ''] = answer.split('\r\n\r\n')
  assert.match(head, /^HTTP\/1.1 504 /, answer)
  assert.equal(JSON.parse(text).error.code, 'gateway_timeout')
  assert.doesNotMatch(head, /retry-after: Infinity/i)
  assert.equal(mock.requests('a').length, 0)
})

test('a 200 that relays a provider 429 in its body (OpenRouter) is a 429: the target cools down, the client gets 429', async () => {
  // As OpenRouter answers when the provider behind it is rate limited, with the reset it relays.
  const relayed = () =>
    json(200, {
      error: {
        message: 'Provider returned error',
        code: 429,
        metadata: {
          headers: { 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(Date.now() + 30_000) },
          provider_name: 'Kluster',
        },
      },
    })
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }])
  mock
    .script('a', (req, res) => relayed()(req, res))
    .always('b', status(429, 'slow down', { 'retry-after': '40' }))
  const answer = await ask(gw)
  assert.equal(answer.status, 429, answer.text)
  const retryAfter = Number(answer.res.headers.get('retry-after'))
  assert.ok(retryAfter >= 29 && retryAfter <= 30, `Retry-After ${retryAfter}`)
  assert.equal((await target(gw, 'a'))?.state, 'cooling_down')
})

test('a stream whose first event relays a provider 429 (OpenRouter) is a 429 too: next step, then the target cools down', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }])
  const relayed = { error: { message: 'Provider returned error', code: 429 } }
  mock.script('a', sse([relayed], { end: 'no_done' })).always('b', sse(textChunks('from b')))
  const res = await gw.post('/v1/chat/completions', { model: 'r', messages, stream: true })
  assert.equal(res.headers.get('x-gateway-provider'), 'b')
  assert.match(await res.text(), /from/)
  assert.equal((await target(gw, 'a'))?.state, 'cooling_down')
})

test('an error body wrapped in a list (Gemini) is reported by its message, not as raw JSON', async () => {
  const gw = await gateway([{ provider: 'a' }], { max_retries: 0 })
  const gemini = [{ error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } }]
  mock.script('a', json(503, gemini))
  const answer = await ask(gw)
  assert.equal(answer.status, 502)
  const { message } = JSON.parse(answer.text).error as { message: string }
  assert.match(message, /a\/model-a: HTTP 503: The model is overloaded\./)
  assert.doesNotMatch(message, /UNAVAILABLE|\[\{/)
})

test('an HTML error page (a proxy in front of the provider) is reported by its title, not as raw markup', async () => {
  const gw = await gateway([{ provider: 'a' }], { max_retries: 0 })
  const page =
    '<!DOCTYPE html>\n<html lang="en-US"><head><title>api.example.com | 522: Connection timed out</title>' +
    '<meta charset="UTF-8" /><style>body{margin:0}</style></head><body><div id="cf-wrapper">…</div></body></html>'
  mock.script('a', raw(522, page, 'text/html; charset=UTF-8'))
  const answer = await ask(gw)
  const { message } = JSON.parse(answer.text).error as { message: string }
  assert.match(message, /a\/model-a: HTTP 522: api\.example\.com \| 522: Connection timed out/)
  assert.doesNotMatch(message, /<|DOCTYPE|style/)
})

test('answers larger than max_answer_size are not retried and do not open a healthy provider’s circuit', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], {}, { max_answer_size: '1kb' })
  const big = ok('x'.repeat(4_000))
  mock.script('a', big, big, big, ok('small')).always('b', ok('from b'))
  for (let i = 0; i < 3; i++) assert.equal((await ask(gw)).provider, 'b')
  // a answered every time: it is as healthy as a provider that refused a prompt too long for it.
  assert.equal((await ask(gw)).provider, 'a')

  const single = await gateway([{ provider: 'a' }], {}, { max_answer_size: '1kb' })
  mock.reset()
  mock.script('a', big, big)
  const answer = await ask(single)
  assert.equal(mock.requests('a').length, 1, 'the same request gets the same answer: not asked twice')
  assert.equal(JSON.parse(answer.text).error.code, 'request_rejected', answer.text)
})

test('an answer larger than max_answer_size was still answered: its prompt stays counted against the quota', async () => {
  // 'hello there' is 3 tokens by the estimate: a second request within the minute would make 6.
  const gw = await gateway([{ provider: 'a', limits: { tpm: 5 } }], {}, { max_answer_size: '1kb' })
  mock.script('a', ok('x'.repeat(4_000))).always('a', ok('small'))
  const first = await ask(gw)
  assert.equal(JSON.parse(first.text).error.code, 'request_rejected', first.text)
  const second = await ask(gw)
  assert.equal(second.status, 429, second.text)
  assert.equal(mock.requests('a').length, 1, 'the provider counted the tokens of the answer it gave')
})

test('a step that refused the request when retried after its 429 is a refusal: 400, not a 429 to retry', async () => {
  const gw = await gateway([{ provider: 'a' }])
  mock
    .script('a', status(429, 'slow down', { 'retry-after': '1' }))
    .always('a', status(400, 'context length exceeded'))
  const answer = await ask(gw)
  assert.equal(mock.requests('a').length, 2, 'retried after its hint')
  assert.equal(answer.status, 400, answer.text)
  assert.equal(JSON.parse(answer.text).error.code, 'request_rejected')
  assert.match(answer.text, /HTTP 429: slow down; a\/model-a: HTTP 400: context length exceeded/)
})

test('a step tried anyway while it cooled down, and rate limited again, gives the cooldown it started as Retry-After', async () => {
  const gw = await gateway([{ provider: 'a' }], { rate_limit_cooldown: '2s' })
  mock.always('a', status(429, 'slow down'))
  assert.equal((await ask(gw)).status, 429)
  await sleep(1_500)
  // Half a second of the first cooldown left: the step is tried anyway, and its second 429 doubles it.
  const answer = await ask(gw)
  assert.equal(mock.requests('a').length, 2)
  assert.equal(answer.status, 429, answer.text)
  const retryAfter = Number(answer.res.headers.get('retry-after'))
  assert.ok(
    retryAfter >= 3 && retryAfter <= 4,
    `Retry-After ${retryAfter}: the 4 s cooldown, not what was left of 2 s`,
  )
})
