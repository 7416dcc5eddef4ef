/**
 * Orders already counted in products' sales counts: the count follows `order.placed`, which is
 * delivered at least once, so each order is counted through this table exactly once.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create table product_sales_counted (
    order_id text primary key,
    counted_at timestamptz not null default now()
  )`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table product_sales_counted`.execute(db)
}
