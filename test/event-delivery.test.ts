/**
 * Delivery of an outbox event per consumer: NATS (when NATS_URL is set) and each listener succeed or
 * fail on their own, a retry runs only the consumers that failed, and the event is marked published
 * once every one of them has it.
 *
 * Three listeners follow `test.partial`, in this order: `test.before`, `test.flaky` (fails while its
 * event is in `failing`) and `test.after`. NATS publications are counted by a plain NATS
 * subscription on the event's subject, which sees every publish, repeats the stream drops included.
 */
import { randomBytes } from 'node:crypto'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { withTransaction } from '../src/platform/db/transaction.ts'
import type { DomainEvent } from '../src/platform/events/nats-publisher.ts'
import { NATS_CONSUMER } from '../src/platform/events/outbox.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'
import { eventually } from './support/eventually.ts'

const natsUrl = process.env.NATS_URL

describeEachDatabase('event delivery per consumer', (kind) => {
  const suffix = randomBytes(5).toString('hex')
  const stream = `SW_DELIVERY_TEST_${suffix}`
  const prefix = `sw_delivery_${suffix}.events`
  let node: TestNode
  let nc: NatsConnection | undefined
  let subscription: Subscription | undefined

  /** Calls per listener name, per event id. */
  const calls = new Map<string, Map<string, number>>()
  const callsOf = (listener: string, eventId: string) => calls.get(listener)?.get(eventId) ?? 0
  const failing = new Set<string>()
  /** How many times test.flaky had run for an event when test.after ran for it. */
  const flakyRunsSeenByAfter = new Map<string, number[]>()
  const published = new Map<string, number>()

  function count(listener: string, eventId: string): void {
    const byEvent = calls.get(listener) ?? new Map<string, number>()
    byEvent.set(eventId, (byEvent.get(eventId) ?? 0) + 1)
    calls.set(listener, byEvent)
  }

  beforeAll(async () => {
    if (natsUrl) {
      nc = await connect({ servers: natsUrl })
      subscription = nc.subscribe(`${prefix}.test.partial`, {
        callback: (error, message) => {
          if (error) return
          const { id } = message.json<DomainEvent>()
          published.set(id, (published.get(id) ?? 0) + 1)
        },
      })
      await nc.flush()
    }
    node = await startTestNode(kind, {
      work: true,
      env: {
        JOB_RETRY_DELAY_SECONDS: '1',
        JOB_RETRY_LIMIT: '2',
        EVENT_RETRY_LIMIT: '2',
        ...(natsUrl ? { NATS_URL: natsUrl, NATS_STREAM: stream, NATS_SUBJECT_PREFIX: prefix } : {}),
      },
      beforeStart(runtime) {
        runtime.outbox.on('test.partial', 'test.before', async (event) => count('test.before', event.id))
        runtime.outbox.on('test.partial', 'test.flaky', async (event) => {
          count('test.flaky', event.id)
          if (failing.has(event.id)) throw new Error('downstream is down')
        })
        runtime.outbox.on('test.partial', 'test.after', async (event) => {
          count('test.after', event.id)
          const seen = flakyRunsSeenByAfter.get(event.id) ?? []
          flakyRunsSeenByAfter.set(event.id, [...seen, callsOf('test.flaky', event.id)])
        })
      },
    })
  })
  afterAll(async () => {
    await node?.close()
    subscription?.unsubscribe()
    if (nc) {
      await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined)
      await nc.close()
    }
  })

  /** Emits a test.partial event whose test.flaky listener fails until the test says otherwise. */
  async function emitFailing(): Promise<string> {
    const event = await withTransaction(node.runtime.database.db, async (trx) => {
      const emitted = await node.runtime.outbox.emit(trx, 'test.partial', { n: 1 })
      failing.add(emitted.id)
      return emitted
    })
    return event.id
  }

  async function deliveredTo(eventId: string): Promise<string[]> {
    const rows = await node.runtime.database.db
      .selectFrom('event_deliveries')
      .select('consumer')
      .where('event_id', '=', eventId)
      .orderBy('consumer')
      .execute()
    return rows.map((r) => r.consumer)
  }

  async function publishedAt(eventId: string): Promise<Date | null> {
    const row = await node.runtime.database.db
      .selectFrom('events')
      .select('published_at')
      .where('id', '=', eventId)
      .executeTakeFirstOrThrow()
    return row.published_at
  }

  it('refuses a second listener of one name for one event type, and the name NATS is recorded under', () => {
    const listener = async () => {}
    expect(() => node.runtime.outbox.on('test.partial', 'test.after', listener)).toThrow(/already registered/)
    expect(() => node.runtime.outbox.on('test.partial', NATS_CONSUMER, listener)).toThrow(/reserved/)
    expect(() => node.runtime.outbox.on('test.partial', ' ', listener)).toThrow(/needs a name/)
    // Another type may use the name.
    node.runtime.outbox.on('test.other', 'test.after', listener)
  })

  it('publishes to NATS and runs the later listeners on the first attempt while one listener fails', async () => {
    const id = await emitFailing()
    await eventually(async () => (callsOf('test.after', id) > 0 ? true : undefined), 10_000)
    // test.after ran in the run where test.flaky failed for the first time.
    expect(flakyRunsSeenByAfter.get(id)?.[0]).toBe(1)
    expect(callsOf('test.before', id)).toBe(1)
    if (natsUrl) await eventually(async () => (published.get(id) === 1 ? true : undefined), 10_000)
    expect(await publishedAt(id)).toBeNull()
    failing.delete(id)
  })

  it('runs only the failed listener again on retry', async () => {
    const id = await emitFailing()
    await eventually(async () => (callsOf('test.flaky', id) >= 2 ? true : undefined), 20_000)
    expect(await deliveredTo(id)).toEqual(
      [...(natsUrl ? [NATS_CONSUMER] : []), 'test.after', 'test.before'].sort(),
    )
    failing.delete(id)
    await eventually(async () => ((await publishedAt(id)) ? true : undefined), 20_000)
    expect(callsOf('test.before', id)).toBe(1)
    expect(callsOf('test.after', id)).toBe(1)
    if (natsUrl) {
      await nc!.flush()
      expect(published.get(id)).toBe(1)
    }
  })

  it('names the failing listener when retries run out, and a replay delivers only to it, then marks the event published', async () => {
    const id = await emitFailing()
    type Failed = { id: string; queue: string; data: { id: string }; error: unknown }
    const dead = await eventually(async () => {
      const res = await node.app.inject({ url: '/admin/jobs/failed', headers: adminAuth })
      return (res.json().data as Failed[]).find((job) => job.data.id === id)
    }, 30_000)
    expect(callsOf('test.flaky', id)).toBe(3) // the first run and two retries
    expect(callsOf('test.before', id)).toBe(1)
    expect(callsOf('test.after', id)).toBe(1)
    if (natsUrl) expect(published.get(id)).toBe(1)
    expect(await publishedAt(id)).toBeNull()
    expect(JSON.stringify(dead.error)).toContain('test.flaky: downstream is down')

    failing.delete(id)
    const replay = await node.app.inject({
      method: 'POST',
      url: `/admin/jobs/failed/${dead.id}/replay`,
      headers: adminAuth,
    })
    expect(replay.statusCode).toBe(202)
    const at = await eventually(async () => (await publishedAt(id)) ?? undefined, 20_000)
    expect(at).toBeInstanceOf(Date)
    expect(callsOf('test.flaky', id)).toBe(4)
    expect(callsOf('test.before', id)).toBe(1)
    expect(callsOf('test.after', id)).toBe(1)
    if (natsUrl) {
      await nc!.flush()
      expect(published.get(id)).toBe(1)
    }
    // Rows only track events in flight.
    expect(await deliveredTo(id)).toEqual([])
  })

  it('marks an event published at once when every consumer has it on the first attempt', async () => {
    const event = await withTransaction(node.runtime.database.db, (trx) =>
      node.runtime.outbox.emit(trx, 'test.partial', { n: 2 }),
    )
    await eventually(async () => ((await publishedAt(event.id)) ? true : undefined), 10_000)
    expect(['test.before', 'test.flaky', 'test.after'].map((name) => callsOf(name, event.id))).toEqual([
      1, 1, 1,
    ])
    expect(await deliveredTo(event.id)).toEqual([])
    if (natsUrl) expect(published.get(event.id)).toBe(1)
  })
})
