/**
 * Events get a sequence number, taken when each is written: one subject's events, written by
 * transactions that change it one after another, are numbered in the order they happened, which
 * their ULIDs promise only within one process. Consumers that receive them out of order (delivery
 * is concurrent) put them back in order by it. Existing events are numbered in their table's order.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table events add column sequence bigint generated always as identity`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table events drop column sequence`.execute(db)
}
