// The body of a streaming upstream response as an async iterable of chunks, fed by an undici dispatch
// handler. Backpressure: past a few queued chunks the upstream connection is paused, and resumed once
// the reader catches up, so a slow client slows the provider instead of filling memory.

type Waiter = { resolve: (result: IteratorResult<Buffer>) => void; reject: (err: unknown) => void }

const pauseAt = 16
const resumeAt = 4

export interface FlowControl {
  pause(): void
  resume(): void
  /** The reader stopped early: the request is no longer wanted. */
  cancel(): void
}

export class ChunkQueue implements AsyncIterableIterator<Buffer> {
  readonly #chunks: Buffer[] = []
  readonly #flow: FlowControl
  #paused = false
  #ended = false
  #error: unknown
  #failed = false
  #waiter: Waiter | undefined

  constructor(flow: FlowControl) {
    this.#flow = flow
  }

  push(chunk: Buffer): void {
    const waiter = this.#waiter
    if (waiter !== undefined) {
      this.#waiter = undefined
      waiter.resolve({ value: chunk, done: false })
      return
    }
    this.#chunks.push(chunk)
    if (!this.#paused && this.#chunks.length >= pauseAt) {
      this.#paused = true
      this.#flow.pause()
    }
  }

  end(): void {
    this.#ended = true
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.resolve({ value: undefined, done: true })
  }

  fail(err: unknown): void {
    if (this.#ended || this.#failed) return
    this.#failed = true
    this.#error = err
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.reject(err)
  }

  next(): Promise<IteratorResult<Buffer>> {
    const chunk = this.#chunks.shift()
    if (chunk !== undefined) {
      if (this.#paused && this.#chunks.length <= resumeAt) {
        this.#paused = false
        this.#flow.resume()
      }
      return Promise.resolve({ value: chunk, done: false })
    }
    if (this.#failed) return Promise.reject(this.#error)
    if (this.#ended) return Promise.resolve({ value: undefined, done: true })
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject }
    })
  }

  return(): Promise<IteratorResult<Buffer>> {
    this.#destroy()
    return Promise.resolve({ value: undefined, done: true })
  }

  /** Stops reading: what is queued is dropped and the request cancelled. */
  #destroy(): void {
    if (this.#ended) return
    this.#ended = true
    this.#chunks.length = 0
    this.#flow.cancel()
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    return this
  }
}
