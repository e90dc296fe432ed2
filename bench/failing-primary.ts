// The cost of a failing primary: step 1 always answers 429 after 50 ms. While it cools down, a request
// through [primary, secondary] should cost what a request to a route of [secondary] alone costs.
//
//   npm run bench:failover [-- --requests 2000 --rounds 5]
//
// Everything runs on 127.0.0.1: a Node upstream stand-in, and two gateway processes started as users
// start them. Rounds alternate between the two gateways so machine drift hits both alike.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'

const { values } = parseArgs({
  options: { requests: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '5' } },
})
const requests = Number(values.requests)
const rounds = Number(values.rounds)
const key = 'bench-gateway-key-0000000000'
const answer = JSON.stringify({
  id: 'x',
  object: 'chat.completion',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
})

async function startUpstream(hinted: boolean) {
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (req.url?.startsWith('/primary')) {
        setTimeout(() => {
          res.writeHead(429, {
            'content-type': 'application/json',
            ...(hinted ? { 'retry-after': '3600' } : {}),
          })
          res.end('{"error":{"message":"rate limited"}}')
        }, 50)
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(answer)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, port: (server.address() as AddressInfo).port }
}

async function startGateway(upstreamPort: number, steps: string[]) {
  const file = join(tmpdir(), `ai-gateway-bench-${process.pid}-${steps.join('-')}.yaml`)
  const base = `http://127.0.0.1:${upstreamPort}`
  writeFileSync(
    file,
    `api_key: ${key}
port: 0
host: 127.0.0.1
log_level: info
providers:
  - { name: primary, api_key: sk-primary-0000, base_url: "${base}/primary/v1" }
  - { name: secondary, api_key: sk-secondary-0000, base_url: "${base}/secondary/v1" }
routes:
  - name: r
    steps:
${steps.map((p) => `      - { provider: ${p}, model: m }`).join('\n')}
`,
  )
  const child = spawn(
    process.execPath,
    [join(import.meta.dirname, '..', 'bin', 'ai-gateway.js'), '--config', file],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  // The listening line names the port; after it, the log lines are drained unread (logging stays on,
  // as in production).
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = ''
    const onData = (chunk: Buffer) => {
      buffered += chunk
      const match = /"port":(\d+),[^\n]*"msg":"listening"/.exec(buffered)
      if (match === null) return
      child.stdout.off('data', onData)
      child.stdout.resume()
      resolve(Number(match[1]))
    }
    child.stdout.on('data', onData)
    child.once('exit', () => reject(new Error('gateway exited')))
  })
  return { child, port }
}

async function measure(port: number, count: number): Promise<number[]> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 })
  const body = JSON.stringify({ model: 'r', messages: [{ role: 'user', content: 'hi' }] })
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }
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

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

async function scenario(hinted: boolean) {
  const upstream = await startUpstream(hinted)
  const both = await startGateway(upstream.port, ['primary', 'secondary'])
  const direct = await startGateway(upstream.port, ['secondary'])
  const first = await measure(both.port, 1)
  await measure(direct.port, 200)
  await measure(both.port, 200)
  const stats = {
    both: { p50: [] as number[], p99: [] as number[] },
    direct: { p50: [] as number[], p99: [] as number[] },
  }
  let primaryCalls = 0
  for (let round = 0; round < rounds; round++) {
    for (const [name, gw] of [
      ['both', both],
      ['direct', direct],
    ] as const) {
      const sorted = (await measure(gw.port, requests)).sort((a, b) => a - b)
      stats[name].p50.push(percentile(sorted, 0.5))
      stats[name].p99.push(percentile(sorted, 0.99))
    }
  }
  primaryCalls =
    (await fetchStatus(both.port)).targets.find((t) => t.provider === 'primary')?.recent.attempts ?? 0
  both.child.kill('SIGTERM')
  direct.child.kill('SIGTERM')
  upstream.server.close()
  await sleep(100)
  return {
    first: first[0] as number,
    both: { p50: median(stats.both.p50), p99: median(stats.both.p99) },
    direct: { p50: median(stats.direct.p50), p99: median(stats.direct.p99) },
    primaryCalls,
  }
}

async function fetchStatus(port: number) {
  const res = await fetch(`http://127.0.0.1:${port}/v1/gateway/status`, {
    headers: { authorization: `Bearer ${key}` },
  })
  return (await res.json()) as { targets: { provider: string; recent: { attempts: number } }[] }
}

const us = (n: number) => `${n.toFixed(0)} µs`
console.log(
  `failing primary: ${rounds} interleaved rounds × ${requests} sequential requests, one connection, medians of rounds`,
)
for (const hinted of [true, false]) {
  const r = await scenario(hinted)
  console.log(
    `\n${hinted ? '429 with Retry-After: 3600 (firm cooldown)' : '429 without a hint (cooldown 10 s, doubling)'}`,
  )
  console.log(`  first request (tries the primary, 50 ms): ${(r.first / 1000).toFixed(1)} ms`)
  console.log(`  [primary, secondary]  p50 ${us(r.both.p50)}  p99 ${us(r.both.p99)}`)
  console.log(`  [secondary] alone     p50 ${us(r.direct.p50)}  p99 ${us(r.direct.p99)}`)
  console.log(
    `  ratio p50 ${(r.both.p50 / r.direct.p50).toFixed(2)}  p99 ${(r.both.p99 / r.direct.p99).toFixed(2)}`,
  )
  console.log(`  requests that reached the primary in the last 5 min: ${r.primaryCalls}`)
}
