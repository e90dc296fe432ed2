// The built-in demo: two fake providers on loopback (one always rate limited, one that answers every
// endpoint, streaming included) behind the real gateway, so a first run shows a fallback without any key.

import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseConfig } from './config.ts'
import { createGateway, type Gateway } from './gateway.ts'

type Env = Readonly<Record<string, string | undefined>>

const demoConfig = `
api_key: \${AI_GATEWAY_DEMO_KEY:-demo-key}
port: \${PORT:-8080}
default_timeout: 10s
providers:
  - name: busy-free-tier
    api_key: demo-provider-key-1
    base_url: \${DEMO_BUSY_URL}
  - name: local-model
    api_key: demo-provider-key-2
    base_url: \${DEMO_LOCAL_URL}
routes:
  - name: demo
    steps:
      - provider: busy-free-tier
        model: big-model
      - provider: local-model
        model: small-model
  - name: local
    steps:
      - provider: local-model
        model: small-model
`

export async function startDemo(env: Env): Promise<{ gateway: Gateway; cleanup: () => Promise<void> }> {
  const busy = await listen(createServer(rateLimited))
  const local = await listen(createServer(serveLocal))
  const config = parseConfig(
    demoConfig,
    { ...env, DEMO_BUSY_URL: `${busy.url}/v1`, DEMO_LOCAL_URL: `${local.url}/v1` },
    '(built-in demo)',
  )
  const gateway = await createGateway(config)
  const start = gateway.start.bind(gateway)
  return {
    gateway: {
      ...gateway,
      async start() {
        const address = await start()
        process.stderr.write(banner(address.port, config.api_key))
        return address
      },
    },
    cleanup: async () => {
      busy.server.close()
      local.server.close()
    },
  }
}

async function listen(server: Server): Promise<{ server: Server; url: string }> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

function rateLimited(req: IncomingMessage, res: ServerResponse): void {
  req.resume()
  res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '30' })
  res.end(
    JSON.stringify({
      error: { message: 'Rate limit reached for free tier', type: 'requests', code: 'rate_limit_exceeded' },
    }),
  )
}

/** The local model: chat completions, legacy completions (both streaming too) and embeddings. */
function serveLocal(req: IncomingMessage, res: ServerResponse): void {
  // One odd request must not take the demo down with it.
  answer(req, res).catch(() => res.destroy())
}

interface DemoRequest {
  model: string
  stream?: boolean
  messages?: { content?: unknown }[]
  prompt?: unknown
  input?: unknown
}

async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
  let raw = ''
  for await (const chunk of req) raw += chunk
  const body = JSON.parse(raw) as DemoRequest
  if (req.url?.endsWith('/embeddings')) {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(embeddingsOf(body)))
    return
  }
  // Legacy completions carry `prompt` and answer with `text`; chat, `messages` and `message`/`delta`.
  const legacy = req.url?.endsWith('/v1/completions') === true
  const said = legacy ? body.prompt : body.messages?.at(-1)?.content
  const text = `Hello from the demo provider! You said: ${typeof said === 'string' ? said : '(something)'}`
  const id = `${legacy ? 'cmpl' : 'chatcmpl'}-demo-${Date.now()}`
  const created = Math.floor(Date.now() / 1000)
  const usage = {
    prompt_tokens: 12,
    completion_tokens: text.split(' ').length,
    total_tokens: 12 + text.split(' ').length,
  }
  if (body.stream !== true) {
    const choice = legacy
      ? { index: 0, text, finish_reason: 'stop' }
      : { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }
    const object = legacy ? 'text_completion' : 'chat.completion'
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ id, object, created, model: body.model, choices: [choice], usage }))
    return
  }
  const object = legacy ? 'text_completion' : 'chat.completion.chunk'
  const chunk = (delta: { role?: string; content?: string }, finish: string | null) => {
    const choice = legacy
      ? { index: 0, text: delta.content ?? '', finish_reason: finish }
      : { index: 0, delta, finish_reason: finish }
    return `data: ${JSON.stringify({ id, object, created, model: body.model, choices: [choice] })}\n\n`
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  if (!legacy) res.write(chunk({ role: 'assistant', content: '' }, null))
  for (const [i, word] of text.split(' ').entries()) {
    await sleep(60)
    res.write(chunk({ content: i === 0 ? word : ` ${word}` }, null))
  }
  res.write(chunk({}, 'stop'))
  res.end('data: [DONE]\n\n')
}

/** A small made-up vector per input. */
function embeddingsOf(body: DemoRequest): object {
  const inputs: unknown[] = Array.isArray(body.input) ? body.input : [body.input]
  return {
    object: 'list',
    data: inputs.map((input, index) => ({
      object: 'embedding',
      index,
      embedding: Array.from({ length: 8 }, (_, i) => Math.sin(JSON.stringify(input).length + i)),
    })),
    model: body.model,
    usage: { prompt_tokens: inputs.length, total_tokens: inputs.length },
  }
}

function banner(port: number, key: string): string {
  const base = `http://localhost:${port}`
  const auth = `-H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json'`
  return `
ai-gateway demo: route "demo" tries busy-free-tier (always 429, Retry-After: 30) and falls back to
local-model. For the next 30 s busy-free-tier is skipped without a call; the status endpoint shows it.

  curl -s ${base}/v1/models -H 'Authorization: Bearer ${key}'
  curl -s ${base}/v1/gateway/status -H 'Authorization: Bearer ${key}'
  curl -si ${base}/v1/chat/completions ${auth} \\
    -d '{"model":"demo","messages":[{"role":"user","content":"Hi there"}]}'
  curl -sN ${base}/v1/chat/completions ${auth} \\
    -d '{"model":"demo","stream":true,"messages":[{"role":"user","content":"Stream this please"}]}'

Watch the x-gateway-provider header and the JSON log lines below. Ctrl-C stops.

`
}
