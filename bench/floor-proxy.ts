// The Node.js floor: the least a Node proxy can do per request (node:http in, undici out, JSON parsed
// both ways, no auth, routing, logging or metrics). bench/proxy.ts measures it beside the gateway, so
// the gateway's own cost is told apart from what Node itself costs on the machine.
//
//   node bench/floor-proxy.ts PORT UPSTREAM_ORIGIN

import { createServer } from 'node:http'
import { Agent } from 'undici'

const [port = '0', origin = 'http://127.0.0.1:8081'] = process.argv.slice(2)
const agent = new Agent({ keepAliveTimeout: 4_000 })

createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (chunk: Buffer) => chunks.push(chunk))
  req.on('end', async () => {
    const body = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>
    body.model = 'bench-model'
    const upstream = await agent.request({
      origin,
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer floor' },
      body: JSON.stringify(body),
    })
    // Sent on as text: node:http writes a string body in one piece with the head.
    const answer = await upstream.body.text()
    JSON.parse(answer)
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) })
    res.end(answer)
  })
}).listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\n'))
