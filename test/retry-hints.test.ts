// Every hint format a provider uses to say when it can be asked again, and the pure retry decision.

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ClientLink, type Failure } from '../src/attempt.ts'
import { configSchema } from '../src/config-schema.ts'
import { decide } from '../src/decide.ts'
import { runRoute } from '../src/fallback.ts'
import { type Availability, classifyFailure, HealthBoard } from '../src/health.ts'
import { QuotaBook } from '../src/quota.ts'
import { bodyRetryHint, headerRetryHint, parseRetryAfter, retryHint } from '../src/retry-hints.ts'
import type { Route, Step } from '../src/router.ts'

const now = Date.parse('2026-01-01T00:00:00Z')

describe('header hints', () => {
  test('Retry-After in seconds and as an HTTP date', () => {
    assert.equal(headerRetryHint({ 'retry-after': '12' }, now), 12_000)
    assert.equal(headerRetryHint({ 'retry-after': 'Thu, 01 Jan 2026 00:01:00 GMT' }, now), 60_000)
  })
  test('retry-after-ms wins over Retry-After', () => {
    assert.equal(headerRetryHint({ 'retry-after-ms': '1500', 'retry-after': '2' }, now), 1_500)
  })
  test('OpenAI-style x-ratelimit-reset-requests / -tokens', () => {
    assert.equal(headerRetryHint({ 'x-ratelimit-reset-requests': '6m0s' }, now), 360_000)
    assert.equal(headerRetryHint({ 'x-ratelimit-reset-tokens': '20ms' }, now), 20)
    const both = { 'x-ratelimit-reset-requests': '2s', 'x-ratelimit-reset-tokens': '30s' }
    assert.equal(headerRetryHint({ ...both, 'x-ratelimit-remaining-requests': '0' }, now), 2_000)
    assert.equal(headerRetryHint({ ...both, 'x-ratelimit-remaining-tokens': '0' }, now), 30_000)
    assert.equal(headerRetryHint(both, now), 30_000, 'unclear which limit: the later reset')
    // A limit with room left (or an unknown remainder, Azure's -1) was not the one hit: no hint from it.
    const room = { 'x-ratelimit-remaining-requests': '14370', 'x-ratelimit-remaining-tokens': '5400' }
    assert.equal(headerRetryHint({ ...both, ...room }, now), undefined)
    const azure = { 'x-ratelimit-remaining-tokens': '-1', 'x-ratelimit-reset-tokens': '0' }
    assert.equal(headerRetryHint(azure, now), undefined)
    const oneHit = { ...both, ...room, 'x-ratelimit-remaining-tokens': '0' }
    assert.equal(headerRetryHint(oneHit, now), 30_000)
  })
  test('x-ratelimit-reset as epoch milliseconds, epoch seconds, or seconds from now', () => {
    assert.equal(headerRetryHint({ 'x-ratelimit-reset': String(now + 4_000) }, now), 4_000)
    assert.equal(headerRetryHint({ 'x-ratelimit-reset': String(now / 1000 + 9) }, now), 9_000)
    assert.equal(headerRetryHint({ 'x-ratelimit-reset': '3' }, now), 3_000)
    assert.equal(headerRetryHint({ 'x-ratelimit-reset': '3', 'x-ratelimit-remaining': '0' }, now), 3_000)
    // With requests to spare, the window's reset is not when to ask again.
    assert.equal(
      headerRetryHint({ 'x-ratelimit-reset': '45', 'x-ratelimit-remaining': '59' }, now),
      undefined,
    )
  })
  test('no hint', () => {
    assert.equal(headerRetryHint({}, now), undefined)
    assert.equal(headerRetryHint({ 'retry-after': 'later' }, now), undefined)
    // Neither delta-seconds nor an HTTP date, though Date.parse reads each as a date long past.
    for (const junk of ['-1', '+5', '1,5', 'soon 1', '2026-01-01'])
      assert.equal(headerRetryHint({ 'retry-after': junk }, now), undefined, junk)
    assert.equal(headerRetryHint({ 'retry-after': 'Sunday, 01-Jan-26 00:00:30 GMT' }, now), 30_000)
  })
})

describe('body hints', () => {
  test("Gemini's RetryInfo.retryDelay", () => {
    const body = {
      error: {
        code: 429,
        status: 'RESOURCE_EXHAUSTED',
        details: [
          { '@type': 'type.googleapis.com/google.rpc.QuotaFailure', violations: [] },
          { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '31s' },
        ],
      },
    }
    assert.equal(bodyRetryHint(JSON.stringify(body), now), 31_000)
    assert.equal(
      bodyRetryHint(JSON.stringify([body]), now),
      31_000,
      'Gemini sometimes wraps errors in a list',
    )
  })
  test("OpenRouter's relayed provider headers", () => {
    const body = {
      error: {
        message: 'Rate limit exceeded',
        code: 429,
        metadata: { headers: { 'X-RateLimit-Reset': String(now + 45_000) } },
      },
    }
    assert.equal(bodyRetryHint(JSON.stringify(body), now), 45_000)
  })
  test('"try again in …" in the message', () => {
    const body = { error: { message: 'Rate limit reached for model. Please try again in 7.5s. Visit …' } }
    assert.equal(bodyRetryHint(JSON.stringify(body), now), 7_500)
    assert.equal(bodyRetryHint('Please try again in 1m30s', now), 90_000)
  })
  test('headers first, capped at a day, rounded up', () => {
    assert.equal(retryHint({ 'retry-after': '3' }, '{"error":{"message":"try again in 9s"}}', now), 3_000)
    assert.equal(retryHint({ 'retry-after': '9999999' }, '', now), 86_400_000)
    assert.equal(retryHint({ 'retry-after-ms': '0.4' }, '', now), 1)
    assert.equal(retryHint({}, 'no hint here', now), undefined)
  })
})

describe('classifyFailure', () => {
  test('what a failure says about the target', () => {
    const http = (status: number): Failure => ({ kind: 'http_error', status, reason: '' })
    assert.equal(classifyFailure(http(429)), 'rate_limited')
    assert.equal(classifyFailure(http(401)), 'auth')
    assert.equal(classifyFailure(http(403)), 'auth')
    assert.equal(classifyFailure(http(404)), 'not_found')
    assert.equal(classifyFailure(http(400)), 'request')
    assert.equal(classifyFailure(http(413)), 'request')
    assert.equal(classifyFailure(http(408)), 'server')
    assert.equal(classifyFailure(http(301)), 'server', 'a moved base_url is the target at fault')
    assert.equal(classifyFailure(http(500)), 'server')
    assert.equal(classifyFailure(http(529)), 'server')
    assert.equal(classifyFailure({ kind: 'network', code: 'ECONNRESET', reason: '' }), 'server')
    assert.equal(classifyFailure({ kind: 'timeout', phase: 'headers', afterMs: 1 }), 'server')
    assert.equal(classifyFailure({ kind: 'invalid_response', reason: '' }), 'server')
    assert.equal(classifyFailure({ kind: 'invalid_response', reason: '', tooLarge: true }), 'request')
    assert.equal(classifyFailure({ kind: 'aborted' }), 'aborted')
  })
})

describe('decide', () => {
  const policy = configSchema.shape.failover.parse({})
  const base = {
    retries: 0,
    laterStepAvailable: false,
    budgetLeftMs: 60_000,
    attemptsLeft: 5,
    stepReadyInMs: 0,
    policy,
    random: () => 0.5,
  }
  const http = (status: number, retryAfterMs?: number): Failure => ({
    kind: 'http_error',
    status,
    reason: '',
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  })

  test('moves on at once when another step is available', () => {
    assert.deepEqual(decide({ ...base, failure: http(500), laterStepAvailable: true }), { action: 'next' })
    assert.deepEqual(decide({ ...base, failure: http(429, 100), laterStepAvailable: true }), {
      action: 'next',
    })
  })
  test('the last step retries a transient failure after a jittered backoff', () => {
    assert.deepEqual(decide({ ...base, failure: http(503) }), { action: 'retry', delayMs: 125 })
    assert.deepEqual(decide({ ...base, failure: http(408) }), { action: 'retry', delayMs: 125 })
    assert.deepEqual(decide({ ...base, failure: { kind: 'network', code: 'ECONNRESET', reason: '' } }), {
      action: 'retry',
      delayMs: 125,
    })
  })
  test('never sooner than the hint, and not when the hint is long', () => {
    assert.deepEqual(decide({ ...base, failure: http(429, 2_000) }), { action: 'retry', delayMs: 2_000 })
    assert.deepEqual(decide({ ...base, failure: http(503, 3_000) }), { action: 'retry', delayMs: 3_000 })
    assert.deepEqual(decide({ ...base, failure: http(429, 6_000) }), { action: 'next' })
    assert.deepEqual(decide({ ...base, failure: http(429, 2_000), budgetLeftMs: 1_000 }), { action: 'next' })
  })
  test('no retry for a timeout, a hintless 429, a refused request, or past the limit', () => {
    assert.deepEqual(decide({ ...base, failure: { kind: 'timeout', phase: 'headers', afterMs: 5 } }), {
      action: 'next',
    })
    assert.deepEqual(decide({ ...base, failure: http(429) }), { action: 'next' })
    assert.deepEqual(decide({ ...base, failure: http(400) }), { action: 'next' })
    assert.deepEqual(decide({ ...base, failure: http(401) }), { action: 'next' })
    assert.deepEqual(decide({ ...base, failure: http(503), retries: 1 }), { action: 'next' })
  })
  test('a spent budget gives up, whatever else is available', () => {
    const total: Failure = { kind: 'timeout', phase: 'total', afterMs: 100 }
    assert.deepEqual(decide({ ...base, failure: total, laterStepAvailable: true }), { action: 'give_up' })
    assert.deepEqual(decide({ ...base, failure: http(500), laterStepAvailable: true, budgetLeftMs: 0 }), {
      action: 'give_up',
    })
  })
  test('no retry when the step will still be unavailable after the wait (its circuit just opened)', () => {
    assert.deepEqual(decide({ ...base, failure: http(503, 2_000), stepReadyInMs: 30_000 }), {
      action: 'next',
    })
    assert.deepEqual(decide({ ...base, failure: http(500), stepReadyInMs: 30_000 }), { action: 'next' })
    // A 429's own cooldown ends with its hint, which the retry waits out.
    assert.deepEqual(decide({ ...base, failure: http(429, 2_000), stepReadyInMs: 2_000 }), {
      action: 'retry',
      delayMs: 2_000,
    })
  })
  test('no attempt left gives up, rather than wait for a retry it cannot make', () => {
    assert.deepEqual(decide({ ...base, failure: http(429, 2_000), attemptsLeft: 0 }), { action: 'give_up' })
    assert.deepEqual(decide({ ...base, failure: http(503), attemptsLeft: 0 }), { action: 'give_up' })
  })
  test('the client leaving stops the route', () => {
    assert.deepEqual(decide({ ...base, failure: { kind: 'aborted' } }), { action: 'stop' })
  })
})

describe('runRoute, when every step must be waited for', () => {
  const step = { index: 0, provider: 'a', model: 'm', timeouts: { attempt: 60_000 } } as Step
  const route = { name: 'r', steps: [step], totalMs: 60_000 } as unknown as Route

  test('after the wait the step is looked at again: one free slot is taken once, not by every waiter', async () => {
    // A quota with one slot, freed 100 ms from now; a slot taken stays taken.
    const freeAt = Date.now() + 100
    let slots = 1
    const health = {
      availability: (): Availability =>
        Date.now() >= freeAt && slots > 0
          ? { ok: true, probe: false }
          : { ok: false, reason: 'quota', until: Math.max(freeAt, Date.now() + 100), firm: true },
      begin: () => {
        slots--
      },
      refund: () => {},
      probeSettled: () => undefined,
      recordSuccess: () => undefined,
      recordFailure: () => undefined,
    } as unknown as HealthBoard
    let calls = 0
    const run = () =>
      runRoute({
        route,
        health,
        policy: { ...configSchema.shape.failover.parse({}), max_wait: 250 },
        redact: (text) => text,
        client: new ClientLink(),
        budgetEnd: performance.now() + 60_000,
        estimateTokens: () => 0,
        tryStep: async () => {
          calls++
          return { kind: 'json' as const }
        },
        onAttemptFailed: () => {},
        onHealthChange: () => {},
      })
    const outcomes = await Promise.all([run(), run(), run()])
    assert.equal(calls, 1)
    assert.deepEqual(outcomes.map((o) => o.kind).sort(), ['answered', 'failed', 'failed'])
  })
})

test("an asctime Retry-After is GMT, as every HTTP-date, whatever the machine's time zone", () => {
  const zone = process.env.TZ
  process.env.TZ = 'America/New_York'
  try {
    const now = Date.parse('Sun, 06 Nov 1994 08:49:00 GMT')
    assert.equal(parseRetryAfter('Sun Nov  6 08:49:37 1994', now), 37_000)
    assert.equal(parseRetryAfter('Sunday, 06-Nov-94 08:49:37 GMT', now), 37_000)
    assert.equal(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', now), 37_000)
  } finally {
    if (zone === undefined) delete process.env.TZ
    else process.env.TZ = zone
  }
})

test('a step over its quota whose circuit stays open longer is back when the later of the two ends', () => {
  const policy = { ...configSchema.shape.failover.parse({}), circuit_failures: 1, circuit_open: 30_000 }
  const step = { index: 0, provider: 'a', model: 'm', limits: { rpm: 1 }, timeouts: { attempt: 60_000 } }
  const steps = [step as unknown as Step]
  const health = new HealthBoard(policy, new QuotaBook(steps), steps)
  // The minute's one request went 50 s ago, so the quota frees in about 10 s; it failed, and the
  // circuit opened for 30 s.
  health.begin(steps[0] as Step, now - 50_000, false)
  health.recordFailure(steps[0] as Step, { kind: 'http_error', status: 500, reason: '' }, 10, now, 'HTTP 500')
  // Not 10 s: waited for that long, the step would still be held back by its circuit, and not tried.
  assert.deepEqual(health.availability(steps[0] as Step, now), {
    ok: false,
    reason: 'quota',
    until: now + 30_000,
    firm: true,
  })
})
