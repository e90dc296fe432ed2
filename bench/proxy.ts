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
  root,
  startGateway,
  startSseServer,
  streamOnce,
  timeToHealthy,
  writeTempConfig,
} from './lib.ts'
import { type HopResults, printHop, printMemory, printStreams, type StreamSamples } from './report.ts'
import { printTargets } from './targets.ts'

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

/** Latency at one connection and throughput at 64, each target in turn within every round. */
function measureHop(targets: Record<string, string>): HopResults {
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
  const latency = (name: string) => ({
    p50: median(one[name]?.p50 ?? []),
    p99: median(one[name]?.p99 ?? []),
  })
  const rps = (name: string) => median(many[name] ?? [])
  // Ratios are taken within each round, then their median: a slow moment of the machine hits both
  // sides of a ratio alike.
  const ratio = (name: string, to: string) =>
    median((many[name] ?? []).map((value, round) => value / (many[to]?.[round] ?? Number.NaN)))
  return { latency, rps, ratio }
}

// The gateway's stream route asks the SSE server for its default 20 events 5 ms apart. The first
// streams warm up both paths (as the wrk runs do for the JSON path) and are not counted.
const [warmUp, measured] = [5, 40]

/** Streams direct and through the gateway, interleaved. */
async function measureStreams(urls: { direct: string; gateway: string }, dispatcher: Agent) {
  const auth = { authorization: `Bearer ${benchKey}` }
  const streams: Record<'direct' | 'gateway', StreamSamples> = {
    direct: { ttfb: [], delays: [], reads: [] },
    gateway: { ttfb: [], delays: [], reads: [] },
  }
  for (let i = 0; i < warmUp + measured; i++) {
    for (const name of ['direct', 'gateway'] as const) {
      const r = await streamOnce(urls[name], name === 'gateway' ? auth : {}, dispatcher)
      if (i < warmUp) continue
      streams[name].ttfb.push(r.ttfbMs)
      streams[name].delays.push(...r.delays)
      streams[name].reads.push(r.reads)
    }
  }
  return streams
}

/** RSS of a gateway holding `open` concurrent streams (each 200 events, 50 ms apart: ten seconds long). */
async function memoryWithOpenStreams(
  open: number,
  ssePort: number,
  command: string[] | undefined,
  dispatcher: Agent,
) {
  const longRoute = `api_key: ${benchKey}\nport: 0\nhost: 127.0.0.1\nproviders:\n  - { name: sse, base_url: "http://127.0.0.1:${ssePort}/v1?count=200&gap=50" }\nroutes:\n  - { name: stream, steps: [{ provider: sse, model: m }] }\n`
  const held = await startGateway(writeTempConfig(longRoute), command === undefined ? {} : { command })
  const heldRequests = Array.from({ length: open }, () =>
    request(`http://127.0.0.1:${held.port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${benchKey}` },
      body: JSON.stringify({ model: 'stream', stream: true, messages: [] }),
      dispatcher,
    }).then((res) => res.body.text()),
  )
  await sleep(1_500)
  const memory = memoryOf(held.pid)
  await Promise.allSettled(heldRequests)
  await held.stop()
  return memory
}

/** Median of 5 starts of the gateway under test, from spawn to a healthy /health. */
async function startupMs(command: string[]): Promise<number> {
  const port = await freePort()
  const config = writeTempConfig(
    `api_key: ${benchKey}\nport: ${port}\nhost: 127.0.0.1\nproviders: [{ name: p, base_url: "http://127.0.0.1:9/v1" }]\nroutes: [{ name: r, steps: [{ provider: p, model: m }] }]\n`,
  )
  const samples: number[] = []
  for (let i = 0; i < 5; i++)
    samples.push(await timeToHealthy(command[0] as string, [...command.slice(1), '--config', config], port))
  return median(samples)
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
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  await sleep(500)
  const gatewayUrl = `http://127.0.0.1:${gateway.port}/v1/chat/completions`
  const hop = measureHop({
    direct: `http://127.0.0.1:${upstreamPort}/v1/chat/completions`,
    nginx: `http://127.0.0.1:${hopPort}/v1/chat/completions`,
    'node floor': `http://127.0.0.1:${floorPort}/v1/chat/completions`,
    gateway: gatewayUrl,
  })
  const underLoad = memoryOf(gateway.pid)
  floor.kill()

  const dispatcher = new Agent({ connections: 2_000 })
  const streams = await measureStreams(
    { direct: `http://127.0.0.1:${sse.port}/v1/chat/completions`, gateway: gatewayUrl },
    dispatcher,
  )
  await gateway.stop()
  const open = Number(values.streams)
  const withStreams = await memoryWithOpenStreams(open, sse.port, command, dispatcher)
  await dispatcher.close()
  stopNginx()
  sse.stop()
  const startup = await startupMs(command ?? [process.execPath, join(root, 'bin', 'ai-gateway.js')])

  console.log(`proxy benchmark: ${rounds} interleaved rounds, wrk ${seconds} s each; medians of rounds`)
  console.log(`machine: ${machine()}\n`)
  printHop(hop)
  const stream = printStreams(streams, { measured, warmUp })
  printMemory({ idle, underLoad, withStreams, open })
  console.log(`\nstart-up to a healthy /health: ${Math.round(startup)} ms (median of 5)`)
  const { direct, gw, nodeFloor } = {
    direct: hop.latency('direct'),
    gw: hop.latency('gateway'),
    nodeFloor: hop.latency('node floor'),
  }
  printTargets({
    addedP50: gw.p50 - direct.p50,
    addedP99: gw.p99 - direct.p99,
    floorAddedP50: nodeFloor.p50 - direct.p50,
    floorAddedP99: nodeFloor.p99 - direct.p99,
    throughputRatio: hop.ratio('gateway', 'nginx'),
    ...stream,
    rssIdle: idle.rss,
    rssPeak: underLoad.peak,
    rssStreams: withStreams.rss,
    streams: open,
    startupMs: startup,
  })
}

await main()
