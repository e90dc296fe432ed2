import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect } from 'node:net'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { baseConfig, gatewayKey, startGateway } from './gateway-process.ts'
import { MockUpstream, ok, sse, textChunks } from './mock-upstream.ts'

let mock: MockUpstream

before(async () => {
  mock = await MockUpstream.start()
})

after(() => mock.close())

const config = (shutdownTimeout: string) =>
  baseConfig({
    shutdown_timeout: shutdownTimeout,
    providers: [{ name: 'slow', api_key: 'sk-slow-000000', base_url: mock.url('slow') }],
    routes: [{ name: 'slow', steps: [{ provider: 'slow', model: 'm' }] }],
  })

test('SIGTERM lets an in-flight stream finish, refuses new connections, then exits 0', async () => {
  const gw = await startGateway(config('10s'))
  mock.script('slow', sse(textChunks('one two three four five six seven eight'), { delayMs: 80 }))
  const res = await gw.post('/v1/chat/completions', { model: 'slow', messages: [], stream: true })
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  await reader.read()
  const exited = gw.stop('SIGTERM')
  await gw.waitForLog((l) => l.msg === 'shutting down')
  await sleep(50)
  await assert.rejects(fetch(`${gw.url}/health`), 'new connections are refused while draining')
  let text = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    text += new TextDecoder().decode(value)
  }
  assert.match(text, /eight/)
  assert.match(text, /data: \[DONE\]\n\n$/)
  assert.equal(await exited, 0)
  const messages = gw.logs.map((l) => l.msg)
  for (const msg of ['listening', 'request', 'received stop signal', 'shutting down', 'stopped'])
    assert.ok(messages.includes(msg), msg)
  assert.ok(
    messages.indexOf('request') < messages.indexOf('stopped'),
    'the stream was logged before the process stopped',
  )
})

test('requests still running after the grace period are cut, and the process exits', async () => {
  const gw = await startGateway(config('300ms'))
  mock.script('slow', sse(textChunks('never ending'), { end: 'hang' }))
  const res = await gw.post('/v1/chat/completions', { model: 'slow', messages: [], stream: true })
  const body = res.text().catch(() => 'cut')
  const started = performance.now()
  assert.equal(await gw.stop('SIGINT'), 0)
  assert.ok(performance.now() - started < 3_000)
  await body
  assert.ok(gw.logs.some((l) => l.msg === 'grace period over, closing remaining connections'))
})

test('an idle gateway stops at once', async () => {
  const gw = await startGateway(config('10s'))
  await fetch(`${gw.url}/health`) // leaves an idle keep-alive connection
  const started = performance.now()
  assert.equal(await gw.stop(), 0)
  assert.ok(performance.now() - started < 2_000, `took ${performance.now() - started} ms`)
})

test('a refused CONNECT whose client holds its end open does not hold the stop', async () => {
  const gw = await startGateway(config('10s'))
  const socket = connect({ port: Number(new URL(gw.url).port), host: '127.0.0.1', allowHalfOpen: true })
  socket.on('error', () => {})
  socket.resume() // read the answer, so its end is seen
  try {
    socket.write('CONNECT example.com:443 HTTP/1.1\r\nhost: example.com\r\n\r\n')
    await once(socket, 'end') // the answer came; this side stays open
    const stopped = gw.stop()
    assert.equal(await Promise.race([stopped, sleep(2_000).then(() => 'held')]), 0)
  } finally {
    socket.destroy()
    await gw.stop()
  }
})

test('while draining, kept-alive connections end with their answer instead of taking more requests', async () => {
  const gw = await startGateway(config('10s'))
  mock.always('slow', async (req, res) => {
    await sleep(300)
    await ok()(req, res)
  })
  const ask = (dispatcher: Agent) =>
    request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gatewayKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'slow', messages: [] }),
      dispatcher,
    })
  const [a, b] = [new Agent({ connections: 1 }), new Agent({ connections: 1 })]
  try {
    const first = ask(a)
    await sleep(50)
    const second = ask(b) // still in flight when the first is answered, so the drain goes on
    await sleep(50)
    const exited = gw.stop('SIGTERM')
    await gw.waitForLog((l) => l.msg === 'shutting down')
    // In flight when the drain began, its answer not yet started: it says the connection ends.
    const answered = await first
    assert.equal(answered.statusCode, 200)
    assert.equal(answered.headers.connection, 'close')
    await answered.body.text()
    // So the client's next request goes to a new connection, which is refused.
    await assert.rejects(ask(a), (err: NodeJS.ErrnoException) => /ECONNREFUSED/.test(String(err.code)))
    assert.equal((await second).statusCode, 200)
    assert.equal(await exited, 0)
    assert.ok(!gw.logs.some((l) => l.msg === 'grace period over, closing remaining connections'))
  } finally {
    await Promise.all([a.close(), b.close()])
  }
})

test('SIGHUP (a closed terminal) stops gracefully too: the stream in flight finishes, the last lines are written', async () => {
  const gw = await startGateway(config('5s'))
  mock.script('slow', sse(textChunks('finishes after the hang-up'), { delayMs: 100 }))
  const res = await gw.post('/v1/chat/completions', { model: 'slow', messages: [], stream: true })
  const body = res.text()
  await sleep(150)
  assert.equal(await gw.stop('SIGHUP'), 0)
  assert.match(await body, /data: \[DONE\]/)
  assert.ok(gw.logs.some((l) => l.msg === 'received stop signal' && l.signal === 'SIGHUP'))
  assert.ok(gw.logs.some((l) => l.msg === 'request' && l.status === 200))
})
