/**
 * Rewrites what each price-list row of the list's read model compares its sale price with: the
 * higher of that variant's base and compare-at prices, where rows written before held its base
 * price alone (see refreshPriceReadModel). Rows already right are left alone.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    update price_list_product_prices lp set base_amount = x.reference
    from (
      select distinct on (plp.price_list_id, v.product_id, plp.currency_code)
        plp.price_list_id, v.product_id, plp.currency_code,
        greatest(vp.amount, vp.compare_at_amount) as reference
      from price_list_prices plp
      join product_variants v on v.id = plp.variant_id
      left join variant_prices vp on vp.variant_id = plp.variant_id and vp.currency_code = plp.currency_code
      order by plp.price_list_id, v.product_id, plp.currency_code, plp.amount,
        greatest(vp.amount, vp.compare_at_amount) desc nulls last
    ) x
    where lp.price_list_id = x.price_list_id and lp.product_id = x.product_id
      and lp.currency_code = x.currency_code and lp.base_amount is distinct from x.reference`.execute(db)
}

/** Base prices alone would only show smaller savings: nothing to undo. */
export async function down(): Promise<void> {}
