// Gateway key extraction (`X-Api-Key` or `Authorization: Bearer`) and the check against the
// configured key.

import { hash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

export function extractKey(headers: IncomingHttpHeaders): string | undefined {
  const apiKey = headers['x-api-key']
  if (typeof apiKey === 'string' && apiKey !== '') return apiKey
  const authorization = headers.authorization
  if (authorization === undefined) return undefined
  const match = /^Bearer\s+(.+)$/i.exec(authorization)
  return match?.[1]?.trim()
}

/**
 * The presented key is hashed and its SHA-256 digest compared with the key's, so the comparison's
 * timing depends on the two digests only: it could tell an attacker about the key's digest, never
 * about the key or its length, and a digest is of no use without a preimage. Hex text and `===`
 * rather than Buffers and `timingSafeEqual`: a third of the cost, and no ArrayBuffer per request.
 */
export function createKeyCheck(expected: string): (headers: IncomingHttpHeaders) => boolean {
  const digest = (value: string) => hash('sha256', value, 'hex')
  const expectedDigest = digest(expected)
  return (headers) => {
    const presented = extractKey(headers)
    return presented !== undefined && digest(presented) === expectedDigest
  }
}
