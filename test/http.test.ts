import assert from 'node:assert/strict'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
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
import { type Behaviour, MockUpstream, ok, raw, sse, textChunks } from './mock-upstream.ts'

let mock: MockUpstream
let gw: RunningGateway

before(async () => {
  mock = await MockUpstream.start()
  mock.always('p', ok('fine'))
  gw = await startGateway(
    baseConfig({
      max_body_size: '64kb',
      cors: { origins: ['https://chat.example'] },
      providers: [{ name: 'p', api_key: 'sk-http-secret-xyz', base_url: mock.url('p') }],
      routes: [
        { name: 'chat', steps: [{ provider: 'p', model: 'm1' }] },
        { name: 'vendor/model:free', steps: [{ provider: 'p', model: 'm2' }] },
        { name: 'counted', steps: [{ provider: 'p', model: 'm3', limits: { tpm: 1_000_000 } }] },
        { name: '快速', steps: [{ provider: 'p', model: 'qwen/通义-7b' }] },
        { name: 'a%C3%A9', steps: [{ provider: 'p', model: '50%' }] },
      ],
    }),
  )
})

after(async () => {
  await gw.stop()
  await mock.close()
})

interface Envelope {
  error: { message: string; type: string; code: string; param: string | null }
}

async function expectError(
  res: Response,
  status: number,
  code: string,
  param: string | null = null,
): Promise<Envelope> {
  assert.equal(res.status, status)
  assert.match(res.headers.get('content-type') ?? '', /application\/json/)
  const body = (await res.json()) as Envelope
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type'])
  assert.equal(body.error.code, code)
  assert.equal(body.error.param, param)
  assert.equal(typeof body.error.message, 'string')
  assert.ok(body.error.message.length > 0)
  return body
}

test('GET /health answers without auth', async () => {
  const res = await fetch(`${gw.url}/health`)
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { status: 'healthy' })
})

test('auth: X-Api-Key and Authorization: Bearer are accepted', async () => {
  assert.equal((await fetch(`${gw.url}/v1/models`, { headers: { 'x-api-key': gatewayKey } })).status, 200)
  assert.equal(
    (await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${gatewayKey}` } })).status,
    200,
  )
  assert.equal(
    (await fetch(`${gw.url}/v1/models`, { headers: { authorization: `bearer ${gatewayKey}` } })).status,
    200,
  )
  // An X-Api-Key meant for someone else does not hide the right key in Authorization.
  const both = { 'x-api-key': 'sk-ant-other', authorization: `Bearer ${gatewayKey}` }
  assert.equal((await fetch(`${gw.url}/v1/models`, { headers: both })).status, 200)
})

test('auth: a missing or wrong key is a 401 envelope, on every endpoint but /health', async () => {
  for (const headers of [
    {},
    { 'x-api-key': 'wrong' },
    { authorization: `Bearer ${gatewayKey}x` },
    { authorization: gatewayKey },
  ]) {
    await expectError(await fetch(`${gw.url}/v1/models`, { headers }), 401, 'invalid_api_key')
  }
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chat', messages: [] }),
  })
  await expectError(res, 401, 'invalid_api_key')
  assert.equal(mock.seen.length, 0)
})

test('GET /v1/models lists the routes as OpenAI model objects', async () => {
  const res = await gw.get('/v1/models')
  const body = (await res.json()) as {
    object: string
    data: { id: string; object: string; owned_by: string; created: number }[]
  }
  assert.equal(body.object, 'list')
  assert.deepEqual(
    body.data.map((m) => m.id),
    ['chat', 'vendor/model:free', 'counted', '快速', 'a%C3%A9'],
  )
  for (const model of body.data) {
    assert.equal(model.object, 'model')
    assert.equal(typeof model.created, 'number')
    assert.equal(model.owned_by, 'ai-gateway')
  }
})

test('GET /v1/models/{id} returns one route, including ids with slashes; unknown is 404', async () => {
  const res = await gw.get('/v1/models/vendor/model:free')
  assert.equal(res.status, 200)
  assert.equal(((await res.json()) as { id: string }).id, 'vendor/model:free')
  assert.equal((await gw.get(`/v1/models/${encodeURIComponent('vendor/model:free')}`)).status, 200)
  await expectError(await gw.get('/v1/models/nope'), 404, 'model_not_found', 'model')
})

test('unknown paths are 404 and wrong methods 405 with Allow', async () => {
  await expectError(await gw.get('/v1/unknown'), 404, 'not_found')
  const res = await gw.post('/v1/models', {})
  await expectError(res, 405, 'method_not_allowed')
  assert.equal(res.headers.get('allow'), 'GET')
  await expectError(await gw.get('/v1/chat/completions'), 405, 'method_not_allowed')
})

test('a doubled or trailing slash in the path is accepted', async () => {
  assert.equal((await gw.post('/v1//chat/completions', { model: 'chat', messages: [] })).status, 200)
  assert.equal((await gw.get('/v1/models/')).status, 200)
})

test('bad bodies are 400 with a clear code', async () => {
  await expectError(await gw.post('/v1/chat/completions', '{"model": "chat", '), 400, 'invalid_json')
  await expectError(await gw.post('/v1/chat/completions', ''), 400, 'invalid_json')
  await expectError(await gw.post('/v1/chat/completions', '[1,2]'), 400, 'invalid_request')
  await expectError(await gw.post('/v1/chat/completions', '"text"'), 400, 'invalid_request')
  await expectError(await gw.post('/v1/chat/completions', { messages: [] }), 400, 'invalid_request', 'model')
  await expectError(
    await gw.post('/v1/chat/completions', { model: 42, messages: [] }),
    400,
    'invalid_request',
    'model',
  )
  await expectError(
    await gw.post('/v1/chat/completions', { model: 'chat' }),
    400,
    'invalid_request',
    'messages',
  )
  await expectError(
    await gw.post('/v1/chat/completions', { model: 'chat', messages: 'hi' }),
    400,
    'invalid_request',
    'messages',
  )
})

test('a body nested too deeply to forward is a 400, not a crash or a 500', async () => {
  const deep = `${'['.repeat(20_000)}1${']'.repeat(20_000)}`
  const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}],"extra":${deep}}`
  await expectError(await gw.post('/v1/chat/completions', body), 400, 'invalid_request')
  const responses = `{"model":"chat","input":"hi","metadata":{"a":${deep}}}`
  await expectError(await gw.post('/v1/responses', responses), 400, 'invalid_request')
  // A route with a token quota estimates the prompt before anything else looks at the body.
  const content = `${'['.repeat(20_000)}"hi"${']'.repeat(20_000)}`
  const counted = `{"model":"counted","messages":[{"role":"user","content":${content}}]}`
  await expectError(await gw.post('/v1/chat/completions', counted), 400, 'invalid_request')
  assert.equal((await fetch(`${gw.url}/health`)).status, 200)
})

test('a stream flag that is not a boolean is a 400 naming it, before any provider is called', async () => {
  const before = mock.requests('p').length
  for (const stream of ['true', 1, 'false', {}]) {
    const body = await expectError(
      await gw.post('/v1/chat/completions', { model: 'chat', messages: [], stream }),
      400,
      'invalid_request',
      'stream',
    )
    assert.match(body.error.message, /true or false/)
    await expectError(
      await gw.post('/v1/responses', { model: 'chat', input: 'hi', stream }),
      400,
      'invalid_request',
      'stream',
    )
  }
  assert.equal(mock.requests('p').length, before)
  assert.equal(
    (await gw.post('/v1/chat/completions', { model: 'chat', messages: [], stream: null })).status,
    200,
  )
})

test('a compressed request body is a 415, not a puzzling invalid_json', async () => {
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'chat', messages: [] },
    { 'content-encoding': 'gzip' },
  )
  const body = await expectError(res, 415, 'unsupported_encoding')
  assert.match(body.error.message, /gzip/)
  const plain = await gw.post(
    '/v1/chat/completions',
    { model: 'chat', messages: [] },
    { 'content-encoding': 'identity' },
  )
  assert.equal(plain.status, 200)
})

test('an unknown route is 404 model_not_found', async () => {
  const body = await expectError(
    await gw.post('/v1/chat/completions', { model: 'gpt-4o', messages: [] }),
    404,
    'model_not_found',
    'model',
  )
  assert.match(body.error.message, /gpt-4o/)
})

test('an oversized body is 413, announced or streamed', async () => {
  const big = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x'.repeat(70 * 1024) }] })
  await expectError(await gw.post('/v1/chat/completions', big), 413, 'body_too_large')
  // Chunked, so the limit is found while reading rather than from Content-Length.
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gatewayKey}`, 'content-type': 'application/json' },
    })
    req.on('response', (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', reject)
    for (let i = 0; i < 8; i++) req.write('x'.repeat(16 * 1024))
    req.end()
  })
  assert.equal(status, 413)
  // The gateway is still healthy afterwards.
  assert.equal((await fetch(`${gw.url}/health`)).status, 200)
})

/** What a raw client gets for `text` before the gateway closes the connection. */
const rawExchange = (text: string) => rawExchangeWith(gw.url, text)

/** The status line and the error code of each answer in a raw exchange. */
const answersIn = (out: string) =>
  [
    ...out.matchAll(/HTTP\/1\.1 (\d{3} [^\r]*)\r\n(?:(?!\r\n\r\n)[\s\S])*\r\n\r\n(\{"error"[^\n]*?\}\})?/g),
  ].map(([, line, body]) => `${line}${body === undefined ? '' : ` ${JSON.parse(body).error.code}`}`)

test('requests node:http cannot parse get OpenAI-shaped 400, 431, 417 and 405; absolute targets are paths', async () => {
  assert.deepEqual(answersIn(await rawExchange('NOT HTTP\r\n\r\n')), ['400 Bad Request invalid_request'])
  // The absolute form of a request target (as sent to proxies) is a path like any other.
  const absolute = await rawExchange(`GET ${gw.url}/health HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n`)
  assert.match(absolute, /^HTTP\/1\.1 200 OK/)
  assert.deepEqual(
    answersIn(await rawExchange(`GET /health HTTP/1.1\r\nhost: gw\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`)),
    ['431 Request Header Fields Too Large headers_too_large'],
  )
  assert.deepEqual(
    answersIn(await rawExchange('GET /health HTTP/1.1\r\nhost: gw\r\nexpect: something\r\n\r\n')),
    ['417 Expectation Failed expectation_failed'],
  )
  assert.deepEqual(
    answersIn(await rawExchange('CONNECT example.com:443 HTTP/1.1\r\nhost: example.com\r\n\r\n')),
    ['405 Method Not Allowed method_not_allowed'],
  )
})

test('bytes that cannot be parsed after a whole request do not replace or break its answer', async () => {
  const body = JSON.stringify({ model: 'chat', messages: [] })
  const head = (extra: string, length = Buffer.byteLength(body)) =>
    `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer ${gatewayKey}\r\n` +
    `content-type: application/json\r\ncontent-length: ${length}\r\n${extra}\r\n`
  // A stray byte after a request that asked to close, and a pipelined request that is not HTTP.
  assert.deepEqual(answersIn(await rawExchange(`${head('connection: close\r\n')}${body}x`)), ['200 OK'])
  assert.deepEqual(answersIn(await rawExchange(`${head('')}${body}NOT HTTP\r\n\r\n`)), ['200 OK'])
  // A stream in flight when the garbage arrives ends as a stream, with no status line inside it.
  mock.script('p', async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'one' } }] })}\n\n`)
    await sleep(200)
    res.end(
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`,
    )
  })
  const streamed = JSON.stringify({ model: 'chat', messages: [], stream: true })
  const socket = connect(Number(new URL(gw.url).port), '127.0.0.1')
  let out = ''
  socket.on('data', (bytes: Buffer) => {
    out += bytes.toString('latin1')
  })
  socket.write(`${head('', Buffer.byteLength(streamed))}${streamed}`)
  await waitFor(() => out.includes('"one"'), 'the first event')
  socket.write('NOT HTTP\r\n\r\n')
  await once(socket, 'close')
  assert.deepEqual(answersIn(out), ['200 OK'])
  assert.match(out, /data: \[DONE\]\n\n\r\n0\r\n\r\n$/)
  // Two pipelined requests, the first slow, then garbage: both are answered before the connection ends.
  const slowly: Behaviour = async (req, res) => {
    await sleep(300)
    await ok('slow')(req, res)
  }
  mock.script('p', slowly, slowly)
  const two = await rawExchange(`${head('')}${body}${head('')}${body}NOT HTTP\r\n\r\n`)
  assert.deepEqual(answersIn(two), ['200 OK', '200 OK'])
})

test('a client that hangs up after a request and garbage is noticed: a 499, and the provider call stopped', async () => {
  const body = JSON.stringify({ model: 'chat', messages: [] })
  mock.script('p', async (req, res) => {
    await sleep(1_500)
    await ok()(req, res)
  })
  const socket = connect(Number(new URL(gw.url).port), '127.0.0.1')
  socket.on('error', () => {})
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer ${gatewayKey}\r\n` +
      `x-request-id: gone-after-garbage\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}NOT HTTP\r\n\r\n`,
  )
  await sleep(300)
  socket.end()
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'gone-after-garbage', 3_000)
  assert.equal(line.status, 499)
  assert.ok(Number(line.durationMs) < 1_200, `noticed after ${line.durationMs} ms`)
})

test('a client that hangs up while sending its body is logged as a 499, not as our error', async () => {
  const socket = connect(Number(new URL(gw.url).port), '127.0.0.1')
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer ${gatewayKey}\r\n` +
      'x-request-id: hung-up-1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"model":',
  )
  await sleep(200)
  socket.destroy()
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'hung-up-1')
  assert.equal(line.status, 499)
  assert.equal(line.level, 'info')
  assert.equal(line.error, undefined)
  assert.equal((await fetch(`${gw.url}/health`)).status, 200)
})

test('CORS: a preflight from an allowed origin is answered without the key', async () => {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'OPTIONS',
    headers: {
      origin: 'https://chat.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type, x-stainless-os',
    },
  })
  assert.equal(res.status, 204)
  assert.equal(res.headers.get('access-control-allow-origin'), 'https://chat.example')
  assert.equal(res.headers.get('access-control-allow-methods'), 'POST, OPTIONS')
  assert.equal(res.headers.get('access-control-allow-headers'), 'authorization, content-type, x-stainless-os')
  assert.equal(res.headers.get('vary'), 'origin, access-control-request-headers')
  assert.ok(Number(res.headers.get('access-control-max-age')) > 0)
  const unknown = await fetch(`${gw.url}/v1/nothing`, {
    method: 'OPTIONS',
    headers: { origin: 'https://chat.example', 'access-control-request-method': 'POST' },
  })
  assert.equal(unknown.status, 404)
})

test('CORS: answers to an allowed origin carry the headers, errors included; others get none', async () => {
  const origin = { origin: 'https://chat.example' }
  const ok = await gw.post('/v1/chat/completions', { model: 'chat', messages: [] }, origin)
  assert.equal(ok.status, 200)
  assert.equal(ok.headers.get('access-control-allow-origin'), 'https://chat.example')
  assert.match(ok.headers.get('access-control-expose-headers') ?? '', /x-request-id.*x-gateway-provider/)
  const denied = await fetch(`${gw.url}/v1/models`, { headers: origin })
  assert.equal(denied.status, 401)
  assert.equal(denied.headers.get('access-control-allow-origin'), 'https://chat.example')
  const other = await gw.get('/v1/models', { origin: 'https://elsewhere.example' })
  assert.equal(other.headers.get('access-control-allow-origin'), null)
  const preflight = await fetch(`${gw.url}/v1/models`, {
    method: 'OPTIONS',
    headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'GET' },
  })
  assert.equal(preflight.status, 405, 'no preflight answer for an origin not listed')
  const plain = await gw.get('/v1/models')
  assert.equal(plain.headers.get('access-control-allow-origin'), null)
  assert.equal(plain.headers.get('vary'), 'origin', 'answers differ by origin: a shared cache must know')
  assert.equal(other.headers.get('vary'), 'origin')
})

test('a request refused before its body was read ends its connection, not reading the rest', async () => {
  const socket = connect(Number(new URL(gw.url).port), '127.0.0.1')
  let answer = ''
  socket.on('data', (bytes: Buffer) => {
    answer += bytes.toString('latin1')
  })
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(performance.now())))
  socket.on('error', () => {})
  const started = performance.now()
  // No key, and a body announced far larger than will ever come: trickled a byte at a time.
  socket.write('POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 100000000000\r\n\r\n{')
  const trickle = setInterval(() => socket.writable && socket.write('x'), 50)
  const at = await closed
  clearInterval(trickle)
  assert.match(answer, /^HTTP\/1\.1 401 /)
  assert.match(answer, /\r\nconnection: close\r\n/i)
  assert.ok(at - started < 3_000, `closed after ${Math.round(at - started)} ms`)
  // With no body to wait for, a refusal keeps the connection: the next request on it is answered.
  const kept = connect(Number(new URL(gw.url).port), '127.0.0.1')
  let both = ''
  kept.on('data', (bytes: Buffer) => {
    both += bytes.toString('latin1')
  })
  kept.write('GET /v1/models HTTP/1.1\r\nhost: gw\r\n\r\nGET /health HTTP/1.1\r\nhost: gw\r\n\r\n')
  for (let i = 0; i < 100 && !both.includes('healthy'); i++) await sleep(10)
  kept.destroy()
  assert.match(both, /^HTTP\/1\.1 401 /)
  assert.doesNotMatch(both, /connection: close/i)
  assert.match(both, /"status":"healthy"/)
})

test('a request id is generated, or accepted from the client when sane', async () => {
  const generated = (await fetch(`${gw.url}/health`)).headers.get('x-request-id')
  assert.match(generated ?? '', /^[0-9a-f-]{36}$/)
  const kept = await fetch(`${gw.url}/health`, { headers: { 'x-request-id': 'abc-123' } })
  assert.equal(kept.headers.get('x-request-id'), 'abc-123')
  const replaced = await fetch(`${gw.url}/health`, { headers: { 'x-request-id': 'bad id with spaces' } })
  assert.notEqual(replaced.headers.get('x-request-id'), 'bad id with spaces')
})

test('stream or not follows body.stream, never the Accept header', async () => {
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'chat', messages: [] },
    { accept: 'text/event-stream' },
  )
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /application\/json/)
})

test('an answer in any script arrives byte for byte, its length counted in bytes', async () => {
  const text = JSON.stringify({
    id: 'c',
    object: 'chat.completion',
    choices: [
      { index: 0, message: { role: 'assistant', content: 'Grüße, 你好, 🚀 ✓' }, finish_reason: 'stop' },
    ],
  })
  mock.script('p', raw(200, text, 'application/json'))
  const res = await gw.post('/v1/chat/completions', { model: 'chat', messages: [] })
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-length'), String(Buffer.byteLength(text)))
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), Buffer.from(text))
  // Past 1 MiB the answer goes out as the bytes it came in (no second copy); the same bytes arrive.
  const large = JSON.stringify({
    id: 'c',
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content: '✓ Grüße '.repeat(200_000) } }],
  })
  mock.script('p', raw(200, large, 'application/json'))
  const big = await gw.post('/v1/chat/completions', { model: 'chat', messages: [] })
  assert.equal(big.headers.get('content-length'), String(Buffer.byteLength(large)))
  assert.deepEqual(Buffer.from(await big.arrayBuffer()), Buffer.from(large))
})

test('a JSON answer labelled as text by its provider reaches the client as application/json', async () => {
  const text = JSON.stringify({ id: 'c', object: 'chat.completion', choices: [] })
  for (const [given, sent] of [
    ['text/plain; charset=utf-8', 'application/json'],
    ['text/html', 'application/json'],
    ['application/json; charset=utf-8', 'application/json; charset=utf-8'],
  ]) {
    mock.script('p', raw(200, text, given))
    const res = await gw.post('/v1/chat/completions', { model: 'chat', messages: [] })
    assert.equal(res.headers.get('content-type'), sent, given)
    assert.equal(await res.text(), text)
  }
})

test('an interim 1xx answer from the provider is passed over for the answer that follows', async () => {
  mock.script('p', async (req, res) => {
    res.writeEarlyHints({ link: '</x>; rel=preload' })
    res.writeProcessing()
    await ok('after hints')(req, res)
  })
  const res = await gw.post('/v1/chat/completions', { model: 'chat', messages: [] })
  assert.equal(res.status, 200)
  assert.match(await res.text(), /after hints/)
  mock.script('p', async (_req, res) => {
    res.writeEarlyHints({ link: '</x>; rel=preload' })
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.end(
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'streamed' }, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`,
    )
  })
  const streamed = await gw.post('/v1/chat/completions', { model: 'chat', messages: [], stream: true })
  assert.equal(streamed.status, 200)
  assert.match(await streamed.text(), /streamed[\s\S]*\[DONE\]/)
})

test('a route and model named outside latin-1 are answered, their names percent-encoded in headers', async () => {
  for (const stream of [false, true]) {
    if (stream) mock.script('p', sse(textChunks('fine')))
    const res = await gw.post('/v1/chat/completions', { model: '快速', messages: [], stream })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-gateway-route'), encodeURIComponent('快速'))
    assert.equal(res.headers.get('x-gateway-model'), 'qwen%2F%E9%80%9A%E4%B9%89-7b')
    assert.equal(mock.requests('p').at(-1)?.body.model, 'qwen/通义-7b')
    await res.text()
  }
  // A name holding % is encoded too, so decoding a header always gives the name back.
  const percent = await gw.post('/v1/chat/completions', { model: 'a%C3%A9', messages: [] })
  assert.equal(decodeURIComponent(percent.headers.get('x-gateway-route') ?? ''), 'a%C3%A9')
  assert.equal(percent.headers.get('x-gateway-model'), '50%25')
  await percent.text()
})

test('every request gets one access log line', async () => {
  await fetch(`${gw.url}/health`, { headers: { 'x-request-id': 'access-1' } })
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'access-1')
  assert.equal(line.status, 200)
  assert.equal(line.path, '/health')
  assert.equal(line.method, 'GET')
  assert.equal(gw.logs.filter((l) => l.requestId === 'access-1').length, 1)
})
