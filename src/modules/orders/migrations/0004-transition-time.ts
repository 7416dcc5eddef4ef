/**
 * An order's transitions are written under its row lock, one transaction after another, but
 * `now()` is when each transaction began: one that began earlier and waited for the lock would
 * sort before the move it followed. `clock_timestamp()` is when the row is written, so the history
 * sorts as it happened (the status an order had before refunds is read from it).
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table order_transitions alter column created_at set default clock_timestamp()`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table order_transitions alter column created_at set default now()`.execute(db)
}
