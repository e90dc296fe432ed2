// Chat completion answers turned into Responses API objects: a whole Response for a JSON answer, and
// the parts the stream translation (responses-stream.ts) shares. Pure apart from the ids it makes.

import { randomBytes } from 'node:crypto'
import type { Item } from './responses-request.ts'

export type Json = Record<string, unknown>

export const newId = (prefix: string): string => `${prefix}_${randomBytes(12).toString('hex')}`

/**
 * A chat tool call's id as a Response's `call_id`. Some providers send none; the SDKs require one, and
 * the client's `function_call_output` must be able to name the call.
 */
export const callIdOf = (id: unknown): string => (typeof id === 'string' && id !== '' ? id : newId('call'))

/** The request settings a Response echoes back. */
export function echoedSettings(body: Readonly<Json>): Json {
  const echo: Json = {
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    metadata: body.metadata ?? {},
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    store: body.store ?? true,
    temperature: body.temperature ?? null,
    text: body.text ?? { format: { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: body.top_p ?? null,
    truncation: body.truncation ?? 'disabled',
  }
  if (body.user !== undefined) echo.user = body.user
  return echo
}

export function usageOf(usage: unknown): Json | null {
  if (usage === null || typeof usage !== 'object') return null
  const u = usage as {
    prompt_tokens?: number
    completion_tokens?: number
    total_tokens?: number
    prompt_tokens_details?: { cached_tokens?: number }
    completion_tokens_details?: { reasoning_tokens?: number }
  }
  const input = u.prompt_tokens ?? 0
  const output = u.completion_tokens ?? 0
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: u.prompt_tokens_details?.cached_tokens ?? 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: u.completion_tokens_details?.reasoning_tokens ?? 0 },
    total_tokens: u.total_tokens ?? input + output,
  }
}

const incompleteReasons: Record<string, string> = {
  length: 'max_output_tokens',
  content_filter: 'content_filter',
}

/**
 * A chat tool call's `arguments` as the JSON text a Response carries. Some servers (llama.cpp's
 * llama-server, text-generation-inference) send them as an object, which clients would fail to parse.
 */
export const argumentsText = (value: unknown): string =>
  typeof value === 'string' ? value : value == null ? '' : JSON.stringify(value)

/**
 * The status of each output item: `incomplete` when the provider stopped early (as the Response's own
 * status), since the item's text or arguments may be cut short; else `completed`.
 */
export const itemStatusOf = (finish: string | null): 'completed' | 'incomplete' =>
  finish !== null && incompleteReasons[finish] !== undefined ? 'incomplete' : 'completed'

export interface ResponseShell {
  readonly id: string
  readonly createdAt: number
  readonly model: string
  readonly settings: Json
}

export function response(
  shell: ResponseShell,
  status: string,
  output: Item[],
  finish: string | null,
  usage: Json | null,
): Json {
  const reason = finish === null ? undefined : incompleteReasons[finish]
  return {
    id: shell.id,
    object: 'response',
    created_at: shell.createdAt,
    status: reason === undefined ? status : 'incomplete',
    error: null,
    incomplete_details: reason === undefined ? null : { reason },
    model: shell.model,
    output,
    usage,
    ...shell.settings,
  }
}

/** A message content part: text, or the model's refusal (which the Responses API keeps apart). */
export const partOf = (kind: PartKind, text: string): Json =>
  kind === 'refusal' ? { type: 'refusal', refusal: text } : { type: 'output_text', text, annotations: [] }

export type PartKind = 'output_text' | 'refusal'

export const messageItem = (content: Json[], status = 'completed'): Item => ({
  type: 'message',
  id: newId('msg'),
  status,
  role: 'assistant',
  content,
})

/**
 * The text of a chat message's `content`, whole or a stream delta. Some providers (Mistral's
 * Magistral) send a list of chunks, the model's reasoning in `thinking` chunks beside the `text` ones:
 * only the text is the answer.
 */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) return ''
  return content
    .map((chunk: unknown) => {
      const { type, text } = (chunk ?? {}) as { type?: unknown; text?: unknown }
      return type === 'text' && typeof text === 'string' ? text : ''
    })
    .join('')
}

/** The objects in what should be a list of them: a provider's odd `tool_calls` must not become a 500. */
export function objectsIn(value: unknown): Json[] {
  if (!Array.isArray(value)) return []
  return value.filter(
    (entry): entry is Json => entry !== null && typeof entry === 'object' && !Array.isArray(entry),
  )
}

/** A chat completion (parsed JSON) as a Response object. */
export function chatToResponse(chat: Json, shell: ResponseShell): Json {
  const choice = (Array.isArray(chat.choices) ? chat.choices[0] : undefined) as
    | {
        message?: { content?: unknown; refusal?: unknown; tool_calls?: unknown }
        finish_reason?: string | null
      }
    | undefined
  const output: Item[] = []
  const finish = choice?.finish_reason ?? null
  const status = itemStatusOf(finish)
  const content = textOf(choice?.message?.content)
  if (content !== '') output.push(messageItem([partOf('output_text', content)], status))
  const refusal = choice?.message?.refusal
  if (typeof refusal === 'string' && refusal !== '')
    output.push(messageItem([partOf('refusal', refusal)], status))
  for (const call of objectsIn(choice?.message?.tool_calls)) {
    const fn = call.function as { name?: string; arguments?: unknown } | undefined
    output.push({
      type: 'function_call',
      id: newId('fc'),
      call_id: callIdOf(call.id),
      name: fn?.name,
      arguments: argumentsText(fn?.arguments),
      status,
    })
  }
  const model = typeof chat.model === 'string' ? chat.model : shell.model
  return response({ ...shell, model }, 'completed', output, finish, usageOf(chat.usage))
}
