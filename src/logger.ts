// The pino logger: JSON lines, ISO timestamps, level names, and secrets scrubbed from every line.

import { type DestinationStream, type Logger, pino } from 'pino'
import type { Redactor } from './redact.ts'

export type { Logger }

export interface LoggerOptions {
  level: string
  redact: Redactor
  /** Where lines go; stdout when omitted. */
  destination?: DestinationStream
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

function destinationOf(options: LoggerOptions): DestinationStream {
  const main = options.destination ?? pino.destination({ dest: 1, sync: true })
  if (options.tee === undefined) return main
  // The logger's own level filters first; both streams take whatever it lets through.
  return pino.multistream([
    { level: 'trace', stream: main },
    { level: 'trace', stream: options.tee },
  ])
}
