// Answers to what never becomes a request: bytes node:http cannot parse, a request too slow to
// arrive, an Expect it cannot meet, a CONNECT. OpenAI envelopes too, so a client reads every error
// the same way. And the end of a connection whose client is still sending a body that was refused.

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
 * Bytes node:http cannot parse, or a request too slow to arrive. When the connection has answers in
 * flight (requests read whole before the bad bytes came: pipelined garbage, a Content-Length counted
 * short), they are let finish and the connection ends after the last; an error written now would land
 * in the middle of one. Otherwise the error goes out in an OpenAI envelope, as every other one does.
 */
function onClientError(err: NodeJS.ErrnoException, duplex: Duplex): void {
  const socket = duplex as InFlight
  // The parser fails again on every later read; the first failure decided.
  if (ending.has(socket)) return
  const res = socket._httpMessage
  if (res != null && (res.headersSent || res.req.complete)) {
    ending.add(socket)
    // Still read, so a client that hangs up is noticed (its answers then stop, as any other's).
    socket.once('end', () => socket.destroy())
    endAfterAnswers(socket)
    return
  }
  if (!socket.writable) {
    socket.destroy(err)
    return
  }
  const error = unparsedError(err.code)
  // A request whose body was arriving: its handler sees the connection end, and logs this instead.
  if (res != null && isRefusal(err.code)) refusals.set(res, error)
  endRaw(socket, error)
}

/** Whether node:http gave up on the request (unparsable, too slow), rather than the client hanging up. */
const isRefusal = (code: string | undefined): boolean =>
  code === 'ERR_HTTP_REQUEST_TIMEOUT' ||
  (code?.startsWith('HPE_') === true && code !== 'HPE_INVALID_EOF_STATE')

const refusals = new WeakMap<ServerResponse, GatewayError>()

/** The error a request was refused with while its body was arriving (here or in endWhileReceiving), if it was. */
export const refusalOf = (res: ServerResponse): GatewayError | undefined => refusals.get(res)

/** node:http's own handler looks at the same field: the response in flight on this socket. */
type InFlight = Socket & { _httpMessage?: ServerResponse | null }

const ending = new WeakSet<Socket>()

/** Ends the connection once its last answer is out: node:http hands it the next queued one at each finish. */
function endAfterAnswers(socket: InFlight): void {
  const res = socket._httpMessage
  if (res == null || res.writableFinished) socket.destroySoon()
  else res.once('finish', () => endAfterAnswers(socket))
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
  // Destroyed once written: a socket taken over (CONNECT) is no longer node:http's to time out or
  // close at shutdown, and a client holding its end open would hold it.
  socket.end(
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  )
}

/**
 * Writes the last of an answer to a request whose body is still arriving (refused before it was read,
 * or too large), and ends the connection once the body has. Closed at once, the connection would
 * meet the client's next bytes with a reset, and a client reset while still writing (fetch, the OpenAI
 * SDKs) reports a connection error instead of the answer it was sent. So the rest is read and dropped
 * meanwhile, for `lingerMs` at most: a client trickling an endless body does not hold the connection.
 */
export function endWhileReceiving(
  req: IncomingMessage,
  res: ServerResponse,
  error: GatewayError,
  text: string,
): void {
  // The answer is written whole: a client that hangs up before the body's end is logged with it.
  refusals.set(res, error)
  res.write(text)
  const end = () => res.end()
  const timer = setTimeout(end, lingerMs)
  res.once('close', () => clearTimeout(timer))
  req.once('end', end)
  req.resume()
}

/** Enough for a client on a local network to send tens of megabytes more. */
const lingerMs = 1_000
