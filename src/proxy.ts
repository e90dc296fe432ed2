// Proxying one client request through a route: try the steps (fallback.ts decides how), then answer
// with the first success (a JSON body or a committed stream), or with the route's failure.

import type { ServerResponse } from 'node:http'
import type { JsonAnswer, Usage } from './answer.ts'
import { Attempt, ClientLink, type Failure, isFailure } from './attempt.ts'
import type { FailoverConfig } from './config-schema.ts'
import { type RouteOutcome, runRoute } from './fallback.ts'
import type { HealthBoard, HealthChange } from './health.ts'
import type { Logger } from './logger.ts'
import { estimatePromptTokens, type QuotaBook } from './quota.ts'
import type { Redactor } from './redact.ts'
import { describeFailure } from './route-error.ts'
import { type Route, rewriteBody, type Step } from './router.ts'
import { type Exchange, elapsedMs, writeHead } from './server.ts'
import { awaitCommit, type CommittedStream } from './sse.ts'
import { pipeStream, type StreamEnd, type StreamWriter } from './stream-pipe.ts'
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

type Answer = (JsonAnswer | CommittedStream) & {
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

/** Sends the first success: a JSON body as it is (or as the plan rewrites it), or a committed stream. */
async function deliver(
  exchange: Exchange,
  deps: ProxyDeps,
  route: Route,
  outcome: Extract<RouteOutcome<Answer>, { kind: 'answered' }>,
  /** Prompt tokens already counted against the step's quota when the attempt began. */
  estimated: number,
): Promise<void> {
  const { res, facts, requestId } = exchange
  const { answer, step } = outcome
  facts.provider = step.provider
  facts.model = step.model
  const headers = {
    'x-gateway-route': headerSafe(route.name),
    'x-gateway-provider': headerSafe(step.provider),
    'x-gateway-model': headerSafe(step.model),
    'x-gateway-attempts': String(outcome.trail.attempts.length),
  }
  let piped = false
  try {
    if (answer.kind === 'json') {
      const body =
        answer.plan.answer?.(answer) ?? (answer.bytes.length > largeAnswerBytes ? answer.bytes : answer.text)
      const length = Buffer.byteLength(body)
      writeHead(exchange, answer.status, {
        ...headers,
        'content-type': answer.plan.answer === undefined ? answer.contentType : 'application/json',
        'content-length': length,
      })
      sendAnswer(res, body, length, exchange.startedAt + route.totalMs)
      answer.plan.delivered?.()
      facts.ttfbMs = elapsedMs(exchange)
      recordUsage(deps, exchange, step, answer.usage, estimated, outcome.began)
      return
    }
    writeHead(exchange, answer.status, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    })
    facts.ttfbMs = elapsedMs(exchange)
    answer.attempt.committed(step)
    piped = true
    const end = await pipeStream(
      res,
      answer,
      answer.attempt,
      deps.redact,
      answer.plan.writer,
      answer.plan.delivered,
    )
    facts.streamEnd = typeof end === 'string' ? end : end.kind
    answer.span.end(() => streamAttemptEnd(answer, end, facts.ttfbMs))
    recordUsage(deps, exchange, step, answer.stats.usage, estimated, outcome.began)
    if (answer.stats.malformed > 0) facts.malformedEvents = answer.stats.malformed
    if (typeof end !== 'string') {
      // Nothing can be retried once the client has bytes, but the provider's health still learns.
      const reason = describeFailure(end)
      deps.logger.warn(
        {
          requestId,
          ...exchange.trace.logFields,
          route: route.name,
          provider: step.provider,
          model: step.model,
          reason,
        },
        'stream failed after commit',
      )
      // A stream the request's own budget cut was flowing: that says nothing against the provider.
      if (end.kind === 'timeout' && end.phase === 'total') return
      const change = deps.health.recordFailure(step, end, answer.attempt.elapsedMs(), Date.now(), reason)
      if (change !== undefined) logHealthChange(deps.logger, step, change)
    }
  } finally {
    // A stream never piped (its head could not be written) would hold the provider's connection open.
    if (answer.kind === 'stream' && !piped) void answer.rest.return(undefined).catch(() => {})
    answer.attempt.end()
  }
}

/** What a captured span records as the prompt: chat's `messages`, the Responses API's `input`, or `prompt`. */
function promptOf(request: ProxyRequest): unknown {
  if (request.operation === 'embeddings') return undefined
  const { body } = request
  return body.messages ?? body.input ?? body.prompt
}

/**
 * Writes a whole answer. A large one is ended only once the socket has taken it: node:http counts a
 * connection whose answer has ended as idle, even with most of it still to send, and a graceful stop
 * closes idle connections. A client that does not read holds the answer in memory as long as it
 * likes; as with a stream, it has until the request's budget runs out.
 */
function sendAnswer(res: ServerResponse, body: string | Buffer, length: number, budgetEnd: number): void {
  if (length <= endAtOnceBytes) res.end(body)
  else if (res.write(body)) res.end()
  else res.once('drain', () => res.end())
  // Most answers are in the socket's buffer by now.
  if (res.writableLength === 0) return
  const timer = setTimeout(() => res.destroy(), Math.max(0, budgetEnd - performance.now()))
  res.once('close', () => clearTimeout(timer))
}

/** What a socket takes at once, the rest of the answer following while the client reads. */
const endAtOnceBytes = 64 * 1024

/**
 * A name from the config as a header value: node:http refuses anything outside latin-1 and control
 * characters, and a route may well be named in any script. Such a name is sent percent-encoded, and so
 * is one holding `%`, so that decoding a header always gives the name back.
 */
const headerSafe = (name: string): string =>
  /^[\x20-\x24\x26-\x7e]*$/.test(name) ? name : encodeURIComponent(name)

/**
 * Past this size a JSON answer is written as the bytes it came in: written as text, node:http would
 * encode another copy of it. Below it, text is written in one piece with the head (faster).
 */
const largeAnswerBytes = 1024 * 1024

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

/** A stream's attempt span ends with the stream, so it carries its usage and how it ended. */
function streamAttemptEnd(answer: CommittedStream, end: StreamEnd, ttftMs: number | undefined): AttemptEnd {
  const { stats } = answer
  return {
    outcome: typeof end === 'string' ? 'ok' : end.kind,
    status: answer.status,
    ...(typeof end === 'string' ? {} : { reason: describeFailure(end) }),
    ...(stats.model === undefined ? {} : { responseModel: stats.model }),
    ...(stats.usage === undefined ? {} : { usage: stats.usage }),
    ...(ttftMs === undefined ? {} : { ttftMs }),
    ...(stats.text === undefined ? {} : { output: [{ role: 'assistant', content: stats.text }] }),
  }
}

/** Counts what the provider reported against quotas, in place of the estimate counted at the start. */
function recordUsage(
  deps: ProxyDeps,
  exchange: Exchange,
  step: Step,
  usage: Usage | undefined,
  estimated: number,
  began: number,
): void {
  if (usage === undefined) return
  exchange.facts.usage = usage
  const tokens = usage.total_tokens ?? (usage.prompt_tokens ?? 0) + (usage.completion_tokens ?? 0)
  if (tokens <= 0) return
  const now = Date.now()
  deps.quotas.countTokens(step, tokens, now)
  // The estimate went into the window when the request was sent; it comes out of the same place.
  if (estimated > 0) deps.quotas.countTokens(step, -estimated, now, began)
}

/** State changes are rare and operators want them: a refused key especially, which never heals alone. */
function logHealthChange(logger: Logger, step: Step, change: NonNullable<HealthChange>): void {
  const target = { provider: step.provider, model: step.model }
  if (change.kind === 'circuit_closed') logger.info(target, 'circuit closed')
  else if (change.kind === 'circuit_opened') logger.warn({ ...target, ...change }, 'circuit opened')
  else if (change.reason === 'rate_limited') logger.info({ ...target, ...change }, 'cooling down')
  else
    logger.error(
      { ...target, ...change },
      change.reason === 'auth' ? 'provider refused the key' : 'provider does not know the model',
    )
}
