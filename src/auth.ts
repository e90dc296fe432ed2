// Gateway key extraction (`X-Api-Key` or `Authorization: Bearer`) and constant-time comparison.

import { hash, timingSafeEqual } from 'node:crypto'
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
 * Comparing fixed-size digests keeps the comparison constant-time even when lengths differ, so the
 * key's length does not leak either.
 */
export function createKeyCheck(expected: string): (headers: IncomingHttpHeaders) => boolean {
  const digest = (value: string) => hash('sha256', value, 'buffer')
  const expectedDigest = digest(expected)
  return (headers) => {
    const presented = extractKey(headers)
    return presented !== undefined && timingSafeEqual(digest(presented), expectedDigest)
  }
}
