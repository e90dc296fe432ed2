import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, before, beforeEach, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { baseConfig, gatewayKey, type RunningGateway, startGateway } from './gateway-process.ts'
import { type Behaviour, chunk, hang, MockUpstream, reset, sse, status, textChunks } from './mock-upstream.ts'

const messages = [{ role: 'user', content: 'hi' }]
let mock: MockUpstream
let gw: RunningGateway

before(async () => {
  mock = await MockUpstream.start()
  gw = await startGateway(
    baseConfig({
      default_timeout: '2s',
      providers: [
        { name: 'a', api_key: 'sk-stream-a-secret', base_url: mock.url('a') },
        { name: 'b', api_key: 'sk-stream-b-secret', base_url: mock.url('b') },
      ],
      routes: [
        {
          name: 'ab',
          steps: [
            { provider: 'a', model: 'model-a', timeout: '500ms' },
            { provider: 'b', model: 'model-b' },
          ],
        },
        { name: 'a-only', steps: [{ provider: 'a', model: 'model-a', timeout: '500ms' }] },
        { name: 'short', timeouts: { total: '1s' }, steps: [{ provider: 'a', model: 'model-a' }] },
      ],
    }),
  )
})

after(async () => {
  await gw.stop()
  await mock.close()
})

beforeEach(() => mock.reset())

/** Reads an SSE response event by event, as a client would. */
async function* events(res: Response): AsyncGenerator<string> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    buffer += decoder.decode(value, { stream: true })
    let end = buffer.indexOf('\n\n')
    while (end !== -1) {
      yield buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      end = buffer.indexOf('\n\n')
    }
  }
  if (buffer.trim() !== '') yield buffer
}

async function collect(res: Response): Promise<string[]> {
  const out: string[] = []
  for await (const event of events(res)) out.push(event)
  return out
}

const stream = (route: string, extra: Record<string, unknown> = {}) =>
  gw.post('/v1/chat/completions', { model: route, messages, stream: true, ...extra })

const contentOf = (event: string): string | undefined => {
  if (!event.startsWith('data: {')) return undefined
  const json = JSON.parse(event.slice(6)) as { choices?: { delta?: { content?: string } }[] }
  return json.choices?.[0]?.delta?.content
}

test('events reach the client as the upstream produces them', async () => {
  let release: () => void = () => {}
  const released = new Promise<void>((resolve) => (release = resolve))
  mock.script('a', sse(textChunks('one two'), { gate: (i) => (i === 2 ? released : Promise.resolve()) }))
  const res = await stream('ab')
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/)
  assert.equal(res.headers.get('cache-control'), 'no-cache')
  assert.equal(res.headers.get('x-accel-buffering'), 'no')
  assert.equal(res.headers.get('x-gateway-provider'), 'a')
  const it = events(res)
  // The role preamble and the first word arrive while the upstream is still holding the second word.
  const first = await it.next()
  assert.match(String(first.value), /"role":"assistant"/)
  const second = await it.next()
  assert.equal(contentOf(String(second.value)), 'one')
  release()
  const rest: string[] = []
  for await (const event of it) rest.push(event)
  assert.equal(contentOf(rest[0] ?? ''), ' two')
  assert.equal(rest.at(-1), 'data: [DONE]')
})

test('a character split across upstream writes arrives whole; a leading BOM is dropped', async () => {
  const bytes = Buffer.concat([
    Buffer.from([0xef, 0xbb, 0xbf]),
    Buffer.from(`data: ${JSON.stringify(chunk({ role: 'assistant', content: 'Grüße 🚀' }))}\n\n`),
  ])
  // Cut inside the ü (two bytes) and inside the rocket (four bytes).
  const cuts = [bytes.indexOf('ü') + 1, bytes.indexOf('🚀') + 2]
  mock.script('a', async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    let from = 0
    for (const at of [...cuts, bytes.length]) {
      res.write(bytes.subarray(from, at))
      from = at
      await sleep(20)
    }
    res.end('data: [DONE]\n\n')
  })
  const all = await collect(await stream('a-only'))
  assert.equal(contentOf(all[0] ?? ''), 'Grüße 🚀')
  assert.equal(all.at(-1), 'data: [DONE]')
})

for (const [name, behaviour] of Object.entries({
  '429 before the first event': status(429),
  '500 before the first event': status(500),
  'reset before headers': reset(),
  'silence before the first event (timeout)': hang(),
  'a role-only preamble, then a cut': sse([chunk({ role: 'assistant', content: '' })], { end: 'cut' }),
  'a role-only preamble, then silence': sse([chunk({ role: 'assistant', content: '' })], { end: 'hang' }),
  'an error event first': sse([{ error: { message: 'overloaded', code: 503 } }], { end: 'no_done' }),
  'an empty 200 stream': sse([], { end: 'no_done' }),
  'a stream of only [DONE]': sse([]),
  'a role-only preamble, then [DONE]': sse([chunk({ role: 'assistant', content: '' })]),
  'a role-only preamble, then a clean end': sse([chunk({ role: 'assistant', content: '' })], {
    end: 'no_done',
  }),
})) {
  test(`falls back on ${name}`, async () => {
    mock.script('a', behaviour).script('b', sse(textChunks('from b')))
    const res = await stream('ab')
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-gateway-provider'), 'b')
    const all = await collect(res)
    assert.equal(all.map(contentOf).filter(Boolean).join(''), 'from b')
    assert.equal(all.at(-1), 'data: [DONE]')
    assert.equal(all.filter((e) => e.includes('"role"')).length, 1, 'the failed preamble is not forwarded')
  })
}

test('a stream cut after content ends with an error event, not [DONE]', async () => {
  mock.script('a', sse(textChunks('partial answer'), { end: 'cut', delayMs: 30 }))
  const res = await stream('ab')
  assert.equal(res.headers.get('x-gateway-provider'), 'a')
  const all = await collect(res)
  const last = all.at(-1) ?? ''
  assert.ok(!all.includes('data: [DONE]'))
  const error = (JSON.parse(last.slice(6)) as { error: { code: string } }).error
  assert.equal(error.code, 'stream_interrupted')
  assert.equal(mock.requests('b').length, 0, 'no fallback after bytes reached the client')
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.streamEnd === 'network')
  assert.equal(line.provider, 'a')
})

test('a stream that stalls after content ends with an error event within the idle timeout', async () => {
  mock.script('a', sse(textChunks('stalls here'), { end: 'hang' }))
  const started = performance.now()
  const res = await stream('ab')
  const all = await collect(res)
  const elapsed = performance.now() - started
  assert.match(all.at(-1) ?? '', /"code":"stream_interrupted"/)
  assert.ok(elapsed < 3_000, `bounded by the 500 ms step timeout, took ${elapsed} ms`)
  await gw.waitForLog((l) => l.msg === 'request' && l.streamEnd === 'timeout')
})

test('an error event after content is forwarded as the gateway error event', async () => {
  mock.script(
    'a',
    sse([...textChunks('hello there').slice(0, 2), { error: { message: 'upstream exploded' } }], {
      end: 'no_done',
    }),
  )
  const all = await collect(await stream('ab'))
  assert.match(all.at(-1) ?? '', /"code":"stream_interrupted"/)
  assert.match(all.at(-1) ?? '', /upstream exploded/)
})

test('an event named error is one, whatever its data holds (JSON or not)', async () => {
  const named: Behaviour = async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    for (const event of textChunks('hello there').slice(0, 2)) res.write(`data: ${JSON.stringify(event)}\n\n`)
    res.end('event: error\ndata: upstream overloaded\n\n')
  }
  mock.script('a', named)
  const all = await collect(await stream('ab'))
  assert.match(all.at(-1) ?? '', /"code":"stream_interrupted"/)
  assert.match(all.at(-1) ?? '', /overloaded/)
  assert.ok(!all.includes('data: [DONE]'))
})

test('an upstream that ends with neither finish_reason nor [DONE] was cut: an error event', async () => {
  mock.script('a', sse(textChunks('cut short').slice(0, -1), { end: 'no_done' }))
  const all = await collect(await stream('ab'))
  assert.match(all.at(-1) ?? '', /"code":"stream_interrupted"/)
  assert.ok(!all.includes('data: [DONE]'))
})

test('with n = 2, an upstream that ends without [DONE] while one choice is still open was cut', async () => {
  const choice = (index: number, content: string, finish: string | null = null) => ({
    index,
    delta: { content },
    finish_reason: finish,
  })
  const two = (...choices: object[]) => chunk({}, null, { choices })
  const opening = [two(choice(0, 'zero'), choice(1, 'one')), two(choice(0, '', 'stop'))]
  mock.script('a', sse(opening, { end: 'no_done' }))
  const cut = await collect(await stream('ab'))
  assert.match(cut.at(-1) ?? '', /"code":"stream_interrupted"/)
  assert.ok(!cut.includes('data: [DONE]'))

  mock.script('a', sse([...opening, two(choice(1, '', 'length'))], { end: 'no_done' }))
  const whole = await collect(await stream('ab'))
  assert.equal(whole.at(-1), 'data: [DONE]')
})

test('an upstream that ends without [DONE] after a finish_reason still gets a clean end', async () => {
  mock.script('a', sse(textChunks('no done marker'), { end: 'no_done' }))
  const all = await collect(await stream('ab'))
  assert.equal(all.map(contentOf).filter(Boolean).join(''), 'no done marker')
  assert.equal(all.at(-1), 'data: [DONE]')
  assert.equal(all.filter((e) => e === 'data: [DONE]').length, 1)
})

test('a malformed event is dropped and counted, the rest passes', async () => {
  mock.script(
    'a',
    sse([chunk({ content: 'good' }), '{"not json', chunk({ content: ' still good' }), chunk({}, 'stop')]),
  )
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'ab', messages, stream: true },
    { 'x-request-id': 'malformed-1' },
  )
  const all = await collect(res)
  assert.ok(!all.some((e) => e.includes('not json')))
  assert.equal(all.map(contentOf).filter(Boolean).join(''), 'good still good')
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'malformed-1')
  assert.equal(line.malformedEvents, 1)
})

test('stream usage is logged when the upstream reports it', async () => {
  const usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }
  mock.script('a', sse([...textChunks('a b'), { ...chunk({}), choices: [], usage }]))
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'ab', messages, stream: true, stream_options: { include_usage: true } },
    { 'x-request-id': 'usage-1' },
  )
  await collect(res)
  assert.deepEqual(mock.requests('a')[0]?.body.stream_options, { include_usage: true })
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'usage-1')
  assert.deepEqual(line.usage, usage)
  assert.equal(line.streamEnd, 'completed')
})

test('all steps failing before the first event gives a JSON error, not a stream', async () => {
  mock.script('a', status(503))
  const res = await stream('a-only')
  assert.equal(res.status, 502)
  assert.match(res.headers.get('content-type') ?? '', /application\/json/)
  const body = (await res.json()) as { error: { code: string } }
  assert.equal(body.error.code, 'upstream_failed')
})

/** Waits until the gateway has closed its request to `provider`, failing after 3 s. */
async function upstreamClosed(provider: string): Promise<void> {
  const deadline = Date.now() + 3_000
  while (mock.requests(provider)[0]?.closedEarly !== true) {
    assert.ok(Date.now() < deadline, `the request to ${provider} was left open`)
    await sleep(20)
  }
}

test('a client leaving mid-stream aborts the upstream stream', async () => {
  mock.script('a', sse(textChunks('a long answer that keeps going and going and going'), { delayMs: 100 }))
  const controller = new AbortController()
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gatewayKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'ab', messages, stream: true }),
    signal: controller.signal,
  })
  const it = events(res)
  await it.next()
  await it.next()
  controller.abort()
  await upstreamClosed('a')
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.streamEnd === 'client_gone')
  assert.equal(line.status, 499)
})

/** An upstream writing `total` bytes of 16 KB events as fast as the gateway takes them. */
function flood(total: number) {
  const progress = { written: 0, blocked: false }
  const event = `data: ${JSON.stringify(chunk({ content: 'x'.repeat(16 * 1024) }))}\n\n`
  const behaviour: Behaviour = async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    while (progress.written < total && !res.destroyed) {
      progress.written += event.length
      if (!res.write(event)) {
        progress.blocked = true
        await new Promise((resolve) => res.once('drain', resolve))
      }
    }
    res.end('data: [DONE]\n\n')
  }
  return { progress, behaviour }
}

test('a slow client holds the upstream back instead of the gateway buffering the stream', async () => {
  const total = 64 * 1024 * 1024
  const { progress, behaviour } = flood(total)
  mock.script('a', behaviour)
  const res = await stream('ab')
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  let received = (await reader.read()).value?.length ?? 0
  await sleep(500)
  // Socket buffers on both hops hold a few MB at most; a gateway that kept reading would be far along.
  assert.ok(progress.blocked, 'the upstream write blocked')
  assert.ok(
    progress.written < total / 2,
    `upstream wrote ${progress.written} bytes while the client read nothing`,
  )
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    received += value.length
  }
  assert.ok(received >= total, `client received ${received} bytes`)
})

test('after an error event the upstream request is closed, even if the provider keeps sending', async () => {
  mock.script('a', async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(`data: ${JSON.stringify(chunk({ content: 'so far' }))}\n\n`)
    res.write(`data: ${JSON.stringify({ error: { message: 'went wrong' } })}\n\n`)
    while (!res.destroyed) {
      res.write(`data: ${JSON.stringify(chunk({ content: ' more' }))}\n\n`)
      await sleep(20)
    }
  })
  const all = await collect(await stream('ab'))
  assert.match(all.at(-1) ?? '', /"code":"stream_interrupted"/)
  await upstreamClosed('a')
})

test('a stream the client has whole ends the request, though the provider holds its response open', async () => {
  mock.script('a', async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(`data: ${JSON.stringify(chunk({ content: 'all' }, 'stop'))}\n\ndata: [DONE]\n\n`)
    // and the response is never ended
  })
  const started = performance.now()
  const all = await collect(
    await gw.post(
      '/v1/chat/completions',
      { model: 'ab', messages, stream: true },
      {
        'x-request-id': 'held-open-1',
      },
    ),
  )
  assert.equal(all.at(-1), 'data: [DONE]')
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'held-open-1', 2_000)
  assert.equal(line.streamEnd, 'completed')
  assert.ok(Number(line.durationMs) < 500, `in flight for ${line.durationMs} ms after the client had it all`)
  await upstreamClosed('a') // cut a moment later, not left to the 2 s idle timeout
  assert.ok(performance.now() - started < 1_900, 'the upstream request was held to its idle timeout')
})

/**
 * A client on a raw socket that asks `route` for a stream (as request `id`), then reads nothing until
 * resumed.
 */
function stalledClient(route: string, id: string): Socket {
  const body = JSON.stringify({ model: route, messages, stream: true })
  const socket = connect(Number(new URL(gw.url).port), '127.0.0.1')
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer ${gatewayKey}\r\n` +
      `x-request-id: ${id}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `connection: close\r\n\r\n${body}`,
  )
  socket.pause()
  return socket
}

test('a client that reads slowly is not the provider going silent: the stream completes', async () => {
  // Route a-only: its idle limit is the step's 500 ms. The client reads nothing for three times that.
  const total = 64 * 1024 * 1024
  const { progress, behaviour } = flood(total)
  mock.script('a', behaviour)
  const socket = stalledClient('a-only', 'stalled-1')
  await sleep(1_500)
  assert.ok(progress.written < total / 2, `upstream wrote ${progress.written} bytes: not held back`)
  let tail = ''
  let received = 0
  socket.on('data', (bytes: Buffer) => {
    received += bytes.length
    tail = (tail + bytes.toString('latin1')).slice(-200)
  })
  socket.resume()
  await new Promise((resolve) => socket.once('end', resolve))
  assert.ok(received >= total, `the client received ${received} bytes`)
  assert.ok(!tail.includes('stream_interrupted'), tail)
  assert.match(tail, /data: \[DONE\]/)
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'stalled-1')
  assert.equal(line.streamEnd, 'completed')
})

test('a client still not reading when the budget runs out is cut off, and the provider is not blamed', async () => {
  const total = 64 * 1024 * 1024
  const { progress, behaviour } = flood(total)
  mock.script('a', behaviour)
  const socket = stalledClient('short', 'stalled-2')
  const closed = new Promise((resolve) => socket.once('close', resolve))
  socket.on('error', () => {})
  await sleep(1_500)
  assert.ok(progress.written < total / 2, `upstream wrote ${progress.written} bytes: not held back`)
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'stalled-2')
  assert.equal(line.streamEnd, 'client_stalled')
  socket.destroy()
  await closed
  assert.equal(mock.requests('a')[0]?.closedEarly, true, 'the upstream request was closed')
  assert.ok(
    !gw.logs.some((l) => l.msg === 'stream failed after commit' && l.requestId === line.requestId),
    'not counted against the provider',
  )
})

test('an event that never ends is cut off at 32 Mi characters, and the next step answers', async () => {
  mock.script('a', async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: {"choices":[{"delta":{"content":"')
    const piece = 'x'.repeat(1024 * 1024)
    for (let i = 0; i < 48 && !res.destroyed; i++) {
      if (!res.write(piece)) await new Promise((resolve) => res.once('drain', resolve))
    }
    res.end()
  })
  mock.script('b', sse(textChunks('from b')))
  const res = await stream('ab')
  assert.equal(res.headers.get('x-gateway-provider'), 'b')
  assert.equal((await collect(res)).map(contentOf).filter(Boolean).join(''), 'from b')
  assert.equal(mock.requests('a')[0]?.closedEarly, true, 'the endless event was not read to its end')
})
