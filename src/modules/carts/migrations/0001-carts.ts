/**
 * Carts: one row per cart with its lines and last computed totals as documents, so that reading a
 * cart is one row and adding to it is one read and one write. Shipping options per region and
 * purchase limits per variant belong here too: both decide what a cart may hold and cost.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table carts (
      id text primary key,
      -- active: being filled; completing: checkout under way (stock reserved, payment started);
      -- completed: an order exists; merged: folded into the customer's cart on sign-in; expired.
      status text not null default 'active'
        check (status in ('active', 'completing', 'completed', 'merged', 'expired')),
      region_id text not null references regions (id) on delete restrict,
      currency_code text not null,
      prices_include_tax boolean not null,
      customer_id text references customers (id) on delete set null,
      email text,
      shipping_address jsonb,
      billing_address jsonb,
      -- A business buyer's VAT id: with a valid one in another EU state the sale is reverse-charged.
      vat_id text,
      is_business boolean not null default false,
      shipping_option_id text,
      promo_codes text[] not null default '{}',
      lines jsonb not null default '[]',
      totals jsonb not null default '{}',
      -- Bumped by every write: writers compare and set it, so two concurrent updates cannot lose one.
      version integer not null default 1,
      -- Checkout state: the payment and reservation it started, and until when a request holds it.
      payment_id text,
      reservation_id text,
      checkout jsonb,
      checkout_lease_until timestamptz,
      order_id text,
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)
  await sql`create index carts_customer on carts (customer_id) where status = 'active'`.execute(db)
  await sql`create index carts_status_updated on carts (status, updated_at)`.execute(db)

  await sql`
    create table shipping_options (
      id text primary key,
      region_id text not null references regions (id) on delete cascade,
      name text not null,
      -- flat: amount; weight: the first tier whose max_weight_g holds the cart; calculated: a carrier.
      price_type text not null check (price_type in ('flat', 'weight', 'calculated')),
      amount bigint check (amount >= 0),
      tiers jsonb not null default '[]',
      -- Free when the cart's item subtotal (after discounts) reaches this amount.
      free_above_amount bigint check (free_above_amount >= 0),
      tax_category text not null default 'standard',
      provider text,
      active boolean not null default true,
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)
  await sql`create index shipping_options_region on shipping_options (region_id)`.execute(db)

  await sql`
    create table purchase_limits (
      variant_id text primary key references product_variants (id) on delete cascade,
      max_per_line integer check (max_per_line > 0),
      -- Across the customer's orders that were not cancelled, plus the cart.
      max_per_customer integer check (max_per_customer > 0),
      updated_at timestamptz not null default now()
    )`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table purchase_limits`.execute(db)
  await sql`drop table shipping_options`.execute(db)
  await sql`drop table carts`.execute(db)
}
