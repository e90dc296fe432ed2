// A stream of chat completion chunks turned into the Responses API event sequence, with sequence
// numbers. Pure apart from the ids it makes.

import {
  argumentsText,
  callIdOf,
  itemStatusOf,
  type Json,
  messageItem,
  newId,
  objectsIn,
  type PartKind,
  partOf,
  type ResponseShell,
  response,
  textOf,
  usageOf,
} from './responses-output.ts'
import type { Item } from './responses-request.ts'
import { isFinishReason } from './sse.ts'
import type { StreamWriter } from './stream-pipe.ts'

interface OpenText {
  readonly kind: 'text'
  readonly part: PartKind
  readonly item: Item
  readonly outputIndex: number
  text: string
}
interface OpenCall {
  readonly kind: 'call'
  readonly item: Item
  /** The id the provider gave the call, if any (`item.call_id` may be made up). */
  readonly sentId: string | undefined
  readonly outputIndex: number
  arguments: string
}

/**
 * Turns a stream of chat completion chunks into the Responses event sequence, with sequence numbers:
 * response.created and .in_progress first, then per output item .output_item.added, the deltas, the
 * .done events, and response.completed with usage (or response.failed when the stream breaks).
 */
export class ResponsesStreamWriter implements StreamWriter {
  readonly #shell: ResponseShell
  #sequence = 0
  #started = false
  #text: OpenText | undefined
  #refusal: OpenText | undefined
  /** Calls by key, a number given in the order they opened. */
  readonly #calls = new Map<number, OpenCall>()
  /** The key of the call open at each provider `index`. */
  readonly #keyOfIndex = new Map<number, number>()
  /** The key of the last call seen without an `index`. */
  #unindexedKey: number | undefined
  readonly #items: (OpenText | OpenCall)[] = []
  #finish: string | null = null
  #usage: Json | null = null
  #model: string
  /** The finished Response, once the stream has ended. */
  final: Json | undefined

  constructor(shell: ResponseShell) {
    this.#shell = shell
    this.#model = shell.model
  }

  #emit(type: string, fields: Json): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.#sequence++, ...fields })}\n\n`
  }

  #start(): string {
    if (this.#started) return ''
    this.#started = true
    const shell = response({ ...this.#shell, model: this.#model }, 'in_progress', [], null, null)
    return (
      this.#emit('response.created', { response: shell }) +
      this.#emit('response.in_progress', { response: shell })
    )
  }

  event(_event: unknown, parsed: Parameters<StreamWriter['event']>[1]): string {
    return parsed.kind === 'json' ? this.chunk(parsed.value) : ''
  }

  /** SSE text for one chat chunk. */
  chunk(chunk: Json): string {
    if (typeof chunk.model === 'string') this.#model = chunk.model
    let out = this.#start()
    if (chunk.usage != null) this.#usage = usageOf(chunk.usage)
    const choice = (Array.isArray(chunk.choices) ? chunk.choices[0] : undefined) as
      | {
          delta?: { content?: unknown; refusal?: unknown; tool_calls?: unknown }
          finish_reason?: string | null
        }
      | undefined
    const content = textOf(choice?.delta?.content)
    if (content !== '') out += this.#textDelta('output_text', content)
    const refusal = choice?.delta?.refusal
    if (typeof refusal === 'string' && refusal !== '') out += this.#textDelta('refusal', refusal)
    for (const call of objectsIn(choice?.delta?.tool_calls)) out += this.#callDelta(call)
    if (isFinishReason(choice?.finish_reason)) this.#finish = choice?.finish_reason ?? null
    return out
  }

  #textDelta(part: PartKind, delta: string): string {
    let out = ''
    let open = part === 'refusal' ? this.#refusal : this.#text
    if (open === undefined) {
      const item = messageItem([], 'in_progress')
      open = { kind: 'text', part, item, outputIndex: this.#items.length, text: '' }
      if (part === 'refusal') this.#refusal = open
      else this.#text = open
      this.#items.push(open)
      out += this.#emit('response.output_item.added', { output_index: open.outputIndex, item })
      out += this.#emit('response.content_part.added', {
        item_id: item.id,
        output_index: open.outputIndex,
        content_index: 0,
        part: partOf(part, ''),
      })
    }
    open.text += delta
    const at = { item_id: open.item.id, output_index: open.outputIndex, content_index: 0 }
    return part === 'refusal'
      ? `${out}${this.#emit('response.refusal.delta', { ...at, delta })}`
      : `${out}${this.#emit('response.output_text.delta', { ...at, delta, logprobs: [] })}`
  }

  /**
   * The call a delta belongs to. Ollama and vLLM send parallel calls all at `index` 0, each with its own
   * id and name: there another id with a name at the same index starts the next call (another id alone
   * does not: some providers send a fresh id on every delta of one call). Some providers (Gemini's
   * OpenAI endpoint) leave `index` out: there a delta carrying another id, or a name when the open call
   * has one, starts the next call.
   */
  #callKey(call: Json): number {
    const id = typeof call.id === 'string' && call.id !== '' ? call.id : undefined
    const name = (call.function as { name?: unknown } | undefined)?.name
    const named = typeof name === 'string' && name !== ''
    if (typeof call.index === 'number') {
      const key = this.#keyOfIndex.get(call.index)
      const openId = key === undefined ? undefined : this.#calls.get(key)?.sentId
      const another = id !== undefined && openId !== undefined && id !== openId && named
      if (key !== undefined && !another) return key
      this.#keyOfIndex.set(call.index, this.#calls.size)
      return this.#calls.size
    }
    const open = this.#unindexedKey === undefined ? undefined : this.#calls.get(this.#unindexedKey)
    // An id decides when there is one (some providers repeat id and name on every delta).
    const next =
      open === undefined || (id !== undefined ? id !== open.item.call_id : named && open.item.name !== '')
    if (next) this.#unindexedKey = this.#calls.size
    return this.#unindexedKey ?? this.#calls.size
  }

  #callDelta(call: Json): string {
    const key = this.#callKey(call)
    const fn = (call.function ?? {}) as { name?: string; arguments?: unknown }
    let out = ''
    let open = this.#calls.get(key)
    if (open === undefined) {
      const sentId = typeof call.id === 'string' && call.id !== '' ? call.id : undefined
      const item: Item = {
        type: 'function_call',
        id: newId('fc'),
        call_id: callIdOf(sentId),
        name: fn.name ?? '',
        arguments: '',
        status: 'in_progress',
      }
      open = { kind: 'call', item, sentId, outputIndex: this.#items.length, arguments: '' }
      this.#calls.set(key, open)
      this.#items.push(open)
      out += this.#emit('response.output_item.added', { output_index: open.outputIndex, item })
    }
    const delta = argumentsText(fn.arguments)
    if (delta !== '') {
      open.arguments += delta
      out += this.#emit('response.function_call_arguments.delta', {
        item_id: open.item.id,
        output_index: open.outputIndex,
        delta,
      })
    }
    return out
  }

  /** The closing events of a stream that ended well. */
  done(): string {
    let out = this.#start()
    const output: Item[] = []
    const status = itemStatusOf(this.#finish)
    for (const open of this.#items) {
      if (open.kind === 'text') {
        const part = partOf(open.part, open.text)
        const item: Item = { ...open.item, status, content: [part] }
        const at = { item_id: item.id, output_index: open.outputIndex, content_index: 0 }
        out +=
          open.part === 'refusal'
            ? this.#emit('response.refusal.done', { ...at, refusal: open.text })
            : this.#emit('response.output_text.done', { ...at, text: open.text, logprobs: [] })
        out += this.#emit('response.content_part.done', { ...at, part })
        out += this.#emit('response.output_item.done', { output_index: open.outputIndex, item })
        output.push(item)
      } else {
        const item: Item = { ...open.item, arguments: open.arguments, status }
        out += this.#emit('response.function_call_arguments.done', {
          item_id: item.id,
          output_index: open.outputIndex,
          arguments: open.arguments,
        })
        out += this.#emit('response.output_item.done', { output_index: open.outputIndex, item })
        output.push(item)
      }
    }
    this.final = response(
      { ...this.#shell, model: this.#model },
      'completed',
      output,
      this.#finish,
      this.#usage,
    )
    const type = this.final.status === 'incomplete' ? 'response.incomplete' : 'response.completed'
    return out + this.#emit(type, { response: this.final })
  }

  /** The closing events of a stream that broke after it started. */
  failed(message: string): string {
    const failed = {
      ...response({ ...this.#shell, model: this.#model }, 'failed', [], null, this.#usage),
      error: { code: 'server_error', message },
    }
    return (
      this.#emit('response.failed', { response: failed }) +
      this.#emit('error', { code: 'stream_interrupted', message, param: null })
    )
  }

  /** A chat stream that closed with neither a finish_reason nor `[DONE]` was cut, not finished. */
  unfinished(sawDone: boolean): string | undefined {
    return sawDone || this.#finish !== null ? undefined : 'the stream ended without a finish_reason or [DONE]'
  }
}
