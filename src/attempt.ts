// The life of one upstream attempt: its abort controller, tied to the client's connection, and its
// timers. The abort reason is always a Failure, so whoever catches the resulting error learns what
// happened from the signal rather than from error types.

import type { Step } from './router.ts'

export type TimeoutPhase = 'connect' | 'headers' | 'first_token' | 'idle' | 'attempt' | 'total'

/** Why an attempt did not produce an answer. */
export type Failure =
  | {
      readonly kind: 'http_error'
      readonly status: number
      readonly reason: string
      readonly retryAfterMs?: number
    }
  | { readonly kind: 'network'; readonly code: string; readonly reason: string }
  | { readonly kind: 'timeout'; readonly phase: TimeoutPhase; readonly afterMs: number }
  | {
      readonly kind: 'invalid_response'
      readonly reason: string
      /** Over `max_answer_size`: our limit, not a fault of the provider, which answered. */
      readonly tooLarge?: true
    }
  | { readonly kind: 'aborted' }

export const isFailure = (value: { kind: string }): value is Failure =>
  value.kind === 'http_error' ||
  value.kind === 'network' ||
  value.kind === 'timeout' ||
  value.kind === 'invalid_response' ||
  value.kind === 'aborted'

const clientGone: Failure = Object.freeze({ kind: 'aborted' })

/**
 * The client's side of one request: whether it went away, and the attempt to tell when it does. One
 * attempt runs at a time, so one slot is enough; an AbortSignal is made only when something needs one
 * (a wait between steps). Cheaper per request than signals and listeners.
 */
export class ClientLink {
  #gone = false
  #onGone: (() => void) | undefined
  #controller: AbortController | undefined

  get gone(): boolean {
    return this.#gone
  }

  /** The client disconnected. */
  leave(): void {
    if (this.#gone) return
    this.#gone = true
    this.#controller?.abort()
    this.#onGone?.()
  }

  watch(onGone: (() => void) | undefined): void {
    this.#onGone = onGone
    if (this.#gone) onGone?.()
  }

  get signal(): AbortSignal {
    this.#controller ??= new AbortController()
    if (this.#gone) this.#controller.abort()
    return this.#controller.signal
  }
}

/**
 * Two timers bound an attempt. The deadline is absolute: the attempt limit (for a stream, the time to
 * first token) capped by what is left of the request's budget; once a stream is committed only the
 * budget remains. The phase timer watches one wait at a time (response headers, then silence between
 * stream chunks) and is refreshed on progress.
 */
export class Attempt {
  #reason: Failure | undefined
  #controller: AbortController | undefined
  readonly #client: ClientLink
  readonly #budgetEnd: number
  #deadline: NodeJS.Timeout | undefined
  #phaseTimer: NodeJS.Timeout | undefined
  // What the phase timer watches, so a paused watch can be restarted.
  #phaseMs = 0
  #phase: TimeoutPhase | undefined
  #onAbort: (() => void) | undefined
  readonly startedAt = performance.now()

  /** `budgetEnd`: the request's deadline on the `performance.now()` clock. */
  constructor(client: ClientLink, budgetEnd: number) {
    this.#budgetEnd = budgetEnd
    this.#client = client
    client.watch(() => this.#abort(clientGone))
  }

  /** For consumers that need a signal (a streaming request, a wait for the client to drain). */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController()
    if (this.#reason !== undefined && !this.#controller.signal.aborted) this.#controller.abort(this.#reason)
    return this.#controller.signal
  }

  /**
   * Calls `cancel` when the attempt is aborted (at once if it already was). A direct hook for the
   * request in flight: cheaper per request than another listener on a signal.
   */
  onAbort(cancel: () => void): void {
    if (this.#reason !== undefined) cancel()
    else this.#onAbort = cancel
  }

  #abort(reason: Failure): void {
    if (this.#reason !== undefined) return
    this.#reason = reason
    this.#controller?.abort(reason)
    this.#onAbort?.()
  }

  /** Starts the clock for a step: the deadline, and the wait for response headers when that is shorter. */
  start(step: Step, stream: boolean): void {
    const limit = stream ? Math.min(step.timeouts.attempt, step.timeouts.firstToken) : step.timeouts.attempt
    const phase = stream && step.timeouts.firstToken < step.timeouts.attempt ? 'first_token' : 'attempt'
    const deadline = this.#setDeadline(limit, phase)
    if (step.timeouts.headers < deadline) this.watch(step.timeouts.headers, 'headers')
  }

  /** After a stream is committed: no attempt limit any more, only the budget and the idle watch. */
  committed(step: Step): void {
    this.#setDeadline(Number.POSITIVE_INFINITY, 'total')
    this.watch(step.timeouts.idle, 'idle')
  }

  /** Fails the attempt as a `phase` timeout unless `touch()` is called within `ms`. */
  watch(ms: number, phase: TimeoutPhase): void {
    clearTimeout(this.#phaseTimer)
    this.#phaseMs = ms
    this.#phase = phase
    this.#phaseTimer = setTimeout(() => this.#abort({ kind: 'timeout', phase, afterMs: ms }), ms)
  }

  /** Ends the current phase watch (e.g. headers arrived). */
  unwatch(): void {
    clearTimeout(this.#phaseTimer)
    this.#phaseTimer = undefined
    this.#phase = undefined
  }

  /** Stops the phase watch's clock while the wait is on our side (a client not reading). */
  pauseWatch(): void {
    clearTimeout(this.#phaseTimer)
  }

  /** Restarts the paused phase watch with its whole time. */
  resumeWatch(): void {
    if (this.#phase !== undefined && this.#reason === undefined) this.watch(this.#phaseMs, this.#phase)
  }

  touch(): void {
    this.#phaseTimer?.refresh()
  }

  #setDeadline(limitMs: number, phase: TimeoutPhase): number {
    clearTimeout(this.#deadline)
    const left = Math.max(0, this.#budgetEnd - performance.now())
    const [ms, why] = left < limitMs ? [left, 'total' as const] : [limitMs, phase]
    if (Number.isFinite(ms)) {
      this.#deadline = setTimeout(
        () => this.#abort({ kind: 'timeout', phase: why, afterMs: Math.round(ms) }),
        ms,
      )
    }
    return ms
  }

  /** Aborts with a failure found while reading (e.g. a malformed body), releasing the connection. */
  fail(failure: Failure): Failure {
    this.#abort(failure)
    return failure
  }

  /** The Failure behind a thrown error: the abort reason when we aborted, else the network error. */
  failureOf(err: unknown): Failure {
    return this.#reason ?? classifyNetworkError(err)
  }

  end(): void {
    clearTimeout(this.#deadline)
    clearTimeout(this.#phaseTimer)
    this.#client.watch(undefined)
  }

  elapsedMs(): number {
    return performance.now() - this.startedAt
  }
}

const timeoutCodes: Record<string, TimeoutPhase> = {
  UND_ERR_CONNECT_TIMEOUT: 'connect',
  UND_ERR_HEADERS_TIMEOUT: 'headers',
  UND_ERR_BODY_TIMEOUT: 'idle',
}

function classifyNetworkError(err: unknown): Failure {
  const code = String(
    (err as { code?: unknown }).code ?? (err as { cause?: { code?: unknown } }).cause?.code ?? 'UNKNOWN',
  )
  const phase = timeoutCodes[code]
  if (phase !== undefined) return { kind: 'timeout', phase, afterMs: 0 }
  const message = err instanceof Error ? err.message : String(err)
  return { kind: 'network', code, reason: message.slice(0, 200) }
}
