/**
 * Background jobs on pg-boss, in the same database as the data (PGlite or PostgreSQL), so a job can
 * be enqueued in the transaction that makes it necessary: it exists if and only if that transaction
 * commits. Failed jobs retry with exponential backoff, then land in one dead-letter queue that
 * staff can list and replay.
 */
import type { Kysely } from 'kysely'
import {
  fromKysely,
  fromPglite,
  type Job,
  type JobResult,
  PgBoss,
  type SendOptions,
  type UpdateQueueOptions,
} from 'pg-boss'
import type { Logger } from 'pino'
import type { Database } from '../db/database.ts'
import type { DB } from '../db/schema.ts'
import type { Tx } from '../db/transaction.ts'

export const DEAD_LETTER_QUEUE = 'dead_letter'
/**
 * How long a running job may go without a heartbeat (its worker beats at half of it). A job whose
 * process died (killed, out of memory, its machine gone) is retried within this and one supervision
 * pass (a minute) of its last beat, rather than when pg-boss's 15-minute expiry runs out; a slow job
 * that is alive keeps beating and is never taken from its worker.
 */
export const HEARTBEAT_SECONDS = 30
/** How long a dead-lettered job can be listed and replayed before pg-boss deletes it. */
export const DEAD_LETTER_RETENTION_SECONDS = 30 * 24 * 3600

export interface DeadJob {
  id: string
  queue: string | null
  data: unknown
  error: unknown
  retries: number | null
  firstCreatedOn: Date | null
  failedOn: Date
}

/**
 * Thrown by a job handler for a failure no retry can mend (a processor refusing for good): the job
 * skips the retries it has left and goes to the dead letters at once, where staff see it now
 * rather than when its backoff runs out days later.
 */
export class UnretryableJobError extends Error {
  override name = 'UnretryableJobError'
}

/** The queue settings Jobs manages: those both creating and updating a queue take. */
type QueueSettings = Pick<
  UpdateQueueOptions,
  | 'retryLimit'
  | 'retryDelay'
  | 'retryBackoff'
  | 'retryDelayMax'
  | 'heartbeatSeconds'
  | 'deadLetter'
  | 'retentionSeconds'
> & { retryDelayMax?: number; heartbeatSeconds?: number; deadLetter?: string }

export type JobHandler<T> = (data: T, meta: { id: string; retryCount: number }) => Promise<void>

interface Definition {
  name: string
  handler: JobHandler<never>
  retryLimit: number | undefined
  concurrency: number
  cron: string | undefined
}

export interface JobsOptions {
  retryLimit: number
  retryDelaySeconds: number
  logger: Logger
  /** How often idle workers look for work; short in tests. */
  pollingIntervalSeconds?: number
  /** HEARTBEAT_SECONDS, and how often jobs whose beats stopped are looked for; short in tests. */
  heartbeatSeconds?: number
  superviseIntervalSeconds?: number
}

export class Jobs {
  readonly boss: PgBoss
  readonly #options: JobsOptions
  readonly #definitions = new Map<string, Definition>()
  #started = false

  constructor(database: Database, options: JobsOptions) {
    this.#options = options
    this.boss =
      database.kind === 'pglite'
        ? new PgBoss({ db: fromPglite(database.pglite!), backend: 'pglite', registerInstance: false })
        : new PgBoss({
            connectionString: database.url!,
            max: 4,
            application_name: 'shopwright-jobs',
            registerInstance: false,
            ...(options.superviseIntervalSeconds
              ? // Each pass covers the queues whose monitor time is due: both intervals bound a pass.
                {
                  superviseIntervalSeconds: options.superviseIntervalSeconds,
                  monitorIntervalSeconds: options.superviseIntervalSeconds,
                }
              : {}),
          })
    // pg-boss reports maintenance and connection trouble as events; unhandled they would crash.
    this.boss.on('error', (error) => options.logger.error({ err: error }, 'job queue error'))
  }

  /** Declares a queue and its handler; call before start(). */
  define<T>(
    name: string,
    handler: JobHandler<T>,
    options: { retryLimit?: number; concurrency?: number; cron?: string } = {},
  ): void {
    this.#definitions.set(name, {
      name,
      handler: handler as JobHandler<never>,
      retryLimit: options.retryLimit,
      concurrency: options.concurrency ?? 2,
      cron: options.cron,
    })
  }

  /** Installs pg-boss's schema and the queues; with work=true this process also runs the handlers. */
  async start({ work }: { work: boolean }): Promise<void> {
    await this.boss.start()
    this.#started = true
    await this.#ensureQueue(DEAD_LETTER_QUEUE, { retentionSeconds: DEAD_LETTER_RETENTION_SECONDS }, work)
    for (const def of this.#definitions.values()) {
      await this.#ensureQueue(
        def.name,
        {
          retryLimit: def.retryLimit ?? this.#options.retryLimit,
          retryDelay: this.#options.retryDelaySeconds,
          retryBackoff: true,
          retryDelayMax: 3600,
          heartbeatSeconds: this.#options.heartbeatSeconds ?? HEARTBEAT_SECONDS,
          deadLetter: DEAD_LETTER_QUEUE,
        },
        work,
      )
      if (def.cron) await this.boss.schedule(def.name, def.cron)
    }
    if (!work) return
    for (const def of this.#definitions.values()) {
      for (let i = 0; i < def.concurrency; i++) await this.#startWorker(def)
    }
  }

  /**
   * One worker of a queue: one job per fetch, so that each job is settled, timed out and (at
   * shutdown) given up on its own, never with a batch. pg-boss waits a whole polling interval after
   * each fetch, which alone would cap a queue at one job per interval per worker whatever its
   * backlog (a few checkouts a second would leave their events minutes behind): a worker that ran a
   * job is woken to fetch again at once, and waits the interval only once the queue is empty.
   * Workers are started one by one (not with pg-boss's localConcurrency) to know each one's id.
   */
  async #startWorker(def: Definition): Promise<void> {
    let workerId: string | undefined
    workerId = await this.boss.work<never>(
      def.name,
      {
        pollingIntervalSeconds: this.#options.pollingIntervalSeconds ?? 2,
        // Each job's outcome is reported, so that one can skip its retries (UnretryableJobError).
        perJobResults: true,
      },
      async ([job]) => {
        if (!job) return []
        const result = await this.#run(def, job)
        if (workerId) this.boss.notifyWorker(workerId)
        return [result]
      },
    )
  }

  async #run(def: Definition, job: Job<never>): Promise<JobResult> {
    try {
      await def.handler(job.data, { id: job.id, retryCount: job.retryCount })
      return { id: job.id, status: 'completed' }
    } catch (error) {
      if (error instanceof UnretryableJobError) {
        this.#options.logger.error({ err: error, job: def.name, jobId: job.id }, 'job dead-lettered')
        return { id: job.id, status: 'deadletter', output: error }
      }
      return { id: job.id, status: 'failed', output: error }
    }
  }

  /**
   * Creates the queue, or, on a node that works the queues (`update`), gives an existing one the
   * settings of this version where they differ (retries, heartbeats; pg-boss applies them to jobs
   * sent from then on), saying what changed. API-only nodes leave settings to the workers, so that
   * a setting given to the worker fleet alone is not undone by an API node starting. Worker nodes
   * must therefore agree on JOB_RETRY_* and EVENT_RETRY_LIMIT (docs/operations.md).
   */
  async #ensureQueue(name: string, settings: QueueSettings, update: boolean): Promise<void> {
    const existing = await this.boss.getQueue(name)
    if (!existing) {
      await this.boss.createQueue(name, settings)
      return
    }
    if (!update) return
    const stale = (Object.keys(settings) as Array<keyof QueueSettings>).filter(
      (key) => (existing[key] ?? undefined) !== settings[key],
    )
    if (stale.length === 0) return
    await this.boss.updateQueue(name, settings)
    this.#options.logger.info(
      {
        queue: name,
        changed: Object.fromEntries(stale.map((key) => [key, { from: existing[key], to: settings[key] }])),
      },
      'job queue settings updated',
    )
  }

  /** Enqueues a job inside the caller's transaction: it is visible to workers only after commit. */
  async enqueue(
    trx: Tx | Kysely<DB>,
    name: string,
    data: object,
    options: SendOptions = {},
  ): Promise<string> {
    if (!this.#definitions.has(name)) throw new Error(`job ${name} is not defined`)
    const id = await this.boss.send(name, data, { ...options, db: fromKysely(trx) })
    if (!id) throw new Error(`job ${name} was not enqueued`)
    return id
  }

  /**
   * Jobs that exhausted their retries, oldest first, each with the error its last run threw (kept
   * on the original job in its source queue).
   */
  async deadLettered(limit: number, after?: string): Promise<DeadJob[]> {
    const jobs = await this.boss.findJobs(DEAD_LETTER_QUEUE, { limit, ...(after ? { after } : {}) })
    return Promise.all(
      jobs.map(async (job) => {
        const original =
          job.sourceName && job.sourceId ? await this.boss.getJobById(job.sourceName, job.sourceId) : null
        return {
          id: job.id,
          queue: job.sourceName,
          data: job.data,
          error: original?.output ?? null,
          retries: job.sourceRetryCount,
          firstCreatedOn: job.sourceCreatedOn,
          failedOn: job.createdOn,
        }
      }),
    )
  }

  /** Sends a dead-lettered job back to its original queue for another run; false if unknown. */
  async replay(id: string): Promise<boolean> {
    const job = await this.boss.getJobById(DEAD_LETTER_QUEUE, id)
    if (!job) return false
    const moved = await this.boss.redrive(DEAD_LETTER_QUEUE, { ids: [id] })
    return moved > 0
  }

  /** Jobs waiting per queue, for metrics. */
  async depth(): Promise<Array<{ name: string; queued: number; active: number; failed: number }>> {
    const queues = await this.boss.getQueues()
    return queues.map((q) => ({
      name: q.name,
      queued: q.queuedCount,
      active: q.activeCount,
      failed: q.failedCount,
    }))
  }

  /** Stops fetching, waits for running handlers up to timeoutMs, then closes. */
  async stop(timeoutMs: number): Promise<void> {
    if (!this.#started) return
    this.#started = false
    await this.boss.stop({ graceful: true, timeout: timeoutMs, close: true })
  }
}
