// The proxy-hop benchmark: the gateway against the upstream called directly and against a bare nginx
// `proxy_pass` hop to the same upstream (the physical floor of "a proxy in between"), all on 127.0.0.1.
//
//   npm run bench                      (installs nginx and wrk from Debian when missing and root)
//   npm run bench -- --rounds 5 --seconds 5 --gateway dist/ai-gateway
//
// Upstream: nginx returning a fixed chat completion, and a Node SSE server (a process of its own) for
// streams. Load: wrk.
// Targets are measured in interleaved rounds (direct, nginx hop, gateway, direct, …); medians shown.

import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import {
  benchKey,
  type GatewayProcess,
  machine,
  median,
  memoryOf,
  percentile,
  root,
  startGateway,
  writeTempConfig,
} from './lib.ts'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '5' },
    gateway: { type: 'string' },
    streams: { type: 'string', default: '1000' },
  },
})
const rounds = Number(values.rounds)
const seconds = Number(values.seconds)
const work = mkdtempSync(join(tmpdir(), 'ai-gateway-proxy-bench-'))

const completion = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'bench-model',
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: 'Hello! How can I help you today?' },
      finish_reason: 'stop',
    },
  ],
  usage: { prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 },
})
const requestBody = JSON.stringify({
  model: 'bench',
  messages: [{ role: 'user', content: 'Say hello.' }],
  temperature: 0.2,
})

function ensureTools(): void {
  const missing = ['nginx', 'wrk'].filter(
    (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0,
  )
  if (missing.length === 0) return
  if (process.getuid?.() !== 0)
    throw new Error(`install ${missing.join(' and ')} first (apt-get install nginx-light wrk)`)
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' })
  execFileSync('apt-get', ['install', '-y', '-qq', 'nginx-light', 'wrk'], { stdio: 'inherit' })
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  return port
}

async function startNginx(upstreamPort: number, hopPort: number): Promise<() => void> {
  const conf = join(work, 'nginx.conf')
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
pid ${work}/nginx.pid;
error_log ${work}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${work}/body; proxy_temp_path ${work}/proxy;
  fastcgi_temp_path ${work}/fcgi; uwsgi_temp_path ${work}/uwsgi; scgi_temp_path ${work}/scgi;
  keepalive_requests 1000000;
  upstream up { server 127.0.0.1:${upstreamPort}; keepalive 128; }
  server {
    listen 127.0.0.1:${upstreamPort};
    location / { default_type application/json; return 200 '${completion}'; }
  }
  server {
    listen 127.0.0.1:${hopPort};
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`,
  )
  const child = spawn('nginx', ['-p', work, '-c', conf], { stdio: 'inherit' })
  await sleep(300)
  return () => child.kill('SIGQUIT')
}

const wrkScript = join(work, 'post.lua')
writeFileSync(
  wrkScript,
  `wrk.method = "POST"
wrk.body = '${requestBody}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ${benchKey}"
`,
)

/** wrk's own numbers: latency percentiles in µs and requests per second. */
function wrk(url: string, connections: number): { p50: number; p99: number; rps: number } {
  const out = execFileSync(
    'wrk',
    [
      '-t',
      connections > 1 ? '2' : '1',
      '-c',
      String(connections),
      '-d',
      `${seconds}s`,
      '--latency',
      '-s',
      wrkScript,
      url,
    ],
    { encoding: 'utf8' },
  )
  const micros = (label: string) => {
    const match = new RegExp(`^\\s+${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out)
    if (match === null) throw new Error(`no ${label}% in wrk output:\n${out}`)
    const unit: Record<string, number> = { us: 1, ms: 1_000, s: 1_000_000 }
    return Number(match[1]) * (unit[match[2] as string] ?? Number.NaN)
  }
  const rps = Number(/^Requests\/sec:\s+([\d.]+)/m.exec(out)?.[1])
  if (/Non-2xx/.test(out)) throw new Error(`non-2xx answers from ${url}:\n${out}`)
  return { p50: micros('50'), p99: micros('99'), rps }
}

/**
 * The SSE upstream (bench/sse-upstream.ts), in a process of its own: sharing the client's event loop,
 * a direct stream would skip the wake-ups of another process that every real provider costs.
 */
async function startSseServer(): Promise<{ port: number; stop: () => void }> {
  const child = spawn(process.execPath, [join(root, 'bench', 'sse-upstream.ts')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const [line] = (await once(child.stdout, 'data')) as [Buffer]
  return { port: Number(line.toString().trim()), stop: () => child.kill() }
}

/** Time to first byte and per-event forwarding delay of one stream, as a client sees them. */
async function streamOnce(url: string, headers: Record<string, string>, dispatcher: Agent) {
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

async function main() {
  ensureTools()
  const [upstreamPort, hopPort] = [await freePort(), await freePort()]
  const stopNginx = await startNginx(upstreamPort, hopPort)
  const sse = await startSseServer()
  const config = writeTempConfig(`api_key: ${benchKey}
port: 0
host: 127.0.0.1
providers:
  - { name: nginx, api_key: sk-bench-upstream-0000, base_url: "http://127.0.0.1:${upstreamPort}/v1" }
  - { name: sse, api_key: sk-bench-sse-0000, base_url: "http://127.0.0.1:${sse.port}/v1" }
routes:
  - { name: bench, steps: [{ provider: nginx, model: bench-model }] }
  - { name: stream, steps: [{ provider: sse, model: stream-model }] }
`)
  const command = values.gateway === undefined ? undefined : [join(root, values.gateway)]
  const gateway: GatewayProcess = await startGateway(config, command === undefined ? {} : { command })
  await sleep(200)
  const idle = memoryOf(gateway.pid)

  const floorPort = await freePort()
  const floor = spawn(
    process.execPath,
    [join(root, 'bench', 'floor-proxy.ts'), String(floorPort), `http://127.0.0.1:${upstreamPort}`],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  )
  await sleep(500)
  const targets = {
    direct: `http://127.0.0.1:${upstreamPort}/v1/chat/completions`,
    nginx: `http://127.0.0.1:${hopPort}/v1/chat/completions`,
    'node floor': `http://127.0.0.1:${floorPort}/v1/chat/completions`,
    gateway: `http://127.0.0.1:${gateway.port}/v1/chat/completions`,
  }
  for (const url of Object.values(targets)) wrk(url, 1) // warm-up
  const one: Record<string, { p50: number[]; p99: number[] }> = {}
  const many: Record<string, number[]> = {}
  for (let round = 0; round < rounds; round++) {
    for (const [name, url] of Object.entries(targets)) {
      const r = wrk(url, 1)
      one[name] ??= { p50: [], p99: [] }
      one[name].p50.push(r.p50)
      one[name].p99.push(r.p99)
    }
    for (const [name, url] of Object.entries(targets)) {
      many[name] ??= []
      many[name].push(wrk(url, 64).rps)
    }
  }
  const underLoad = memoryOf(gateway.pid)
  floor.kill()

  // Streams: direct vs gateway, interleaved.
  const dispatcher = new Agent({ connections: 2_000 })
  const auth = { authorization: `Bearer ${benchKey}` }
  const streams: Record<string, { ttfb: number[]; delays: number[]; reads: number[] }> = {
    direct: { ttfb: [], delays: [], reads: [] },
    gateway: { ttfb: [], delays: [], reads: [] },
  }
  // The gateway's stream route asks the SSE server for its default 20 events 5 ms apart. The first
  // streams warm up both paths (as the wrk runs above do for the JSON path) and are not counted.
  const [warmUp, measured] = [5, 40]
  for (let i = 0; i < warmUp + measured; i++) {
    for (const name of ['direct', 'gateway'] as const) {
      const url = name === 'direct' ? `http://127.0.0.1:${sse.port}/v1/chat/completions` : targets.gateway
      const r = await streamOnce(url, name === 'gateway' ? auth : {}, dispatcher)
      if (i < warmUp) continue
      streams[name]?.ttfb.push(r.ttfbMs)
      streams[name]?.delays.push(...r.delays)
      streams[name]?.reads.push(r.reads)
    }
  }

  // 1,000 concurrent open streams through the gateway (each 200 events, 50 ms apart: ten seconds long).
  const open = Number(values.streams)
  const longRoute = `api_key: ${benchKey}\nport: 0\nhost: 127.0.0.1\nproviders:\n  - { name: sse, base_url: "http://127.0.0.1:${sse.port}/v1?count=200&gap=50" }\nroutes:\n  - { name: stream, steps: [{ provider: sse, model: m }] }\n`
  await gateway.stop()
  const held = await startGateway(writeTempConfig(longRoute), command === undefined ? {} : { command })
  const heldRequests = Array.from({ length: open }, () =>
    request(`http://127.0.0.1:${held.port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ model: 'stream', stream: true, messages: [] }),
      dispatcher,
    }).then((res) => res.body.text()),
  )
  await sleep(1_500)
  const withStreams = memoryOf(held.pid)
  await Promise.allSettled(heldRequests)
  await held.stop()
  await dispatcher.close()
  stopNginx()
  sse.stop()

  const us = (n: number) => `${Math.round(n)} µs`
  const m1 = (name: string) => ({ p50: median(one[name]?.p50 ?? []), p99: median(one[name]?.p99 ?? []) })
  const [direct, nginx, nodeFloor, gw] = [m1('direct'), m1('nginx'), m1('node floor'), m1('gateway')]
  console.log(`proxy benchmark: ${rounds} interleaved rounds, wrk ${seconds} s each; medians of rounds`)
  console.log(`machine: ${machine()}\n`)
  console.log('| one connection | p50 | p99 | added p50 | added p99 |')
  console.log('|---|---|---|---|---|')
  console.log(`| upstream direct | ${us(direct.p50)} | ${us(direct.p99)} | – | – |`)
  console.log(
    `| nginx proxy_pass hop | ${us(nginx.p50)} | ${us(nginx.p99)} | ${us(nginx.p50 - direct.p50)} | ${us(nginx.p99 - direct.p99)} |`,
  )
  const row = (label: string, r: { p50: number; p99: number }) =>
    console.log(
      `| ${label} | ${us(r.p50)} | ${us(r.p99)} | ${us(r.p50 - direct.p50)} | ${us(r.p99 - direct.p99)} |`,
    )
  row('minimal Node proxy (bench/floor-proxy.ts)', nodeFloor)
  row('ai-gateway', gw)
  const rps = (name: string) => median(many[name] ?? [])
  // Ratios are taken within each round, then their median: a slow moment of the machine hits both
  // sides of a ratio alike.
  const ratio = (name: string, to: string) =>
    median((many[name] ?? []).map((value, round) => value / (many[to]?.[round] ?? Number.NaN)))
  console.log('\n| 64 connections | requests/s | ratio to the nginx hop | ratio to the Node floor |')
  console.log('|---|---|---|---|')
  for (const name of ['direct', 'nginx', 'node floor', 'gateway']) {
    console.log(
      `| ${name} | ${Math.round(rps(name))} | ${ratio(name, 'nginx').toFixed(2)} | ${ratio(name, 'node floor').toFixed(2)} |`,
    )
  }
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b)
  const d = sorted(streams.direct?.delays ?? [])
  const g = sorted(streams.gateway?.delays ?? [])
  console.log(
    `\n| streaming (${measured} streams × 20 events, 5 ms apart, after ${warmUp}) | direct | gateway | difference |`,
  )
  console.log('|---|---|---|---|')
  const ttfbD = median(streams.direct?.ttfb ?? [])
  const ttfbG = median(streams.gateway?.ttfb ?? [])
  console.log(
    `| time to first byte, median | ${ttfbD.toFixed(2)} ms | ${ttfbG.toFixed(2)} ms | ${(ttfbG - ttfbD).toFixed(2)} ms |`,
  )
  console.log(
    `| event forwarding delay p50 | ${us(percentile(d, 0.5))} | ${us(percentile(g, 0.5))} | ${us(percentile(g, 0.5) - percentile(d, 0.5))} |`,
  )
  console.log(
    `| event forwarding delay p99 | ${us(percentile(d, 0.99))} | ${us(percentile(g, 0.99))} | ${us(percentile(g, 0.99) - percentile(d, 0.99))} |`,
  )
  console.log(
    `| reads per stream (21 = unbatched) | ${median(streams.direct?.reads ?? [])} | ${median(streams.gateway?.reads ?? [])} | |`,
  )
  console.log('\n| memory (RSS) | MiB |')
  console.log('|---|---|')
  console.log(
    `| idle, after start | ${idle.rss.toFixed(1)} (anonymous ${idle.anon.toFixed(1)}, file-backed ${idle.file.toFixed(1)}) |`,
  )
  console.log(`| peak during the 64-connection load | ${underLoad.peak.toFixed(1)} |`)
  console.log(
    `| ${open} concurrent open streams | ${withStreams.rss.toFixed(1)} (anonymous ${withStreams.anon.toFixed(1)}) |`,
  )
}

await main()
