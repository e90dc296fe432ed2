// Shared pieces of the benchmarks: starting gateway processes as users start them, and statistics.

import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, release, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Agent, Pool, request } from 'undici'

export const root = join(import.meta.dirname, '..')
export const benchKey = 'bench-gateway-key-0000000000'

export interface GatewayProcess {
  readonly port: number
  readonly pid: number
  stop(): Promise<void>
}

export function writeTempConfig(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'ai-gateway-bench-')), 'config.yaml')
  writeFileSync(file, yaml)
  return file
}

/**
 * How much of an executable a process maps depends on how its file sits in the page cache: read in
 * one sequential pass (a `cat`, or the `cp` that installs it), the same executable idled at 93 MiB
 * RSS instead of 68. Evicting the file's unmapped pages first (GNU dd's documented way to do it) makes
 * the memory figures the same whatever last read the file.
 */
function dropPageCache(file: string): void {
  spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'])
}

/**
 * Starts `ai-gateway --config FILE` (from `dir`, default this checkout) and resolves once it logs that
 * it listens. Logging stays on, as in production, into a file: a pipe that the benchmark (busy running
 * wrk) did not drain would stall the gateway's log writes and measure that instead.
 */
export async function startGateway(
  config: string,
  options: { dir?: string; env?: Record<string, string>; command?: string[] } = {},
): Promise<GatewayProcess> {
  const command = options.command ?? [process.execPath, join(options.dir ?? root, 'bin', 'ai-gateway.js')]
  dropPageCache(command[0] as string)
  const logFile = join(mkdtempSync(join(tmpdir(), 'ai-gateway-log-')), 'gateway.log')
  const out = openSync(logFile, 'w')
  const child = spawn(command[0] as string, [...command.slice(1), '--config', config], {
    env: { PATH: process.env.PATH ?? '', ...options.env },
    stdio: ['ignore', out, 'inherit'],
  })
  closeSync(out)
  const started = performance.now()
  let port: number | undefined
  while (port === undefined) {
    if (child.exitCode !== null)
      throw new Error(`the gateway exited before listening: ${readFileSync(logFile, 'utf8')}`)
    if (performance.now() - started > 10_000) throw new Error('the gateway did not start within 10 s')
    const match = /"port":(\d+),[^\n]*"msg":"listening"/.exec(readFileSync(logFile, 'utf8'))
    if (match === null) await sleep(10)
    else port = Number(match[1])
  }
  return {
    port,
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await new Promise((resolve) => child.once('exit', resolve))
      }
      // A loaded run logs hundreds of MB.
      rmSync(dirname(logFile), { recursive: true, force: true })
    },
  }
}

/**
 * Milliseconds from spawning `command` until `GET /health` on `port` answers 200, polled every 2 ms;
 * the process is stopped afterwards.
 */
export async function timeToHealthy(command: string, args: readonly string[], port: number): Promise<number> {
  const started = performance.now()
  const child = spawn(command, args, { stdio: 'ignore' })
  try {
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/health`)
        if (res.ok) return performance.now() - started
      } catch {
        // not listening yet
      }
      if (performance.now() - started > 10_000) throw new Error(`${command} did not become healthy`)
      await sleep(2)
    }
  } finally {
    child.kill('SIGTERM')
    await new Promise((resolve) => child.once('exit', resolve))
  }
}

export const percentile = (sorted: readonly number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number

export const median = (xs: readonly number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

/**
 * Resident set size and its peak, in MiB, from /proc, with the part that is the process's own
 * (anonymous) apart from mapped files (mostly the executable's pages, shared and reclaimable).
 */
export function memoryOf(pid: number): { rss: number; peak: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0)
  return {
    rss: kb('VmRSS') / 1024,
    peak: kb('VmHWM') / 1024,
    anon: kb('RssAnon') / 1024,
    file: kb('RssFile') / 1024,
  }
}

/** Client-side round-trip times (µs) of `count` sequential chat completions on one keep-alive connection. */
export async function sequentialLatencies(port: number, count: number): Promise<number[]> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 })
  const body = JSON.stringify({ model: 'r', messages: [{ role: 'user', content: 'hi' }] })
  const headers = { authorization: `Bearer ${benchKey}`, 'content-type': 'application/json' }
  const samples: number[] = []
  for (let i = 0; i < count; i++) {
    const started = process.hrtime.bigint()
    const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body })
    await res.body.arrayBuffer()
    if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`)
    samples.push(Number(process.hrtime.bigint() - started) / 1e3)
  }
  await pool.close()
  return samples
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8').trim()
  } catch {
    return fallback
  }
}

/**
 * The machine a run was made on, for the record. The idle driver is part of it: on a virtual machine
 * whose idle vCPU halts at once (haltpoll with `guest_halt_poll_ns` 0), every wake-up of an idle
 * process costs the hypervisor's round trip, and one-connection latencies change several-fold with it.
 */
export function machine(): string {
  const cpu = cpus()
  const driver = readOr('/sys/devices/system/cpu/cpuidle/current_driver', 'unknown')
  const poll = readOr('/sys/module/haltpoll/parameters/guest_halt_poll_ns', '')
  return [
    `${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}`,
    `Linux ${release()}`,
    `Node ${process.version}`,
    `idle driver ${driver}${poll === '' ? '' : ` (guest_halt_poll_ns ${poll})`}`,
  ].join(', ')
}

/**
 * The SSE upstream (bench/sse-upstream.ts), in a process of its own: sharing the client's event loop,
 * a direct stream would skip the wake-ups of another process that every real provider costs.
 */
export async function startSseServer(): Promise<{ port: number; stop: () => void }> {
  const child = spawn(process.execPath, [join(root, 'bench', 'sse-upstream.ts')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const [line] = (await once(child.stdout, 'data')) as [Buffer]
  return { port: Number(line.toString().trim()), stop: () => child.kill() }
}

/** Time to first byte and per-event forwarding delay of one stream, as a client sees them. */
export async function streamOnce(url: string, headers: Record<string, string>, dispatcher: Agent) {
  const started = performance.now()
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'stream', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    dispatcher,
  })
  let ttfb: number | undefined
  let reads = 0
  const delays: number[] = []
  let buffer = ''
  for await (const chunk of res.body) {
    const now = (performance.timeOrigin + performance.now()) * 1000
    ttfb ??= performance.now() - started
    reads++
    buffer += chunk
    for (const match of buffer.matchAll(/"t":(\d+)/g)) delays.push(now - Number(match[1]))
    buffer = buffer.slice(buffer.lastIndexOf('\n\n') + 2)
  }
  return { ttfbMs: ttfb ?? Number.NaN, reads, delays }
}
