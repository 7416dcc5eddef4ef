/**
 * Background jobs on pg-boss, in the same database as the data (PGlite or PostgreSQL), so a job can
 * be enqueued in the transaction that makes it necessary: it exists if and only if that transaction
 * commits. Failed jobs retry with exponential backoff, then land in one dead-letter queue that
 * staff can list and replay. A queue may declare fields of its payloads secret: they are sealed in
 * pg-boss's tables, opened only for the handler, and never listed.
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
import { SecretBox } from '../secret-box.ts'

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

/** The payload field that holds a queue's secret fields, sealed (reserved in such queues). */
const SEALED_FIELD = 'sealed'

export interface DeadJob {
  id: string
  queue: string | null
  data: unknown
  /** The fields its queue declares secret, withheld from `data`. */
  redacted: string[]
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
  secret: readonly string[]
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
  /**
   * APP_SECRET, from which each queue's key for sealing its payloads' secret fields is derived.
   * Without it those fields are stored in plain text (and still never listed).
   */
  appSecret?: string
}

export class Jobs {
  readonly boss: PgBoss
  readonly #options: JobsOptions
  readonly #definitions = new Map<string, Definition>()
  readonly #boxes = new Map<string, SecretBox>()
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

  /**
   * Declares a queue and its handler; call before start(). `secret` names payload fields that must
   * not sit readable in the database nor reach anyone listing failed jobs (one-time tokens, personal
   * data): they are sealed on enqueue and opened for the handler alone.
   */
  define<T>(
    name: string,
    handler: JobHandler<T>,
    options: {
      retryLimit?: number
      concurrency?: number
      cron?: string
      secret?: ReadonlyArray<keyof T & string>
    } = {},
  ): void {
    const secret = options.secret ?? []
    if (secret.includes(SEALED_FIELD as keyof T & string)) {
      throw new Error(`job ${name}: "${SEALED_FIELD}" is reserved for the sealed fields`)
    }
    this.#definitions.set(name, {
      name,
      handler: handler as JobHandler<never>,
      secret,
      retryLimit: options.retryLimit,
      concurrency: options.concurrency ?? 2,
      cron: options.cron,
    })
  }

  /** Installs pg-boss's schema and the queues; with work=true this process also runs the handlers. */
  async start({ work }: { work: boolean }): Promise<void> {
    await this.boss.start()
    this.#started = true
    if (!this.#options.appSecret) {
      const sealing = [...this.#definitions.values()].filter((def) => def.secret.length > 0)
      if (sealing.length > 0) {
        this.#options.logger.warn(
          { queues: sealing.map((def) => def.name) },
          'no app secret given to the job queue: secret payload fields are stored in plain text',
        )
      }
    }
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
      await def.handler(this.#open(def, job.data) as never, { id: job.id, retryCount: job.retryCount })
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
    const def = this.#definitions.get(name)
    if (!def) throw new Error(`job ${name} is not defined`)
    const id = await this.boss.send(name, this.#seal(def, data), { ...options, db: fromKysely(trx) })
    if (!id) throw new Error(`job ${name} was not enqueued`)
    return id
  }

  /** The payload as stored: the definition's secret fields moved into one sealed field. */
  #seal(def: Definition, data: object): object {
    const appSecret = this.#options.appSecret
    if (def.secret.length === 0 || !appSecret) return data
    if (SEALED_FIELD in data) throw new Error(`job ${def.name}: "${SEALED_FIELD}" is reserved`)
    const open: Record<string, unknown> = { ...data }
    const secret: Record<string, unknown> = {}
    for (const field of def.secret) {
      if (!(field in open)) continue
      secret[field] = open[field]
      delete open[field]
    }
    return { ...open, [SEALED_FIELD]: this.#box(def.name, appSecret).seal(JSON.stringify(secret)) }
  }

  /** The payload as enqueued, for the handler. */
  #open(def: Definition, data: unknown): unknown {
    if (def.secret.length === 0 || !isRecord(data)) return data
    const { [SEALED_FIELD]: sealed, ...open } = data
    // Queued in plain by a version before the queue sealed its secrets, or without an app secret.
    if (typeof sealed !== 'string') return data
    const appSecret = this.#options.appSecret
    try {
      if (!appSecret) throw new Error('no app secret')
      return { ...open, ...(JSON.parse(this.#box(def.name, appSecret).open(sealed)) as object) }
    } catch {
      // No retry can mend it: sealed under another APP_SECRET, or altered in the database.
      throw new UnretryableJobError(
        `job ${def.name}: its sealed fields cannot be opened with this APP_SECRET`,
      )
    }
  }

  /** One key per queue: a payload sealed for one queue cannot be opened as another's. */
  #box(queue: string, appSecret: string): SecretBox {
    let box = this.#boxes.get(queue)
    if (!box) {
      box = new SecretBox(appSecret, `job-payload:${queue}`)
      this.#boxes.set(queue, box)
    }
    return box
  }

  /**
   * A payload fit to list: without its queue's secret fields, sealed or (queued by an earlier
   * version) plain. Jobs of queues this version does not define are listed as they are.
   */
  #redact(queue: string | null, data: unknown): { data: unknown; redacted: string[] } {
    const secret = (queue && this.#definitions.get(queue)?.secret) || []
    if (secret.length === 0) return { data, redacted: [] }
    if (!isRecord(data)) return { data: null, redacted: [...secret] }
    const shown = Object.fromEntries(
      Object.entries(data).filter(([key]) => key !== SEALED_FIELD && !secret.includes(key)),
    )
    return { data: shown, redacted: [...secret] }
  }

  /**
   * Jobs that exhausted their retries, oldest first, each with the error its last run threw (kept
   * on the original job in its source queue); secret payload fields are withheld.
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
          ...this.#redact(job.sourceName, job.data),
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

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
