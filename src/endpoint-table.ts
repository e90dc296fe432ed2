// The endpoint table: which handler a method and path reach, and which methods a path has.

import { GatewayError } from './errors.ts'
import type { Endpoint } from './server.ts'

/** Exact paths by map lookup (the hot ones); patterns (`/v1/models/{id}`) tried in order. */
export interface EndpointTable {
  readonly exact: ReadonlyMap<string, readonly Endpoint[]>
  readonly patterns: readonly Endpoint[]
}

export function tableOf(endpoints: readonly Endpoint[]): EndpointTable {
  const exact = new Map<string, Endpoint[]>()
  for (const e of endpoints)
    if (typeof e.path === 'string') exact.set(e.path, [...(exact.get(e.path) ?? []), e])
  return { exact, patterns: endpoints.filter((e) => typeof e.path !== 'string') }
}

export function methodsAt(endpoints: EndpointTable, path: string): string[] {
  const atPath = endpoints.exact.get(path) ?? endpoints.patterns.filter((e) => (e.path as RegExp).test(path))
  return [...new Set(atPath.map((e) => e.method))]
}

export function matchEndpoint(endpoints: EndpointTable, method: string, path: string): Endpoint {
  const exact = endpoints.exact.get(path)
  const wanted = method === 'HEAD' ? 'GET' : method
  const hit = exact?.find((e) => e.method === wanted)
  if (hit !== undefined) return hit
  const atPath = exact ?? endpoints.patterns.filter((e) => (e.path as RegExp).test(path))
  if (atPath.length === 0) throw new GatewayError('not_found', `Unknown path ${path}.`)
  const endpoint = atPath.find((e) => e.method === wanted)
  if (endpoint !== undefined) return endpoint
  const allow = [...new Set(atPath.map((e) => e.method))].join(', ')
  throw new GatewayError('method_not_allowed', `Method ${method} is not allowed on ${path}.`, {
    headers: { allow },
  })
}
