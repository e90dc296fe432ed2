// After a failed attempt: retry the same step, move to the next, or stop. A pure decision.

import type { Failure } from './attempt.ts'
import type { FailoverConfig } from './config-schema.ts'
import { classifyFailure } from './health.ts'

/**
 * `stop`: the client left; `give_up`: the request's budget or its `max_attempts` is spent, so no
 * further step may start.
 */
export type Decision =
  | { readonly action: 'retry'; readonly delayMs: number }
  | { readonly action: 'next' | 'stop' | 'give_up' }

export interface DecisionInput {
  readonly failure: Failure
  /** Retries already spent on this step in this request. */
  readonly retries: number
  /** Whether a later step of the route can be tried right now. */
  readonly laterStepAvailable: boolean
  readonly budgetLeftMs: number
  /** Upstream calls this request may still make (`max_attempts` less those made). */
  readonly attemptsLeft: number
  /** How long until this step may be tried again (0: now), as the failure left its target. */
  readonly stepReadyInMs: number
  readonly policy: FailoverConfig
  /** 0 ≤ random() < 1, for jitter. */
  readonly random: () => number
}

/**
 * After a failed attempt: move on at once when another step can take the request. Retry the same step
 * only when it is the last one available, the failure is transient, and the wait is short: never
 * sooner than the provider's hint, never after a timeout (a silent upstream costs one timeout, not one
 * per retry), never for a 429 without a hint (that is what the cooldown is for), and never past the
 * retry limit, `max_attempts` or the request's budget.
 */
export function decide(input: DecisionInput): Decision {
  const { failure, policy } = input
  const kind = classifyFailure(failure)
  if (kind === 'aborted') return { action: 'stop' }
  const budgetSpent = (failure.kind === 'timeout' && failure.phase === 'total') || input.budgetLeftMs <= 0
  // Out of attempts, a retry could only be waited for, never made.
  if (budgetSpent || input.attemptsLeft <= 0) return { action: 'give_up' }
  if (input.laterStepAvailable || input.retries >= policy.max_retries) return { action: 'next' }
  if (kind !== 'rate_limited' && kind !== 'server') return { action: 'next' }
  if (failure.kind === 'timeout') return { action: 'next' }
  // A redirect is a moved base_url: asking again will not move it back.
  if (failure.kind === 'http_error' && failure.status < 400) return { action: 'next' }
  const hint = failure.kind === 'http_error' ? failure.retryAfterMs : undefined
  if (kind === 'rate_limited' && hint === undefined) return { action: 'next' }
  // "Full jitter" exponential backoff: spreads retries from many clients over the whole interval.
  const backoff = input.random() * policy.retry_backoff * 2 ** input.retries
  const delayMs = Math.ceil(Math.max(hint ?? 0, backoff))
  if (delayMs > policy.max_retry_delay || delayMs >= input.budgetLeftMs) return { action: 'next' }
  // A failure that opened the circuit (or a quota now used up) leaves nothing to retry after the wait.
  if (delayMs < input.stepReadyInMs) return { action: 'next' }
  return { action: 'retry', delayMs }
}
