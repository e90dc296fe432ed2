// What walking a route leaves behind: the steps tried and the steps passed over, for the access log,
// the request's span and the error when nothing answered.

import type { Failure } from './attempt.ts'
import type { Availability } from './health.ts'
import { describeFailure } from './route-error.ts'
import type { Step } from './router.ts'

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

/** One step passed over without a network call. */
export interface SkipRecord {
  readonly step: number
  readonly provider: string
  readonly model: string
  readonly reason: Exclude<Availability, { ok: true }>['reason']
  readonly forMs: number
  /** Whether the provider (or a declared quota) set the time, rather than our own guess. */
  readonly firm: boolean
}

export interface Trail {
  readonly attempts: AttemptRecord[]
  readonly skipped: SkipRecord[]
}

/** A failed attempt's record, its reason worded as the route's error words it. */
export function recordOf(step: Step, failure: Failure, durationMs: number): AttemptRecord {
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
