// Observability at its edges: sampling from the standard variables, what a span says about a request
// that failed or was refused, and what the log records and metrics make of it.

import assert from 'node:assert/strict'
import { after, afterEach, before, describe, test } from 'node:test'
import { signalUrl, telemetrySettings } from '../src/otlp-config.ts'
import type { Step } from '../src/router.ts'
import { createTelemetry } from '../src/telemetry.ts'
import { attributes, CLIENT, ERROR, FakeCollector, SERVER } from './fake-collector.ts'
import { baseConfig, type RunningGateway, startGateway, waitFor } from './gateway-process.ts'
import { chunk, MockUpstream, ok, sse, status, textChunks } from './mock-upstream.ts'

let mock: MockUpstream
let collector: FakeCollector
const running: RunningGateway[] = []

before(async () => {
  mock = await MockUpstream.start()
  collector = await FakeCollector.start()
})
after(async () => {
  await mock.close()
  await collector.close()
})
afterEach(async () => {
  await Promise.all(running.splice(0).map((gw) => gw.stop()))
  mock.reset()
  collector.exports.length = 0
})

async function gateway(env: Record<string, string>) {
  const gw = await startGateway(
    baseConfig({
      providers: [{ name: 'a', api_key: 'sk-edges-provider-key-123', base_url: mock.url('a') }],
      routes: [{ name: 'r', steps: [{ provider: 'a', model: 'model-a' }] }],
    }),
    { env: { OTLP_ENDPOINT: collector.url, ...env } },
  )
  running.push(gw)
  return gw
}

const sampled = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
const notSampled = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00'

describe('OTEL_TRACES_SAMPLER', () => {
  const samplerFrom = (env: Record<string, string>) => {
    const problems: string[] = []
    const settings = telemetrySettings({ OTLP_ENDPOINT: 'h:1', ...env }, problems)
    return { sampler: settings.otlp?.sampler, problems }
  }

  test('the spec names, case-insensitive, and the ratio argument', () => {
    assert.deepEqual(samplerFrom({}), { sampler: { parentBased: true, ratio: 1 }, problems: [] })
    assert.deepEqual(samplerFrom({ OTEL_TRACES_SAMPLER: 'Always_Off' }).sampler, {
      parentBased: false,
      ratio: 0,
    })
    assert.deepEqual(
      samplerFrom({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' })
        .sampler,
      { parentBased: true, ratio: 0.25 },
    )
    assert.deepEqual(samplerFrom({ OTEL_TRACES_SAMPLER: 'traceidratio' }).sampler, {
      parentBased: false,
      ratio: 1,
    })
  })

  test('a sampler or ratio that cannot be honoured is a problem naming its variable', () => {
    const variables = (env: Record<string, string>) =>
      samplerFrom(env).problems.map((problem) => problem.slice(0, problem.indexOf(':')))
    assert.deepEqual(variables({ OTEL_TRACES_SAMPLER: 'jaeger_remote' }), ['OTEL_TRACES_SAMPLER'])
    for (const arg of ['1.5', '-0.1', 'half'])
      assert.deepEqual(variables({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: arg }), [
        'OTEL_TRACES_SAMPLER_ARG',
      ])
  })

  test('always_off: no span is exported, the log records still are, and the provider is told', async () => {
    const gw = await gateway({ OTEL_TRACES_SAMPLER: 'always_off' })
    mock.script('a', ok())
    const res = await gw.post(
      '/v1/chat/completions',
      { model: 'r', messages: [] },
      { 'x-request-id': 'off-1' },
    )
    assert.equal(res.status, 200)
    assert.equal(await gw.stop(), 0)
    assert.ok(collector.logs().some((l) => l.body?.stringValue === 'request'))
    assert.deepEqual(collector.spans(), [])
    assert.match(String(mock.requests('a')[0]?.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
  })

  test('parentbased_traceidratio at 0: only the traces a client sampled are recorded', async () => {
    const gw = await gateway({
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0',
    })
    mock.always('a', ok())
    await gw.post('/v1/chat/completions', { model: 'r', messages: [] })
    await gw.post('/v1/chat/completions', { model: 'r', messages: [] }, { traceparent: notSampled })
    await gw.post('/v1/chat/completions', { model: 'r', messages: [] }, { traceparent: sampled })
    await waitFor(() => collector.spans().length >= 2, 'the sampled request and its attempt')
    assert.equal(await gw.stop(), 0)
    const traces = new Set(collector.spans().map((s) => s.traceId))
    assert.deepEqual([...traces], ['4bf92f3577b34da6a3ce929d0e0e4736'])
  })
})

describe('the status of the SERVER span', () => {
  const serverSpan = (requestPath: string) =>
    collector.spans().find((s) => s.kind === SERVER && attributes(s.attributes)['url.path'] === requestPath)

  // As the HTTP conventions have it: a 4xx is the client's error, not a failure of the server's.
  test('a request refused with a 4xx leaves it unset, its code in error.type; a 5xx sets ERROR', async () => {
    const gw = await gateway({})
    mock.script('a', status(500))
    assert.equal((await gw.post('/v1/chat/completions', { model: 'r', messages: [] })).status, 502)
    assert.equal((await gw.get('/v1/models', { authorization: 'Bearer wrong-key' })).status, 401)
    assert.equal((await gw.get('/v1/unknown')).status, 404)
    await gw.stop()
    const refused = serverSpan('/v1/models')
    assert.equal(attributes(refused?.attributes ?? [])['error.type'], 'invalid_api_key')
    assert.notEqual(refused?.status?.code, ERROR)
    assert.notEqual(serverSpan('/v1/unknown')?.status?.code, ERROR)
    const failed = serverSpan('/v1/chat/completions')
    assert.equal(failed?.status?.code, ERROR)
    assert.equal(attributes(failed?.attributes ?? [])['error.type'], 'upstream_failed')
  })

  // The client got a 200 head and then a `stream_interrupted` error event.
  test('a stream cut after commit sets ERROR with error.type stream_interrupted', async () => {
    const gw = await gateway({})
    mock.script('a', sse(textChunks('whole answer')))
    const whole = await gw.post(
      '/v1/chat/completions',
      { model: 'r', messages: [], stream: true },
      {
        traceparent: sampled,
      },
    )
    assert.doesNotMatch(await whole.text(), /stream_interrupted/)
    mock.script('a', sse(textChunks('partial answer'), { end: 'cut', delayMs: 30 }))
    const res = await gw.post('/v1/chat/completions', { model: 'r', messages: [], stream: true })
    assert.equal(res.status, 200)
    assert.match(await res.text(), /stream_interrupted/)
    await gw.stop()
    const spans = collector.spans().filter((s) => s.kind === SERVER)
    const cut = spans.find((s) => s.traceId !== sampled.split('-')[1])
    assert.equal(cut?.status?.code, ERROR)
    assert.equal(attributes(cut?.attributes ?? [])['error.type'], 'stream_interrupted')
    const completed = spans.find((s) => s.traceId === sampled.split('-')[1])
    assert.ok(completed)
    assert.notEqual(completed.status?.code, ERROR)
    assert.equal(attributes(completed.attributes)['error.type'], undefined)
  })
})

// A backend that takes its tenant or token in the query (the query's secret-looking values are redacted).
test('a query on the OTLP endpoint stays the query of both signal URLs', async () => {
  assert.equal(signalUrl('https://c:4318/otlp?tenant=a', 'traces'), 'https://c:4318/otlp/v1/traces?tenant=a')
  assert.equal(signalUrl('https://c:4318/?tenant=a', 'logs'), 'https://c:4318/v1/logs?tenant=a')
  assert.equal(signalUrl('c:4318/v1/traces?tenant=a', 'logs'), 'https://c:4318/v1/logs?tenant=a')
  const gw = await gateway({ OTLP_ENDPOINT: `${collector.url}/otlp?tenant=a` })
  mock.script('a', ok())
  await gw.post('/v1/chat/completions', { model: 'r', messages: [] })
  await gw.stop()
  const paths = new Set(collector.exports.map((e) => e.path))
  assert.deepEqual([...paths].sort(), ['/otlp/v1/logs?tenant=a', '/otlp/v1/traces?tenant=a'])
})

// With a ratio sampler most requests are not recorded: their log records must not claim a sampled trace.
test('log records carry the trace flags of their request, sampled or not', async () => {
  const gw = await gateway({})
  mock.always('a', ok())
  await gw.post(
    '/v1/chat/completions',
    { model: 'r', messages: [] },
    { traceparent: notSampled, 'x-request-id': 'no' },
  )
  await gw.post(
    '/v1/chat/completions',
    { model: 'r', messages: [] },
    { traceparent: sampled, 'x-request-id': 'yes' },
  )
  await gw.stop()
  const flagsOf = (requestId: string) => {
    const line = gw.logs.find((l) => l.msg === 'request' && l.requestId === requestId)
    const record = collector
      .logs()
      .find((l) => l.body?.stringValue === 'request' && attributes(l.attributes).requestId === requestId)
    assert.equal(record?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736')
    assert.equal(record?.traceId, line?.trace_id)
    return { stdout: line?.trace_flags, exported: (record?.flags ?? 0) & 1 }
  }
  assert.deepEqual(flagsOf('no'), { stdout: '00', exported: 0 })
  assert.deepEqual(flagsOf('yes'), { stdout: '01', exported: 1 })
})

// The OpenTelemetry Operator injects OTEL_RESOURCE_ATTRIBUTES (k8s.pod.name, …) into every pod it instruments.
test('both resource attribute lists count, OTLP_RESOURCE_ATTRIBUTES winning where they meet', () => {
  const problems: string[] = []
  const settings = telemetrySettings(
    {
      OTLP_ENDPOINT: 'h:1',
      OTEL_RESOURCE_ATTRIBUTES: 'k8s.pod.name=gw-7f9c,deployment.environment=default',
      OTLP_RESOURCE_ATTRIBUTES: 'deployment.environment=prod%20eu,team=llm',
    },
    problems,
  )
  assert.deepEqual(problems, [])
  assert.deepEqual(settings.otlp?.resourceAttributes, {
    'k8s.pod.name': 'gw-7f9c',
    'deployment.environment': 'prod eu',
    team: 'llm',
  })
})

// With a 1 % sampler and prompts captured, 99 % of requests serialized and redacted their whole prompt
// and answer for spans nobody records: 0.6 ms for a 200 KiB prompt, more than the rest of the request.
test('a request the sampler leaves out builds nothing for its spans, captured prompts included', async () => {
  const traced = async (ratio: number, exported = true) => {
    const seen: string[] = []
    const redact = (text: string) => {
      seen.push(text)
      return text
    }
    const otlp = {
      tracesUrl: exported ? collector.url : undefined,
      logsUrl: undefined,
      tracesHeaders: {},
      logsHeaders: {},
      serviceName: 'ai-gateway',
      resourceAttributes: {},
      sampler: { parentBased: true, ratio },
    }
    const hooks = { warn: () => true, dropped: () => {} }
    const telemetry = await createTelemetry({ captureContent: true, otlp }, '0', redact, hooks)
    let described = 0
    const request = telemetry.startRequest('POST', '/v1/chat/completions', {})
    const step = { index: 0, provider: 'a', model: 'model-a', host: 'h', port: 1 } as Step
    const attempt = request.attempt(step, 'chat', [{ role: 'user', content: 'the prompt' }])
    attempt.end(() => {
      described++
      return { outcome: 'ok', output: [{ role: 'assistant', content: 'the answer' }] }
    })
    request.end(() => {
      described++
      return { status: 200 }
    })
    await telemetry.shutdown()
    return { described, prompt: seen.some((text) => text.includes('the prompt')) }
  }
  assert.deepEqual(await traced(0), { described: 0, prompt: false })
  assert.deepEqual(await traced(1), { described: 2, prompt: true })
  // Traces not exported at all (OTEL_TRACES_EXPORTER=none, or a logs-only endpoint): nobody records either.
  assert.deepEqual(await traced(1, false), { described: 0, prompt: false })
})

// With n > 1 a stream interleaves its choices, each chunk naming its own: the captured answer is the first's.
test('a captured stream answer with n > 1 is the first choice, not every choice run together', async () => {
  const gw = await gateway({ OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true' })
  const of = (index: number, delta: Record<string, unknown>, finish: string | null = null) => ({
    ...chunk(delta),
    choices: [{ index, delta, finish_reason: finish }],
  })
  mock.script(
    'a',
    sse([
      of(0, { content: 'first ' }),
      of(1, { content: 'second ' }),
      of(0, { content: 'one' }),
      of(1, { content: 'two' }),
      of(0, {}, 'stop'),
      of(1, {}, 'stop'),
    ]),
  )
  const res = await gw.post('/v1/chat/completions', { model: 'r', messages: [], stream: true, n: 2 })
  await res.text()
  await waitFor(() => collector.spans().some((s) => s.kind === CLIENT), 'the attempt span')
  const attempt = collector.spans().find((s) => s.kind === CLIENT)
  const output = JSON.parse(String(attributes(attempt?.attributes ?? [])['gen_ai.output.messages']))
  assert.deepEqual(output, [{ role: 'assistant', content: 'first one' }])
})
