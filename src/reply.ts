// Writing an answer to one exchange: its head (request id, CORS, the drain's `connection: close`), a
// text or JSON body, or an error as its OpenAI envelope.

import { endWhileReceiving } from './client-errors.ts'
import type { GatewayError } from './errors.ts'
import type { Redactor } from './redact.ts'
import type { Exchange } from './server.ts'

/**
 * Starts the response with every header at once, the request id among them. A header set earlier with
 * `setHeader` would send node:http down its merging path, which re-validates every header one by one:
 * measurable on every request.
 */
export function writeHead(
  exchange: Exchange,
  status: number,
  headers: Readonly<Record<string, string | number>>,
): void {
  const { cors } = exchange
  const all: Record<string, string | number> =
    cors === undefined
      ? { 'x-request-id': exchange.requestId, ...headers }
      : { 'x-request-id': exchange.requestId, ...cors, ...headers }
  // While draining, a request on a kept-alive connection is still answered, and the answer ends the
  // connection, so the client takes its next request elsewhere instead of having it cut.
  if (exchange.drain.draining) all.connection = 'close'
  exchange.res.writeHead(status, all)
}

export function sendText(
  exchange: Exchange,
  status: number,
  contentType: string,
  text: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  writeHead(exchange, status, {
    ...headers,
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
  })
  exchange.res.end(text)
}

export function sendJson(exchange: Exchange, status: number, body: unknown): void {
  sendText(exchange, status, 'application/json', JSON.stringify(body))
}

export function sendError(exchange: Exchange, error: GatewayError, redact: Redactor): void {
  // Mid-response there is no envelope to send; cutting the connection is the honest signal left.
  if (exchange.res.headersSent) {
    exchange.res.destroy()
    return
  }
  const text = redact(JSON.stringify(error.toEnvelope()))
  // A body not read yet (refused before it was: no key, no such path) would be read to its end for the
  // connection to serve again, however long or slow it is. The connection ends instead, once the body
  // has come or soon after the answer.
  const { req, res } = exchange
  const pending =
    !req.complete &&
    (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length']) > 0)
  if (!pending) {
    sendText(exchange, error.status, 'application/json', text, error.headers)
    return
  }
  const length = Buffer.byteLength(text)
  const headers = { ...error.headers, connection: 'close', 'content-type': 'application/json' }
  writeHead(exchange, error.status, { ...headers, 'content-length': length })
  endWhileReceiving(req, res, error, text)
}
