/**
 * Properties of the engine over random carts: tax-inclusive → net → gross round-trips within one
 * minor unit per line, and the figures always add up (lines to totals, rates to totals, net plus
 * tax to gross), whatever the rounding rule, currency or mix of rates.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { calculateTax, type TaxInput } from './engine.ts'
import type { StoreTaxContext } from './place-of-supply.ts'
import { buildTaxData, rowsFromFile, type TaxData } from './tax-data.ts'

function dataWith(rounding: 'line' | 'invoice'): TaxData {
  const rows = rowsFromFile()
  rows.jurisdictions = rows.jurisdictions.map((j) => ({ ...j, rounding }))
  return buildTaxData(rows)
}
const DATA = { line: dataWith('line'), invoice: dataWith('invoice') }

/** Markets a store sells in at home, each with its currency. */
const MARKETS: Array<{ country: string; region?: string; currency: string }> = [
  { country: 'DE', currency: 'EUR' },
  { country: 'FR', currency: 'EUR' },
  { country: 'GB', currency: 'GBP' },
  { country: 'AU', currency: 'AUD' },
  { country: 'JP', currency: 'JPY' },
  { country: 'CA', region: 'QC', currency: 'CAD' },
  { country: 'CA', region: 'ON', currency: 'CAD' },
  { country: 'US', region: 'CA', currency: 'USD' },
  { country: 'CH', currency: 'CHF' },
  { country: 'IE', currency: 'EUR' },
]
const CATEGORIES = [
  'standard',
  'reduced',
  'super_reduced',
  'food',
  'books',
  'zero',
  'exempt',
  'childrens_clothing',
]

function storeIn(m: (typeof MARKETS)[number]): StoreTaxContext {
  return {
    origin: { country: m.country, region: m.region },
    registrations: [],
    oss_opt_in: false,
    eu_distance_sales_eur: { current_year: 0, previous_year: 0 },
  }
}

const line = fc.record({
  unit_amount: fc.integer({ min: 0, max: 5_000_000 }),
  quantity: fc.integer({ min: 1, max: 20 }),
  tax_category: fc.constantFrom(...CATEGORIES),
  discount_percent: fc.integer({ min: 0, max: 100 }),
})

const cartArb = fc.record({
  market: fc.constantFrom(...MARKETS),
  lines: fc.array(line, { minLength: 1, maxLength: 30 }),
  inclusive: fc.boolean(),
  rounding: fc.constantFrom('line' as const, 'invoice' as const),
  shipping: fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: undefined }),
  date: fc.constantFrom('2024-06-30', '2025-01-01', '2025-08-01', '2026-03-15'),
})

type Cart = typeof cartArb extends fc.Arbitrary<infer T> ? T : never

function inputOf(c: Cart): TaxInput {
  return {
    currency: c.market.currency,
    prices_include_tax: c.inclusive,
    date_of_supply: c.date,
    customer: { address: { country: c.market.country, region: c.market.region } },
    lines: c.lines.map((l) => ({
      unit_amount: l.unit_amount,
      quantity: l.quantity,
      tax_category: l.tax_category,
      discount_amount: Math.floor((l.unit_amount * l.quantity * l.discount_percent) / 100),
    })),
    ...(c.shipping !== undefined ? { shipping: { amount: c.shipping } } : {}),
  }
}

describe('tax engine properties', () => {
  it('totals always add up: lines to totals, rates to totals, net + tax = gross', () => {
    fc.assert(
      fc.property(cartArb, (c) => {
        const input = inputOf(c)
        const result = calculateTax(DATA[c.rounding], storeIn(c.market), input)
        let tax = 0
        for (const l of result.lines) {
          expect(l.net_amount + l.tax_amount).toBe(l.gross_amount)
          expect(l.taxes.reduce((a, t) => a + t.tax_amount, 0)).toBe(l.tax_amount)
          expect(l.tax_amount).toBeGreaterThanOrEqual(0)
          expect(l.amount - l.discount_amount).toBe(c.inclusive ? l.gross_amount : l.net_amount)
          tax += l.tax_amount
        }
        expect(result.totals.tax).toBe(tax)
        expect(result.taxes.reduce((a, t) => a + t.tax_amount, 0)).toBe(tax)
        expect(result.totals.net + result.totals.tax).toBe(result.totals.gross)
        for (const summary of result.taxes) {
          const onLines = result.lines.flatMap((l) =>
            l.taxes.filter((t) => t.jurisdiction === summary.jurisdiction && t.label === summary.label),
          )
          expect(onLines.reduce((a, t) => a + t.taxable_amount, 0)).toBe(summary.taxable_amount)
        }
      }),
      { numRuns: 400 },
    )
  })

  it('tax-inclusive → net → gross round-trips within one minor unit per line (per-line rounding)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...MARKETS.filter((m) => m.country !== 'CA')),
        fc.array(fc.integer({ min: 0, max: 10_000_000 }), { minLength: 1, maxLength: 50 }),
        fc.constantFrom('standard', 'reduced', 'food'),
        (market, prices, category) => {
          const base = {
            currency: market.currency,
            date_of_supply: '2025-09-01',
            customer: { address: { country: market.country, region: market.region } },
          }
          const inclusive = calculateTax(DATA.line, storeIn(market), {
            ...base,
            prices_include_tax: true,
            lines: prices.map((p) => ({ unit_amount: p, quantity: 1, tax_category: category })),
          })
          const exclusive = calculateTax(DATA.line, storeIn(market), {
            ...base,
            prices_include_tax: false,
            lines: inclusive.lines.map((l) => ({
              unit_amount: l.net_amount,
              quantity: 1,
              tax_category: category,
            })),
          })
          exclusive.lines.forEach((l, i) => {
            expect(Math.abs(l.gross_amount - prices[i]!)).toBeLessThanOrEqual(1)
          })
        },
      ),
      { numRuns: 300 },
    )
  })

  it('with per-invoice rounding the cart total round-trips within one minor unit', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...MARKETS.filter((m) => m.country !== 'CA')),
        fc.array(fc.integer({ min: 0, max: 10_000_000 }), { minLength: 1, maxLength: 50 }),
        (market, prices) => {
          const base = {
            currency: market.currency,
            date_of_supply: '2025-09-01',
            customer: { address: { country: market.country, region: market.region } },
          }
          const inclusive = calculateTax(DATA.invoice, storeIn(market), {
            ...base,
            prices_include_tax: true,
            lines: prices.map((p) => ({ unit_amount: p, quantity: 1, tax_category: 'standard' })),
          })
          const exclusive = calculateTax(DATA.invoice, storeIn(market), {
            ...base,
            prices_include_tax: false,
            lines: [{ unit_amount: inclusive.totals.net, quantity: 1, tax_category: 'standard' }],
          })
          expect(Math.abs(exclusive.totals.gross - inclusive.totals.gross)).toBeLessThanOrEqual(1)
        },
      ),
      { numRuns: 300 },
    )
  })
})
