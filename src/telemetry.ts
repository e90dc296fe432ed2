// OpenTelemetry for requests: one SERVER span per request, one CLIENT span per upstream attempt (GenAI
// semantic conventions), W3C trace context in and out. With telemetry off every call here is a no-op on
// a shared object and the SDK (otel-sdk.ts, the only other file that touches it) is never loaded.

import type { IncomingHttpHeaders } from 'node:http'
import type { Writable } from 'node:stream'
import type { Context, Span } from '@opentelemetry/api'
import type { Usage } from './answer.ts'
import type { Sdk } from './otel-sdk.ts'
import type { TelemetrySettings } from './otlp-config.ts'
import type { Redactor } from './redact.ts'
import type { Step } from './router.ts'

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
  /** Ends the span; `describe` is only called when something records it, so tracing off builds nothing. */
  end(describe: () => AttemptEnd): void
}

export interface RequestEnd {
  readonly status: number
  readonly route?: string
  readonly provider?: string
  readonly model?: string
  readonly usage?: Usage
  readonly error?: string
  readonly attempts?: number
  /** How a committed stream ended (`completed`, `client_gone`, or how the provider failed it). */
  readonly streamEnd?: string
  readonly skipped?: readonly { provider: string; model: string; reason: string }[]
}

export interface RequestTrace {
  /** `trace_id`, `span_id` and `trace_flags` for the request's log lines; empty with tracing off. */
  readonly logFields: Readonly<Record<string, string>>
  /** Names the span after the matched endpoint (`POST /v1/chat/completions`). */
  named(route: string): void
  attempt(step: Step, operation: string, input?: unknown): AttemptTrace
  /** Ends the span; `describe` is only called when something records it. */
  end(describe: () => RequestEnd): void
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
  /** Export problems, at most once a minute per kind; false when the message was not logged. */
  warn(message: string): boolean
  dropped(signal: 'traces' | 'logs', count: number): void
}

export async function createTelemetry(
  settings: TelemetrySettings,
  version: string,
  redact: Redactor,
  hooks: TelemetryHooks,
): Promise<Telemetry> {
  if (settings.otlp === undefined) return disabledTelemetry
  // Loaded on demand: with telemetry off, the SDK costs neither start-up time nor memory.
  const { loadSdk } = await import('./otel-sdk.ts')
  const sdk = loadSdk(settings.otlp, version, hooks, redact)
  return {
    enabled: true,
    captureContent: settings.captureContent,
    startRequest: (method, path, headers) =>
      new ServerSpan(sdk, settings.captureContent, redact, method, path, headers),
    logSink: sdk.logSink,
    shutdown: sdk.shutdown,
  }
}

const headerGetter = {
  get: (carrier: IncomingHttpHeaders, key: string) => carrier[key],
  keys: (carrier: IncomingHttpHeaders) => Object.keys(carrier),
}
// Only the gateway's own context goes upstream: `traceparent`, naming the attempt's span. The propagator
// would add the client's `tracestate` too (a span inherits it), and provider headers are built from
// scratch: nothing the client sent is forwarded.
const traceparentSetter = {
  set(carrier: Record<string, string>, key: string, value: string) {
    if (key === 'traceparent') carrier[key] = value
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
    // The client's `tracestate` is free text the spans carry and export: redacted like the rest.
    const { tracestate } = headers
    const carrier =
      tracestate === undefined ? headers : { ...headers, tracestate: redact(String(tracestate)) }
    const parent = sdk.propagator.extract(api.ROOT_CONTEXT, carrier, headerGetter)
    // The path is the client's text: one that put the key in its base URL sends it here
    // (`/v1/models/<key>`). The method needs no redaction: node:http accepts only the methods it knows.
    const attributes = { 'http.request.method': method, 'url.path': redact(path) }
    this.#span = sdk.tracer.startSpan(method, { kind: api.SpanKind.SERVER, attributes }, parent)
    this.#context = api.trace.setSpan(parent, this.#span)
    // `trace_flags` as OpenTelemetry's pino instrumentation writes it: whether the trace is recorded
    // (a sampler or the client's `traceparent` may say no), so a log record links to a trace that exists.
    const { traceId, spanId, traceFlags } = this.#span.spanContext()
    this.logFields = {
      trace_id: traceId,
      span_id: spanId,
      trace_flags: traceFlags.toString(16).padStart(2, '0'),
    }
  }

  named(route: string): void {
    // A pattern endpoint without a template is named by the path itself.
    const name = this.#redact(route)
    this.#span.updateName(`${this.#method} ${name}`)
    this.#span.setAttribute('http.route', name)
  }

  attempt(step: Step, operation: string, input?: unknown): AttemptTrace {
    const { api } = this.#sdk
    const span = this.#sdk.tracer.startSpan(
      `${operation} ${step.model}`,
      {
        kind: api.SpanKind.CLIENT,
        attributes: {
          'gen_ai.operation.name': operation,
          'gen_ai.provider.name': step.provider,
          'gen_ai.request.model': step.model,
          'server.address': step.host,
          'server.port': step.port,
          'http.request.method': 'POST',
          'gateway.step.index': step.index,
        },
      },
      this.#context,
    )
    // A span the sampler left out records nothing: the prompt is not serialized and redacted, nor the
    // answer described, for it (a large prompt cost more than the rest of the request). Nor does one
    // that is never exported (OTEL_TRACES_EXPORTER=none, a logs-only endpoint).
    const recording = this.#sdk.tracesExported && span.isRecording()
    if (recording && this.#capture && input !== undefined) {
      span.setAttribute('gen_ai.input.messages', this.#redact(JSON.stringify(input)))
    }
    const headers: Record<string, string> = {}
    this.#sdk.propagator.inject(api.trace.setSpan(this.#context, span), headers, traceparentSetter)
    return {
      headers,
      end: (describe) => {
        if (!recording) {
          span.end()
          return
        }
        const result = describe()
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

  end(describe: () => RequestEnd): void {
    const span = this.#span
    if (!this.#sdk.tracesExported || !span.isRecording()) {
      span.end()
      return
    }
    const result = describe()
    const { api } = this.#sdk
    // A stream the provider broke after commit answered 200, and its client read a `stream_interrupted`
    // error event instead of the end: a failed request all the same.
    const interrupted = result.streamEnd !== undefined && !streamEndsWell.has(result.streamEnd)
    const error = interrupted ? 'stream_interrupted' : result.error
    span.setAttributes({
      'http.response.status_code': result.status,
      ...(result.route === undefined
        ? {}
        : { 'gateway.route': result.route, 'gen_ai.request.model': result.route }),
      ...(result.provider === undefined ? {} : { 'gen_ai.provider.name': result.provider }),
      ...(result.model === undefined ? {} : { 'gen_ai.response.model': result.model }),
      ...usageAttributes(result.usage),
      ...(result.attempts === undefined ? {} : { 'gateway.attempts': result.attempts }),
      ...(error === undefined ? {} : { 'error.type': error }),
    })
    for (const skipped of result.skipped ?? []) {
      span.addEvent('gateway.step_skipped', {
        'gen_ai.provider.name': skipped.provider,
        'gen_ai.request.model': skipped.model,
        'gateway.skip.reason': skipped.reason,
      })
    }
    // As the HTTP conventions have it for a SERVER span, a 4xx (no key, no such route, every provider
    // rate limited) is the client's error and leaves the status unset, `error.type` naming it: marked
    // ERROR, every scanner's 401 counted in the gateway's error rate.
    if (result.status >= 500 || interrupted) {
      span.setStatus({
        code: api.SpanStatusCode.ERROR,
        ...(error === undefined ? {} : { message: error }),
      })
    }
    span.end()
  }
}

/** Stream ends that are no failure: the provider finished, or the client left or stopped reading. */
const streamEndsWell: ReadonlySet<string> = new Set(['completed', 'client_gone', 'client_stalled'])

function attemptAttributes(result: AttemptEnd, redact: Redactor): Record<string, string | number> {
  return {
    'gateway.attempt.outcome': result.outcome,
    ...(result.status === undefined ? {} : { 'http.response.status_code': result.status }),
    // The provider's text, as the fallback reason is.
    ...(result.responseModel === undefined ? {} : { 'gen_ai.response.model': redact(result.responseModel) }),
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
