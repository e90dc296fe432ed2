// The pino logger: JSON lines, ISO timestamps, level names, and secrets scrubbed from every line.

import { type DestinationStream, type Logger, pino } from 'pino'
import type { Redactor } from './redact.ts'

export type { Logger }

export interface LoggerOptions {
  level: string
  redact: Redactor
  /** A second destination for every line (OTLP export), when telemetry is on. */
  tee?: DestinationStream
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'ai-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Scrubbing the serialized line (not chosen fields) means no code path can forget a secret.
      hooks: { streamWrite: options.redact },
    },
    destinationOf(options),
  )
}

/**
 * Stdout, written synchronously (lines stay in order, even at exit) but in batches of up to 4 KiB: one
 * write per request was a tenth of the gateway's throughput. A timer flushes a partial batch within
 * 250 ms, so a quiet gateway's lines are not held back; pino flushes what is left at exit.
 */
function batchedStdout(): DestinationStream {
  const stream = pino.destination({ dest: 1, sync: true, minLength: 4096 })
  setInterval(() => stream.flush(), 250).unref()
  return stream
}

function destinationOf(options: LoggerOptions): DestinationStream {
  const main = batchedStdout()
  if (options.tee === undefined) return main
  // The logger's own level filters first; both streams take whatever it lets through.
  return pino.multistream([
    { level: 'trace', stream: main },
    { level: 'trace', stream: options.tee },
  ])
}
