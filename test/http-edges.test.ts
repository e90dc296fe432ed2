import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect } from 'node:net'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  baseConfig,
  gatewayKey,
  type RunningGateway,
  rawExchangeWith,
  startGateway,
  waitFor,
} from './gateway-process.ts'
import { completion, MockUpstream, ok, raw } from './mock-upstream.ts'

let mock: MockUpstream
let gw: RunningGateway

before(async () => {
  mock = await MockUpstream.start()
  mock.always('p', ok('fine'))
  gw = await startGateway(
    baseConfig({
      max_body_size: '64kb',
      providers: [{ name: 'p', api_key: 'sk-edges-secret-xyz', base_url: mock.url('p') }],
      routes: [{ name: 'chat', steps: [{ provider: 'p', model: 'm1' }] }],
    }),
  )
})

after(async () => {
  await gw.stop()
  await mock.close()
})

/** The status fetch reports, or the error it raised instead. */
async function statusOf(key: string, body: string): Promise<number | string> {
  try {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body,
    })
    await res.text()
    return res.status
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause
    return `${(err as Error).message}: ${cause?.code ?? cause?.message}`
  }
}

test('a client still sending a refused body gets the answer, not a reset connection', async () => {
  // Far over the limit, and more than socket buffers hold: the client is still writing when refused.
  const big = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x'.repeat(16 << 20) }] })
  const seen: (number | string)[] = []
  for (let i = 0; i < 4; i++) {
    seen.push(await statusOf(gatewayKey, big))
    seen.push(await statusOf('wrong-key', big))
  }
  assert.deepEqual(seen, [413, 401, 413, 401, 413, 401, 413, 401])
  assert.equal((await fetch(`${gw.url}/health`)).status, 200)
})

test('an empty Content-Encoding (an empty list of codings) is an uncompressed body', async () => {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${gatewayKey}`,
      'content-type': 'application/json',
      'content-encoding': '',
    },
    body: JSON.stringify({ model: 'chat', messages: [] }),
  })
  assert.equal(res.status, 200)
  await res.text()
})

/** What a raw client gets for `text` before the gateway closes the connection. */
const rawExchange = (text: string) => rawExchangeWith(gw.url, text)

test('an HTTP/1.1 request without Host is a 400 envelope with a request id; HTTP/1.0 needs none', async () => {
  const out = await rawExchange(
    'GET /health HTTP/1.1\r\nx-request-id: no-host-1\r\nconnection: close\r\n\r\n',
  )
  assert.match(out, /^HTTP\/1\.1 400 /)
  assert.match(out, /\r\nx-request-id: no-host-1\r\n/)
  assert.equal(JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)).error.code, 'invalid_request')
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'no-host-1')
  assert.equal(line.status, 400)
  assert.match(await rawExchange('GET /health HTTP/1.0\r\n\r\n'), /^HTTP\/1\.1 200 /)
})

test('a body refused while it arrives (a broken chunk) is logged with the 400 sent, not as a 499', async () => {
  const out = await rawExchange(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer ${gatewayKey}\r\n` +
      'x-request-id: broken-chunk-1\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"mod\r\nZZZ\r\n',
  )
  assert.match(out, /^HTTP\/1\.1 400 /)
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'broken-chunk-1')
  assert.equal(line.status, 400)
  assert.equal(line.error, 'invalid_request')
  // A client that resets its connection mid-body is still one that left.
  const socket = connect(Number(new URL(gw.url).port), '127.0.0.1')
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer ${gatewayKey}\r\n` +
      'x-request-id: reset-mid-body-1\r\ncontent-length: 1000\r\n\r\n{"model":',
  )
  await sleep(200)
  socket.resetAndDestroy()
  const gone = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'reset-mid-body-1')
  assert.equal(gone.status, 499)
  assert.equal(gone.error, undefined)
})

test('a client that stops reading a large answer is let go when the request budget runs out', async () => {
  // More than the sockets on both sides buffer, so the answer waits on the client.
  const large = JSON.stringify(completion('y'.repeat(24 << 20)))
  const own = await startGateway(
    baseConfig({
      max_answer_size: '64mb',
      timeouts: { total: '2s' },
      providers: [{ name: 'p', base_url: mock.url('p') }],
      routes: [{ name: 'chat', steps: [{ provider: 'p', model: 'm1' }] }],
    }),
  )
  try {
    mock.script('p', raw(200, large, 'application/json'))
    const body = JSON.stringify({ model: 'chat', messages: [] })
    const socket = connect(Number(new URL(own.url).port), '127.0.0.1')
    socket.on('error', () => {})
    socket.pause() // reads nothing
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer ${gatewayKey}\r\n` +
        `x-request-id: stalled-1\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
    // Held until the gateway stops, it pins the answer in memory as long as the client likes.
    const line = await own.waitForLog((l) => l.msg === 'request' && l.requestId === 'stalled-1', 6_000)
    assert.equal(line.status, 499)
    socket.destroy()
  } finally {
    await own.stop()
  }
})

test('a graceful stop lets a slow client finish reading a large answer', async () => {
  const large = JSON.stringify(completion('y'.repeat(24 << 20)))
  const own = await startGateway(
    baseConfig({
      max_answer_size: '64mb',
      shutdown_timeout: '20s',
      providers: [{ name: 'p', base_url: mock.url('p') }],
      routes: [{ name: 'chat', steps: [{ provider: 'p', model: 'm1' }] }],
    }),
  )
  mock.script('p', raw(200, large, 'application/json'))
  const body = JSON.stringify({ model: 'chat', messages: [] })
  const socket = connect(Number(new URL(own.url).port), '127.0.0.1')
  socket.on('error', () => {})
  const chunks: Buffer[] = []
  socket.on('data', (bytes: Buffer) => chunks.push(bytes))
  socket.pause() // not reading yet: most of the answer waits in the gateway
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer ${gatewayKey}\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  )
  await waitFor(() => mock.requests('p').length > 0, 'the upstream request')
  await sleep(1_000)
  const stopped = own.stop()
  await sleep(300)
  socket.resume()
  await once(socket, 'close')
  const received = Buffer.concat(chunks)
  const answer = received.subarray(received.indexOf('\r\n\r\n') + 4)
  assert.equal(answer.length, Buffer.byteLength(large))
  assert.equal(await stopped, 0)
})

test('a refused body whose client resets after reading the answer is logged with the answer sent', async () => {
  const socket = connect(Number(new URL(gw.url).port), '127.0.0.1')
  socket.on('error', () => {})
  let out = ''
  socket.on('data', (bytes: Buffer) => {
    out += bytes.toString('latin1')
  })
  socket.write(
    'POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer wrong-key\r\n' +
      'x-request-id: refused-then-reset-1\r\ncontent-length: 100000\r\n\r\n{"model":',
  )
  await waitFor(() => out.endsWith('}}'), 'the answer')
  assert.match(out, /^HTTP\/1\.1 401 /)
  socket.resetAndDestroy()
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'refused-then-reset-1')
  assert.equal(line.status, 401)
  assert.equal(line.error, 'invalid_api_key')
})

test('a CORS preflight without Host over HTTP/1.1 is refused as every other request is', async () => {
  const own = await startGateway(
    baseConfig({
      cors: { origins: ['https://app.example'] },
      providers: [{ name: 'p', base_url: mock.url('p') }],
      routes: [{ name: 'chat', steps: [{ provider: 'p', model: 'm1' }] }],
    }),
  )
  try {
    const out = await rawExchangeWith(
      own.url,
      'OPTIONS /v1/models HTTP/1.1\r\norigin: https://app.example\r\naccess-control-request-method: GET\r\n' +
        'x-request-id: preflight-no-host-1\r\nconnection: close\r\n\r\n',
    )
    assert.match(out, /^HTTP\/1\.1 400 /)
    assert.equal(JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)).error.code, 'invalid_request')
  } finally {
    await own.stop()
  }
})
