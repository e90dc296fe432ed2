// Walking a route: which step to try next, skipping, waiting or retrying as decide.ts says.

import { setTimeout as sleep } from 'node:timers/promises'
import { type ClientLink, type Failure, isFailure } from './attempt.ts'
import type { FailoverConfig } from './config-schema.ts'
import { decide } from './decide.ts'
import type { GatewayError } from './errors.ts'
import type { Availability, HealthBoard, HealthChange } from './health.ts'
import type { Redactor } from './redact.ts'
import { routeFailed } from './route-error.ts'
import type { Route, Step } from './router.ts'
import { type AttemptRecord, recordOf, type SkipRecord, type Trail } from './trail.ts'

/** A step to take after a wait: available now (`probe` set), or when it recovers. */
type Choice = Pick<SkipRecord, 'step' | 'forMs' | 'firm'> & {
  readonly reason?: SkipRecord['reason']
  readonly probe?: boolean
}

export type RouteOutcome<A> =
  | {
      readonly kind: 'answered'
      readonly answer: A
      readonly step: Step
      readonly trail: Trail
      /** When the answering attempt began (`Date.now()`), where its quota share was counted. */
      readonly began: number
    }
  | { readonly kind: 'failed'; readonly error: GatewayError; readonly trail: Trail }
  | { readonly kind: 'aborted'; readonly trail: Trail }

export interface RouteRunOptions<A extends { kind: string }> {
  readonly route: Route
  readonly health: HealthBoard
  readonly policy: FailoverConfig
  readonly redact: Redactor
  /** The client's connection, to stop waiting when it goes away. */
  readonly client: ClientLink
  /** The request's deadline on the `performance.now()` clock. */
  readonly budgetEnd: number
  readonly estimateTokens: (step: Step) => number
  readonly tryStep: (step: Step) => Promise<A | Failure>
  readonly onAttemptFailed: (record: AttemptRecord) => void
  readonly onHealthChange: (step: Step, change: NonNullable<HealthChange>) => void
}

export function runRoute<A extends { kind: string }>(options: RouteRunOptions<A>): Promise<RouteOutcome<A>> {
  return new RouteRun(options).run()
}

class RouteRun<A extends { kind: string }> {
  readonly #o: RouteRunOptions<A>
  readonly #trail: Trail = { attempts: [], skipped: [] }
  readonly #failures: Failure[] = []

  constructor(options: RouteRunOptions<A>) {
    this.#o = options
  }

  async run(): Promise<RouteOutcome<A>> {
    const { steps } = this.#o.route
    // Retries of the current step; the walk only moves forward, so one count is enough.
    let retries = 0
    for (let i = 0; i < steps.length && this.#canAttempt(); ) {
      const step = steps[i] as Step
      const availability = this.#availability(step)
      if (!availability.ok) {
        this.#skip(step, availability)
        i++
        retries = 0
        continue
      }
      const result = await this.#attempt(step, availability.probe)
      if (result.kind !== 'failed') return result
      const decision = decide({
        failure: result.failure,
        retries,
        laterStepAvailable: this.#anyAvailableAfter(i),
        budgetLeftMs: this.#budgetLeft(),
        attemptsLeft: this.#o.policy.max_attempts - this.#trail.attempts.length,
        stepReadyInMs: this.#readyInMs(step),
        policy: this.#o.policy,
        random: Math.random,
      })
      if (decision.action === 'stop') return this.#aborted()
      if (decision.action === 'give_up') break
      if (decision.action === 'retry') {
        if (!(await this.#wait(decision.delayMs))) return this.#aborted()
        retries++
        continue
      }
      i++
      retries = 0
    }
    if (this.#trail.attempts.length === 0 && this.#trail.skipped.length > 0) return this.#recover()
    return this.#failed()
  }

  /**
   * Every step was unavailable, so nothing was tried. Rather than fail, take the step that recovers
   * soonest: try it now when its unavailability is our own guess (an open circuit, a cooldown without
   * a hint), or wait for it when the provider set the time and the wait fits `max_wait` and the budget.
   * Others may have waited for the same moment (a quota's free slot, a probe's verdict), so after a wait
   * the steps are looked at again, and the wait repeats while it still fits. A target that failed during
   * the wait (a probe that failed, a circuit that opened) is not tried: every waiter would hit it at once.
   */
  async #recover(): Promise<RouteOutcome<A>> {
    const waitEnd = performance.now() + this.#o.policy.max_wait
    let choice: Choice = this.#trail.skipped.reduce((a, b) => (b.forMs < a.forMs ? b : a))
    let waited = false
    while (choice.firm) {
      const step = this.#stepNumbered(choice.step)
      const room = Math.min(waitEnd - performance.now(), this.#budgetLeft())
      // A probe's verdict may come long before its time is up: worth waiting for while there is room.
      const verdict = this.#o.health.probeSettled(step)
      if (room <= 0 || (choice.forMs > room && verdict === undefined)) return this.#failedAfter(waited)
      if (!(await this.#wait(Math.min(choice.forMs, room), verdict))) return this.#aborted()
      waited = true
      choice = this.#choose()
      if (!choice.firm && choice.probe === undefined) return this.#failedAfter(waited)
    }
    // Tried anyway, not as the half-open probe: a failure of this try must not double the open time.
    const result = await this.#attempt(this.#stepNumbered(choice.step), choice.probe ?? false)
    return result.kind === 'failed' ? this.#failedAfter(waited) : result
  }

  /**
   * The failure after a wait, or after a step was tried anyway, tells the client how things stand now
   * (a probe that failed re-opened its circuit, a cooldown ran on or was doubled by the try), not how
   * they stood before: its Retry-After and reasons come from a fresh look at the steps.
   */
  #failedAfter(waited: boolean): RouteOutcome<A> {
    if (!waited && this.#trail.attempts.length === 0) return this.#failed()
    const before = this.#trail.skipped.splice(0)
    // A step tried after the wait speaks for itself: its failure says how long it wants.
    const tried = new Set(this.#trail.attempts.map((attempt) => attempt.step))
    for (const step of this.#o.route.steps) {
      const availability = tried.has(step.index) ? undefined : this.#availability(step)
      if (availability !== undefined && !availability.ok) this.#skip(step, availability)
    }
    // Nothing to say any more (a step freed a moment too late): the earlier look is the one that says why.
    if (this.#trail.skipped.length === 0 && this.#failures.length === 0) this.#trail.skipped.push(...before)
    return this.#failed()
  }

  /** A step by its number in the configured route (a route may be given only some of its steps). */
  #stepNumbered(index: number): Step {
    return this.#o.route.steps.find((step) => step.index === index) as Step
  }

  /** The first available step, else the one that recovers soonest. */
  #choose(): Choice {
    let soonest: Choice | undefined
    for (const step of this.#o.route.steps) {
      const availability = this.#availability(step)
      if (availability.ok) return { step: step.index, forMs: 0, firm: false, probe: availability.probe }
      const forMs = Math.max(0, availability.until - Date.now())
      if (soonest === undefined || forMs < soonest.forMs)
        soonest = { step: step.index, reason: availability.reason, forMs, firm: availability.firm }
    }
    return soonest as Choice
  }

  async #attempt(
    step: Step,
    probe: boolean,
  ): Promise<Exclude<RouteOutcome<A>, { kind: 'failed' }> | { kind: 'failed'; failure: Failure }> {
    const { health } = this.#o
    const tokens = this.#o.estimateTokens(step)
    const began = Date.now()
    health.begin(step, began, probe, tokens)
    const started = performance.now()
    const result = await this.#o.tryStep(step)
    const durationMs = Math.round(performance.now() - started)
    if (!isFailure(result)) {
      this.#trail.attempts.push({
        step: step.index,
        provider: step.provider,
        model: step.model,
        outcome: 'ok',
        durationMs,
      })
      this.#notify(step, health.recordSuccess(step, durationMs, Date.now()))
      return { kind: 'answered', answer: result, step, trail: this.#trail, began }
    }
    const judged = this.#judged(step, result, started)
    const record = recordOf(step, result, durationMs)
    this.#trail.attempts.push(record)
    this.#notify(step, health.recordFailure(step, judged, durationMs, Date.now(), record.reason ?? '', probe))
    // No answer, no tokens spent: the prompt's share of the quota is given back. An answer larger than
    // max_answer_size was answered all the same, and the provider counted its tokens.
    if (!(result.kind === 'invalid_response' && result.tooLarge === true)) {
      health.refund(step, tokens, Date.now(), began)
    }
    if (result.kind === 'aborted') return this.#aborted()
    // A step asked again answers for itself with its last word: a 429 waited out, then a refusal of the
    // request, is a refusal (the walk only moves forward, so the step asked before is a retry's).
    if (this.#trail.attempts.at(-2)?.step === step.index) this.#failures.pop()
    // A 429 tells the client to wait as long as its target now cools down: the provider's hint, or our
    // guess when it gave none (asked sooner, the gateway could only try it anyway).
    this.#failures.push(
      result.kind === 'http_error' && result.status === 429
        ? { ...result, retryAfterMs: this.#readyInMs(step) }
        : result,
    )
    this.#o.onAttemptFailed(record)
    return { kind: 'failed', failure: result }
  }

  /**
   * What a failure says about its target. A step that earlier steps, or a wait for its recovery, left
   * clearly less than it would have had alone (its own limit, or the whole budget if shorter), and that
   * the request's budget then cut, was not given its chance: no more is known against it than if the
   * client had left. A step that got (nearly) its share is held to it.
   */
  #judged(step: Step, failure: Failure, started: number): Failure {
    if (failure.kind !== 'timeout' || failure.phase !== 'total') return failure
    const share = Math.min(step.timeouts.attempt, this.#o.route.totalMs)
    return this.#o.budgetEnd - started < share * 0.9 ? { kind: 'aborted' } : failure
  }

  #anyAvailableAfter(index: number): boolean {
    const { steps } = this.#o.route
    for (let i = index + 1; i < steps.length; i++) if (this.#availability(steps[i] as Step).ok) return true
    return false
  }

  /** How long until `step` may be tried again; 0 when it may be now. */
  #readyInMs(step: Step): number {
    const availability = this.#availability(step)
    return availability.ok ? 0 : Math.max(0, availability.until - Date.now())
  }

  #availability(step: Step): Availability {
    return this.#o.health.availability(step, Date.now(), this.#o.estimateTokens(step))
  }

  #skip(step: Step, availability: Exclude<Availability, { ok: true }>): void {
    const forMs = Math.max(0, availability.until - Date.now())
    const { reason, firm } = availability
    this.#trail.skipped.push({
      step: step.index,
      provider: step.provider,
      model: step.model,
      reason,
      forMs,
      firm,
    })
  }

  #canAttempt(): boolean {
    return this.#trail.attempts.length < this.#o.policy.max_attempts && this.#budgetLeft() > 0
  }

  #budgetLeft(): number {
    return this.#o.budgetEnd - performance.now()
  }

  /** Sleeps for `ms`, or until `sooner` settles, unless the client leaves first; false when it did. */
  async #wait(ms: number, sooner?: Promise<void>): Promise<boolean> {
    const { signal } = this.#o.client
    const over = new AbortController()
    const timer = sleep(ms, undefined, { signal: AbortSignal.any([signal, over.signal]) })
    try {
      await (sooner === undefined ? timer : Promise.race([timer, sooner]))
    } catch {
      // the client left
    } finally {
      over.abort()
      timer.catch(() => {})
    }
    return !signal.aborted
  }

  #notify(step: Step, change: HealthChange): void {
    if (change !== undefined) this.#o.onHealthChange(step, change)
  }

  #aborted(): { kind: 'aborted'; trail: Trail } {
    return { kind: 'aborted', trail: this.#trail }
  }

  #failed(): RouteOutcome<A> {
    return {
      kind: 'failed',
      error: routeFailed(this.#o.route, this.#trail, this.#failures, this.#o.redact),
      trail: this.#trail,
    }
  }
}
