// OTLP export settings from the environment: `OTLP_*` (the gateway's own, Grafana-friendly) and the
// standard `OTEL_*` variables. Pure: the caller passes the environment in.

import { headerText, httpToken } from './config-schema.ts'
import { headerSecrets, maskUrl, urlSecrets } from './redact.ts'
import { safeDecode } from './units.ts'

type Env = Readonly<Record<string, string | undefined>>

export interface OtlpSettings {
  /** Undefined when the signal is not exported (`OTEL_TRACES_EXPORTER=none`, or only logs configured). */
  readonly tracesUrl: string | undefined
  /** Undefined when the signal is not exported (`OTEL_LOGS_EXPORTER=none`, or only traces configured). */
  readonly logsUrl: string | undefined
  /**
   * Each signal's headers, all of them: the SDK reads the standard variables by itself too, but what it
   * reads is only ever overridden here, never trusted unchecked (see otlpHeaders).
   */
  readonly tracesHeaders: Readonly<Record<string, string>>
  readonly logsHeaders: Readonly<Record<string, string>>
  readonly serviceName: string
  readonly resourceAttributes: Readonly<Record<string, string>>
  readonly sampler: SamplerSettings
}

/** Which traces are recorded: OTEL_TRACES_SAMPLER and its argument, as the OpenTelemetry spec names them. */
export interface SamplerSettings {
  /** The client's `traceparent`, sampled or not, decides for the request (the `parentbased_*` samplers). */
  readonly parentBased: boolean
  /** The share of the other traces recorded: 1 for `always_on`, 0 for `always_off`. */
  readonly ratio: number
}

export interface TelemetrySettings {
  /** Undefined when no endpoint is configured (or OTEL_SDK_DISABLED is true): nothing is exported. */
  readonly otlp: OtlpSettings | undefined
  /** Record prompts and completions on spans (off unless the operator opts in). */
  readonly captureContent: boolean
}

const set = (value: string | undefined): value is string => value !== undefined && value.trim() !== ''

/** An endpoint variable that is set, and its value. */
interface Endpoint {
  readonly variable: string
  readonly value: string
}

function endpoint(env: Env, ...variables: string[]): Endpoint | undefined {
  for (const variable of variables) {
    const value = env[variable]
    if (set(value)) return { variable, value }
  }
  return undefined
}

/**
 * Settings from `env`. An endpoint the exporter could not send to is added to `problems`, naming its
 * variable, so start-up (and `validate`) refuse it as they refuse a bad config.
 */
export function telemetrySettings(env: Env, problems: string[]): TelemetrySettings {
  const captureContent = /^(true|1)$/i.test(env.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT ?? '')
  const base = endpoint(env, 'OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT')
  const tracesOnly = endpoint(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')
  const logsOnly = endpoint(env, 'OTEL_EXPORTER_OTLP_LOGS_ENDPOINT')
  const disabled = /^true$/i.test(env.OTEL_SDK_DISABLED ?? '')
  // As the OTel spec has it: a signal's own endpoint is for that signal alone (a traces-only backend
  // such as Langfuse), and `OTEL_<SIGNAL>_EXPORTER=none` turns a signal off.
  const exported = (signal: 'TRACES' | 'LOGS', own: Endpoint | undefined) =>
    /^none$/i.test(env[`OTEL_${signal}_EXPORTER`]?.trim() ?? '') ? undefined : (own ?? base)
  const traces = exported('TRACES', tracesOnly)
  const logs = exported('LOGS', logsOnly)
  if (disabled || (traces === undefined && logs === undefined)) return { otlp: undefined, captureContent }

  const urlFor = (signal: 'traces' | 'logs', chosen: Endpoint | undefined): string | undefined => {
    if (chosen === undefined) return undefined
    const url = chosen === base ? signalUrl(chosen.value, signal) : normalizeUrl(chosen.value)
    const { variable, value } = chosen
    // Masked: an endpoint may carry credentials (`https://id:token@host`), and no secret is known yet.
    const problem = `${variable}: ${JSON.stringify(maskUrl(value))} is not an http(s) URL with a port from 1 to 65535`
    if (!isExportUrl(url) && !problems.includes(problem)) problems.push(problem)
    return url
  }
  // Both lists, ours winning where they meet: the OpenTelemetry Operator injects OTEL_RESOURCE_ATTRIBUTES
  // into the pods it instruments, and with it set OTLP_RESOURCE_ATTRIBUTES was silently ignored.
  const resourceAttributes = {
    ...parseHeaderList(env.OTEL_RESOURCE_ATTRIBUTES),
    ...parseHeaderList(env.OTLP_RESOURCE_ATTRIBUTES),
  }
  return {
    captureContent,
    otlp: {
      tracesUrl: urlFor('traces', traces),
      logsUrl: urlFor('logs', logs),
      tracesHeaders: otlpHeaders(env, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS', problems),
      logsHeaders: otlpHeaders(env, 'OTEL_EXPORTER_OTLP_LOGS_HEADERS', problems),
      // As the OpenTelemetry spec orders it: OTEL_SERVICE_NAME, then service.name among the resource
      // attributes, then our default; OTLP_SERVICE_NAME before all, as OTLP_RESOURCE_ATTRIBUTES wins
      // over its twin (the OpenTelemetry Operator sets OTEL_SERVICE_NAME in the pods it instruments).
      serviceName:
        [env.OTLP_SERVICE_NAME, env.OTEL_SERVICE_NAME, resourceAttributes['service.name']].find(set) ??
        'ai-gateway',
      resourceAttributes,
      sampler: samplerOf(env, problems),
    },
  }
}

/**
 * OTEL_TRACES_SAMPLER (case-insensitive, as the spec has it) and OTEL_TRACES_SAMPLER_ARG. The SDK's
 * tracer provider does not read them by itself: set, they were ignored and every request was traced.
 * A sampler or ratio that cannot be honoured is a problem rather than a silent 100 %.
 */
function samplerOf(env: Env, problems: string[]): SamplerSettings {
  const name = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase() || 'parentbased_always_on'
  const match = /^(parentbased_)?(always_on|always_off|traceidratio)$/.exec(name)
  if (match === null) {
    problems.push(
      `OTEL_TRACES_SAMPLER: ${JSON.stringify(name)} is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio`,
    )
    return { parentBased: true, ratio: 1 }
  }
  const parentBased = match[1] !== undefined
  if (match[2] !== 'traceidratio') return { parentBased, ratio: match[2] === 'always_on' ? 1 : 0 }
  const arg = env.OTEL_TRACES_SAMPLER_ARG
  const ratio = set(arg) ? Number(arg) : 1
  if (ratio >= 0 && ratio <= 1) return { parentBased, ratio }
  problems.push(`OTEL_TRACES_SAMPLER_ARG: ${JSON.stringify(arg?.trim())} is not a number from 0 to 1`)
  return { parentBased, ratio: 1 }
}

/**
 * The exporter throws on a URL it cannot parse, from deep inside the SDK at start-up. Port 0 parses
 * but reaches nothing; a port past 65535 does not parse.
 */
function isExportUrl(text: string): boolean {
  if (!URL.canParse(text)) return false
  const url = new URL(text)
  return /^https?:$/.test(url.protocol) && url.port !== '0'
}

/** `host:port` gets https; a trailing slash is dropped so joining never makes `//`. */
function normalizeUrl(value: string): string {
  const text = value.trim()
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `https://${text}`
  return withScheme.replace(/\/+$/, '')
}

/**
 * The URL for one signal from a base: `https://host/otlp` → `https://host/otlp/v1/traces`. A URL that
 * already ends in a signal path is kept for that signal, and its sibling derived from it. The signal
 * path ends the base's path, not its query: `https://host/otlp?tenant=a` (a backend that takes its
 * tenant or token there) became `…/otlp?tenant=a/v1/traces`, both signals sent to `/otlp`.
 */
export function signalUrl(base: string, signal: 'traces' | 'logs'): string {
  const url = normalizeUrl(base)
  const cut = url.search(/[?#]/)
  const query = cut === -1 ? '' : url.slice(cut)
  const path = (cut === -1 ? url : url.slice(0, cut)).replace(/\/+$/, '')
  const match = /\/v1\/(traces|logs|metrics)$/.exec(path)
  return `${match === null ? path : path.slice(0, match.index)}/v1/${signal}${query}`
}

/** Every variable a header list for OTLP export is read from; the SDK reads all but OTLP_HEADERS itself. */
const otlpHeaderVariables = [
  'OTEL_EXPORTER_OTLP_HEADERS',
  'OTEL_EXPORTER_OTLP_TRACES_HEADERS',
  'OTEL_EXPORTER_OTLP_LOGS_HEADERS',
  'OTLP_HEADERS',
] as const

const endpointVariables = [
  'OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_EXPORTER_OTLP_LOGS_ENDPOINT',
] as const

/**
 * What in the OTLP variables is secret, whether they are used or not (the SDK reads the standard ones by
 * itself, and quotes an endpoint it cannot parse): the key, secret-looking headers of each list on its
 * own (one overridden by another may still be sent), the Authorization built from the key (its base64
 * form is as secret), and each endpoint's user info and secret-looking query values.
 */
export function otlpSecrets(env: Env, settings: TelemetrySettings): (string | undefined)[] {
  return [
    env.OTLP_API_KEY,
    ...otlpHeaderVariables.flatMap((variable) => headerSecrets(parseHeaderList(env[variable]))),
    ...headerSecrets(settings.otlp?.tracesHeaders ?? {}),
    ...headerSecrets(settings.otlp?.logsHeaders ?? {}),
    ...endpointVariables.flatMap((variable) => urlSecrets(env[variable])),
  ]
}

/**
 * One signal's headers, lowest precedence first: the standard shared list, OTLP_API_KEY's Authorization,
 * OTLP_HEADERS, then the signal's own list, which wins as its own endpoint does (the OTel spec orders
 * them so): traces sent to a backend of their own (Langfuse) with their own Authorization must not get
 * the key meant for the logs' backend instead. Names are matched in any case. Passed to the exporter
 * explicitly, so every header it sends was checked here, whatever the SDK reads from the environment.
 */
function otlpHeaders(env: Env, signalVariable: string, problems: string[]): Record<string, string> {
  const list = (variable: string) => {
    const problem = headerListProblem(env[variable])
    const line = `${variable}: ${problem}`
    if (problem !== undefined && !problems.includes(line)) problems.push(line)
    return parseHeaderList(env[variable])
  }
  const merged = new Map<string, [string, string]>()
  for (const headers of [
    list('OTEL_EXPORTER_OTLP_HEADERS'),
    authorization(env),
    list('OTLP_HEADERS'),
    list(signalVariable),
  ]) {
    for (const [name, value] of Object.entries(headers)) merged.set(name.toLowerCase(), [name, value])
  }
  return Object.fromEntries(merged.values())
}

/**
 * What is wrong with a header list, saying which entry but quoting none: `Authorization: Basic MTIz…==`
 * splits at the padding's `=`, making the credential a header name that Node refuses on every export,
 * quoting it in the error.
 */
function headerListProblem(value: string | undefined): string | undefined {
  const entries = set(value) ? value.split(',') : []
  for (const [i, entry] of entries.entries()) {
    if (entry.trim() === '') continue
    const eq = entry.indexOf('=')
    const name = eq === -1 ? '' : safeDecode(entry.slice(0, eq).trim())
    if (!httpToken.test(name)) {
      return `entry ${i + 1} is not name=value with a valid header name (write Authorization=Basic%20…, not Authorization: Basic …)`
    }
    if (!headerText.test(safeDecode(entry.slice(eq + 1).trim()))) {
      return `the value of entry ${i + 1} holds a character HTTP headers cannot carry (a line break, NUL or other control character)`
    }
  }
  return undefined
}

/** `k=v,k2=v2`, URL-decoded, as the OTel spec defines for OTEL_EXPORTER_OTLP_HEADERS. */
export function parseHeaderList(value: string | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  if (!set(value)) return out
  for (const pair of value.split(',')) {
    const eq = pair.indexOf('=')
    if (eq <= 0) continue
    const key = safeDecode(pair.slice(0, eq).trim())
    if (key !== '') out[key] = safeDecode(pair.slice(eq + 1).trim())
  }
  return out
}

/**
 * `OTLP_API_KEY` as Basic auth. Grafana Cloud wants `instance-id:token`; its `glc_` tokens are base64
 * JSON whose name (`n`) reads `stack-<id>-…`, so the id is taken from there unless OTLP_INSTANCE_ID
 * says otherwise. Any other key is sent as the user name with an empty password.
 */
function authorization(env: Env): Record<string, string> {
  const key = env.OTLP_API_KEY
  if (!set(key)) return {}
  const id = [env.OTLP_INSTANCE_ID].find(set) ?? grafanaInstanceId(key)
  const user = id === undefined ? `${key}:` : `${id}:${key}`
  return { Authorization: `Basic ${Buffer.from(user).toString('base64')}` }
}

export function grafanaInstanceId(token: string): string | undefined {
  if (!token.startsWith('glc_')) return undefined
  try {
    const claims = JSON.parse(Buffer.from(token.slice(4), 'base64').toString('utf8')) as { n?: unknown }
    const match = typeof claims.n === 'string' ? /^stack-(\d+)-/.exec(claims.n) : null
    return match?.[1]
  } catch {
    return undefined
  }
}
