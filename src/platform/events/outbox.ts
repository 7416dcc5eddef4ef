/**
 * Domain events through a transactional outbox: an event is written to the `events` table and its
 * delivery job enqueued in the caller's transaction, so it exists if and only if the change it
 * describes committed. Delivery to NATS JetStream is at least once; the event id is the JetStream
 * message id, so redeliveries inside the duplicate window are dropped by the server.
 */
import { type RawBuilder, sql } from 'kysely'
import type { Logger } from 'pino'
import type { Database } from '../db/database.ts'
import type { Tx } from '../db/transaction.ts'
import { newId } from '../ids.ts'
import type { Jobs } from '../jobs/jobs.ts'
import type { DomainEvent, NatsPublisher } from './nats-publisher.ts'

export const PUBLISH_EVENT_JOB = 'events.publish'

export type EventListener = (event: DomainEvent) => Promise<void>

export class Outbox {
  readonly #jobs: Jobs
  readonly #listeners = new Map<string, EventListener[]>()

  constructor(jobs: Jobs) {
    this.#jobs = jobs
  }

  /** Records an event in the caller's transaction and schedules its delivery. */
  async emit(
    trx: Tx,
    type: string,
    payload: Record<string, unknown>,
    subjectId: string | null = null,
  ): Promise<DomainEvent> {
    const id = newId('evt')
    const row = await trx
      .insertInto('events')
      .values({ id, type, subject_id: subjectId, payload: JSON.stringify(payload) })
      .returning(['occurred_at'])
      .executeTakeFirstOrThrow()
    await this.#jobs.enqueue(trx, PUBLISH_EVENT_JOB, { id })
    return { id, type, subject_id: subjectId, payload, occurred_at: row.occurred_at.toISOString() }
  }

  /**
   * Records an event one of whose payload fields comes from a write of the caller's, in one
   * statement with that write. `ctes` are the write as common table expressions, the last named
   * `source` and returning at most one row with a column `value`; the event is written only if it
   * does, with `value` under `field` in the payload. Returns `{ value }`, or undefined (and no
   * event, no delivery) when the write wrote nothing.
   *
   * `whileLocked` is for a write that locks a row every writer waits on (the order counter): the
   * delivery job goes first, so the lock is held for this statement and the commit only; nothing
   * written then throws, since the job would name no event: let the transaction roll back.
   */
  async emitWith(
    trx: Tx,
    type: string,
    payload: Record<string, unknown>,
    subjectId: string | null,
    source: { ctes: RawBuilder<unknown>; field: string },
    options: { whileLocked?: boolean } = {},
  ): Promise<{ value: unknown } | undefined> {
    const id = newId('evt')
    // The job only names the event, and both commit or neither: it may go first.
    if (options.whileLocked) await this.#jobs.enqueue(trx, PUBLISH_EVENT_JOB, { id })
    const { rows } = await sql<{ value: unknown }>`
      with ${source.ctes}
      insert into events (id, type, subject_id, payload)
      select ${id}, ${type}, ${subjectId}, ${JSON.stringify(payload)}::jsonb || jsonb_build_object(${source.field}::text, source.value)
      from source
      returning payload -> ${source.field}::text as value`.execute(trx)
    if (!rows[0]) {
      if (options.whileLocked) throw new Error(`${type}: the statement its event depends on wrote nothing`)
      return undefined
    }
    if (!options.whileLocked) await this.#jobs.enqueue(trx, PUBLISH_EVENT_JOB, { id })
    return { value: rows[0].value }
  }

  /** Runs listener (at least once, from a worker) for every event of this type. */
  on(type: string, listener: EventListener): void {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), listener])
  }

  /** Defines the delivery job: in-process listeners, then NATS when configured. */
  defineDelivery(database: Database, nats: NatsPublisher | undefined, logger: Logger): void {
    this.#jobs.define<{ id: string }>(PUBLISH_EVENT_JOB, async ({ id }) => {
      const row = await database.db.selectFrom('events').selectAll().where('id', '=', id).executeTakeFirst()
      if (!row) {
        logger.warn({ eventId: id }, 'event to publish no longer exists')
        return
      }
      const event: DomainEvent = {
        id: row.id,
        type: row.type,
        subject_id: row.subject_id,
        payload: row.payload,
        occurred_at: row.occurred_at.toISOString(),
      }
      for (const listener of this.#listeners.get(event.type) ?? []) await listener(event)
      if (nats) await nats.publish(event)
      await database.db
        .updateTable('events')
        .set({ published_at: sql<Date>`now()` })
        .where('id', '=', id)
        .execute()
    })
  }
}
