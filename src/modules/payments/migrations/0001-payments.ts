/**
 * Payments: one row per payment attempt with its provider's reference and amounts, its refunds,
 * the webhook events already processed (so a redelivered event is applied once), and the ledger of
 * the built-in test gateway, which stands in for an external processor's own records.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table payments (
      id text primary key,
      cart_id text not null,
      order_id text,
      provider text not null,
      status text not null default 'pending' check (status in (
        'pending', 'requires_action', 'authorized', 'captured', 'partially_refunded',
        'refunded', 'canceled', 'failed', 'awaiting_transfer')),
      currency_code text not null,
      amount bigint not null check (amount > 0),
      captured_amount bigint not null default 0 check (captured_amount >= 0),
      refunded_amount bigint not null default 0 check (refunded_amount >= 0),
      provider_ref text,
      payment_method text,
      card_fingerprint text,
      next_action jsonb,
      failure_code text,
      failure_message text,
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      check (refunded_amount <= captured_amount and captured_amount <= amount)
    )`.execute(db)
  await sql`create index payments_cart on payments (cart_id)`.execute(db)
  await sql`create index payments_order on payments (order_id)`.execute(db)
  await sql`create unique index payments_provider_ref on payments (provider, provider_ref)`.execute(db)

  await sql`
    create table payment_refunds (
      id text primary key,
      payment_id text not null references payments (id),
      amount bigint not null check (amount > 0),
      reason text,
      provider_ref text,
      status text not null check (status in ('succeeded', 'pending', 'failed')),
      -- The caller's key: a retried refund finds its first attempt instead of refunding twice.
      idempotency_key text not null,
      actor text not null,
      created_at timestamptz not null default now()
    )`.execute(db)
  await sql`
    create unique index payment_refunds_payment_key on payment_refunds (payment_id, idempotency_key)
  `.execute(db)

  await sql`
    create table payment_webhook_events (
      provider text not null,
      event_id text not null,
      type text not null,
      received_at timestamptz not null default now(),
      primary key (provider, event_id)
    )`.execute(db)

  await sql`
    create table test_gateway_operations (
      idempotency_key text primary key,
      kind text not null check (kind in ('authorize', 'capture', 'refund', 'cancel')),
      charge_id text not null,
      amount bigint not null,
      currency_code text not null,
      outcome text not null,
      created_at timestamptz not null default now()
    )`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table test_gateway_operations`.execute(db)
  await sql`drop table payment_webhook_events`.execute(db)
  await sql`drop table payment_refunds`.execute(db)
  await sql`drop table payments`.execute(db)
}
