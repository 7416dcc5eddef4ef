/**
 * inventory_reserve_batch: many single-line reservations of one variant in one statement, so that
 * concurrent shoppers of a hot SKU on a node share one lock of its level row instead of queueing on
 * it one by one (see coalesce.ts). Each request is granted or declined on its own, in the order
 * given, with exactly the rule of inventory_reserve_one: the first location in the strategy's
 * order whose sellable stock covers the quantity, declined when that would cross the level's
 * low-stock threshold (the locking path then writes the alert in its transaction).
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function inventory_reserve_batch(
      p_variant_id text, p_country text, p_strategy text,
      p_reservation_ids text[], p_line_ids text[], p_movement_ids text[], p_references text[],
      p_expires_at timestamptz[], p_actors text[], p_quantities bigint[])
    returns table (idx integer, location_id text, created_at timestamptz)
    language plpgsql as $$
    #variable_conflict use_column
    declare
      v_locations text[];
      v_sellable bigint[];
      v_available bigint[];
      v_threshold bigint[];
      v_taken bigint[];
      v_choice text[] := array_fill(null::text, array[cardinality(p_quantities)]);
      v_pick integer;
      v_q bigint;
      v_avail bigint;
      v_updated integer;
    begin
      if not exists (select 1 from product_variants v where v.id = p_variant_id and v.manage_inventory) then
        return;
      end if;
      -- Lock the candidate levels in key order (as every multi-row writer does, so no cycle of
      -- waits), then read them in the strategy's order: this statement sees the locked versions.
      perform 1 from inventory_levels l
      join stock_locations s on s.id = l.location_id and s.active
      where l.variant_id = p_variant_id
        and (p_country is null or cardinality(s.ships_to) = 0 or p_country = any (s.ships_to))
      order by l.location_id
      for update of l;
      select array_agg(c.location_id order by c.ord), array_agg(c.sellable order by c.ord),
        array_agg(c.available order by c.ord), array_agg(c.low_stock_threshold order by c.ord)
      into v_locations, v_sellable, v_available, v_threshold
      from (
        select l.location_id, l.on_hand - l.reserved - l.safety_stock as sellable,
          l.on_hand - l.reserved as available, l.low_stock_threshold,
          row_number() over (order by (p_strategy = 'nearest' and p_country is not null
            and s.country_code <> p_country), s.priority, s.id) as ord
        from inventory_levels l
        join stock_locations s on s.id = l.location_id and s.active
        where l.variant_id = p_variant_id
          and (p_country is null or cardinality(s.ships_to) = 0 or p_country = any (s.ships_to))
      ) c;
      if v_locations is null then return; end if;
      v_taken := array_fill(0::bigint, array[cardinality(v_locations)]);

      for i in 1 .. cardinality(p_quantities) loop
        v_q := p_quantities[i];
        v_pick := null;
        for j in 1 .. cardinality(v_locations) loop
          if v_sellable[j] - v_taken[j] >= v_q then v_pick := j; exit; end if;
        end loop;
        continue when v_pick is null;
        v_avail := v_available[v_pick] - v_taken[v_pick];
        continue when v_threshold[v_pick] is not null and v_avail > v_threshold[v_pick]
          and v_avail - v_q <= v_threshold[v_pick];
        v_taken[v_pick] := v_taken[v_pick] + v_q;
        v_choice[i] := v_locations[v_pick];
      end loop;

      -- The stock check again, on the locked rows: a level made (or a location activated) between
      -- the lock and the read above was read unlocked. Any row it fails rolls the batch back, and
      -- every request in it takes the locking path alone.
      update inventory_levels l
      set reserved = l.reserved + t.taken, updated_at = now()
      from unnest(v_locations, v_taken) as t (location_id, taken)
      where l.variant_id = p_variant_id and l.location_id = t.location_id and t.taken > 0
        and l.on_hand - l.reserved - l.safety_stock >= t.taken;
      get diagnostics v_updated = row_count;
      if v_updated <> (select count(*) from unnest(v_taken) as x (taken) where x.taken > 0) then
        raise exception 'inventory_reserve_batch: stock changed under the batch'
          using errcode = 'serialization_failure';
      end if;

      insert into inventory_reservations (id, reference, expires_at, country_code, strategy, created_by)
      select p_reservation_ids[i], p_references[i], p_expires_at[i], p_country, p_strategy, p_actors[i]
      from generate_subscripts(p_quantities, 1) as i where v_choice[i] is not null;
      insert into inventory_reservation_lines (id, reservation_id, variant_id, location_id, quantity)
      select p_line_ids[i], p_reservation_ids[i], p_variant_id, v_choice[i], p_quantities[i]
      from generate_subscripts(p_quantities, 1) as i where v_choice[i] is not null;
      insert into inventory_movements (id, operation_id, variant_id, location_id, kind, on_hand_delta,
        reserved_delta, reference, reservation_id, actor)
      select p_movement_ids[i], p_reservation_ids[i], p_variant_id, v_choice[i], 'reservation', 0,
        p_quantities[i], p_references[i], p_reservation_ids[i], p_actors[i]
      from generate_subscripts(p_quantities, 1) as i where v_choice[i] is not null;

      return query select i, v_choice[i], now()
      from generate_subscripts(p_quantities, 1) as i where v_choice[i] is not null;
    end $$`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function inventory_reserve_batch`.execute(db)
}
