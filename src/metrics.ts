// Prometheus metrics (prom-client): one registry per gateway, fed once per request from the facts the
// access log line already holds. Every label value comes from the config or a closed set, never from
// user input, so series stay bounded.

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { HealthBoard, TargetState } from './health.ts'
import type { Route } from './router.ts'
import type { AccessFacts } from './server.ts'

const seconds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
const targetStates: readonly TargetState[] = ['healthy', 'cooling_down', 'circuit_open', 'half_open']

export class Metrics {
  readonly registry = new Registry()
  readonly #routes: ReadonlySet<string>
  readonly #requests: Counter<'route' | 'status'>
  readonly #requestDuration: Histogram<'route'>
  readonly #attempts: Counter<'provider' | 'model' | 'outcome'>
  readonly #attemptDuration: Histogram<'provider' | 'model' | 'outcome'>
  readonly #fallbacks: Counter<'route' | 'provider' | 'model' | 'reason'>
  readonly #ttft: Histogram<'route' | 'provider' | 'model'>
  readonly #tokens: Counter<'provider' | 'model' | 'direction'>
  readonly #dropped: Counter<'signal'>

  constructor(routes: readonly Route[], health: HealthBoard) {
    this.#routes = new Set(routes.map((r) => r.name))
    const registers = [this.registry]
    // The event-loop delay monitor samples every 10 ms by default, which alone woke an idle gateway
    // 200 times a second (strace: 405 epoll waits in 2 s, 56 at 100 ms).
    collectDefaultMetrics({
      register: this.registry,
      prefix: 'ai_gateway_',
      eventLoopMonitoringPrecision: 100,
    })
    this.#requests = new Counter({
      name: 'ai_gateway_requests_total',
      help: 'Requests by route and HTTP status (route "" when the request named no known route).',
      labelNames: ['route', 'status'],
      registers,
    })
    this.#requestDuration = new Histogram({
      name: 'ai_gateway_request_duration_seconds',
      help: 'Time from request to the end of the response, by route.',
      labelNames: ['route'],
      buckets: seconds,
      registers,
    })
    this.#attempts = new Counter({
      name: 'ai_gateway_upstream_attempts_total',
      help: 'Upstream attempts by provider, model and outcome (ok, http_error, network, timeout, invalid_response, aborted).',
      labelNames: ['provider', 'model', 'outcome'],
      registers,
    })
    this.#attemptDuration = new Histogram({
      name: 'ai_gateway_upstream_attempt_duration_seconds',
      help: 'Upstream attempt duration until the answer or the stream commit, by provider, model and outcome.',
      labelNames: ['provider', 'model', 'outcome'],
      buckets: seconds,
      registers,
    })
    this.#fallbacks = new Counter({
      name: 'ai_gateway_fallbacks_total',
      help: 'Steps that did not serve a request, by step and why: an attempt outcome, or skipped:<reason>.',
      labelNames: ['route', 'provider', 'model', 'reason'],
      registers,
    })
    this.#ttft = new Histogram({
      name: 'ai_gateway_time_to_first_token_seconds',
      help: 'For streams: time from request to the first content sent to the client.',
      labelNames: ['route', 'provider', 'model'],
      buckets: seconds,
      registers,
    })
    this.#tokens = new Counter({
      name: 'ai_gateway_tokens_total',
      help: 'Tokens the providers reported, by provider, model and direction (input, output).',
      labelNames: ['provider', 'model', 'direction'],
      registers,
    })
    this.#dropped = new Counter({
      name: 'ai_gateway_telemetry_dropped_total',
      help: 'Telemetry items dropped because the export queue was full or the collector failed, by signal.',
      labelNames: ['signal'],
      registers,
    })
    new Gauge({
      name: 'ai_gateway_target_state',
      help: 'Provider target state: 1 for the current state (healthy, cooling_down, circuit_open, half_open).',
      labelNames: ['provider', 'model', 'state'],
      registers,
      collect() {
        this.reset()
        for (const target of health.snapshot(Date.now())) {
          for (const state of targetStates) {
            this.set(
              { provider: target.provider, model: target.model, state },
              target.state === state ? 1 : 0,
            )
          }
        }
      },
    })
  }

  // Requests are recorded in batches: prom-client's per-call label checks and hashing cost ~5 µs per
  // request inside the loaded gateway, several times what the same work costs in a tight loop.
  // Batches are applied at 256 requests and before every scrape, so a scrape never misses one.
  #pending: { facts: AccessFacts; status: number; durationMs: number }[] = []

  /** Records one finished request from its access-log facts. */
  observe(facts: AccessFacts, status: number, durationMs: number): void {
    this.#pending.push({ facts, status, durationMs })
    if (this.#pending.length >= 256) this.#applyPending()
  }

  /** The Prometheus exposition text. */
  text(): Promise<string> {
    this.#applyPending()
    return this.registry.metrics()
  }

  #applyPending(): void {
    const batch = this.#pending
    this.#pending = []
    for (const { facts, status, durationMs } of batch) this.#record(facts, status, durationMs)
  }

  #record(facts: AccessFacts, status: number, durationMs: number): void {
    const route = facts.route !== undefined && this.#routes.has(facts.route) ? facts.route : ''
    this.#child(this.#requests, `${route}\0${status}`, { route, status: String(status) }).inc()
    if (route === '') return
    this.#child(this.#requestDuration, route, { route }).observe(durationMs / 1000)
    for (const a of facts.attempts ?? []) {
      const key = `${a.provider}\0${a.model}\0${a.outcome}`
      const labels = { provider: a.provider, model: a.model, outcome: a.outcome }
      this.#child(this.#attempts, key, labels).inc()
      this.#child(this.#attemptDuration, key, labels).observe(a.durationMs / 1000)
      if (a.outcome !== 'ok' && a.outcome !== 'aborted') {
        this.#fallback(route, a.provider, a.model, a.outcome)
      }
    }
    for (const s of facts.skipped ?? []) {
      this.#fallback(route, s.provider, s.model, `skipped:${s.reason}`)
    }
    if (facts.provider === undefined || facts.model === undefined) return
    const target = { provider: facts.provider, model: facts.model }
    const targetKey = `${facts.provider}\0${facts.model}`
    if (facts.stream === true && facts.ttfbMs !== undefined) {
      this.#child(this.#ttft, `${route}\0${targetKey}`, { route, ...target }).observe(facts.ttfbMs / 1000)
    }
    const usage = facts.usage
    if (usage?.prompt_tokens !== undefined) {
      this.#child(this.#tokens, `${targetKey}\0in`, { ...target, direction: 'input' }).inc(
        usage.prompt_tokens,
      )
    }
    if (usage?.completion_tokens !== undefined) {
      this.#child(this.#tokens, `${targetKey}\0out`, { ...target, direction: 'output' }).inc(
        usage.completion_tokens,
      )
    }
  }

  #fallback(route: string, provider: string, model: string, reason: string): void {
    const key = `${route}\0${provider}\0${model}\0${reason}`
    this.#child(this.#fallbacks, key, { route, provider, model, reason }).inc()
  }

  // prom-client hashes label objects on every call; the hot path looks its series up by a cheap key.
  readonly #children = new Map<object, Map<string, unknown>>()

  #child<T extends { labels(labels: never): unknown }>(
    metric: T,
    key: string,
    labels: object,
  ): ReturnType<T['labels']> {
    let byKey = this.#children.get(metric)
    if (byKey === undefined) {
      byKey = new Map()
      this.#children.set(metric, byKey)
    }
    let child = byKey.get(key)
    if (child === undefined) {
      child = metric.labels(labels as never)
      byKey.set(key, child)
    }
    return child as ReturnType<T['labels']>
  }

  telemetryDropped(signal: 'traces' | 'logs', count: number): void {
    this.#dropped.inc({ signal }, count)
  }
}
