import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { after, before, beforeEach, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { baseConfig, gatewayKey, type RunningGateway, startGateway, waitFor } from './gateway-process.ts'
import { chunk, hang, json, MockUpstream, ok, raw, reset, sse, status } from './mock-upstream.ts'

const keys = { a: 'sk-provider-a-secret-111', b: 'sk-provider-b-secret-222' }
const messages = [{ role: 'user', content: 'prompt-text-xyzzy' }]

let mock: MockUpstream
let gw: RunningGateway
let closedPort: number

function config() {
  return baseConfig({
    default_timeout: '2s',
    providers: [
      { name: 'a', api_key: keys.a, base_url: mock.url('a') },
      {
        name: 'b',
        api_key: keys.b,
        base_url: `${mock.url('b')}/`,
        headers: { 'HTTP-Referer': 'https://example.test', 'X-Title': 'gw' },
      },
      { name: 'c', base_url: mock.url('c') },
      { name: 'down', api_key: 'sk-down-secret-333', base_url: `http://127.0.0.1:${closedPort}/v1` },
    ],
    routes: [
      {
        name: 'ab',
        steps: [
          { provider: 'a', model: 'model-a' },
          { provider: 'b', model: 'model-b' },
        ],
      },
      {
        name: 'abc',
        steps: [
          { provider: 'a', model: 'model-a' },
          { provider: 'b', model: 'model-b' },
          { provider: 'c', model: 'model-c' },
        ],
      },
      {
        name: 'fast-timeout',
        steps: [
          { provider: 'a', model: 'model-a', timeout: '300ms' },
          { provider: 'b', model: 'model-b' },
        ],
      },
      {
        name: 'down-then-b',
        steps: [
          { provider: 'down', model: 'm' },
          { provider: 'b', model: 'model-b' },
        ],
      },
      { name: 'tools-wins', steps: [{ provider: 'a', model: 'model-a', conflict_resolution: 'tools' }] },
      { name: 'format-wins', steps: [{ provider: 'a', model: 'model-a', conflict_resolution: 'format' }] },
      { name: 'no-resolution', steps: [{ provider: 'a', model: 'model-a' }] },
    ],
  })
}

before(async () => {
  mock = await MockUpstream.start()
  // A port with nothing listening: connection refused.
  const probe = createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => probe.once('listening', resolve))
  closedPort = (probe.address() as { port: number }).port
  probe.close()
  gw = await startGateway(config())
})

after(async () => {
  await gw.stop()
  await mock.close()
})

beforeEach(() => mock.reset())

async function chat(
  route: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) {
  const res = await gw.post('/v1/chat/completions', { model: route, messages, ...extra }, headers)
  return { res, body: (await res.json()) as Record<string, unknown> }
}

describe('each failure kind falls back to the next step', () => {
  const failures = {
    '429': status(429, 'slow down'),
    '500': status(500),
    '503': status(503),
    '400': status(400, 'context length exceeded'),
    '401': status(401),
    'reset before headers': reset(),
    '2xx with a body that is not JSON': raw(200, '<html>oops</html>', 'text/html'),
    '2xx with truncated JSON': raw(200, '{"id":"x","choices":[', 'application/json'),
    '2xx carrying only an error': json(200, { error: { message: 'provider overloaded' } }),
  }
  for (const [name, behaviour] of Object.entries(failures)) {
    test(name, async () => {
      mock.script('a', behaviour).script('b', ok('from b'))
      const { res, body } = await chat('ab')
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('x-gateway-provider'), 'b')
      assert.equal(res.headers.get('x-gateway-model'), 'model-b')
      assert.equal(res.headers.get('x-gateway-attempts'), '2')
      assert.equal((body.choices as { message: { content: string } }[])[0]?.message.content, 'from b')
      assert.equal(mock.requests('a').length, 1)
    })
  }

  test('connection refused', async () => {
    mock.script('b', ok('from b'))
    const { res } = await chat('down-then-b')
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-gateway-provider'), 'b')
  })

  test('the step timeout (an upstream that never answers)', async () => {
    mock.script('a', hang()).script('b', ok('from b'))
    const started = performance.now()
    const { res } = await chat('fast-timeout')
    const elapsed = performance.now() - started
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-gateway-provider'), 'b')
    assert.ok(elapsed >= 250 && elapsed < 2_000, `took ${elapsed} ms`)
    await waitFor(() => mock.requests('a')[0]?.closedEarly === true)
  })
})

test('the first success is returned as the provider sent it, with the gateway headers', async () => {
  const answer = {
    id: 'x',
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content: 'hey' } }],
    vendor_field: { a: 1 },
  }
  mock.script('a', json(200, answer, { 'x-ratelimit-remaining-requests': '9' }))
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'ab', messages },
    { 'x-request-id': 'client-id-42' },
  )
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), answer)
  assert.equal(res.headers.get('x-request-id'), 'client-id-42')
  assert.equal(res.headers.get('x-gateway-provider'), 'a')
  assert.equal(res.headers.get('x-gateway-attempts'), '1')
  assert.equal(mock.requests('b').length, 0)
})

test('all steps failing names each step and why, without upstream bodies or secrets', async () => {
  mock
    .script('a', status(500, `internal boom, key ${keys.a}`))
    .script('b', reset())
    .script('c', raw(200, 'nope'))
  const { res, body } = await chat('abc')
  assert.equal(res.status, 502)
  const error = body.error as Record<string, unknown>
  assert.equal(error.code, 'upstream_failed')
  assert.equal(error.type, 'upstream_error')
  const message = String(error.message)
  assert.match(message, /a\/model-a: HTTP 500/)
  assert.match(message, /b\/model-b: connection failed/)
  assert.match(message, /c\/model-c: invalid response/)
  assert.ok(!message.includes(keys.a), 'provider key must not be echoed')
  assert.ok(!message.includes(keys.b))
})

test('every step rate limited → 429 with the soonest Retry-After', async () => {
  // Retry hints cool the targets down, so this runs on a gateway of its own.
  const own = await startGateway(config())
  try {
    mock
      .script('a', status(429, 'slow', { 'retry-after': '20' }))
      .script('b', status(429, 'slow', { 'retry-after': '7' }))
    const res = await own.post('/v1/chat/completions', { model: 'ab', messages })
    assert.equal(res.status, 429)
    assert.equal(res.headers.get('retry-after'), '7')
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'rate_limit_exceeded')
  } finally {
    await own.stop()
  }
})

test('mixed failures are a 502, not a 429', async () => {
  mock.script('a', status(429)).script('b', status(503))
  const { res } = await chat('ab')
  assert.equal(res.status, 502)
  assert.equal(res.headers.get('retry-after'), null)
})

test('the upstream request: model replaced, body passed through, provider auth and headers, nothing of the client', async () => {
  mock.script('a', status(500)).script('b', ok())
  const extra = {
    temperature: 0.3,
    tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
    tool_choice: 'auto',
    messages: [
      { role: 'developer', content: 'be brief' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'look' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{"x":1}' } }],
      },
      { role: 'tool', tool_call_id: 't1', content: '42' },
    ],
    vendor_extension: { keep: true },
  }
  await chat('ab', extra, {
    'x-api-key': gatewayKey,
    connection: 'keep-alive',
    'openai-organization': '',
    'x-custom': 'client',
  })
  const [toA] = mock.requests('a')
  const [toB] = mock.requests('b')
  assert.ok(toA && toB)
  assert.deepEqual(toA.body, { model: 'model-a', ...extra })
  assert.deepEqual(toB.body, { model: 'model-b', ...extra })
  assert.equal(toA.path, '/a/v1/chat/completions')
  assert.equal(toB.path, '/b/v1/chat/completions', 'a trailing slash in base_url does not double')
  assert.equal(toA.headers.authorization, `Bearer ${keys.a}`)
  assert.equal(toB.headers.authorization, `Bearer ${keys.b}`)
  assert.equal(toB.headers['http-referer'], 'https://example.test')
  assert.equal(toB.headers['x-title'], 'gw')
  assert.equal(toA.headers['accept-encoding'], 'identity', 'answers are forwarded as they come: uncompressed')
  for (const seen of [toA, toB]) {
    const all = JSON.stringify(seen.headers)
    assert.ok(!all.includes(gatewayKey), 'the gateway key is never forwarded')
    assert.equal(seen.headers['x-api-key'], undefined)
    assert.equal(seen.headers['x-custom'], undefined)
    assert.equal(seen.headers['openai-organization'], undefined)
  }
})

test('an answer larger than max_answer_size fails the attempt, and the next step answers', async () => {
  const own = await startGateway({ ...config(), max_answer_size: '1kb' })
  try {
    mock.script('a', ok('x'.repeat(4_000))).script('b', ok('small'))
    const res = await own.post('/v1/chat/completions', { model: 'ab', messages })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-gateway-provider'), 'b')
    const line = await own.waitForLog((l) => l.msg === 'upstream attempt failed')
    assert.match(String(line.reason), /answer larger than 1024 bytes/)
  } finally {
    await own.stop()
  }
})

test('a large error answer is judged by its status, streaming or not, whatever max_answer_size says', async () => {
  const own = await startGateway({ ...config(), max_answer_size: '1kb' })
  try {
    for (const stream of [false, true]) {
      const answer = stream ? sse([chunk({ role: 'assistant', content: 'small' })]) : ok('small')
      mock.script('a', status(429, 'slow down '.repeat(5_000))).script('b', answer)
      const res = await own.post('/v1/chat/completions', { model: 'ab', messages, stream })
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('x-gateway-provider'), 'b')
      await res.text()
      const line = await own.waitForLog((l) => l.msg === 'request' && l.stream === stream)
      const [first] = line.attempts as { provider: string; outcome: string; status?: number }[]
      assert.deepEqual([first?.provider, first?.outcome, first?.status], ['a', 'http_error', 429])
    }
  } finally {
    await own.stop()
  }
})

test('a provider without api_key gets no Authorization header', async () => {
  mock.script('a', status(500)).script('b', status(500)).script('c', ok())
  await chat('abc')
  assert.equal(mock.requests('c').length, 1)
  assert.equal(mock.requests('c')[0]?.headers.authorization, undefined)
})

describe('conflict_resolution', () => {
  const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }]
  const response_format = { type: 'json_object' }

  test('tools: response_format is dropped when tools are present', async () => {
    mock.script('a', ok())
    await chat('tools-wins', { tools, response_format })
    const sent = mock.requests('a')[0]?.body ?? {}
    assert.deepEqual(sent.tools, tools)
    assert.equal('response_format' in sent, false)
  })

  test('tools: an empty tools list keeps response_format', async () => {
    mock.script('a', ok())
    await chat('tools-wins', { tools: [], response_format })
    assert.deepEqual(mock.requests('a')[0]?.body.response_format, response_format)
  })

  test('format: tools, tool_choice and parallel_tool_calls are dropped when response_format is present', async () => {
    mock.script('a', ok())
    await chat('format-wins', { tools, tool_choice: 'auto', parallel_tool_calls: true, response_format })
    const sent = mock.requests('a')[0]?.body ?? {}
    assert.deepEqual(sent.response_format, response_format)
    for (const key of ['tools', 'tool_choice', 'parallel_tool_calls']) assert.equal(key in sent, false, key)
  })

  test('format: a response_format of type text asks for nothing, so the tools stay', async () => {
    mock.script('a', ok())
    await chat('format-wins', { tools, response_format: { type: 'text' } })
    assert.deepEqual(mock.requests('a')[0]?.body.tools, tools)
  })

  test('without it, both pass through untouched', async () => {
    mock.script('a', ok())
    await chat('no-resolution', { tools, response_format })
    const sent = mock.requests('a')[0]?.body ?? {}
    assert.deepEqual(sent.tools, tools)
    assert.deepEqual(sent.response_format, response_format)
  })
})

test('a client that disconnects aborts the upstream request and stops the route', async () => {
  mock.script('a', hang()).script('b', ok())
  const controller = new AbortController()
  const request = fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gatewayKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'ab', messages, marker: 'abort-me' }),
    signal: controller.signal,
  }).catch(() => undefined)
  await waitFor(() => mock.requests('a').some((r) => r.body.marker === 'abort-me'))
  controller.abort()
  await request
  await waitFor(() => mock.requests('a').find((r) => r.body.marker === 'abort-me')?.closedEarly === true)
  await sleep(200)
  assert.equal(
    mock.requests('b').filter((r) => r.body.marker === 'abort-me').length,
    0,
    'the route stops: no next step after the client left',
  )
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.status === 499)
  assert.equal(line.route, 'ab')
})

test('each attempt and the request are logged with outcome and duration', async () => {
  mock.script('a', status(503)).script('b', ok())
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'ab', messages },
    { 'x-request-id': 'log-check-1' },
  )
  assert.equal(res.status, 200)
  const failed = await gw.waitForLog(
    (l) => l.msg === 'upstream attempt failed' && l.requestId === 'log-check-1',
  )
  assert.equal(failed.provider, 'a')
  assert.equal(failed.status, 503)
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'log-check-1')
  assert.equal(line.status, 200)
  assert.equal(line.route, 'ab')
  assert.equal(line.provider, 'b')
  assert.equal(line.model, 'model-b')
  assert.deepEqual(line.usage, { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 })
  const attempts = line.attempts as { provider: string; outcome: string; durationMs: number }[]
  assert.deepEqual(
    attempts.map((a) => [a.provider, a.outcome]),
    [
      ['a', 'http_error'],
      ['b', 'ok'],
    ],
  )
  assert.ok(attempts.every((a) => typeof a.durationMs === 'number'))
  assert.equal(typeof line.ttfbMs, 'number')
  assert.equal(typeof line.durationMs, 'number')
  assert.ok(!JSON.stringify(gw.logs).includes('xyzzy'), 'no prompt text in the logs')
})
