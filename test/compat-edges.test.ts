// Real clients (the OpenAI SDK) against providers' quirks, through the gateway.

import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import { ChatOpenAI } from '@langchain/openai'
import OpenAI from 'openai'
import { baseConfig, gatewayKey, type RunningGateway, startGateway } from './gateway-process.ts'
import {
  type Behaviour,
  chunk,
  json,
  MockUpstream,
  ok,
  type SeenRequest,
  sse,
  status,
} from './mock-upstream.ts'

let mock: MockUpstream
let gw: RunningGateway
let client: OpenAI

before(async () => {
  mock = await MockUpstream.start()
  gw = await startGateway(
    baseConfig({
      providers: [
        { name: 'p', api_key: 'sk-compat-p-0000', base_url: mock.url('p') },
        { name: 'q', api_key: 'sk-compat-q-0000', base_url: mock.url('q') },
      ],
      routes: [
        {
          name: 'r',
          steps: [
            { provider: 'p', model: 'model-p' },
            { provider: 'q', model: 'model-q' },
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
beforeEach(() => mock.reset())

/** A chunk as SGLang 0.4.3 and early Ollama sent them: `finish_reason: ""` while the answer goes on. */
const unfinished = (delta: Record<string, unknown>) => {
  const c = chunk(delta)
  return { ...c, choices: c.choices.map((choice) => ({ ...choice, finish_reason: '' })) }
}

test('finish_reason "" is no finish: a stream cut after it raises, whole and translated', async () => {
  const cut = () =>
    sse([unfinished({ role: 'assistant', content: 'cut' }), unfinished({ content: ' short' })], {
      end: 'no_done',
    })
  mock.script('p', cut())
  const stream = await client.chat.completions.create({
    model: 'r',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
  })
  let text = ''
  await assert.rejects(async () => {
    for await (const part of stream) text += part.choices[0]?.delta.content ?? ''
  }, OpenAI.APIError)
  assert.equal(text, 'cut short')

  mock.script('p', cut())
  await assert.rejects(client.responses.stream({ model: 'r', input: 'hi' }).finalResponse(), OpenAI.APIError)

  // The real reason that follows still ends the stream well, [DONE] or not.
  const whole = () =>
    sse([unfinished({ role: 'assistant', content: 'whole' }), chunk({}, 'stop')], { end: 'no_done' })
  mock.script('p', whole())
  const final = await client.chat.completions
    .stream({ model: 'r', messages: [{ role: 'user', content: 'hi' }] })
    .finalChatCompletion()
  assert.equal(final.choices[0]?.message.content, 'whole')
  mock.script('p', whole())
  const response = await client.responses.stream({ model: 'r', input: 'hi' }).finalResponse()
  assert.deepEqual([response.status, response.output_text], ['completed', 'whole'])
})

test('finish_reason "" on a role-only preamble does not commit the stream: the next step still answers', async () => {
  mock
    .script('p', sse([unfinished({ role: 'assistant', content: '' }), { error: { message: 'overloaded' } }]))
    .script('q', sse([chunk({ role: 'assistant', content: 'from q' }), chunk({}, 'stop')]))
  const final = await client.chat.completions
    .stream({ model: 'r', messages: [{ role: 'user', content: 'hi' }] })
    .finalChatCompletion()
  assert.equal(final.choices[0]?.message.content, 'from q')
})

test('Responses: a field sent as null asks for nothing, and a cache retention hint is taken as the cache key is', async () => {
  mock.script('p', ok('fine'), ok('fine'))
  // The Python SDK sends None as null; OpenAI takes these as not set.
  const nulls = {
    top_logprobs: null,
    max_tool_calls: null,
    prompt: null,
    conversation: null,
    parallel_tool_calls: null,
    temperature: null,
    top_p: null,
  }
  const response = await client.responses.create({ model: 'r', input: 'hi', ...nulls })
  assert.equal(response.output_text, 'fine')
  // LangChain's promptCacheRetention.
  await client.responses.create({ model: 'r', input: 'hi', prompt_cache_retention: '24h' })
  for (const seen of mock.requests('p')) {
    assert.deepEqual(Object.keys(seen.body).sort(), ['messages', 'model'])
  }
  // A value is still refused by name where it cannot be honoured.
  const res = await gw.post('/v1/responses', { model: 'r', input: 'hi', top_logprobs: 3 })
  assert.equal(res.status, 400)
  assert.equal(((await res.json()) as { error: { param: string } }).error.param, 'top_logprobs')
})

// The Python SDK sends `tools=None` and `tool_choice=None` as null, as it does the fields above.
test('Responses: tools and tool_choice sent as null ask for no tools', async () => {
  mock.script('p', ok('fine'))
  const nulls = { tools: null, tool_choice: null } as unknown as Record<string, never>
  const response = await client.responses.create({ model: 'r', input: 'hi', ...nulls })
  assert.equal(response.output_text, 'fine')
  assert.deepEqual(response.tools, [])
  assert.equal(response.tool_choice, 'auto')
  const [seen] = mock.requests('p')
  assert.deepEqual(Object.keys(seen?.body ?? {}).sort(), ['messages', 'model'])
})

/** Refuses a null `strict` in a tool or a JSON schema, as OpenAI's chat API does; else answers `then`. */
const strictAboutNull =
  (then: Behaviour): Behaviour =>
  (req: SeenRequest, res) => {
    const tools = (req.body.tools ?? []) as { function: Record<string, unknown> }[]
    const schema = (req.body.response_format as { json_schema?: Record<string, unknown> } | undefined)
      ?.json_schema
    const nulls = [...tools.map((tool) => tool.function), schema ?? {}].some(
      (declared) => declared.strict === null || declared.description === null,
    )
    return (nulls ? status(400, "Invalid type for 'tools.0.function.strict': expected a boolean") : then)(
      req,
      res,
    )
  }

test("Responses: LangChain's tools (strict: null) and JSON schema reach the provider without null fields", async () => {
  mock.always('p', strictAboutNull(ok('{"city":"Paris"}')))
  // As n8n's OpenAI node and LangChain's useResponsesApi send them: `strict: null` when not set.
  const model = new ChatOpenAI({
    model: 'r',
    apiKey: gatewayKey,
    configuration: { baseURL: `${gw.url}/v1` },
    useResponsesApi: true,
    maxRetries: 0,
  })
  const weather = {
    type: 'function',
    function: {
      name: 'get_weather',
      parameters: { type: 'object', properties: { city: { type: 'string' } } },
    },
  } as const
  const message = await model.bindTools([weather]).invoke('Weather in Paris?')
  assert.equal(message.text, '{"city":"Paris"}')
  const format = {
    type: 'json_schema',
    name: 'o',
    schema: { type: 'object' },
    strict: null,
    description: null,
  }
  const res = await gw.post('/v1/responses', { model: 'r', input: 'x', text: { format } })
  assert.equal(res.status, 200)
  const [first, second] = mock.requests('p')
  const tools = first?.body.tools as { function: object }[] | undefined
  assert.deepEqual(tools?.[0]?.function, weather.function)
  assert.deepEqual(second?.body.response_format, {
    type: 'json_schema',
    json_schema: { name: 'o', schema: { type: 'object' } },
  })
})

test('Responses: tool call arguments sent as an object (llama-server, TGI) arrive as JSON text, whole and streamed', async () => {
  const call = {
    id: 'call_1',
    type: 'function',
    function: { name: 'get_weather', arguments: { city: 'Paris' } },
  }
  mock.script(
    'p',
    json(200, {
      id: 'c',
      object: 'chat.completion',
      model: 'model-p',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: null, tool_calls: [call] },
          finish_reason: 'tool_calls',
        },
      ],
    }),
    sse([chunk({ role: 'assistant', tool_calls: [{ index: 0, ...call }] }), chunk({}, 'tool_calls')]),
  )
  const whole = await client.responses.create({ model: 'r', input: 'Weather in Paris?' })
  const streamed = await client.responses.stream({ model: 'r', input: 'Weather in Paris?' }).finalResponse()
  for (const response of [whole, streamed]) {
    const item = response.output[0]
    assert.ok(item?.type === 'function_call')
    assert.equal(item.arguments, '{"city":"Paris"}')
  }
})
