// When a provider says it can be asked again: every rate-limit hint format seen in the wild, in headers
// and in error bodies, as one number of milliseconds from now.

import { parseDuration } from './units.ts'

type Headers = Readonly<Record<string, string | string[] | undefined>>

// Beyond a day a hint is more likely a unit mix-up than a plan; the cooldown is capped there.
const maxHintMs = 24 * 3_600_000

const first = (value: string | string[] | undefined): string | undefined =>
  (Array.isArray(value) ? value[0] : value)?.trim() || undefined

const isNumber = (text: string): boolean => /^\d+(\.\d+)?$/.test(text)

// The three HTTP-date forms (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850, asctime) open with a day name
// and hold a time. Date.parse alone takes almost anything (`-1`, `+5`, `1,5` are dates to it, long
// past), which would turn a malformed header into "ask again now" and the target would never cool down.
const isHttpDate = (text: string): boolean => /^[a-z]{3,9},? .*\d{2}:\d{2}:\d{2}/i.test(text)

/** `Retry-After`: delta-seconds or an HTTP-date; anything else is no hint. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = first(value)
  if (text === undefined) return undefined
  if (isNumber(text)) return Number(text) * 1000
  if (!isHttpDate(text)) return undefined
  // Every HTTP-date is GMT; asctime's form does not say so, and Date.parse would read it as local time.
  const date = Date.parse(/GMT$/i.test(text) ? text : `${text} GMT`)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/**
 * `x-ratelimit-reset`: providers disagree on the unit. An epoch in milliseconds (OpenRouter), an epoch
 * in seconds, or seconds from now; the size of the number tells which.
 */
function parseResetEpoch(value: string | string[] | undefined, now: number): number | undefined {
  const text = first(value)
  if (text === undefined) return undefined
  if (!isNumber(text)) return parseDuration(text)
  const n = Number(text)
  if (n > 1e12) return Math.max(0, n - now)
  if (n > 1e9) return Math.max(0, n * 1000 - now)
  return n * 1000
}

/**
 * Whether a limit's `remaining` says it has room (or, as Azure's `-1`, does not know), so it was not
 * the one hit. Providers send these on every answer, and when a limit that was not hit refills (Groq's
 * requests per day: minutes away) says nothing of when to ask again, least of all after a 5xx.
 */
const hasRoom = (headers: Headers, name: string): boolean => {
  const left = first(headers[name])
  return left !== undefined && left !== '0'
}

const resetOf = (headers: Headers, limit: 'requests' | 'tokens'): number | undefined =>
  hasRoom(headers, `x-ratelimit-remaining-${limit}`)
    ? undefined
    : parseDuration(first(headers[`x-ratelimit-reset-${limit}`]) ?? '')

/**
 * OpenAI-style `x-ratelimit-reset-requests` / `-tokens` (`1s`, `6m0s`, `20ms`). The one whose
 * `remaining` is exhausted is the limit that was hit; when that is unclear, the later reset is safe.
 */
function parseResetPair(headers: Headers): number | undefined {
  const requests = resetOf(headers, 'requests')
  const tokens = resetOf(headers, 'tokens')
  if (requests === undefined || tokens === undefined) return requests ?? tokens
  if (first(headers['x-ratelimit-remaining-requests']) === '0') return requests
  if (first(headers['x-ratelimit-remaining-tokens']) === '0') return tokens
  return Math.max(requests, tokens)
}

/** The hint carried by response headers, most specific first. */
export function headerRetryHint(headers: Headers, now = Date.now()): number | undefined {
  const ms = first(headers['retry-after-ms'])
  if (ms !== undefined && isNumber(ms)) return Number(ms)
  return (
    parseRetryAfter(headers['retry-after'], now) ??
    parseResetPair(headers) ??
    (hasRoom(headers, 'x-ratelimit-remaining')
      ? undefined
      : parseResetEpoch(headers['x-ratelimit-reset'], now))
  )
}

/**
 * Hints inside a JSON error body: Gemini's `RetryInfo.retryDelay` ("30s"), headers an aggregator
 * relays from the real provider (OpenRouter's `error.metadata.headers`), and the "try again in 7.5s"
 * sentence OpenAI-compatible providers put in their messages.
 */
export function bodyRetryHint(text: string, now = Date.now()): number | undefined {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return messageHint(text)
  }
  const error = (Array.isArray(json) ? json[0] : json) as { error?: Record<string, unknown> } | undefined
  const details = error?.error?.details
  if (Array.isArray(details)) {
    for (const detail of details as Record<string, unknown>[]) {
      if (typeof detail?.retryDelay === 'string') {
        const ms = parseDuration(detail.retryDelay)
        if (ms !== undefined) return ms
      }
    }
  }
  const relayed = (error?.error?.metadata as { headers?: unknown } | undefined)?.headers
  if (relayed !== null && typeof relayed === 'object') {
    const lower = Object.fromEntries(Object.entries(relayed).map(([k, v]) => [k.toLowerCase(), String(v)]))
    const ms = headerRetryHint(lower, now)
    if (ms !== undefined) return ms
  }
  const message = error?.error?.message
  return typeof message === 'string' ? messageHint(message) : undefined
}

function messageHint(message: string): number | undefined {
  const match = /try again in ((?:\d+(?:\.\d+)?(?:ms|s|m|h))+)/i.exec(message)
  return match?.[1] === undefined ? undefined : parseDuration(match[1])
}

/** The provider's hint for a failed response, from headers first, then the body; capped at a day. */
export function retryHint(headers: Headers, bodyText: string, now = Date.now()): number | undefined {
  const ms = headerRetryHint(headers, now) ?? bodyRetryHint(bodyText, now)
  return ms === undefined ? undefined : Math.min(Math.ceil(ms), maxHintMs)
}
