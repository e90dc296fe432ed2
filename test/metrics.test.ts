// /metrics after real traffic: counters and histograms move as the requests say, labels stay bounded.

import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { Counter, Histogram, Registry } from 'prom-client'
import { FastCounter, FastHistogram } from '../src/series.ts'
import {
  baseConfig,
  gatewayKey,
  type RunningGateway,
  runCli,
  startGateway,
  writeConfig,
} from './gateway-process.ts'
import { chunk, completion, MockUpstream, ok, raw, sse, status, textChunks } from './mock-upstream.ts'

let mock: MockUpstream
let gw: RunningGateway

before(async () => {
  mock = await MockUpstream.start()
  gw = await startGateway(
    baseConfig({
      failover: { rate_limit_cooldown: '30s' },
      providers: [
        { name: 'a', api_key: 'sk-metrics-a-000', base_url: mock.url('a') },
        { name: 'b', api_key: 'sk-metrics-b-000', base_url: mock.url('b') },
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
  )
})

after(async () => {
  await gw.stop()
  await mock.close()
})

/** `name{labels} value` lines as a lookup: sample('x_total', {a: '1'}) → number. */
async function scrape(): Promise<(name: string, labels?: Record<string, string>) => number> {
  const res = await gw.get('/metrics')
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
  const text = await res.text()
  return (name, labels = {}) => {
    let total = 0
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
      const matches = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))
      if (matches) total += Number(line.slice(line.lastIndexOf(' ') + 1))
    }
    return total
  }
}

test('counters and histograms follow the traffic', async () => {
  mock.script('a', status(429, 'slow')).always('b', ok())
  assert.equal((await gw.post('/v1/chat/completions', { model: 'r', messages: [] })).status, 200) // a fails, b answers
  assert.equal((await gw.post('/v1/chat/completions', { model: 'r', messages: [] })).status, 200) // a skipped (cooling)
  mock.script(
    'b',
    sse([
      ...textChunks('streamed'),
      { ...chunk({}), choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } },
    ]),
  )
  const res = await gw.post('/v1/chat/completions', { model: 'r', messages: [], stream: true })
  await res.text()
  assert.equal((await gw.post('/v1/chat/completions', { model: 'nope', messages: [] })).status, 404)

  const sample = await scrape()
  assert.equal(sample('ai_gateway_requests_total', { route: 'r', status: '200' }), 3)
  assert.equal(
    sample('ai_gateway_requests_total', { route: '', status: '404' }),
    1,
    'unknown routes share one label value',
  )
  assert.equal(sample('ai_gateway_upstream_attempts_total', { provider: 'a', outcome: 'http_error' }), 1)
  assert.equal(sample('ai_gateway_upstream_attempts_total', { provider: 'b', outcome: 'ok' }), 3)
  assert.equal(sample('ai_gateway_fallbacks_total', { provider: 'a', reason: 'http_error' }), 1)
  assert.equal(sample('ai_gateway_fallbacks_total', { provider: 'a', reason: 'skipped:rate_limited' }), 2)
  assert.equal(sample('ai_gateway_request_duration_seconds_count', { route: 'r' }), 3)
  assert.equal(sample('ai_gateway_upstream_attempt_duration_seconds_count', { provider: 'b' }), 3)
  assert.equal(sample('ai_gateway_time_to_first_token_seconds_count', { route: 'r', provider: 'b' }), 1)
  assert.equal(sample('ai_gateway_tokens_total', { provider: 'b', direction: 'input' }), 5 + 5 + 3)
  assert.equal(sample('ai_gateway_tokens_total', { provider: 'b', direction: 'output' }), 7 + 7 + 4)
  assert.equal(sample('ai_gateway_target_state', { provider: 'a', state: 'cooling_down' }), 1)
  assert.equal(sample('ai_gateway_target_state', { provider: 'a', state: 'healthy' }), 0)
  assert.equal(sample('ai_gateway_target_state', { provider: 'b', state: 'healthy' }), 1)
  assert.ok(sample('ai_gateway_process_resident_memory_bytes') > 0, 'process metrics')
})

// JSON.parse reads 1e400 as Infinity; a counter that went down or to +Inf would read as a reset, or
// stay +Inf until the gateway restarts, for every rate() over it.
test('token counts a provider reports as negative or infinite are not counted', async () => {
  const usage = '{"prompt_tokens":-5,"completion_tokens":1e400,"total_tokens":3}'
  const body = JSON.stringify(completion('hi', 'model-b')).replace(/"usage":\{[^}]*\}/, `"usage":${usage}`)
  // Provider a is still cooling down from the first test: b answers.
  mock.script('b', raw(200, body, 'application/json'))
  const tokens = (sample: (name: string, labels?: Record<string, string>) => number) => ({
    input: sample('ai_gateway_tokens_total', { provider: 'b', direction: 'input' }),
    output: sample('ai_gateway_tokens_total', { provider: 'b', direction: 'output' }),
  })
  const before = tokens(await scrape())
  const res = await gw.post('/v1/chat/completions', { model: 'r', messages: [] })
  assert.equal(res.headers.get('x-gateway-provider'), 'b')
  assert.deepEqual(tokens(await scrape()), before)
})

test('labels never carry user input', async () => {
  await gw.post('/v1/chat/completions', { model: 'user-chosen-model-name-xyz', messages: [] })
  await gw.get('/v1/some/random/path/abc')
  const text = await (await gw.get('/metrics')).text()
  assert.ok(!text.includes('user-chosen-model-name-xyz'))
  assert.ok(!text.includes('random/path'))
})

test('/metrics needs the gateway key by default', async () => {
  assert.equal((await fetch(`${gw.url}/metrics`)).status, 401)
  assert.equal((await fetch(`${gw.url}/metrics`, { headers: { 'x-api-key': gatewayKey } })).status, 200)
})

test('metrics on a port of their own: no key there, not on the main port', async () => {
  const own = await startGateway(
    baseConfig({
      metrics: { port: 0, host: '127.0.0.1' },
      providers: [{ name: 'a', base_url: mock.url('a') }],
      routes: [{ name: 'r', steps: [{ provider: 'a', model: 'm' }] }],
    }),
  )
  try {
    const port = own.logs.find((l) => l.msg === 'listening')?.metricsPort
    assert.equal(typeof port, 'number')
    const res = await fetch(`http://127.0.0.1:${port}/metrics`)
    assert.equal(res.status, 200)
    assert.match(await res.text(), /ai_gateway_requests_total/)
    assert.equal((await own.get('/metrics')).status, 404)
  } finally {
    await own.stop()
  }
})

test('a metrics port that cannot be had stops start-up: exit 1, nothing left serving', async () => {
  const taken = createServer().listen(0, '127.0.0.1')
  await once(taken, 'listening')
  try {
    const { port } = taken.address() as AddressInfo
    const config = writeConfig(
      baseConfig({
        metrics: { port, host: '127.0.0.1' },
        providers: [{ name: 'a', base_url: mock.url('a') }],
        routes: [{ name: 'r', steps: [{ provider: 'a', model: 'm' }] }],
      }),
    )
    const { code, stdout } = await runCli(['--config', config], { timeoutMs: 10_000 })
    assert.equal(code, 1, 'the process exits with 1 instead of serving on')
    assert.match(stdout, /"msg":"failed to start"/)
    assert.match(stdout, /EADDRINUSE/)
  } finally {
    taken.close()
  }
})

test('metrics can be turned off', async () => {
  const off = await startGateway(
    baseConfig({
      metrics: { enabled: false },
      providers: [{ name: 'a', base_url: mock.url('a') }],
      routes: [{ name: 'r', steps: [{ provider: 'a', model: 'm' }] }],
    }),
  )
  try {
    assert.equal((await off.get('/metrics')).status, 404)
  } finally {
    await off.stop()
  }
})

test("the request path's series print exactly as prom-client's own counters and histograms", async () => {
  const ours = new Registry()
  const theirs = new Registry()
  const buckets = [0.005, 0.1, 1, 2.5]
  const fastCounter = new FastCounter({
    name: 'c_total',
    help: 'A counter.',
    labelNames: ['route', 'status'],
    registry: ours,
  })
  const counter = new Counter({
    name: 'c_total',
    help: 'A counter.',
    labelNames: ['route', 'status'],
    registers: [theirs],
  })
  const fastHistogram = new FastHistogram({
    name: 'h_seconds',
    help: 'A histogram.',
    labelNames: ['route'],
    registry: ours,
    buckets,
  })
  const histogram = new Histogram({
    name: 'h_seconds',
    help: 'A histogram.',
    labelNames: ['route'],
    buckets,
    registers: [theirs],
  })
  // On a bound, between bounds, above every bound, zero, and in two series.
  const observations: [string, number][] = [
    ['a', 0.005],
    ['a', 0.2],
    ['a', 7],
    ['b', 0],
    ['a', 1],
    ['b', 2.5],
  ]
  for (const [route, value] of observations) {
    fastHistogram.observe({ route }, value)
    histogram.observe({ route }, value)
    fastCounter.inc({ route, status: '200' }, 2)
    counter.inc({ route, status: '200' }, 2)
  }
  fastCounter.inc({ route: 'b', status: '500' })
  counter.inc({ route: 'b', status: '500' })
  assert.equal(await ours.metrics(), await theirs.metrics())
  assert.match(await ours.metrics(), /h_seconds_bucket\{le="\+Inf",route="a"\} 4/)
  ours.resetMetrics()
  assert.equal(
    await ours.metrics(),
    '# HELP c_total A counter.\n# TYPE c_total counter\n\n# HELP h_seconds A histogram.\n# TYPE h_seconds histogram\n',
  )
})
