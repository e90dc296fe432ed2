// The HTTP server: endpoint matching, auth, request ids, errors as OpenAI envelopes, one access log
// line per request, and graceful close. With client-errors.ts and reply.ts, the only code that knows we
// run on node:http.

import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Usage } from './answer.ts'
import { answerProtocolErrors, refusalOf } from './client-errors.ts'
import { allowsOrigin, type Cors } from './cors.ts'
import { type EndpointTable, matchEndpoint, methodsAt, tableOf } from './endpoint-table.ts'
import { GatewayError, toGatewayError } from './errors.ts'
import type { Logging } from './logger.ts'
import type { Metrics } from './metrics.ts'
import type { Redactor } from './redact.ts'
import { sendError, writeHead } from './reply.ts'
import type { RequestTrace, Telemetry } from './telemetry.ts'
import type { AttemptRecord, SkipRecord } from './trail.ts'

/** Facts a handler leaves for the access log line. */
export interface AccessFacts {
  route?: string
  stream?: boolean
  provider?: string
  model?: string
  attempts?: AttemptRecord[]
  skipped?: SkipRecord[]
  ttfbMs?: number
  usage?: Usage
  streamEnd?: string
  malformedEvents?: number
}

export interface Exchange {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly requestId: string
  readonly path: string
  readonly startedAt: number
  readonly facts: AccessFacts
  readonly trace: RequestTrace
  /** The server's drain state, shared by its exchanges: one flag read when an answer starts. */
  readonly drain: Drain
  /** CORS headers every answer to this request carries, when its origin is allowed. */
  readonly cors: Readonly<Record<string, string>> | undefined
}

interface Drain {
  draining: boolean
}

export interface Endpoint {
  readonly method: 'GET' | 'POST'
  readonly path: string | RegExp
  /** How a pattern path is named in traces, e.g. `/v1/models/{id}`. */
  readonly template?: string
  /** Reachable without the gateway key. */
  readonly public?: boolean
  handle(exchange: Exchange): Promise<void> | void
}

export interface ServerOptions {
  readonly endpoints: readonly Endpoint[]
  readonly isAuthorized: (req: IncomingMessage) => boolean
  readonly logging: Logging
  readonly redact: Redactor
  readonly telemetry: Telemetry
  /** Absent on a server that only serves /metrics, so scrapes do not count themselves. */
  readonly metrics?: Metrics
  /** Absent unless the config allows browser origins. */
  readonly cors?: Cors
}

export interface HttpServer {
  listen(port: number, host: string | undefined): Promise<AddressInfo>
  /** Stop accepting, let in-flight requests finish for up to `graceMs`, then cut what is left. */
  close(graceMs: number): Promise<void>
}

export function createHttpServer(options: ServerOptions): HttpServer {
  const { logger } = options.logging
  const table = tableOf(options.endpoints)
  let inFlight = 0
  let idle: (() => void) | undefined
  const drain: Drain = { draining: false }

  const server: Server = createServer(
    // Above common proxy idle timeouts (Traefik's backend default is 90 s), so a proxy never reuses a
    // connection we are closing.
    // Host is checked in handle: node:http's own refusal has no envelope and never reaches the log.
    { keepAliveTimeout: 95_000, headersTimeout: 60_000, requestTimeout: 300_000, requireHostHeader: false },
    (req, res) => {
      inFlight++
      void handle(req, res, options, table, drain, () => {
        inFlight--
        // A stream whose head went out keep-alive before the drain began leaves an idle connection.
        if (drain.draining) server.closeIdleConnections()
        if (inFlight === 0) idle?.()
      })
    },
  )
  answerProtocolErrors(server)

  return {
    async listen(port, host) {
      server.listen(port, host)
      await once(server, 'listening')
      return server.address() as AddressInfo
    },
    async close(graceMs) {
      drain.draining = true
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeIdleConnections()
      const drained = inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (idle = resolve))
      let timer: NodeJS.Timeout | undefined
      const graceOver = new Promise<'timeout'>((resolve) => (timer = setTimeout(resolve, graceMs, 'timeout')))
      const result = await Promise.race([drained, graceOver])
      clearTimeout(timer)
      if (result === 'timeout') logger.warn({ inFlight }, 'grace period over, closing remaining connections')
      server.closeAllConnections()
      await closed
    },
  }
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  options: ServerOptions,
  table: EndpointTable,
  drain: Drain,
  onFinished: () => void,
): Promise<void> {
  const path = normalizePath(req.url ?? '/')
  const exchange: Exchange = {
    req,
    res,
    requestId: acceptRequestId(req.headers['x-request-id']) ?? randomUUID(),
    path,
    startedAt: performance.now(),
    facts: {},
    trace: options.telemetry.startRequest(req.method ?? 'GET', path, req.headers),
    drain,
    cors: options.cors?.headersFor(req.headers.origin),
  }
  // The request is over when both the handler has returned and the response has closed, in either
  // order (a stream's handler still drains the upstream after the client has its last byte).
  let failure: GatewayError | undefined
  let pending = 2
  const settle = () => {
    if (--pending > 0) return
    finish(options, exchange, failure)
    onFinished()
  }
  // 'close' is emitted once per response; `on` spares the wrapper and removal `once` costs per request.
  res.on('close', settle)
  try {
    // Before the preflight, which would otherwise answer a request without Host.
    if (req.headers.host === undefined && req.httpVersion === '1.1')
      throw new GatewayError('invalid_request', 'An HTTP/1.1 request must carry a Host header.')
    // A browser's preflight carries no key: it asks whether the real request may be sent.
    if (req.method === 'OPTIONS' && options.cors !== undefined && allowsOrigin(exchange.cors))
      preflight(exchange, options.cors, methodsAt(table, exchange.path))
    else await dispatch(exchange, options, table)
  } catch (err) {
    // A client that hung up while sending its body is gone, not a failure of ours: logged as a 499,
    // unless its body was refused as it came (too slow, broken), with an answer written there.
    if (req.destroyed && (err as { code?: unknown })?.code === 'ECONNRESET') {
      failure = refusalOf(res)
      res.destroy()
    } else {
      failure = toGatewayError(err)
      sendError(exchange, failure, options.redact)
    }
  }
  settle()
}

/** The endpoint's handler, once the request may reach it; not async, so it adds no promise of its own. */
function dispatch(exchange: Exchange, options: ServerOptions, table: EndpointTable): Promise<void> | void {
  const endpoint = matchEndpoint(table, exchange.req.method ?? 'GET', exchange.path)
  exchange.trace.named(
    typeof endpoint.path === 'string' ? endpoint.path : (endpoint.template ?? exchange.path),
  )
  if (endpoint.public !== true && !options.isAuthorized(exchange.req)) {
    throw new GatewayError(
      'invalid_api_key',
      'Invalid or missing API key. Send it as X-Api-Key or Authorization: Bearer.',
    )
  }
  return endpoint.handle(exchange)
}

function preflight(exchange: Exchange, cors: Cors, methods: readonly string[]): void {
  if (methods.length === 0) throw new GatewayError('not_found', `Unknown path ${exchange.path}.`)
  const requested = exchange.req.headers['access-control-request-headers']
  writeHead(exchange, 204, cors.preflight(exchange.cors ?? {}, [...methods, 'OPTIONS'], requested))
  exchange.res.end()
}

/** The end of a request: its access log line, its metrics, and the end of its span. */
function finish(options: ServerOptions, exchange: Exchange, failure: GatewayError | undefined): void {
  const { req, res, facts } = exchange
  // 499: the client closed first, as nginx logs it.
  const status = res.writableFinished ? res.statusCode : (refusalOf(res)?.status ?? 499)
  const durationMs = elapsedMs(exchange)
  const head = { requestId: exchange.requestId, method: req.method, path: exchange.path, status, durationMs }
  if (failure?.code === 'internal_error') {
    const line = { ...head, ...exchange.trace.logFields, ...facts, error: failure.code, err: failure.cause }
    options.logging.logger.error(line, 'request')
  } else {
    const error = failure === undefined ? undefined : { error: failure.code }
    options.logging.infoLine('request', head, exchange.trace.logFields, facts, error)
  }
  options.metrics?.observe(facts, status, durationMs)
  exchange.trace.end(() => ({
    status,
    ...(facts.route === undefined ? {} : { route: facts.route }),
    ...(facts.provider === undefined ? {} : { provider: facts.provider }),
    ...(facts.model === undefined ? {} : { model: facts.model }),
    ...(facts.usage === undefined ? {} : { usage: facts.usage }),
    ...(facts.attempts === undefined ? {} : { attempts: facts.attempts.length }),
    ...(facts.streamEnd === undefined ? {} : { streamEnd: facts.streamEnd }),
    ...(facts.skipped === undefined ? {} : { skipped: facts.skipped }),
    ...(failure === undefined ? {} : { error: failure.code }),
  }))
}

/** Milliseconds since the request arrived, to a tenth. */
export function elapsedMs(exchange: Exchange): number {
  return Math.round((performance.now() - exchange.startedAt) * 10) / 10
}

/** A client's request id is kept when it is a sane token, so ids correlate across systems. */
function acceptRequestId(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && /^[\w.:/+=@-]{1,128}$/.test(value) ? value : undefined
}

/**
 * `/v1//chat/completions/?x` → `/v1/chat/completions`: clients build paths from base URLs carelessly.
 * A request target in absolute form (`http://host/v1/models`, which HTTP/1.1 servers must accept) is
 * reduced to its path.
 */
export function normalizePath(url: string): string {
  // The usual case, a clean path, costs one scan.
  if (!/[?]|\/\/|.\/$/.test(url)) return url
  const target = url.startsWith('/') ? url : `/${url.replace(/^[a-z][a-z\d+.-]*:\/\/[^/?#]*\/?/i, '')}`
  const query = target.indexOf('?')
  const path = (query === -1 ? target : target.slice(0, query)).replace(/\/{2,}/g, '/')
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
}
