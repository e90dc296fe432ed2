// One attempt against one provider: the pooled client, the request, its deadline, and what came back
// as data (an outcome), so the fallback policy can read statuses instead of catching exceptions.

import type { Dispatcher } from 'undici'
// The Agent module alone, not undici's index: the index also loads fetch, WebSocket, the cache and
// the mocks, which the gateway never uses. That was 2.8 MiB of heap and 0.6 MiB of bundle, resident
// in every gateway. undici has no exports map, so this path is reachable; the tests catch a move.
import Agent from 'undici/lib/dispatcher/agent.js'
import { httpError, type JsonAnswer, jsonAnswerOf } from './answer.ts'
import { type Attempt, type Failure, isFailure } from './attempt.ts'
import { ChunkQueue } from './chunk-queue.ts'
import type { Redactor } from './redact.ts'
import type { Step } from './router.ts'

/** A 2xx streaming response whose body has not been read yet. */
export interface UpstreamResponse {
  readonly kind: 'response'
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: ChunkQueue
}

/**
 * Pooled keep-alive connections to every provider. undici sets the connect timeout per pool, so steps
 * that configure different connect timeouts get a pool each (there are rarely more than one or two).
 */
export class UpstreamClient {
  readonly #pools = new Map<number, Agent>()

  dispatcher(connectTimeoutMs: number): Dispatcher {
    let agent = this.#pools.get(connectTimeoutMs)
    if (agent === undefined) {
      agent = new Agent({ keepAliveTimeout: 4_000, connect: { timeout: connectTimeoutMs } })
      this.#pools.set(connectTimeoutMs, agent)
    }
    return agent
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((agent) => agent.destroy()))
  }
}

/** How much of a provider's error body is read: enough for its message and retry hints. */
const errorBodyBytes = 16 * 1024

/** A non-2xx answer, judged by its status and the start of its body, streaming or not. */
class ErrorAnswer {
  readonly #status: number
  readonly #headers: Readonly<Record<string, string | string[] | undefined>>
  readonly #chunks: Buffer[] = []
  #size = 0

  constructor(status: number, headers: Readonly<Record<string, string | string[] | undefined>>) {
    this.#status = status
    this.#headers = headers
  }

  /** Keeps `chunk`; true once enough of the body is kept to judge it. */
  add(chunk: Buffer): boolean {
    this.#chunks.push(chunk)
    this.#size += chunk.length
    return this.#size >= errorBodyBytes
  }

  /** Judged as kept; `whole` when the body ended, rather than being cut by the limit or a failure. */
  failure(redact: Redactor, whole: boolean): Failure {
    let text = Buffer.concat(this.#chunks).subarray(0, errorBodyBytes).toString('utf8')
    // A cut body may end in the first characters of a key, which no redaction could recognise as one:
    // as much of its end as a key's spelling can take goes, before anything is taken from it.
    if (!whole || this.#size > errorBodyBytes) {
      text = text.slice(0, Math.max(0, text.length - Math.max(0, (redact.reach ?? 0) - 1)))
    }
    return httpError(this.#status, this.#headers, text, redact)
  }
}

export interface SendOptions {
  readonly step: Step
  readonly endpoint: string
  readonly body: string
  readonly stream: boolean
  readonly attempt: Attempt
  readonly redact: Redactor
  /** Per-attempt headers, e.g. the trace context. */
  readonly headers?: Readonly<Record<string, string>>
  /** The largest non-streaming answer accepted. */
  readonly maxAnswerBytes: number
}

function dispatchOptions(options: SendOptions): Dispatcher.DispatchOptions {
  const { step } = options
  return {
    origin: step.origin,
    path: `${step.basePath}${options.endpoint}${step.search}`,
    method: 'POST',
    headers: {
      ...step.headers,
      ...options.headers,
      'content-type': 'application/json',
      accept: options.stream ? 'text/event-stream' : 'application/json',
      // Without it a provider may compress, and answers are judged and forwarded as they come.
      'accept-encoding': 'identity',
    },
    body: options.body,
    // The attempt's own timers are the precise bounds; these only stop undici's defaults (300 s)
    // from cutting a long but healthy answer.
    headersTimeout: 0,
    bodyTimeout: 0,
  }
}

/**
 * One non-streaming request, answered as a whole: undici's dispatch API collects the body without a
 * body stream or an abort-signal listener (both measurable per request), and the attempt cancels it
 * directly. A 2xx comes back whole for the caller to judge; anything else as its Failure.
 */
function dispatchWhole(
  client: UpstreamClient,
  options: SendOptions,
): Promise<
  | { kind: 'whole'; status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }
  | Failure
> {
  const { attempt } = options
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    let status = 0
    let headers: Record<string, string | string[] | undefined> = {}
    let error: ErrorAnswer | undefined
    let done = false
    const finish = (value: Parameters<typeof resolve>[0]) => {
      if (done) return
      done = true
      resolve(value)
    }
    let cancel: ((reason: Error) => void) | undefined
    // Registered before dispatching: an attempt that times out while still connecting must end now,
    // not when the connection attempt gives up.
    attempt.onAbort(() => {
      cancel?.(new Error('attempt aborted'))
      finish(attempt.failureOf(undefined))
    })
    client.dispatcher(options.step.timeouts.connect).dispatch(dispatchOptions(options), {
      onRequestStart(controller) {
        if (done) controller.abort(new Error('attempt aborted'))
        else cancel = (reason) => controller.abort(reason)
      },
      onResponseStart(_controller, statusCode, responseHeaders) {
        if (statusCode < 200) return // an interim answer (103 Early Hints, 102): the real one follows
        attempt.unwatch()
        status = statusCode
        headers = responseHeaders
        if (statusCode < 200 || statusCode >= 300) error = new ErrorAnswer(statusCode, responseHeaders)
      },
      onResponseData(controller, chunk) {
        if (error !== undefined) {
          if (error.add(chunk)) {
            // Settled first: aborting reports an error of its own, synchronously.
            finish(error.failure(options.redact, false))
            controller.abort(new Error('enough of the error body'))
          }
          return
        }
        size += chunk.length
        // A whole answer is held in memory before it is judged: past the limit the upstream is
        // misbehaving, and the attempt fails rather than the process.
        if (size > options.maxAnswerBytes) {
          // Failing the attempt cancels the request (through its abort hook) and settles this call.
          attempt.fail({
            kind: 'invalid_response',
            reason: `answer larger than ${options.maxAnswerBytes} bytes`,
            tooLarge: true,
          })
          return
        }
        chunks.push(chunk)
      },
      onResponseEnd() {
        if (error !== undefined) {
          finish(error.failure(options.redact, true))
          return
        }
        const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)
        // Copied into one buffer: the parts go now, not when the attempt ends (a large answer is held
        // several times over on its way through).
        chunks.length = 0
        finish({ kind: 'whole', status, headers, body })
      },
      onResponseError(_controller, err) {
        // An error status whose body was cut short is still that status (a 429 and its Retry-After).
        finish(error === undefined ? attempt.failureOf(err) : error.failure(options.redact, false))
      },
    })
  })
}

/** A non-streaming attempt from request to judged answer: a JSON answer, or why there is none. */
export async function exchangeJson(
  client: UpstreamClient,
  options: SendOptions,
): Promise<JsonAnswer | Failure> {
  options.attempt.start(options.step, false)
  const result = await dispatchWhole(client, options)
  if (isFailure(result)) return result
  return jsonAnswerOf(result.status, result.headers, result.body, options.redact)
}

/**
 * Sends one streaming request; a 2xx comes back with its body still to be read (as a ChunkQueue with
 * backpressure), anything else as a Failure with a sanitized reason. Like the whole-answer path it
 * uses undici's dispatch API, and the attempt cancels it directly, even while still connecting.
 */
export function sendUpstream(
  client: UpstreamClient,
  options: SendOptions,
): Promise<UpstreamResponse | Failure> {
  const { step, attempt } = options
  attempt.start(step, options.stream)
  return new Promise((resolve) => {
    let controller: Dispatcher.DispatchController | undefined
    let settled = false
    const settle = (value: UpstreamResponse | Failure) => {
      if (settled) return
      settled = true
      resolve(value)
    }
    const body = new ChunkQueue({
      pause: () => controller?.pause(),
      resume: () => controller?.resume(),
      cancel: () => controller?.abort(new Error('reader stopped')),
    })
    // A non-2xx answer: only the start of its body is kept, for the reason and the retry hint.
    let error: ErrorAnswer | undefined
    const settleError = (answer: ErrorAnswer, whole: boolean) => settle(answer.failure(options.redact, whole))
    attempt.onAbort(() => {
      controller?.abort(new Error('attempt aborted'))
      body.fail(new Error('attempt aborted'))
      settle(attempt.failureOf(undefined))
    })
    client.dispatcher(step.timeouts.connect).dispatch(dispatchOptions(options), {
      onRequestStart(c) {
        if (settled && error === undefined) c.abort(new Error('attempt aborted'))
        else controller = c
      },
      onResponseStart(_c, statusCode, headers) {
        if (statusCode < 200) return // interim, as above
        attempt.unwatch()
        if (statusCode >= 200 && statusCode < 300)
          settle({ kind: 'response', status: statusCode, headers, body })
        else error = new ErrorAnswer(statusCode, headers)
      },
      onResponseData(c, chunk) {
        if (error === undefined) {
          // Bytes are progress, whole events or not: a large event arriving in pieces is not silence.
          attempt.touch()
          body.push(chunk)
        } else if (error.add(chunk)) {
          c.abort(new Error('enough of the error body'))
          settleError(error, false)
        }
      },
      onResponseEnd() {
        if (error === undefined) body.end()
        else settleError(error, true)
      },
      onResponseError(_c, err) {
        if (error !== undefined) settleError(error, false)
        else if (settled) body.fail(err)
        else settle(attempt.failureOf(err))
      },
    })
  })
}
