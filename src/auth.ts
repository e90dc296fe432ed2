// Gateway key extraction (`X-Api-Key` or `Authorization: Bearer`) and the check against the
// configured key.

import { hash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

/** The key in `X-Api-Key`, when there is one. */
function apiKeyOf(headers: IncomingHttpHeaders): string | undefined {
  const apiKey = headers['x-api-key']
  return typeof apiKey === 'string' && apiKey !== '' ? apiKey : undefined
}

/** The key in `Authorization: Bearer`, when there is one. */
function bearerOf(headers: IncomingHttpHeaders): string | undefined {
  const authorization = headers.authorization
  if (authorization === undefined) return undefined
  return /^Bearer\s+(.+)$/i.exec(authorization)?.[1]?.trim()
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
  const matches = (presented: string | undefined) =>
    presented !== undefined && digest(presented) === expectedDigest
  // Either header may carry it: a client (or a proxy) can add an X-Api-Key meant for someone else.
  return (headers) => matches(apiKeyOf(headers)) || matches(bearerOf(headers))
}
