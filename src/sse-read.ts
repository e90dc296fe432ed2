// Reading an upstream event stream: bytes to Server-Sent Events, bounded in size, and each event's
// data told apart as JSON, the `[DONE]` marker, or malformed.

import { StringDecoder } from 'node:string_decoder'
import { createParser, type EventSourceMessage } from 'eventsource-parser'

export type Item =
  | { readonly kind: 'event'; readonly event: EventSourceMessage }
  | { readonly kind: 'comment'; readonly text: string }

// No chat or Responses event comes near this; a provider that never ends its line must not make the
// gateway hold it without bound.
const maxEventChars = 32 * 1024 * 1024

export class EventTooLarge extends Error {
  constructor() {
    super(`an event longer than ${maxEventChars} characters`)
  }
}

export async function* readItems(body: AsyncIterable<Buffer>): AsyncGenerator<Item> {
  const pending: Item[] = []
  const parser = createParser({
    onEvent: (event) => pending.push({ kind: 'event', event }),
    onComment: (text) => pending.push({ kind: 'comment', text }),
    maxBufferSize: maxEventChars,
    onError: (error) => {
      if (error.type === 'max-buffer-size-exceeded') throw new EventTooLarge()
    },
  })
  // Node's StringDecoder rather than TextDecoder: half the cost per chunk, and a third of it for a
  // stream's first chunk after an idle gap, where a stream's first byte is decided. (A leading BOM is
  // the parser's to drop.)
  const decoder = new StringDecoder('utf8')
  for await (const chunk of body) {
    parser.feed(decoder.write(chunk))
    for (const item of pending) yield item
    pending.length = 0
  }
  // A last event not followed by a blank line is still an event: the blank line is supplied. (The
  // parser's `reset({ consume: true })` reads a pending line, but drops the event it completes.)
  parser.feed(`${decoder.end()}\n\n`)
  yield* pending
}

export type Parsed =
  | { readonly kind: 'done' }
  | { readonly kind: 'malformed' }
  | { readonly kind: 'json'; readonly value: Record<string, unknown> }

export function parseData(data: string): Parsed {
  if (data === '[DONE]') return { kind: 'done' }
  try {
    const value: unknown = JSON.parse(data)
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      return { kind: 'json', value: value as Record<string, unknown> }
    }
  } catch {
    // falls through to malformed
  }
  return { kind: 'malformed' }
}
