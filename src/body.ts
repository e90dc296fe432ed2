// The request body: read within the size limit, parsed as one JSON object.

import type { IncomingMessage } from 'node:http'
import { GatewayError } from './errors.ts'

// The rest of an oversized body is not worth reading: the connection ends after the answer.
const tooLarge = (limit: number) =>
  new GatewayError('body_too_large', `Request body exceeds the limit of ${limit} bytes.`, {
    headers: { connection: 'close' },
  })

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  if (Number(req.headers['content-length']) > limit) return Promise.reject(tooLarge(limit))
  const coding = req.headers['content-encoding']
  // A compressed body would otherwise be judged as broken JSON; no OpenAI client compresses requests.
  // An empty header is an empty list of codings: none.
  if (coding !== undefined && coding !== '' && coding.trim().toLowerCase() !== 'identity') {
    return Promise.reject(
      new GatewayError(
        'unsupported_encoding',
        `Request bodies are accepted uncompressed, not as ${coding}.`,
        {
          headers: { 'accept-encoding': 'identity', connection: 'close' },
        },
      ),
    )
  }
  // Plain events rather than an async iterator: this runs for every request.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        req.off('data', onData)
        req.pause()
        reject(tooLarge(limit))
        return
      }
      chunks.push(chunk)
    }
    req.on('data', onData)
    req.on('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)))
    req.on('error', reject)
  })
}

export async function readJsonObject(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const raw = await readBody(req, limit)
  let value: unknown
  try {
    value = JSON.parse(raw.toString('utf8'))
  } catch {
    throw new GatewayError('invalid_json', 'The request body is not valid JSON.')
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new GatewayError('invalid_request', 'The request body must be a JSON object.')
  }
  return value as Record<string, unknown>
}

/**
 * JSON text for a value parsed from a request. JSON.parse takes nesting that JSON.stringify then
 * cannot write back (a stack overflow): that is the client's request, refused as such.
 */
export function writeJson(value: unknown): string {
  try {
    return JSON.stringify(value)
  } catch (err) {
    if (!(err instanceof RangeError)) throw err
    throw new GatewayError('invalid_request', 'The request body is nested too deeply.')
  }
}

/**
 * Whether the request asks for a stream. Only a boolean (or null, or nothing) is taken: a provider
 * that reads `"true"` or `1` as true would stream to a gateway that expected one JSON answer.
 */
export function wantsStream(body: Readonly<Record<string, unknown>>): boolean {
  const { stream } = body
  if (stream === undefined || stream === null || typeof stream === 'boolean') return stream === true
  const given = Array.isArray(stream) ? 'an array' : `a ${typeof stream}`
  throw new GatewayError('invalid_request', `"stream" must be true or false, not ${given}.`, {
    param: 'stream',
  })
}
