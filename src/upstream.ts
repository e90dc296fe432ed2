// One attempt against one provider: the pooled client, the request, its deadline, and what came back
// as data (an outcome), so the fallback policy can read statuses instead of catching exceptions.

import { Agent, type Dispatcher } from 'undici'
import { httpError, type JsonAnswer, jsonAnswerOf } from './answer.ts'
import type { Attempt, Failure } from './attempt.ts'
import type { Redactor } from './redact.ts'
import type { Step } from './router.ts'

/** A 2xx response whose body has not been read yet. */
export interface UpstreamResponse {
  readonly kind: 'response'
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: Dispatcher.ResponseData['body']
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
 * directly. Any status comes back; the caller judges it.
 */
function dispatchWhole(
  client: UpstreamClient,
  options: SendOptions,
): Promise<
  { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer } | Failure
> {
  const { attempt } = options
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    let status = 0
    let headers: Record<string, string | string[] | undefined> = {}
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
        attempt.unwatch()
        status = statusCode
        headers = responseHeaders
      },
      onResponseData(_controller, chunk) {
        size += chunk.length
        // A whole answer is held in memory before it is judged: past the limit the upstream is
        // misbehaving, and the attempt fails rather than the process.
        if (size > options.maxAnswerBytes) {
          // Failing the attempt cancels the request (through its abort hook) and settles this call.
          attempt.fail({
            kind: 'invalid_response',
            reason: `answer larger than ${options.maxAnswerBytes} bytes`,
          })
          return
        }
        chunks.push(chunk)
      },
      onResponseEnd() {
        finish({ status, headers, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) })
      },
      onResponseError(_controller, err) {
        finish(attempt.failureOf(err))
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
  if (isFailureResult(result)) return result
  if (result.status < 200 || result.status >= 300) {
    return httpError(
      result.status,
      result.headers,
      result.body.subarray(0, 16 * 1024).toString('utf8'),
      options.redact,
    )
  }
  return jsonAnswerOf(result.status, result.headers, result.body, options.redact)
}

const isFailureResult = (value: object): value is Failure => 'kind' in value

/** Sends one streaming request; a 2xx comes back unread, anything else as a Failure with a sanitized reason. */
export async function sendUpstream(
  client: UpstreamClient,
  options: SendOptions,
): Promise<UpstreamResponse | Failure> {
  const { step, attempt } = options
  attempt.start(step, options.stream)
  const pending = client
    .dispatcher(step.timeouts.connect)
    .request({ ...dispatchOptions(options), signal: attempt.signal })
  // undici honours the signal only once the request is on a connection; an attempt that ends while
  // still connecting must not wait for the connect timeout, so the abort also settles the race.
  const aborted = new Promise<Failure>((resolve) =>
    attempt.onAbort(() => resolve(attempt.failureOf(undefined))),
  )
  let response: Dispatcher.ResponseData | Failure
  try {
    response = await Promise.race([pending, aborted])
  } catch (err) {
    return attempt.failureOf(err)
  }
  if ('kind' in response) {
    pending.then(
      (late) => late.body.destroy(),
      () => {},
    )
    return response
  }
  attempt.unwatch()
  if (response.statusCode >= 200 && response.statusCode < 300) {
    return { kind: 'response', status: response.statusCode, headers: response.headers, body: response.body }
  }
  const text = await readPrefix(response.body, 16 * 1024).catch(() => '')
  return httpError(response.statusCode, response.headers, text, options.redact)
}

/** Up to `limit` bytes of a body as text; the rest is discarded and the stream released. */
async function readPrefix(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  limit: number,
): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    chunks.push(chunk)
    size += chunk.length
    if (size >= limit) {
      body.destroy()
      break
    }
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8')
}
