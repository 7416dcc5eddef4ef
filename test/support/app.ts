/** A whole node for tests: runtime (database, kv, jobs, outbox) plus the HTTP app, started. */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { type Config, loadConfig } from '../../src/config.ts'
import type { DatabaseKind } from '../../src/platform/db/database.ts'
import { createLogger } from '../../src/platform/observability/logger.ts'
import { createRuntime, type Runtime, startRuntime, stopRuntime } from '../../src/platform/runtime.ts'
import { createTestDatabase, type TestDatabase } from './database.ts'

export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef0123456789'
export const adminAuth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` }

/** The config a test node uses; env overrides any setting. */
export function testConfig(env: Record<string, string | undefined> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    APP_SECRET: 'test-secret-0123456789abcdef0123456789',
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    DATA_DIR: mkdtempSync(join(tmpdir(), 'sw-test-')),
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    RUN_WORKERS: 'false',
    // Booting embedded Postgres stalls the event loop; tests of load shedding switch it back on.
    MAX_EVENT_LOOP_DELAY_MS: '0',
    MAX_EVENT_LOOP_UTILIZATION: '0',
    // A test file's node answers every request from one address, and a file that polls jobs can
    // pass the production default (1,200 a minute) on a slow machine; tests of the limiter set their own.
    RATE_LIMIT_PER_MINUTE: '100000',
    ...env,
  })
}

export interface TestNode {
  runtime: Runtime
  app: FastifyInstance
  database: TestDatabase
  close(): Promise<void>
}

/**
 * Starts a node on a fresh database (or on `database`, to share one between nodes). `work` runs
 * job handlers in-process with fast polling.
 */
export async function startTestNode(
  kind: DatabaseKind,
  options: {
    work?: boolean
    env?: Record<string, string | undefined>
    database?: TestDatabase
    /** Runs before the runtime starts: the place to define extra job queues. */
    beforeStart?: (runtime: Runtime) => void
    /** How often idle workers poll (default 0.5 s). */
    jobPollingSeconds?: number
  } = {},
): Promise<TestNode> {
  const database = options.database ?? (await createTestDatabase(kind, { migrated: true }))
  const config = testConfig({ DATABASE_URL: database.url, ...options.env })
  const runtime = await createRuntime(config, createLogger(config.logLevel), {
    inMemoryDatabase: true,
    embeddedStart: database.embeddedStart,
    jobPollingSeconds: options.jobPollingSeconds ?? 0.5,
  })
  options.beforeStart?.(runtime)
  await startRuntime(runtime, { work: options.work ?? false })
  const app = await buildApp(runtime)
  await app.ready()
  return {
    runtime,
    app,
    database,
    async close() {
      await app.close()
      await stopRuntime(runtime)
      if (!options.database) await database.drop()
    },
  }
}
