// Streams at their edges: how an upstream frames and ends its events, and what the client then sees.

import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { baseConfig, type RunningGateway, startGateway } from './gateway-process.ts'
import { type Behaviour, chunk, MockUpstream, textChunks } from './mock-upstream.ts'

const messages = [{ role: 'user', content: 'hi' }]
let mock: MockUpstream
let gw: RunningGateway

before(async () => {
  mock = await MockUpstream.start()
  gw = await startGateway(
    baseConfig({
      default_timeout: '2s',
      providers: [
        { name: 'a', api_key: 'sk-edge-a-secret', base_url: mock.url('a') },
        { name: 'b', api_key: 'sk-edge-b-secret', base_url: mock.url('b') },
        { name: 'n', api_key: 'sk-edge-n-secret', base_url: mock.url('n'), responses: 'native' },
      ],
      routes: [
        {
          name: 'ab',
          steps: [
            { provider: 'a', model: 'model-a', timeout: '500ms' },
            { provider: 'b', model: 'model-b' },
          ],
        },
        { name: 'n', steps: [{ provider: 'n', model: 'model-n' }] },
        { name: 'idle', timeouts: { idle: '500ms' }, steps: [{ provider: 'a', model: 'model-a' }] },
      ],
    }),
  )
})

after(async () => {
  await gw.stop()
  await mock.close()
})

beforeEach(() => mock.reset())

/** A 200 event stream whose body is exactly `text`, ended cleanly. */
const rawStream =
  (text: string): Behaviour =>
  (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.end(text)
  }

const dataLine = (event: object) => `data: ${JSON.stringify(event)}`

const stream = (id: string) =>
  gw.post('/v1/chat/completions', { model: 'ab', messages, stream: true }, { 'x-request-id': id })

for (const [name, ending] of Object.entries({ 'a line break': '\n', 'a CR': '\r', nothing: '' })) {
  test(`a last event followed by ${name} instead of a blank line is still delivered`, async () => {
    const events = [...textChunks('all of it'), { ...chunk({}), choices: [], usage: { total_tokens: 9 } }]
    mock.script('a', rawStream(events.map(dataLine).join('\n\n') + ending))
    const id = `unterminated-${name.replaceAll(' ', '-')}`
    const res = await stream(id)
    assert.equal(res.headers.get('x-gateway-provider'), 'a')
    const text = await res.text()
    assert.ok(!text.includes('stream_interrupted'), text)
    assert.match(text, /"usage":\{"total_tokens":9\}/)
    assert.ok(text.endsWith('data: [DONE]\n\n'), text)
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === id)
    assert.equal(line.streamEnd, 'completed')
    assert.deepEqual(line.usage, { total_tokens: 9 })
  })
}

test('a whole answer in one event with no blank line after it is an answer, not an empty stream', async () => {
  mock.script('a', rawStream(dataLine(chunk({ role: 'assistant', content: 'one shot' }, 'stop'))))
  const res = await stream('unterminated-single')
  assert.equal(res.headers.get('x-gateway-provider'), 'a')
  const text = await res.text()
  assert.match(text, /one shot/)
  assert.ok(text.endsWith('data: [DONE]\n\n'), text)
})

test('a native Responses stream whose response.completed has no blank line after it completes', async () => {
  const response = { id: 'resp_edge', object: 'response', status: 'completed', model: 'model-n', output: [] }
  const events = [
    { type: 'response.created', sequence_number: 0, response: { ...response, status: 'in_progress' } },
    { type: 'response.completed', sequence_number: 1, response },
  ]
  mock.script('n', rawStream(events.map((e) => `event: ${e.type}\n${dataLine(e)}`).join('\n\n')))
  const res = await gw.post('/v1/responses', { model: 'n', input: 'hi', stream: true })
  const text = await res.text()
  assert.ok(!text.includes('stream_interrupted'), text)
  assert.match(text, /event: response\.completed\n/)
})

test('an event whose bytes keep arriving is not silence: a slow large event outlasting timeouts.idle passes', async () => {
  // Route idle: 500 ms of silence ends a committed stream. This event takes 1.2 s, a piece every 100 ms.
  const large = Buffer.from(`${dataLine(chunk({ content: 'x'.repeat(12_000) }))}\n\n`)
  mock.script('a', async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(`${dataLine(chunk({ role: 'assistant', content: 'start' }))}\n\n`)
    const piece = Math.ceil(large.length / 12)
    for (let at = 0; at < large.length && !res.destroyed; at += piece) {
      await sleep(100)
      res.write(large.subarray(at, at + piece))
    }
    res.end(`${dataLine(chunk({}, 'stop'))}\n\ndata: [DONE]\n\n`)
  })
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'idle', messages, stream: true },
    { 'x-request-id': 'trickle-1' },
  )
  const text = await res.text()
  assert.ok(!text.includes('stream_interrupted'), text.slice(-300))
  assert.ok(text.includes('x'.repeat(12_000)))
  assert.ok(text.endsWith('data: [DONE]\n\n'))
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'trickle-1')
  assert.equal(line.streamEnd, 'completed')
})
