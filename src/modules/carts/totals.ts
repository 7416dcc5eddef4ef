/**
 * Cart totals: every line re-priced from the catalog, discounts from the promotions seam, the
 * shipping option's price, and tax from the store's tax provider, combined so that they always add
 * up: the total is the sum of line totals and shipping, and the tax shown is the sum of line taxes.
 * Until the cart has a destination (or its region has one country, whose tax does not depend on
 * the state) tax cannot be known: totals then say `tax_pending` rather than show a tax of 0.
 */

import { ProblemError, problem } from '../../platform/http/errors.ts'
import type { TaxLine, TaxResult, TaxSummaryLine } from '../tax/engine.ts'
import type { TaxProviderCache } from '../tax/provider-cache.ts'
import type { LoadedCart } from './load.ts'
import type { CartDiscounts, PromotionEngine } from './promotions.ts'
import { type ParcelFacts, quoteShipping } from './shipping.ts'
import type { CartLine } from './tables.ts'

export interface LineTotals {
  id: string
  subtotal: number
  discount_amount: number
  tax_amount: number
  total: number
  taxes: TaxLine[]
}

export interface CartTotals {
  item_count: number
  /** Items before discounts, on the region's price basis (with tax where prices include it). */
  subtotal: number
  discount_total: number
  shipping_total: number
  tax_total: number
  total: number
  tax_pending: boolean
  lines: LineTotals[]
  shipping: {
    option_id: string
    name: string
    tax_category: string
    amount: number
    discount_amount: number
    tax_amount: number
    total: number
    taxes: TaxLine[]
  } | null
  taxes: TaxSummaryLine[]
  tax_provider: string | null
  tax_notes: string[]
  date_of_supply: string
}

/**
 * The most a cart's amounts may come to, in minor units: every figure must be exact in a double.
 * Past it the sums drift by a unit and the payment's capture, which takes only safe integers,
 * refuses the order's total. A sum of non-negative safe integers that stays within it is exact, so
 * checking the subtotal and the total checks every line and the shipping too.
 */
export const MAX_CART_AMOUNT = Number.MAX_SAFE_INTEGER

/** Refuses a cart whose subtotal or total would pass MAX_CART_AMOUNT. */
function checkAmount(field: 'subtotal' | 'total', amount: number): void {
  if (amount <= MAX_CART_AMOUNT) return
  const message = `must be at most ${MAX_CART_AMOUNT}`
  throw problem('cart_invalid', `The cart's ${field} would pass ${MAX_CART_AMOUNT}, the most it can charge`, {
    errors: [{ path: `totals.${field}`, message }],
  })
}

export interface TotalsDeps {
  taxes: TaxProviderCache
  promotions: PromotionEngine
}

/** Today in UTC, the date of supply for carts (the store's calendar is UTC). */
export function today(): string {
  return new Date().toISOString().slice(0, 10)
}

/** Whether the line goes in a parcel (lines stored before the flag existed do). */
export function isShipped(line: CartLine): boolean {
  return line.requires_shipping !== false
}

/** Whether any line must be shipped: a cart of downloads or gift codes needs no shipping. */
export function needsShipping(lines: readonly CartLine[]): boolean {
  return lines.some(isShipped)
}

/**
 * The address tax is computed for. Shipped goods are taxed where they go, so only the shipping
 * address counts for them: the billing address may be anywhere. Goods not shipped are taxed
 * where the buyer is: the shipping address if given, else the billing address.
 */
export function taxAddress(cart: LoadedCart['cart'], lines: readonly CartLine[] = cart.lines) {
  return needsShipping(lines) ? cart.shipping_address : (cart.shipping_address ?? cart.billing_address)
}

/**
 * The country tax is computed for: the tax address's, while the region serves it (checkout refuses
 * one it does not), or with no address yet a single-country region's.
 */
function taxCountry(
  regionCountries: readonly string[],
  address: ReturnType<typeof taxAddress>,
): string | null {
  if (address) return regionCountries.includes(address.country_code) ? address.country_code : null
  return regionCountries.length === 1 ? regionCountries[0]! : null
}

/** The items' subtotal before discounts (all of them) and the weight in grams of those shipped. */
function parcelOf(lines: readonly CartLine[]): { subtotal: number; weight_g: number } {
  let subtotal = 0
  let weight = 0
  for (const l of lines) {
    subtotal += l.unit_amount * l.quantity
    if (isShipped(l)) weight += (l.weight_g ?? 0) * l.quantity
  }
  return { subtotal, weight_g: weight }
}

/**
 * What shipping is priced on for these lines of the cart: their weight, their subtotal after
 * discounts (for free-shipping thresholds), the cart's currency and where it goes. The cart's
 * totals and its list of shipping options quote the same parcel, so the list offers an option at
 * the price the cart would have with it.
 */
export function shippingParcel(
  cart: LoadedCart['cart'],
  lines: readonly CartLine[],
  discounts: CartDiscounts,
): ParcelFacts {
  const { subtotal, weight_g } = parcelOf(lines)
  const lineDiscounts = lines.reduce((sum, l) => sum + (discounts.lines.get(l.id) ?? 0), 0)
  const address = cart.shipping_address
  return {
    currency: cart.currency_code,
    weight_g,
    subtotal: subtotal - lineDiscounts - discounts.order,
    destination: address
      ? { country_code: address.country_code, postal_code: address.postal_code, region: address.region }
      : null,
  }
}

/** Computes the totals of these lines in this cart; throws the 4xx the tax engine or shipping raise. */
export async function computeTotals(
  loaded: LoadedCart,
  lines: readonly CartLine[],
  deps: TotalsDeps,
): Promise<CartTotals> {
  const { cart } = loaded
  // A chosen option is ignored while nothing in the cart is shipped.
  const shippingOption = needsShipping(lines) ? loaded.shippingOption : null
  const discounts = deps.promotions.discountsFor(cart.promo_codes, lines, cart.currency_code)
  const { subtotal } = parcelOf(lines)
  checkAmount('subtotal', subtotal)
  const address = taxAddress(cart, lines)
  let shippingAmount = 0
  if (shippingOption) {
    shippingAmount = await quoteShipping(shippingOption, shippingParcel(cart, lines, discounts))
  }
  const date = today()
  const country = taxCountry(loaded.regionCountries, address)
  const base: CartTotals = {
    item_count: lines.reduce((sum, l) => sum + l.quantity, 0),
    subtotal,
    discount_total: 0,
    shipping_total: shippingAmount,
    tax_total: 0,
    total: 0,
    tax_pending: true,
    lines: [],
    shipping: null,
    taxes: [],
    tax_provider: null,
    tax_notes: [],
    date_of_supply: date,
  }
  if (country === null || lines.length === 0) return untaxed(base, lines, discounts, shippingOption)
  const provider = await deps.taxes.get(date)
  let result: TaxResult
  try {
    result = await provider.calculate({
      currency: cart.currency_code,
      prices_include_tax: cart.prices_include_tax,
      date_of_supply: date,
      customer: {
        address: { country, region: address?.region, postal_code: address?.postal_code },
        ...(cart.vat_id ? { vat_id: cart.vat_id } : {}),
        is_business: cart.is_business,
      },
      lines: lines.map((l) => ({
        id: l.id,
        unit_amount: l.unit_amount,
        quantity: l.quantity,
        tax_category: l.tax_category,
        discount_amount: discounts.lines.get(l.id) ?? 0,
      })),
      ...(shippingOption
        ? {
            shipping: {
              amount: shippingAmount,
              tax_category: shippingOption.tax_category,
              discount_amount: discounts.shipping,
            },
          }
        : {}),
      discount_amount: discounts.order,
    })
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error
    // The engine names its own input; the shopper can only fix the cart's VAT id or address.
    if (error.code === 'invalid_vat_id')
      throw problem(error.code, error.detail, {
        errors: (error.errors ?? []).map((e) => ({ ...e, path: 'vat_id' })),
      })
    if (error.code !== 'unknown_region') throw error
    // The region's only country stands in for an address not given yet, but where its tax depends
    // on the state (US sales tax where the store has nexus) the tax waits for the address.
    if (!address) return untaxed(base, lines, discounts, shippingOption)
    const field = cart.shipping_address ? 'shipping_address' : 'billing_address'
    throw problem(error.code, error.detail, {
      errors: (error.errors ?? []).map((e) => ({ ...e, path: `${field}.region` })),
    })
  }
  checkAmount('total', result.totals.gross)
  const items = result.lines.filter((l) => l.kind === 'item')
  const ship = result.lines.find((l) => l.kind === 'shipping')
  return {
    ...base,
    discount_total: result.totals.discount,
    tax_total: result.totals.tax,
    total: result.totals.gross,
    tax_pending: false,
    lines: items.map((l) => ({
      id: l.id,
      subtotal: l.amount,
      discount_amount: l.discount_amount,
      tax_amount: l.tax_amount,
      total: l.gross_amount,
      taxes: l.taxes,
    })),
    shipping:
      shippingOption && ship
        ? shippingView(
            shippingOption,
            ship.amount,
            ship.discount_amount,
            ship.tax_amount,
            ship.taxes,
            ship.gross_amount,
          )
        : null,
    taxes: result.taxes,
    tax_provider: result.provider,
    tax_notes: result.notes,
  }
}

/**
 * The totals with no tax computed, pending while the cart has lines: each line carries its price
 * and discount, and the total is the items less discounts plus shipping.
 */
function untaxed(
  base: CartTotals,
  lines: readonly CartLine[],
  discounts: CartDiscounts,
  shippingOption: { id: string; name: string; tax_category: string } | null,
): CartTotals {
  const out: CartTotals = { ...base }
  out.lines = lines.map((l) => {
    const amount = l.unit_amount * l.quantity
    const discount = Math.min(amount, discounts.lines.get(l.id) ?? 0)
    return {
      id: l.id,
      subtotal: amount,
      discount_amount: discount,
      tax_amount: 0,
      total: amount - discount,
      taxes: [],
    }
  })
  out.discount_total = out.lines.reduce((sum, l) => sum + l.discount_amount, 0)
  out.shipping = shippingOption ? shippingView(shippingOption, base.shipping_total, 0, 0, []) : null
  out.total = base.subtotal - out.discount_total + base.shipping_total
  checkAmount('total', out.total)
  out.tax_pending = lines.length > 0
  return out
}

function shippingView(
  option: { id: string; name: string; tax_category: string },
  amount: number,
  discount: number,
  tax: number,
  taxes: TaxLine[],
  total = amount - discount,
): NonNullable<CartTotals['shipping']> {
  return {
    option_id: option.id,
    name: option.name,
    tax_category: option.tax_category,
    amount,
    discount_amount: discount,
    tax_amount: tax,
    total,
    taxes,
  }
}
