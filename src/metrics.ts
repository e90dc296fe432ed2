// Prometheus metrics (prom-client): one registry per gateway, fed once per request from the facts the
// access log line already holds. The per-request series are series.ts's; prom-client formats them
// with its own process metrics. Every label value comes from the config or a closed set, never from
// user input, so series stay bounded.

// prom-client by module, not its index: the index also loads its Pushgateway client, and with it
// Node's https, zlib and tls, which the gateway never uses (3 MiB of idle RSS). No exports map stops
// this; the tests catch a move.
import collectDefaultMetrics from 'prom-client/lib/defaultMetrics.js'
import Gauge from 'prom-client/lib/gauge.js'
import Registry from 'prom-client/lib/registry.js'
import type { HealthBoard } from './health.ts'
import type { TargetState } from './health-target.ts'
import type { Route } from './router.ts'
import { FastCounter, FastHistogram } from './series.ts'
import type { AccessFacts } from './server.ts'

const seconds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
const targetStates: readonly TargetState[] = ['healthy', 'cooling_down', 'circuit_open', 'half_open']

/**
 * A token count a counter can take. The provider's number may be negative, and JSON's `1e400` reads as
 * Infinity: a counter that went down reads as a reset to every rate() over it, and one at +Inf stays
 * there until a restart. prom-client's own counters refuse both; series.ts does not check.
 */
const isCount = (value: number | undefined): value is number =>
  value !== undefined && value >= 0 && Number.isFinite(value)

export class Metrics {
  readonly registry = new Registry()
  readonly #routes: ReadonlySet<string>
  readonly #requests: FastCounter<'route' | 'status'>
  readonly #requestDuration: FastHistogram<'route'>
  readonly #attempts: FastCounter<'provider' | 'model' | 'outcome'>
  readonly #attemptDuration: FastHistogram<'provider' | 'model' | 'outcome'>
  readonly #fallbacks: FastCounter<'route' | 'provider' | 'model' | 'reason'>
  readonly #ttft: FastHistogram<'route' | 'provider' | 'model'>
  readonly #tokens: FastCounter<'provider' | 'model' | 'direction'>
  readonly #dropped: FastCounter<'signal'>

  constructor(routes: readonly Route[], health: HealthBoard) {
    this.#routes = new Set(routes.map((r) => r.name))
    const registry = this.registry
    // The event-loop delay monitor samples every 10 ms by default, which alone woke an idle gateway
    // 200 times a second (strace: 405 epoll waits in 2 s, 56 at 100 ms).
    collectDefaultMetrics({
      register: registry,
      prefix: 'ai_gateway_',
      eventLoopMonitoringPrecision: 100,
    })
    this.#requests = new FastCounter({
      name: 'ai_gateway_requests_total',
      help: 'Requests by route and HTTP status (route "" when the request named no known route).',
      labelNames: ['route', 'status'],
      registry,
    })
    this.#requestDuration = new FastHistogram({
      name: 'ai_gateway_request_duration_seconds',
      help: 'Time from request to the end of the response, by route.',
      labelNames: ['route'],
      buckets: seconds,
      registry,
    })
    this.#attempts = new FastCounter({
      name: 'ai_gateway_upstream_attempts_total',
      help: 'Upstream attempts by provider, model and outcome (ok, http_error, network, timeout, invalid_response, aborted).',
      labelNames: ['provider', 'model', 'outcome'],
      registry,
    })
    this.#attemptDuration = new FastHistogram({
      name: 'ai_gateway_upstream_attempt_duration_seconds',
      help: 'Upstream attempt duration until the answer or the stream commit, by provider, model and outcome.',
      labelNames: ['provider', 'model', 'outcome'],
      buckets: seconds,
      registry,
    })
    this.#fallbacks = new FastCounter({
      name: 'ai_gateway_fallbacks_total',
      help: 'Steps that did not serve a request, by step and why: an attempt outcome, or skipped:<reason>.',
      labelNames: ['route', 'provider', 'model', 'reason'],
      registry,
    })
    this.#ttft = new FastHistogram({
      name: 'ai_gateway_time_to_first_token_seconds',
      help: 'For streams: time from request to the first content sent to the client.',
      labelNames: ['route', 'provider', 'model'],
      buckets: seconds,
      registry,
    })
    this.#tokens = new FastCounter({
      name: 'ai_gateway_tokens_total',
      help: 'Tokens the providers reported, by provider, model and direction (input, output).',
      labelNames: ['provider', 'model', 'direction'],
      registry,
    })
    this.#dropped = new FastCounter({
      name: 'ai_gateway_telemetry_dropped_total',
      help: 'Telemetry items dropped because the export queue was full or the collector failed, by signal.',
      labelNames: ['signal'],
      registry,
    })
    new Gauge({
      name: 'ai_gateway_target_state',
      help: 'Provider target state: 1 for the current state (healthy, cooling_down, circuit_open, half_open).',
      labelNames: ['provider', 'model', 'state'],
      registers: [registry],
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

  /** Records one finished request from its access-log facts. */
  observe(facts: AccessFacts, status: number, durationMs: number): void {
    const route = facts.route !== undefined && this.#routes.has(facts.route) ? facts.route : ''
    this.#requests.inc({ route, status: String(status) })
    if (route === '') return
    this.#requestDuration.observe({ route }, durationMs / 1000)
    for (const a of facts.attempts ?? []) {
      const labels = { provider: a.provider, model: a.model, outcome: a.outcome }
      this.#attempts.inc(labels)
      this.#attemptDuration.observe(labels, a.durationMs / 1000)
      if (a.outcome !== 'ok' && a.outcome !== 'aborted') {
        this.#fallback(route, a.provider, a.model, a.outcome)
      }
    }
    for (const s of facts.skipped ?? []) {
      this.#fallback(route, s.provider, s.model, `skipped:${s.reason}`)
    }
    if (facts.provider === undefined || facts.model === undefined) return
    const target = { provider: facts.provider, model: facts.model }
    if (facts.stream === true && facts.ttfbMs !== undefined) {
      this.#ttft.observe({ route, ...target }, facts.ttfbMs / 1000)
    }
    const usage = facts.usage
    if (isCount(usage?.prompt_tokens)) {
      this.#tokens.inc({ ...target, direction: 'input' }, usage.prompt_tokens)
    }
    if (isCount(usage?.completion_tokens)) {
      this.#tokens.inc({ ...target, direction: 'output' }, usage.completion_tokens)
    }
  }

  /** The Prometheus exposition text. */
  text(): Promise<string> {
    return this.registry.metrics()
  }

  #fallback(route: string, provider: string, model: string, reason: string): void {
    this.#fallbacks.inc({ route, provider, model, reason })
  }

  telemetryDropped(signal: 'traces' | 'logs', count: number): void {
    this.#dropped.inc({ signal }, count)
  }
}
