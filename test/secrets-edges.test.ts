import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { baseConfig, type RunningGateway, startGateway } from './gateway-process.ts'
import { type Behaviour, chunk, MockUpstream, sse } from './mock-upstream.ts'

// A base64-style key: `+`, `/` and `=` are what HTML, as well as URLs and JSON, spells otherwise.
const providerKey = 'ABSKQmVkcm9ja0tleS1+/pQrStUv=='
const keyOf = (headers: Record<string, unknown>) => String(headers.authorization).slice(7)

let mock: MockUpstream
let gw: RunningGateway

before(async () => {
  mock = await MockUpstream.start()
  gw = await startGateway(
    baseConfig({
      providers: [{ name: 'html', api_key: providerKey, base_url: mock.url('html') }],
      routes: [{ name: 'h', steps: [{ provider: 'html', model: 'm' }] }],
    }),
  )
})

after(async () => {
  await gw.stop()
  await mock.close()
})

const htmlEscapes: Record<string, (key: string) => string> = {
  // Go's html/template: `+` as &#43;, `=` left alone.
  decimal: (key) => key.replaceAll('+', '&#43;'),
  hex: (key) => key.replaceAll('+', '&#x2B;').replaceAll('/', '&#x2f;').replaceAll('=', '&#X3D;'),
  named: (key) => key.replaceAll('+', '&plus;').replaceAll('/', '&sol;').replaceAll('=', '&equals;'),
}

test('a key echoed in an HTML page title, as HTML escapes it, is redacted', async () => {
  for (const [name, spell] of Object.entries(htmlEscapes)) {
    const page: Behaviour = (req, res) => {
      res.writeHead(401, { 'content-type': 'text/html' })
      res.end(`<html><head><title>Invalid key ${spell(keyOf(req.headers))}</title></head></html>`)
    }
    mock.script('html', page)
    const text = await (await gw.post('/v1/chat/completions', { model: 'h', messages: [] })).text()
    assert.match(text, /Invalid key \[REDACTED\]/, `${name}: ${text}`)
    assert.ok(!text.includes('QmVkcm9ja0tleS1'), `${name}: ${text}`)
  }
  const output = gw.output()
  assert.ok(!output.includes('QmVkcm9ja0tleS1'), output)
})

test('a relayed refusal in a 200 or a stream error event is redacted', async () => {
  const relayed = (req: { headers: Record<string, unknown> }) => ({
    error: { code: 429, message: `rate limited for key ${keyOf(req.headers)}` },
  })
  mock.script('html', (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(relayed(req)))
  })
  const whole = await (await gw.post('/v1/chat/completions', { model: 'h', messages: [] })).text()
  mock.script('html', (req, res) => sse([relayed(req), chunk({ content: 'x' })])(req, res))
  const streamed = await (
    await gw.post('/v1/chat/completions', { model: 'h', messages: [], stream: true })
  ).text()
  mock.script('html', (req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' })
    res.end(JSON.stringify([{ error: { code: 400, message: `bad ${keyOf(req.headers)}`, status: 'X' } }]))
  })
  const gemini = await (await gw.post('/v1/chat/completions', { model: 'h', messages: [] })).text()
  for (const text of [whole, streamed, gemini]) {
    assert.match(text, /\[REDACTED\]/, text)
    assert.ok(!text.includes('QmVkcm9ja0tleS1'), text)
  }
})
