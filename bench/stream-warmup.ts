// Whether the stream path is warm when `npm run bench` measures it: a stream's first byte through the
// gateway over direct, on a fresh gateway and after more streams, with and without a JSON load first
// (the proxy benchmark runs its JSON loads before its streams).
//
//   npm run build && npm run bench:warmup -- --gateway dist/ai-gateway --rounds 3

import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { benchKey, median, root, startGateway, startSseServer, streamOnce, writeTempConfig } from './lib.ts'

const { values } = parseArgs({
  options: { gateway: { type: 'string' }, rounds: { type: 'string', default: '3' } },
})
const command = values.gateway === undefined ? undefined : [join(root, values.gateway)]
const dispatcher = new Agent({ connections: 200 })
const auth = { authorization: `Bearer ${benchKey}` }

/** Median of `count` first-byte differences, gateway over direct, the two interleaved. */
async function firstByteOver(count: number, direct: string, gateway: string): Promise<number> {
  const differences: number[] = []
  for (let i = 0; i < count; i++) {
    const d = await streamOnce(direct, {}, dispatcher)
    const g = await streamOnce(gateway, auth, dispatcher)
    differences.push(g.ttfbMs - d.ttfbMs)
  }
  return median(differences)
}

/** `total` streams through the gateway, `concurrency` at a time, not measured. */
async function moreStreams(gateway: string, total: number, concurrency: number): Promise<void> {
  for (let done = 0; done < total; done += concurrency)
    await Promise.all(Array.from({ length: concurrency }, () => streamOnce(gateway, auth, dispatcher)))
}

/** `total` JSON chat completions through the gateway, 64 at a time. */
async function jsonLoad(url: string, total: number): Promise<void> {
  const body = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'hi' }] })
  const one = async () => {
    const res = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body,
      dispatcher,
    })
    await res.body.text()
  }
  for (let done = 0; done < total; done += 64) await Promise.all(Array.from({ length: 64 }, one))
}

const answer = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'bench-model',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello!' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 12, completion_tokens: 2, total_tokens: 14 },
})
const json = createServer((req, res) => {
  req.resume()
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(answer))
}).listen(0, '127.0.0.1')
await once(json, 'listening')
const sse = await startSseServer()
const config = writeTempConfig(`api_key: ${benchKey}
port: 0
host: 127.0.0.1
providers:
  - { name: json, base_url: "http://127.0.0.1:${(json.address() as AddressInfo).port}/v1" }
  - { name: sse, base_url: "http://127.0.0.1:${sse.port}/v1" }
routes:
  - { name: bench, steps: [{ provider: json, model: m }] }
  - { name: stream, steps: [{ provider: sse, model: m }] }
`)
const direct = `http://127.0.0.1:${sse.port}/v1/chat/completions`

const rows: Record<string, number[]> = {}
const record = (label: string, ms: number) => {
  rows[label] ??= []
  rows[label].push(ms)
}
for (let round = 0; round < Number(values.rounds); round++) {
  for (const withJson of [false, true]) {
    const gw = await startGateway(config, command === undefined ? {} : { command })
    const base = `http://127.0.0.1:${gw.port}/v1/chat/completions`
    const first = withJson ? 'after a JSON load (20,000 requests)' : 'fresh'
    if (withJson) await jsonLoad(base, 20_000)
    await moreStreams(base, 5, 1)
    record(`${first}, after 5 streams`, await firstByteOver(40, direct, base))
    await moreStreams(base, 300, 30)
    record(`${first}, after 300 more streams`, await firstByteOver(40, direct, base))
    await gw.stop()
  }
}
sse.stop()
json.close()
await dispatcher.close()

console.log(
  '| gateway state | stream first byte, gateway over direct (median of 40 paired differences, per round) |',
)
console.log('|---|---|')
for (const [label, samples] of Object.entries(rows))
  console.log(`| ${label} | ${samples.map((ms) => `+${ms.toFixed(2)} ms`).join(', ')} |`)
