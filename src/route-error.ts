// The error a client gets when no step of its route answered, and the words for each failure.

import type { Failure } from './attempt.ts'
import { GatewayError } from './errors.ts'
import { classifyFailure } from './health.ts'
import type { Redactor } from './redact.ts'
import type { Route } from './router.ts'
import type { Trail } from './trail.ts'

export function describeFailure(failure: Failure): string {
  switch (failure.kind) {
    case 'http_error':
      return failure.reason === '' ? `HTTP ${failure.status}` : `HTTP ${failure.status}: ${failure.reason}`
    case 'network':
      return `connection failed (${failure.code})`
    case 'timeout':
      return failure.afterMs > 0
        ? `timed out after ${failure.afterMs} ms waiting for ${phaseNames[failure.phase]}`
        : `timed out waiting for ${phaseNames[failure.phase]}`
    case 'invalid_response':
      return `invalid response: ${failure.reason}`
    case 'aborted':
      return 'client closed the request'
  }
}

const phaseNames = {
  connect: 'the connection',
  headers: 'response headers',
  first_token: 'the first token',
  idle: 'the next chunk',
  attempt: 'the answer',
  total: 'the answer (request budget used up)',
} as const

const skipNames = {
  rate_limited: 'cooling down after a rate limit',
  auth: 'cooling down after the provider refused the key',
  not_found: 'cooling down after the provider did not know the model',
  circuit_open: 'circuit open after failures or a timeout',
  probe_in_flight: 'recovery probe in flight',
  quota: 'declared quota used up',
} as const

/**
 * The client's error when no step answered, naming each step and why. A 429 with the soonest
 * `Retry-After` when every step was rate limited (answered 429, or skipped for a rate limit or quota)
 * but those that refused the request itself, so the client's own retry logic waits the right time for
 * a step that may still take it; 504 when the request's budget ran out; 400 when every provider
 * refused the request itself; 503 when nothing could be tried; otherwise 502.
 */
export function routeFailed(route: Route, trail: Trail, failures: Failure[], redact: Redactor): GatewayError {
  // Nothing tried, nothing skipped: the budget was spent before the walk began (a slow upload).
  if (trail.attempts.length === 0 && trail.skipped.length === 0) {
    const message = `The request's time limit (timeouts.total) ran out before route "${route.name}" could try a step.`
    return new GatewayError('gateway_timeout', redact(message))
  }
  const tried = trail.attempts.map((a) => `${a.provider}/${a.model}: ${a.reason ?? a.outcome}`)
  const passed = trail.skipped.map(
    (s) =>
      `${s.provider}/${s.model}: skipped, ${skipNames[s.reason]} (ready in ${Math.ceil(s.forMs / 1000)} s)`,
  )
  // A step retried is still one step: the retries show in the attempt count and in the list.
  const steps = new Set([...trail.attempts, ...trail.skipped].map((entry) => entry.step)).size
  const attempted = new Set(trail.attempts.map((attempt) => attempt.step)).size
  const retried = trail.attempts.length > attempted ? ` after ${trail.attempts.length} attempts` : ''
  const message = redact(
    `All ${steps} step(s) of route "${route.name}" failed${retried}. ${[...tried, ...passed].join('; ')}`,
  )

  // A refusal of this request says nothing of when to ask again: the rate-limited steps decide that.
  const limits = failures.filter((f) => classifyFailure(f) !== 'request')
  const limited =
    limits.every((f) => f.kind === 'http_error' && f.status === 429) &&
    trail.skipped.every((s) => s.reason === 'rate_limited' || s.reason === 'quota')
  if (limited && limits.length + trail.skipped.length > 0) {
    const waits = [
      ...limits.map((f) => (f.kind === 'http_error' ? (f.retryAfterMs ?? 1_000) : 1_000)),
      ...trail.skipped.map((s) => s.forMs),
    ]
    const seconds = Math.max(1, Math.ceil(Math.min(...waits) / 1000))
    return new GatewayError('rate_limit_exceeded', message, { headers: { 'retry-after': String(seconds) } })
  }
  if (failures.some((f) => f.kind === 'timeout' && f.phase === 'total')) {
    return new GatewayError('gateway_timeout', message)
  }
  // Every provider that answered refused the request itself (too long, bad parameter): the client's
  // problem to fix, so a 400 that says why rather than a 502 that blames the gateway.
  if (failures.length > 0 && failures.every((f) => classifyFailure(f) === 'request')) {
    return new GatewayError('request_rejected', message)
  }
  if (failures.length === 0) {
    const seconds = Math.max(1, Math.ceil(Math.min(...trail.skipped.map((s) => s.forMs)) / 1000))
    return new GatewayError('no_step_available', message, { headers: { 'retry-after': String(seconds) } })
  }
  return new GatewayError('upstream_failed', message)
}
