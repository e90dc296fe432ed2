// The pino logger: JSON lines, ISO timestamps, level names, and secrets scrubbed from every line. Beside
// it, a fast path for the one line written per request, into the same destination.

import { type DestinationStream, type Logger, pino } from 'pino'
import type { Redactor } from './redact.ts'

export type { Logger }

export interface LoggerOptions {
  level: string
  redact: Redactor
  /** A second destination for every line (OTLP export), when telemetry is on. */
  tee?: DestinationStream
  /** Where lines go; stdout unless told otherwise. */
  fd?: number
}

export interface Logging {
  readonly logger: Logger
  /**
   * An info line made of plain-data parts (merged in order), serialized with `JSON.stringify`. Inside
   * the loaded gateway pino's generic path (a type check and a stringify per key) cost 16 µs per
   * access line, about a sixth of a request's CPU; this costs a third of that. Same shape as pino's
   * lines, same destination (so order is kept), same redaction.
   */
  infoLine(msg: string, ...parts: readonly (object | undefined)[]): void
}

const service = 'ai-gateway'

export function createLogging(options: LoggerOptions): Logging {
  const destination = destinationOf(options)
  const logger = pino(
    {
      level: options.level,
      base: { service },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Scrubbing the serialized line (not chosen fields) means no code path can forget a secret.
      hooks: { streamWrite: options.redact },
    },
    destination,
  )
  const { redact } = options
  return {
    logger,
    infoLine(msg, ...parts) {
      if (!logger.isLevelEnabled('info')) return
      let fields = ''
      for (const part of parts) {
        if (part === undefined) continue
        const json = JSON.stringify(part)
        if (json.length > 2) fields += `${json.slice(1, -1)},`
      }
      const time = isoNow()
      destination.write(
        redact(
          `{"level":"info","time":"${time}","service":"${service}",${fields}"msg":${JSON.stringify(msg)}}\n`,
        ),
      )
    },
  }
}

/**
 * The time as pino's `isoTime` writes it. `Date#toISOString` cost a microsecond and a half per access
 * line inside the loaded gateway; the part up to the seconds changes once a second.
 */
function isoNow(): string {
  const now = Date.now()
  const second = now - (now % 1000)
  if (second !== clock.second) {
    clock.second = second
    clock.prefix = new Date(second).toISOString().slice(0, -4)
  }
  const ms = now - second
  return `${clock.prefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`
}
const clock = { second: -1, prefix: '' }

type FlushableStream = DestinationStream & { flush(cb?: (err?: Error) => void): void }

/** A batch is written when it is this full (and within 250 ms in any case). */
const batchBytes = 16 * 1024
/** Batches are cut one after another from slabs this big: a buffer of its own per batch cost half a µs per request. */
const slabBytes = 16 * batchBytes

/**
 * Stdout, written synchronously (lines stay in order, even at exit) but in batches: one write per
 * request was a tenth of the gateway's throughput. Each line is encoded straight into the batch,
 * so a batch is never joined, measured or encoded again on its way out; sonic-boom gets whole
 * batches and handles short writes and EAGAIN. A timer writes a partial batch within 250 ms, so a
 * quiet gateway's lines are not held back, and whatever is pending is written at exit.
 */
function batchedStdout(fd: number): FlushableStream {
  // In buffer mode sonic-boom takes Buffers; its typings only know its string mode.
  const stdout = pino.destination({ dest: fd, sync: true, contentMode: 'buffer' }) as unknown as {
    write(bytes: Buffer): boolean
    flush(cb?: (err?: Error) => void): void
  }
  let slab = Buffer.allocUnsafeSlow(slabBytes)
  // The pending batch is slab[start, start + used).
  let start = 0
  let used = 0
  const flush = () => {
    if (used === 0) return
    stdout.write(slab.subarray(start, start + used))
    // Bytes handed over are never written again: sonic-boom may hold on to them while it retries.
    start += used
    used = 0
    if (slabBytes - start < batchBytes) {
      slab = Buffer.allocUnsafeSlow(slabBytes)
      start = 0
    }
  }
  setInterval(flush, 250).unref()
  process.once('exit', flush)
  return {
    write(line: string) {
      // Three bytes per UTF-16 unit is the most UTF-8 can take, so the line fits without measuring it.
      if (used + line.length * 3 > batchBytes) {
        flush()
        if (line.length * 3 > batchBytes) {
          stdout.write(Buffer.from(line))
          return
        }
      }
      used += slab.write(line, start + used)
    },
    flush(cb) {
      flush()
      stdout.flush(cb)
    },
  }
}

function destinationOf(options: LoggerOptions): FlushableStream {
  const main = batchedStdout(options.fd ?? 1)
  const { tee } = options
  if (tee === undefined) return main
  // The logger's own level filters first; both streams take whatever it lets through.
  return {
    write(line: string) {
      main.write(line)
      tee.write(line)
    },
    flush: (cb) => main.flush(cb),
  }
}
