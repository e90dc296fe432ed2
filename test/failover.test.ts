// Rate-limit-aware failover across requests: cooldowns from hints, the circuit breaker, retries,
// phase timeouts and budgets, quotas, and the status endpoint. Health is process state, so every test
// starts a gateway of its own.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { after, afterEach, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { baseConfig, type RunningGateway, startGateway } from './gateway-process.ts'
import {
  type Behaviour,
  chunk,
  hang,
  json,
  MockUpstream,
  ok,
  reset,
  sse,
  status,
  textChunks,
} from './mock-upstream.ts'

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
      default_timeout: '2s',
      failover: {
        rate_limit_cooldown: '400ms',
        circuit_open: '400ms',
        retry_backoff: '20ms',
        max_wait: '2s',
        ...failover,
      },
      providers: ['a', 'b', 'c'].map((name) => ({
        name,
        api_key: `sk-${name}-failover-key`,
        base_url: mock.url(name),
      })),
      routes: [{ name: 'r', steps: steps.map((s) => ({ model: `model-${s.provider}`, ...s })) }],
      ...extra,
    }),
  )
  running.push(gw)
  return gw
}

async function ask(gw: RunningGateway, body: Record<string, unknown> = {}) {
  const res = await gw.post('/v1/chat/completions', { model: 'r', messages, ...body })
  const text = await res.text()
  return {
    status: res.status,
    provider: res.headers.get('x-gateway-provider'),
    attempts: res.headers.get('x-gateway-attempts'),
    res,
    text,
  }
}

const statusOf = async (gw: RunningGateway) =>
  (await (await gw.get('/v1/gateway/status')).json()) as {
    targets: {
      provider: string
      state: string
      until: string | null
      reason: string | null
      recent: { attempts: number }
    }[]
    routes: {
      name: string
      next: { provider: string } | null
      steps: { provider: string; available: boolean; reason?: string }[]
    }[]
  }

const target = async (gw: RunningGateway, provider: string) =>
  (await statusOf(gw)).targets.find((t) => t.provider === provider)

test('a 429 cools the target down for as long as its hint says, in every hint format', async () => {
  // Absolute times are taken when the 429 is sent, not when the script is written.
  const at =
    (make: () => Behaviour): Behaviour =>
    (req, res) =>
      make()(req, res)
  const hints: [string, Behaviour][] = [
    ['Retry-After seconds', status(429, 'slow', { 'retry-after': '30' })],
    [
      'Retry-After date',
      at(() => status(429, 'slow', { 'retry-after': new Date(Date.now() + 30_000).toUTCString() })),
    ],
    ['retry-after-ms', status(429, 'slow', { 'retry-after-ms': '30000' })],
    [
      'x-ratelimit-reset-requests',
      status(429, 'slow', { 'x-ratelimit-reset-requests': '30s', 'x-ratelimit-remaining-requests': '0' }),
    ],
    [
      'x-ratelimit-reset epoch ms',
      at(() => status(429, 'slow', { 'x-ratelimit-reset': String(Date.now() + 30_000) })),
    ],
    [
      'Gemini RetryInfo',
      json(429, {
        error: {
          code: 429,
          details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '30s' }],
        },
      }),
    ],
    [
      'OpenRouter metadata',
      at(() =>
        json(429, {
          error: {
            message: 'limited',
            metadata: { headers: { 'X-RateLimit-Reset': String(Date.now() + 30_000) } },
          },
        }),
      ),
    ],
  ]
  for (const [name, behaviour] of hints) {
    const gw = await gateway([{ provider: 'a' }, { provider: 'b' }])
    mock.script('a', behaviour).always('b', ok('from b'))
    assert.equal((await ask(gw)).provider, 'b', name)
    const a = await target(gw, 'a')
    assert.equal(a?.state, 'cooling_down', name)
    const left = Date.parse(a?.until ?? '') - Date.now()
    assert.ok(left > 20_000 && left <= 31_000, `${name}: cooling for ${left} ms`)
    // Skipped without a network call while cooling.
    assert.equal((await ask(gw)).provider, 'b', name)
    assert.equal(mock.requests('a').length, 1, name)
    await gw.stop()
    mock.reset()
  }
})

test('a persistent 429 without a hint is not hammered: the cooldown grows', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], { rate_limit_cooldown: '200ms' })
  mock.always('a', status(429)).always('b', ok())
  const started = Date.now()
  while (Date.now() - started < 2_000) {
    assert.equal((await ask(gw)).status, 200)
    await sleep(20)
  }
  // 200 ms, 400 ms, 800 ms, 1600 ms: about four tries in two seconds, against ~90 requests.
  const tries = mock.requests('a').length
  assert.ok(tries >= 2 && tries <= 5, `${tries} requests reached the rate-limited provider`)
})

test('a 500 then healthy: the last step retries once and succeeds', async () => {
  const gw = await gateway([{ provider: 'a' }])
  mock.script('a', status(500), ok('second time lucky'))
  const { status: code, provider, attempts, text } = await ask(gw)
  assert.equal(code, 200)
  assert.equal(provider, 'a')
  assert.equal(attempts, '2')
  assert.match(text, /second time lucky/)
})

test('a step that fails again on its retry is counted once in the error, with both attempts', async () => {
  const gw = await gateway([{ provider: 'a' }])
  mock.always('a', status(500))
  const { status: code, text } = await ask(gw)
  assert.equal(code, 502)
  const { message } = JSON.parse(text).error
  assert.match(message, /^All 1 step\(s\) of route "r" failed after 2 attempts\. /)
  assert.equal(message.match(/a\/model-a: /g)?.length, 2)
})

test('a 500 with another step available moves on, and the primary is used again next time', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }])
  mock.script('a', status(500), ok('a is back')).always('b', ok('from b'))
  assert.equal((await ask(gw)).provider, 'b')
  assert.equal((await ask(gw)).provider, 'a')
  assert.equal(mock.requests('b').length, 1)
})

test('a persistent 503 opens the circuit: skipped without a call, then one probe', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], {
    circuit_failures: 3,
    circuit_open: '500ms',
  })
  mock.always('a', status(503)).always('b', ok())
  for (let i = 0; i < 3; i++) assert.equal((await ask(gw)).provider, 'b')
  assert.equal(mock.requests('a').length, 3)
  assert.equal((await target(gw, 'a'))?.state, 'circuit_open')
  for (let i = 0; i < 5; i++) assert.equal((await ask(gw)).provider, 'b')
  assert.equal(mock.requests('a').length, 3, 'no calls while the circuit is open')
  await gw.waitForLog((l) => l.msg === 'circuit opened' && l.provider === 'a')
  await sleep(550)
  // Half-open: concurrent requests, exactly one probe.
  mock.script('a', async (req, res) => {
    await sleep(200)
    await status(503)(req, res)
  })
  const results = await Promise.all([ask(gw), ask(gw), ask(gw)])
  assert.ok(results.every((r) => r.provider === 'b'))
  assert.equal(mock.requests('a').length, 4, 'one probe')
  assert.equal((await target(gw, 'a'))?.state, 'circuit_open', 'a failed probe re-opens the circuit')
})

test('requests failing together open the circuit once, not once each with doubled times', async () => {
  const gw = await gateway([{ provider: 'a', timeout: '300ms' }], { circuit_open: '5s', max_retries: 0 })
  mock.always('a', hang())
  const started = Date.now()
  const answers = await Promise.all([ask(gw), ask(gw), ask(gw), ask(gw)])
  assert.deepEqual(
    answers.map((a) => a.status),
    [502, 502, 502, 502],
  )
  const a = await target(gw, 'a')
  assert.equal(a?.state, 'circuit_open')
  const openFor = Date.parse(String(a?.until)) - started
  assert.ok(openFor < 8_000, `open for ${openFor} ms: 5 s once, not 40 s after four doublings`)
})

test('a reset before headers counts as a failure and falls back', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], { circuit_failures: 2 })
  mock.always('a', reset()).always('b', ok())
  assert.equal((await ask(gw)).provider, 'b')
  assert.equal((await ask(gw)).provider, 'b')
  assert.equal((await target(gw, 'a'))?.state, 'circuit_open')
})

test('a provider that never answers costs one timeout, not one per request or retry', async () => {
  const gw = await gateway([{ provider: 'a', timeout: '300ms' }, { provider: 'b' }])
  mock.always('a', hang()).always('b', ok())
  let started = performance.now()
  assert.equal((await ask(gw)).provider, 'b')
  const first = performance.now() - started
  assert.ok(first >= 280 && first < 1_500, `first request took ${first} ms`)
  started = performance.now()
  assert.equal((await ask(gw)).provider, 'b')
  const second = performance.now() - started
  assert.ok(second < 200, `second request took ${second} ms: the silent provider was skipped`)
  assert.equal(mock.requests('a').length, 1)
})

test('a silent single step fails within its timeout, without retrying', async () => {
  const gw = await gateway([{ provider: 'a', timeout: '300ms' }])
  mock.always('a', hang())
  const started = performance.now()
  const { status: code, text } = await ask(gw)
  const took = performance.now() - started
  assert.equal(code, 502)
  assert.match(text, /timed out after 300 ms/)
  assert.ok(took < 1_500, `took ${took} ms`)
  assert.equal(mock.requests('a').length, 1)
})

test('headers that never come are bounded by timeouts.headers', async () => {
  const gw = await gateway([{ provider: 'a', timeouts: { headers: '200ms' } }, { provider: 'b' }])
  mock.always('a', hang()).always('b', ok())
  const started = performance.now()
  assert.equal((await ask(gw)).provider, 'b')
  assert.ok(performance.now() - started < 1_000)
  const line = await gw.waitForLog((l) => l.msg === 'upstream attempt failed')
  assert.match(String(line.reason), /response headers/)
})

test('a slow first token falls back to the next step', async () => {
  const gw = await gateway([{ provider: 'a', timeouts: { first_token: '300ms' } }, { provider: 'b' }])
  mock.script(
    'a',
    sse([chunk({ role: 'assistant', content: '' }), chunk({ content: 'late' })], { delayMs: 1_000 }),
  )
  mock.script('b', sse(textChunks('quick answer')))
  const started = performance.now()
  const { provider, text } = await ask(gw, { stream: true })
  assert.equal(provider, 'b')
  assert.ok(performance.now() - started < 1_000)
  assert.ok(!text.includes('late'))
  assert.match(text, /quick/)
})

test('a stream stalling after content is bounded by timeouts.idle', async () => {
  const gw = await gateway([{ provider: 'a', timeouts: { idle: '250ms' } }])
  mock.script('a', sse(textChunks('stalls now'), { end: 'hang' }))
  const started = performance.now()
  const { text } = await ask(gw, { stream: true })
  assert.ok(performance.now() - started < 1_500)
  assert.match(text, /stream_interrupted/)
  assert.match(text, /no data from the provider for 250 ms/)
})

test('a long but steady stream is not cut by the attempt limit', async () => {
  const gw = await gateway([{ provider: 'a', timeout: '300ms' }])
  mock.script('a', sse(textChunks('one two three four five six seven eight nine ten'), { delayMs: 80 }))
  const { text } = await ask(gw, { stream: true })
  assert.match(text, /ten/)
  assert.match(text, /data: \[DONE\]/)
})

test('the request budget (timeouts.total) bounds the whole route', async () => {
  const gw = await gateway(
    [
      { provider: 'a', timeout: '400ms' },
      { provider: 'b', timeout: '400ms' },
      { provider: 'c', timeout: '400ms' },
    ],
    {},
    { timeouts: { total: '600ms' } },
  )
  mock.always('a', hang()).always('b', hang()).always('c', hang())
  const started = performance.now()
  const { status: code, text } = await ask(gw)
  const took = performance.now() - started
  assert.equal(code, 504)
  assert.match(text, /gateway_timeout/)
  assert.ok(took >= 550 && took < 1_200, `took ${took} ms`)
  assert.equal(mock.requests('c').length, 0)
})

test('a provider silent for the whole budget is still marked, so the next request goes elsewhere', async () => {
  // The attempt limit (default 2 s here) is longer than the budget: the budget is what cuts it.
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], {}, { timeouts: { total: '500ms' } })
  mock.always('a', hang()).always('b', ok())
  assert.equal((await ask(gw)).status, 504)
  assert.equal((await target(gw, 'a'))?.state, 'circuit_open')
  const next = await ask(gw)
  assert.equal(next.provider, 'b')
})

test('a later step the budget left less than its own limit is not marked when the budget cuts it', async () => {
  const gw = await gateway(
    [{ provider: 'a', timeout: '600ms' }, { provider: 'b' }],
    {},
    { timeouts: { total: '1s' } },
  )
  const slowOk: Behaviour = async (req, res) => {
    await sleep(800)
    await ok()(req, res)
  }
  mock.always('a', hang()).always('b', slowOk)
  assert.equal((await ask(gw)).status, 504)
  assert.notEqual((await target(gw, 'a'))?.state, 'healthy', 'a used its whole limit')
  assert.equal((await target(gw, 'b'))?.state, 'healthy', 'b had 400 ms of its 2 s')
})

test('a later step silent for what is left of the budget is marked when earlier steps took little of it', async () => {
  // The budget is shorter than b's own limit (2 s): b still had nearly all of it, and said nothing.
  const gw = await gateway(
    [{ provider: 'a' }, { provider: 'b' }, { provider: 'c' }],
    {},
    { timeouts: { total: '800ms' } },
  )
  mock.always('a', status(400, 'unsupported parameter')).always('b', hang()).always('c', ok())
  assert.equal((await ask(gw)).status, 504)
  assert.notEqual((await target(gw, 'b'))?.state, 'healthy')
  assert.equal((await ask(gw)).provider, 'c')
})

test('a stream cut by the request budget says so, and the provider is not blamed', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], {}, { timeouts: { total: '1s' } })
  const words = Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ')
  mock.script('a', sse(textChunks(words), { delayMs: 30 }))
  const { text } = await ask(gw, { stream: true })
  assert.match(text, /stream_interrupted/)
  assert.match(
    text,
    /time limit \(timeouts\.total\) ran out"/,
    'no number: what was left at the commit is not the limit',
  )
  assert.doesNotMatch(text, /no data from the provider/)
  assert.equal((await target(gw, 'a'))?.state, 'healthy', 'a steady provider stays in use')
})

test('a context-length 400 goes to the next step without retrying the same model', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }])
  mock.always('a', status(400, "This model's maximum context length is 8192 tokens")).always('b', ok())
  assert.equal((await ask(gw)).provider, 'b')
  assert.equal(mock.requests('a').length, 1)
  assert.equal((await target(gw, 'a'))?.state, 'healthy', 'a refused request is no mark against the provider')
})

test('every step refusing the request is a 400 that says why', async () => {
  const gw = await gateway([{ provider: 'a' }])
  mock.always('a', status(400, 'maximum context length exceeded'))
  const { status: code, text } = await ask(gw)
  assert.equal(code, 400)
  assert.match(text, /"code":"request_rejected"/)
  assert.match(text, /maximum context length exceeded/)
  assert.equal(mock.requests('a').length, 1)
})

test('a 429 in flight that says how long lengthens the cooldown and makes it firm', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }])
  const late429: Behaviour = async (req, res) => {
    await sleep(200)
    await status(429, 'slow down', { 'retry-after': '30' })(req, res)
  }
  mock.script('a', status(429, 'slow down'), late429).always('b', ok())
  await Promise.all([ask(gw), ask(gw)])
  const line = await gw.waitForLog((l) => l.msg === 'cooling down' && l.firm === true)
  assert.equal(line.forMs, 30_000)
  const left = Date.parse((await target(gw, 'a'))?.until ?? '') - Date.now()
  assert.ok(left > 29_000, `cooling down for ${left} ms`)
})

test('a step waited for that is rate limited again reports its new wait, not the one already spent', async () => {
  const gw = await gateway([{ provider: 'a' }], { max_wait: '5s', max_retries: 0 })
  mock.script(
    'a',
    status(429, 'slow down', { 'retry-after': '1' }),
    status(429, 'slow down', { 'retry-after': '30' }),
  )
  assert.equal((await ask(gw)).status, 429)
  const second = await ask(gw) // waits out the second, tries, and is told 30 s
  assert.equal(mock.requests('a').length, 2)
  assert.equal(second.status, 429, second.text)
  assert.equal(second.res.headers.get('retry-after'), '30', second.text)
  assert.match(second.text, /a\/model-a: HTTP 429: slow down"/)
})

test('requests waiting on a half-open probe that fails do not all call the target', async () => {
  const gw = await gateway([{ provider: 'a', timeout: '6s' }], {
    circuit_failures: 1,
    circuit_open: '400ms',
    circuit_open_max: '1m',
    max_wait: '10s',
  })
  mock.always('a', status(503))
  assert.equal((await ask(gw)).status, 502)
  await sleep(450) // half-open now
  const slow503: Behaviour = async (req, res) => {
    await sleep(300)
    await status(503)(req, res)
  }
  mock.script('a', slow503)
  const probe = ask(gw)
  await sleep(50)
  const waiting = await Promise.all([ask(gw), ask(gw), ask(gw)])
  assert.equal((await probe).status, 502)
  assert.ok(waiting.every((w) => w.status !== 200))
  assert.equal(mock.requests('a').length, 2, 'the first failure and the probe; the waiters call nothing')
  const left = Date.parse((await target(gw, 'a'))?.until ?? '') - Date.now()
  assert.ok(left <= 800, `re-opened once for twice as long, not once per waiter (${left} ms)`)
  // What they are told is the state after the wait (the circuit open again, 0.8 s), not the probe's 6 s.
  for (const w of waiting) {
    assert.equal(w.status, 503, w.text)
    assert.equal(w.res.headers.get('retry-after'), '1', w.text)
    assert.match(w.text, /circuit open after failures or a timeout \(ready in 1 s\)/)
  }
})

test('a redirect is the target at fault, not the request: a 502 that names the new address', async () => {
  const gw = await gateway([{ provider: 'a' }])
  const moved = 'https://api.example.com/v1/chat/completions'
  mock.always('a', json(301, { html: '<html>Moved Permanently</html>' }, { location: moved }))
  for (let i = 0; i < 3; i++) {
    const { status: code, text } = await ask(gw)
    assert.equal(code, 502)
    assert.match(text, /"code":"upstream_failed"/)
    assert.ok(text.includes(`redirected to ${moved}`), text)
    assert.equal(mock.requests('a').length, i + 1, 'not retried: a moved base_url stays moved')
  }
  assert.equal((await target(gw, 'a'))?.state, 'circuit_open', 'counted like any failure of the target')
})

test('a primary that is down for a while: served by the fallback, few probes, back when it recovers', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], {
    circuit_failures: 2,
    circuit_open: '300ms',
    circuit_open_max: '300ms',
  })
  let down = true
  mock
    .always('a', (req, res) => (down ? status(503)(req, res) : ok('primary')(req, res)))
    .always('b', ok('fallback'))
  const started = Date.now()
  while (Date.now() - started < 1_500) {
    const { status: code } = await ask(gw)
    assert.equal(code, 200)
    await sleep(25)
  }
  const whileDown = mock.requests('a').length
  // Two failures open the circuit, then about one probe per 300 ms.
  assert.ok(whileDown <= 8, `${whileDown} requests reached the failing primary in 1.5 s`)
  assert.ok(mock.requests('b').length > 20)
  down = false
  await sleep(350)
  const recovered = await ask(gw)
  assert.equal(recovered.provider, 'a')
  assert.equal((await ask(gw)).provider, 'a')
  await gw.waitForLog((l) => l.msg === 'circuit closed' && l.provider === 'a')
})

test('every step cooling down without a hint: the soonest is tried anyway', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], {
    rate_limit_cooldown: '10s',
    max_retries: 0,
  })
  mock.script('a', status(429)).script('b', status(429))
  assert.equal((await ask(gw)).status, 429)
  mock.script('a', ok('a recovered'))
  const { status: code, provider, attempts, text } = await ask(gw)
  assert.equal(code, 200)
  assert.equal(provider, 'a', 'a cooled down first, so it recovers first')
  assert.equal(attempts, '1')
  assert.match(text, /a recovered/)
})

test('a single-step route keeps serving after a hintless 429', async () => {
  const gw = await gateway([{ provider: 'a' }], { rate_limit_cooldown: '10s' })
  mock.script('a', status(429), ok('still here'))
  assert.equal((await ask(gw)).status, 429)
  assert.equal((await ask(gw)).status, 200)
})

test('every step cooling down with a hint: wait for the soonest when it fits, else an honest 429', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], { max_retries: 0, max_wait: '1s' })
  mock
    .script('a', status(429, 'slow', { 'retry-after-ms': '500' }))
    .script('b', status(429, 'slow', { 'retry-after': '30' }))
  assert.equal((await ask(gw)).status, 429)
  mock.script('a', ok('after the wait'))
  const started = performance.now()
  const waited = await ask(gw)
  const took = performance.now() - started
  assert.equal(waited.status, 200)
  assert.equal(waited.provider, 'a')
  assert.ok(took >= 300, `answered after ${took} ms: never before the hint`)

  mock.script('a', status(429, 'slow', { 'retry-after': '20' }))
  assert.equal((await ask(gw)).status, 429)
  const before = mock.requests('a').length
  const refused = await ask(gw)
  assert.equal(refused.status, 429)
  assert.match(refused.res.headers.get('retry-after') ?? '', /^(19|20)$/)
  assert.match(refused.text, /skipped, cooling down after a rate limit/)
  assert.equal(mock.requests('a').length, before, 'nothing was sent before the hint')
})

test('the last step retries after a short Retry-After, never sooner', async () => {
  const gw = await gateway([{ provider: 'a' }])
  mock.script('a', status(429, 'slow', { 'retry-after-ms': '300' }), ok('patient'))
  const started = performance.now()
  const { status: code, attempts } = await ask(gw)
  assert.equal(code, 200)
  assert.equal(attempts, '2')
  assert.ok(performance.now() - started >= 290)
})

test('max_attempts caps upstream calls per request', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }, { provider: 'c' }], { max_attempts: 2 })
  mock.always('a', status(500)).always('b', status(500)).always('c', ok())
  assert.equal((await ask(gw)).status, 502)
  assert.equal(mock.requests('c').length, 0)
})

test('a refused key cools the target down for long and is logged loudly', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], { auth_cooldown: '15m' })
  mock.always('a', status(401, 'invalid api key')).always('b', ok())
  assert.equal((await ask(gw)).provider, 'b')
  const line = await gw.waitForLog((l) => l.msg === 'provider refused the key')
  assert.equal(line.level, 'error')
  assert.equal(line.provider, 'a')
  const a = await target(gw, 'a')
  assert.equal(a?.reason, 'auth')
  assert.ok(Date.parse(a?.until ?? '') - Date.now() > 14 * 60_000)
})

test('declared quotas skip a step before the provider has to say 429', async () => {
  const gw = await gateway([
    { provider: 'a', limits: { rpm: 2 } },
    { provider: 'b', limits: { tpm: 100 } },
    { provider: 'c' },
  ])
  mock
    .always('a', ok())
    .always('b', json(200, { choices: [], usage: { total_tokens: 99 } }))
    .always('c', ok())
  assert.equal((await ask(gw)).provider, 'a')
  assert.equal((await ask(gw)).provider, 'a')
  assert.equal((await ask(gw)).provider, 'b', 'rpm 2 used up: a is skipped')
  assert.equal((await ask(gw)).provider, 'c', '99 of 100 tokens used: the next prompt would not fit')
  assert.equal(mock.requests('a').length, 2)
  assert.equal(mock.requests('b').length, 1)
  const snapshot = await statusOf(gw)
  assert.equal(snapshot.routes[0]?.steps[0]?.reason, 'quota')
})

test('concurrent prompts count against tpm as they start, not only once answered', async () => {
  // Each prompt is estimated at 75 tokens (300 characters), so only one fits in 100 at a time.
  const gw = await gateway([{ provider: 'a', limits: { tpm: 100 } }, { provider: 'b' }])
  const slow: Behaviour = async (req, res) => {
    await sleep(200)
    await json(200, { choices: [], usage: { total_tokens: 80 } })(req, res)
  }
  mock.always('a', slow).always('b', ok())
  const prompt = [{ role: 'user', content: 'x'.repeat(300) }]
  const answers = await Promise.all(Array.from({ length: 5 }, () => ask(gw, { messages: prompt })))
  assert.equal(mock.requests('a').length, 1, 'one prompt fits the quota; the others go to b')
  assert.equal(answers.filter((a) => a.provider === 'b').length, 4)
})

test('a refused attempt gives its estimated tokens back to the quota', async () => {
  const gw = await gateway([{ provider: 'a', limits: { tpm: 100 } }, { provider: 'b' }])
  mock.script('a', status(400, 'bad request')).always('b', ok())
  const prompt = [{ role: 'user', content: 'x'.repeat(300) }]
  assert.equal((await ask(gw, { messages: prompt })).provider, 'b')
  mock.always('a', ok())
  assert.equal(
    (await ask(gw, { messages: prompt })).provider,
    'a',
    'the refused prompt used none of the quota',
  )
})

test('a burst of 429s from requests already in flight is one cooldown, not one doubling each', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], {
    rate_limit_cooldown: '1s',
    rate_limit_cooldown_max: '10m',
  })
  const slow429: Behaviour = async (req, res) => {
    await sleep(300)
    await status(429, 'slow down')(req, res)
  }
  mock.always('a', slow429).always('b', ok())
  const answers = await Promise.all(Array.from({ length: 8 }, () => ask(gw)))
  assert.ok(answers.every((a) => a.provider === 'b'))
  const a = await target(gw, 'a')
  assert.equal(a?.state, 'cooling_down')
  const left = Date.parse(a?.until ?? '') - Date.now()
  assert.ok(left > 0 && left <= 1_000, `cooling down for ${left} ms, not 2^7 s`)
})

test('requests waiting on a half-open probe go on when it succeeds, not when its time would be up', async () => {
  // The probe's own limit (6 s) is past max_wait (2 s): its verdict is still worth waiting for.
  const gw = await gateway([{ provider: 'a', timeout: '6s' }], { circuit_failures: 1, max_wait: '2s' })
  mock.script('a', status(503)).always('a', ok())
  assert.equal((await ask(gw)).status, 502)
  await sleep(450) // the circuit (400 ms) is half-open now
  const slowOk: Behaviour = async (req, res) => {
    await sleep(500)
    await ok()(req, res)
  }
  mock.script('a', slowOk).always('a', ok())
  const started = performance.now()
  const probe = ask(gw)
  await sleep(50)
  const waiting = await Promise.all([ask(gw), ask(gw), ask(gw)])
  assert.equal((await probe).status, 200)
  assert.ok(waiting.every((w) => w.status === 200))
  const took = performance.now() - started
  assert.ok(took < 3_000, `took ${Math.round(took)} ms; the probe's own limit is 6 s`)
})

test('provider limits are shared by every route on that provider', async () => {
  const gw = await startGateway(
    baseConfig({
      providers: [
        { name: 'a', api_key: 'sk-a-shared', base_url: mock.url('a'), limits: { rpm: 1 } },
        { name: 'b', api_key: 'sk-b-shared', base_url: mock.url('b') },
      ],
      routes: [
        {
          name: 'r1',
          steps: [
            { provider: 'a', model: 'x' },
            { provider: 'b', model: 'y' },
          ],
        },
        {
          name: 'r2',
          steps: [
            { provider: 'a', model: 'z' },
            { provider: 'b', model: 'y' },
          ],
        },
      ],
    }),
  )
  running.push(gw)
  mock.always('a', ok()).always('b', ok())
  const r1 = await gw.post('/v1/chat/completions', { model: 'r1', messages })
  const r2 = await gw.post('/v1/chat/completions', { model: 'r2', messages })
  assert.equal(r1.headers.get('x-gateway-provider'), 'a')
  assert.equal(r2.headers.get('x-gateway-provider'), 'b')
})

test('GET /v1/gateway/status shows each target and each route’s next step', async () => {
  const gw = await gateway([{ provider: 'a' }, { provider: 'b' }], { rate_limit_cooldown: '30s' })
  mock.script('a', status(429)).always('b', ok())
  await ask(gw)
  const snapshot = await statusOf(gw)
  const a = snapshot.targets.find((t) => t.provider === 'a')
  const b = snapshot.targets.find((t) => t.provider === 'b')
  assert.equal(a?.state, 'cooling_down')
  assert.equal(a?.reason, 'rate_limited')
  assert.equal(a?.recent.attempts, 1)
  assert.equal(b?.state, 'healthy')
  assert.equal(snapshot.routes[0]?.next?.provider, 'b')
  assert.deepEqual(
    snapshot.routes[0]?.steps.map((s) => [s.provider, s.available]),
    [
      ['a', false],
      ['b', true],
    ],
  )
  assert.equal((await fetch(`${gw.url}/v1/gateway/status`)).status, 401, 'authenticated')
})

test('a connection that never completes costs the attempt limit, not the connect timeout', async () => {
  // A loopback black hole: a listener whose accept queue is full drops new SYNs.
  const python = spawn('python3', [
    '-c',
    "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(30)",
  ])
  const fillers: Socket[] = []
  try {
    const port = await new Promise<number>((resolve) =>
      python.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim()))),
    )
    for (let i = 0; i < 4; i++) fillers.push(connect(port, '127.0.0.1').on('error', () => {}))
    await sleep(200)
    const gw = await startGateway(
      baseConfig({
        providers: [
          { name: 'hole', base_url: `http://127.0.0.1:${port}/v1` },
          { name: 'b', base_url: mock.url('b') },
        ],
        routes: [
          {
            name: 'r',
            steps: [
              { provider: 'hole', model: 'm', timeout: '300ms' },
              { provider: 'b', model: 'm' },
            ],
          },
        ],
      }),
    )
    running.push(gw)
    mock.always('b', ok('after the hole'))
    const started = performance.now()
    const { status: code, provider } = await ask(gw)
    const took = performance.now() - started
    assert.equal(code, 200)
    assert.equal(provider, 'b')
    assert.ok(took >= 250 && took < 2_000, `took ${took} ms`)
    // The same for a stream (this gateway forgets failures at once, so the hole is tried again).
    mock.always('b', sse(textChunks('streamed after the hole')))
    const streamed = performance.now()
    const stream = await ask(gw, { stream: true })
    assert.equal(stream.provider, 'b')
    assert.ok(performance.now() - streamed < 2_000)
  } finally {
    for (const socket of fillers) socket.destroy()
    python.kill()
  }
})
