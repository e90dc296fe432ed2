// The config file's shape: one strict schema (unknown keys are errors) from which the Config type is inferred.

import { isIP } from 'node:net'
import * as z from 'zod'
import { maskUrl } from './redact.ts'
import { parseDuration, parseSize } from './units.ts'

// Node's timers take at most 2^31 - 1 ms; a longer delay fires after 1 ms instead.
const maxDurationMs = 2 ** 31 - 1

// Every schema below that accepts more than one kind of value (a union) names what it expects: zod's
// own message for a union that matched nothing is a bare "Invalid input".

const invalidDuration = (value: unknown) =>
  `invalid duration ${JSON.stringify(value)} (use e.g. 500ms, 30s, 5m, 1h30m)`

const durationProblem = (value: string | number, ms: number | undefined, positive: boolean) => {
  if (ms === undefined) return invalidDuration(value)
  if (ms > maxDurationMs) return `duration ${JSON.stringify(value)} is too long (at most 24 days)`
  if (positive && ms === 0) return 'a timeout must be longer than 0'
  return undefined
}

const duration = (fallback?: string, positive = false) => {
  const parsed = z
    .union([z.string(), z.number()], { error: (issue) => invalidDuration(issue.input) })
    .transform((value, ctx) => {
      const ms = parseDuration(value)
      const problem = durationProblem(value, ms, positive)
      if (problem !== undefined) {
        ctx.addIssue({ code: 'custom', message: problem })
        return z.NEVER
      }
      return ms as number
    })
  return fallback === undefined ? parsed : parsed.prefault(fallback)
}

/** A duration something waits for before giving up: zero would give up before starting. */
const timeout = (fallback?: string) => duration(fallback, true)

const invalidSize = (value: unknown) => `invalid size ${JSON.stringify(value)} (use e.g. 512kb, 32mb)`

const size = (fallback: string) =>
  z
    .union([z.string(), z.number()], { error: (issue) => invalidSize(issue.input) })
    .transform((value, ctx) => {
      const bytes = parseSize(value)
      if (bytes === undefined) {
        ctx.addIssue({ code: 'custom', message: invalidSize(value) })
        return z.NEVER
      }
      return bytes
    })
    .prefault(fallback)

const nonEmpty = z.string().trim().min(1, 'must not be empty')

// Quoted masked: a base_url may hold a key (`?key=${GEMINI_API_KEY}`), and a config problem reaches the
// terminal (or the journal) before the secrets are known, so nothing could redact it there.
const httpUrl = z
  .string()
  .refine((value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol), {
    error: (issue) =>
      `invalid URL ${JSON.stringify(maskUrl(String(issue.input)))} (expected http:// or https://)`,
  })

/** One character, for a message that must not quote the value it is in: `’ (U+2019)`, or `U+000A` if unseen. */
function describeCharacter(char: string): string {
  const code = `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`
  return /^[\p{L}\p{N}\p{P}\p{S}]$/u.test(char) ? `${char} (${code})` : code
}

/** The first character `allowed` does not match, and its position (counted in characters, from 1). */
function firstOutside(value: string, allowed: RegExp): string | undefined {
  let position = 0
  for (const char of value) {
    position++
    if (!allowed.test(char)) return `${describeCharacter(char)} at position ${position}`
  }
  return undefined
}

/**
 * A value sent in a header: what undici accepts (tab, visible ASCII and space, and latin1 bytes). Any
 * other character (a curly quote pasted with a key, a line break) would make every request to the
 * provider fail as a connection error. The message points at the character, never quotes the value.
 */
const headerCharacter = /^[\t\x20-\x7e\x80-\xff]$/
/** A whole header value undici and node:http accept. */
export const headerText = /^[\t\x20-\x7e\x80-\xff]*$/
const headerSafe = <T extends z.ZodType<string>>(schema: T) =>
  schema.refine((value) => firstOutside(value, headerCharacter) === undefined, {
    error: (issue) =>
      `contains a character HTTP headers cannot carry: ${firstOutside(String(issue.input), headerCharacter)}`,
  })

/**
 * The gateway's own key: printable ASCII only. Clients send a header's text as UTF-8 and Node reads
 * its bytes as latin1, so a key with any other character could never be matched.
 */
const printableAscii = /^[\x20-\x7e]$/
const gatewayKey = nonEmpty.refine((value) => firstOutside(value, printableAscii) === undefined, {
  error: (issue) =>
    `must be printable ASCII, or no client could present it: ${firstOutside(String(issue.input), printableAscii)}`,
})

/** A number, or its digits as text (a `\${VAR}` resolves to text); `expected` names what fits. */
const digits = (expected: string) =>
  z.union([z.number(), z.string().regex(/^\d+$/, expected).transform(Number)], { error: expected })

const portExpected = 'expected a port number 0–65535'
const port = digits(portExpected).pipe(
  z.number().int(portExpected).min(0, portExpected).max(65535, portExpected),
)

const countExpected = 'expected a whole number'
const count = digits(countExpected).pipe(z.number().int(countExpected).min(0, countExpected))
const positiveCount = count.pipe(z.number().min(1, 'must be at least 1'))

// Switches from the environment arrive as text: exactly "true" or "false", nothing looser ("yes",
// "1"), so a typo is an error rather than a guess.
const flag = z.union([z.boolean(), z.enum(['true', 'false']).transform((value) => value === 'true')], {
  error: 'expected true or false',
})

/**
 * Proactive limits, from a provider's published quotas: requests and tokens per minute and per day.
 * A limit of 0 is refused: it would let nothing through, and the quota book reads it as no limit.
 */
const limitsOf = (remedy: string) => {
  const limit = count.pipe(z.number().min(1, `a limit of 0 lets nothing through: ${remedy}`)).optional()
  return z.strictObject({ rpm: limit, rpd: limit, tpm: limit, tpd: limit })
}
const stepLimits = limitsOf('remove the step, or the limit')
const providerLimits = limitsOf("remove the provider's steps, or the limit")

const phaseTimeouts = {
  connect: timeout().optional(),
  headers: timeout().optional(),
  first_token: timeout().optional(),
  idle: timeout().optional(),
}
const stepTimeouts = z.strictObject(phaseTimeouts)
const routeTimeouts = z.strictObject({ ...phaseTimeouts, total: timeout().optional() })

const failover = z.strictObject({
  rate_limit_cooldown: duration('10s'),
  rate_limit_cooldown_max: duration('10m'),
  auth_cooldown: duration('15m'),
  not_found_cooldown: duration('15m'),
  circuit_failures: positiveCount.default(3),
  circuit_open: duration('30s'),
  circuit_open_max: duration('5m'),
  max_retries: count.default(1),
  max_retry_delay: duration('5s'),
  retry_backoff: duration('250ms'),
  max_attempts: positiveCount.default(6),
  max_wait: duration('15s'),
})

/** A DNS name (an underscore too, as /etc/hosts may have it): dot-separated labels, no port or scheme. */
const hostName = /^\w([\w-]*\w)?(\.\w([\w-]*\w)?)*\.?$/

/** Where to listen: an IP address or a name to look up. `127.0.0.1:8080` or `[::1]` would fail only at start. */
const listenHost = nonEmpty.refine((value) => isIP(value) !== 0 || hostName.test(value), {
  error: 'expected an IP address or a host name, e.g. 127.0.0.1 or ::1 (no port, scheme or brackets)',
})

const metrics = z.strictObject({
  enabled: flag.default(true),
  /** Require the gateway key on /metrics; default: yes on the main port, no on a metrics port of its own. */
  require_key: flag.optional(),
  /** Serve /metrics on this port instead of the main one. */
  port: port.optional(),
  host: listenHost.optional(),
})

/** `*`, or a browser origin exactly as a browser sends it: `scheme://host[:port]`, no path. */
const origin = z
  .string()
  .trim()
  // Apps' own schemes count (tauri://localhost, chrome-extension://…), though URL gives them no origin.
  .refine((value) => value === '*' || /^[a-z][a-z\d+.-]*:\/\/[^/?#\s]+$/i.test(value), {
    error: 'an origin is scheme://host[:port] (no path), or *',
  })

const cors = z.strictObject({
  origins: z.array(origin).min(1, 'list the origins allowed, or leave cors out'),
})

// Framing headers belong to each request the gateway sends: undici refuses these, or (content-length)
// fails every request whose body is not that long. Answers are read as they come, so they must not be
// compressed: the gateway asks for `accept-encoding: identity` itself.
const perRequestHeaders = new Set([
  'accept-encoding',
  'content-length',
  'expect',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
])

/** An RFC 9110 token: what a header name may be. */
export const httpToken = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

// Names are tokens; values must not smuggle a header break.
const headerName = z
  .string()
  .regex(httpToken, 'invalid header name')
  .refine((name) => !perRequestHeaders.has(name.toLowerCase()), {
    error: (issue) => `${String(issue.input)} is set by the gateway for each request, not by config`,
  })
const headerValue = headerSafe(z.string())

const hasCredentials = (url: URL) => url.username !== '' || url.password !== ''

const provider = z.strictObject({
  name: nonEmpty,
  // Trimmed: a key read from a file often ends in a line break, which no header may carry.
  api_key: headerSafe(z.string().trim()).optional(),
  base_url: httpUrl.refine((value) => !URL.canParse(value) || !hasCredentials(new URL(value)), {
    error: 'credentials in base_url are not sent; give the key as api_key, or in headers',
  }),
  headers: z.record(headerName, headerValue).optional(),
  limits: providerLimits.optional(),
  /** How /v1/responses reaches this provider: translated to chat completions, or passed through. */
  responses: z.enum(['translate', 'native']).default('translate'),
})

const step = z.strictObject({
  provider: nonEmpty,
  model: nonEmpty,
  timeout: timeout().optional(),
  timeouts: stepTimeouts.optional(),
  limits: stepLimits.optional(),
  conflict_resolution: z.enum(['tools', 'format']).optional(),
})

const route = z.strictObject({
  name: nonEmpty,
  steps: z.array(step).min(1, 'a route needs at least one step'),
  timeouts: routeTimeouts.optional(),
})

export const configSchema = z.strictObject({
  api_key: gatewayKey,
  port: port.optional(),
  host: listenHost.optional(),
  default_timeout: timeout('60s'),
  timeouts: routeTimeouts.prefault({}),
  // Every key has a default, so an absent section is an empty one.
  failover: failover.prefault({} as never),
  metrics: metrics.prefault({} as never),
  cors: cors.optional(),
  max_body_size: size('32mb'),
  // A whole answer is held about four times over while it is judged and sent on (bytes, text, parsed):
  // 32 MiB keeps a 256 MiB container clear of the heap limit.
  max_answer_size: size('32mb'),
  shutdown_timeout: duration('30s'),
  log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  providers: z.array(provider).min(1, 'at least one provider is required'),
  routes: z.array(route).min(1, 'at least one route is required'),
})

export type ConfigFile = z.output<typeof configSchema>
export type Limits = z.output<typeof stepLimits>
export type FailoverConfig = z.output<typeof failover>

/** `routes[0].steps[1].provider` from zod's path array. */
function formatIssuePath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const part of path) {
    out += typeof part === 'number' ? `[${part}]` : `${out === '' ? '' : '.'}${String(part)}`
  }
  return out
}

export function formatIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    const where = formatIssuePath(issue.path)
    const keys = issue.keys.map((k) => `"${k}"`).join(', ')
    return `${where === '' ? '(top level)' : where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${keys}`
  }
  const where = formatIssuePath(issue.path)
  // A record key's own complaint ("invalid header name") says more than zod's "Invalid key in record".
  const message = issue.code === 'invalid_key' ? (issue.issues[0]?.message ?? issue.message) : issue.message
  return `${where === '' ? '(top level)' : where}: ${message}`
}
