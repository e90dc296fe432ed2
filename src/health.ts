// Provider health memory: per target (provider + model), shared by all requests in the process.
// Cooldowns after rate limits and bad keys, a circuit breaker for outages, and recent statistics.

import type { Failure } from './attempt.ts'
import type { FailoverConfig } from './config-schema.ts'
import {
  closeCircuit,
  endProbe,
  heldBack,
  newTarget,
  pushRecent,
  snapshotOf,
  type Target,
  type TargetSnapshot,
} from './health-target.ts'
import type { Logger } from './logger.ts'
import type { QuotaBook } from './quota.ts'
import type { Step } from './router.ts'

export type FailureClass = 'rate_limited' | 'auth' | 'not_found' | 'request' | 'server' | 'aborted'

/**
 * What a failure says about the target (not about this request). A 400-class answer means the
 * provider is up and disliked this request (context too long, bad parameter): no health penalty.
 */
export function classifyFailure(failure: Failure): FailureClass {
  switch (failure.kind) {
    case 'http_error': {
      const { status } = failure
      if (status === 429) return 'rate_limited'
      if (status === 401 || status === 403) return 'auth'
      if (status === 404) return 'not_found'
      // Only a 4xx judges the request; a redirect (a base_url the provider moved) is the target's fault.
      if (status >= 400 && status < 500 && status !== 408) return 'request'
      return 'server'
    }
    case 'invalid_response':
      // Too large for max_answer_size, it is a whole answer that this request would get again.
      return failure.tooLarge === true ? 'request' : 'server'
    case 'aborted':
      return 'aborted'
    default:
      return 'server'
  }
}

export type Unavailable = 'rate_limited' | 'auth' | 'not_found' | 'circuit_open' | 'probe_in_flight' | 'quota'

export type Availability =
  | { readonly ok: true; readonly probe: boolean }
  | {
      readonly ok: false
      readonly reason: Unavailable
      readonly until: number
      /** The provider (or a declared quota) said "not before `until`": trying earlier is hammering. */
      readonly firm: boolean
    }

/** What recording an outcome changed, so the caller can log state transitions (loudly, for bad keys). */
export type HealthChange =
  | {
      readonly kind: 'cooldown'
      readonly reason: 'rate_limited' | 'auth' | 'not_found'
      readonly forMs: number
      readonly firm: boolean
    }
  | { readonly kind: 'circuit_opened'; readonly forMs: number; readonly failures: number }
  | { readonly kind: 'circuit_closed' }
  | undefined

export class HealthBoard {
  readonly #targets = new Map<string, Target>()
  readonly #policy: FailoverConfig
  readonly #quotas: QuotaBook

  constructor(policy: FailoverConfig, quotas: QuotaBook, steps: readonly Step[]) {
    this.#policy = policy
    this.#quotas = quotas
    // Known up front, so the status endpoint lists targets no request has touched yet.
    for (const step of steps) this.#target(step)
  }

  // Steps are resolved once at startup, so the step object itself is the fastest key; steps on the same
  // provider and model (in different routes) share one target.
  readonly #byStep = new Map<Step, Target>()

  #target(step: Step): Target {
    const known = this.#byStep.get(step)
    if (known !== undefined) return known
    const key = `${step.provider}\u0000${step.model}`
    let target = this.#targets.get(key)
    if (target === undefined) {
      target = newTarget(step)
      this.#targets.set(key, target)
    }
    this.#byStep.set(step, target)
    return target
  }

  /** Whether a step may be tried now; a half-open circuit admits exactly one probe at a time. */
  availability(step: Step, now: number, estimatedTokens = 0): Availability {
    const t = this.#target(step)
    const held = heldBack(t, now)
    const quotaFreeAt = this.#quotas.blockedUntil(step, now, estimatedTokens)
    if (quotaFreeAt === undefined) return held ?? { ok: true, probe: t.circuitOpen }
    // A declared quota is firm: a target over it is not tried even where a cooldown of our own guess
    // or an open circuit would be tried anyway, and the later of the two says when it is back.
    if (held?.firm === true && quotaFreeAt <= held.until) return held
    // Back sooner, the quota would free a step that is not tried after a wait (its circuit still open).
    return { ok: false, reason: 'quota', until: Math.max(quotaFreeAt, held?.until ?? 0), firm: true }
  }

  /**
   * Marks an attempt as started: claims the half-open probe, and counts the request and its estimated
   * prompt tokens against quotas at once, so concurrent requests see each other's share.
   */
  begin(step: Step, now: number, probe: boolean, tokens = 0): void {
    if (probe) {
      const t = this.#target(step)
      t.probeUntil = now + step.timeouts.attempt
      t.probeDone ??= Promise.withResolvers()
    }
    this.#quotas.countRequest(step, now)
    if (tokens > 0) this.#quotas.countTokens(step, tokens, now)
  }

  /** Gives back the prompt tokens `begin` counted at `began`, for an attempt that got no answer. */
  refund(step: Step, tokens: number, now: number, began: number): void {
    if (tokens > 0) this.#quotas.countTokens(step, -tokens, now, began)
  }

  /** Settles when the probe now in flight on this step's target ends; undefined when there is none. */
  probeSettled(step: Step): Promise<void> | undefined {
    return this.#target(step).probeDone?.promise
  }

  recordSuccess(step: Step, latencyMs: number, now: number): HealthChange {
    const t = this.#target(step)
    pushRecent(t, { at: now, ok: true, latencyMs })
    t.rateLimitStreak = 0
    t.failureStreak = 0
    endProbe(t)
    return closeCircuit(t)
  }

  /** `probe`: the attempt was the half-open probe (`begin` was told so). */
  recordFailure(
    step: Step,
    failure: Failure,
    latencyMs: number,
    now: number,
    reason: string,
    probe = false,
  ): HealthChange {
    const t = this.#target(step)
    const kind = classifyFailure(failure)
    if (probe) endProbe(t)
    if (kind === 'aborted') return undefined
    pushRecent(t, { at: now, ok: false, latencyMs })
    t.lastError = reason
    const p = this.#policy
    switch (kind) {
      case 'request':
        // The provider answered: it is up, whatever it thought of this request.
        t.failureStreak = 0
        return closeCircuit(t)
      case 'rate_limited':
        return this.#rateLimited(t, failure, latencyMs, now)
      case 'auth':
        return this.#cool(t, 'auth', p.auth_cooldown, false, now)
      case 'not_found':
        return this.#cool(t, 'not_found', p.not_found_cooldown, false, now)
      case 'server':
        return this.#serverFailed(t, failure, probe, now)
    }
  }

  /** A 429: a cooldown, the provider's hint when it gave one, else a guess that doubles per streak. */
  #rateLimited(t: Target, failure: Failure, latencyMs: number, now: number): HealthChange {
    const p = this.#policy
    const hint = failure.kind === 'http_error' ? failure.retryAfterMs : undefined
    // Requests already in flight when the cooldown began meet the same limit: one burst of 429s is
    // one, not a streak that doubles the cooldown once per request.
    if (t.cooldownReason === 'rate_limited' && now < t.cooldownUntil && now - latencyMs < t.cooledAt) {
      // Unless it says how long: a provider's word lengthens our guess, and makes it firm.
      if (hint === undefined || now + hint <= t.cooldownUntil) return undefined
      t.cooldownUntil = now + hint
      t.cooldownFirm = true
      return { kind: 'cooldown', reason: 'rate_limited', forMs: hint, firm: true }
    }
    t.rateLimitStreak++
    const guess = Math.min(p.rate_limit_cooldown * 2 ** (t.rateLimitStreak - 1), p.rate_limit_cooldown_max)
    return this.#cool(t, 'rate_limited', hint ?? guess, hint !== undefined, now)
  }

  /** A failure that says the target is down or broken (a 5xx, no answer, a timeout): towards a circuit. */
  #serverFailed(t: Target, failure: Failure, probe: boolean, now: number): HealthChange {
    const p = this.#policy
    // A silent upstream costs a whole timeout each time it is tried: one is enough to open the circuit.
    t.failureStreak =
      failure.kind === 'timeout' ? Math.max(t.failureStreak + 1, p.circuit_failures) : t.failureStreak + 1
    // Requests already in flight when the circuit opened fail too; only a failed probe opens it
    // again, for twice as long.
    if (t.circuitOpen && !probe) return undefined
    if (t.failureStreak < p.circuit_failures && !t.circuitOpen) return undefined
    const forMs = Math.min(p.circuit_open * 2 ** t.opens, p.circuit_open_max)
    t.circuitOpen = true
    t.opens++
    t.openUntil = now + forMs
    return { kind: 'circuit_opened', forMs, failures: t.failureStreak }
  }

  #cool(
    t: Target,
    reason: 'rate_limited' | 'auth' | 'not_found',
    forMs: number,
    firm: boolean,
    now: number,
  ): HealthChange {
    t.cooldownUntil = now + forMs
    t.cooledAt = now
    t.cooldownReason = reason
    t.cooldownFirm = firm
    // An answer, even a refusal, proves the target is reachable.
    closeCircuit(t)
    t.failureStreak = 0
    return { kind: 'cooldown', reason, forMs, firm }
  }

  snapshot(now: number): TargetSnapshot[] {
    return [...this.#targets.values()].map((t) => snapshotOf(t, now))
  }
}

/** State changes are rare and operators want them: a refused key especially, which never heals alone. */
export function logHealthChange(logger: Logger, step: Step, change: NonNullable<HealthChange>): void {
  const target = { provider: step.provider, model: step.model }
  if (change.kind === 'circuit_closed') logger.info(target, 'circuit closed')
  else if (change.kind === 'circuit_opened') logger.warn({ ...target, ...change }, 'circuit opened')
  else if (change.reason === 'rate_limited') logger.info({ ...target, ...change }, 'cooling down')
  else
    logger.error(
      { ...target, ...change },
      change.reason === 'auth' ? 'provider refused the key' : 'provider does not know the model',
    )
}
