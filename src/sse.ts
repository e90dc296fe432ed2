// Server-Sent Events from a provider: read them, holding them back until the stream is worth committing
// to (before that, a failing step can still be replaced). Forwarding them is stream-pipe.ts.

import type { EventSourceMessage } from 'eventsource-parser'
import { errorMessageOf, httpError, relayedStatus, sanitizeReason, type Usage, usageOf } from './answer.ts'
import type { Attempt, Failure } from './attempt.ts'
import type { Redactor } from './redact.ts'
import { EventTooLarge, type Item, type Parsed, parseData, readItems } from './sse-read.ts'
import type { UpstreamResponse } from './upstream.ts'

/** What the stream told us on the way through, for the access log and the attempt's span. */
export interface StreamStats {
  malformed: number
  usage: Usage | undefined
  /** The model the provider says answered (the first chunk that names one). */
  model: string | undefined
  /** The streamed text, kept only when telemetry records completions. */
  text: string | undefined
  /** Every choice seen has said why it stopped (`finish_reason`): the stream is whole even without `[DONE]`. */
  finished: boolean
  /** Choices by index, and whether each has stopped: with `n` > 1, one stopping leaves the others open. */
  readonly choices: Map<number, boolean>
}

export function observeChunk(stats: StreamStats, chunk: Record<string, unknown>): void {
  // A native Responses stream reports its usage and model inside the `response` of its events.
  const response =
    typeof chunk.type === 'string' ? (chunk.response as Record<string, unknown> | null) : undefined
  stats.usage = usageOf(chunk.usage ?? response?.usage) ?? stats.usage
  const model = chunk.model ?? response?.model
  if (stats.model === undefined && typeof model === 'string') stats.model = model
  if (Array.isArray(chunk.choices)) for (const choice of chunk.choices) observeChoice(stats, choice)
  if (stats.text !== undefined && Array.isArray(chunk.choices)) {
    // The first choice's text: with n > 1, each chunk carries whichever choice it continues.
    const first = (chunk.choices as ({ index?: unknown; delta?: { content?: unknown } } | null)[]).find(
      (choice) => (choice?.index ?? 0) === 0,
    )
    const content = first?.delta?.content
    if (typeof content === 'string') stats.text += content
  }
}

/**
 * Whether a choice's `finish_reason` says it stopped. Some servers (SGLang, Ollama in 2024) send `""`
 * on every chunk until then: that is no reason, and a stream cut after it was not finished.
 */
export const isFinishReason = (reason: unknown): boolean => reason != null && reason !== ''

function observeChoice(stats: StreamStats, value: unknown): void {
  const choice = value as { index?: unknown; finish_reason?: unknown } | null
  const index = typeof choice?.index === 'number' ? choice.index : 0
  if (isFinishReason(choice?.finish_reason)) {
    stats.choices.set(index, true)
    stats.finished = !Array.from(stats.choices.values()).includes(false)
  } else if (!stats.choices.has(index)) {
    stats.choices.set(index, false)
    stats.finished = false
  }
}

/** An event read before the commit; malformed ones are counted and dropped, never held. */
interface HeldEvent {
  readonly event: EventSourceMessage
  readonly parsed: Exclude<Parsed, { kind: 'malformed' }>
}

/** A stream that produced content and may now be sent to the client. */
export interface CommittedStream {
  readonly kind: 'stream'
  readonly status: number
  /** Events read up to and including the commit point. */
  readonly head: readonly HeldEvent[]
  readonly rest: AsyncGenerator<Item>
  readonly stats: StreamStats
}

// A stream whose preamble never reaches content is committed anyway after this many events, so a
// chatty provider cannot make us buffer without bound.
const maxHeldEvents = 64

/** The failure behind an error thrown while reading a stream. */
export const readFailure = (attempt: Attempt, err: unknown): Failure =>
  err instanceof EventTooLarge
    ? attempt.fail({ kind: 'invalid_response', reason: err.message })
    : attempt.failureOf(err)

/**
 * True once a chunk carries something the client must see: content, a tool call, reasoning, a refusal,
 * a finish reason, or usage. A role-only preamble is not enough: a provider that fails right after it
 * can still be replaced by the next step without the client noticing.
 */
export function isCommitPoint(chunk: Record<string, unknown>): boolean {
  if (chunk.usage != null) return true
  // A Responses API event stream (a provider that speaks it natively): text, arguments, a finished item.
  if (typeof chunk.type === 'string') {
    return /\.delta$|^response\.(output_item\.done|completed|incomplete)$/.test(chunk.type)
  }
  if (!Array.isArray(chunk.choices)) return false
  return chunk.choices.some(
    (choice: { delta?: Record<string, unknown>; finish_reason?: unknown; text?: unknown }) => {
      if (isFinishReason(choice?.finish_reason)) return true
      // Legacy completions stream `choices[].text` instead of a delta.
      if (typeof choice?.text === 'string' && choice.text !== '') return true
      const delta = choice?.delta
      if (delta == null) return false
      return Object.entries(delta).some(
        ([key, value]) =>
          key !== 'role' && value != null && value !== '' && !(Array.isArray(value) && value.length === 0),
      )
    },
  )
}

const responseEnds = new Set<unknown>(['response.completed', 'response.incomplete'])

/** The last event of a Responses stream, which has no `[DONE]`: nothing the client needs follows it. */
export const endsResponse = (parsed: Parsed) => parsed.kind === 'json' && responseEnds.has(parsed.value.type)

/**
 * An event that reports a failure: by its SSE event name alone (whatever its data), or in its data (a
 * chat `error` payload, or a Responses `error` / `response.failed` event).
 */
export function isErrorEvent(event: EventSourceMessage, parsed: Parsed): boolean {
  if (event.event === 'error') return true
  if (parsed.kind !== 'json') return false
  const chunk = parsed.value
  return chunk.error != null || chunk.type === 'error' || chunk.type === 'response.failed'
}

/** Reads a 2xx stream until its first content; any failure before that lets the route fall back. */
export async function awaitCommit(
  response: UpstreamResponse,
  attempt: Attempt,
  redact: Redactor,
  captureText = false,
): Promise<CommittedStream | Failure> {
  const rest = readItems(response.body)
  const head: HeldEvent[] = []
  const stats: StreamStats = {
    malformed: 0,
    finished: false,
    choices: new Map(),
    usage: undefined,
    model: undefined,
    text: captureText ? '' : undefined,
  }
  const commit = (): CommittedStream => ({ kind: 'stream', status: response.status, head, rest, stats })
  // A stream that ends before its first real output has answered nothing: the next step may.
  const empty = () => attempt.fail({ kind: 'invalid_response', reason: 'stream ended before any content' })
  try {
    for (;;) {
      const next = await rest.next()
      if (next.done === true) {
        if (head.length > 0) return empty()
        return attempt.fail({ kind: 'invalid_response', reason: 'stream ended before any event' })
      }
      if (next.value.kind === 'comment') continue
      const parsed = parseData(next.value.event.data)
      if (isErrorEvent(next.value.event, parsed)) {
        const status = parsed.kind === 'json' ? relayedStatus(parsed.value) : undefined
        if (status !== undefined) {
          return attempt.fail(httpError(status, response.headers, next.value.event.data, redact))
        }
        const reason = sanitizeReason(errorMessageOf(next.value.event.data), redact)
        return attempt.fail({ kind: 'invalid_response', reason: `error event before content: ${reason}` })
      }
      if (parsed.kind === 'malformed') {
        stats.malformed++
        continue
      }
      if (parsed.kind === 'done') return empty()
      head.push({ event: next.value.event, parsed })
      observeChunk(stats, parsed.value)
      if (isCommitPoint(parsed.value) || head.length >= maxHeldEvents) return commit()
    }
  } catch (err) {
    return readFailure(attempt, err)
  }
}

export function formatEvent(event: EventSourceMessage): string {
  if (event.event === undefined && event.id === undefined && !event.data.includes('\n')) {
    return `data: ${event.data}\n\n`
  }
  let out = event.event === undefined ? '' : `event: ${event.event}\n`
  if (event.id !== undefined) out += `id: ${event.id}\n`
  for (const line of event.data.split('\n')) out += `data: ${line}\n`
  return `${out}\n`
}
