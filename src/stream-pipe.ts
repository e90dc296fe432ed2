// Forwarding a committed stream to the client: each event as it arrives, with backpressure, ending
// honestly on failure, and the provider's tail read apart once the client has it all.

import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { EventSourceMessage } from 'eventsource-parser'
import { errorMessageOf, sanitizeReason } from './answer.ts'
import type { Attempt, Failure } from './attempt.ts'
import type { Redactor } from './redact.ts'
import {
  type CommittedStream,
  endsResponse,
  formatEvent,
  isErrorEvent,
  observeChunk,
  readFailure,
  type StreamStats,
} from './sse.ts'
import { type Item, type Parsed, parseData } from './sse-read.ts'

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
    // A Responses stream has no [DONE]: its last event ends it, whether the provider closes or not. That
    // may be the event that committed it (a Response with no output events).
    let ended = false
    for (const { event, parsed } of stream.head) {
      await write(writer.event(event, parsed))
      ended ||= endsResponse(parsed)
    }
    while (!sawDone && !ended) {
      const next = await stream.rest.next()
      if (next.done === true) break
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
      ended = endsResponse(parsed)
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
        ? // afterMs is what was left of it when the stream was committed, not the limit: no number.
          "the request's time limit (timeouts.total) ran out"
        : `no data from the provider for ${failure.afterMs} ms`
      : failure.kind === 'http_error'
        ? `status ${failure.status}`
        : failure.reason
  return `The upstream stream failed after the response started: ${why}`
}
