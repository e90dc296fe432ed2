// The proxy benchmark's verdict: each figure beside the target it is held to (from the performance
// issue), so a run says by itself which targets it met on the machine it ran on.

export interface Measured {
  /** Gateway minus direct, µs, at one connection. */
  readonly addedP50: number
  readonly addedP99: number
  /** The same for the minimal Node proxy: what any Node.js gateway pays on this machine. */
  readonly floorAddedP50: number
  readonly floorAddedP99: number
  /** Requests per second at 64 connections, as a fraction of the nginx hop's in the same round. */
  readonly throughputRatio: number
  /** Stream time to first byte, gateway minus direct, ms. */
  readonly ttfbAddedMs: number
  /** Event forwarding delay p99, gateway minus direct, µs. */
  readonly eventAddedP99: number
  /** Reads a client needed per stream through the gateway, and directly (equal when nothing batches). */
  readonly reads: { readonly gateway: number; readonly direct: number }
  /** Resident set sizes, MiB. */
  readonly rssIdle: number
  readonly rssPeak: number
  readonly rssStreams: number
  readonly streams: number
  /** Spawn to a healthy /health, ms (median). */
  readonly startupMs: number
}

interface Target {
  readonly what: string
  readonly target: string
  readonly measured: string
  readonly met: boolean
}

/** The targets are in MB (10^6 bytes); /proc gives KiB. */
const mb = (mib: number) => (mib * 1024 * 1024) / 1e6

export function targetsOf(m: Measured): Target[] {
  const us = (n: number) => `${Math.round(n)} µs`
  return [
    {
      what: 'added latency, one connection, p50',
      target: '≤ 80 µs',
      measured: `${us(m.addedP50)} (Node floor ${us(m.floorAddedP50)})`,
      met: m.addedP50 <= 80,
    },
    {
      what: 'added latency, one connection, p99',
      target: '≤ 400 µs',
      measured: `${us(m.addedP99)} (Node floor ${us(m.floorAddedP99)})`,
      met: m.addedP99 <= 400,
    },
    {
      what: 'throughput at 64 connections',
      target: '≥ 0.35 of the nginx hop',
      measured: m.throughputRatio.toFixed(2),
      met: m.throughputRatio >= 0.35,
    },
    {
      what: 'stream time to first byte',
      target: 'within 1 ms of direct',
      measured: `+${m.ttfbAddedMs.toFixed(2)} ms`,
      met: m.ttfbAddedMs <= 1,
    },
    {
      what: 'each event forwarded (p99), unbatched',
      target: 'within 1 ms; reads as direct',
      measured: `+${us(m.eventAddedP99)}; ${m.reads.gateway} reads (direct ${m.reads.direct})`,
      met: m.eventAddedP99 <= 1_000 && m.reads.gateway === m.reads.direct,
    },
    {
      what: 'RSS idle',
      target: '≤ 60 MB',
      measured: `${mb(m.rssIdle).toFixed(1)} MB`,
      met: mb(m.rssIdle) <= 60,
    },
    {
      what: 'RSS peak under the 64-connection load',
      target: '≤ 120 MB',
      measured: `${mb(m.rssPeak).toFixed(1)} MB`,
      met: mb(m.rssPeak) <= 120,
    },
    {
      what: `RSS with ${m.streams} open streams`,
      target: '≤ 200 MB',
      measured: `${mb(m.rssStreams).toFixed(1)} MB`,
      met: mb(m.rssStreams) <= 200,
    },
    {
      what: 'start-up to a healthy /health (median)',
      target: '≤ 300 ms',
      measured: `${Math.round(m.startupMs)} ms`,
      met: m.startupMs <= 300,
    },
  ]
}

export function printTargets(m: Measured): void {
  console.log('\n| target | wanted | measured | met |')
  console.log('|---|---|---|---|')
  for (const t of targetsOf(m))
    console.log(`| ${t.what} | ${t.target} | ${t.measured} | ${t.met ? 'yes' : 'no'} |`)
}
