// Proactive limits: requests and tokens per minute and per day, counted per provider and per target,
// so a step that would exceed its declared quota is skipped before the provider has to answer 429.

import type { Limits } from './config-schema.ts'
import type { Step } from './router.ts'

/** A sliding window of `buckets` slots with a running total. */
class WindowCounter {
  readonly #slots: Float64Array
  readonly #slotMs: number
  #head = 0
  #headStart = 0
  #total = 0

  constructor(windowMs: number, buckets: number) {
    this.#slots = new Float64Array(buckets)
    this.#slotMs = windowMs / buckets
  }

  #advance(now: number): void {
    const start = Math.floor(now / this.#slotMs) * this.#slotMs
    const steps = Math.round((start - this.#headStart) / this.#slotMs)
    if (steps <= 0) return
    if (steps >= this.#slots.length) {
      this.#slots.fill(0)
      this.#total = 0
    } else {
      for (let i = 0; i < steps; i++) {
        this.#head = (this.#head + 1) % this.#slots.length
        this.#total -= this.#slots[this.#head] as number
        this.#slots[this.#head] = 0
      }
    }
    this.#headStart = start
  }

  /** Adds `amount` to the slot holding `at` (default: now); nothing when that slot has left the window. */
  add(amount: number, now: number, at = now): void {
    this.#advance(now)
    const age = Math.round((this.#headStart - Math.floor(at / this.#slotMs) * this.#slotMs) / this.#slotMs)
    if (age >= this.#slots.length) return
    const index = (this.#head - Math.max(0, age) + this.#slots.length) % this.#slots.length
    this.#slots[index] = (this.#slots[index] as number) + amount
    this.#total += amount
  }

  total(now: number): number {
    this.#advance(now)
    return this.#total
  }

  /** When enough of the oldest usage has left the window for `total + extra` to fit under `limit`. */
  freeAt(now: number, limit: number, extra: number): number {
    this.#advance(now)
    let total = this.#total
    const n = this.#slots.length
    for (let age = n - 1; age >= 0; age--) {
      const index = (this.#head - age + n) % n
      total -= this.#slots[index] as number
      if (total + extra <= limit) return this.#headStart - age * this.#slotMs + n * this.#slotMs
    }
    return now + n * this.#slotMs
  }
}

interface Counters {
  readonly limits: Limits
  readonly requestsMinute: WindowCounter
  readonly requestsDay: WindowCounter
  readonly tokensMinute: WindowCounter
  readonly tokensDay: WindowCounter
}

const newCounters = (limits: Limits): Counters => ({
  limits,
  requestsMinute: new WindowCounter(60_000, 60),
  requestsDay: new WindowCounter(86_400_000, 1_440),
  tokensMinute: new WindowCounter(60_000, 60),
  tokensDay: new WindowCounter(86_400_000, 1_440),
})

const hasLimits = (limits: Limits | undefined): limits is Limits =>
  limits !== undefined && Object.values(limits).some((v) => v !== undefined)

export class QuotaBook {
  // Provider limits are shared by every step on that provider; step limits by every step on that
  // provider + model, whichever route it is in. Each step's counters are found once, at startup.
  readonly #byStep = new Map<Step, readonly Counters[]>()
  readonly #tokenCounted = new Set<Step>()

  constructor(steps: readonly Step[]) {
    const byProvider = new Map<string, Counters>()
    const byTarget = new Map<string, Counters>()
    for (const step of steps) {
      if (hasLimits(step.providerLimits) && !byProvider.has(step.provider)) {
        byProvider.set(step.provider, newCounters(step.providerLimits))
      }
      if (hasLimits(step.limits) && !byTarget.has(targetKey(step))) {
        byTarget.set(targetKey(step), newCounters(step.limits))
      }
    }
    for (const step of steps) {
      const counters = [byProvider.get(step.provider), byTarget.get(targetKey(step))].filter(
        (c): c is Counters => c !== undefined,
      )
      if (counters.length > 0) this.#byStep.set(step, counters)
      if (counters.some((c) => c.limits.tpm !== undefined || c.limits.tpd !== undefined))
        this.#tokenCounted.add(step)
    }
  }

  /** True when any limit applies to this step's tokens, so the caller knows an estimate is worth making. */
  countsTokens(step: Step): boolean {
    return this.#tokenCounted.has(step)
  }

  /** When a limit would be exceeded by one more request of `tokens`, the time it frees up; else undefined. */
  blockedUntil(step: Step, now: number, tokens: number): number | undefined {
    const counters = this.#byStep.get(step)
    if (counters === undefined) return undefined
    let until: number | undefined
    for (const c of counters) {
      until = laterOf(until, freeAtIfOver(c.requestsMinute, c.limits.rpm, 1, now))
      until = laterOf(until, freeAtIfOver(c.requestsDay, c.limits.rpd, 1, now))
      until = laterOf(until, freeAtIfOver(c.tokensMinute, c.limits.tpm, tokens, now))
      until = laterOf(until, freeAtIfOver(c.tokensDay, c.limits.tpd, tokens, now))
    }
    return until
  }

  countRequest(step: Step, now: number): void {
    for (const c of this.#byStep.get(step) ?? none) {
      c.requestsMinute.add(1, now)
      c.requestsDay.add(1, now)
    }
  }

  /**
   * `at`: when the tokens were spent, if earlier (a correction to an estimate counted when the request
   * was sent belongs where the estimate went, or it would outlive it in the window).
   */
  countTokens(step: Step, tokens: number, now: number, at = now): void {
    for (const c of this.#byStep.get(step) ?? none) {
      c.tokensMinute.add(tokens, now, at)
      c.tokensDay.add(tokens, now, at)
    }
  }
}

const none: readonly Counters[] = []

/** When `counter` would go over `limit` with `extra` more, the time it frees up; else undefined. */
function freeAtIfOver(counter: WindowCounter, limit: number | undefined, extra: number, now: number) {
  if (limit === undefined || counter.total(now) + extra <= limit) return undefined
  // A request larger than the whole limit would wait forever; let the provider judge it.
  if (extra > limit) return undefined
  return counter.freeAt(now, limit, extra)
}

const laterOf = (a: number | undefined, b: number | undefined): number | undefined =>
  b === undefined ? a : Math.max(a ?? 0, b)

const targetKey = (step: Step): string => `${step.provider}\u0000${step.model}`

/**
 * A rough prompt size (4 characters a token) from the text a request carries, whichever endpoint it is
 * for: chat `messages`, Responses `input` and `instructions`, completions `prompt`, embeddings `input`.
 * Images and other non-text parts are not counted.
 */
export function estimatePromptTokens(body: Readonly<Record<string, unknown>>): number {
  let chars = 0
  // A stack, not recursion: the body is the client's and may nest deeper than the call stack goes.
  const pending: unknown[] = [body.messages, body.input, body.instructions, body.prompt]
  while (pending.length > 0) {
    const value = pending.pop()
    if (typeof value === 'string') chars += value.length
    else if (Array.isArray(value)) for (const part of value) pending.push(part)
    else if (value !== null && typeof value === 'object') {
      const { text, content } = value as { text?: unknown; content?: unknown }
      pending.push(text ?? content)
    }
  }
  return Math.ceil(chars / 4)
}
