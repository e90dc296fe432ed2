// The proxy benchmark's tables (Markdown, as BENCHMARKS.md records them).

import { median, type memoryOf, percentile } from './lib.ts'

/** Per target (`direct`, `nginx`, `node floor`, `gateway`): medians over rounds. */
export interface HopResults {
  latency(name: string): { p50: number; p99: number }
  rps(name: string): number
  /** Median over rounds of `name`'s requests per second over `to`'s in the same round. */
  ratio(name: string, to: string): number
}

export interface StreamSamples {
  readonly ttfb: number[]
  readonly delays: number[]
  readonly reads: number[]
}

const us = (n: number) => `${Math.round(n)} µs`

export function printHop(hop: HopResults): void {
  const direct = hop.latency('direct')
  console.log('| one connection | p50 | p99 | added p50 | added p99 |')
  console.log('|---|---|---|---|---|')
  console.log(`| upstream direct | ${us(direct.p50)} | ${us(direct.p99)} | – | – |`)
  const row = (label: string, name: string) => {
    const r = hop.latency(name)
    console.log(
      `| ${label} | ${us(r.p50)} | ${us(r.p99)} | ${us(r.p50 - direct.p50)} | ${us(r.p99 - direct.p99)} |`,
    )
  }
  row('nginx proxy_pass hop', 'nginx')
  row('minimal Node proxy (bench/floor-proxy.ts)', 'node floor')
  row('ai-gateway', 'gateway')
  console.log('\n| 64 connections | requests/s | ratio to the nginx hop | ratio to the Node floor |')
  console.log('|---|---|---|---|')
  for (const name of ['direct', 'nginx', 'node floor', 'gateway']) {
    console.log(
      `| ${name} | ${Math.round(hop.rps(name))} | ${hop.ratio(name, 'nginx').toFixed(2)} | ${hop.ratio(name, 'node floor').toFixed(2)} |`,
    )
  }
}

/** Prints the stream table; returns the figures the targets are held to. */
export function printStreams(
  streams: Record<'direct' | 'gateway', StreamSamples>,
  count: { measured: number; warmUp: number },
) {
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b)
  const d = sorted(streams.direct.delays)
  const g = sorted(streams.gateway.delays)
  console.log(
    `\n| streaming (${count.measured} streams × 20 events, 5 ms apart, after ${count.warmUp}) | direct | gateway | difference |`,
  )
  console.log('|---|---|---|---|')
  const ttfbD = median(streams.direct.ttfb)
  const ttfbG = median(streams.gateway.ttfb)
  console.log(
    `| time to first byte, median | ${ttfbD.toFixed(2)} ms | ${ttfbG.toFixed(2)} ms | ${(ttfbG - ttfbD).toFixed(2)} ms |`,
  )
  for (const p of [0.5, 0.99]) {
    const [dp, gp] = [percentile(d, p), percentile(g, p)]
    console.log(`| event forwarding delay p${p * 100} | ${us(dp)} | ${us(gp)} | ${us(gp - dp)} |`)
  }
  const reads = { direct: median(streams.direct.reads), gateway: median(streams.gateway.reads) }
  console.log(`| reads per stream (21 = unbatched) | ${reads.direct} | ${reads.gateway} | |`)
  return {
    ttfbAddedMs: ttfbG - ttfbD,
    eventAddedP99: percentile(g, 0.99) - percentile(d, 0.99),
    reads,
  }
}

type Memory = ReturnType<typeof memoryOf>

export function printMemory(m: { idle: Memory; underLoad: Memory; withStreams: Memory; open: number }): void {
  console.log('\n| memory (RSS) | MiB |')
  console.log('|---|---|')
  console.log(
    `| idle, after start | ${m.idle.rss.toFixed(1)} (anonymous ${m.idle.anon.toFixed(1)}, file-backed ${m.idle.file.toFixed(1)}) |`,
  )
  console.log(`| peak during the 64-connection load | ${m.underLoad.peak.toFixed(1)} |`)
  console.log(
    `| ${m.open} concurrent open streams | ${m.withStreams.rss.toFixed(1)} (anonymous ${m.withStreams.anon.toFixed(1)}) |`,
  )
}
