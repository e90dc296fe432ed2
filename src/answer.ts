// Judging what a provider sent back: a whole JSON answer, an error status with its retry hint, and the
// short, sanitized words for either. Pure.

import type { Failure } from './attempt.ts'
import type { Redactor } from './redact.ts'
import { retryHint } from './retry-hints.ts'

export function httpError(
  status: number,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  text: string,
  redact: Redactor,
): Failure {
  const retryAfterMs = retryHint(headers, text)
  const { location } = headers
  // undici does not follow redirects; the operator needs the new address, not the page about it.
  const message =
    status >= 300 && status < 400 && typeof location === 'string'
      ? `redirected to ${location} (base_url should name the final address)`
      : (pageTitleOf(text) ?? errorMessageOf(text))
  return {
    kind: 'http_error',
    status,
    reason: sanitizeReason(message, redact),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  }
}

/**
 * An HTML error page (a CDN's or a proxy's in front of the provider) says what happened in its title,
 * its character references decoded: a key it quotes as `&#43;` (Go's html/template) or `&sol;` is a
 * spelling no redaction knows, and is recognised once decoded.
 */
function pageTitleOf(text: string): string | undefined {
  if (!/^\s*</.test(text)) return undefined
  const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1]
  const words = title === undefined ? '' : decodeReferences(title).trim()
  return words === '' ? 'an HTML page' : words
}

/** HTML's names for the characters other than letters and digits that a key may hold. */
const namedReferences: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: '\u00a0',
  plus: '+',
  sol: '/',
  bsol: '\\',
  equals: '=',
  lowbar: '_',
  UnderBar: '_',
  period: '.',
  comma: ',',
  colon: ':',
  semi: ';',
  excl: '!',
  quest: '?',
  num: '#',
  dollar: '$',
  percnt: '%',
  ast: '*',
  midast: '*',
  commat: '@',
  Hat: '^',
  grave: '`',
  verbar: '|',
  vert: '|',
  VerticalLine: '|',
  lpar: '(',
  rpar: ')',
  lsqb: '[',
  lbrack: '[',
  rsqb: ']',
  rbrack: ']',
  lcub: '{',
  lbrace: '{',
  rcub: '}',
  rbrace: '}',
}

/** Numeric references (decimal or hex, the `;` optional as browsers read them) and the names above. */
function decodeReferences(text: string): string {
  return text.replace(/&(?:#(\d+)|#[xX]([\da-fA-F]+)|([A-Za-z]+));?/g, (reference, decimal, hex, name) => {
    if (name !== undefined) return reference.endsWith(';') ? (namedReferences[name] ?? reference) : reference
    const code = decimal === undefined ? Number.parseInt(hex, 16) : Number(decimal)
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : reference
  })
}

/**
 * The human part of an upstream error body or error event: OpenAI-style `error` (a string, or its
 * `message`), a Responses API `response.failed` event's `response.error.message`, or a top-level
 * `message` (a Responses `error` event); failing those, the error's `code` or the event's `type`
 * rather than the raw JSON. Gemini wraps its error in a list: the first one is read. Anything else:
 * the text itself.
 */
export function errorMessageOf(text: string): string {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return text // not JSON: the text is the message
  }
  if (Array.isArray(json) && json.length === 1) json = json[0]
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return text
  const { error, response, message, type } = json as Record<string, unknown>
  if (typeof error === 'string') return error
  const errors = [error, (response as { error?: unknown } | null | undefined)?.error]
  const said = [...errors.map((e) => (e as { message?: unknown } | null | undefined)?.message), message]
  const words = said.find((w): w is string => typeof w === 'string')
  if (words !== undefined) return words
  const labels = [...errors.map((e) => (e as { code?: unknown } | null | undefined)?.code), type]
  return labels.find((w): w is string => typeof w === 'string' && w !== '') ?? text
}

/** One line, bounded, printable, and free of configured secrets: fit for logs and error bodies. */
export function sanitizeReason(text: string, redact: Redactor): string {
  const line = redact(text)
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim()
  return line.length > 200 ? `${line.slice(0, 197)}...` : line
}

/**
 * The HTTP status an error body carries as its code. An aggregator (OpenRouter) relays the refusal of
 * the provider behind it in a 200, or in an error event of a stream it began: a 429 there is a rate
 * limit, to cool down for, not a malformed answer.
 */
export function relayedStatus(body: Readonly<Record<string, unknown>>): number | undefined {
  const code = (body.error as { code?: unknown } | null | undefined)?.code
  return typeof code === 'number' && Number.isInteger(code) && code >= 400 && code < 600 ? code : undefined
}

/** A complete non-streaming answer, as the provider sent it. */
export interface JsonAnswer {
  readonly kind: 'json'
  readonly status: number
  readonly contentType: string
  /**
   * The body as decoded and judged. It is sent on as text: node:http writes a string body in one piece
   * with the response head, where a Buffer body costs a gathered write (2 µs more per request).
   */
  readonly text: string
  /** The body as received: sent as it is when large, sparing a copy of it made to write the text. */
  readonly bytes: Buffer
  readonly usage: Usage | undefined
  /** The model the provider says answered. */
  readonly model: string | undefined
  /** The body, parsed once here for whoever reads it further (telemetry, the Responses translation). */
  readonly value: Readonly<Record<string, unknown>>
}

export interface Usage {
  readonly prompt_tokens?: number
  readonly completion_tokens?: number
  readonly total_tokens?: number
}

/**
 * Judges a 2xx non-streaming body. It must be a JSON object: a truncated or non-JSON body, or a 200
 * that carries only an `error` (some aggregators do this), is a failed attempt, not an answer.
 */
export function jsonAnswerOf(
  status: number,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  body: Buffer,
  redact: Redactor,
): JsonAnswer | Failure {
  const text = body.toString('utf8')
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return { kind: 'invalid_response', reason: 'response body is not valid JSON' }
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    return { kind: 'invalid_response', reason: 'response body is not a JSON object' }
  }
  const answer = json as Record<string, unknown> & { error?: unknown; choices?: unknown; usage?: unknown }
  if (answer.error !== undefined && answer.error !== null && answer.choices === undefined) {
    const status = relayedStatus(answer)
    if (status !== undefined) return httpError(status, headers, text, redact)
    return { kind: 'invalid_response', reason: sanitizeReason(errorMessageOf(text), redact) }
  }
  const contentType = headers['content-type']
  return {
    kind: 'json',
    status,
    // The body was just parsed as a JSON object: a provider that labels it text/plain would make a client
    // (the OpenAI SDKs do) hand its caller a string instead of the completion.
    contentType:
      typeof contentType === 'string' && /json/i.test(contentType) ? contentType : 'application/json',
    text,
    bytes: body,
    usage: usageOf(answer.usage),
    model: typeof answer.model === 'string' ? answer.model : undefined,
    value: answer,
  }
}

/** Chat usage as it is, or the Responses API's (`input_tokens`, `output_tokens`) in chat's names. */
export function usageOf(value: unknown): Usage | undefined {
  if (value === null || typeof value !== 'object') return undefined
  const { prompt_tokens, completion_tokens, total_tokens, input_tokens, output_tokens } = value as Record<
    string,
    unknown
  >
  const usage: { -readonly [K in keyof Usage]: number } = {}
  const prompt = prompt_tokens ?? input_tokens
  const completion = completion_tokens ?? output_tokens
  if (typeof prompt === 'number') usage.prompt_tokens = prompt
  if (typeof completion === 'number') usage.completion_tokens = completion
  if (typeof total_tokens === 'number') usage.total_tokens = total_tokens
  return usage
}
