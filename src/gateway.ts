// Composition root: builds the logger, router, upstream client and HTTP server from a frozen Config.
// Nothing happens on import, so tests and the demo can build as many gateways as they like.

import type { AddressInfo } from 'node:net'
import type { DestinationStream } from 'pino'
import pkg from '../package.json' with { type: 'json' }
import { createKeyCheck } from './auth.ts'
import type { Config } from './config.ts'
import { createEndpoints } from './handlers.ts'
import { HealthBoard } from './health.ts'
import { createLogger, type Logger } from './logger.ts'
import { QuotaBook } from './quota.ts'
import { createRedactor } from './redact.ts'
import { createRouter } from './router.ts'
import { createHttpServer } from './server.ts'
import { UpstreamClient } from './upstream.ts'

export const version: string = pkg.version

export interface Gateway {
  readonly logger: Logger
  /** Starts listening; resolves with the bound address. */
  start(): Promise<AddressInfo>
  /** Graceful stop: no new connections, in-flight requests finish within `shutdown_timeout`. */
  stop(): Promise<void>
}

export interface GatewayOptions {
  /** Log destination; stdout when omitted. */
  logDestination?: DestinationStream
}

export function createGateway(config: Config, options: GatewayOptions = {}): Gateway {
  const redact = createRedactor(config.secrets)
  const logger = createLogger({
    level: config.log_level,
    redact,
    ...(options.logDestination === undefined ? {} : { destination: options.logDestination }),
  })
  const router = createRouter(config, `ai-gateway/${version}`)
  const client = new UpstreamClient()
  const steps = router.routes.flatMap((route) => route.steps)
  const quotas = new QuotaBook(steps)
  const health = new HealthBoard(config.failover, quotas, steps)
  const isKeyValid = createKeyCheck(config.api_key)
  const endpoints = createEndpoints({
    router,
    client,
    health,
    quotas,
    policy: config.failover,
    logger,
    redact,
    maxBodySize: config.max_body_size,
    createdAt: Math.floor(Date.now() / 1000),
  })
  const server = createHttpServer({
    endpoints,
    isAuthorized: (req) => isKeyValid(req.headers),
    logger,
    redact,
  })

  return {
    logger,
    async start() {
      const address = await server.listen(config.port, config.host)
      logger.info(
        {
          version,
          address: address.address,
          port: address.port,
          config: config.source,
          routes: router.routes.map((r) => r.name),
        },
        'listening',
      )
      return address
    },
    async stop() {
      logger.info({ graceMs: config.shutdown_timeout }, 'shutting down')
      await server.close(config.shutdown_timeout)
      await client.close()
      logger.info('stopped')
    },
  }
}
