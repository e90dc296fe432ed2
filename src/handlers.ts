// The endpoints: health, the model list (route names), the routed OpenAI endpoints, and the gateway's
// own status.

import { readJsonObject, wantsStream } from './body.ts'
import { GatewayError } from './errors.ts'
import { type ProxyDeps, proxyThroughRoute, samePlan } from './proxy.ts'
import { sendJson } from './reply.ts'
import type { Route, Router } from './router.ts'
import type { Endpoint, Exchange } from './server.ts'
import { safeDecode } from './units.ts'

export interface HandlerDeps extends ProxyDeps {
  readonly router: Router
  readonly maxBodySize: number
  /** Unix seconds, reported as each model's `created`. */
  readonly createdAt: number
}

export function createEndpoints(deps: HandlerDeps): Endpoint[] {
  const modelObject = (id: string) => ({
    id,
    object: 'model',
    created: deps.createdAt,
    owned_by: 'ai-gateway',
  })
  const models = { object: 'list', data: deps.router.routes.map((route) => modelObject(route.name)) }

  return [
    {
      method: 'GET',
      path: '/health',
      public: true,
      handle: (exchange) => sendJson(exchange, 200, { status: 'healthy' }),
    },
    { method: 'GET', path: '/v1/models', handle: (exchange) => sendJson(exchange, 200, models) },
    {
      method: 'GET',
      path: /^\/v1\/models\/.+$/,
      template: '/v1/models/{id}',
      handle: (exchange) => {
        const id = safeDecode(exchange.path.slice('/v1/models/'.length))
        if (deps.router.plan(id) === undefined) throw modelNotFound(id)
        sendJson(exchange, 200, modelObject(id))
      },
    },
    {
      method: 'POST',
      path: '/v1/chat/completions',
      handle: (exchange) =>
        passThrough(exchange, deps, {
          endpoint: '/chat/completions',
          operation: 'chat',
          required: 'messages',
          shape: 'array',
        }),
    },
    {
      method: 'POST',
      path: '/v1/completions',
      handle: (exchange) =>
        passThrough(exchange, deps, {
          endpoint: '/completions',
          operation: 'text_completion',
          required: 'prompt',
        }),
    },
    {
      method: 'POST',
      path: '/v1/embeddings',
      handle: (exchange) =>
        passThrough(exchange, deps, { endpoint: '/embeddings', operation: 'embeddings', required: 'input' }),
    },
    {
      method: 'GET',
      path: '/v1/gateway/status',
      handle: (exchange) => sendJson(exchange, 200, gatewayStatus(deps)),
    },
  ]
}

interface PassThrough {
  /** Appended to each provider's base URL. */
  readonly endpoint: string
  readonly operation: string
  /** The field the endpoint cannot do without, and (when it must be one) its JSON type. */
  readonly required: string
  readonly shape?: 'array'
}

/**
 * The OpenAI endpoints that go to the provider as the client sent them, with only `model` replaced:
 * chat completions, legacy completions, embeddings. Nothing else is second-guessed.
 */
async function passThrough(exchange: Exchange, deps: HandlerDeps, spec: PassThrough): Promise<void> {
  const body = await readJsonObject(exchange.req, deps.maxBodySize)
  const route = routeOf(body, deps)
  const value = body[spec.required]
  if (value === undefined || value === null || (spec.shape === 'array' && !Array.isArray(value))) {
    const what = spec.shape === 'array' ? 'an array' : 'a value'
    throw new GatewayError('invalid_request', `The request must carry "${spec.required}" (${what}).`, {
      param: spec.required,
    })
  }
  await proxyThroughRoute(exchange, deps, {
    route,
    operation: spec.operation,
    body,
    stream: wantsStream(body),
    plan: samePlan(spec.endpoint, body),
  })
}

/** The route the body's `model` names. */
export function routeOf(body: Readonly<Record<string, unknown>>, deps: HandlerDeps): Route {
  const model = body.model
  if (typeof model !== 'string' || model === '') {
    throw new GatewayError('invalid_request', 'The request must name a route in "model" (a string).', {
      param: 'model',
    })
  }
  const route = deps.router.plan(model)
  if (route === undefined) throw modelNotFound(model)
  return route
}

function modelNotFound(model: string): GatewayError {
  return new GatewayError(
    'model_not_found',
    `The model "${model.slice(0, 100)}" is not a route of this gateway. GET /v1/models lists them.`,
    {
      param: 'model',
    },
  )
}

/** Every target's health, and which step each route would try next, as of now. */
function gatewayStatus(deps: HandlerDeps) {
  const now = Date.now()
  const routes = deps.router.routes.map((route) => {
    const steps = route.steps.map((step) => {
      const availability = deps.health.availability(step, now)
      return {
        step: step.index,
        provider: step.provider,
        model: step.model,
        available: availability.ok,
        ...(availability.ok
          ? {}
          : { reason: availability.reason, until: new Date(availability.until).toISOString() }),
      }
    })
    const next = steps.find((s) => s.available)
    return {
      name: route.name,
      next: next === undefined ? null : { step: next.step, provider: next.provider, model: next.model },
      steps,
    }
  })
  return {
    object: 'gateway.status',
    time: new Date(now).toISOString(),
    targets: deps.health.snapshot(now),
    routes,
  }
}
