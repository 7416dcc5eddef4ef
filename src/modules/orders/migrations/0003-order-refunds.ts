/**
 * Order refunds reserved before the money moves: a refund's units and amount are taken from what
 * remains of the order under the order's row lock, so two refunds of the same last units cannot
 * both pass, and released again if the processor refuses the refund.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table order_refunds (
      id text primary key,
      order_id text not null references orders (id) on delete cascade,
      -- The payment refund's key: a retry under the same Idempotency-Key finds this reservation.
      refund_key text not null,
      amount bigint not null check (amount > 0),
      shipping_amount bigint not null default 0 check (shipping_amount >= 0),
      -- [{ line_id, quantity, amount }]
      lines jsonb not null default '[]',
      reason text,
      -- pending: reserved, money not yet booked on the order; booked; void: refused or abandoned
      -- before any money moved; failed: the processor failed it after accepting it.
      status text not null default 'pending' check (status in ('pending', 'booked', 'void', 'failed')),
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      unique (order_id, refund_key)
    )`.execute(db)
  await sql`create index order_refunds_pending on order_refunds (order_id) where status = 'pending'`.execute(
    db,
  )
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table order_refunds`.execute(db)
}
