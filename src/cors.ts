// Cross-origin access for browser clients (chat UIs, the OpenAI SDK in a page), when the config lists
// the origins allowed. The gateway key travels in a header, never in a cookie, so no credentials mode.

type Headers = Readonly<Record<string, string>>

/** What a browser may read of an answer besides the CORS-safelisted headers. */
const exposed = [
  'x-request-id',
  'x-gateway-route',
  'x-gateway-provider',
  'x-gateway-model',
  'x-gateway-attempts',
  'retry-after',
].join(', ')

/** Asked for by clients that do not say which headers they will send. */
const defaultAllowedHeaders = 'authorization, content-type, x-api-key, x-request-id'

/** Browsers cache a preflight for this long, in seconds (Chromium caps it at 7200). */
const preflightMaxAge = '600'

export interface Cors {
  /**
   * Headers for an answer to a request from `origin` (or from no origin): the allowing ones when it is
   * listed; else only `Vary: Origin` when answers differ by origin, so a shared cache keeps them apart.
   */
  headersFor(origin: string | undefined): Headers | undefined
  /** Headers for a preflight from an allowed origin that asks for `requested` headers. */
  preflight(allowed: Headers, methods: readonly string[], requested: string | undefined): Headers
}

export function createCors(origins: readonly string[]): Cors {
  const any = origins.includes('*')
  const listed = new Set(origins.map((o) => o.toLowerCase()))
  // The same headers object for every request from one origin: built once, shared thereafter.
  const wildcard: Headers = { 'access-control-allow-origin': '*', 'access-control-expose-headers': exposed }
  const byOrigin = new Map<string, Headers>()
  for (const origin of listed) {
    if (origin === '*') continue
    byOrigin.set(origin, {
      'access-control-allow-origin': origin,
      'access-control-expose-headers': exposed,
      vary: 'origin',
    })
  }
  const notAllowed: Headers | undefined = byOrigin.size > 0 ? { vary: 'origin' } : undefined
  return {
    headersFor(origin) {
      const allowed = origin === undefined ? undefined : byOrigin.get(origin.toLowerCase())
      return allowed ?? (any && origin !== undefined ? wildcard : notAllowed)
    },
    preflight(allowed, methods, requested) {
      return {
        ...allowed,
        vary:
          allowed.vary === undefined
            ? 'access-control-request-headers'
            : 'origin, access-control-request-headers',
        'access-control-allow-methods': methods.join(', '),
        // A header list is tokens and commas; anything else is not echoed back.
        'access-control-allow-headers':
          requested !== undefined &&
          /^[\w!#$%&'*+.^`|~-]+(\s*,\s*[\w!#$%&'*+.^`|~-]+)*$/.test(requested.trim())
            ? requested.trim()
            : defaultAllowedHeaders,
        'access-control-max-age': preflightMaxAge,
      }
    },
  }
}

/** Whether `headers` (from `headersFor`) let the origin in. */
export const allowsOrigin = (headers: Headers | undefined): boolean =>
  headers?.['access-control-allow-origin'] !== undefined
