// The attempt loop over a route's steps, the pure decision of whether to move on, and the honest
// error the client gets when no step answered.

import { GatewayError } from './errors.ts'
import type { Redactor } from './redact.ts'
import type { Route, Step } from './router.ts'
import type { Failure } from './upstream.ts'

/** One step tried, as the access log and the final error report it. */
export interface AttemptRecord {
  readonly step: number
  readonly provider: string
  readonly model: string
  readonly outcome: 'ok' | Failure['kind']
  readonly status?: number
  readonly reason?: string
  readonly durationMs: number
}

export type Decision = 'next_step' | 'stop'

/**
 * Every failure moves on to the next step (a rate limit, an outage, a timeout, a bad body: another
 * provider may well answer), except the client going away, which ends the route: nobody is waiting.
 */
export function shouldFallback(failure: Failure): Decision {
  return failure.kind === 'aborted' ? 'stop' : 'next_step'
}

export type RouteOutcome<A> =
  | { readonly kind: 'answered'; readonly answer: A; readonly step: Step; readonly attempts: AttemptRecord[] }
  | { readonly kind: 'failed'; readonly error: GatewayError; readonly attempts: AttemptRecord[] }
  | { readonly kind: 'aborted'; readonly attempts: AttemptRecord[] }

export interface RouteHooks {
  onAttemptFailed(record: AttemptRecord): void
}

export async function runRoute<A extends { kind: string }>(
  route: Route,
  tryStep: (step: Step) => Promise<A | Failure>,
  isFailed: (result: A | Failure) => result is Failure,
  hooks: RouteHooks,
  redact: Redactor,
): Promise<RouteOutcome<A>> {
  const attempts: AttemptRecord[] = []
  const failures: Failure[] = []
  for (const step of route.steps) {
    const started = performance.now()
    const result = await tryStep(step)
    const durationMs = Math.round(performance.now() - started)
    if (!isFailed(result)) {
      attempts.push({
        step: step.index,
        provider: step.provider,
        model: step.model,
        outcome: 'ok',
        durationMs,
      })
      return { kind: 'answered', answer: result, step, attempts }
    }
    const record = recordFailure(step, result, durationMs)
    attempts.push(record)
    if (shouldFallback(result) === 'stop') return { kind: 'aborted', attempts }
    failures.push(result)
    hooks.onAttemptFailed(record)
  }
  return { kind: 'failed', error: routeFailed(route, attempts, failures, redact), attempts }
}

function recordFailure(step: Step, failure: Failure, durationMs: number): AttemptRecord {
  return {
    step: step.index,
    provider: step.provider,
    model: step.model,
    outcome: failure.kind,
    ...(failure.kind === 'http_error' ? { status: failure.status } : {}),
    reason: describeFailure(failure),
    durationMs,
  }
}

export function describeFailure(failure: Failure): string {
  switch (failure.kind) {
    case 'http_error':
      return failure.reason === '' ? `HTTP ${failure.status}` : `HTTP ${failure.status}: ${failure.reason}`
    case 'network':
      return `connection failed (${failure.code})`
    case 'timeout':
      return failure.afterMs > 0
        ? `timed out after ${failure.afterMs} ms waiting for ${failure.phase.replace('_', ' ')}`
        : `timed out waiting for ${failure.phase.replace('_', ' ')}`
    case 'invalid_response':
      return `invalid response: ${failure.reason}`
    case 'aborted':
      return 'client closed the request'
  }
}

/**
 * When every step was rate limited the client gets a 429 with the soonest `Retry-After` any provider
 * gave, so its own retry logic waits the right time; otherwise a 502 naming each step and why.
 */
function routeFailed(
  route: Route,
  attempts: AttemptRecord[],
  failures: Failure[],
  redact: Redactor,
): GatewayError {
  const tried = attempts.map((a) => `${a.provider}/${a.model}: ${a.reason ?? a.outcome}`).join('; ')
  const message = redact(`All ${attempts.length} step(s) of route "${route.name}" failed. ${tried}`)
  const rateLimited = failures.every((f) => f.kind === 'http_error' && f.status === 429)
  if (!rateLimited) return new GatewayError('upstream_failed', message)
  const hints = failures.map((f) => (f.kind === 'http_error' ? f.retryAfterMs : undefined))
  const soonest = Math.min(...hints.map((ms) => ms ?? 1_000))
  const seconds = Math.max(1, Math.ceil(soonest / 1000))
  return new GatewayError('rate_limit_exceeded', message, { headers: { 'retry-after': String(seconds) } })
}
