/**
 * What an event's delivery job has handed over so far, one row per consumer (NATS, each named
 * listener): a retry runs only the consumers without a row, so a listener that keeps failing
 * neither holds the event back from the others nor makes them run again. Rows last only while the
 * event is in flight; the job deletes them when it sets `events.published_at`.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('event_deliveries')
    .addColumn('event_id', 'text', (c) => c.notNull().references('events.id').onDelete('cascade'))
    .addColumn('consumer', 'text', (c) => c.notNull())
    .addColumn('delivered_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('event_deliveries_pkey', ['event_id', 'consumer'])
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('event_deliveries').execute()
}
