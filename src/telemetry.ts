// OpenTelemetry: one SERVER span per request, one CLIENT span per upstream attempt (GenAI semantic
// conventions), W3C trace context in and out, and log lines as OTLP log records. The only file that
// touches the OTel SDK, which is loaded only when an endpoint is configured: with telemetry off every
// call here is a no-op on a shared object.

import type { IncomingHttpHeaders } from 'node:http'
import { Writable } from 'node:stream'
import type { Context, Span, Tracer } from '@opentelemetry/api'
import type { OtlpSettings, TelemetrySettings } from './otlp-config.ts'
import type { Redactor } from './redact.ts'
import type { Step } from './router.ts'
import type { Usage } from './upstream.ts'

export interface AttemptEnd {
  readonly outcome: string
  readonly status?: number
  readonly reason?: string
  readonly responseModel?: string
  readonly usage?: Usage
  readonly ttftMs?: number
  readonly output?: unknown
}

export interface AttemptTrace {
  /** Headers that carry this attempt's trace context to the provider. */
  readonly headers: Readonly<Record<string, string>>
  end(result: AttemptEnd): void
}

export interface RequestEnd {
  readonly status: number
  readonly route?: string
  readonly provider?: string
  readonly model?: string
  readonly usage?: Usage
  readonly error?: string
  readonly attempts?: number
  readonly skipped?: readonly { provider: string; model: string; reason: string }[]
}

export interface RequestTrace {
  /** `trace_id` and `span_id` for the request's log lines; empty with tracing off. */
  readonly logFields: Readonly<Record<string, string>>
  /** Names the span after the matched endpoint (`POST /v1/chat/completions`). */
  named(route: string): void
  attempt(step: Step, operation: string, input?: unknown): AttemptTrace
  end(result: RequestEnd): void
}

export interface Telemetry {
  readonly enabled: boolean
  readonly captureContent: boolean
  startRequest(method: string, path: string, headers: IncomingHttpHeaders): RequestTrace
  /** Where log lines go to become OTLP log records; undefined with telemetry off. */
  readonly logSink: Writable | undefined
  /** Flushes what is buffered; bounded, so a dead collector cannot hold up shutdown. */
  shutdown(): Promise<void>
}

const noopAttempt: AttemptTrace = { headers: {}, end() {} }
const noopRequest: RequestTrace = { logFields: {}, named() {}, attempt: () => noopAttempt, end() {} }

export const disabledTelemetry: Telemetry = {
  enabled: false,
  captureContent: false,
  startRequest: () => noopRequest,
  logSink: undefined,
  shutdown: async () => {},
}

export interface TelemetryHooks {
  /** Export problems, at most once a minute per kind. */
  warn(message: string): void
  dropped(signal: 'traces' | 'logs', count: number): void
}

export async function createTelemetry(
  settings: TelemetrySettings,
  version: string,
  redact: Redactor,
  hooks: TelemetryHooks,
): Promise<Telemetry> {
  if (settings.otlp === undefined) return disabledTelemetry
  const sdk = await loadSdk(settings.otlp, version, hooks)
  return {
    enabled: true,
    captureContent: settings.captureContent,
    startRequest: (method, path, headers) =>
      new ServerSpan(sdk, settings.captureContent, redact, method, path, headers),
    logSink: sdk.logSink,
    shutdown: sdk.shutdown,
  }
}

type Api = typeof import('@opentelemetry/api')

interface Sdk {
  readonly api: Api
  readonly tracer: Tracer
  readonly propagator: import('@opentelemetry/api').TextMapPropagator
  readonly logSink: Writable
  shutdown(): Promise<void>
}

async function loadSdk(otlp: OtlpSettings, version: string, hooks: TelemetryHooks): Promise<Sdk> {
  const [api, core, resources, sdkTrace, sdkLogs, traceExporter, logExporter] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/sdk-logs'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/exporter-logs-otlp-http'),
  ])
  routeDiagnostics(api, hooks)
  const resource = resources.resourceFromAttributes({
    ...otlp.resourceAttributes,
    // The service name variable wins over a service.name in the attributes, as the spec says.
    'service.name': otlp.serviceName,
    'service.version': version,
  })
  const exporterOptions = { headers: { ...otlp.headers }, timeoutMillis: 10_000 }
  // Bounded queues: when the collector is slow or gone, the oldest data is dropped, never the request.
  const batch = {
    maxQueueSize: 2_048,
    maxExportBatchSize: 512,
    scheduledDelayMillis: 1_000,
    exportTimeoutMillis: 10_000,
  }
  const tracerProvider = new sdkTrace.TracerProvider({
    resource,
    spanProcessors: [
      new sdkTrace.BatchSpanProcessor({
        ...batch,
        exporter: new traceExporter.OTLPTraceExporter({ ...exporterOptions, url: otlp.tracesUrl }),
      }),
    ],
  })
  const loggerProvider = new sdkLogs.LoggerProvider({
    resource,
    processors: [
      new sdkLogs.BatchLogRecordProcessor({
        ...batch,
        exporter: new logExporter.OTLPLogExporter({ ...exporterOptions, url: otlp.logsUrl }),
      }),
    ],
  })
  const otelLogger = loggerProvider.getLogger('ai-gateway', version)
  return {
    api,
    tracer: tracerProvider.getTracer('ai-gateway', version),
    propagator: new core.W3CTraceContextPropagator(),
    logSink: new Writable({
      write(line: Buffer | string, _encoding, done) {
        emitLogLine(api, otelLogger, String(line))
        done()
      },
    }),
    async shutdown() {
      const bounded = (work: Promise<void>) =>
        Promise.race([
          work.catch(() => {}),
          new Promise<void>((resolve) => setTimeout(resolve, 5_000).unref()),
        ])
      await Promise.all([bounded(tracerProvider.shutdown()), bounded(loggerProvider.shutdown())])
    },
  }
}

const severities: Record<string, number> = { trace: 1, debug: 5, info: 9, warn: 13, error: 17, fatal: 21 }

/** One pino line (already redacted) as an OTLP log record, in the trace it names. */
function emitLogLine(api: Api, logger: import('@opentelemetry/api').Logger, line: string): void {
  let record: Record<string, unknown>
  try {
    record = JSON.parse(line) as Record<string, unknown>
  } catch {
    return
  }
  const { level, time, msg, trace_id, span_id, ...rest } = record
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
          traceFlags: api.TraceFlags.SAMPLED,
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

/** The SDK reports export failures and drops through `diag`; they become rate-limited warnings and counts. */
function routeDiagnostics(api: Api, hooks: TelemetryHooks): void {
  const lastWarned = new Map<string, number>()
  const report = (message: unknown, ...args: unknown[]) => {
    const text = [message, ...args].map(String).join(' ')
    const dropped = /Dropped (\d+) (spans|log records?)/i.exec(text)
    if (dropped !== null)
      hooks.dropped(dropped[2]?.startsWith('span') ? 'traces' : 'logs', Number(dropped[1]))
    const kind = text.replace(/\d+/g, 'N').slice(0, 80)
    const now = Date.now()
    if (now - (lastWarned.get(kind) ?? 0) < 60_000) return
    lastWarned.set(kind, now)
    hooks.warn(text.slice(0, 300))
  }
  const ignore = () => {}
  api.diag.setLogger(
    { error: report, warn: report, info: ignore, debug: ignore, verbose: ignore },
    { logLevel: api.DiagLogLevel.WARN, suppressOverrideMessage: true },
  )
}

const headerGetter = {
  get: (carrier: IncomingHttpHeaders, key: string) => carrier[key],
  keys: (carrier: IncomingHttpHeaders) => Object.keys(carrier),
}
const headerSetter = {
  set(carrier: Record<string, string>, key: string, value: string) {
    carrier[key] = value
  },
}

class ServerSpan implements RequestTrace {
  readonly #sdk: Sdk
  readonly #span: Span
  readonly #context: Context
  readonly #capture: boolean
  readonly #redact: Redactor
  readonly #method: string
  readonly logFields: Readonly<Record<string, string>>

  constructor(
    sdk: Sdk,
    capture: boolean,
    redact: Redactor,
    method: string,
    path: string,
    headers: IncomingHttpHeaders,
  ) {
    const { api } = sdk
    this.#sdk = sdk
    this.#capture = capture
    this.#redact = redact
    this.#method = method
    const parent = sdk.propagator.extract(api.ROOT_CONTEXT, headers, headerGetter)
    this.#span = sdk.tracer.startSpan(
      method,
      { kind: api.SpanKind.SERVER, attributes: { 'http.request.method': method, 'url.path': path } },
      parent,
    )
    this.#context = api.trace.setSpan(parent, this.#span)
    const { traceId, spanId } = this.#span.spanContext()
    this.logFields = { trace_id: traceId, span_id: spanId }
  }

  named(route: string): void {
    this.#span.updateName(`${this.#method} ${route}`)
    this.#span.setAttribute('http.route', route)
  }

  attempt(step: Step, operation: string, input?: unknown): AttemptTrace {
    const { api } = this.#sdk
    const url = new URL(step.origin)
    const span = this.#sdk.tracer.startSpan(
      `${operation} ${step.model}`,
      {
        kind: api.SpanKind.CLIENT,
        attributes: {
          'gen_ai.operation.name': operation,
          'gen_ai.provider.name': step.provider,
          'gen_ai.request.model': step.model,
          'server.address': url.hostname,
          'server.port': Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
          'http.request.method': 'POST',
          'gateway.step.index': step.index,
          ...(this.#capture && input !== undefined
            ? { 'gen_ai.input.messages': this.#redact(JSON.stringify(input)) }
            : {}),
        },
      },
      this.#context,
    )
    const headers: Record<string, string> = {}
    this.#sdk.propagator.inject(api.trace.setSpan(this.#context, span), headers, headerSetter)
    return {
      headers,
      end: (result) => {
        span.setAttributes(attemptAttributes(result, this.#redact))
        if (this.#capture && result.output !== undefined) {
          span.setAttribute('gen_ai.output.messages', this.#redact(JSON.stringify(result.output)))
        }
        if (result.outcome !== 'ok') {
          span.setStatus({
            code: api.SpanStatusCode.ERROR,
            message: this.#redact(result.reason ?? result.outcome),
          })
        }
        span.end()
      },
    }
  }

  end(result: RequestEnd): void {
    const { api } = this.#sdk
    const span = this.#span
    span.setAttributes({
      'http.response.status_code': result.status,
      ...(result.route === undefined
        ? {}
        : { 'gateway.route': result.route, 'gen_ai.request.model': result.route }),
      ...(result.provider === undefined ? {} : { 'gen_ai.provider.name': result.provider }),
      ...(result.model === undefined ? {} : { 'gen_ai.response.model': result.model }),
      ...usageAttributes(result.usage),
      ...(result.attempts === undefined ? {} : { 'gateway.attempts': result.attempts }),
      ...(result.error === undefined ? {} : { 'error.type': result.error }),
    })
    for (const skipped of result.skipped ?? []) {
      span.addEvent('gateway.step_skipped', {
        'gen_ai.provider.name': skipped.provider,
        'gen_ai.request.model': skipped.model,
        'gateway.skip.reason': skipped.reason,
      })
    }
    if (result.status >= 500 || result.error !== undefined) {
      span.setStatus({
        code: api.SpanStatusCode.ERROR,
        ...(result.error === undefined ? {} : { message: result.error }),
      })
    }
    span.end()
  }
}

function attemptAttributes(result: AttemptEnd, redact: Redactor): Record<string, string | number> {
  return {
    'gateway.attempt.outcome': result.outcome,
    ...(result.status === undefined ? {} : { 'http.response.status_code': result.status }),
    ...(result.responseModel === undefined ? {} : { 'gen_ai.response.model': result.responseModel }),
    ...usageAttributes(result.usage),
    ...(result.ttftMs === undefined ? {} : { 'gateway.time_to_first_token_ms': result.ttftMs }),
    ...(result.outcome === 'ok'
      ? {}
      : {
          'error.type': result.status === undefined ? result.outcome : String(result.status),
          'gateway.fallback.reason': redact(result.reason ?? result.outcome),
        }),
  }
}

function usageAttributes(usage: Usage | undefined): Record<string, number> {
  return {
    ...(usage?.prompt_tokens === undefined ? {} : { 'gen_ai.usage.input_tokens': usage.prompt_tokens }),
    ...(usage?.completion_tokens === undefined
      ? {}
      : { 'gen_ai.usage.output_tokens': usage.completion_tokens }),
  }
}
