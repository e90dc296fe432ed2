// The official OpenAI client, pointed at the gateway, must work as it does against OpenAI.

import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import OpenAI from 'openai'
import { baseConfig, gatewayKey, type RunningGateway, startGateway } from './gateway-process.ts'
import { MockUpstream, ok, sse, status, textChunks } from './mock-upstream.ts'

let mock: MockUpstream
let gw: RunningGateway
let client: OpenAI

before(async () => {
  mock = await MockUpstream.start()
  gw = await startGateway(
    baseConfig({
      providers: [
        { name: 'limited', api_key: 'sk-limited-000000', base_url: mock.url('limited') },
        { name: 'good', api_key: 'sk-good-111111', base_url: mock.url('good') },
      ],
      routes: [
        {
          name: 'smart',
          steps: [
            { provider: 'limited', model: 'big' },
            { provider: 'good', model: 'small' },
          ],
        },
      ],
    }),
  )
  client = new OpenAI({ apiKey: gatewayKey, baseURL: `${gw.url}/v1`, maxRetries: 0 })
})

after(async () => {
  await gw.stop()
  await mock.close()
})

test('lists models', async () => {
  const ids: string[] = []
  for await (const model of client.models.list()) ids.push(model.id)
  assert.deepEqual(ids, ['smart'])
  assert.equal((await client.models.retrieve('smart')).id, 'smart')
})

test('completes, through a fallback', async () => {
  mock.script('limited', status(429, 'rate limited')).script('good', ok('Hello from good'))
  const completion = await client.chat.completions.create({
    model: 'smart',
    messages: [{ role: 'user', content: 'Hi' }],
  })
  assert.equal(completion.choices[0]?.message.content, 'Hello from good')
  assert.equal(completion.model, 'small')
})

test('streams, through a fallback', async () => {
  mock.script('limited', status(503)).script('good', sse(textChunks('streamed through the gateway')))
  const stream = await client.chat.completions.create({
    model: 'smart',
    messages: [{ role: 'user', content: 'Hi' }],
    stream: true,
  })
  let text = ''
  for await (const part of stream) text += part.choices[0]?.delta.content ?? ''
  assert.equal(text, 'streamed through the gateway')
})

test('the streaming helper reads the stream', async () => {
  mock.script('limited', status(429)).script('good', sse(textChunks('helper works')))
  const runner = client.chat.completions.stream({
    model: 'smart',
    messages: [{ role: 'user', content: 'Hi' }],
  })
  const final = await runner.finalChatCompletion()
  assert.equal(final.choices[0]?.message.content, 'helper works')
})

test('raises on a stream cut after content', async () => {
  mock.script('limited', sse(textChunks('this will be cut'), { end: 'cut', delayMs: 20 }))
  const stream = await client.chat.completions.create({
    model: 'smart',
    messages: [{ role: 'user', content: 'Hi' }],
    stream: true,
  })
  let text = ''
  await assert.rejects(async () => {
    for await (const part of stream) text += part.choices[0]?.delta.content ?? ''
  }, OpenAI.APIError)
  assert.ok(text.startsWith('this'), text)
})

test('gets typed errors: unknown route and all steps failing', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: [] }), (err: unknown) => {
    assert.ok(err instanceof OpenAI.NotFoundError)
    assert.equal(err.code, 'model_not_found')
    return true
  })
  mock
    .script('limited', status(429, 'slow', { 'retry-after': '9' }))
    .script('good', status(429, 'slow', { 'retry-after': '4' }))
  await assert.rejects(client.chat.completions.create({ model: 'smart', messages: [] }), (err: unknown) => {
    assert.ok(err instanceof OpenAI.RateLimitError)
    assert.equal(err.headers.get('retry-after'), '4')
    return true
  })
})
