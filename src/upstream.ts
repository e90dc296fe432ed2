// One attempt against one provider: the pooled client, the request, its deadline, and what came back
// as data (an outcome), so the fallback policy can read statuses instead of catching exceptions.

import { Agent, type Dispatcher } from 'undici'
import type { Attempt, Failure } from './attempt.ts'
import type { Redactor } from './redact.ts'
import { retryHint } from './retry-hints.ts'
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
}

/** Sends one request; a 2xx comes back unread, anything else as a Failure with a sanitized reason. */
export async function sendUpstream(
  client: UpstreamClient,
  options: SendOptions,
): Promise<UpstreamResponse | Failure> {
  const { step, attempt } = options
  attempt.start(step, options.stream)
  let response: Dispatcher.ResponseData
  try {
    response = await client.dispatcher(step.timeouts.connect).request({
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
      signal: attempt.signal,
      // The attempt's own timers are the precise bounds; these only stop undici's defaults (300 s)
      // from cutting a long but healthy answer.
      headersTimeout: 0,
      bodyTimeout: 0,
    })
  } catch (err) {
    return attempt.failureOf(err)
  }
  attempt.unwatch()
  if (response.statusCode >= 200 && response.statusCode < 300) {
    return { kind: 'response', status: response.statusCode, headers: response.headers, body: response.body }
  }
  const text = await readPrefix(response.body, 16 * 1024).catch(() => '')
  const retryAfterMs = retryHint(response.headers, text)
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

/** A complete non-streaming answer, as the provider sent it. */
export interface JsonAnswer {
  readonly kind: 'json'
  readonly status: number
  readonly contentType: string
  readonly body: Buffer
  readonly usage: Usage | undefined
  /** The model the provider says answered. */
  readonly model: string | undefined
  /** The answer's choices, for telemetry that records completions. */
  readonly choices: unknown
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
  const answer = json as { error?: unknown; choices?: unknown; usage?: unknown; model?: unknown }
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
    model: typeof answer.model === 'string' ? answer.model : undefined,
    choices: answer.choices,
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
