// Loading and wiring the OpenTelemetry SDK: resource, batch processors with bounded queues, OTLP/HTTP
// exporters for traces and logs, log lines as log records, and the SDK's own diagnostics. Imported
// only when an OTLP endpoint is configured.

import { Writable } from 'node:stream'
import * as api from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources'
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs'
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace'
import type { OtlpSettings, SamplerSettings } from './otlp-config.ts'
import { maskUrls, type Redactor } from './redact.ts'
import type { TelemetryHooks } from './telemetry.ts'

export interface Sdk {
  readonly api: typeof api
  readonly tracer: api.Tracer
  readonly propagator: api.TextMapPropagator
  /** Whether spans go anywhere: with traces not exported, a span that records builds for nobody. */
  readonly tracesExported: boolean
  readonly logSink: Writable | undefined
  shutdown(): Promise<void>
}

export function loadSdk(otlp: OtlpSettings, version: string, hooks: TelemetryHooks, redact: Redactor): Sdk {
  routeDiagnostics(hooks, redact)
  const selfObsMeterProvider = lossCounter(hooks)
  const resource = resourceFromAttributes({
    ...otlp.resourceAttributes,
    // The service name variable wins over a service.name in the attributes, as the spec says.
    'service.name': otlp.serviceName,
    'service.version': version,
  })
  const tracerProvider = tracerProviderOf(otlp, resource, selfObsMeterProvider)
  const loggerProvider = loggerProviderOf(otlp, resource, selfObsMeterProvider)
  const otelLogger = loggerProvider?.getLogger('ai-gateway', version)
  return {
    api,
    tracer: tracerProvider.getTracer('ai-gateway', version),
    propagator: new W3CTraceContextPropagator(),
    tracesExported: otlp.tracesUrl !== undefined,
    logSink:
      otelLogger === undefined
        ? undefined
        : new Writable({
            write(line: Buffer | string, _encoding, done) {
              emitLogLine(otelLogger, String(line))
              done()
            },
          }),
    async shutdown() {
      const bounded = (work: Promise<void>) =>
        Promise.race([
          work.catch(() => {}),
          new Promise<void>((resolve) => setTimeout(resolve, 5_000).unref()),
        ])
      await Promise.all([
        bounded(tracerProvider.shutdown()),
        bounded(loggerProvider?.shutdown() ?? Promise.resolve()),
      ])
    },
  }
}

const exporterOptions = { timeoutMillis: 5_000 }
// Bounded queues: when the collector is slow or gone, new data is dropped (and counted), never a request.
const batch = {
  maxQueueSize: 2_048,
  maxExportBatchSize: 512,
  scheduledDelayMillis: 1_000,
  exportTimeoutMillis: 5_000,
}

// A signal not exported has no processor: its spans still carry the trace ids into the log lines.
function tracerProviderOf(
  otlp: OtlpSettings,
  resource: Resource,
  selfObsMeterProvider: api.MeterProvider,
): TracerProvider {
  return new TracerProvider({
    resource,
    sampler: samplerOf(otlp.sampler),
    spanProcessors:
      otlp.tracesUrl === undefined
        ? []
        : [
            new BatchSpanProcessor({
              ...batch,
              selfObsMeterProvider,
              exporter: new OTLPTraceExporter({
                ...exporterOptions,
                url: otlp.tracesUrl,
                headers: { ...otlp.tracesHeaders },
              }),
            }),
          ],
  })
}

function loggerProviderOf(
  otlp: OtlpSettings,
  resource: Resource,
  selfObsMeterProvider: api.MeterProvider,
): LoggerProvider | undefined {
  if (otlp.logsUrl === undefined) return undefined
  return new LoggerProvider({
    resource,
    processors: [
      new BatchLogRecordProcessor({
        ...batch,
        selfObsMeterProvider,
        exporter: new OTLPLogExporter({
          ...exporterOptions,
          url: otlp.logsUrl,
          headers: { ...otlp.logsHeaders },
        }),
      }),
    ],
  })
}

/** The sampler OTEL_TRACES_SAMPLER names; by default, parentbased_always_on. */
function samplerOf({ parentBased, ratio }: SamplerSettings): Sampler {
  const root =
    ratio >= 1
      ? new AlwaysOnSampler()
      : ratio <= 0
        ? new AlwaysOffSampler()
        : new TraceIdRatioBasedSampler(ratio)
  return parentBased ? new ParentBasedSampler({ root }) : root
}

const severities: Record<string, number> = { trace: 1, debug: 5, info: 9, warn: 13, error: 17, fatal: 21 }

/** One pino line (already redacted) as an OTLP log record, in the trace it names. */
function emitLogLine(logger: api.Logger, line: string): void {
  let record: Record<string, unknown>
  try {
    record = JSON.parse(line) as Record<string, unknown>
  } catch {
    return
  }
  const { level, time, msg, trace_id, span_id, trace_flags, ...rest } = record
  const attributes: Record<string, string | number | boolean> = {}
  for (const [key, value] of Object.entries(rest)) {
    if (value === null || value === undefined) continue
    attributes[key] = typeof value === 'object' ? JSON.stringify(value) : (value as string | number | boolean)
  }
  const context =
    typeof trace_id === 'string' && typeof span_id === 'string'
      ? api.trace.setSpanContext(api.ROOT_CONTEXT, {
          traceId: trace_id,
          spanId: span_id,
          // Not sampled, the trace is never exported: a record must not claim it was.
          traceFlags:
            typeof trace_flags === 'string'
              ? Number.parseInt(trace_flags, 16) & api.TraceFlags.SAMPLED
              : api.TraceFlags.SAMPLED,
        })
      : undefined
  logger.emit({
    severityNumber: severities[String(level)] ?? 0,
    severityText: String(level ?? '').toUpperCase(),
    body: String(msg ?? ''),
    attributes,
    ...(typeof time === 'string' ? { timestamp: new Date(time) } : {}),
    ...(context === undefined ? {} : { context }),
  })
}

/**
 * The batch processors' own metrics (OpenTelemetry's SDK self-observability conventions): every item
 * they finish with an `error.type` (a full queue, a failed or timed-out export) was lost, and is
 * counted. Their other instruments are not needed here.
 */
function lossCounter(hooks: TelemetryHooks): api.MeterProvider {
  const noop = api.createNoopMeter()
  const signals: Record<string, 'traces' | 'logs'> = {
    'otel.sdk.processor.span.processed': 'traces',
    'otel.sdk.processor.log.processed': 'logs',
  }
  const meter: api.Meter = Object.create(noop, {
    createCounter: {
      value: (name: string, options?: api.MetricOptions) => {
        const signal = signals[name]
        if (signal === undefined) return noop.createCounter(name, options)
        return {
          add: (count: number, attributes?: api.Attributes) => {
            if (attributes?.['error.type'] !== undefined) hooks.dropped(signal, count)
          },
        }
      },
    },
  })
  return { getMeter: () => meter }
}

/**
 * The SDK reports export failures and its own configuration problems through `diag`; they become
 * rate-limited warnings. URLs are masked (the SDK quotes an endpoint variable as written, credentials
 * and all) and secrets redacted before the text is cut short: the log line is redacted too, but a key
 * cut in two is no longer one.
 */
function routeDiagnostics(hooks: TelemetryHooks, redact: Redactor): void {
  const lastWarned = new Map<string, number>()
  const report = (message: unknown, ...args: unknown[]) => {
    const text = maskUrls(redact([message, ...args].map(String).join(' ')))
    const kind = text.replace(/\d+/g, 'N').slice(0, 80)
    const now = Date.now()
    if (now - (lastWarned.get(kind) ?? 0) < 60_000) return
    // Counted only once it was logged: a warning nobody saw must not silence the next one.
    if (hooks.warn(text.slice(0, 300))) lastWarned.set(kind, now)
  }
  const ignore = () => {}
  api.diag.setLogger(
    { error: report, warn: report, info: ignore, debug: ignore, verbose: ignore },
    { logLevel: api.DiagLogLevel.WARN, suppressOverrideMessage: true },
  )
}
