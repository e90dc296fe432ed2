// The endpoints: health, the model list (route names), chat completions, and the gateway's own status.

import { readJsonObject } from './body.ts'
import { GatewayError } from './errors.ts'
import { type ProxyDeps, proxyThroughRoute } from './proxy.ts'
import type { Router } from './router.ts'
import { type Endpoint, type Exchange, sendJson } from './server.ts'

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
      handle: ({ res }) => sendJson(res, 200, { status: 'healthy' }),
    },
    { method: 'GET', path: '/v1/models', handle: ({ res }) => sendJson(res, 200, models) },
    {
      method: 'GET',
      path: /^\/v1\/models\/.+$/,
      template: '/v1/models/{id}',
      handle: ({ res, path }) => {
        const id = safeDecode(path.slice('/v1/models/'.length))
        if (deps.router.plan(id) === undefined) throw modelNotFound(id)
        sendJson(res, 200, modelObject(id))
      },
    },
    { method: 'POST', path: '/v1/chat/completions', handle: (exchange) => chatCompletions(exchange, deps) },
    {
      method: 'GET',
      path: '/v1/gateway/status',
      handle: ({ res }) => sendJson(res, 200, gatewayStatus(deps)),
    },
  ]
}

async function chatCompletions(exchange: Exchange, deps: HandlerDeps): Promise<void> {
  const body = await readJsonObject(exchange.req, deps.maxBodySize)
  const model = body.model
  if (typeof model !== 'string' || model === '') {
    throw new GatewayError('invalid_request', 'The request must name a route in "model" (a string).', {
      param: 'model',
    })
  }
  if (!Array.isArray(body.messages)) {
    throw new GatewayError('invalid_request', 'The request must carry "messages" (an array).', {
      param: 'messages',
    })
  }
  const route = deps.router.plan(model)
  if (route === undefined) throw modelNotFound(model)
  await proxyThroughRoute(exchange, deps, {
    route,
    endpoint: '/chat/completions',
    operation: 'chat',
    body,
    stream: body.stream === true,
  })
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

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
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
