/**
 * Orders: the order with its copied lines and totals (an order never changes when the catalog
 * does), every status transition with actor and time, staff notes, and the counter that gives
 * each order a gapless human number.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table order_sequences (
      name text primary key,
      next_value bigint not null check (next_value > 0)
    )`.execute(db)
  await sql`insert into order_sequences (name, next_value) values ('orders', 1001)`.execute(db)

  await sql`
    create table orders (
      id text primary key,
      -- Given last in the placing transaction (null only inside it): see placeOrder.
      number bigint unique,
      -- One order per cart, whatever retries or recoveries do.
      cart_id text not null unique,
      status text not null check (status in ('pending', 'paid', 'processing', 'partially_fulfilled',
        'fulfilled', 'completed', 'canceled', 'refunded', 'partially_refunded')),
      payment_status text not null,
      fulfillment_status text not null default 'not_fulfilled',
      customer_id text references customers (id) on delete set null,
      email text not null,
      region_id text not null,
      currency_code text not null,
      prices_include_tax boolean not null,
      shipping_address jsonb not null,
      billing_address jsonb,
      shipping_method jsonb,
      subtotal bigint not null,
      discount_total bigint not null,
      shipping_total bigint not null,
      tax_total bigint not null,
      total bigint not null,
      refunded_total bigint not null default 0,
      taxes jsonb not null default '[]',
      tax_provider text,
      reservation_id text,
      payment_id text,
      promo_codes text[] not null default '{}',
      metadata jsonb not null default '{}',
      placed_at timestamptz not null default now(),
      canceled_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)
  await sql`create index orders_customer on orders (customer_id, id desc)`.execute(db)
  await sql`create index orders_email on orders (lower(email))`.execute(db)
  await sql`create index orders_status on orders (status, id desc)`.execute(db)

  await sql`
    create table order_lines (
      id text primary key,
      order_id text not null references orders (id) on delete cascade,
      position integer not null,
      variant_id text not null,
      product_id text not null,
      sku text not null,
      title text not null,
      product_title text not null,
      quantity integer not null check (quantity > 0),
      unit_amount bigint not null,
      subtotal bigint not null,
      discount_amount bigint not null default 0,
      tax_amount bigint not null,
      total bigint not null,
      taxes jsonb not null default '[]',
      tax_category text not null,
      fulfilled_quantity integer not null default 0,
      refunded_quantity integer not null default 0,
      refunded_amount bigint not null default 0
    )`.execute(db)
  await sql`create index order_lines_order on order_lines (order_id, position)`.execute(db)
  await sql`create index order_lines_variant on order_lines (variant_id)`.execute(db)

  await sql`
    create table order_transitions (
      id text primary key,
      order_id text not null references orders (id) on delete cascade,
      from_status text,
      to_status text not null,
      actor text not null,
      reason text,
      created_at timestamptz not null default now()
    )`.execute(db)
  await sql`create index order_transitions_order on order_transitions (order_id, id)`.execute(db)

  await sql`
    create table order_notes (
      id text primary key,
      order_id text not null references orders (id) on delete cascade,
      author text not null,
      body text not null,
      created_at timestamptz not null default now()
    )`.execute(db)
  await sql`create index order_notes_order on order_notes (order_id, id)`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table order_notes`.execute(db)
  await sql`drop table order_transitions`.execute(db)
  await sql`drop table order_lines`.execute(db)
  await sql`drop table orders`.execute(db)
  await sql`drop table order_sequences`.execute(db)
}
