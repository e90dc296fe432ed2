// The cost of a failing primary: step 1 always answers 429 after 50 ms. While it cools down, a request
// through [primary, secondary] should cost what a request to a route of [secondary] alone costs.
//
//   npm run bench:failover [-- --requests 2000 --rounds 5]
//
// Everything runs on 127.0.0.1: a Node upstream stand-in, and two gateway processes started as users
// start them. Rounds alternate between the two gateways so machine drift hits both alike.

import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import {
  benchKey,
  type GatewayProcess,
  median,
  percentile,
  sequentialLatencies,
  startGateway,
  writeTempConfig,
} from './lib.ts'

const { values } = parseArgs({
  options: { requests: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '5' } },
})
const requests = Number(values.requests)
const rounds = Number(values.rounds)
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

function gatewayFor(upstreamPort: number, steps: string[]): Promise<GatewayProcess> {
  const base = `http://127.0.0.1:${upstreamPort}`
  return startGateway(
    writeTempConfig(`api_key: ${benchKey}
port: 0
host: 127.0.0.1
providers:
  - { name: primary, api_key: sk-primary-0000, base_url: "${base}/primary/v1" }
  - { name: secondary, api_key: sk-secondary-0000, base_url: "${base}/secondary/v1" }
routes:
  - name: r
    steps:
${steps.map((p) => `      - { provider: ${p}, model: m }`).join('\n')}
`),
  )
}

async function scenario(hinted: boolean) {
  const upstream = await startUpstream(hinted)
  const both = await gatewayFor(upstream.port, ['primary', 'secondary'])
  const direct = await gatewayFor(upstream.port, ['secondary'])
  const first = await sequentialLatencies(both.port, 1)
  await sequentialLatencies(direct.port, 200)
  await sequentialLatencies(both.port, 200)
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
      const sorted = (await sequentialLatencies(gw.port, requests)).sort((a, b) => a - b)
      stats[name].p50.push(percentile(sorted, 0.5))
      stats[name].p99.push(percentile(sorted, 0.99))
    }
  }
  primaryCalls =
    (await fetchStatus(both.port)).targets.find((t) => t.provider === 'primary')?.recent.attempts ?? 0
  await both.stop()
  await direct.stop()
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
    headers: { authorization: `Bearer ${benchKey}` },
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
