/**
 * The runtime: every shared dependency of a node (database, key-value store, jobs, outbox, NATS,
 * metrics), created from the config and started in order. Start-up tolerates a database that is
 * not there yet: the node listens, answers /readyz with 503 and keeps trying until it can migrate.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Config } from '../config.ts'
import { prepareModules, registerJobs } from '../jobs.ts'
import { type Database, type EmbeddedStart, isConnectionError, openDatabase } from './db/database.ts'
import { migrateToLatest } from './db/migrate.ts'
import { NatsPublisher } from './events/nats-publisher.ts'
import { Outbox } from './events/outbox.ts'
import { Jobs } from './jobs/jobs.ts'
import { createKv, type Kv } from './kv/index.ts'
import { createMetrics, type Metrics } from './observability/metrics.ts'

export interface Runtime {
  readonly config: Config
  readonly logger: Logger
  readonly database: Database
  readonly kv: Kv
  readonly jobs: Jobs
  readonly outbox: Outbox
  readonly metrics: Metrics
  nats: NatsPublisher | undefined
  /** True once migrations ran and the job queue started. */
  started: boolean
  /** True from the first shutdown signal: /readyz answers 503 so balancers stop sending. */
  draining: boolean
}

export interface RuntimeOptions {
  /** Keep an embedded database in memory rather than under dataDir (tests). */
  inMemoryDatabase?: boolean
  /** Where that in-memory database starts from (tests). */
  embeddedStart?: EmbeddedStart | undefined
  /** Seconds between job polls, short in tests. */
  jobPollingSeconds?: number
}

/** Creates the dependencies without touching the network; call startRuntime next. */
export async function createRuntime(
  config: Config,
  logger: Logger,
  options: RuntimeOptions = {},
): Promise<Runtime> {
  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: options.inMemoryDatabase ? undefined : config.dataDir,
    poolMax: config.databasePoolMax,
    statementCache: config.databaseStatementCache,
    logger,
    embeddedStart: options.inMemoryDatabase ? options.embeddedStart : undefined,
  })
  const kv = createKv({ redisUrl: config.redisUrl, logger })
  const jobs = new Jobs(database, {
    retryLimit: config.jobRetryLimit,
    retryDelaySeconds: config.jobRetryDelaySeconds,
    logger,
    pollingIntervalSeconds: options.jobPollingSeconds,
    appSecret: config.appSecret,
  })
  const outbox = new Outbox(jobs)
  const metrics = createMetrics(database, jobs)
  return {
    config,
    logger,
    database,
    kv,
    jobs,
    outbox,
    metrics,
    nats: undefined,
    started: false,
    draining: false,
  }
}

/**
 * Connects to NATS, migrates, and starts the job queue (running handlers here when runWorkers).
 * Retries with backoff while the database is unreachable, so a node started before its database
 * becomes ready on its own. beforeReady (the demo seed, say) runs before /readyz turns green.
 */
export async function startRuntime(
  runtime: Runtime,
  { work, beforeReady }: { work: boolean; beforeReady?: (runtime: Runtime) => Promise<void> },
): Promise<void> {
  const { config, logger } = runtime
  for (let attempt = 1; ; attempt++) {
    try {
      if (config.natsUrl && !runtime.nats) {
        runtime.nats = await NatsPublisher.connect({
          url: config.natsUrl,
          stream: config.natsStream,
          subjectPrefix: config.natsSubjectPrefix,
          logger,
        })
      }
      const applied = await migrateToLatest(runtime.database.db)
      if (applied.length) logger.info({ migrations: applied }, 'database migrated')
      await prepareModules(runtime)
      registerJobs(runtime)
      await runtime.jobs.start({ work })
      await beforeReady?.(runtime)
      runtime.started = true
      return
    } catch (error) {
      // Only an unreachable server is worth waiting for; any other failure is a bug or bad config.
      if (runtime.draining || !isConnectionError(error)) throw error
      const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6))
      logger.error(
        { err: error, attempt, retryInMs: delay },
        `start-up failed (database ${runtime.database.kind}${config.natsUrl ? ', NATS' : ''}); retrying`,
      )
      await sleep(delay)
    }
  }
}

/** Stops jobs (letting running ones finish), then closes NATS, the key-value store and the database. */
export async function stopRuntime(runtime: Runtime): Promise<void> {
  runtime.draining = true
  await runtime.jobs
    .stop(runtime.config.shutdownTimeoutMs)
    .catch((err: unknown) => runtime.logger.error({ err }, 'jobs stop'))
  await runtime.nats?.close().catch((err: unknown) => runtime.logger.error({ err }, 'nats close'))
  await runtime.kv.close().catch((err: unknown) => runtime.logger.error({ err }, 'kv close'))
  await runtime.database.close().catch((err: unknown) => runtime.logger.error({ err }, 'database close'))
}
