/**
 * The one read behind every cart change: the cart row, with the currency and tax basis its region
 * has now, and for each variant it holds (plus the ones being added) the product facts, the
 * shopper's price in that currency (base price or the best price list for the cart's customer
 * groups, now), purchase limits and what the shopper already bought of it or is buying in another
 * checkout, and the chosen shipping option. One statement, one round trip.
 */
import { type RawBuilder, sql } from 'kysely'
import { PREPARE_MARK } from '../../platform/db/statements.ts'
import type { Queryable } from '../../platform/db/transaction.ts'
import { shopperPrice } from '../catalog/pricing.ts'

const prepared = sql.raw(PREPARE_MARK)

import type { ShippingOptionRow } from './shipping.ts'
import type { Address, CartLine, CartStatus } from './tables.ts'

export interface CartRow {
  id: string
  status: CartStatus
  region_id: string
  currency_code: string
  prices_include_tax: boolean
  customer_id: string | null
  email: string | null
  shipping_address: Address | null
  billing_address: Address | null
  vat_id: string | null
  is_business: boolean
  shipping_option_id: string | null
  promo_codes: string[]
  lines: CartLine[]
  totals: Record<string, unknown>
  version: number
  payment_id: string | null
  reservation_id: string | null
  checkout: Record<string, unknown> | null
  checkout_lease_until: Date | null
  order_id: string | null
  metadata: Record<string, unknown>
  created_at: Date
  updated_at: Date
}

/** A variant as the cart sees it now. */
export interface VariantFacts {
  id: string
  product_id: string
  sku: string
  title: string
  product_title: string
  product_status: string
  tax_category: string
  weight_g: number | null
  manage_inventory: boolean
  requires_shipping: boolean
  /** Null when the variant has no price in the cart's currency (not sold in the region). */
  price: { amount: number; compare_at_amount: number | null; price_list_id: string | null } | null
  max_per_line: number | null
  max_per_customer: number | null
  /**
   * Units of it in the shopper's orders that were not cancelled and in their other carts being
   * checked out: see shopperIdentity for whose they are.
   */
  bought: number
}

export interface LoadedCart {
  /**
   * The cart without its stored totals (every change computes them afresh): `totals` is empty.
   * Its `currency_code` and `prices_include_tax` are its region's now, which every change and
   * checkout price it on: staff may have changed them since the cart was last priced.
   */
  cart: CartRow
  /**
   * The currency and tax basis the cart was last priced on, as stored with it: not the cart's
   * when staff changed the region's since. The next change reprices and stores the region's.
   */
  pricedOn: { currency_code: string; prices_include_tax: boolean }
  /** The email of the account of the cart's customer (lower case); null for a guest. */
  accountEmail: string | null
  variants: Map<string, VariantFacts>
  /**
   * The chosen shipping option while the cart's region still offers it: null once it is deleted or
   * moved to another region, whose prices are in another currency.
   */
  shippingOption: ShippingOptionRow | null
  /** Countries of the cart's region. */
  regionCountries: string[]
  /**
   * The total stored with the cart at its last change: what the shopper was shown. Read as one
   * number, not the whole totals document, which no change needs. Null when that pricing was on
   * another currency or tax basis than the region's now: such a total was never shown on the
   * cart's basis, so checkout refuses the cart as changed (409 cart_changed) and saves it repriced.
   */
  shownTotal: number | null
}

interface RawVariant {
  id: string
  product_id: string
  sku: string
  title: string
  product_title: string
  product_status: string
  tax_category: string
  weight_g: number | null
  manage_inventory: boolean
  requires_shipping: boolean
  amount: number | null
  compare_at_amount: number | null
  list_amount: number | null
  price_list_id: string | null
  max_per_line: number | null
  max_per_customer: number | null
  bought: number | null
}

/** Loads a cart and what its lines need; undefined when there is no such cart. */
export async function loadCart(
  db: Queryable,
  cartId: string,
  extraVariantIds: readonly string[] = [],
  options: {
    forUpdate?: boolean
    /** Count a guest's purchases under this email, not the cart's: for the change that sets it. */
    email?: string | null
    /**
     * Price and count purchases for this customer, not the cart's: for the change that gives a
     * guest cart to the customer who signs in (group prices, per-customer limits).
     */
    customerId?: string
  } = {},
): Promise<LoadedCart | undefined> {
  const lock = options.forUpdate ? sql`for update of c` : sql``
  // Parameters only for those changes: the statement of every other change stays as it is.
  const email = options.email === undefined ? sql`c.email` : sql`${options.email}::text`
  const customer = options.customerId === undefined ? sql`c.customer_id` : sql`${options.customerId}::text`
  // Every cart change runs this statement: kept prepared, it is parsed and planned once per connection.
  const { rows } = await sql<
    CartRow & {
      priced_currency_code: string
      priced_prices_include_tax: boolean
      account_email: string | null
      shown_total: string | number | null
      variants: RawVariant[]
      shipping_option: ShippingOptionRow | null
      countries: string[]
    }
  >`
    ${prepared} select c.id, c.status, c.region_id, r.currency_code, r.prices_include_tax,
      c.currency_code as priced_currency_code, c.prices_include_tax as priced_prices_include_tax,
      c.customer_id, (select lower(a.email) from customers a where a.id = ${customer}) as account_email,
      c.email, c.shipping_address, c.billing_address, c.vat_id, c.is_business, c.shipping_option_id,
      c.promo_codes, c.lines, '{}'::jsonb as totals, (c.totals ->> 'total')::bigint as shown_total, c.version, c.payment_id, c.reservation_id, c.checkout,
      c.checkout_lease_until, c.order_id, c.metadata, c.created_at, c.updated_at,
      coalesce((
        select json_agg(x) from (
          select v.id, v.product_id, v.sku, v.title, p.title as product_title, p.status as product_status,
            p.tax_category, v.weight_g, v.manage_inventory, v.requires_shipping, vp.amount, vp.compare_at_amount,
            best.amount as list_amount, best.price_list_id, lim.max_per_line, lim.max_per_customer,
            case when lim.max_per_customer is not null then (
              select (
                select coalesce(sum(ol.quantity), 0) from order_lines ol join orders o on o.id = ol.order_id
                where ol.variant_id = v.id and o.status <> 'canceled'
                  and (o.customer_id = any(who.customer_ids) or lower(o.email) = any(who.emails))
              ) + (
                -- The shopper's other checkouts under way (waiting on the processor or on 3-D
                -- Secure) have no order yet, but their lines are frozen and about to become one.
                select coalesce(sum((l ->> 'quantity')::bigint), 0)
                from carts o, jsonb_array_elements(o.lines) l
                where o.status = 'completing' and o.id <> c.id and l ->> 'variant_id' = v.id
                  and (o.customer_id = any(who.customer_ids) or o.email = any(who.emails))
              )
              from (${shopperIdentity(customer, email)}) who
            ) else 0 end as bought
          from (
            select l ->> 'variant_id' as id from jsonb_array_elements(c.lines) l
            union select unnest(${extraVariantIds as string[]}::text[])
          ) wanted
          join product_variants v on v.id = wanted.id
          join products p on p.id = v.product_id
          left join variant_prices vp on vp.variant_id = v.id and vp.currency_code = r.currency_code
          left join lateral (
            select plp.amount, plp.price_list_id
            from price_list_prices plp join price_lists pl on pl.id = plp.price_list_id
            where plp.variant_id = v.id and plp.currency_code = r.currency_code
              and pl.status = 'active'
              and (pl.starts_at is null or pl.starts_at <= now())
              and (pl.ends_at is null or pl.ends_at > now())
              and (pl.customer_group_id is null or pl.customer_group_id in (
                select m.group_id from customer_group_members m where m.customer_id = ${customer}))
            order by plp.amount, plp.price_list_id limit 1
          ) best on true
          left join purchase_limits lim on lim.variant_id = v.id
        ) x
      ), '[]'::json) as variants,
      (select row_to_json(so) from shipping_options so
        where so.id = c.shipping_option_id and so.region_id = c.region_id) as shipping_option,
      array(select rc.country_code from region_countries rc where rc.region_id = c.region_id order by 1) as countries
    from carts c join regions r on r.id = c.region_id where c.id = ${cartId} ${lock}`.execute(db)
  const row = rows[0]
  if (!row) return undefined
  const {
    variants,
    shipping_option,
    countries,
    shown_total,
    priced_currency_code,
    priced_prices_include_tax,
    account_email,
    ...cart
  } = row
  const pricedOn = { currency_code: priced_currency_code, prices_include_tax: priced_prices_include_tax }
  const facts = new Map<string, VariantFacts>()
  for (const v of variants) {
    const price = shopperPrice(
      {
        currency: cart.currency_code,
        includesTax: cart.prices_include_tax,
        customerGroupIds: [],
        at: new Date(),
      },
      v.amount === null ? null : { amount: Number(v.amount), compare_at_amount: num(v.compare_at_amount) },
      v.list_amount === null || v.price_list_id === null
        ? null
        : { amount: Number(v.list_amount), price_list_id: v.price_list_id, base_amount: num(v.amount) },
    )
    facts.set(v.id, {
      id: v.id,
      product_id: v.product_id,
      sku: v.sku,
      title: v.title,
      product_title: v.product_title,
      product_status: v.product_status,
      tax_category: v.tax_category,
      weight_g: v.weight_g,
      manage_inventory: v.manage_inventory,
      requires_shipping: v.requires_shipping,
      price: price
        ? {
            amount: price.amount,
            compare_at_amount: price.compare_at_amount,
            price_list_id: price.price_list_id,
          }
        : null,
      max_per_line: v.max_per_line,
      max_per_customer: v.max_per_customer,
      bought: Number(v.bought ?? 0),
    })
  }
  const shippingOption = shipping_option
    ? {
        ...shipping_option,
        amount: num(shipping_option.amount),
        free_above_amount: num(shipping_option.free_above_amount),
      }
    : null
  return {
    cart: { ...cart, version: Number(cart.version) },
    pricedOn,
    accountEmail: account_email,
    variants: facts,
    shippingOption,
    regionCountries: countries,
    shownTotal: regionChanged({ cart, pricedOn }) ? null : num(shown_total),
  }
}

/** Whether the cart was last priced on another currency or tax basis than its region's now. */
export function regionChanged(loaded: Pick<LoadedCart, 'cart' | 'pricedOn'>): boolean {
  return (
    loaded.cart.currency_code !== loaded.pricedOn.currency_code ||
    loaded.cart.prices_include_tax !== loaded.pricedOn.prices_include_tax
  )
}

/**
 * Whose purchases count against a per-customer limit, as one row of `customer_ids` and `emails`:
 * the cart's customer, the cart's email, the email of that customer's account, and the account
 * any of those emails belongs to. A shopper is one whether they buy signed in or as a guest under
 * their account's email, so each way counts the other's orders and checkouts. `customer` and
 * `email` are SQL for the cart's (or a change's) customer id and email.
 */
export function shopperIdentity(customer: RawBuilder<unknown>, email: RawBuilder<unknown>) {
  return sql`
    select em.emails, array(
      select ${customer}::text where ${customer} is not null
      union select a.id from customers a where lower(a.email) = any(em.emails)
    ) as customer_ids
    from (select array_remove(array[lower(${email}),
      (select lower(a.email) from customers a where a.id = ${customer})], null) as emails) em`
}

function num(value: number | string | null): number | null {
  return value === null ? null : Number(value)
}
