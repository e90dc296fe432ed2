// The streaming upstream of bench/proxy.ts, in a process of its own as a provider is: `count` events
// `gap` ms apart (query parameters), each stamped with its send time in µs since the epoch. Prints
// its port once it listens.
//
//   node bench/sse-upstream.ts

import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const server = createServer((req, res) => {
  req.resume()
  const url = new URL(req.url ?? '/', 'http://x')
  const count = Number(url.searchParams.get('count') ?? 20)
  const gapMs = Number(url.searchParams.get('gap') ?? 5)
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  let i = 0
  const send = () => {
    if (res.destroyed) return
    const t = Math.round((performance.timeOrigin + performance.now()) * 1000)
    res.write(
      `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"w${i} "},"finish_reason":null}],"t":${t}}\n\n`,
    )
    if (++i < count) setTimeout(send, gapMs)
    else setTimeout(() => res.end('data: [DONE]\n\n'), gapMs)
  }
  send()
})
server.listen(0, '127.0.0.1')
await once(server, 'listening')
process.stdout.write(`${(server.address() as AddressInfo).port}\n`)
