// Proxying one client request through a route: try the steps (fallback.ts decides how), then hand the
// first success (a JSON body or a committed stream) to delivery.ts, or answer with the route's failure.

import type { JsonAnswer } from './answer.ts'
import { Attempt, ClientLink, type Failure, isFailure } from './attempt.ts'
import type { FailoverConfig } from './config-schema.ts'
import { deliver } from './delivery.ts'
import { runRoute } from './fallback.ts'
import { type HealthBoard, logHealthChange } from './health.ts'
import type { Logger } from './logger.ts'
import { estimatePromptTokens, type QuotaBook } from './quota.ts'
import type { Redactor } from './redact.ts'
import { describeFailure } from './route-error.ts'
import { type Route, rewriteBody, type Step } from './router.ts'
import type { Exchange } from './server.ts'
import { awaitCommit, type CommittedStream } from './sse.ts'
import type { StreamWriter } from './stream-pipe.ts'
import type { AttemptEnd, AttemptTrace, Telemetry } from './telemetry.ts'
import { exchangeJson, sendUpstream, type UpstreamClient } from './upstream.ts'

export interface ProxyDeps {
  readonly client: UpstreamClient
  readonly logger: Logger
  readonly redact: Redactor
  readonly health: HealthBoard
  readonly quotas: QuotaBook
  readonly policy: FailoverConfig
  readonly telemetry: Telemetry
  readonly maxAnswerBytes: number
}

/** What one step is sent, and how its answer reaches the client. */
export interface StepPlan {
  /** Appended to the provider's base URL, e.g. `/chat/completions`. */
  readonly endpoint: string
  readonly body: string
  /** Rewrites a JSON answer before it is sent (e.g. a chat completion as a Response). */
  readonly answer?: (answer: JsonAnswer) => string
  /** Writes a committed stream (default: as it came). */
  readonly writer?: StreamWriter
  /** Called once the answer has been delivered in full. */
  readonly delivered?: () => void
}

export interface ProxyRequest {
  readonly route: Route
  readonly body: Readonly<Record<string, unknown>>
  readonly stream: boolean
  /** The GenAI operation, for spans: `chat`, `embeddings`, `text_completion`. */
  readonly operation: string
  readonly plan: (step: Step) => StepPlan
}

/** The usual plan: the client's body with the step's model, to the same endpoint on every provider. */
export const samePlan =
  (endpoint: string, body: Readonly<Record<string, unknown>>) =>
  (step: Step): StepPlan => ({ endpoint, body: rewriteBody(body, step) })

/** A step's success, with what delivering it needs. */
export type Answer = (JsonAnswer | CommittedStream) & {
  readonly attempt: Attempt
  readonly span: AttemptTrace
  readonly plan: StepPlan
}

export async function proxyThroughRoute(
  exchange: Exchange,
  deps: ProxyDeps,
  request: ProxyRequest,
): Promise<void> {
  const { res, facts, requestId } = exchange
  const { route } = request
  facts.route = route.name
  facts.stream = request.stream

  // The client going away (before or during the answer) aborts whatever attempt is in flight.
  const client = new ClientLink()
  res.on('close', () => {
    if (!res.writableFinished) client.leave()
  })
  const budgetEnd = exchange.startedAt + route.totalMs
  let promptTokens: number | undefined
  const estimateTokens = (step: Step) => {
    if (!deps.quotas.countsTokens(step)) return 0
    promptTokens ??= estimatePromptTokens(request.body)
    return promptTokens
  }

  const outcome = await runRoute<Answer>({
    route,
    health: deps.health,
    policy: deps.policy,
    redact: deps.redact,
    client,
    budgetEnd,
    estimateTokens,
    tryStep: async (step) => {
      const input = deps.telemetry.captureContent ? promptOf(request) : undefined
      const span = exchange.trace.attempt(step, request.operation, input)
      const attempt = new Attempt(client, budgetEnd)
      const plan = request.plan(step)
      const result = await attemptStep(deps, request, plan, step, attempt, span.headers)
      if (isFailure(result)) {
        attempt.end()
        span.end(() => ({ outcome: result.kind, ...statusOf(result), reason: describeFailure(result) }))
        return result
      }
      if (result.kind === 'json') span.end(() => jsonAttemptEnd(result, deps.telemetry.captureContent))
      return { ...result, attempt, span, plan }
    },
    onAttemptFailed: (record) =>
      deps.logger.warn(
        { requestId, ...exchange.trace.logFields, route: route.name, ...record },
        'upstream attempt failed',
      ),
    onHealthChange: (step, change) => logHealthChange(deps.logger, step, change),
  })
  facts.attempts = outcome.trail.attempts
  if (outcome.trail.skipped.length > 0) facts.skipped = outcome.trail.skipped
  if (outcome.kind === 'aborted') return
  if (outcome.kind === 'failed') throw outcome.error

  await deliver(exchange, deps, route, outcome, estimateTokens(outcome.step))
}

/** What a captured span records as the prompt: chat's `messages`, the Responses API's `input`, or `prompt`. */
function promptOf(request: ProxyRequest): unknown {
  if (request.operation === 'embeddings') return undefined
  const { body } = request
  return body.messages ?? body.input ?? body.prompt
}

async function attemptStep(
  deps: ProxyDeps,
  request: ProxyRequest,
  plan: StepPlan,
  step: Step,
  attempt: Attempt,
  headers: Readonly<Record<string, string>>,
): Promise<JsonAnswer | CommittedStream | Failure> {
  const send = {
    step,
    headers,
    endpoint: plan.endpoint,
    body: plan.body,
    stream: request.stream,
    attempt,
    redact: deps.redact,
    maxAnswerBytes: deps.maxAnswerBytes,
  }
  // Awaited, not returned: an async function that returns a promise settles a microtask turn later.
  if (!request.stream) return await exchangeJson(deps.client, send)
  const response = await sendUpstream(deps.client, send)
  if (isFailure(response)) return response
  return await awaitCommit(response, attempt, deps.redact, deps.telemetry.captureContent)
}

const statusOf = (failure: Failure): { status?: number } =>
  failure.kind === 'http_error' ? { status: failure.status } : {}

function jsonAttemptEnd(answer: JsonAnswer, capture: boolean): AttemptEnd {
  return {
    outcome: 'ok',
    status: answer.status,
    ...(answer.model === undefined ? {} : { responseModel: answer.model }),
    ...(answer.usage === undefined ? {} : { usage: answer.usage }),
    ...(capture ? { output: answer.value.choices } : {}),
  }
}
