/**
 * Probes for orchestrators: `/livez` says the process is up (nothing else, so a slow database never
 * gets a healthy node restarted); `/readyz` says this node can serve: started, not draining, and its
 * database, Redis and NATS answering.
 */
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { Runtime } from '../runtime.ts'

const CHECK_TIMEOUT_MS = 2_000

const Check = Type.Object({
  status: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  error: Type.Optional(Type.String()),
})
const Ready = Type.Object({
  status: Type.Union([
    Type.Literal('ready'),
    Type.Literal('starting'),
    Type.Literal('draining'),
    Type.Literal('unready'),
  ]),
  checks: Type.Record(Type.String(), Check),
})

async function check(probe: () => Promise<void>): Promise<{ status: 'up' | 'down'; error?: string }> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      probe(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS)
      }),
    ])
    return { status: 'up' }
  } catch (error) {
    return { status: 'down', error: (error as Error).message }
  } finally {
    clearTimeout(timer)
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A health or metrics probe: answered under load shedding and rate limits, and not logged. */
    probe?: boolean
  }
}

// Probes answer even when the node sheds load or a client is rate limited.
const probeConfig = { rateLimit: false, probe: true, pressureHandler: () => undefined } as const

export const healthRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (app, { runtime }) => {
  app.get(
    '/livez',
    {
      config: probeConfig,
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process is running',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  )

  app.get(
    '/readyz',
    {
      config: probeConfig,
      schema: {
        tags: ['operations'],
        summary: 'Readiness: this node can serve traffic',
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_request, reply) => {
      const probes: Record<string, () => Promise<void>> = { database: () => runtime.database.ping() }
      if (runtime.config.redisUrl) probes.redis = () => runtime.kv.ping()
      if (runtime.config.natsUrl) {
        probes.nats = async () => {
          if (!runtime.nats) throw new Error('not connected')
          await runtime.nats.ping()
        }
      }
      const names = Object.keys(probes)
      const results = await Promise.all(names.map((name) => check(probes[name]!)))
      const checks = Object.fromEntries(names.map((name, i) => [name, results[i]!]))
      const healthy = Object.values(checks).every((c) => c.status === 'up')
      const status = runtime.draining
        ? 'draining'
        : !runtime.started
          ? 'starting'
          : healthy
            ? 'ready'
            : 'unready'
      reply.code(status === 'ready' ? 200 : 503)
      return { status, checks }
    },
  )
}
