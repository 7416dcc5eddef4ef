/**
 * Storefront availability for the catalog's read path. Counts are summed over active locations
 * (those shipping to `country` when one is given); a variant the catalog does not track is always
 * in stock, and one whose policy allows backorder or preorder is in stock while it has room.
 */
import { type RawBuilder, sql } from 'kysely'
import type { Queryable } from '../../platform/db/transaction.ts'

export interface VariantAvailability {
  in_stock: boolean
  /**
   * Units that can be sold now (sellable stock, plus remaining backorder room when limited); null
   * when the variant is untracked or may be backordered without limit, or when counts were not
   * asked for (`exactCounts: false`, for storefronts that should not reveal stock figures).
   */
  available: number | null
  backorder: boolean
  preorder: boolean
}

/**
 * Availability of each variant id given (unknown ids come back as out of stock with 0 available).
 */
export async function variantAvailability(
  db: Queryable,
  variantIds: readonly string[],
  options: { country?: string | null; exactCounts?: boolean } = {},
): Promise<Map<string, VariantAvailability>> {
  const result = new Map<string, VariantAvailability>()
  const ids = [...new Set(variantIds)]
  if (ids.length === 0) return result
  const country = options.country ?? null
  const { rows } = await sql<{
    id: string
    manage_inventory: boolean | null
    sellable: number
    promised: number
    allow_backorder: boolean | null
    preorder: boolean | null
    backorder_limit: number | null
  }>`
    select i.id, v.manage_inventory, coalesce(s.sellable, 0)::bigint as sellable,
      coalesce(s.promised, 0)::bigint as promised, p.allow_backorder, p.preorder, p.backorder_limit
    from unnest(${ids}::text[]) as i (id)
    left join product_variants v on v.id = i.id
    left join inventory_policies p on p.variant_id = i.id
    left join lateral (
      select sum(greatest(l.on_hand - l.reserved - l.safety_stock, 0)) as sellable,
        sum(greatest(l.reserved - greatest(l.on_hand - l.safety_stock, 0), 0)) as promised
      from inventory_levels l
      join stock_locations loc on loc.id = l.location_id and loc.active
      where l.variant_id = i.id
        and (${country}::text is null or cardinality(loc.ships_to) = 0 or ${country}::text = any (loc.ships_to))
    ) s on true`.execute(db)
  for (const row of rows) {
    const backorder = Boolean(row.allow_backorder)
    const preorder = Boolean(row.preorder)
    let available: number | null
    if (row.manage_inventory === null) available = 0
    else if (!row.manage_inventory) available = null
    else if (backorder || preorder)
      available =
        row.backorder_limit === null ? null : row.sellable + Math.max(0, row.backorder_limit - row.promised)
    else available = row.sellable
    result.set(row.id, {
      in_stock: row.manage_inventory !== null && (available === null || available > 0),
      available: options.exactCounts === false ? null : available,
      backorder,
      preorder,
    })
  }
  return result
}

/**
 * A SQL boolean that is true when the `product_variants` row under `alias` (say `'v'`) can be sold
 * now: untracked, sellable stock at an active location, or backorder/preorder room left. Taken from
 * the row in hand, so a page of variants costs no second look-up of each. For the catalog's "in
 * stock only" filter and the product page's availability. Its own aliases start with `in_stock_`
 * so that they do not hide the caller's.
 */
export function inStockSql(alias: string): RawBuilder<boolean> {
  const id = sql.ref(`${alias}.id`)
  return sql<boolean>`(
    not ${sql.ref(`${alias}.manage_inventory`)}
    or exists (
      select 1 from inventory_levels in_stock_l
      join stock_locations in_stock_loc on in_stock_loc.id = in_stock_l.location_id and in_stock_loc.active
      where in_stock_l.variant_id = ${id} and in_stock_l.on_hand - in_stock_l.reserved - in_stock_l.safety_stock > 0)
    or exists (
      select 1 from inventory_policies in_stock_p
      where in_stock_p.variant_id = ${id} and (in_stock_p.allow_backorder or in_stock_p.preorder)
        and (in_stock_p.backorder_limit is null or in_stock_p.backorder_limit > (
          select coalesce(sum(greatest(in_stock_l2.reserved - greatest(in_stock_l2.on_hand - in_stock_l2.safety_stock, 0), 0)), 0)
          from inventory_levels in_stock_l2 where in_stock_l2.variant_id = ${id})))
  )`
}
