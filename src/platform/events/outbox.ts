/**
 * Domain events through a transactional outbox: an event is written to the `events` table and its
 * delivery job enqueued in the caller's transaction, so it exists if and only if the change it
 * describes committed.
 *
 * Delivery is per consumer: NATS JetStream (when configured) and each named in-process listener
 * succeed or fail on their own. The job records each consumer that has the event
 * (`event_deliveries`), so a retry runs only the ones that failed, and sets `published_at` once
 * every consumer has it. Delivery is at least once (a consumer that succeeded may run again if the
 * job dies before recording it); the event id is the JetStream message id, so repeats inside the
 * duplicate window are dropped by the server.
 */
import { type RawBuilder, sql } from 'kysely'
import type { Logger } from 'pino'
import type { Database } from '../db/database.ts'
import type { Tx } from '../db/transaction.ts'
import { newId } from '../ids.ts'
import type { Jobs } from '../jobs/jobs.ts'
import type { DomainEvent, NatsPublisher } from './nats-publisher.ts'

export const PUBLISH_EVENT_JOB = 'events.publish'
/**
 * Retries of an event's delivery by default (EVENT_RETRY_LIMIT): about a day with the default
 * JOB_RETRY_DELAY_SECONDS and backoff capped at an hour. Events wait out an
 * outage of NATS (or of a listener's processor) and go out when it ends, rather than landing in the
 * dead letters after the few minutes the default retries last; past a day, staff replay them.
 */
export const EVENT_DELIVERY_RETRIES = 34

/** The consumer name NATS publication is recorded under; no listener may take it. */
export const NATS_CONSUMER = 'nats'

export type EventListener = (event: DomainEvent) => Promise<void>

interface Consumer {
  name: string
  deliver: (event: DomainEvent) => Promise<unknown>
}

export class Outbox {
  readonly #jobs: Jobs
  /** Listeners per event type, by name. */
  readonly #listeners = new Map<string, Map<string, EventListener>>()

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
      .returning(['occurred_at', 'sequence'])
      .executeTakeFirstOrThrow()
    await this.#jobs.enqueue(trx, PUBLISH_EVENT_JOB, { id })
    return {
      id,
      type,
      subject_id: subjectId,
      payload,
      occurred_at: row.occurred_at.toISOString(),
      sequence: Number(row.sequence),
    }
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

  /**
   * Runs listener (at least once, from a worker) for every event of this type. The name records
   * which listeners an event has reached, so it must stay the same across releases: a renamed
   * listener runs again for events still in flight.
   */
  on(type: string, name: string, listener: EventListener): void {
    if (!name.trim()) throw new Error(`a listener of ${type} needs a name`)
    if (name === NATS_CONSUMER) throw new Error(`listener name ${name} is reserved for NATS publication`)
    const listeners = this.#listeners.get(type) ?? new Map<string, EventListener>()
    if (listeners.has(name)) throw new Error(`a listener named ${name} is already registered for ${type}`)
    listeners.set(name, listener)
    this.#listeners.set(type, listeners)
  }

  /**
   * Defines the delivery job: NATS when configured, then each listener, every one of them tried
   * whatever the others do. The job fails if any of them did, and its retries run only those.
   */
  defineDelivery(
    database: Database,
    nats: NatsPublisher | undefined,
    logger: Logger,
    retryLimit = EVENT_DELIVERY_RETRIES,
  ): void {
    const { db } = database
    this.#jobs.define<{ id: string }>(
      PUBLISH_EVENT_JOB,
      async ({ id }) => {
        const row = await db
          .selectFrom('events')
          .selectAll()
          .select(
            sql<string[]>`array(select consumer from event_deliveries d where d.event_id = events.id)`.as(
              'delivered',
            ),
          )
          .where('id', '=', id)
          .executeTakeFirst()
        if (!row) {
          logger.warn({ eventId: id }, 'event to publish no longer exists')
          return
        }
        // Every consumer had it already: a replay of a job that had finished.
        if (row.published_at) return
        const event: DomainEvent = {
          id: row.id,
          type: row.type,
          subject_id: row.subject_id,
          payload: row.payload,
          occurred_at: row.occurred_at.toISOString(),
          sequence: Number(row.sequence),
        }
        const consumers: Consumer[] = []
        if (nats) consumers.push({ name: NATS_CONSUMER, deliver: (e) => nats.publish(e) })
        for (const [name, listener] of this.#listeners.get(event.type) ?? [])
          consumers.push({ name, deliver: listener })
        const pending = consumers.filter((consumer) => !row.delivered.includes(consumer.name))

        const failed: Array<{ consumer: string; error: unknown }> = []
        for (const [index, consumer] of pending.entries()) {
          try {
            await consumer.deliver(event)
          } catch (error) {
            logger.warn(
              { err: error, eventId: id, type: event.type, consumer: consumer.name },
              'event consumer failed',
            )
            failed.push({ consumer: consumer.name, error })
            continue
          }
          // The last consumer of a run that failed nowhere needs no row: the job finishes next. This
          // keeps an event with one consumer (NATS, usually) at the two statements it always took.
          if (failed.length === 0 && index === pending.length - 1) break
          await db
            .insertInto('event_deliveries')
            .values({ event_id: id, consumer: consumer.name })
            .onConflict((oc) => oc.columns(['event_id', 'consumer']).doNothing())
            .execute()
        }
        if (failed.length > 0) {
          const reasons = failed.map(({ consumer, error }) => `${consumer}: ${messageOf(error)}`).join('; ')
          throw new Error(`event ${id} (${event.type}) not delivered to ${reasons}`, {
            cause: failed.length === 1 ? failed[0]!.error : new AggregateError(failed.map((f) => f.error)),
          })
        }
        // Rows only track an event in flight; published_at says it has landed everywhere.
        await sql`
        with delivered as (delete from event_deliveries where event_id = ${id})
        update events set published_at = now() where id = ${id}`.execute(db)
      },
      { retryLimit },
    )
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
