// What recording a request's metrics costs: the four series a proxied request touches (requests,
// request duration, attempts, attempt duration), through prom-client's own Counter and Histogram and
// through src/series.ts. A loop in one process, so it shows the difference, not the in-situ cost.
//
//   npm run bench:series

import { Counter, Histogram, Registry } from 'prom-client'
import { FastCounter, FastHistogram } from '../src/series.ts'
import { median } from './lib.ts'

const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
const requests = 300_000

type Labels = Record<string, string>

/** Both kinds of metric take the same calls: `inc(labels)` and `observe(labels, value)`. */
interface MetricKinds {
  counter(name: string, labelNames: string[]): { inc(labels: Labels): void }
  histogram(name: string, labelNames: string[]): { observe(labels: Labels, value: number): void }
}

const promClient = (registry: Registry): MetricKinds => ({
  counter: (name, labelNames) => new Counter({ name, help: name, labelNames, registers: [registry] }),
  histogram: (name, labelNames) =>
    new Histogram({ name, help: name, labelNames, buckets, registers: [registry] }),
})

const series = (registry: Registry): MetricKinds => ({
  counter: (name, labelNames) => new FastCounter({ name, help: name, labelNames, registry }),
  histogram: (name, labelNames) => new FastHistogram({ name, help: name, labelNames, buckets, registry }),
})

/** What the gateway records for one successful request, as `Metrics.observe` does. */
function recorder(kinds: MetricKinds): (i: number) => void {
  const total = kinds.counter('requests', ['route', 'status'])
  const duration = kinds.histogram('duration', ['route'])
  const attempts = kinds.counter('attempts', ['provider', 'model', 'outcome'])
  const attemptDuration = kinds.histogram('attempt_duration', ['provider', 'model', 'outcome'])
  return (i) => {
    total.inc({ route: 'bench', status: String(200) })
    duration.observe({ route: 'bench' }, (i % 50) / 1000)
    const labels = { provider: 'nginx', model: 'bench-model', outcome: 'ok' }
    attempts.inc(labels)
    attemptDuration.observe(labels, (i % 40) / 1000)
  }
}

const contenders = {
  'prom-client Counter/Histogram': recorder(promClient(new Registry())),
  'src/series.ts': recorder(series(new Registry())),
}
const results = new Map<string, number[]>(Object.keys(contenders).map((name) => [name, []]))
for (let round = 0; round < 5; round++) {
  for (const [name, record] of Object.entries(contenders)) {
    const started = performance.now()
    for (let i = 0; i < requests; i++) record(i)
    results.get(name)?.push(((performance.now() - started) * 1000) / requests)
  }
}
for (const [name, times] of results) {
  console.log(`${name.padEnd(30)} ${median(times).toFixed(3)} µs per request (median of 5 rounds)`)
}
