// The Responses API through the official SDK: translated for chat-only providers (text, JSON schema,
// function calls, previous_response_id, streams, fallback, mid-stream failure), passed through for
// native ones; plus embeddings and legacy completions.

import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'
import { ChatOpenAI } from '@langchain/openai'
import OpenAI from 'openai'
import { ResponseStore } from '../src/response-store.ts'
import { baseConfig, gatewayKey, type RunningGateway, startGateway } from './gateway-process.ts'
import {
  type Behaviour,
  chunk,
  completion,
  json,
  MockUpstream,
  ok,
  type SeenRequest,
  sse,
  status,
  textChunks,
} from './mock-upstream.ts'

let mock: MockUpstream
let gw: RunningGateway
let client: OpenAI

before(async () => {
  mock = await MockUpstream.start()
  gw = await startGateway(
    baseConfig({
      providers: [
        { name: 'chat1', api_key: 'sk-chat1-000000', base_url: mock.url('chat1') },
        { name: 'chat2', api_key: 'sk-chat2-000000', base_url: mock.url('chat2') },
        { name: 'native', api_key: 'sk-native-00000', base_url: mock.url('native'), responses: 'native' },
        { name: 'native2', api_key: 'sk-native2-0000', base_url: mock.url('native2'), responses: 'native' },
      ],
      routes: [
        {
          name: 'r',
          steps: [
            { provider: 'chat1', model: 'chat-model-1' },
            { provider: 'chat2', model: 'chat-model-2' },
          ],
        },
        { name: 'n', steps: [{ provider: 'native', model: 'native-model' }] },
        {
          name: 'nn',
          steps: [
            { provider: 'native', model: 'native-model' },
            { provider: 'native2', model: 'native-model-2' },
          ],
        },
        {
          name: 'nc',
          steps: [
            { provider: 'native', model: 'native-model' },
            { provider: 'chat1', model: 'chat-model-1' },
          ],
        },
        {
          name: 'cn',
          steps: [
            { provider: 'chat1', model: 'chat-model-1' },
            { provider: 'native', model: 'native-model' },
          ],
        },
        {
          name: 'emb',
          steps: [
            { provider: 'chat1', model: 'embed-1' },
            { provider: 'chat2', model: 'embed-2' },
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

const toolCall = (id: string, name: string, args: string): Behaviour =>
  json(200, (req: { body: Record<string, unknown> }) => ({
    id: 'chatcmpl-t',
    object: 'chat.completion',
    model: String(req.body.model),
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          tool_calls: [{ id, type: 'function', function: { name, arguments: args } }],
        },
        finish_reason: 'tool_calls',
      },
    ],
    usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 },
  }))

/** A chat completion whose one choice is the assistant `message`. */
const chatAnswer = (message: Record<string, unknown>, finish_reason = 'stop'): Behaviour =>
  json(200, {
    id: 'c',
    object: 'chat.completion',
    model: 'chat-model-1',
    choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason }],
  })

/** Reading `stream` ends in the SDK raising, as a broken stream must make it. */
const raisesMidStream = (stream: AsyncIterable<unknown>) =>
  assert.rejects(async () => {
    for await (const _ of stream) {
      // read until the error
    }
  }, OpenAI.APIError)

/** The refusal parts of a Response's messages. */
const refusalsOf = (response: { output: { type: string; content?: unknown }[] }): string[] =>
  response.output.flatMap((item) =>
    item.type === 'message'
      ? (item.content as { type: string; refusal?: string }[])
          .filter((part) => part.type === 'refusal')
          .map((part) => part.refusal ?? '')
      : [],
  )

describe('translated for chat-only providers', () => {
  test('text: the request becomes a chat completion and the answer a Response', async () => {
    const usage = {
      prompt_tokens: 5,
      completion_tokens: 7,
      total_tokens: 12,
      prompt_tokens_details: { cached_tokens: 3 },
      completion_tokens_details: { reasoning_tokens: 2 },
    }
    mock.script(
      'chat1',
      json(200, (req: SeenRequest) => completion('Hi from chat', String(req.body.model), usage)),
    )
    const response = await client.responses.create({
      model: 'r',
      instructions: 'Be brief.',
      input: 'Hello?',
      max_output_tokens: 50,
      temperature: 0.2,
      metadata: { trace: 'x' },
    })
    assert.match(response.id, /^resp_/)
    assert.equal(response.object, 'response')
    assert.equal(response.status, 'completed')
    assert.equal(response.output_text, 'Hi from chat')
    assert.equal(response.model, 'chat-model-1')
    assert.deepEqual(response.metadata, { trace: 'x' })
    assert.equal(response.usage?.input_tokens, 5)
    assert.equal(response.usage?.output_tokens, 7)
    assert.equal(response.usage?.total_tokens, 12)
    assert.equal(response.usage?.input_tokens_details.cached_tokens, 3)
    assert.equal(response.usage?.output_tokens_details.reasoning_tokens, 2)
    const sent = mock.requests('chat1')[0]
    assert.equal(sent?.path, '/chat1/v1/chat/completions')
    assert.deepEqual(sent?.body, {
      model: 'chat-model-1',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello?' },
      ],
      temperature: 0.2,
      max_tokens: 50,
    })
  })

  test('JSON schema output becomes response_format', async () => {
    mock.script('chat1', ok('{"answer":42}'))
    const response = await client.responses.create({
      model: 'r',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'The answer?' }] }],
      text: {
        format: {
          type: 'json_schema',
          name: 'answer',
          strict: true,
          schema: {
            type: 'object',
            properties: { answer: { type: 'number' } },
            required: ['answer'],
            additionalProperties: false,
          },
        },
      },
    })
    assert.deepEqual(JSON.parse(response.output_text), { answer: 42 })
    const sent = mock.requests('chat1')[0]?.body ?? {}
    assert.equal((sent.response_format as { type: string }).type, 'json_schema')
    assert.equal((sent.response_format as { json_schema: { name: string } }).json_schema.name, 'answer')
    assert.deepEqual(sent.messages, [{ role: 'user', content: [{ type: 'text', text: 'The answer?' }] }])
  })

  test('a function call round trip with previous_response_id and function_call_output', async () => {
    mock.script('chat1', toolCall('call_1', 'get_weather', '{"city":"Oslo"}'))
    const tools = [
      {
        type: 'function' as const,
        name: 'get_weather',
        description: 'Weather',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        strict: true,
      },
    ]
    const first = await client.responses.create({ model: 'r', input: 'Weather in Oslo?', tools })
    const call = first.output.find((item) => item.type === 'function_call')
    assert.ok(call && call.type === 'function_call')
    assert.equal(call.call_id, 'call_1')
    assert.equal(call.name, 'get_weather')
    assert.equal(call.arguments, '{"city":"Oslo"}')
    const sentTools = mock.requests('chat1')[0]?.body.tools as {
      function: { name: string; strict: boolean }
    }[]
    assert.equal(sentTools[0]?.function.name, 'get_weather')
    assert.equal(sentTools[0]?.function.strict, true)

    mock.script('chat1', ok('It is sunny in Oslo.'))
    const second = await client.responses.create({
      model: 'r',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: 'call_1', output: '{"sky":"clear"}' }],
      tools,
    })
    assert.equal(second.output_text, 'It is sunny in Oslo.')
    assert.deepEqual(mock.requests('chat1')[1]?.body.messages, [
      { role: 'user', content: 'Weather in Oslo?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"sky":"clear"}' },
    ])
  })

  test('a function_call_output given as parts: its text is the tool message, anything else is refused', async () => {
    const call = { type: 'function_call' as const, call_id: 'call_1', name: 'get_weather', arguments: '{}' }
    const answer = (output: OpenAI.Responses.ResponseFunctionCallOutputItemList) => [
      { role: 'user' as const, content: 'Weather?' },
      call,
      { type: 'function_call_output' as const, call_id: 'call_1', output },
    ]
    mock.script('chat1', ok('Sunny.'))
    await client.responses.create({
      model: 'r',
      input: answer([
        { type: 'input_text', text: 'Sunny, ' },
        { type: 'input_text', text: '21 C' },
      ]),
    })
    const messages = mock.requests('chat1')[0]?.body.messages as unknown[]
    assert.deepEqual(messages.at(-1), { role: 'tool', tool_call_id: 'call_1', content: 'Sunny, 21 C' })
    const res = await gw.post('/v1/responses', {
      model: 'r',
      input: answer([
        { type: 'input_text', text: 'Sunny, 21 C' },
        { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'auto' },
      ]),
    })
    assert.equal(res.status, 400)
    const { error } = (await res.json()) as { error: { param: string; code: string } }
    assert.deepEqual([error.code, error.param], ['invalid_request', 'input.function_call_output.output'])
    assert.equal(mock.requests('chat1').length, 1, 'refused before any provider is called')
  })

  test('previous_response_id carries the conversation; unknown ids are a 404; stored ones can be fetched', async () => {
    mock.script('chat1', ok('Nice to meet you, Ada.'), ok('Your name is Ada.'))
    const first = await client.responses.create({ model: 'r', input: 'My name is Ada.' })
    const second = await client.responses.create({
      model: 'r',
      input: 'What is my name?',
      previous_response_id: first.id,
    })
    assert.equal(second.output_text, 'Your name is Ada.')
    assert.deepEqual(mock.requests('chat1')[1]?.body.messages, [
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'Nice to meet you, Ada.' },
      { role: 'user', content: 'What is my name?' },
    ])
    const fetched = await client.responses.retrieve(second.id)
    assert.equal(fetched.output_text, 'Your name is Ada.')
    await assert.rejects(
      client.responses.create({ model: 'r', input: 'x', previous_response_id: 'resp_nope' }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.NotFoundError)
        assert.equal(err.code, 'response_not_found')
        return true
      },
    )
    await assert.rejects(client.responses.retrieve('resp_missing'), OpenAI.NotFoundError)
    for (const wrong of [42, { id: first.id }]) {
      const body = { model: 'r', input: 'x', previous_response_id: wrong as unknown as string }
      await assert.rejects(client.responses.create(body), (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError)
        assert.equal(err.param, 'previous_response_id')
        return true
      })
    }
  })

  test('system and developer text given as parts goes as a string (Groq refuses anything else)', async () => {
    mock.script('chat1', ok('Bonjour'))
    await client.responses.create({
      model: 'r',
      input: [
        { type: 'message', role: 'developer', content: [{ type: 'input_text', text: 'Answer in French.' }] },
        {
          type: 'message',
          role: 'system',
          content: [
            { type: 'input_text', text: 'Be ' },
            { type: 'input_text', text: 'brief.' },
          ],
        },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello' }] },
      ],
    })
    assert.deepEqual(mock.requests('chat1')[0]?.body.messages, [
      { role: 'system', content: 'Answer in French.' },
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hello' }] },
    ])
  })

  test('a length finish is an incomplete response, its items too', async () => {
    mock.script('chat1', chatAnswer({ content: 'cut' }, 'length'))
    const response = await client.responses.create({ model: 'r', input: 'long', max_output_tokens: 1 })
    assert.equal(response.status, 'incomplete')
    assert.deepEqual(response.incomplete_details, { reason: 'max_output_tokens' })
    // Its items are incomplete too, whole and streamed.
    const statuses = (r: { output: { type: string }[] }) =>
      r.output.map((item) => [item.type, (item as { status?: string }).status])
    assert.deepEqual(statuses(response), [['message', 'incomplete']])
    mock.script('chat1', sse([chunk({ role: 'assistant', content: 'cut' }), chunk({}, 'length')]))
    const done: unknown[] = []
    const stream = client.responses.stream({ model: 'r', input: 'long', max_output_tokens: 1 })
    stream.on('response.output_item.done', (event) => done.push((event.item as { status?: string }).status))
    const final = await stream.finalResponse()
    assert.equal(final.status, 'incomplete')
    assert.deepEqual(done, ['incomplete'])
    assert.deepEqual(statuses(final), [['message', 'incomplete']])
  })

  test('malformed input is a 400 naming the field, not a crash', async () => {
    for (const [body, param] of [
      [{ input: [null] }, 'input'],
      [{ input: ['hi'] }, 'input'],
      [{ input: [{ role: 'user', content: [null] }] }, 'input.content'],
      [{ input: 'x', tools: [null] }, 'tools'],
      [{ input: 'x', tool_choice: 42 }, 'tool_choice'],
    ] as const) {
      const res = await gw.post('/v1/responses', { model: 'r', ...body })
      assert.equal(res.status, 400, JSON.stringify(body))
      const { error } = (await res.json()) as { error: { param: string; code: string } }
      assert.deepEqual([error.code, error.param], ['invalid_request', param])
    }
    for (const text of [null, { format: null }]) {
      mock.script('chat1', ok())
      const res = await gw.post('/v1/responses', { model: 'r', input: 'x', text })
      assert.equal(res.status, 200, JSON.stringify(text))
    }
  })

  test("a model's refusal arrives as a refusal part, whole and streamed", async () => {
    const refusal = "I can't help with that."
    mock.script('chat1', chatAnswer({ content: null, refusal }))
    const whole = await client.responses.create({ model: 'r', input: 'x' })
    assert.deepEqual(refusalsOf(whole), [refusal])
    mock.script(
      'chat1',
      sse([
        chunk({ role: 'assistant', refusal: "I can't" }),
        chunk({ refusal: ' help with that.' }),
        chunk({}, 'stop'),
      ]),
    )
    const deltas: string[] = []
    const stream = client.responses.stream({ model: 'r', input: 'x' })
    stream.on('response.refusal.delta', (event) => deltas.push(event.delta))
    const final = await stream.finalResponse()
    assert.deepEqual(deltas, ["I can't", ' help with that.'])
    assert.deepEqual(refusalsOf(final), [refusal])
    // The conversation goes on after it: the stored refusal is replayed as what the assistant said.
    mock.script('chat1', ok('then something else'))
    const next = await client.responses.create({ model: 'r', input: 'ok', previous_response_id: final.id })
    assert.equal(next.output_text, 'then something else')
    const messages = mock.requests('chat1').at(-1)?.body.messages as { role: string; content: unknown }[]
    assert.deepEqual(messages.at(-2), { role: 'assistant', content: refusal })
  })

  test('content given as a list of chunks (as Magistral sends it): its text parts, whole and streamed', async () => {
    const thinking = { type: 'thinking', thinking: [{ type: 'text', text: 'Reasoning traces...' }] }
    mock.script('chat1', chatAnswer({ content: [thinking, { type: 'text', text: 'The answer is 4.' }] }))
    const whole = await client.responses.create({ model: 'r', input: '2+2?' })
    assert.equal(whole.status, 'completed')
    assert.equal(whole.output_text, 'The answer is 4.')
    assert.equal(whole.output.length, 1)
    mock.script(
      'chat1',
      sse([
        chunk({ role: 'assistant', content: [thinking] }),
        chunk({ content: [{ type: 'text', text: 'The answer' }] }),
        chunk({ content: ' is 4.' }),
        chunk({}, 'stop'),
      ]),
    )
    const deltas: string[] = []
    const stream = client.responses.stream({ model: 'r', input: '2+2?' })
    stream.on('response.output_text.delta', (event) => deltas.push(event.delta))
    const final = await stream.finalResponse()
    assert.deepEqual(deltas, ['The answer', ' is 4.'])
    assert.equal(final.output_text, 'The answer is 4.')
  })

  test('tool_calls that are not a list of objects are passed over, whole and streamed, not a 500', async () => {
    for (const tool_calls of [5, [null], {}, ['x', [1]]]) {
      mock.script('chat1', chatAnswer({ content: 'plain text', tool_calls }))
      const whole = await client.responses.create({ model: 'r', input: 'hi' })
      assert.equal(whole.output_text, 'plain text', JSON.stringify(tool_calls))
      assert.equal(whole.output.length, 1)
    }
    mock.script('chat1', sse([chunk({ content: 'still' }), chunk({ tool_calls: [null] }), chunk({}, 'stop')]))
    const final = await client.responses.stream({ model: 'r', input: 'hi' }).finalResponse()
    assert.equal(final.status, 'completed')
    assert.equal(final.output_text, 'still')
  })

  test('fields that cannot be honoured are refused by name', async () => {
    for (const [extra, param] of [
      [{ tools: [{ type: 'web_search' }] }, 'tools.web_search'],
      [{ background: true }, 'background'],
      [{ conversation: 'conv_1' }, 'conversation'],
    ] as const) {
      const res = await gw.post('/v1/responses', { model: 'r', input: 'x', ...extra })
      assert.equal(res.status, 400)
      const body = (await res.json()) as { error: { param: string; code: string } }
      assert.equal(body.error.param, param)
    }
    assert.equal(mock.seen.length, 0)
  })

  test('streaming: the Responses event sequence, read by the SDK', async () => {
    mock.script(
      'chat1',
      sse([
        ...textChunks('streamed response text'),
        { ...chunk({}), choices: [], usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 } },
      ]),
    )
    const stream = client.responses.stream({ model: 'r', input: 'Stream please' })
    const types: string[] = []
    const sequence: number[] = []
    for await (const event of stream) {
      types.push(event.type)
      sequence.push(event.sequence_number)
    }
    const final = await stream.finalResponse()
    assert.equal(final.output_text, 'streamed response text')
    assert.equal(final.usage?.total_tokens, 6)
    assert.deepEqual(types.slice(0, 4), [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
    ])
    assert.ok(types.includes('response.output_text.delta'))
    assert.deepEqual(types.slice(-4), [
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ])
    assert.deepEqual(
      sequence,
      sequence.map((_, i) => i),
    )
    assert.deepEqual(mock.requests('chat1')[0]?.body.stream_options, { include_usage: true })
  })

  test('streaming a function call', async () => {
    mock.script(
      'chat1',
      sse([
        chunk({
          role: 'assistant',
          content: null,
          tool_calls: [
            { index: 0, id: 'call_9', type: 'function', function: { name: 'lookup', arguments: '' } },
          ],
        }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '{"q":' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '"x"}' } }] }),
        chunk({}, 'tool_calls'),
      ]),
    )
    const stream = client.responses.stream({
      model: 'r',
      input: 'look it up',
      tools: [{ type: 'function', name: 'lookup', parameters: { type: 'object' }, strict: false }],
    })
    const final = await stream.finalResponse()
    const call = final.output[0]
    assert.ok(call?.type === 'function_call')
    assert.equal(call.call_id, 'call_9')
    assert.equal(call.arguments, '{"q":"x"}')
  })

  test('streamed calls without index or id (as Gemini sends them) stay apart, each with a call_id', async () => {
    mock.script(
      'chat1',
      sse([
        chunk({
          role: 'assistant',
          tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'f1', arguments: '{"x":1}' } }],
        }),
        chunk({
          tool_calls: [{ id: 'call_b', type: 'function', function: { name: 'f2', arguments: '{"y":' } }],
        }),
        chunk({ tool_calls: [{ function: { arguments: '2}' } }] }),
        chunk({ tool_calls: [{ type: 'function', function: { name: 'f3', arguments: '{}' } }] }),
        // Some providers repeat id and name on every delta: the id says it is the same call.
        chunk({ tool_calls: [{ id: 'call_d', function: { name: 'f4', arguments: '{"z":' } }] }),
        chunk({ tool_calls: [{ id: 'call_d', function: { name: 'f4', arguments: '3}' } }] }),
        chunk({}, 'tool_calls'),
      ]),
    )
    const final = await client.responses.stream({ model: 'r', input: 'go' }).finalResponse()
    const calls = final.output.filter((item) => item.type === 'function_call')
    assert.deepEqual(
      calls.map((c) => [c.name, c.arguments]),
      [
        ['f1', '{"x":1}'],
        ['f2', '{"y":2}'],
        ['f3', '{}'],
        ['f4', '{"z":3}'],
      ],
    )
    assert.deepEqual(
      calls.slice(0, 2).map((c) => c.call_id),
      ['call_a', 'call_b'],
    )
    assert.match(calls[2]?.call_id ?? '', /^call_[0-9a-f]+$/, 'made up when the provider sent none')
    mock.script('chat1', toolCall('', 'f4', '{}'))
    const whole = await client.responses.create({ model: 'r', input: 'go' })
    const call = whole.output[0]
    assert.ok(call?.type === 'function_call')
    assert.match(call.call_id, /^call_[0-9a-f]+$/)
  })

  test('parallel calls streamed at one index (as Ollama and vLLM send them) stay apart by id', async () => {
    const call = (id: string | undefined, name: string | undefined, args: string) => ({
      index: 0,
      ...(id === undefined ? {} : { id, type: 'function' }),
      function: { ...(name === undefined ? {} : { name }), arguments: args },
    })
    mock.script(
      'chat1',
      sse([
        chunk({ role: 'assistant', content: '', tool_calls: [call('call_a', 'file_write', '{"filePath":')] }),
        chunk({ tool_calls: [call(undefined, undefined, '"hello.py"}')] }),
        chunk({ tool_calls: [call('call_b', 'file_write', '{"filePath":"world.py"}')] }),
        // A repeated id continues its call.
        chunk({ tool_calls: [call('call_c', 'file_read', '{"filePath":')] }),
        chunk({ tool_calls: [call('call_c', 'file_read', '"a.py"}')] }),
        chunk({ content: '' }, 'tool_calls'),
      ]),
    )
    const final = await client.responses.stream({ model: 'r', input: 'write two files' }).finalResponse()
    assert.deepEqual(
      final.output.map((item) => item.type === 'function_call' && [item.call_id, item.name, item.arguments]),
      [
        ['call_a', 'file_write', '{"filePath":"hello.py"}'],
        ['call_b', 'file_write', '{"filePath":"world.py"}'],
        ['call_c', 'file_read', '{"filePath":"a.py"}'],
      ],
    )
    // A fresh id on every delta of one call, without its name again (Poolside, older mlx servers).
    mock.script(
      'chat1',
      sse([
        chunk({ tool_calls: [call('call_first', 'get_weather', '')] }),
        chunk({ tool_calls: [call('call_x1', undefined, '{"city":')] }),
        chunk({ tool_calls: [call('call_x2', undefined, '"Paris"}')] }),
        chunk({}, 'tool_calls'),
      ]),
    )
    const one = await client.responses.stream({ model: 'r', input: 'weather' }).finalResponse()
    assert.deepEqual(
      one.output.map((item) => item.type === 'function_call' && [item.call_id, item.name, item.arguments]),
      [['call_first', 'get_weather', '{"city":"Paris"}']],
    )
  })

  test('an item_reference to an output item stored here is replaced by it; an unknown one is a 404', async () => {
    const call = { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{}' } }
    mock.script('chat1', chatAnswer({ content: 'Let me look.', tool_calls: [call] }, 'tool_calls'))
    const first = await client.responses.create({ model: 'r', input: 'My name is Ada.' })
    const [message, fnCall] = first.output.map((item) => item.id ?? '')
    mock.script('chat1', ok('Your name is Ada.'))
    // As Vercel's AI SDK sends a second turn; the type of a reference may be left out.
    const second = await client.responses.create({
      model: 'r',
      input: [
        { role: 'user', content: 'My name is Ada.' },
        { type: 'item_reference', id: message ?? '' },
        { id: fnCall ?? '' },
        { type: 'function_call_output', call_id: 'call_1', output: '42' },
      ],
    })
    assert.equal(second.output_text, 'Your name is Ada.')
    assert.deepEqual(mock.requests('chat1')[1]?.body.messages, [
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'Let me look.', tool_calls: [call] },
      { role: 'tool', tool_call_id: 'call_1', content: '42' },
    ])
    // Nothing is kept of a response made with store: false, as at OpenAI.
    mock.script('chat1', ok('not kept'))
    const unstored = await client.responses.create({ model: 'r', input: 'hi', store: false })
    for (const id of ['msg_unknown', unstored.output[0]?.id ?? '']) {
      const res = await gw.post('/v1/responses', { model: 'r', input: [{ type: 'item_reference', id }] })
      assert.equal(res.status, 404)
      const { error } = (await res.json()) as { error: { param: string; code: string; message: string } }
      assert.deepEqual([error.code, error.param], ['not_found', 'input'])
    }
    assert.equal(mock.requests('chat1').length, 3, 'refused before any provider is called')
  })

  test('the store finds output items by id, and lets them go with their response', () => {
    const store = new ResponseStore(2, 1_000, 2_000)
    const response = (id: string, itemId: string, size = 0) => ({
      id,
      output: [{ type: 'message', id: itemId, content: 'x'.repeat(size) }, { type: 'reasoning' }],
    })
    store.put('a', response('a', 'msg_a'), undefined, [], 0)
    assert.equal(store.item('msg_a', 0)?.id, 'msg_a')
    assert.equal(store.item('msg_a', 1_000), undefined, 'age')
    store.put('a', response('a', 'msg_a'), undefined, [], 0)
    store.put('b', response('b', 'msg_b'), undefined, [], 0)
    store.put('c', response('c', 'msg_c'), undefined, [], 0)
    assert.equal(store.item('msg_a', 0), undefined, 'count: gone with its response')
    store.put('a', response('a', 'msg_a2'), undefined, [], 0)
    assert.equal(store.item('msg_a', 0), undefined, 'not found through a later response of the same id')
    assert.equal(store.item('msg_a2', 0)?.id, 'msg_a2')
    store.put('big', response('big', 'msg_big', 1_900), undefined, [], 0)
    assert.equal(store.item('msg_a2', 0), undefined, 'size: gone with its response')
    assert.equal(store.item('msg_big', 0)?.id, 'msg_big')
  })

  test('text and calls of one assistant turn are replayed as one message', async () => {
    const call = { id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }
    mock.script('chat1', chatAnswer({ content: 'Let me check.', tool_calls: [call] }, 'tool_calls'))
    const first = await client.responses.create({ model: 'r', input: 'check' })
    mock.script('chat1', ok('done'))
    await client.responses.create({
      model: 'r',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: 'call_1', output: '42' }],
    })
    const messages = mock.requests('chat1').at(-1)?.body.messages as Record<string, unknown>[]
    assert.deepEqual(
      messages.map((m) => m.role),
      ['user', 'assistant', 'tool'],
    )
    assert.equal(messages[1]?.content, 'Let me check.')
    assert.equal((messages[1]?.tool_calls as unknown[] | undefined)?.length, 1)
  })

  test('streaming falls back from a rate-limited first step', async () => {
    mock.script('chat1', status(429, 'slow down')).script('chat2', sse(textChunks('from the second step')))
    const final = await client.responses.stream({ model: 'r', input: 'hi' }).finalResponse()
    assert.equal(final.output_text, 'from the second step')
    assert.equal(mock.requests('chat2')[0]?.body.model, 'chat-model-2')
  })

  test('a chat stream that closes with neither finish_reason nor [DONE] is not a completed Response', async () => {
    mock.script('chat1', sse(textChunks('cut short').slice(0, -1), { end: 'no_done' }))
    const stream = client.responses.stream({ model: 'r', input: 'hi' })
    await raisesMidStream(stream)
    mock.script('chat1', sse(textChunks('whole but unmarked'), { end: 'no_done' }))
    const final = await client.responses.stream({ model: 'r', input: 'hi' }).finalResponse()
    assert.equal(final.status, 'completed', 'a finish_reason without [DONE] is a whole stream')
  })

  test('a stream that breaks after it started raises in the SDK', async () => {
    mock.script('chat1', sse(textChunks('this will break'), { end: 'cut', delayMs: 20 }))
    const stream = client.responses.stream({ model: 'r', input: 'hi' })
    await raisesMidStream(stream)
  })
})

describe('native Responses providers', () => {
  const nativeResponse = (req: { body: Record<string, unknown> }) => ({
    id: 'resp_native_1',
    object: 'response',
    created_at: 1,
    status: 'completed',
    model: String(req.body.model),
    output: [
      {
        type: 'message',
        id: 'msg_1',
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: 'native answer', annotations: [] }],
      },
    ],
    usage: { input_tokens: 1, output_tokens: 2, total_tokens: 3 },
  })

  test('passed through with the model replaced, and continued from our store', async () => {
    mock.script('native', json(200, nativeResponse), json(200, nativeResponse))
    const first = await client.responses.create(
      { model: 'n', input: 'hello', store: true },
      { headers: { 'x-request-id': 'native-json-1' } },
    )
    assert.equal(first.output_text, 'native answer')
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'native-json-1')
    assert.deepEqual(line.usage, { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 })
    const sent = mock.requests('native')[0]
    assert.equal(sent?.path, '/native/v1/responses')
    assert.equal(sent?.body.model, 'native-model')
    await client.responses.create({ model: 'n', input: 'again', previous_response_id: first.id })
    const second = mock.requests('native')[1]?.body
    assert.equal(
      second?.previous_response_id,
      undefined,
      'our ids stay here; the conversation is sent instead',
    )
    assert.equal((second?.input as unknown[] | undefined)?.length, 3)
  })

  test('item_reference: stored items are sent whole to native steps, others as sent; native items are kept', async () => {
    mock.script('chat1', ok('from chat'))
    const chat = await client.responses.create({ model: 'r', input: 'hi' })
    const stored = chat.output[0]
    mock.script('native', json(200, nativeResponse))
    const own = { type: 'item_reference' as const, id: 'msg_known_to_the_provider' }
    await client.responses.create({
      model: 'n',
      input: [{ type: 'item_reference', id: stored?.id ?? '' }, own, { role: 'user', content: 'more' }],
    })
    assert.deepEqual(mock.requests('native')[0]?.body.input, [stored, own, { role: 'user', content: 'more' }])
    // A reference only the provider can know skips the chat steps of a mixed route, untried.
    mock.script('native', json(200, nativeResponse))
    const mixed = await client.responses.create({ model: 'cn', input: [own] })
    assert.equal(mixed.output_text, 'native answer')
    assert.equal(mock.requests('chat1').length, 1)
    // The native answer's items are kept too: a chat step gets them translated.
    mock.script('chat1', ok('from chat again'))
    await client.responses.create({ model: 'r', input: [{ type: 'item_reference', id: 'msg_1' }] })
    assert.deepEqual(mock.requests('chat1')[1]?.body.messages, [
      { role: 'assistant', content: 'native answer' },
    ])
  })

  test('native: JSON schema and function calls pass through as sent; a rate-limited step falls back', async () => {
    mock.script('native', status(429, 'slow')).script('native2', json(200, nativeResponse))
    const text = {
      format: { type: 'json_schema' as const, name: 'x', schema: { type: 'object' }, strict: false },
    }
    const tools = [{ type: 'function' as const, name: 'f', parameters: { type: 'object' }, strict: false }]
    const response = await client.responses.create({ model: 'nn', input: 'hi', text, tools })
    assert.equal(response.output_text, 'native answer')
    const sent = mock.requests('native2')[0]?.body ?? {}
    assert.equal(sent.model, 'native-model-2')
    assert.deepEqual(sent.text, text)
    assert.deepEqual(sent.tools, tools)
  })

  test('a native stream is forwarded event by event', async () => {
    const created = {
      type: 'response.created',
      sequence_number: 0,
      response: {
        id: 'resp_n',
        object: 'response',
        status: 'in_progress',
        model: 'native-model',
        output: [],
      },
    }
    const item = { type: 'message', id: 'msg_n', status: 'in_progress', role: 'assistant', content: [] }
    const events = [
      created,
      { type: 'response.output_item.added', sequence_number: 1, output_index: 0, item },
      {
        type: 'response.content_part.added',
        sequence_number: 2,
        item_id: 'msg_n',
        output_index: 0,
        content_index: 0,
        part: { type: 'output_text', text: '', annotations: [] },
      },
      {
        type: 'response.output_text.delta',
        sequence_number: 3,
        item_id: 'msg_n',
        output_index: 0,
        content_index: 0,
        delta: 'native stream',
        logprobs: [],
      },
      {
        type: 'response.output_text.done',
        sequence_number: 4,
        item_id: 'msg_n',
        output_index: 0,
        content_index: 0,
        text: 'native stream',
        logprobs: [],
      },
      {
        type: 'response.content_part.done',
        sequence_number: 5,
        item_id: 'msg_n',
        output_index: 0,
        content_index: 0,
        part: { type: 'output_text', text: 'native stream', annotations: [] },
      },
      {
        type: 'response.output_item.done',
        sequence_number: 6,
        output_index: 0,
        item: {
          ...item,
          status: 'completed',
          content: [{ type: 'output_text', text: 'native stream', annotations: [] }],
        },
      },
      {
        type: 'response.completed',
        sequence_number: 7,
        response: {
          ...created.response,
          status: 'completed',
          output: [
            {
              ...item,
              status: 'completed',
              content: [{ type: 'output_text', text: 'native stream', annotations: [] }],
            },
          ],
          usage: { input_tokens: 4, output_tokens: 2, total_tokens: 6 },
        },
      },
    ]
    const behaviour: Behaviour = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      for (const event of events) res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)
      res.end()
    }
    mock.script('native', behaviour)
    const final = await client.responses
      .stream({ model: 'n', input: 'hi' }, { headers: { 'x-request-id': 'native-stream-1' } })
      .finalResponse()
    assert.equal(final.output_text, 'native stream')
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'native-stream-1')
    assert.deepEqual(line.usage, { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 })
    assert.equal(line.streamEnd, 'completed')
    assert.equal((await client.responses.retrieve('resp_n')).id, 'resp_n', 'the final response was stored')
    // Held open after response.completed (a Responses stream has no [DONE]): the client has it all at once.
    mock.script('native', async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      for (const event of events) res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)
    })
    const started = performance.now()
    const held = await client.responses
      .stream({ model: 'n', input: 'hi' }, { headers: { 'x-request-id': 'native-held-1' } })
      .finalResponse()
    assert.equal(held.output_text, 'native stream')
    assert.ok(performance.now() - started < 1_000, `${Math.round(performance.now() - started)} ms`)
    const heldLine = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'native-held-1')
    assert.equal(heldLine.streamEnd, 'completed')
    // The same when response.completed is what commits the stream (nothing came before it).
    mock.script('native', async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      for (const event of [created, events.at(-1)])
        res.write(`event: ${event?.type}\ndata: ${JSON.stringify(event)}\n\n`)
    })
    const bare = performance.now()
    await client.responses.stream({ model: 'n', input: 'hi' }).finalResponse()
    assert.ok(performance.now() - bare < 1_000, `${Math.round(performance.now() - bare)} ms`)
  })

  test('a native response.failed or error body reaches the client as its message, not as raw JSON', async () => {
    const failedEvent = {
      type: 'response.failed',
      sequence_number: 4,
      response: {
        id: 'resp_f',
        object: 'response',
        status: 'failed',
        model: 'native-model',
        output: [],
        error: { code: 'server_error', message: 'The model is overloaded.' },
      },
    }
    const created = { type: 'response.created', sequence_number: 0, response: { ...failedEvent.response } }
    const item = { type: 'message', id: 'msg_f', status: 'in_progress', role: 'assistant', content: [] }
    const added = { type: 'response.output_item.added', sequence_number: 1, output_index: 0, item }
    const part = {
      type: 'response.content_part.added',
      sequence_number: 2,
      item_id: 'msg_f',
      output_index: 0,
      content_index: 0,
      part: { type: 'output_text', text: '', annotations: [] },
    }
    const delta = {
      type: 'response.output_text.delta',
      sequence_number: 3,
      item_id: 'msg_f',
      output_index: 0,
      content_index: 0,
      delta: 'partial',
      logprobs: [],
    }
    const isClean = (message: string) =>
      message.includes('The model is overloaded.') && !message.includes('{') && !message.includes('"type"')
    // After the commit: the stream ends with an error event the SDK raises.
    mock.script('native', sse([created, added, part, delta, failedEvent], { end: 'no_done', delayMs: 10 }))
    const stream = client.responses.stream({ model: 'n', input: 'hi' })
    await assert.rejects(
      async () => {
        for await (const _ of stream) {
          // read until the error
        }
      },
      (err: Error) => err instanceof OpenAI.APIError && isClean(err.message),
    )
    // Before the commit, in a stream or as a non-2xx body: the route's error names the provider's words.
    for (const behaviour of [sse([created, failedEvent], { end: 'no_done' }), json(500, failedEvent)]) {
      mock.script('native', behaviour)
      const res = await gw.post('/v1/responses', { model: 'n', input: 'hi', stream: true })
      const { error } = (await res.json()) as { error: { message: string } }
      assert.ok(isClean(error.message), error.message)
    }
  })
  test('a field only native steps can take skips the chat steps of a mixed route, untried', async () => {
    const nativeOnly: Partial<OpenAI.Responses.ResponseCreateParamsNonStreaming>[] = [
      { tools: [{ type: 'web_search' }] },
      { conversation: 'conv_1' },
      { background: true },
    ]
    for (const model of ['nc', 'cn']) {
      for (const extra of nativeOnly) {
        mock.script('native', json(200, nativeResponse))
        const response = await client.responses.create({ model, input: 'hi', ...extra })
        assert.equal(response.output_text, 'native answer', `${model} ${JSON.stringify(extra)}`)
        assert.deepEqual(mock.requests('native').at(-1)?.body.model, 'native-model')
      }
    }
    // The native step failing is the route failing: the chat step is not tried in its place.
    mock.script('native', status(503))
    const res = await gw.post('/v1/responses', { model: 'nc', input: 'hi', tools: [{ type: 'web_search' }] })
    assert.equal(res.status, 502)
    assert.equal(mock.requests('chat1').length, 0, 'a step that cannot take the request is never tried')
    // What chat can take still falls back to the chat step, translated.
    mock.script('native', status(503)).script('chat1', ok('from chat'))
    const fallback = await client.responses.create({ model: 'nc', input: 'hi' })
    assert.equal(fallback.output_text, 'from chat')
    assert.equal(mock.requests('chat1')[0]?.path, '/chat1/v1/chat/completions')
    // Native second in its route, and cooling down with a hint: a request waits for it and gets it.
    mock
      .script('native', status(429, 'slow down', { 'retry-after': '1' }))
      .always('native', json(200, nativeResponse))
    const body = { model: 'cn', input: 'hi', tools: [{ type: 'web_search' }] }
    const first = gw.post('/v1/responses', body)
    await new Promise((resolve) => setTimeout(resolve, 200))
    const second = await gw.post('/v1/responses', body)
    assert.equal(second.status, 200, await second.clone().text())
    await first
  })
})

test('a native stream that breaks after it started raises in the SDK', async () => {
  let cleanly = false
  const breaking: Behaviour = async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    const created = {
      type: 'response.created',
      sequence_number: 0,
      response: { id: 'resp_b', object: 'response', status: 'in_progress', model: 'm', output: [] },
    }
    res.write(`event: response.created\ndata: ${JSON.stringify(created)}\n\n`)
    const item = { type: 'message', id: 'msg_b', status: 'in_progress', role: 'assistant', content: [] }
    res.write(
      `event: response.output_item.added\ndata: ${JSON.stringify({ type: 'response.output_item.added', sequence_number: 1, output_index: 0, item })}\n\n`,
    )
    const part = {
      type: 'response.content_part.added',
      sequence_number: 2,
      item_id: 'msg_b',
      output_index: 0,
      content_index: 0,
      part: { type: 'output_text', text: '', annotations: [] },
    }
    res.write(`event: response.content_part.added\ndata: ${JSON.stringify(part)}\n\n`)
    const delta = {
      type: 'response.output_text.delta',
      sequence_number: 3,
      item_id: 'msg_b',
      output_index: 0,
      content_index: 0,
      delta: 'partial',
      logprobs: [],
    }
    res.write(`event: response.output_text.delta\ndata: ${JSON.stringify(delta)}\n\n`)
    await new Promise((resolve) => setTimeout(resolve, 30))
    if (cleanly) res.end()
    else res.socket?.destroy()
  }
  // Cut, or ended cleanly but without its response.completed: neither is a whole Response.
  for (const end of [false, true]) {
    cleanly = end
    mock.script('native', breaking)
    const stream = client.responses.stream({ model: 'n', input: 'hi' })
    await raisesMidStream(stream)
  }
})

test('a streamed Response is stored once the client has it, before the provider closes', async () => {
  const slowClose: Behaviour = async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    for (const event of textChunks('stored at once')) res.write(`data: ${JSON.stringify(event)}\n\n`)
    res.write('data: [DONE]\n\n')
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    res.end()
  }
  mock.script('chat1', slowClose)
  const final = await client.responses.stream({ model: 'r', input: 'hi' }).finalResponse()
  const stored = await client.responses.retrieve(final.id)
  assert.equal(stored.output_text, 'stored at once')
})

describe('embeddings and legacy completions', () => {
  test('embeddings pass through with the model replaced, and fall back', async () => {
    mock.script('chat1', status(503)).script(
      'chat2',
      json(200, (req: { body: Record<string, unknown> }) => ({
        object: 'list',
        data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }],
        model: String(req.body.model),
        usage: { prompt_tokens: 2, total_tokens: 2 },
      })),
    )
    const result = await client.embeddings.create({ model: 'emb', input: 'hello', encoding_format: 'float' })
    assert.deepEqual(result.data[0]?.embedding, [0.1, 0.2])
    assert.equal(mock.requests('chat2')[0]?.path, '/chat2/v1/embeddings')
    assert.equal(mock.requests('chat2')[0]?.body.model, 'embed-2')
    assert.equal(mock.requests('chat2')[0]?.body.input, 'hello')
  })

  test('legacy completions pass through, streaming included', async () => {
    mock.script(
      'chat1',
      json(200, {
        id: 'cmpl-1',
        object: 'text_completion',
        model: 'm',
        choices: [{ index: 0, text: 'completed text', finish_reason: 'stop' }],
      }),
    )
    const completion = await client.completions.create({ model: 'r', prompt: 'Say', max_tokens: 5 })
    assert.equal(completion.choices[0]?.text, 'completed text')
    assert.equal(mock.requests('chat1')[0]?.path, '/chat1/v1/completions')
    mock.script('chat1', status(500)).script(
      'chat2',
      sse([
        {
          id: 'c',
          object: 'text_completion',
          model: 'm',
          choices: [{ index: 0, text: 'streamed', finish_reason: null }],
        },
        {
          id: 'c',
          object: 'text_completion',
          model: 'm',
          choices: [{ index: 0, text: ' legacy', finish_reason: 'stop' }],
        },
      ]),
    )
    const stream = await client.completions.create({ model: 'r', prompt: 'Say', stream: true })
    let text = ''
    for await (const part of stream) text += part.choices[0]?.text ?? ''
    assert.equal(text, 'streamed legacy')
  })

  test('missing input or prompt is a 400 naming the field', async () => {
    const res = await gw.post('/v1/embeddings', { model: 'emb' })
    assert.equal(res.status, 400)
    assert.equal(((await res.json()) as { error: { param: string } }).error.param, 'input')
    const res2 = await gw.post('/v1/completions', { model: 'r' })
    assert.equal(((await res2.json()) as { error: { param: string } }).error.param, 'prompt')
  })
})

test("LangChain's ChatOpenAI with useResponsesApi: true", async () => {
  mock.script('chat1', ok('Hello from LangChain'))
  const model = new ChatOpenAI({
    model: 'r',
    apiKey: gatewayKey,
    configuration: { baseURL: `${gw.url}/v1` },
    useResponsesApi: true,
    maxRetries: 0,
  })
  const message = await model.invoke('Hi there')
  assert.equal(message.text, 'Hello from LangChain')
  assert.equal(
    mock.requests('chat1')[0]?.path,
    '/chat1/v1/chat/completions',
    'sent through the Responses translation',
  )

  mock.script('chat1', sse(textChunks('streamed through LangChain')))
  let text = ''
  for await (const part of await model.stream('Stream it')) text += part.text
  assert.equal(text, 'streamed through LangChain')
})

test('messages pass untouched through every fallback step; vendor headers are not forwarded', async () => {
  mock.script('chat1', status(503)).script('chat2', ok('fine'))
  const messages = [
    { role: 'user', content: 'call the tool' },
    {
      role: 'assistant',
      content: [],
      tool_calls: [
        { id: 't1', type: 'function', function: { name: 'f', arguments: '{"a":1,"extra":{"nested":true}}' } },
      ],
    },
    { role: 'tool', tool_call_id: 't1', content: 'done' },
  ]
  const response_format = { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } }
  const res = await gw.post(
    '/v1/chat/completions',
    { model: 'r', messages, response_format },
    { 'openai-organization': '', 'openai-platform': 'web', 'openai-project': 'p' },
  )
  assert.equal(res.status, 200)
  for (const seen of [...mock.requests('chat1'), ...mock.requests('chat2')]) {
    assert.deepEqual(seen.body.messages, messages)
    assert.deepEqual(seen.body.response_format, response_format)
    for (const header of ['openai-organization', 'openai-platform', 'openai-project'])
      assert.equal(seen.headers[header], undefined)
  }
  assert.equal(mock.requests('chat2').length, 1)
})
