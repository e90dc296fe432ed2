// Recent Responses, kept in process so `previous_response_id`, `item_reference` and
// `GET /v1/responses/{id}` work on the instance that served them. Bounded in count, size and age: the
// oldest entry goes first, its output items with it.

import type { Item } from './responses-request.ts'

export interface StoredResponse {
  readonly response: Readonly<Record<string, unknown>>
  /** The whole conversation up to and including this response's output, to continue from. */
  readonly items: readonly Item[]
  readonly expiresAt: number
  /** Rough size in bytes (the JSON length), so conversations carrying images cannot exhaust memory. */
  readonly bytes: number
  /** The part of `bytes` that is `items`, so the next turn adds to it instead of measuring it all again. */
  readonly itemBytes: number
}

export class ResponseStore {
  // A Map iterates in insertion order, so its first key is always the oldest entry.
  readonly #entries = new Map<string, StoredResponse>()
  /** The output items of the stored responses by item id, each with the id of the response it is in. */
  readonly #items = new Map<string, { readonly item: Item; readonly responseId: string }>()
  readonly #max: number
  readonly #maxBytes: number
  readonly #ttlMs: number
  #bytes = 0

  constructor(max = 1_000, ttlMs = 60 * 60_000, maxBytes = 64 * 1024 * 1024) {
    this.#max = max
    this.#ttlMs = ttlMs
    this.#maxBytes = maxBytes
  }

  /** Stores a response that continues `history` (if any) with the `added` items. */
  put(
    id: string,
    response: Readonly<Record<string, unknown>>,
    history: StoredResponse | undefined,
    added: readonly Item[],
    now = Date.now(),
  ): void {
    this.#delete(id)
    const itemBytes = (history?.itemBytes ?? 0) + JSON.stringify(added).length
    const bytes = itemBytes + JSON.stringify(response).length
    if (bytes > this.#maxBytes) return
    const items = history === undefined ? added : [...history.items, ...added]
    this.#entries.set(id, { response, items, expiresAt: now + this.#ttlMs, bytes, itemBytes })
    this.#bytes += bytes
    for (const [itemId, item] of outputById(response)) this.#items.set(itemId, { item, responseId: id })
    while (this.#entries.size > this.#max || this.#bytes > this.#maxBytes) {
      const oldest = this.#entries.keys().next().value
      if (oldest === undefined) break
      this.#delete(oldest)
    }
  }

  #delete(id: string): void {
    const entry = this.#entries.get(id)
    if (entry === undefined) return
    this.#bytes -= entry.bytes
    this.#entries.delete(id)
    for (const [itemId] of outputById(entry.response))
      if (this.#items.get(itemId)?.responseId === id) this.#items.delete(itemId)
  }

  get(id: string, now = Date.now()): StoredResponse | undefined {
    const entry = this.#entries.get(id)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= now) {
      this.#delete(id)
      return undefined
    }
    return entry
  }

  /** An output item of a stored response, by the item's id. */
  item(id: string, now = Date.now()): Item | undefined {
    const found = this.#items.get(id)
    if (found === undefined || this.get(found.responseId, now) === undefined) return undefined
    return found.item
  }
}

/** A response's output items that carry an id; the items themselves are counted in its bytes already. */
function outputById(response: Readonly<Record<string, unknown>>): [string, Item][] {
  if (!Array.isArray(response.output)) return []
  return (response.output as unknown[]).flatMap((item): [string, Item][] => {
    const id = (item as { id?: unknown } | null)?.id
    return typeof id === 'string' && id !== '' ? [[id, item as Item]] : []
  })
}
