/**
 * Prometheus metrics: request latency by route and status, Node's default process metrics (event
 * loop lag included), database pool use and job queue depth. A registry per app instance keeps
 * tests that build several apps apart.
 */
import type { FastifyInstance } from 'fastify'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { Database } from '../db/database.ts'
import type { Jobs } from '../jobs/jobs.ts'

export interface Metrics {
  registry: Registry
  httpDuration: Histogram<'method' | 'route' | 'status_code'>
  /** Answers replayed by the edge cache (they are in httpDuration too). */
  edgeCacheHits: Counter
}

/** Creates the registry and the collectors that read the database pool and the job queues. */
export function createMetrics(database: Database, jobs: Jobs | undefined): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 })
  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency by route template and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })
  new Gauge({
    name: 'db_pool_connections',
    help: 'Database pool connections by state (postgres mode)',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const pool = database.pool
      if (!pool) return
      this.set({ state: 'total' }, pool.totalCount)
      this.set({ state: 'idle' }, pool.idleCount)
      this.set({ state: 'waiting' }, pool.waitingCount)
    },
  })
  new Gauge({
    name: 'job_queue_jobs',
    help: 'Jobs per queue and state',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      if (!jobs) return
      this.reset()
      try {
        for (const q of await jobs.depth()) {
          this.set({ queue: q.name, state: 'queued' }, q.queued)
          this.set({ queue: q.name, state: 'active' }, q.active)
          this.set({ queue: q.name, state: 'failed' }, q.failed)
        }
      } catch {
        // The queue being unreachable shows in /readyz; a scrape should still answer.
      }
    },
  })
  const edgeCacheHits = new Counter({
    name: 'http_edge_cache_hits_total',
    help: 'Requests answered from the edge cache, before routing',
    registers: [registry],
  })
  return { registry, httpDuration, edgeCacheHits }
}

/**
 * Records one request in the latency histogram. One child per series, found by a string key:
 * prom-client would otherwise hash a labels object on every request. The series are bounded by
 * routes × methods × status codes.
 */
export function requestObserver(metrics: Metrics) {
  const series = new Map<string, { observe(value: number): void }>()
  return (method: string, status: number, route: string, seconds: number): void => {
    const key = `${method} ${status} ${route}`
    let child = series.get(key)
    if (!child) {
      child = metrics.httpDuration.labels({ method, route, status_code: String(status) })
      series.set(key, child)
    }
    child.observe(seconds)
  }
}

/** Times every request (with `observe`, shared with the edge cache) and serves `/metrics`. */
export function registerMetrics(
  app: FastifyInstance,
  metrics: Metrics,
  observe: ReturnType<typeof requestObserver>,
): void {
  app.addHook('onResponse', (request, reply, done) => {
    // Probe latency says nothing about the service and would only add series.
    if (!request.routeOptions.config.probe)
      observe(
        request.method,
        reply.statusCode,
        request.routeOptions.url ?? 'unmatched',
        reply.elapsedTime / 1000,
      )
    done()
  })
  app.get(
    '/metrics',
    { schema: { hide: true }, config: { rateLimit: false, probe: true } },
    async (_request, reply) => {
      reply.header('content-type', metrics.registry.contentType)
      return metrics.registry.metrics()
    },
  )
}
