// Answers to what never becomes a request: bytes node:http cannot parse, a request too slow to
// arrive, an Expect it cannot meet, a CONNECT. OpenAI envelopes too, so a client reads every error
// the same way.

import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { GatewayError } from './errors.ts'

export function answerProtocolErrors(server: Server): void {
  server.on('clientError', onClientError)
  // An Expect other than 100-continue (which node:http answers itself).
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    const error = new GatewayError('expectation_failed', 'Of Expect headers only 100-continue is supported.')
    const body = envelopeOf(error)
    res.writeHead(error.status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    })
    res.end(body)
  })
  server.on('connect', (_req: IncomingMessage, socket: Duplex) =>
    endRaw(
      socket,
      new GatewayError('method_not_allowed', 'CONNECT is not served: this is an API, not a proxy.'),
    ),
  )
}

/**
 * Bytes node:http cannot parse, or a request too slow to arrive. When the connection has an answer in
 * flight (a request read whole before the bad bytes came: pipelined garbage, a Content-Length counted
 * short), that answer is let finish and the connection ends after it; an error written now would land
 * in the middle of it. Otherwise the error goes out in an OpenAI envelope, as every other one does.
 */
function onClientError(err: NodeJS.ErrnoException, duplex: Duplex): void {
  const socket = duplex as Socket & { _httpMessage?: ServerResponse | null }
  // node:http's own handler looks at the same field: the response in flight on this socket.
  const res = socket._httpMessage
  if (res != null && (res.headersSent || res.req.complete)) {
    socket.pause() // nothing more is read from it; the parser would only fail again
    if (res.writableFinished) socket.destroySoon()
    else res.once('finish', () => socket.destroySoon())
    return
  }
  if (socket.writable) endRaw(socket, unparsedError(err.code))
  else socket.destroy(err)
}

/** With the statuses node:http's own handler uses. */
function unparsedError(code: string | undefined): GatewayError {
  if (code === 'HPE_HEADER_OVERFLOW')
    return new GatewayError('headers_too_large', 'The request line and headers exceed 16 KiB.')
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return new GatewayError('request_timeout', 'The request did not arrive in time.')
  return new GatewayError('invalid_request', 'The request is not valid HTTP/1.1.')
}

const envelopeOf = (error: GatewayError): string => JSON.stringify(error.toEnvelope())

/** An error written straight to a socket that has no response object, and the connection's end. */
function endRaw(socket: Duplex, error: GatewayError): void {
  const body = envelopeOf(error)
  socket.end(
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  )
}
