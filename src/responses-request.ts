// The Responses API request, translated into a chat completion for providers that only speak
// /chat/completions. Pure. Fields that cannot be honoured are refused by name, never dropped silently.

import { GatewayError } from './errors.ts'

type Json = Record<string, unknown>

/** One conversation item, as the Responses API stores and replays them. */
export type Item = Json

const refused = (field: string, why: string) =>
  new GatewayError('invalid_request', `"${field}" is not supported through this gateway: ${why}.`, {
    param: field,
  })

/** The entries of a list the client sent, each of which must be an object; anything else is named. */
function objects(list: readonly unknown[], param: string): Json[] {
  for (const entry of list) {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry))
      throw new GatewayError('invalid_request', `Each entry of "${param}" must be an object.`, { param })
  }
  return list as Json[]
}

/** An `item_reference`: its `type` may be left out, leaving an id alone (no role, so not a message). */
export const isItemReference = (item: Item): boolean =>
  item.type === 'item_reference' || (item.type == null && item.role === undefined && item.id !== undefined)

/** The request's `input` as items: a string is one user message. */
export function inputItems(input: unknown): Item[] {
  if (typeof input === 'string') return [{ type: 'message', role: 'user', content: input }]
  if (Array.isArray(input)) return objects(input, 'input')
  throw new GatewayError('invalid_request', 'The request must carry "input" (a string or a list of items).', {
    param: 'input',
  })
}

/** Message content parts of the Responses API → chat content parts. */
function chatContent(content: unknown): unknown {
  if (typeof content === 'string' || content === null || content === undefined) return content ?? ''
  if (!Array.isArray(content)) return content
  return objects(content, 'input.content').map((part) => {
    switch (part.type) {
      case 'input_text':
      case 'output_text':
        return { type: 'text', text: part.text }
      // A refusal this gateway stored as a Response is replayed as what the assistant said.
      case 'refusal':
        return { type: 'text', text: part.refusal }
      case 'input_image': {
        const url = typeof part.image_url === 'string' ? part.image_url : undefined
        if (url === undefined) throw refused('input_image.file_id', 'images must be given as image_url')
        return {
          type: 'image_url',
          image_url: { url, ...(part.detail === undefined ? {} : { detail: part.detail }) },
        }
      }
      default:
        throw refused(
          `content.${String(part.type)}`,
          'only input_text, output_text, refusal and input_image parts are translated',
        )
    }
  })
}

/**
 * Assistant history arrives as output_text parts, and system text as input_text parts (Codex CLI,
 * LangChain): providers expect plain text there, and some (Groq) refuse anything else. Parts that are
 * not all text are left as they are, for the provider to take or refuse.
 */
function plainText(content: unknown): unknown {
  if (!Array.isArray(content) || !content.every((part: Json) => part.type === 'text')) return content
  return content.map((part: Json) => part.text).join('')
}

const textParts = new Set(['input_text', 'output_text', 'text'])

/**
 * A function_call_output's `output` as the tool message's text. Given as a list of parts, only text
 * can go: a chat tool message has no place for images or files.
 */
function toolOutput(output: unknown): string {
  if (typeof output === 'string') return output
  if (!Array.isArray(output)) return JSON.stringify(output)
  const param = 'input.function_call_output.output'
  return objects(output, param)
    .map((part) => {
      if (!textParts.has(String(part.type)) || typeof part.text !== 'string')
        throw refused(
          param,
          `only text parts fit in a chat tool message (this one is "${String(part.type)}")`,
        )
      return part.text
    })
    .join('')
}

/** Conversation items → chat messages; consecutive function calls become one assistant turn. */
function itemsToMessages(items: readonly Item[]): Json[] {
  const messages: Json[] = []
  for (const item of items) {
    const type = isItemReference(item)
      ? 'item_reference'
      : (item.type ?? (item.role === undefined ? undefined : 'message'))
    if (type === 'message') {
      const role = item.role === 'developer' ? 'system' : item.role
      if (!['system', 'user', 'assistant'].includes(String(role)))
        throw refused('input.role', `role "${String(item.role)}"`)
      const content = chatContent(item.content)
      messages.push({ role, content: role === 'user' ? content : plainText(content) })
    } else if (type === 'function_call') {
      const call = {
        id: item.call_id,
        type: 'function',
        function: { name: item.name, arguments: item.arguments ?? '{}' },
      }
      // One assistant turn: its text and its calls in one message (stricter chat templates refuse two
      // assistant messages in a row).
      const last = messages.at(-1)
      if (last?.role === 'assistant')
        last.tool_calls = [...((last.tool_calls as Json[] | undefined) ?? []), call]
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] })
    } else if (type === 'function_call_output') {
      messages.push({ role: 'tool', tool_call_id: item.call_id, content: toolOutput(item.output) })
    } else if (type === 'item_reference') {
      // References to items stored here were replaced already (responses.ts); OpenAI answers others so.
      throw new GatewayError(
        'not_found',
        `Item with id "${String(item.id).slice(0, 100)}" not found (an item_reference names an output item of a response stored on this gateway).`,
        { param: 'input' },
      )
    } else if (type === 'reasoning') {
      // Reasoning summaries from earlier turns have no chat equivalent; they are context only.
    } else {
      throw refused(
        `input.${String(type)}`,
        'only message, function_call and function_call_output items are translated',
      )
    }
  }
  return messages
}

function chatTools(tools: unknown): Json[] | undefined {
  // Null is "not set", as for every other field (the Python SDK sends `tools=None` so).
  if (tools == null) return undefined
  if (!Array.isArray(tools))
    throw new GatewayError('invalid_request', '"tools" must be a list.', { param: 'tools' })
  return objects(tools, 'tools').map((tool) => {
    if (tool.type !== 'function')
      throw refused(
        `tools.${String(tool.type)}`,
        'built-in tools need a provider that speaks the Responses API',
      )
    const fn: Json = { name: tool.name, parameters: tool.parameters ?? { type: 'object', properties: {} } }
    // Null is "not set" here (LangChain sends `strict: null`), but chat refuses it: OpenAI wants a boolean.
    if (tool.description != null) fn.description = tool.description
    if (tool.strict != null) fn.strict = tool.strict
    return { type: 'function', function: fn }
  })
}

function chatToolChoice(choice: unknown): unknown {
  if (choice == null) return undefined
  if (typeof choice === 'string') return choice
  if (typeof choice !== 'object')
    throw new GatewayError('invalid_request', '"tool_choice" must be a string or an object.', {
      param: 'tool_choice',
    })
  const c = choice as Json
  if (c.type === 'function') return { type: 'function', function: { name: c.name } }
  throw refused('tool_choice', `choice "${String(c.type)}"`)
}

function responseFormat(text: unknown): unknown {
  const format = (text as { format?: Json | null } | null | undefined)?.format
  if (format == null || format.type === 'text') return undefined
  if (format.type === 'json_object') return { type: 'json_object' }
  if (format.type === 'json_schema') {
    const schema: Json = { name: format.name ?? 'response', schema: format.schema }
    if (format.strict != null) schema.strict = format.strict
    if (format.description != null) schema.description = format.description
    return { type: 'json_schema', json_schema: schema }
  }
  throw refused('text.format', `format "${String(format.type)}"`)
}

const passedAsIs = ['temperature', 'top_p', 'user', 'parallel_tool_calls', 'stream', 'seed', 'stop'] as const
const acceptedNotSent = new Set([
  'model',
  'input',
  'instructions',
  'tools',
  'tool_choice',
  'text',
  'max_output_tokens',
  'metadata',
  'store',
  'previous_response_id',
  'truncation',
  'reasoning',
  'include',
  'service_tier',
  'prompt_cache_key',
  'prompt_cache_retention',
  'safety_identifier',
  'stream_options',
])
/** Every field a translated request may carry; `background` is accepted only to be refused by name. */
const known = new Set<string>([...acceptedNotSent, ...passedAsIs, 'background'])

/**
 * A chat completion request equivalent to `body`, whose whole conversation (what previous_response_id
 * recalled, then `body.input` as items) is `conversation`. `model` is left for the step to set.
 */
export function toChatRequest(body: Readonly<Json>, conversation: readonly Item[]): Json {
  if (body.background === true)
    throw refused('background', 'background responses need a provider that speaks the Responses API')
  for (const key of Object.keys(body)) {
    // A field sent as null asks for nothing (as OpenAI reads it; the Python SDK sends None so).
    if (!known.has(key) && body[key] !== null)
      throw refused(key, 'this field has no chat completions equivalent')
  }
  const messages: Json[] = []
  if (typeof body.instructions === 'string' && body.instructions !== '')
    messages.push({ role: 'system', content: body.instructions })
  messages.push(...itemsToMessages(conversation))
  const chat: Json = { messages }
  // Null is "not set" in both APIs, but chat refuses it for some of these (`parallel_tool_calls`).
  for (const key of passedAsIs) if (body[key] != null) chat[key] = body[key]
  const tools = chatTools(body.tools)
  if (tools !== undefined && tools.length > 0) chat.tools = tools
  const toolChoice = chatToolChoice(body.tool_choice)
  if (toolChoice !== undefined) chat.tool_choice = toolChoice
  const format = responseFormat(body.text)
  if (format !== undefined) chat.response_format = format
  if (typeof body.max_output_tokens === 'number') chat.max_tokens = body.max_output_tokens
  if (body.stream === true) chat.stream_options = { include_usage: true }
  return chat
}
