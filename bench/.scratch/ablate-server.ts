// Scratch: replica of buildApp's per-request machinery with toggles (FEATURES=comma list).
import { randomUUID } from 'node:crypto'
import { openSync } from 'node:fs'
import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import rateLimit from '@fastify/rate-limit'
import underPressure from '@fastify/under-pressure'
import Fastify from 'fastify'
import { pino } from 'pino'
import { Type } from 'typebox'
import { createMetrics, registerMetrics } from '../../src/platform/observability/metrics.ts'

const f = new Set((process.env.FEATURES ?? '').split(',').filter(Boolean))
const logger = f.has('log')
  ? pino(
      {
        level: 'info',
        base: { service: 'x' },
        redact: {
          paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.password'],
          censor: '[redacted]',
        },
      },
      pino.destination({ dest: process.env.LOGFILE ?? '/dev/null', sync: true }),
    )
  : undefined
const app = Fastify({
  ...(logger ? { loggerInstance: logger } : {}),
  disableRequestLogging: true,
  ...(f.has('reqid') ? { requestIdHeader: false, genReqId: () => randomUUID() } : {}),
})
if (f.has('reqid'))
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })
if (f.has('log'))
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request',
    )
  })
if (f.has('pressure'))
  await app.register(underPressure, {
    maxEventLoopDelay: 1000,
    maxEventLoopUtilization: 0.98,
    retryAfter: 10,
  })
if (f.has('helmet'))
  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
      },
    },
  })
if (f.has('cors'))
  await app.register(cors, {
    origin: ['http://localhost'],
    exposedHeaders: ['x-request-id', 'idempotent-replayed', 'retry-after', 'etag'],
  })
if (f.has('ratelimit')) await app.register(rateLimit, { global: true, max: 1000000, timeWindow: 60000 })
if (f.has('asynchooks')) {
  // Stand-ins for auth onRequest + idempotency preHandler/onSend (early returns)
  app.addHook('onRequest', async (request) => {
    void request.headers.authorization
  })
  app.addHook('preHandler', async (request) => {
    void request.routeOptions.config
  })
  app.addHook('onSend', async (_request, _reply, payload) => payload)
}
if (f.has('metrics')) registerMetrics(app, createMetrics({ pool: undefined } as never, undefined))
app.get(
  '/livez',
  {
    config: { rateLimit: false },
    ...(f.has('schema')
      ? { schema: { response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }
      : {}),
  },
  async () => ({ status: 'ok' }),
)
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.once('SIGTERM', () => app.close().then(() => process.exit(0)))
