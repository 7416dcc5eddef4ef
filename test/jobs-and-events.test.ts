/**
 * Jobs and the transactional outbox: an event (and its delivery job) exists if and only if its
 * transaction committed; failing jobs retry with backoff, then dead-letter, and staff can replay
 * them; with NATS configured, events land on JetStream with the event id as the message id.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { sql } from 'kysely'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openDatabase } from '../src/platform/db/database.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import type { DomainEvent } from '../src/platform/events/nats-publisher.ts'
import { PUBLISH_EVENT_JOB } from '../src/platform/events/outbox.ts'
import { Jobs, UnretryableJobError } from '../src/platform/jobs/jobs.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { createTestDatabase, describeEachDatabase, describePostgres } from './support/database.ts'
import { eventually } from './support/eventually.ts'

describeEachDatabase('jobs and events', (kind) => {
  let node: TestNode
  const delivered: DomainEvent[] = []
  const flaky = { failing: true, runs: 0, succeeded: 0 }
  const deadEnd = { runs: 0 }

  beforeAll(async () => {
    node = await startTestNode(kind, {
      work: true,
      env: { JOB_RETRY_DELAY_SECONDS: '1' },
      beforeStart(runtime) {
        runtime.outbox.on('test.happened', 'test.record', async (event) => {
          delivered.push(event)
        })
        runtime.jobs.define<{ n: number }>(
          'test.flaky',
          async () => {
            flaky.runs++
            if (flaky.failing) throw new Error('downstream is down')
            flaky.succeeded++
          },
          { retryLimit: 1 },
        )
        runtime.jobs.define<{ n: number }>(
          'test.dead-end',
          async () => {
            deadEnd.runs++
            throw new UnretryableJobError('refused for good')
          },
          { retryLimit: 5 },
        )
      },
    })
  })
  afterAll(() => node.close())

  it('leaves no event and no job when the transaction rolls back', async () => {
    const { db } = node.runtime.database
    let eventId = ''
    await expect(
      withTransaction(db, async (trx) => {
        eventId = (await node.runtime.outbox.emit(trx, 'test.happened', { n: 1 })).id
        throw new Error('business rule failed')
      }),
    ).rejects.toThrow('business rule failed')
    expect(eventId).toMatch(/^evt_/)
    expect(await db.selectFrom('events').selectAll().where('id', '=', eventId).execute()).toEqual([])
    expect(await node.runtime.jobs.boss.findJobs(PUBLISH_EVENT_JOB, { data: { id: eventId } })).toEqual([])
    await sleep(1500)
    expect(delivered.find((e) => e.id === eventId)).toBeUndefined()
  })

  it('records and delivers the event when the transaction commits', async () => {
    const { db } = node.runtime.database
    const event = await withTransaction(db, (trx) =>
      node.runtime.outbox.emit(trx, 'test.happened', { n: 2 }, 'prod_x'),
    )
    const row = await db.selectFrom('events').selectAll().where('id', '=', event.id).executeTakeFirstOrThrow()
    expect(row).toMatchObject({ type: 'test.happened', subject_id: 'prod_x', payload: { n: 2 } })
    const got = await eventually(async () => delivered.find((e) => e.id === event.id))
    expect(got).toEqual(event)
    // The next change of the same subject is numbered after it, whatever order delivery takes.
    const next = await withTransaction(db, (trx) =>
      node.runtime.outbox.emit(trx, 'test.happened', { n: 5 }, 'prod_x'),
    )
    expect(next.sequence).toBeGreaterThan(event.sequence)
    expect(await eventually(async () => delivered.find((e) => e.id === next.id))).toEqual(next)
    await eventually(async () => {
      const published = await db
        .selectFrom('events')
        .select('published_at')
        .where('id', '=', event.id)
        .executeTakeFirst()
      return published?.published_at ?? undefined
    })
  })

  it("writes an event with a value from the caller's write, in one statement, and delivers it", async () => {
    const { db } = node.runtime.database
    const counter = `test_${kind}_${Date.now()}`
    await sql`insert into order_sequences (name, next_value) values (${counter}, 7)`.execute(db)
    const next = () =>
      sql`source as (update order_sequences set next_value = next_value + 1 where name = ${counter}
        returning next_value - 1 as value)`
    const written = await withTransaction(db, (trx) =>
      node.runtime.outbox.emitWith(trx, 'test.happened', { n: 3 }, 'prod_y', { ctes: next(), field: 'seq' }),
    )
    expect(written).toEqual({ value: 7 })
    const got = await eventually(async () => delivered.find((e) => e.subject_id === 'prod_y'))
    expect(got).toMatchObject({ type: 'test.happened', payload: { n: 3, seq: 7 } })

    // A write that writes nothing leaves no event and no delivery job; under a held lock (the job
    // went first) the caller learns of it instead, and nothing commits.
    const missing = () => sql`source as (update order_sequences set next_value = next_value + 1
      where name = 'no such counter' returning next_value as value)`
    const jobsBefore = (await node.runtime.jobs.boss.findJobs(PUBLISH_EVENT_JOB)).length
    const nothing = await withTransaction(db, (trx) =>
      node.runtime.outbox.emitWith(trx, 'test.happened', { n: 4 }, 'prod_z', {
        ctes: missing(),
        field: 'seq',
      }),
    )
    expect(nothing).toBeUndefined()
    expect((await node.runtime.jobs.boss.findJobs(PUBLISH_EVENT_JOB)).length).toBe(jobsBefore)
    await expect(
      withTransaction(db, (trx) =>
        node.runtime.outbox.emitWith(
          trx,
          'test.happened',
          { n: 5 },
          'prod_z',
          { ctes: missing(), field: 'seq' },
          { whileLocked: true },
        ),
      ),
    ).rejects.toThrow(/wrote nothing/)
    expect(await db.selectFrom('events').select('id').where('subject_id', '=', 'prod_z').execute()).toEqual(
      [],
    )
  })

  it('retries a failing job, dead-letters it, lists it for staff, and replays it', async () => {
    const { db } = node.runtime.database
    await withTransaction(db, (trx) => node.runtime.jobs.enqueue(trx, 'test.flaky', { n: 7 }))
    type Failed = { id: string; queue: string; data: { n: number }; retries: number; error: unknown }
    const failed = await eventually(async () => {
      const res = await node.app.inject({ url: '/admin/jobs/failed', headers: adminAuth })
      expect(res.statusCode).toBe(200)
      return (res.json().data as Failed[]).find((j) => j.queue === 'test.flaky' && j.data.n === 7)
    }, 20_000)
    expect(flaky.runs).toBe(2) // the first run and one retry
    expect(failed.retries).toBe(1)
    expect(JSON.stringify(failed.error)).toContain('downstream is down')

    flaky.failing = false
    const replay = await node.app.inject({
      method: 'POST',
      url: `/admin/jobs/failed/${failed.id}/replay`,
      headers: adminAuth,
    })
    expect(replay.statusCode).toBe(202)
    await eventually(async () => (flaky.succeeded === 1 ? true : undefined))
    expect(flaky.runs).toBe(3)

    const again = await node.app.inject({
      method: 'POST',
      url: `/admin/jobs/failed/${failed.id}/replay`,
      headers: adminAuth,
    })
    expect(again.statusCode).toBe(404)

    // Ids that are not UUIDs are refused before the database, which would fail on them.
    for (const id of ['-'.repeat(36), '0123456789abcdef0123456789abcdef0123']) {
      for (const url of [`/admin/jobs/failed/${id}/replay`, `/admin/jobs/failed?cursor=${id}`]) {
        const res = await node.app.inject({
          method: url.endsWith('replay') ? 'POST' : 'GET',
          url,
          headers: adminAuth,
        })
        expect(res.statusCode, res.body).toBe(400)
        expect(res.json().code).toBe('validation_failed')
      }
    }
  })

  it('dead-letters at once a job that fails in a way no retry mends', async () => {
    const { db } = node.runtime.database
    await withTransaction(db, (trx) => node.runtime.jobs.enqueue(trx, 'test.dead-end', { n: 8 }))
    type Failed = { queue: string; data: { n: number }; retries: number; error: unknown }
    const failed = await eventually(async () => {
      const res = await node.app.inject({ url: '/admin/jobs/failed', headers: adminAuth })
      return (res.json().data as Failed[]).find((j) => j.queue === 'test.dead-end' && j.data.n === 8)
    }, 20_000)
    // None of its five retries was spent.
    expect(deadEnd.runs).toBe(1)
    expect(failed.retries).toBe(0)
    expect(JSON.stringify(failed.error)).toContain('refused for good')
  })
})

describeEachDatabase('job backlog', (kind) => {
  const POLL_SECONDS = 5
  let node: TestNode
  const ran: number[] = []

  beforeAll(async () => {
    node = await startTestNode(kind, {
      work: true,
      jobPollingSeconds: POLL_SECONDS,
      beforeStart(runtime) {
        runtime.jobs.define<{ n: number }>('test.backlog', async ({ n }) => {
          ran.push(n)
        })
      },
    })
  })
  afterAll(() => node.close())

  it('drains a backlog as fast as its handlers run, not one job per poll', async () => {
    const { db } = node.runtime.database
    await withTransaction(db, async (trx) => {
      for (let n = 0; n < 60; n++) await node.runtime.jobs.enqueue(trx, 'test.backlog', { n })
    })
    // Two workers taking one job per poll would need 30 polls (150 s); a poll or two is enough when
    // a worker fetches again at once after a full batch.
    await eventually(async () => (ran.length === 60 ? true : undefined), 4 * POLL_SECONDS * 1000)
    expect([...ran].sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, n) => n))
  })
})

describe('job workers stopped mid-queue', () => {
  it('never run a finished job again when a stop gives up on the running one', async () => {
    const database = await openDatabase({ url: undefined, dataDir: undefined })
    const runs: number[] = []
    let running: (() => void) | undefined
    const make = () => {
      const jobs = new Jobs(database, {
        retryLimit: 3,
        retryDelaySeconds: 1,
        logger: pino({ level: 'silent' }),
        pollingIntervalSeconds: 0.5,
      })
      jobs.define<{ n: number }>(
        'test.once',
        async ({ n }) => {
          runs.push(n)
          running?.()
          await sleep(600)
        },
        { concurrency: 1 },
      )
      return jobs
    }
    try {
      let jobs = make()
      await jobs.start({ work: false })
      for (let n = 1; n <= 5; n++) await jobs.enqueue(database.db, 'test.once', { n })
      await jobs.stop(1000)
      // Stopped while the third job runs, with less time than it needs: that one is given up.
      const { promise: thirdRuns, resolve } = Promise.withResolvers<void>()
      running = () => runs.length === 3 && resolve()
      jobs = make()
      await jobs.start({ work: true })
      await thirdRuns
      await jobs.stop(200)
      running = undefined
      jobs = make()
      await jobs.start({ work: true })
      // Until every job is done, retries included.
      await eventually(async () => {
        const { rows } = await sql<{ left: number }>`
          select count(*)::int as left from pgboss.job where name = 'test.once' and state <> 'completed'`.execute(
          database.db,
        )
        return rows[0]?.left === 0 ? true : undefined
      }, 20_000)
      await jobs.stop(1000)
      const count = (n: number) => runs.filter((r) => r === n).length
      // Only the job the stop gave up on may run again.
      expect([1, 2, 4, 5].map(count)).toEqual([1, 1, 1, 1])
      expect(count(3)).toBeGreaterThanOrEqual(1)
    } finally {
      await database.close()
    }
  })
})

describe('queue settings', () => {
  it('are given to queues made before by the nodes that work them, not by API-only nodes', async () => {
    const database = await openDatabase({ url: undefined, dataDir: undefined })
    const make = (retryLimit: number) => {
      const jobs = new Jobs(database, {
        retryLimit,
        retryDelaySeconds: 1,
        logger: pino({ level: 'silent' }),
        pollingIntervalSeconds: 0.5,
        heartbeatSeconds: 10,
      })
      jobs.define('test.settings', async () => {})
      return jobs
    }
    try {
      // As an earlier version made it: few retries, no heartbeat.
      const earlier = make(1)
      await earlier.boss.start()
      await earlier.boss.createQueue('test.settings', { retryLimit: 1 })
      await earlier.boss.stop({ graceful: false, close: false })
      const settings = async () => {
        const queue = await earlier.boss.getQueue('test.settings')
        return { retryLimit: queue?.retryLimit, heartbeatSeconds: queue?.heartbeatSeconds ?? null }
      }
      const api = make(7)
      await api.start({ work: false })
      expect(await settings()).toEqual({ retryLimit: 1, heartbeatSeconds: null })
      await api.stop(1000)
      const worker = make(4)
      await worker.start({ work: true })
      expect(await settings()).toEqual({ retryLimit: 4, heartbeatSeconds: 10 })
      await worker.stop(1000)
    } finally {
      await database.close()
    }
  })
})

describePostgres('a job whose worker process died', () => {
  it('is run again by another worker once its heartbeats stop, not after the 15-minute expiry', async () => {
    const testDb = await createTestDatabase('postgres')
    const database = await testDb.open()
    const runs: string[] = []
    const options = {
      retryLimit: 3,
      retryDelaySeconds: 1,
      logger: pino({ level: 'silent' }),
      pollingIntervalSeconds: 0.5,
      heartbeatSeconds: 10,
      superviseIntervalSeconds: 1,
    }
    const make = () => {
      const jobs = new Jobs(database, options)
      jobs.define<{ n: number }>('test.hang', async ({ n }) => void runs.push(`n${n}`), { concurrency: 1 })
      return jobs
    }
    let jobs = make()
    const doomed = spawn(process.execPath, ['test/support/hung-worker.ts'], {
      env: { PATH: process.env.PATH, DATABASE_URL: testDb.url },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      await jobs.start({ work: false })
      await jobs.enqueue(database.db, 'test.hang', { n: 1 })
      await new Promise<void>((resolve, reject) => {
        doomed.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('running') && resolve())
        doomed.once('exit', (code) =>
          reject(new Error(`the hung worker exited (${code}) before taking the job`)),
        )
      })
      doomed.kill('SIGKILL')
      await jobs.stop(1000)
      jobs = make()
      await jobs.start({ work: true })
      // The heartbeat (10 s here), one supervision pass and the retry delay: well under a minute.
      await eventually(async () => (runs.length > 0 ? true : undefined), 45_000)
      expect(runs).toEqual(['n1'])
    } finally {
      doomed.kill('SIGKILL')
      await jobs.stop(1000)
      await database.close()
      await testDb.drop()
    }
  }, 90_000)
})

describe.runIf(process.env.NATS_URL)('outbox to NATS JetStream', () => {
  const suffix = randomBytes(5).toString('hex')
  const stream = `SW_OUTBOX_TEST_${suffix}`
  const prefix = `sw_outbox_${suffix}.events`
  let node: TestNode

  beforeAll(async () => {
    node = await startTestNode('pglite', {
      work: true,
      env: { NATS_URL: process.env.NATS_URL, NATS_STREAM: stream, NATS_SUBJECT_PREFIX: prefix },
    })
  })
  afterAll(async () => {
    await node.close()
    const nc = await connect({ servers: process.env.NATS_URL })
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined)
    await nc.close()
  })

  it('publishes a committed event to shopwright.events.<type> with its id as message id', async () => {
    const response = await node.app.inject({
      method: 'POST',
      url: '/admin/products',
      headers: adminAuth,
      payload: { handle: 'nats-mug', title: 'NATS Mug' },
    })
    expect(response.statusCode).toBe(201)
    const product = response.json()
    const nc = await connect({ servers: process.env.NATS_URL })
    try {
      const jsm = await jetstreamManager(nc)
      const message = await eventually(async () => {
        try {
          return (
            (await jsm.streams.getMessage(stream, { last_by_subj: `${prefix}.product.created` })) ?? undefined
          )
        } catch {
          return undefined
        }
      })
      const event = message.json<DomainEvent>()
      expect(event.type).toBe('product.created')
      expect(event.subject_id).toBe(product.id)
      expect(message.header.get('Nats-Msg-Id')).toBe(event.id)
      const stored = await node.runtime.database.db
        .selectFrom('events')
        .select('sequence')
        .where('id', '=', event.id)
        .executeTakeFirstOrThrow()
      expect(event.sequence).toBe(Number(stored.sequence))
      expect((await jsm.streams.info(stream)).state.messages).toBe(1)
    } finally {
      await nc.close()
    }
  })

  it('reports NATS in /readyz', async () => {
    const res = await node.app.inject('/readyz')
    expect(res.json().checks.nats).toEqual({ status: 'up' })
  })
})
