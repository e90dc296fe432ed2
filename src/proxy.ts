// Proxying one client request through a route: try each step, then answer with the first success
// (a JSON body or a committed stream), or with the route's failure.

import type { Dispatcher } from 'undici'
import { runRoute } from './fallback.ts'
import type { Logger } from './logger.ts'
import type { Redactor } from './redact.ts'
import { type Route, rewriteBody, type Step } from './router.ts'
import type { Exchange } from './server.ts'
import { awaitCommit, type CommittedStream, pipeStream } from './sse.ts'
import {
  Attempt,
  type Failure,
  isFailure,
  type JsonAnswer,
  readJsonAnswer,
  sendUpstream,
} from './upstream.ts'

export interface ProxyDeps {
  readonly client: Dispatcher
  readonly logger: Logger
  readonly redact: Redactor
}

interface ProxyRequest {
  readonly route: Route
  /** Appended to each provider's base URL, e.g. `/chat/completions`. */
  readonly endpoint: string
  readonly body: Readonly<Record<string, unknown>>
  readonly stream: boolean
}

type Answer = (JsonAnswer | CommittedStream) & { readonly attempt: Attempt }

export async function proxyThroughRoute(
  exchange: Exchange,
  deps: ProxyDeps,
  request: ProxyRequest,
): Promise<void> {
  const { res, facts } = exchange
  facts.route = request.route.name
  facts.stream = request.stream

  // The client going away (before or during the answer) aborts whatever attempt is in flight.
  const client = new AbortController()
  res.once('close', () => {
    if (!res.writableFinished) client.abort()
  })

  const tryStep = async (step: Step): Promise<Answer | Failure> => {
    const attempt = new Attempt(client.signal)
    const result = await attemptStep(deps, request, step, attempt)
    if (isFailure(result)) attempt.end()
    return isFailure(result) ? result : { ...result, attempt }
  }
  const hooks = {
    onAttemptFailed: (record: object) =>
      deps.logger.warn(
        { requestId: exchange.requestId, route: request.route.name, ...record },
        'upstream attempt failed',
      ),
  }
  const outcome = await runRoute(request.route, tryStep, isFailure, hooks, deps.redact)
  facts.attempts = outcome.attempts
  if (outcome.kind === 'aborted') return
  if (outcome.kind === 'failed') throw outcome.error

  const { answer, step } = outcome
  facts.provider = step.provider
  facts.model = step.model
  const headers = {
    'x-gateway-route': request.route.name,
    'x-gateway-provider': step.provider,
    'x-gateway-model': step.model,
    'x-gateway-attempts': String(outcome.attempts.length),
  }
  try {
    if (answer.kind === 'json') {
      res.writeHead(answer.status, {
        ...headers,
        'content-type': answer.contentType,
        'content-length': answer.body.length,
      })
      res.end(answer.body)
      facts.ttfbMs = elapsed(exchange)
      if (answer.usage !== undefined) facts.usage = answer.usage
      return
    }
    res.writeHead(answer.status, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    })
    facts.ttfbMs = elapsed(exchange)
    answer.attempt.arm(step.timeoutMs, 'idle')
    const end = await pipeStream(res, answer, answer.attempt, deps.redact)
    facts.streamEnd = typeof end === 'string' ? end : end.kind
    if (answer.stats.usage !== undefined) facts.usage = answer.stats.usage
    if (answer.stats.malformed > 0) facts.malformedEvents = answer.stats.malformed
    if (typeof end !== 'string') {
      deps.logger.warn(
        { requestId: exchange.requestId, route: request.route.name, failure: end },
        'stream failed after commit',
      )
    }
  } finally {
    answer.attempt.end()
  }
}

async function attemptStep(
  deps: ProxyDeps,
  request: ProxyRequest,
  step: Step,
  attempt: Attempt,
): Promise<JsonAnswer | CommittedStream | Failure> {
  const response = await sendUpstream(deps.client, {
    step,
    endpoint: request.endpoint,
    body: rewriteBody(request.body, step),
    stream: request.stream,
    attempt,
    redact: deps.redact,
  })
  if (isFailure(response)) return response
  return request.stream
    ? awaitCommit(response, attempt, deps.redact)
    : readJsonAnswer(response, attempt, deps.redact)
}

function elapsed(exchange: Exchange): number {
  return Math.round((performance.now() - exchange.startedAt) * 10) / 10
}
