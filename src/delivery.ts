// Delivering the route's first success to the client: a whole JSON answer or a committed stream, with
// the gateway's headers, and the usage it reports counted against quotas.

import type { ServerResponse } from 'node:http'
import type { Usage } from './answer.ts'
import type { Attempt } from './attempt.ts'
import type { RouteOutcome } from './fallback.ts'
import { logHealthChange } from './health.ts'
import type { Answer, ProxyDeps } from './proxy.ts'
import { writeHead } from './reply.ts'
import { describeFailure } from './route-error.ts'
import type { Route, Step } from './router.ts'
import { type Exchange, elapsedMs } from './server.ts'
import type { CommittedStream } from './sse.ts'
import { pipeStream, type StreamEnd } from './stream-pipe.ts'
import type { AttemptEnd } from './telemetry.ts'

type Answered = Extract<RouteOutcome<Answer>, { kind: 'answered' }>
type GatewayHeaders = Readonly<Record<string, string>>

/**
 * Sends the first success: a JSON body as it is (or as the plan rewrites it), or a committed stream.
 * Not async, so a JSON answer adds no promise of its own.
 */
export function deliver(
  exchange: Exchange,
  deps: ProxyDeps,
  route: Route,
  outcome: Answered,
  /** Prompt tokens already counted against the step's quota when the attempt began. */
  estimated: number,
): Promise<void> | void {
  const { facts } = exchange
  const { answer, step } = outcome
  facts.provider = step.provider
  facts.model = step.model
  const { answeredBy } = step
  const headers = {
    'x-gateway-route': answeredBy.route,
    'x-gateway-provider': answeredBy.provider,
    'x-gateway-model': answeredBy.model,
    'x-gateway-attempts': String(outcome.trail.attempts.length),
  }
  return answer.kind === 'json'
    ? deliverJson(exchange, deps, route, outcome, answer, headers, estimated)
    : deliverStream(exchange, deps, route, outcome, answer, headers, estimated)
}

function deliverJson(
  exchange: Exchange,
  deps: ProxyDeps,
  route: Route,
  outcome: Answered,
  answer: Extract<Answer, { kind: 'json' }>,
  headers: GatewayHeaders,
  estimated: number,
): void {
  try {
    const body =
      answer.plan.answer?.(answer) ?? (answer.bytes.length > largeAnswerBytes ? answer.bytes : answer.text)
    const length = Buffer.byteLength(body)
    writeHead(exchange, answer.status, {
      ...headers,
      'content-type': answer.plan.answer === undefined ? answer.contentType : 'application/json',
      'content-length': length,
    })
    sendAnswer(exchange.res, body, length, exchange.startedAt + route.totalMs)
    answer.plan.delivered?.()
    exchange.facts.ttfbMs = elapsedMs(exchange)
    recordUsage(deps, exchange, outcome.step, answer.usage, estimated, outcome.began)
  } finally {
    answer.attempt.end()
  }
}

async function deliverStream(
  exchange: Exchange,
  deps: ProxyDeps,
  route: Route,
  outcome: Answered,
  answer: Extract<Answer, { kind: 'stream' }>,
  headers: GatewayHeaders,
  estimated: number,
): Promise<void> {
  const { res, facts } = exchange
  const { step } = outcome
  let piped = false
  try {
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
    if (typeof end !== 'string') reportCutStream(exchange, deps, route, step, answer.attempt, end)
  } finally {
    // A stream never piped (its head could not be written) would hold the provider's connection open.
    if (!piped) void answer.rest.return(undefined).catch(() => {})
    answer.attempt.end()
  }
}

/** Nothing can be retried once the client has bytes, but the provider's health still learns. */
function reportCutStream(
  exchange: Exchange,
  deps: ProxyDeps,
  route: Route,
  step: Step,
  attempt: Attempt,
  end: Exclude<StreamEnd, string>,
): void {
  const reason = describeFailure(end)
  deps.logger.warn(
    {
      requestId: exchange.requestId,
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
  const change = deps.health.recordFailure(step, end, attempt.elapsedMs(), Date.now(), reason)
  if (change !== undefined) logHealthChange(deps.logger, step, change)
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
 * Past this size a JSON answer is written as the bytes it came in: written as text, node:http would
 * encode another copy of it. Below it, text is written in one piece with the head (faster).
 */
const largeAnswerBytes = 1024 * 1024

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
