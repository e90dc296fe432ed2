// One target's health record (provider + model): its cooldown, its circuit and probe, its recent
// outcomes, and the state they add up to. The rules that change it live in health.ts.

import type { Availability, HealthChange } from './health.ts'
import type { Step } from './router.ts'

export type TargetState = 'healthy' | 'cooling_down' | 'circuit_open' | 'half_open'

export interface Target {
  readonly provider: string
  readonly model: string
  cooldownUntil: number
  cooldownReason: 'rate_limited' | 'auth' | 'not_found' | undefined
  cooldownFirm: boolean
  /** When the current cooldown began. */
  cooledAt: number
  rateLimitStreak: number
  failureStreak: number
  circuitOpen: boolean
  openUntil: number
  opens: number
  probeUntil: number
  /** Settled when the probe in flight ends, so requests waiting on it need not wait out its timeout. */
  probeDone: PromiseWithResolvers<void> | undefined
  lastError: string | undefined
  /** The last `recentMax` outcomes, a ring written at `recentNext`. */
  readonly recent: { at: number; ok: boolean; latencyMs: number }[]
  recentNext: number
}

export interface TargetSnapshot {
  provider: string
  model: string
  state: TargetState
  until: string | null
  reason: string | null
  recent: { attempts: number; errors: number; errorRate: number; avgLatencyMs: number | null }
  lastError: string | null
}

const recentWindowMs = 5 * 60_000
const recentMax = 100

export function newTarget(step: Step): Target {
  return {
    provider: step.provider,
    model: step.model,
    cooldownUntil: 0,
    cooldownReason: undefined,
    cooldownFirm: false,
    cooledAt: 0,
    rateLimitStreak: 0,
    failureStreak: 0,
    circuitOpen: false,
    openUntil: 0,
    opens: 0,
    probeUntil: 0,
    probeDone: undefined,
    lastError: undefined,
    recent: [],
    recentNext: 0,
  }
}

/** A target as the status endpoint and the metrics show it, with its outcomes of the last five minutes. */
export function snapshotOf(t: Target, now: number): TargetSnapshot {
  const recent = t.recent.filter((r) => now - r.at <= recentWindowMs)
  const errors = recent.filter((r) => !r.ok).length
  const ok = recent.filter((r) => r.ok)
  const [state, until, reason] = stateOf(t, now)
  return {
    provider: t.provider,
    model: t.model,
    state,
    until: until === undefined ? null : new Date(until).toISOString(),
    reason: reason ?? null,
    recent: {
      attempts: recent.length,
      errors,
      errorRate: recent.length === 0 ? 0 : Math.round((errors / recent.length) * 1000) / 1000,
      avgLatencyMs:
        ok.length === 0 ? null : Math.round(ok.reduce((sum, r) => sum + r.latencyMs, 0) / ok.length),
    },
    lastError: t.lastError ?? null,
  }
}

function stateOf(t: Target, now: number): [TargetState, number | undefined, string | undefined] {
  if (now < t.cooldownUntil) return ['cooling_down', t.cooldownUntil, t.cooldownReason]
  if (t.circuitOpen) {
    return now < t.openUntil
      ? ['circuit_open', t.openUntil, 'failures']
      : ['half_open', undefined, 'failures']
  }
  return ['healthy', undefined, undefined]
}

/** What keeps a target from being tried now, quotas aside: a cooldown, or an open circuit or its probe. */
export function heldBack(t: Target, now: number): Exclude<Availability, { ok: true }> | undefined {
  if (now < t.cooldownUntil && t.cooldownReason !== undefined) {
    return { ok: false, reason: t.cooldownReason, until: t.cooldownUntil, firm: t.cooldownFirm }
  }
  if (!t.circuitOpen) return undefined
  if (now < t.openUntil) return { ok: false, reason: 'circuit_open', until: t.openUntil, firm: false }
  if (now < t.probeUntil) return { ok: false, reason: 'probe_in_flight', until: t.probeUntil, firm: true }
  return undefined
}

export function endProbe(t: Target): void {
  t.probeUntil = 0
  t.probeDone?.resolve()
  t.probeDone = undefined
}

export function closeCircuit(t: Target): HealthChange {
  if (!t.circuitOpen) return undefined
  t.circuitOpen = false
  t.opens = 0
  return { kind: 'circuit_closed' }
}

export function pushRecent(t: Target, entry: { at: number; ok: boolean; latencyMs: number }): void {
  t.recent[t.recentNext] = entry
  t.recentNext = (t.recentNext + 1) % recentMax
}
