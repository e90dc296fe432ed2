// A local OTLP/HTTP collector for tests: records every export (the gateway sends OTLP JSON) and reads
// spans, log records and resource attributes back out of them.

import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Export {
  path: string
  headers: IncomingHttpHeaders
  raw: string
  body: Record<string, unknown>
}

export class FakeCollector {
  readonly exports: Export[] = []
  readonly #server: Server
  constructor(server: Server) {
    this.#server = server
  }
  static async start(): Promise<FakeCollector> {
    const server = createServer()
    const collector = new FakeCollector(server)
    server.on('request', async (req, res) => {
      let raw = ''
      for await (const chunk of req) raw += chunk
      collector.exports.push({
        path: req.url ?? '',
        headers: req.headers,
        raw,
        body: JSON.parse(raw) as Record<string, unknown>,
      })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return collector
  }
  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`
  }
  async close(): Promise<void> {
    this.#server.closeAllConnections()
    this.#server.close()
  }
  spans(): Span[] {
    return this.exports.flatMap((e) =>
      ((e.body.resourceSpans ?? []) as { scopeSpans: { spans: Span[] }[] }[]).flatMap((r) =>
        r.scopeSpans.flatMap((s) => s.spans),
      ),
    )
  }
  logs(): LogRecord[] {
    return this.exports.flatMap((e) =>
      ((e.body.resourceLogs ?? []) as { scopeLogs: { logRecords: LogRecord[] }[] }[]).flatMap((r) =>
        r.scopeLogs.flatMap((s) => s.logRecords),
      ),
    )
  }
  resourceAttributes(): Record<string, unknown> {
    const first = this.exports.find((e) => e.body.resourceSpans !== undefined)
    const resource = (
      first?.body.resourceSpans as { resource: { attributes: Attribute[] } }[] | undefined
    )?.[0]?.resource
    return attributes(resource?.attributes ?? [])
  }
}

export interface Attribute {
  key: string
  value: { stringValue?: string; intValue?: number | string; boolValue?: boolean; doubleValue?: number }
}
export interface Span {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes: Attribute[]
  status?: { code?: number; message?: string }
  events?: { name: string }[]
}
export interface LogRecord {
  traceId?: string
  spanId?: string
  flags?: number
  body?: { stringValue?: string }
  attributes: Attribute[]
}

export const attributes = (list: Attribute[]): Record<string, unknown> =>
  Object.fromEntries(
    list.map((a) => [
      a.key,
      a.value.stringValue ?? a.value.intValue ?? a.value.boolValue ?? a.value.doubleValue,
    ]),
  )

export const SERVER = 2
export const CLIENT = 3
export const ERROR = 2
