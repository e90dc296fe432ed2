// Route table: route name → ordered steps, each resolved once against its provider at startup. Pure.

import { writeJson } from './body.ts'
import type { Config } from './config.ts'
import type { Limits } from './config-schema.ts'

export type ConflictResolution = 'tools' | 'format'

export interface Step {
  /** Position in the route, from 0. */
  readonly index: number
  readonly provider: string
  readonly model: string
  readonly timeouts: StepTimeouts
  /** This target's declared quota, and its provider's. */
  readonly limits: Limits | undefined
  readonly providerLimits: Limits | undefined
  /** Whether the provider speaks the Responses API itself or gets chat completions. */
  readonly responses: 'translate' | 'native'
  readonly conflictResolution: ConflictResolution | undefined
  /** `scheme://host[:port]` of the provider, the key of its connection pool. */
  readonly origin: string
  /** Host name and port of `origin`, for traces. */
  readonly host: string
  readonly port: number
  /** Path of `base_url` without a trailing slash; endpoints are appended to it. */
  readonly basePath: string
  /** Query of `base_url` (some providers version their API there), kept after the endpoint. */
  readonly search: string
  /** Provider auth and configured extra headers, lower-cased names. */
  readonly headers: Readonly<Record<string, string>>
  /** The names the client is told in `x-gateway-*` headers, made header-safe once here. */
  readonly answeredBy: Readonly<{ route: string; provider: string; model: string }>
}

/** Per-phase limits in ms, resolved step > route > global; unset phases fall back to `attempt`. */
export interface StepTimeouts {
  /** The whole attempt (`timeout`, else `default_timeout`); for a stream, until its first content. */
  readonly attempt: number
  readonly connect: number
  readonly headers: number
  readonly firstToken: number
  /** Longest silence between stream chunks once the stream is committed. */
  readonly idle: number
}

export interface Route {
  readonly name: string
  readonly steps: readonly Step[]
  /** The request's whole budget, however many steps it walks. */
  readonly totalMs: number
}

const defaultConnectTimeoutMs = 10_000
const defaultTotalTimeoutMs = 300_000

export interface Router {
  /** The route a client's `model` names, or undefined when there is none. */
  plan(model: string): Route | undefined
  readonly routes: readonly Route[]
}

export function createRouter(config: Config, userAgent: string): Router {
  const providers = new Map(config.providers.map((p) => [p.name, p]))
  const routes = config.routes.map(
    (route): Route =>
      Object.freeze({
        name: route.name,
        totalMs: route.timeouts?.total ?? config.timeouts.total ?? defaultTotalTimeoutMs,
        steps: Object.freeze(
          route.steps.map((step, index): Step => {
            const provider = providers.get(step.provider)
            if (provider === undefined) throw new Error(`unknown provider ${step.provider}`) // config checked this
            const url = new URL(provider.base_url)
            const headers: Record<string, string> = { 'user-agent': userAgent }
            if (provider.api_key !== undefined && provider.api_key !== '') {
              headers.authorization = `Bearer ${provider.api_key}`
            }
            for (const [name, value] of Object.entries(provider.headers ?? {}))
              headers[name.toLowerCase()] = value
            return Object.freeze({
              index,
              provider: provider.name,
              model: step.model,
              timeouts: resolveTimeouts(config, route, step),
              limits: step.limits,
              providerLimits: provider.limits,
              responses: provider.responses,
              conflictResolution: step.conflict_resolution,
              origin: url.origin,
              host: url.hostname,
              port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
              basePath: url.pathname.replace(/\/+$/, ''),
              search: url.search,
              headers: Object.freeze(headers),
              answeredBy: Object.freeze({
                route: headerSafe(route.name),
                provider: headerSafe(provider.name),
                model: headerSafe(step.model),
              }),
            })
          }),
        ),
      }),
  )
  const byName = new Map(routes.map((r) => [r.name, r]))
  return { plan: (model) => byName.get(model), routes }
}

type RouteConfig = Config['routes'][number]

/**
 * A name from the config as a header value: node:http refuses anything outside latin-1 and control
 * characters, and a route may well be named in any script. Such a name is sent percent-encoded, and so
 * is one holding `%`, so that decoding a header always gives the name back.
 */
const headerSafe = (name: string): string =>
  /^[\x20-\x24\x26-\x7e]*$/.test(name) ? name : encodeURIComponent(name)

function resolveTimeouts(
  config: Config,
  route: RouteConfig,
  step: RouteConfig['steps'][number],
): StepTimeouts {
  const attempt = step.timeout ?? config.default_timeout
  const pick = (phase: 'connect' | 'headers' | 'first_token' | 'idle') =>
    step.timeouts?.[phase] ?? route.timeouts?.[phase] ?? config.timeouts[phase]
  return Object.freeze({
    attempt,
    connect: pick('connect') ?? defaultConnectTimeoutMs,
    headers: pick('headers') ?? attempt,
    firstToken: pick('first_token') ?? attempt,
    idle: pick('idle') ?? attempt,
  })
}

/** A response_format that constrains the answer: `{"type":"text"}` is the default and conflicts with nothing. */
const asksForFormat = (format: unknown): boolean =>
  format != null && (format as { type?: unknown }).type !== 'text'

/**
 * Providers that refuse `stream_options` (Mistral: 422, "extra inputs are not permitted") and report a
 * stream's usage unasked. LangChain asks for it on every stream, so such a step would never answer one.
 */
const refusesStreamOptions = new Set(['api.mistral.ai'])

/**
 * The body sent to one step: the client's, with `model` replaced and the step's conflict resolution
 * applied. Some providers reject `tools` together with `response_format`; a step declares which wins.
 */
export function rewriteBody(body: Readonly<Record<string, unknown>>, step: Step): string {
  const out: Record<string, unknown> = { ...body, model: step.model }
  if (out.stream_options !== undefined && refusesStreamOptions.has(step.host)) delete out.stream_options
  if (step.conflictResolution === 'tools' && Array.isArray(out.tools) && out.tools.length > 0) {
    delete out.response_format
  } else if (step.conflictResolution === 'format' && asksForFormat(out.response_format)) {
    delete out.tools
    delete out.tool_choice
    delete out.parallel_tool_calls
  }
  return writeJson(out)
}
