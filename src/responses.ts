// POST /v1/responses and GET /v1/responses/{id}: the Responses API on the same routes, fallback and
// streaming rules as chat completions. Each step either speaks it natively (passed through with the
// model replaced) or gets a chat completion translated there and back.

import { readJsonObject, wantsStream, writeJson } from './body.ts'
import { GatewayError } from './errors.ts'
import { type HandlerDeps, routeOf } from './handlers.ts'
import { proxyThroughRoute, type StepPlan } from './proxy.ts'
import { sendJson } from './reply.ts'
import type { ResponseStore, StoredResponse } from './response-store.ts'
import { chatToResponse, echoedSettings, newId, type ResponseShell } from './responses-output.ts'
import { type Item, inputItems, isItemReference, toChatRequest } from './responses-request.ts'
import { ResponsesStreamWriter } from './responses-stream.ts'
import { type Route, rewriteBody, type Step } from './router.ts'
import type { Endpoint, Exchange } from './server.ts'
import { formatEvent } from './sse.ts'
import type { StreamWriter } from './stream-pipe.ts'

type Json = Record<string, unknown>

export interface ResponsesDeps extends HandlerDeps {
  readonly store: ResponseStore
}

export function responsesEndpoints(deps: ResponsesDeps): Endpoint[] {
  return [
    { method: 'POST', path: '/v1/responses', handle: (exchange) => createResponse(exchange, deps) },
    {
      method: 'GET',
      path: /^\/v1\/responses\/[^/]+$/,
      template: '/v1/responses/{id}',
      handle: (exchange) => {
        const id = exchange.path.slice('/v1/responses/'.length)
        const stored = deps.store.get(id)
        if (stored === undefined) throw responseNotFound(id, 'response_id')
        sendJson(exchange, 200, stored.response)
      },
    },
  ]
}

const responseNotFound = (id: string, param: string) =>
  new GatewayError(
    'response_not_found',
    `No stored response "${id.slice(0, 100)}" on this gateway (responses are kept in memory for an hour).`,
    {
      param,
    },
  )

async function createResponse(exchange: Exchange, deps: ResponsesDeps): Promise<void> {
  const body = await readJsonObject(exchange.req, deps.maxBodySize)
  // Echoed back and stored as well as sent: refused now if it cannot be written out, not after the
  // provider has answered.
  writeJson(body)
  const route = routeOf(body, deps)
  const stream = wantsStream(body)
  let history: StoredResponse | undefined
  if (body.previous_response_id !== undefined && body.previous_response_id !== null) {
    const id = body.previous_response_id
    if (typeof id !== 'string')
      throw new GatewayError('invalid_request', '"previous_response_id" must be a string.', {
        param: 'previous_response_id',
      })
    history = deps.store.get(id)
    if (history === undefined) throw responseNotFound(id, 'previous_response_id')
  }
  const input = resolveReferences(inputItems(body.input), deps.store)
  const conversation = [...(history?.items ?? []), ...input]
  const usable = usableRoute(route, body, conversation)
  const shell: Omit<ResponseShell, 'model'> = {
    id: newId('resp'),
    createdAt: Math.floor(Date.now() / 1000),
    settings: echoedSettings(body),
  }
  const remember = (response: Json | undefined) => {
    if (response === undefined || body.store === false || typeof response.id !== 'string') return
    const output = Array.isArray(response.output) ? (response.output as Item[]) : []
    deps.store.put(response.id, response, history, [...input, ...output])
  }
  const plan = (step: Step): StepPlan =>
    step.responses === 'native'
      ? nativePlan(step, body, conversation, remember)
      : translatedPlan(step, usable.chat as Json, { ...shell, model: step.model }, remember)
  await proxyThroughRoute(exchange, deps, {
    route: usable.route,
    body,
    stream,
    operation: 'chat',
    plan,
  })
}

/**
 * The input with each `item_reference` to an output item of a response stored here replaced by that
 * item (Vercel's AI SDK sends earlier output so, from its second turn on). Any other reference is left
 * as sent: a native provider may know its own ids, and a translating step refuses it by name.
 */
function resolveReferences(items: Item[], store: ResponseStore): Item[] {
  return items.map((item) =>
    isItemReference(item) && typeof item.id === 'string' ? (store.item(item.id) ?? item) : item,
  )
}

/**
 * The route as this request walks it, and the chat request its translating steps send. Each step is
 * judged on its own: a native step takes any request, a translating one only a request with a chat
 * equivalent. A step that cannot take it is left out (never tried, so its health is untouched); when
 * no step is left, the translation's 400 naming the field is the answer, before any provider is called.
 */
function usableRoute(
  route: Route,
  body: Json,
  conversation: readonly Item[],
): { route: Route; chat: Json | undefined } {
  if (route.steps.every((step) => step.responses === 'native')) return { route, chat: undefined }
  try {
    return { route, chat: toChatRequest(body, conversation) }
  } catch (err) {
    const native = route.steps.filter((step) => step.responses === 'native')
    if (native.length === 0 || !(err instanceof GatewayError)) throw err
    // The same name and budget; the steps themselves are kept, as health and quotas know them.
    return { route: { ...route, steps: native }, chat: undefined }
  }
}

/** A provider that speaks the Responses API: the whole conversation is sent, our stored ids stay here. */
function nativePlan(
  step: Step,
  body: Json,
  conversation: readonly Item[],
  remember: (r: Json | undefined) => void,
): StepPlan {
  const { previous_response_id: _, ...rest } = body
  const writer = new NativeResponsesStream()
  return {
    endpoint: '/responses',
    body: JSON.stringify({ ...rest, model: step.model, input: conversation }),
    answer: (answer) => {
      remember(answer.value as Json)
      return answer.text
    },
    writer,
    delivered: () => remember(writer.final),
  }
}

function translatedPlan(
  step: Step,
  chat: Json,
  shell: ResponseShell,
  remember: (r: Json | undefined) => void,
): StepPlan {
  const writer = new ResponsesStreamWriter(shell)
  return {
    endpoint: '/chat/completions',
    body: rewriteBody(chat, step),
    answer: (answer) => {
      const response = chatToResponse(answer.value as Json, shell)
      remember(response)
      return JSON.stringify(response)
    },
    writer,
    delivered: () => remember(writer.final),
  }
}

/** A native Responses stream, forwarded as it came; the final Response is kept for the store. */
class NativeResponsesStream implements StreamWriter {
  final: Json | undefined

  event(event: Parameters<StreamWriter['event']>[0], parsed: Parameters<StreamWriter['event']>[1]): string {
    if (parsed.kind === 'done') return ''
    const type = parsed.value.type
    if (type === 'response.completed' || type === 'response.incomplete')
      this.final = parsed.value.response as Json
    return formatEvent(event)
  }

  done(): string {
    return ''
  }

  failed(message: string): string {
    return `event: error\ndata: ${JSON.stringify({ type: 'error', code: 'stream_interrupted', message, param: null })}\n\n`
  }

  unfinished(): string | undefined {
    return this.final === undefined ? 'the stream ended before its response.completed event' : undefined
  }
}
