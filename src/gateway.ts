// Composition root: builds the logger, router, upstream client and HTTP server from a frozen Config.
// Nothing happens on import, so tests and the demo can build as many gateways as they like.

import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import pkg from '../package.json' with { type: 'json' }
import { createKeyCheck } from './auth.ts'
import type { Config } from './config.ts'
import { createCors } from './cors.ts'
import { createEndpoints } from './handlers.ts'
import { HealthBoard } from './health.ts'
import { createLogging, type Logger, type Logging } from './logger.ts'
import { Metrics } from './metrics.ts'
import { QuotaBook } from './quota.ts'
import { createRedactor, type Redactor } from './redact.ts'
import { sendText } from './reply.ts'
import { ResponseStore } from './response-store.ts'
import { responsesEndpoints } from './responses.ts'
import { createRouter, type Router } from './router.ts'
import { createHttpServer, type Endpoint, type HttpServer } from './server.ts'
import { createTelemetry, disabledTelemetry, type Telemetry } from './telemetry.ts'
import { UpstreamClient } from './upstream.ts'

export const version: string = pkg.version

export interface Gateway {
  readonly logger: Logger
  /** Starts listening; resolves with the bound address. */
  start(): Promise<AddressInfo>
  /** Graceful stop: no new connections, in-flight requests finish within `shutdown_timeout`. */
  stop(): Promise<void>
  /** After a failed start: exports what telemetry holds (the failure among it) and lets go of the rest. */
  abandon(): Promise<void>
}

export async function createGateway(config: Config): Promise<Gateway> {
  const redact = createRedactor(config.secrets)
  const router = createRouter(config, `ai-gateway/${version}`)
  const steps = router.routes.flatMap((route) => route.steps)
  const quotas = new QuotaBook(steps)
  const health = new HealthBoard(config.failover, quotas, steps)
  const metrics = new Metrics(router.routes, health)
  const { telemetry, logging } = await createObservability(config, redact, metrics)
  const { logger } = logging
  const client = new UpstreamClient()
  const isKeyValid = createKeyCheck(config.api_key)
  const isAuthorized = (req: IncomingMessage) => isKeyValid(req.headers)
  const handlerDeps = {
    router,
    client,
    health,
    quotas,
    policy: config.failover,
    logger,
    redact,
    telemetry,
    maxBodySize: config.max_body_size,
    maxAnswerBytes: config.max_answer_size,
    createdAt: Math.floor(Date.now() / 1000),
  }
  const endpoints = [
    ...createEndpoints(handlerDeps),
    ...responsesEndpoints({ ...handlerDeps, store: new ResponseStore() }),
  ]
  const metricsEndpoint = metricsEndpointOf(config, metrics)
  const separateMetrics = config.metrics.port !== undefined && metricsEndpoint !== undefined
  const server = createHttpServer({
    endpoints: metricsEndpoint === undefined || separateMetrics ? endpoints : [...endpoints, metricsEndpoint],
    isAuthorized,
    logging,
    redact,
    telemetry,
    metrics,
    ...(config.cors === undefined ? {} : { cors: createCors(config.cors.origins) }),
  })
  const metricsServer = separateMetrics
    ? createHttpServer({
        endpoints: [metricsEndpoint],
        isAuthorized,
        logging,
        redact,
        telemetry: disabledTelemetry,
      })
    : undefined

  return gatewayOf({ config, logger, router, server, metricsServer, client, telemetry })
}

/**
 * The telemetry and the logging, each feeding the other: the telemetry's export warnings go to the
 * logger, which in turn feeds the telemetry's log export. So the SDK's warnings about its own
 * configuration, raised while the exporters are built, wait for the logger.
 */
async function createObservability(
  config: Config,
  redact: Redactor,
  metrics: Metrics,
): Promise<{ telemetry: Telemetry; logging: Logging }> {
  let logger: Logger | undefined
  const early: string[] = []
  const telemetry = await createTelemetry(config.telemetry, version, redact, {
    warn(detail) {
      if (logger === undefined) early.push(detail)
      else logger.warn({ detail }, 'telemetry export problem')
      return logger === undefined || logger.isLevelEnabled('warn')
    },
    dropped: (signal, count) => metrics.telemetryDropped(signal, count),
  })
  const logging = createLogging({
    level: config.log_level,
    redact,
    ...(telemetry.logSink === undefined ? {} : { tee: telemetry.logSink }),
  })
  logger = logging.logger
  for (const detail of early) logger.warn({ detail }, 'telemetry export problem')
  return { telemetry, logging }
}

/** What starting and stopping a built gateway acts on. */
interface Parts {
  readonly config: Config
  readonly logger: Logger
  readonly router: Router
  readonly server: HttpServer
  readonly metricsServer: HttpServer | undefined
  readonly client: UpstreamClient
  readonly telemetry: Telemetry
}

function gatewayOf(parts: Parts): Gateway {
  const { config, logger, router, server, metricsServer, client, telemetry } = parts
  return {
    logger,
    async start() {
      const address = await server.listen(config.port, config.host)
      let metricsAddress: AddressInfo | undefined
      try {
        metricsAddress = await metricsServer?.listen(
          config.metrics.port ?? 0,
          config.metrics.host ?? config.host,
        )
      } catch (err) {
        // Half started is not started: nothing may keep serving after the failure is reported.
        await server.close(0)
        throw err
      }
      logger.info(
        {
          version,
          address: address.address,
          port: address.port,
          config: config.source,
          routes: router.routes.map((r) => r.name),
          ...(metricsAddress === undefined ? {} : { metricsPort: metricsAddress.port }),
          telemetry: telemetry.enabled,
        },
        'listening',
      )
      return address
    },
    async stop() {
      logger.info({ graceMs: config.shutdown_timeout }, 'shutting down')
      await Promise.all([server.close(config.shutdown_timeout), metricsServer?.close(0)])
      await client.close()
      logger.info('stopped')
      logger.flush()
      // Last, so the shutdown lines above are exported too.
      await telemetry.shutdown()
    },
    async abandon() {
      logger.flush()
      await Promise.all([client.close(), telemetry.shutdown()])
    },
  }
}

/** `/metrics` in Prometheus text format; by default it needs the key unless it has a port of its own. */
function metricsEndpointOf(config: Config, metrics: Metrics): Endpoint | undefined {
  if (!config.metrics.enabled) return undefined
  const requireKey = config.metrics.require_key ?? config.metrics.port === undefined
  return {
    method: 'GET',
    path: '/metrics',
    public: !requireKey,
    async handle(exchange) {
      sendText(exchange, 200, metrics.registry.contentType, await metrics.text())
    },
  }
}
