/**
 * List prices of variants with no base price in their currency no longer count (shopperPrice), so
 * the list's read model drops them: the rows of every product with such a list price are written
 * again as refreshPriceReadModel now writes them. Products without one are left alone.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  // The same set in both statements: the first only deletes read-model rows, which it does not read.
  const affected = sql`
    select v.product_id from price_list_prices plp
    join product_variants v on v.id = plp.variant_id
    where not exists (
      select 1 from variant_prices vp
      where vp.variant_id = plp.variant_id and vp.currency_code = plp.currency_code)`
  await sql`delete from price_list_product_prices where product_id in (${affected})`.execute(db)
  await sql`
    insert into price_list_product_prices (price_list_id, product_id, currency_code, min_amount, base_amount)
    select distinct on (plp.price_list_id, v.product_id, plp.currency_code)
      plp.price_list_id, v.product_id, plp.currency_code, plp.amount,
      greatest(vp.amount, vp.compare_at_amount)
    from price_list_prices plp
    join product_variants v on v.id = plp.variant_id
    join variant_prices vp on vp.variant_id = plp.variant_id and vp.currency_code = plp.currency_code
    where v.product_id in (${affected})
    order by plp.price_list_id, v.product_id, plp.currency_code, plp.amount,
      greatest(vp.amount, vp.compare_at_amount) desc`.execute(db)
}

/** The dropped rows described prices nobody could pay: nothing to put back. */
export async function down(): Promise<void> {}
