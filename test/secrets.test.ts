import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { baseConfig, gatewayKey, type RunningGateway, startGateway } from './gateway-process.ts'
import { type Behaviour, chunk, json, MockUpstream, type SeenRequest, sse } from './mock-upstream.ts'

const providerKey = 'sk-live-provider-key-ABCDEF123456'
const headerToken = 'hdr-token-9876543210'
const otlpKey = 'glc_otlp-key-for-redaction-test'
// Google's way: the key in base_url's query string, where a provider's error may quote it back.
const queryKey = 'AIzaSy-query-key-0123456789'
// A base64-style key (Bedrock-like): `+`, `/` and `=` are what encoders spell differently.
const base64Key = 'ABSKQmVkcm9ja0tleS1+/pQrStUv=='
const secrets = [gatewayKey, providerKey, headerToken, otlpKey, queryKey, base64Key]
/** The spellings of a key that providers echo: percent-encoded in either case, `\u` escapes as .NET writes. */
const spellingsOf = (key: string) => [
  key,
  encodeURIComponent(key),
  encodeURIComponent(key).replace(/%[0-9A-F]{2}/g, (hex) => hex.toLowerCase()),
  key.replaceAll('+', '\\u002B'),
  key.replaceAll('+', '\\u002b').replaceAll('/', '\\u002F'),
]

let mock: MockUpstream
let gw: RunningGateway

/** Like providers that quote the key they were given in their 401 message. */
const echoKey =
  (code: number): Behaviour =>
  (req, res) => {
    res.writeHead(code, { 'content-type': 'application/json' })
    res.end(
      JSON.stringify({
        error: {
          message: `Incorrect API key provided: ${req.headers.authorization} (token ${req.headers['x-api-token']})`,
        },
      }),
    )
  }

before(async () => {
  mock = await MockUpstream.start()
  gw = await startGateway(
    baseConfig({
      log_level: 'trace',
      providers: [
        {
          name: 'echo',
          api_key: providerKey,
          base_url: mock.url('echo'),
          headers: { 'X-Api-Token': headerToken },
        },
        { name: 'echo2', api_key: providerKey, base_url: mock.url('echo2') },
        { name: 'query', base_url: `${mock.url('query')}?api-version=2024-06&key=${queryKey}` },
        { name: 'encoded', api_key: base64Key, base_url: mock.url('encoded') },
        { name: 'padded', api_key: providerKey, base_url: mock.url('padded') },
      ],
      routes: [
        {
          name: 'r',
          steps: [
            { provider: 'echo', model: 'm' },
            { provider: 'echo2', model: 'm' },
          ],
        },
        { name: 'q', steps: [{ provider: 'query', model: 'm' }] },
        { name: 'e', steps: [{ provider: 'encoded', model: 'm' }] },
        { name: 'p', steps: [{ provider: 'padded', model: 'm' }] },
      ],
    }),
    { env: { OTLP_API_KEY: otlpKey } },
  )
})

after(async () => {
  await gw.stop()
  await mock.close()
})

test('an upstream echoing the key leaks it into neither the error body nor the logs', async () => {
  mock.script('echo', echoKey(401)).script('echo2', echoKey(403))
  const res = await gw.post('/v1/chat/completions', { model: 'r', messages: [] })
  const text = await res.text()
  assert.equal(res.status, 502)
  assert.match(text, /Incorrect API key provided/, 'the reason itself is kept')
  assert.match(text, /\[REDACTED\]/)
  for (const secret of secrets) assert.ok(!text.includes(secret), `error body contains ${secret}`)
})

test('an echo inside a stream error event is scrubbed too', async () => {
  const echoInStream: Behaviour = (req, res) =>
    sse([chunk({ content: 'partial' }), { error: { message: `bad key ${req.headers.authorization}` } }], {
      end: 'no_done',
    })(req, res)
  mock.script('echo', echoInStream)
  const res = await gw.post('/v1/chat/completions', { model: 'r', messages: [], stream: true })
  const text = await res.text()
  assert.match(text, /stream_interrupted/)
  for (const secret of secrets) assert.ok(!text.includes(secret), `stream contains ${secret}`)
})

test("a key in base_url's query string is redacted from the error body and the status page", async () => {
  mock.script('query', (req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: { message: `API key not valid for ${req.path}` } }))
  })
  const res = await gw.post('/v1/chat/completions', { model: 'q', messages: [] })
  const text = await res.text()
  assert.equal(res.status, 400)
  assert.match(text, /api-version=2024-06&key=\[REDACTED\]/, 'the reason itself is kept')
  const status = await (await gw.get('/v1/gateway/status')).text()
  assert.match(status, /\[REDACTED\]/, 'the last error is there')
  for (const secret of secrets) {
    assert.ok(!text.includes(secret), `error body contains ${secret}`)
    assert.ok(!status.includes(secret), `status contains ${secret}`)
  }
})

test('a key echoed percent-encoded or \\u-escaped, in either case of hex digit, is redacted too', async () => {
  const keyOf = (req: { headers: Record<string, unknown> }) => String(req.headers.authorization).slice(7)
  const echoes: Behaviour[] = [
    json(401, (req: SeenRequest) => ({
      error: { message: `bad credential ${encodeURIComponent(keyOf(req))}` },
    })),
    json(401, (req: SeenRequest) => ({
      error: { message: `bad credential ${spellingsOf(keyOf(req))[2]}` },
    })),
    // System.Text.Json writes `+` as \u002B; sent as text, so the escape reaches the reason as it is.
    (req, res) => {
      res.writeHead(401, { 'content-type': 'text/plain' })
      res.end(`Unauthorized: "${keyOf(req).replaceAll('+', '\\u002B').replaceAll('/', '\\u002f')}"`)
    },
  ]
  for (const echo of echoes) {
    mock.script('encoded', echo)
    const text = await (await gw.post('/v1/chat/completions', { model: 'e', messages: [] })).text()
    assert.match(text, /\[REDACTED\]/, text)
    for (const spelling of spellingsOf(base64Key))
      assert.ok(!text.includes(spelling), `${spelling} in ${text}`)
    assert.ok(!text.includes('ABSKQmVk'), text)
  }
})

// The gateway reads 16 KiB of an error body: a key crossing that cut is only its first characters there,
// which no redaction can recognise as a key.
test('a key cut in two where the error body is cut leaves no part of itself in the reason', async () => {
  const said = 'invalid key '
  const padded: Behaviour = (req, res) => {
    res.writeHead(401, { 'content-type': 'text/plain' })
    const key = String(req.headers.authorization).slice(7)
    res.end(`${' '.repeat(16 * 1024 - said.length - 14)}${said}${key}`)
  }
  mock.always('padded', padded)
  for (const stream of [false, true]) {
    const text = await (await gw.post('/v1/chat/completions', { model: 'p', messages: [], stream })).text()
    assert.match(text, /padded\/m: HTTP 401/, text)
    assert.ok(!text.includes(providerKey.slice(0, 6)), `stream ${stream}: ${text}`)
  }
})

test('a client presenting a provider key as its gateway key is refused and not logged', async () => {
  const res = await gw.get('/v1/models', { authorization: `Bearer ${providerKey}` })
  assert.equal(res.status, 401)
  assert.ok(!(await res.text()).includes(providerKey))
})

test('no configured secret appears anywhere in the process output', async () => {
  await gw.waitForLog((l) => l.msg === 'request' && l.status === 401)
  const output = gw.output()
  assert.ok(output.includes('upstream attempt failed'), 'the failures were logged')
  for (const secret of secrets) assert.ok(!output.includes(secret), `output contains ${secret}`)
  for (const spelling of spellingsOf(base64Key)) assert.ok(!output.includes(spelling), `output: ${spelling}`)
  assert.ok(!output.includes(providerKey.slice(0, 6)), 'no cut key')
})
