/**
 * Prices a shopper sees. A variant has a base price per currency (with an optional compare-at
 * price); price lists add sale or customer-group prices valid between two moments. The shopper
 * pays the lowest price among the base and every list that applies to them now; when a list wins,
 * the base price becomes the compare-at price, so the storefront can show the saving.
 */
import { type RawBuilder, sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'

/** Who is looking and when: decides which price lists apply. */
export interface PricingContext {
  currency: string
  includesTax: boolean
  customerGroupIds: readonly string[]
  at: Date
}

export interface ShopperPrice {
  amount: number
  currency: string
  compare_at_amount: number | null
  includes_tax: boolean
  price_list_id: string | null
}

/** SQL condition: the price list aliased `pl` applies to this context. */
export function activeListSql(context: Pick<PricingContext, 'customerGroupIds' | 'at'>): RawBuilder<boolean> {
  const groups = context.customerGroupIds as string[]
  return sql<boolean>`(pl.status = 'active'
    and (pl.starts_at is null or pl.starts_at <= ${context.at})
    and (pl.ends_at is null or pl.ends_at > ${context.at})
    and (pl.customer_group_id is null or pl.customer_group_id = any(${groups}::text[])))`
}

/**
 * Combines a base price and the best list price into what the shopper sees. `list.base_amount` is
 * what the list price's own variant costs without the list: null when that variant has no base
 * price in the currency, and then the list price is ignored. A price list changes the price of a
 * variant sold in a currency; it does not put it on sale there, or the product page and the cart
 * would sell what the region's list and search (which go by base prices) never show.
 */
export function shopperPrice(
  context: PricingContext,
  base: { amount: number; compare_at_amount: number | null } | null,
  list: { amount: number; price_list_id: string; base_amount: number | null } | null,
): ShopperPrice | null {
  const common = { currency: context.currency, includes_tax: context.includesTax }
  if (list && list.base_amount !== null && (!base || list.amount < base.amount)) {
    const reference = Math.max(list.base_amount ?? 0, base?.compare_at_amount ?? 0, base?.amount ?? 0)
    return {
      ...common,
      amount: list.amount,
      compare_at_amount: reference > list.amount ? reference : null,
      price_list_id: list.price_list_id,
    }
  }
  if (!base) return null
  return {
    ...common,
    amount: base.amount,
    compare_at_amount:
      base.compare_at_amount !== null && base.compare_at_amount > base.amount ? base.compare_at_amount : null,
    price_list_id: null,
  }
}

/** Resolved prices for variants in the context's currency; variants without a price are absent. */
export async function resolveVariantPrices(
  db: Queryable,
  variantIds: readonly string[],
  context: PricingContext,
): Promise<Map<string, ShopperPrice>> {
  if (variantIds.length === 0) return new Map()
  const { rows } = await sql<{
    variant_id: string
    amount: number | null
    compare_at_amount: number | null
    list_amount: number | null
    price_list_id: string | null
  }>`
    select v.id as variant_id, vp.amount, vp.compare_at_amount, best.amount as list_amount, best.price_list_id
    from product_variants v
    left join variant_prices vp on vp.variant_id = v.id and vp.currency_code = ${context.currency}
    left join lateral (
      select plp.amount, plp.price_list_id
      from price_list_prices plp join price_lists pl on pl.id = plp.price_list_id
      where plp.variant_id = v.id and plp.currency_code = ${context.currency} and ${activeListSql(context)}
      order by plp.amount, plp.price_list_id limit 1
    ) best on true
    where v.id = any(${variantIds as string[]})`.execute(db)
  const result = new Map<string, ShopperPrice>()
  for (const row of rows) {
    const price = shopperPrice(
      context,
      row.amount === null
        ? null
        : { amount: Number(row.amount), compare_at_amount: numberOrNull(row.compare_at_amount) },
      row.list_amount === null || row.price_list_id === null
        ? null
        : {
            amount: Number(row.list_amount),
            price_list_id: row.price_list_id,
            base_amount: numberOrNull(row.amount),
          },
    )
    if (price) result.set(row.variant_id, price)
  }
  return result
}

export function numberOrNull(value: number | string | null): number | null {
  return value === null ? null : Number(value)
}

/**
 * Rewrites the price read models (product_prices, price_list_product_prices) of these products.
 * List prices of variants with no base price in their currency are left out, as shopperPrice
 * ignores them.
 * A list's row keeps, as base_amount, what its cheapest variant's sale price is compared with (the
 * higher of that variant's base and compare-at prices): the list then shows a saving taken from
 * the variant the "from" price belongs to, as the product page does, never from another one.
 * Locks the product rows first, in id order, so two writers of one product queue rather than
 * collide on the read model's keys.
 */
export async function refreshPriceReadModel(trx: Tx, productIds: readonly string[]): Promise<void> {
  if (productIds.length === 0) return
  const ids = [...productIds].sort()
  await sql`select id from products where id = any(${ids}) order by id for update`.execute(trx)
  await sql`delete from product_prices where product_id = any(${ids})`.execute(trx)
  await sql`
    insert into product_prices (product_id, currency_code, min_amount, min_compare_at_amount, max_amount)
    select distinct on (v.product_id, vp.currency_code)
      v.product_id, vp.currency_code, vp.amount, vp.compare_at_amount,
      max(vp.amount) over (partition by v.product_id, vp.currency_code)
    from product_variants v join variant_prices vp on vp.variant_id = v.id
    where v.product_id = any(${ids})
    order by v.product_id, vp.currency_code, vp.amount, vp.compare_at_amount desc nulls last`.execute(trx)
  await sql`delete from price_list_product_prices where product_id = any(${ids})`.execute(trx)
  await sql`
    insert into price_list_product_prices (price_list_id, product_id, currency_code, min_amount, base_amount)
    select distinct on (plp.price_list_id, v.product_id, plp.currency_code)
      plp.price_list_id, v.product_id, plp.currency_code, plp.amount,
      greatest(vp.amount, vp.compare_at_amount)
    from price_list_prices plp
    join product_variants v on v.id = plp.variant_id
    join variant_prices vp on vp.variant_id = plp.variant_id and vp.currency_code = plp.currency_code
    where v.product_id = any(${ids})
    order by plp.price_list_id, v.product_id, plp.currency_code, plp.amount,
      greatest(vp.amount, vp.compare_at_amount) desc`.execute(trx)
}
