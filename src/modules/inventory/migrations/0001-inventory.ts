/**
 * Inventory: stock locations, levels per variant and location, per-variant selling policy,
 * reservations with their lines, and the append-only movements ledger that every level change
 * writes to (so a level always equals the sum of its movements).
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table stock_locations (
      id text primary key,
      code text not null unique,
      name text not null,
      -- Lower numbers are tried first.
      priority integer not null default 100,
      country_code text not null check (country_code ~ '^[A-Z]{2}$'),
      address jsonb not null default '{}',
      -- Countries this location ships to; empty means everywhere.
      ships_to text[] not null default '{}',
      active boolean not null default true,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)

  await sql`
    create table inventory_levels (
      variant_id text not null references product_variants (id) on delete cascade,
      location_id text not null references stock_locations (id) on delete restrict,
      on_hand bigint not null default 0 check (on_hand >= 0),
      reserved bigint not null default 0 check (reserved >= 0),
      safety_stock bigint not null default 0 check (safety_stock >= 0),
      low_stock_threshold bigint check (low_stock_threshold >= 0),
      updated_at timestamptz not null default now(),
      primary key (variant_id, location_id)
    )`.execute(db)
  await sql`create index inventory_levels_location on inventory_levels (location_id, variant_id)`.execute(db)

  await sql`
    create table inventory_policies (
      variant_id text primary key references product_variants (id) on delete cascade,
      allow_backorder boolean not null default false,
      preorder boolean not null default false,
      -- Units that may be promised beyond sellable stock, across locations; null is no limit.
      backorder_limit bigint check (backorder_limit >= 0),
      preorder_available_at timestamptz,
      updated_at timestamptz not null default now()
    )`.execute(db)

  await sql`
    create table inventory_reservations (
      id text primary key,
      reference text not null,
      status text not null default 'active'
        check (status in ('active', 'committed', 'released', 'expired')),
      expires_at timestamptz,
      country_code text,
      strategy text not null,
      created_by text not null,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)
  // The expiry job reads only due active reservations.
  await sql`
    create index inventory_reservations_due on inventory_reservations (expires_at)
    where status = 'active'`.execute(db)
  await sql`create index inventory_reservations_reference on inventory_reservations (reference)`.execute(db)

  await sql`
    create table inventory_reservation_lines (
      id text primary key,
      reservation_id text not null references inventory_reservations (id) on delete cascade,
      variant_id text not null,
      location_id text not null,
      quantity bigint not null check (quantity > 0),
      backordered bigint not null default 0 check (backordered >= 0 and backordered <= quantity),
      -- To the level, not to the variant and location: its row is already locked by this
      -- transaction, whereas a key-share lock on a popular variant or the one warehouse, taken
      -- by every concurrent reservation, would pile up multixacts on the hottest rows.
      foreign key (variant_id, location_id) references inventory_levels (variant_id, location_id)
        on delete cascade
    )`.execute(db)
  await sql`create index inventory_reservation_lines_reservation on inventory_reservation_lines (reservation_id)`.execute(
    db,
  )
  await sql`create index inventory_reservation_lines_level on inventory_reservation_lines (variant_id, location_id)`.execute(
    db,
  )

  // No foreign key to variants: the ledger outlives a deleted variant, and an append-only table
  // cannot take part in a cascading delete.
  await sql`
    create table inventory_movements (
      id text primary key,
      operation_id text not null,
      variant_id text not null,
      location_id text not null,
      kind text not null check (kind in
        ('receipt', 'adjustment', 'transfer', 'sale', 'return', 'cycle_count', 'reservation', 'release')),
      on_hand_delta bigint not null,
      reserved_delta bigint not null,
      reason text,
      reference text,
      reservation_id text,
      actor text not null,
      created_at timestamptz not null default now()
    )`.execute(db)
  await sql`create index inventory_movements_variant on inventory_movements (variant_id, id)`.execute(db)
  await sql`create index inventory_movements_location on inventory_movements (location_id, id)`.execute(db)
  await sql`create index inventory_movements_reference on inventory_movements (reference) where reference is not null`.execute(
    db,
  )
  await sql`
    create function inventory_movements_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'inventory_movements is append-only' using errcode = 'insufficient_privilege';
    end $$`.execute(db)
  await sql`
    create trigger inventory_movements_append_only before update or delete on inventory_movements
    for each row execute function inventory_movements_append_only()`.execute(db)
  await sql`
    create trigger inventory_movements_no_truncate before truncate on inventory_movements
    for each statement execute function inventory_movements_append_only()`.execute(db)
  // The single-line fast path as one function: PL/pgSQL keeps the plans of its statements per
  // connection, where the same work sent as one big statement was planned again on every call
  // (most of its cost). Conditional UPDATE first, then the rows that record it; see locks.ts.
  await sql`
    create function inventory_reserve_one(
      p_reservation_id text, p_line_id text, p_movement_id text, p_reference text,
      p_expires_at timestamptz, p_country text, p_strategy text, p_actor text,
      p_variant_id text, p_quantity bigint, p_allow_crossing boolean)
    returns table (location_id text, on_hand bigint, reserved bigint, safety_stock bigint,
      low_stock_threshold bigint, created_at timestamptz)
    language plpgsql as $$
    #variable_conflict use_column
    declare
      v_location text;
      v_level inventory_levels%rowtype;
      v_created timestamptz;
    begin
      select l.location_id into v_location
      from inventory_levels l
      join stock_locations s on s.id = l.location_id and s.active
      where l.variant_id = p_variant_id
        and l.on_hand - l.reserved - l.safety_stock >= p_quantity
        and (p_country is null or cardinality(s.ships_to) = 0 or p_country = any (s.ships_to))
        and exists (select 1 from product_variants v where v.id = p_variant_id and v.manage_inventory)
      order by (p_strategy = 'nearest' and p_country is not null and s.country_code <> p_country),
        s.priority, s.id
      limit 1;
      if v_location is null then return; end if;

      update inventory_levels l
      set reserved = l.reserved + p_quantity, updated_at = now()
      where l.variant_id = p_variant_id and l.location_id = v_location
        and l.on_hand - l.reserved - l.safety_stock >= p_quantity
        and (p_allow_crossing or l.low_stock_threshold is null
          or l.on_hand - l.reserved <= l.low_stock_threshold
          or l.on_hand - l.reserved - p_quantity > l.low_stock_threshold)
      returning l.* into v_level;
      if not found then return; end if;

      insert into inventory_reservations (id, reference, expires_at, country_code, strategy, created_by)
      values (p_reservation_id, p_reference, p_expires_at, p_country, p_strategy, p_actor)
      returning inventory_reservations.created_at into v_created;
      insert into inventory_reservation_lines (id, reservation_id, variant_id, location_id, quantity)
      values (p_line_id, p_reservation_id, p_variant_id, v_location, p_quantity);
      insert into inventory_movements (id, operation_id, variant_id, location_id, kind, on_hand_delta,
        reserved_delta, reference, reservation_id, actor)
      values (p_movement_id, p_reservation_id, p_variant_id, v_location, 'reservation', 0, p_quantity,
        p_reference, p_reservation_id, p_actor);
      return query select v_location, v_level.on_hand, v_level.reserved, v_level.safety_stock,
        v_level.low_stock_threshold, v_created;
    end $$`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function inventory_reserve_one`.execute(db)
  await sql`drop table inventory_movements`.execute(db)
  await sql`drop function inventory_movements_append_only()`.execute(db)
  await sql`drop table inventory_reservation_lines`.execute(db)
  await sql`drop table inventory_reservations`.execute(db)
  await sql`drop table inventory_policies`.execute(db)
  await sql`drop table inventory_levels`.execute(db)
  await sql`drop table stock_locations`.execute(db)
}
