// A/B latency of gateway variants: the same request, sequentially on one keep-alive connection, through
// each variant in interleaved rounds, compared with the upstream called directly.
//
//   npm run bench:ab [-- --baseline <git-rev>] [--requests 3000] [--rounds 5]
//
// Variants: the working tree with telemetry off, the working tree exporting OTLP to a local sink, and
// (with --baseline) a git revision checked out in a temporary worktree that shares node_modules.
// Everything runs on 127.0.0.1 and stops by itself.

import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, symlinkSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import {
  benchKey,
  type GatewayProcess,
  median,
  percentile,
  root,
  sequentialLatencies,
  startGateway,
  writeTempConfig,
} from './lib.ts'

const { values } = parseArgs({
  options: {
    baseline: { type: 'string' },
    requests: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '5' },
  },
})
const requests = Number(values.requests)
const rounds = Number(values.rounds)
const answer = JSON.stringify({
  id: 'x',
  object: 'chat.completion',
  model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
})

async function listen(handler: Parameters<typeof createServer>[1]) {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, port: (server.address() as AddressInfo).port }
}

const upstream = await listen((req, res) => {
  req.resume()
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) })
    res.end(answer)
  })
})
// A collector that accepts everything, so the OTLP variant pays for exporting but nothing fails.
const sink = await listen((req, res) => {
  req.resume()
  req.on('end', () => res.end('{}'))
})

const config = writeTempConfig(
  `api_key: ${benchKey}
port: 0
host: 127.0.0.1
providers:
  - { name: up, api_key: sk-bench-000000, base_url: "http://127.0.0.1:${upstream.port}/v1" }
routes:
  - { name: r, steps: [{ provider: up, model: m }] }
`,
)

interface Variant {
  readonly label: string
  readonly gateway: GatewayProcess
}

async function startVariant(label: string, dir: string, env: Record<string, string> = {}): Promise<Variant> {
  return { label, gateway: await startGateway(config, { dir, env }) }
}

function baselineTree(rev: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ai-gateway-baseline-'))
  execFileSync('git', ['-C', root, 'worktree', 'add', '--detach', dir, rev], { stdio: 'ignore' })
  if (!existsSync(join(dir, 'node_modules')))
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'))
  process.on('exit', () =>
    execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', dir], { stdio: 'ignore' }),
  )
  return dir
}

const variants: Variant[] = [
  await startVariant('working tree, telemetry off', root),
  await startVariant('working tree, OTLP export on', root, {
    OTLP_ENDPOINT: `http://127.0.0.1:${sink.port}`,
  }),
]
if (values.baseline !== undefined)
  variants.push(await startVariant(`${values.baseline}, telemetry off`, baselineTree(values.baseline)))

const targets = [
  { label: 'upstream direct', port: upstream.port },
  ...variants.map((v) => ({ label: v.label, port: v.gateway.port })),
]
for (const t of targets) await sequentialLatencies(t.port, 500) // warm-up
const results = new Map(targets.map((t) => [t.label, { p50: [] as number[], p99: [] as number[] }]))
for (let round = 0; round < rounds; round++) {
  for (const t of targets) {
    const sorted = (await sequentialLatencies(t.port, requests)).sort((a, b) => a - b)
    results.get(t.label)?.p50.push(percentile(sorted, 0.5))
    results.get(t.label)?.p99.push(percentile(sorted, 0.99))
  }
}
await Promise.all(variants.map((v) => v.gateway.stop()))
upstream.server.close()
sink.server.close()
await sleep(100)

const direct = results.get('upstream direct') as { p50: number[]; p99: number[] }
console.log(
  `${rounds} interleaved rounds × ${requests} sequential requests on one connection; medians of rounds`,
)
console.log('| target | p50 | p99 | added p50 over direct | added p99 over direct |')
console.log('|---|---|---|---|---|')
for (const [label, r] of results) {
  const [p50, p99] = [median(r.p50), median(r.p99)]
  const added =
    label === 'upstream direct'
      ? ''
      : `${(p50 - median(direct.p50)).toFixed(0)} µs | ${(p99 - median(direct.p99)).toFixed(0)} µs`
  console.log(`| ${label} | ${p50.toFixed(0)} µs | ${p99.toFixed(0)} µs | ${added || '– | –'} |`)
}
