/**
 * Graceful shutdown: a draining node fails readiness, finishes the requests and jobs it has in
 * flight, and only then closes its connections.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { createLogger } from '../src/platform/observability/logger.ts'
import { createRuntime, startRuntime, stopRuntime } from '../src/platform/runtime.ts'
import { testConfig } from './support/app.ts'

it('finishes in-flight requests and running jobs before closing', async () => {
  const config = testConfig()
  const runtime = await createRuntime(config, createLogger('silent'), {
    inMemoryDatabase: true,
    jobPollingSeconds: 0.5,
  })
  const job = { started: false, finished: false }
  runtime.jobs.define('test.slow', async () => {
    job.started = true
    await sleep(800)
    job.finished = true
  })
  await startRuntime(runtime, { work: true })
  const app = await buildApp(runtime)
  app.get('/slow', async () => {
    await sleep(500)
    return { done: true }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }

  await withTransaction(runtime.database.db, (trx) => runtime.jobs.enqueue(trx, 'test.slow', {}))
  for (let i = 0; i < 100 && !job.started; i++) await sleep(50)
  expect(job.started).toBe(true)

  const inFlight = fetch(`http://127.0.0.1:${port}/slow`)
  await sleep(100)
  // What main.ts does on SIGTERM.
  runtime.draining = true
  const readiness = await app.inject('/readyz')
  expect(readiness.statusCode).toBe(503)
  expect(readiness.json().status).toBe('draining')
  const closing = app.close().then(() => stopRuntime(runtime))

  const response = await inFlight
  expect(response.status).toBe(200)
  expect(await response.json()).toEqual({ done: true })
  await closing
  expect(job.finished).toBe(true)
  await expect(fetch(`http://127.0.0.1:${port}/livez`)).rejects.toThrow()
})
