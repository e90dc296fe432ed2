// `npm run demo` must show a fallback with no keys and no config, through the real gateway.

import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import OpenAI from 'openai'
import { launch, type RunningGateway } from './gateway-process.ts'

let gw: RunningGateway

before(async () => {
  gw = await launch(['demo'], { PORT: '0' })
})

after(() => gw.stop())

test('prints the curl lines to try', async () => {
  for (let i = 0; i < 100 && !gw.stderr().includes('Ctrl-C'); i++) await sleep(20)
  assert.match(gw.stderr(), /curl -si http:\/\/localhost:\d+\/v1\/chat\/completions/)
  assert.match(gw.stderr(), /Authorization: Bearer demo-key/)
})

test('the demo route falls back from the rate-limited provider', async () => {
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'demo', messages: [{ role: 'user', content: 'Hi there' }] },
    { authorization: 'Bearer demo-key' },
  )
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('x-gateway-provider'), 'local-model')
  assert.equal(res.headers.get('x-gateway-attempts'), '2')
  const body = (await res.json()) as { choices: { message: { content: string } }[] }
  assert.match(body.choices[0]?.message.content ?? '', /You said: Hi there/)
  const failed = await gw.waitForLog((l) => l.msg === 'upstream attempt failed')
  assert.equal(failed.status, 429)
})

test('the demo streams', async () => {
  const client = new OpenAI({ apiKey: 'demo-key', baseURL: `${gw.url}/v1` })
  const stream = await client.chat.completions.create({
    model: 'demo',
    stream: true,
    messages: [{ role: 'user', content: 'stream' }],
  })
  let text = ''
  for await (const part of stream) text += part.choices[0]?.delta.content ?? ''
  assert.match(text, /^Hello from the demo provider!/)
})

test('the demo answers every endpoint the gateway routes, and stays up', async () => {
  const client = new OpenAI({ apiKey: 'demo-key', baseURL: `${gw.url}/v1` })
  const embeddings = await client.embeddings.create({ model: 'demo', input: ['one', 'two'] })
  assert.deepEqual(
    embeddings.data.map((item) => item.index),
    [0, 1],
  )
  assert.ok(embeddings.data.every((item) => item.embedding.length > 0))
  const completion = await client.completions.create({ model: 'demo', prompt: 'Hi there' })
  assert.match(completion.choices[0]?.text ?? '', /You said: Hi there/)
  const stream = await client.completions.create({ model: 'demo', prompt: 'stream', stream: true })
  let text = ''
  for await (const part of stream) text += part.choices[0]?.text ?? ''
  assert.match(text, /^Hello from the demo provider!/)
  const response = await client.responses.create({ model: 'demo', input: 'Hi there' })
  assert.match(response.output_text, /You said: Hi there/)
  assert.equal((await fetch(`${gw.url}/health`)).status, 200)
})
