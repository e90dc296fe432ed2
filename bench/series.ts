// What recording a request's metrics costs: the four series a proxied request touches (requests,
// request duration, attempts, attempt duration), through prom-client's own Counter and Histogram and
// through src/series.ts. A loop in one process, so it shows the difference, not the in-situ cost.
//
//   npm run bench:series

import { Counter, Histogram, Registry } from 'prom-client'
import { FastCounter, FastHistogram } from '../src/series.ts'

const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
const requests = 300_000

function promClient(): (i: number) => void {
  const registers = [new Registry()]
  const total = new Counter({ name: 'r', help: 'r', labelNames: ['route', 'status'], registers })
  const duration = new Histogram({ name: 'd', help: 'd', labelNames: ['route'], buckets, registers })
  const attempts = new Counter({
    name: 'a',
    help: 'a',
    labelNames: ['provider', 'model', 'outcome'],
    registers,
  })
  const attemptDuration = new Histogram({
    name: 'ad',
    help: 'ad',
    labelNames: ['provider', 'model', 'outcome'],
    buckets,
    registers,
  })
  return (i) => {
    total.inc({ route: 'bench', status: '200' })
    duration.observe({ route: 'bench' }, (i % 50) / 1000)
    const labels = { provider: 'nginx', model: 'bench-model', outcome: 'ok' }
    attempts.inc(labels)
    attemptDuration.observe(labels, (i % 40) / 1000)
  }
}

function series(): (i: number) => void {
  const registry = new Registry()
  const total = new FastCounter({ name: 'r', help: 'r', labelNames: ['route', 'status'], registry })
  const duration = new FastHistogram({ name: 'd', help: 'd', labelNames: ['route'], buckets, registry })
  const attempts = new FastCounter({
    name: 'a',
    help: 'a',
    labelNames: ['provider', 'model', 'outcome'],
    registry,
  })
  const attemptDuration = new FastHistogram({
    name: 'ad',
    help: 'ad',
    labelNames: ['provider', 'model', 'outcome'],
    buckets,
    registry,
  })
  return (i) => {
    total.inc({ route: 'bench', status: String(200) })
    duration.observe({ route: 'bench' }, (i % 50) / 1000)
    const labels = { provider: 'nginx', model: 'bench-model', outcome: 'ok' }
    attempts.inc(labels)
    attemptDuration.observe(labels, (i % 40) / 1000)
  }
}

const contenders = { 'prom-client Counter/Histogram': promClient(), 'src/series.ts': series() }
const results = new Map<string, number[]>(Object.keys(contenders).map((name) => [name, []]))
for (let round = 0; round < 5; round++) {
  for (const [name, record] of Object.entries(contenders)) {
    const started = performance.now()
    for (let i = 0; i < requests; i++) record(i)
    results.get(name)?.push(((performance.now() - started) * 1000) / requests)
  }
}
for (const [name, times] of results) {
  const sorted = times.sort((a, b) => a - b)
  console.log(`${name.padEnd(30)} ${(sorted[2] as number).toFixed(3)} µs per request (median of 5 rounds)`)
}
