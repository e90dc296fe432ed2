// A scripted OpenAI-compatible upstream on 127.0.0.1: each provider prefix has a queue of behaviours,
// one per request, so a test says exactly what each attempt meets.

import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export interface SeenRequest {
  readonly provider: string
  readonly path: string
  readonly headers: IncomingMessage['headers']
  readonly body: Record<string, unknown>
  /** Set when the gateway closed the connection before this response ended. */
  closedEarly: boolean
}

export type Behaviour = (req: SeenRequest, res: ServerResponse) => void | Promise<void>

export class MockUpstream {
  readonly #server: Server
  readonly #queues = new Map<string, Behaviour[]>()
  readonly #fallbacks = new Map<string, Behaviour>()
  readonly seen: SeenRequest[] = []

  private constructor(server: Server) {
    this.#server = server
  }

  static async start(): Promise<MockUpstream> {
    const server = createServer()
    const mock = new MockUpstream(server)
    server.on('request', (req, res) => void mock.#handle(req, res))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return mock
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port
  }

  /** The base URL a provider called `name` is configured with. */
  url(name: string): string {
    return `http://127.0.0.1:${this.port}/${name}/v1`
  }

  /** Queue behaviours for the next requests to `name`, in order. */
  script(name: string, ...behaviours: Behaviour[]): this {
    this.#queues.set(name, [...(this.#queues.get(name) ?? []), ...behaviours])
    return this
  }

  /** What `name` does once its queue is empty. */
  always(name: string, behaviour: Behaviour): this {
    this.#fallbacks.set(name, behaviour)
    return this
  }

  requests(name: string): SeenRequest[] {
    return this.seen.filter((r) => r.provider === name)
  }

  reset(): void {
    this.#queues.clear()
    this.#fallbacks.clear()
    this.seen.length = 0
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections()
    this.#server.close()
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = ''
    for await (const chunk of req) raw += chunk
    const url = req.url ?? '/'
    const provider = url.split('/')[1] ?? ''
    let body: Record<string, unknown> = {}
    try {
      body = JSON.parse(raw) as Record<string, unknown>
    } catch {
      // keep {}: some tests send nothing
    }
    const seen: SeenRequest = { provider, path: url, headers: req.headers, body, closedEarly: false }
    this.seen.push(seen)
    res.on('close', () => {
      if (!res.writableFinished) seen.closedEarly = true
    })
    const behaviour =
      this.#queues.get(provider)?.shift() ?? this.#fallbacks.get(provider) ?? status(500, 'unscripted')
    await behaviour(seen, res)
  }
}

export function completion(
  content: string,
  model = 'upstream-model',
  usage = { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
) {
  return {
    id: 'chatcmpl-mock',
    object: 'chat.completion',
    created: 1_700_000_000,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage,
  }
}

export function chunk(
  delta: Record<string, unknown>,
  finish: string | null = null,
  extra: Record<string, unknown> = {},
) {
  return {
    id: 'chatcmpl-mock',
    object: 'chat.completion.chunk',
    created: 1_700_000_000,
    model: 'upstream-model',
    choices: [{ index: 0, delta, finish_reason: finish }],
    ...extra,
  }
}

/** Answers with the given JSON (and the model the gateway asked for, when `body` is a function). */
export const json =
  (
    code: number,
    body: unknown | ((req: SeenRequest) => unknown),
    headers: Record<string, string> = {},
  ): Behaviour =>
  (req, res) => {
    res.writeHead(code, { 'content-type': 'application/json', ...headers })
    res.end(JSON.stringify(typeof body === 'function' ? (body as (r: SeenRequest) => unknown)(req) : body))
  }

export const ok = (content = 'hello'): Behaviour =>
  json(200, (req: SeenRequest) => completion(content, String(req.body.model)))

export const status = (
  code: number,
  message = `status ${code}`,
  headers: Record<string, string> = {},
): Behaviour => json(code, { error: { message, type: 'mock_error', code: null } }, headers)

export const raw =
  (code: number, text: string, contentType = 'text/plain'): Behaviour =>
  (_req, res) => {
    res.writeHead(code, { 'content-type': contentType })
    res.end(text)
  }

/** Never answers; the connection stays open until the gateway gives up on it. */
export const hang = (): Behaviour => () => new Promise(() => {})

/** Drops the connection without a response. */
export const reset = (): Behaviour => (_req, res) => {
  res.socket?.destroy()
}

interface SseOptions {
  /** Pause before each event after the first. */
  delayMs?: number
  /** How the stream ends: `[DONE]` (default), a clean end without it, a cut connection, or silence. */
  end?: 'done' | 'no_done' | 'cut' | 'hang'
  /** Awaited before each event after the first, to hold the stream at a point the test chooses. */
  gate?: (index: number) => Promise<void>
}

/** A text/event-stream answer; strings are sent as raw `data:` payloads, objects as JSON. */
export const sse =
  (events: (string | object)[], options: SseOptions = {}): Behaviour =>
  async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    for (const [i, event] of events.entries()) {
      if (i > 0 && options.delayMs !== undefined) await sleep(options.delayMs)
      if (i > 0 && options.gate !== undefined) await options.gate(i)
      if (res.destroyed) return
      res.write(`data: ${typeof event === 'string' ? event : JSON.stringify(event)}\n\n`)
    }
    const end = options.end ?? 'done'
    if (end === 'done') res.end('data: [DONE]\n\n')
    else if (end === 'no_done') res.end()
    else if (end === 'cut') res.socket?.destroy()
    else await new Promise(() => {})
  }

/** The usual streamed answer: a role preamble, one chunk per word, a finish chunk. */
export function textChunks(text: string): object[] {
  return [
    chunk({ role: 'assistant', content: '' }),
    ...text.split(' ').map((word, i) => chunk({ content: i === 0 ? word : ` ${word}` })),
    chunk({}, 'stop'),
  ]
}
