// One attempt against one provider: the pooled client, the request, its deadline, and what came back
// as data (an outcome), so the fallback policy can read statuses instead of catching exceptions.

import { Agent, type Dispatcher } from 'undici'
import type { Redactor } from './redact.ts'
import type { Step } from './router.ts'

export type TimeoutPhase = 'connect' | 'headers' | 'body' | 'first_token' | 'idle'

/** Why an attempt did not produce an answer. */
export type Failure =
  | {
      readonly kind: 'http_error'
      readonly status: number
      readonly reason: string
      readonly retryAfterMs?: number
    }
  | { readonly kind: 'network'; readonly code: string; readonly reason: string }
  | { readonly kind: 'timeout'; readonly phase: TimeoutPhase; readonly afterMs: number }
  | { readonly kind: 'invalid_response'; readonly reason: string }
  | { readonly kind: 'aborted' }

/** A 2xx response whose body has not been read yet. */
export interface UpstreamResponse {
  readonly kind: 'response'
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: Dispatcher.ResponseData['body']
}

export const isFailure = (value: { kind: string }): value is Failure =>
  value.kind === 'http_error' ||
  value.kind === 'network' ||
  value.kind === 'timeout' ||
  value.kind === 'invalid_response' ||
  value.kind === 'aborted'

export function createUpstreamClient(): Dispatcher {
  return new Agent({ keepAliveTimeout: 4_000, connect: { timeout: 10_000 } })
}

const clientGone: Failure = Object.freeze({ kind: 'aborted' })

/**
 * The life of one attempt: its abort controller (tied to the client's connection), and one deadline
 * timer that is re-armed per phase and refreshed on progress. The abort reason is the Failure itself,
 * so whoever catches the resulting error learns what happened from the signal, not from error types.
 */
export class Attempt {
  readonly #controller = new AbortController()
  readonly #detach: () => void
  #timer: NodeJS.Timeout | undefined
  #phase: TimeoutPhase = 'connect'
  readonly startedAt = performance.now()

  constructor(clientSignal: AbortSignal) {
    const onAbort = () => this.#controller.abort(clientGone)
    if (clientSignal.aborted) onAbort()
    clientSignal.addEventListener('abort', onAbort, { once: true })
    this.#detach = () => clientSignal.removeEventListener('abort', onAbort)
  }

  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** Fail the attempt as a timeout unless `touch()` is called within `ms`. */
  arm(ms: number, phase: TimeoutPhase): void {
    clearTimeout(this.#timer)
    this.#phase = phase
    this.#timer = setTimeout(
      () => this.#controller.abort({ kind: 'timeout', phase: this.#phase, afterMs: ms }),
      ms,
    )
  }

  /** Name what the running deadline is now waiting for, without extending it. */
  enter(phase: TimeoutPhase): void {
    this.#phase = phase
  }

  touch(): void {
    this.#timer?.refresh()
  }

  /** Abort with a failure found while reading (e.g. a malformed body), releasing the connection. */
  fail(failure: Failure): Failure {
    this.#controller.abort(failure)
    return failure
  }

  /** The Failure behind a thrown error: the abort reason when we aborted, else the network error. */
  failureOf(err: unknown): Failure {
    if (this.#controller.signal.aborted) return this.#controller.signal.reason as Failure
    return classifyNetworkError(err)
  }

  end(): void {
    clearTimeout(this.#timer)
    this.#detach()
  }

  elapsedMs(): number {
    return performance.now() - this.startedAt
  }
}

export interface SendOptions {
  readonly step: Step
  readonly endpoint: string
  readonly body: string
  readonly stream: boolean
  readonly attempt: Attempt
  readonly redact: Redactor
}

/** Sends one request; a 2xx comes back unread, anything else as a Failure with a sanitized reason. */
export async function sendUpstream(
  client: Dispatcher,
  options: SendOptions,
): Promise<UpstreamResponse | Failure> {
  const { step, attempt } = options
  attempt.arm(step.timeoutMs, 'headers')
  let response: Dispatcher.ResponseData
  try {
    response = await client.request({
      origin: step.origin,
      path: `${step.basePath}${options.endpoint}${step.search}`,
      method: 'POST',
      headers: {
        ...step.headers,
        'content-type': 'application/json',
        accept: options.stream ? 'text/event-stream' : 'application/json',
      },
      body: options.body,
      signal: attempt.signal,
      // Our own deadline is the precise bound; these only back it up.
      headersTimeout: step.timeoutMs + 1_000,
      bodyTimeout: step.timeoutMs + 1_000,
    })
  } catch (err) {
    return attempt.failureOf(err)
  }
  if (response.statusCode >= 200 && response.statusCode < 300) {
    return { kind: 'response', status: response.statusCode, headers: response.headers, body: response.body }
  }
  const text = await readPrefix(response.body, 16 * 1024).catch(() => '')
  const retryAfterMs = parseRetryAfter(response.headers['retry-after'])
  return {
    kind: 'http_error',
    status: response.statusCode,
    reason: sanitizeReason(errorMessageOf(text), options.redact),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  }
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

/** The human part of an upstream error body: OpenAI-style `error.message`, else the text itself. */
export function errorMessageOf(text: string): string {
  try {
    const json: unknown = JSON.parse(text)
    if (json !== null && typeof json === 'object') {
      const error = (json as { error?: unknown }).error
      if (typeof error === 'string') return error
      const message =
        (error as { message?: unknown } | undefined)?.message ?? (json as { message?: unknown }).message
      if (typeof message === 'string') return message
    }
  } catch {
    // not JSON: the text is the message
  }
  return text
}

/** One line, bounded, printable, and free of configured secrets: fit for logs and error bodies. */
export function sanitizeReason(text: string, redact: Redactor): string {
  const line = redact(text)
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim()
  return line.length > 200 ? `${line.slice(0, 197)}...` : line
}

/** `Retry-After` as milliseconds from now: delta-seconds or an HTTP-date. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value
  if (text === undefined || text.trim() === '') return undefined
  if (/^\s*\d+(\.\d+)?\s*$/.test(text)) return Math.round(Number(text) * 1000)
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

const timeoutCodes: Record<string, TimeoutPhase> = {
  UND_ERR_CONNECT_TIMEOUT: 'connect',
  UND_ERR_HEADERS_TIMEOUT: 'headers',
  UND_ERR_BODY_TIMEOUT: 'body',
}

function classifyNetworkError(err: unknown): Failure {
  const code = String(
    (err as { code?: unknown }).code ?? (err as { cause?: { code?: unknown } }).cause?.code ?? 'UNKNOWN',
  )
  const phase = timeoutCodes[code]
  if (phase !== undefined) return { kind: 'timeout', phase, afterMs: 0 }
  const message = err instanceof Error ? err.message : String(err)
  return { kind: 'network', code, reason: message.slice(0, 200) }
}

/** A complete non-streaming answer, as the provider sent it. */
export interface JsonAnswer {
  readonly kind: 'json'
  readonly status: number
  readonly contentType: string
  readonly body: Buffer
  readonly usage: Usage | undefined
}

export interface Usage {
  readonly prompt_tokens?: number
  readonly completion_tokens?: number
  readonly total_tokens?: number
}

/**
 * Reads a 2xx non-streaming body. It must be a JSON object: a truncated or non-JSON body, or a 200
 * that carries only an `error` (some aggregators do this), is a failed attempt, not an answer.
 */
export async function readJsonAnswer(
  response: UpstreamResponse,
  attempt: Attempt,
  redact: Redactor,
): Promise<JsonAnswer | Failure> {
  attempt.enter('body')
  let body: Buffer
  try {
    body = Buffer.from(await response.body.arrayBuffer())
  } catch (err) {
    return attempt.failureOf(err)
  }
  let json: unknown
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch {
    return { kind: 'invalid_response', reason: 'response body is not valid JSON' }
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    return { kind: 'invalid_response', reason: 'response body is not a JSON object' }
  }
  const answer = json as { error?: unknown; choices?: unknown; usage?: unknown }
  if (answer.error !== undefined && answer.error !== null && answer.choices === undefined) {
    return { kind: 'invalid_response', reason: sanitizeReason(errorMessageOf(body.toString('utf8')), redact) }
  }
  const contentType = response.headers['content-type']
  return {
    kind: 'json',
    status: response.status,
    contentType: typeof contentType === 'string' ? contentType : 'application/json',
    body,
    usage: usageOf(answer.usage),
  }
}

export function usageOf(value: unknown): Usage | undefined {
  if (value === null || typeof value !== 'object') return undefined
  const { prompt_tokens, completion_tokens, total_tokens } = value as Record<string, unknown>
  const usage: { -readonly [K in keyof Usage]: number } = {}
  if (typeof prompt_tokens === 'number') usage.prompt_tokens = prompt_tokens
  if (typeof completion_tokens === 'number') usage.completion_tokens = completion_tokens
  if (typeof total_tokens === 'number') usage.total_tokens = total_tokens
  return usage
}
