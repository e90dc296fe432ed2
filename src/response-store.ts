// Recent Responses, kept in process so `previous_response_id` and `GET /v1/responses/{id}` work on the
// instance that served them. Bounded in count and age: the oldest entry goes first.

import type { Item } from './responses-request.ts'

export interface StoredResponse {
  readonly response: Readonly<Record<string, unknown>>
  /** The whole conversation up to and including this response's output, to continue from. */
  readonly items: readonly Item[]
  readonly expiresAt: number
}

export class ResponseStore {
  // A Map iterates in insertion order, so its first key is always the oldest entry.
  readonly #entries = new Map<string, StoredResponse>()
  readonly #max: number
  readonly #ttlMs: number

  constructor(max = 1_000, ttlMs = 60 * 60_000) {
    this.#max = max
    this.#ttlMs = ttlMs
  }

  put(
    id: string,
    response: Readonly<Record<string, unknown>>,
    items: readonly Item[],
    now = Date.now(),
  ): void {
    this.#entries.delete(id)
    this.#entries.set(id, { response, items, expiresAt: now + this.#ttlMs })
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value
      if (oldest === undefined) break
      this.#entries.delete(oldest)
    }
  }

  get(id: string, now = Date.now()): StoredResponse | undefined {
    const entry = this.#entries.get(id)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= now) {
      this.#entries.delete(id)
      return undefined
    }
    return entry
  }
}
