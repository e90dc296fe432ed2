// Server-Sent Events passthrough: read upstream events, hold them until the stream is worth committing
// to, then forward each event as it arrives, with backpressure, ending honestly on failure.

import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { EventSourceMessage } from 'eventsource-parser'
import { errorMessageOf, sanitizeReason, type Usage, usageOf } from './answer.ts'
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
  /** A choice has said why it stopped (`finish_reason`): the stream is whole even without `[DONE]`. */
  finished: boolean
}

function observeChunk(stats: StreamStats, chunk: Record<string, unknown>): void {
  // A native Responses stream reports its usage and model inside the `response` of its events.
  const response =
    typeof chunk.type === 'string' ? (chunk.response as Record<string, unknown> | null) : undefined
  stats.usage = usageOf(chunk.usage ?? response?.usage) ?? stats.usage
  const model = chunk.model ?? response?.model
  if (stats.model === undefined && typeof model === 'string') stats.model = model
  if (!stats.finished && Array.isArray(chunk.choices))
    stats.finished = chunk.choices.some(
      (c) => (c as { finish_reason?: unknown } | null)?.finish_reason != null,
    )
  if (stats.text !== undefined && Array.isArray(chunk.choices)) {
    const content = (chunk.choices[0] as { delta?: { content?: unknown } } | undefined)?.delta?.content
    if (typeof content === 'string') stats.text += content
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
const readFailure = (attempt: Attempt, err: unknown): Failure =>
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
      if (choice?.finish_reason != null) return true
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

/** An error reported inside a stream: a chat `error` payload, or a Responses `error` / `response.failed` event. */
/** An event that reports a failure: by its SSE event name alone (whatever its data), or in its data. */
const responseEnds = new Set<unknown>(['response.completed', 'response.incomplete'])
const endsResponse = (parsed: Parsed) => parsed.kind === 'json' && responseEnds.has(parsed.value.type)

function isErrorEvent(event: EventSourceMessage, parsed: Parsed): boolean {
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

export type StreamEnd = 'completed' | 'client_gone' | 'client_stalled' | Exclude<Failure, { kind: 'aborted' }>

/** How a committed stream is written to the client: as it came, or translated (responses-output.ts). */
export interface StreamWriter {
  /** SSE text for one upstream event. */
  event(event: EventSourceMessage, parsed: Exclude<Parsed, { kind: 'malformed' }>): string
  /** SSE text that ends a stream that went well; `sawDone`: the upstream sent `[DONE]` itself. */
  done(sawDone: boolean): string
  /** SSE text that ends a stream that broke after it started. */
  failed(message: string): string
  /**
   * Why a stream the upstream ended cleanly is still not whole (its closing event never came), or
   * undefined when it is. Absent: a clean end is a whole stream.
   */
  unfinished?(sawDone: boolean, stats: StreamStats): string | undefined
}

/**
 * Chat and completion streams, forwarded as they are; `[DONE]` added when missing after a
 * `finish_reason`, and a stream with neither ended as broken.
 */
const passthroughWriter: StreamWriter = {
  event: (event) => formatEvent(event),
  done: (sawDone) => (sawDone ? '' : 'data: [DONE]\n\n'),
  unfinished: (sawDone, stats) =>
    sawDone || stats.finished ? undefined : 'the stream ended without a finish_reason or [DONE]',
  failed: (message) => {
    const error = { message, type: 'upstream_error', code: 'stream_interrupted', param: null }
    return `data: ${JSON.stringify({ error })}\n\n`
  },
}

/**
 * Forwards a committed stream to the client. Every event is written as soon as it is read, and
 * reading waits while the client is not keeping up. The end is honest: a cut, stalled or broken
 * upstream becomes an error event (the OpenAI SDK raises on it), never a clean end.
 */
export async function pipeStream(
  res: ServerResponse,
  stream: CommittedStream,
  attempt: Attempt,
  redact: Redactor,
  writer: StreamWriter = passthroughWriter,
  onComplete?: () => void,
): Promise<StreamEnd> {
  // Set while the client holds the stream back. The provider is not silent then, so the idle watch
  // waits too; a budget that runs out meanwhile is the client's doing, not the provider's failure.
  let waitingOnClient = false
  const write = async (text: string) => {
    if (text === '' || res.write(text)) return
    waitingOnClient = true
    attempt.pauseWatch()
    await once(res, 'drain', { signal: attempt.signal })
    attempt.resumeWatch()
    waitingOnClient = false
  }
  let sawDone = false
  try {
    for (const { event, parsed } of stream.head) await write(writer.event(event, parsed))
    // The event that committed the stream may have been its last (a Response with no output events).
    const endedInHead = stream.head.some(({ parsed }) => endsResponse(parsed))
    while (!sawDone && !endedInHead) {
      const next = await stream.rest.next()
      if (next.done === true) break
      attempt.touch()
      if (next.value.kind === 'comment') {
        await write(`:${next.value.text}\n\n`)
        continue
      }
      const event = next.value.event
      const parsed = parseData(event.data)
      if (isErrorEvent(event, parsed)) {
        const reason = sanitizeReason(errorMessageOf(event.data), redact)
        const failure = { kind: 'invalid_response', reason: `error event: ${reason}` } as const
        await write(writer.failed(failureMessage(failure)))
        // The provider may keep sending after its error event; nothing reads it any more.
        void stream.rest.return(undefined).catch(() => {})
        return failure
      }
      if (parsed.kind === 'malformed') {
        stream.stats.malformed++
        continue
      }
      if (parsed.kind === 'done') sawDone = true
      else observeChunk(stream.stats, parsed.value)
      await write(writer.event(event, parsed))
      // A Responses stream has no [DONE]: this event is its last, whether the provider closes or not.
      if (endsResponse(parsed)) break
    }
    const missing = writer.unfinished?.(sawDone, stream.stats)
    if (missing !== undefined) {
      const failure = { kind: 'invalid_response', reason: missing } as const
      res.end(writer.failed(failureMessage(failure)))
      return failure
    }
    await write(writer.done(sawDone))
    res.end()
    // The client has it all: whatever waits on the answer (the Response store) need not wait for the
    // upstream connection to wind down too.
    onComplete?.()
    drainTail(stream.rest, attempt)
    return 'completed'
  } catch (err) {
    const failure = readFailure(attempt, err)
    void stream.rest.return(undefined).catch(() => {})
    if (failure.kind === 'aborted') return 'client_gone'
    if (waitingOnClient) {
      // More bytes would only queue behind the ones the client is not reading.
      res.destroy()
      return 'client_stalled'
    }
    res.end(writer.failed(failureMessage(failure)))
    return failure
  } finally {
    if (!res.writableEnded) res.end()
  }
}

/**
 * Reads what follows `[DONE]` (normally just the end of the chunked body, in the same packet) so the
 * connection goes back to the pool instead of being destroyed. Apart from the request, which is over
 * for the client: an upstream that holds its response open must not keep the request in flight (its
 * access line, a shutdown's drain). After `tailMs` the upstream request is cut.
 */
function drainTail(rest: AsyncGenerator<Item>, attempt: Attempt): void {
  const timer = setTimeout(() => attempt.fail({ kind: 'timeout', phase: 'idle', afterMs: tailMs }), tailMs)
  timer.unref()
  void (async () => {
    try {
      while ((await rest.next()).done !== true) {
        // discard
      }
    } catch {
      // the answer is already delivered; a late upstream error changes nothing
    } finally {
      clearTimeout(timer)
    }
  })()
}

const tailMs = 1_000

function failureMessage(failure: Exclude<Failure, { kind: 'aborted' }>): string {
  const why =
    failure.kind === 'timeout'
      ? failure.phase === 'total'
        ? `the request's time limit (timeouts.total) ran out after ${failure.afterMs} ms`
        : `no data from the provider for ${failure.afterMs} ms`
      : failure.kind === 'http_error'
        ? `status ${failure.status}`
        : failure.reason
  return `The upstream stream failed after the response started: ${why}`
}
