/**
 * Cart totals always add up (property test over the real tax engine and data): for random lines,
 * prices, quantities, tax categories, discounts, shipping and destinations, in regions with and
 * without tax in their prices, the total is the sum of the line totals and shipping, the tax is
 * the sum of the line taxes, and the total follows from subtotal, discounts, shipping and tax.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { LoadedCart } from '../src/modules/carts/load.ts'
import type { PromotionEngine } from '../src/modules/carts/promotions.ts'
import type { ShippingOptionRow } from '../src/modules/carts/shipping.ts'
import type { CartLine } from '../src/modules/carts/tables.ts'
import { computeTotals } from '../src/modules/carts/totals.ts'
import { TaxProviderCache } from '../src/modules/tax/provider-cache.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'

const destinations = [
  { country_code: 'DE' },
  { country_code: 'FR' },
  { country_code: 'GB' },
  { country_code: 'CA', region: 'QC' },
  { country_code: 'AU' },
  { country_code: 'US', region: 'CA', postal_code: '94105' },
  { country_code: 'JP' },
]
const categories = ['standard', 'reduced', 'zero', 'books', 'food', 'exempt']

describe('cart totals (property)', () => {
  let node: TestNode
  let taxes: TaxProviderCache

  beforeAll(async () => {
    node = await startTestNode('pglite')
    const res = await node.app.inject({
      method: 'PATCH',
      url: '/admin/tax/settings',
      headers: adminAuth,
      payload: { origin_country: 'DE' },
    })
    expect(res.statusCode, res.body).toBe(200)
    taxes = new TaxProviderCache(node.runtime.database.db)
  })
  afterAll(() => node?.close())

  const line = fc.record({
    unit_amount: fc.integer({ min: 1, max: 2_000_000 }),
    quantity: fc.integer({ min: 1, max: 50 }),
    tax_category: fc.constantFrom(...categories),
    weight_g: fc.option(fc.integer({ min: 1, max: 20_000 }), { nil: null }),
    discount: fc.integer({ min: 0, max: 100 }),
  })

  it('adds up in every region, currency, destination and discount', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { minLength: 1, maxLength: 20 }),
        fc.boolean(),
        fc.constantFrom('EUR', 'USD', 'JPY', 'GBP'),
        fc.constantFrom(...destinations),
        fc.option(
          fc.record({
            amount: fc.integer({ min: 0, max: 5000 }),
            free: fc.option(fc.integer({ min: 1, max: 500_000 }), { nil: null }),
          }),
          { nil: null },
        ),
        fc.integer({ min: 0, max: 50_000 }),
        async (specs, inclusive, currency, destination, shipping, orderDiscount) => {
          const lines: CartLine[] = specs.map((s, i) => ({
            id: `cali_${i}`,
            variant_id: `var_${i}`,
            product_id: 'prod_1',
            sku: `SKU-${i}`,
            title: `Line ${i}`,
            product_title: 'Product',
            quantity: s.quantity,
            unit_amount: s.unit_amount,
            compare_at_amount: null,
            price_list_id: null,
            tax_category: s.tax_category,
            weight_g: s.weight_g,
            manage_inventory: true,
          }))
          const subtotal = lines.reduce((sum, l) => sum + l.unit_amount * l.quantity, 0)
          // Line discounts of up to the whole line; an order discount within what is left.
          const lineDiscounts = new Map(
            lines.map((l, i) => [l.id, Math.floor((l.unit_amount * l.quantity * specs[i]!.discount) / 100)]),
          )
          const left = subtotal - [...lineDiscounts.values()].reduce((a, b) => a + b, 0)
          const promotions: PromotionEngine = {
            async validateCode() {},
            discountsFor: () => ({ lines: lineDiscounts, order: Math.min(orderDiscount, left), shipping: 0 }),
          }
          const option = shipping
            ? ({
                id: 'so_1',
                region_id: 'reg_1',
                name: 'Flat',
                price_type: 'flat',
                amount: shipping.amount,
                tiers: [],
                free_above_amount: shipping.free,
                tax_category: 'standard',
                provider: null,
                active: true,
                metadata: {},
                created_at: new Date(),
                updated_at: new Date(),
              } as ShippingOptionRow)
            : null
          const loaded = {
            cart: {
              currency_code: currency,
              prices_include_tax: inclusive,
              promo_codes: ['X'],
              shipping_address: { line1: 'x', city: 'y', ...destination },
              vat_id: null,
              is_business: false,
            },
            variants: new Map(),
            shippingOption: option,
            regionCountries: [destination.country_code],
          } as unknown as LoadedCart
          const t = await computeTotals(loaded, lines, { taxes, promotions })
          const lineTotals = t.lines.reduce((sum, l) => sum + l.total, 0)
          const lineTax = t.lines.reduce((sum, l) => sum + l.tax_amount, 0)
          for (const value of [t.subtotal, t.discount_total, t.shipping_total, t.tax_total, t.total]) {
            expect(Number.isSafeInteger(value)).toBe(true)
            expect(value).toBeGreaterThanOrEqual(0)
          }
          expect(t.subtotal).toBe(subtotal)
          expect(t.total).toBe(lineTotals + (t.shipping?.total ?? 0))
          expect(t.tax_total).toBe(lineTax + (t.shipping?.tax_amount ?? 0))
          expect(t.tax_total).toBe(t.taxes.reduce((sum, x) => sum + x.tax_amount, 0))
          const before = t.subtotal - t.discount_total + t.shipping_total
          expect(t.total).toBe(inclusive ? before : before + t.tax_total)
        },
      ),
      { numRuns: 150 },
    )
  })
})
