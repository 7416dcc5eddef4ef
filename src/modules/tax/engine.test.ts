/**
 * The built-in engine against worked examples with known answers: each figure below can be checked
 * by hand from the rate and the rounding rule the jurisdiction uses.
 */
import { describe, expect, it } from 'vitest'
import { ProblemError } from '../../platform/http/errors.ts'
import { calculateTax, type TaxInput, type TaxLineInput } from './engine.ts'
import {
  EU_EXPORT_NOTE,
  INTRA_EU_GOODS_NOTE,
  REVERSE_CHARGE_NOTE,
  type StoreTaxContext,
} from './place-of-supply.ts'
import { buildTaxData, rowsFromFile, type TaxData, taxDataFromFile } from './tax-data.ts'

const data = taxDataFromFile()

function store(country: string, extra: Partial<StoreTaxContext> = {}): StoreTaxContext {
  return {
    origin: { country },
    registrations: [],
    oss_opt_in: false,
    eu_distance_sales_eur: { current_year: 0, previous_year: 0 },
    ...extra,
  }
}

function cart(country: string, lines: TaxLineInput[], extra: Partial<TaxInput> = {}): TaxInput {
  return {
    currency: 'EUR',
    prices_include_tax: false,
    date_of_supply: '2025-09-15',
    customer: { address: { country } },
    lines,
    ...extra,
  }
}

const item = (unit_amount: number, tax_category = 'standard', quantity = 1): TaxLineInput => ({
  unit_amount,
  quantity,
  tax_category,
})

function problemOf(fn: () => unknown): ProblemError {
  try {
    fn()
  } catch (error) {
    if (error instanceof ProblemError) return error
    throw error
  }
  throw new Error('expected a problem')
}

/** The same data with one jurisdiction's rounding rule changed. */
function withRounding(code: string, rounding: 'line' | 'invoice'): TaxData {
  const rows = rowsFromFile()
  rows.jurisdictions = rows.jurisdictions.map((j) => (j.code === code ? { ...j, rounding } : j))
  return buildTaxData(rows)
}

describe('tax engine: worked examples', () => {
  it('a GBP 12.00 tax-inclusive price carries GBP 2.00 VAT', () => {
    const result = calculateTax(
      data,
      store('GB'),
      cart('GB', [item(1200)], { currency: 'GBP', prices_include_tax: true }),
    )
    expect(result.totals).toMatchObject({ gross: 1200, net: 1000, tax: 200 })
    expect(result.lines[0]!.taxes).toEqual([
      expect.objectContaining({
        jurisdiction: 'GB',
        rate: '20',
        label: 'VAT 20%',
        taxable_amount: 1000,
        tax_amount: 200,
      }),
    ])
  })

  it('Australian GST is 1/11 of a GST-inclusive price, rounded half-up', () => {
    for (const [price, gst] of [
      [1100, 100],
      [999, 91], // 90.818…
      [1, 0], // 0.0909…
      [6, 1], // 0.5454…
      [16_500, 1500],
    ]) {
      const result = calculateTax(
        data,
        store('AU'),
        cart('AU', [item(price!)], { currency: 'AUD', prices_include_tax: true }),
      )
      expect(result.totals.tax, `GST in AUD ${price}`).toBe(gst)
      expect(result.totals.net + result.totals.tax).toBe(price)
    }
  })

  it('Quebec: GST 5% and QST 9.975%, both on the price before tax', () => {
    const result = calculateTax(
      data,
      store('CA', { origin: { country: 'CA', region: 'QC' } }),
      cart('CA', [item(10_000)], { currency: 'CAD', customer: { address: { country: 'CA', region: 'QC' } } }),
    )
    const [gst, qst] = result.lines[0]!.taxes
    expect(gst).toMatchObject({
      jurisdiction: 'CA',
      label: 'GST 5%',
      taxable_amount: 10_000,
      tax_amount: 500,
    })
    // 9.975% of 100.00 is 9.975, rounded half-up to 9.98; QST on GST would be 10.47.
    expect(qst).toMatchObject({
      jurisdiction: 'CA-QC',
      rate: '9.975',
      taxable_amount: 10_000,
      tax_amount: 998,
    })
    expect(result.totals).toMatchObject({ net: 10_000, tax: 1498, gross: 11_498 })
  })

  it('Quebec tax-inclusive: the combined 14.975% comes out first, then splits between GST and QST', () => {
    const result = calculateTax(
      data,
      store('CA', { origin: { country: 'CA', region: 'QC' } }),
      cart('CA', [item(11_498)], {
        currency: 'CAD',
        prices_include_tax: true,
        customer: { address: { country: 'CA', region: 'QC' } },
      }),
    )
    expect(result.totals).toMatchObject({ gross: 11_498, net: 10_000, tax: 1498 })
    expect(result.lines[0]!.taxes.map((t) => t.tax_amount)).toEqual([500, 998])
  })

  it('German B2C order from Austria below the OSS threshold bears Austrian VAT', () => {
    const below = store('AT', { eu_distance_sales_eur: { current_year: 500_000, previous_year: 800_000 } })
    const result = calculateTax(data, below, cart('DE', [item(10_000)]))
    expect(result.place_of_supply.goods).toMatchObject({ treatment: 'taxable', country: 'AT' })
    expect(result.taxes).toEqual([
      expect.objectContaining({ jurisdiction: 'AT', rate: '20', tax_amount: 2000 }),
    ])
  })

  it('German B2C order from Austria above the OSS threshold bears German VAT', () => {
    const above = store('AT', { eu_distance_sales_eur: { current_year: 1_200_000, previous_year: 0 } })
    const result = calculateTax(data, above, cart('DE', [item(10_000)]))
    expect(result.place_of_supply.goods).toMatchObject({ treatment: 'taxable', country: 'DE' })
    expect(result.taxes).toEqual([
      expect.objectContaining({ jurisdiction: 'DE', rate: '19', tax_amount: 1900 }),
    ])
    // Last year's sales count too, and so does opting in.
    const lastYear = store('AT', { eu_distance_sales_eur: { current_year: 0, previous_year: 1_000_001 } })
    expect(calculateTax(data, lastYear, cart('DE', [item(10_000)])).taxes[0]!.jurisdiction).toBe('DE')
    const optedIn = store('AT', { oss_opt_in: true })
    expect(calculateTax(data, optedIn, cart('DE', [item(10_000)])).taxes[0]!.jurisdiction).toBe('DE')
  })

  it('the sale that crosses EUR 10,000 is itself taxed at destination; reaching it exactly is not crossing', () => {
    const near = store('AT', { eu_distance_sales_eur: { current_year: 995_000, previous_year: 0 } })
    expect(calculateTax(data, near, cart('DE', [item(5000)])).taxes[0]!.jurisdiction).toBe('AT')
    expect(calculateTax(data, near, cart('DE', [item(5001)])).taxes[0]!.jurisdiction).toBe('DE')
  })

  it('a distance sale with no value in EUR is taxed at destination: below the threshold is unproven', () => {
    // The cart itself is priced in SEK: its value in EUR is known only once a return converts it.
    const sek = calculateTax(data, store('DE'), cart('SE', [item(10_000)], { currency: 'SEK' }))
    expect(sek.place_of_supply.goods).toMatchObject({ treatment: 'taxable', country: 'SE' })
    expect(sek.place_of_supply.goods?.reason).toContain('this cart is priced in another currency')
    expect(sek.taxes).toEqual([expect.objectContaining({ jurisdiction: 'SE', rate: '25', tax_amount: 2500 })])
    // A EUR cart, while recorded sales this year or last have no value in EUR.
    for (const unvalued of [
      { current_year: 1, previous_year: 0 },
      { current_year: 0, previous_year: 2 },
    ]) {
      const after = store('AT', { eu_distance_sales_unvalued: unvalued })
      const result = calculateTax(data, after, cart('DE', [item(10_000)]))
      expect(result.place_of_supply.goods?.country).toBe('DE')
      expect(result.place_of_supply.goods?.reason).toContain('priced in another currency')
    }
    // None: the EUR figures decide, as before.
    const none = store('AT', { eu_distance_sales_unvalued: { current_year: 0, previous_year: 0 } })
    expect(calculateTax(data, none, cart('DE', [item(10_000)])).place_of_supply.goods?.country).toBe('AT')
  })

  it('digital services are taxed where the customer is, whatever the threshold', () => {
    const result = calculateTax(data, store('AT'), cart('DE', [item(10_000), item(1000, 'digital_services')]))
    expect(result.place_of_supply.goods?.country).toBe('AT')
    expect(result.place_of_supply.digital_services?.country).toBe('DE')
    expect(result.lines.map((l) => l.taxes[0]!.jurisdiction)).toEqual(['AT', 'DE'])
    expect(result.lines.map((l) => l.tax_amount)).toEqual([2000, 190])
  })

  it('EU B2B with a valid VAT id in another member state is reverse-charged at 0% with the legal note', () => {
    const result = calculateTax(
      data,
      store('AT'),
      cart('DE', [item(10_000), item(5000, 'digital_services')], {
        customer: { address: { country: 'DE' }, vat_id: 'DE 136 695 976', is_business: true },
      }),
    )
    expect(result.totals).toMatchObject({ net: 15_000, tax: 0, gross: 15_000 })
    for (const line of result.lines) {
      expect(line.taxes).toEqual([
        expect.objectContaining({ treatment: 'reverse_charge', rate: '0', tax_amount: 0 }),
      ])
    }
    expect(result.notes).toContain(REVERSE_CHARGE_NOTE)
    expect(result.notes).toContain(INTRA_EU_GOODS_NOTE)
  })

  it('an EU B2B order with an invalid VAT id is refused, never taxed at a silent 0%', () => {
    const input = cart('DE', [item(10_000)], {
      customer: { address: { country: 'DE' }, vat_id: 'DE136695975', is_business: true },
    })
    const p = problemOf(() => calculateTax(data, store('AT'), input))
    expect(p.code).toBe('invalid_vat_id')
    expect(p.status).toBe(422)
    expect(p.errors).toEqual([{ path: 'body.customer.vat_id', message: 'fails its check digits' }])
    // A French number for a German address does not pass either.
    input.customer.vat_id = 'FR40303265045'
    expect(problemOf(() => calculateTax(data, store('AT'), input)).code).toBe('invalid_vat_id')
  })

  it('B2B inside the same member state is charged VAT as usual', () => {
    const result = calculateTax(
      data,
      store('DE'),
      cart('DE', [item(10_000)], {
        customer: { address: { country: 'DE' }, vat_id: 'DE136695976', is_business: true },
      }),
    )
    expect(result.totals.tax).toBe(1900)
  })

  it('US: sales tax in a state where the store has nexus, none (explicitly) where it has not', () => {
    const us = store('US', { origin: { country: 'US', region: 'NY' }, registrations: ['US-CA'] })
    const usd = (region: string) =>
      cart('US', [item(10_000)], { currency: 'USD', customer: { address: { country: 'US', region } } })
    const california = calculateTax(data, us, usd('CA'))
    expect(california.taxes).toEqual([
      expect.objectContaining({ jurisdiction: 'US-CA', rate: '7.25', tax_amount: 725 }),
    ])
    const newYork = calculateTax(data, us, usd('NY'))
    expect(newYork.totals.tax).toBe(400)
    const texas = calculateTax(data, us, usd('TX'))
    expect(texas.totals.tax).toBe(0)
    expect(texas.place_of_supply.goods?.treatment).toBe('no_nexus')
    expect(texas.lines[0]!.taxes).toEqual([
      expect.objectContaining({
        jurisdiction: 'US-TX',
        treatment: 'no_nexus',
        label: 'No sales tax: no nexus in Texas',
      }),
    ])
  })

  it('US local rates by ZIP prefix add to the state rate', () => {
    const rows = rowsFromFile()
    rows.rates.push({
      id: 'txr_local',
      jurisdiction: 'US-CA',
      kind: 'standard',
      rate_ppm: 25_000,
      label: 'Los Angeles County local 2.5%',
      valid_from: '2024-01-01',
      valid_to: null,
      postal_prefix: '900',
      source_name: 'test',
      source_url: 'https://example.test',
    })
    const withLocal = buildTaxData(rows)
    const us = store('US', { origin: { country: 'US', region: 'CA' } })
    const at = (postal_code: string) =>
      cart('US', [item(10_000)], {
        currency: 'USD',
        customer: { address: { country: 'US', region: 'CA', postal_code } },
      })
    expect(calculateTax(withLocal, us, at('90012')).totals.tax).toBe(975)
    expect(calculateTax(withLocal, us, at('94105')).totals.tax).toBe(725)
  })

  it('a rate change at midnight: the date of supply picks the rate', () => {
    const ro = (date: string) =>
      calculateTax(data, store('RO'), cart('RO', [item(10_000)], { currency: 'RON', date_of_supply: date }))
    expect(ro('2025-07-31').totals.tax).toBe(1900)
    expect(ro('2025-08-01').totals.tax).toBe(2100)
    const ee = (date: string) =>
      calculateTax(data, store('EE'), cart('EE', [item(10_000)], { date_of_supply: date }))
    expect(ee('2025-06-30').totals.tax).toBe(2200)
    expect(ee('2025-07-01').totals.tax).toBe(2400)
    const sk = (date: string) =>
      calculateTax(data, store('SK'), cart('SK', [item(10_000)], { date_of_supply: date }))
    expect([sk('2024-12-31').totals.tax, sk('2025-01-01').totals.tax]).toEqual([2000, 2300])
    const fi = (date: string) =>
      calculateTax(data, store('FI'), cart('FI', [item(10_000)], { date_of_supply: date }))
    expect([fi('2024-08-31').totals.tax, fi('2024-09-01').totals.tax]).toEqual([2400, 2550])
  })

  it('a 50-line cart: per-line and per-invoice rounding differ by a cent, each by its own rule', () => {
    // 48 lines of EUR 1.00 (VAT exactly 0.19) and 2 of EUR 0.50 (VAT 0.095 each).
    const lines = [...Array.from({ length: 48 }, () => item(100)), item(50), item(50)]
    const perLine = calculateTax(withRounding('DE', 'line'), store('DE'), cart('DE', lines))
    const perInvoice = calculateTax(withRounding('DE', 'invoice'), store('DE'), cart('DE', lines))
    // Per line: each 0.095 rounds up to 0.10, so 48 × 0.19 + 2 × 0.10 = 9.32.
    expect(perLine.lines.map((l) => l.tax_amount)).toEqual([...Array(48).fill(19), 10, 10])
    expect(perLine.totals.tax).toBe(932)
    // Per invoice: 19% of 49.00 is 9.31, rounded once.
    expect(perInvoice.totals.tax).toBe(931)
    expect(perInvoice.taxes).toEqual([
      expect.objectContaining({ taxable_amount: 4900, tax_amount: 931, rounding: 'invoice' }),
    ])
    // The lines still add up to the total shown.
    expect(perInvoice.lines.reduce((a, l) => a + l.tax_amount, 0)).toBe(931)
    expect(perLine.totals.tax - perInvoice.totals.tax).toBe(1)
  })

  it('discounts reduce the taxable amount, line by line and across the order', () => {
    const result = calculateTax(
      data,
      store('DE'),
      cart('DE', [{ ...item(5000, 'standard', 2), discount_amount: 2000 }, item(2000, 'books')], {
        discount_amount: 1000,
        shipping: { amount: 500 },
      }),
    )
    // Line 1: 100.00 − 20.00 = 80.00; order discount 10.00 split 80:20 → 8.00 and 2.00.
    expect(result.lines.map((l) => [l.net_amount, l.discount_amount, l.tax_amount])).toEqual([
      [7200, 2800, 1368],
      [1800, 200, 126],
      [500, 0, 95],
    ])
    expect(result.totals).toMatchObject({
      amount: 12_500,
      discount: 3000,
      net: 9500,
      tax: 1589,
      gross: 11_089,
    })
  })

  it('exports outside the EU are zero-rated with the legal note', () => {
    const result = calculateTax(data, store('DE'), cart('CH', [item(10_000)], { currency: 'CHF' }))
    expect(result.totals.tax).toBe(0)
    expect(result.lines[0]!.taxes[0]).toMatchObject({ treatment: 'export', jurisdiction: 'CH' })
    expect(result.notes).toEqual([EU_EXPORT_NOTE])
  })

  it('a store registered abroad charges that country’s tax: UK VAT from a German store', () => {
    const result = calculateTax(
      data,
      store('DE', { registrations: ['GB'] }),
      cart('GB', [item(10_000)], { currency: 'GBP' }),
    )
    expect(result.taxes[0]).toMatchObject({ jurisdiction: 'GB', tax_amount: 2000 })
  })

  it('Canada: HST replaces GST in Ontario; PST is charged only where the store is registered', () => {
    const ca = store('CA', { origin: { country: 'CA', region: 'ON' } })
    const to = (region: string) =>
      cart('CA', [item(10_000)], { currency: 'CAD', customer: { address: { country: 'CA', region } } })
    expect(calculateTax(data, ca, to('ON')).taxes).toEqual([
      expect.objectContaining({ label: 'HST 13%', tax_amount: 1300 }),
    ])
    expect(calculateTax(data, ca, to('BC')).taxes.map((t) => t.label)).toEqual(['GST 5%'])
    const registered = store('CA', { origin: { country: 'CA', region: 'ON' }, registrations: ['CA-BC'] })
    expect(calculateTax(data, registered, to('BC')).taxes.map((t) => [t.label, t.tax_amount])).toEqual([
      ['GST 5%', 500],
      ['PST 7%', 700],
    ])
    expect(calculateTax(data, ca, to('AB')).totals.tax).toBe(500)
  })

  it('categories map per jurisdiction: food, books and children’s clothing', () => {
    const gb = calculateTax(
      data,
      store('GB'),
      cart('GB', [item(1000, 'food'), item(1000, 'books'), item(1000, 'childrens_clothing'), item(1000)], {
        currency: 'GBP',
      }),
    )
    expect(gb.lines.map((l) => [l.taxes[0]!.treatment, l.tax_amount])).toEqual([
      ['zero_rated', 0],
      ['zero_rated', 0],
      ['zero_rated', 0],
      ['taxable', 200],
    ])
    const fr = calculateTax(data, store('FR'), cart('FR', [item(1000, 'food'), item(1000, 'super_reduced')]))
    expect(fr.lines.map((l) => l.taxes[0]!.rate)).toEqual(['5.5', '2.1'])
    // Denmark has no reduced rate: the generic category falls back to the standard rate, never to 0%.
    const dk = calculateTax(data, store('DK'), cart('DK', [item(1000, 'reduced')], { currency: 'DKK' }))
    expect(dk.lines[0]!.taxes[0]).toMatchObject({ rate_kind: 'standard', rate: '25' })
    const jp = calculateTax(
      data,
      store('JP'),
      cart('JP', [item(1080, 'food'), item(1100)], { currency: 'JPY', prices_include_tax: true }),
    )
    expect(jp.lines.map((l) => l.tax_amount)).toEqual([80, 100])
  })

  it('currencies with 0 and 3 decimals are taxed in their own minor unit', () => {
    // JPY: 10% of ¥999 is ¥99.9 → ¥100.
    const jpy = calculateTax(data, store('JP'), cart('JP', [item(999)], { currency: 'JPY' }))
    expect(jpy.totals.tax).toBe(100)
    // KWD (3 decimals): 20% UK VAT on 12.345 KWD = 2.469 KWD.
    const kwd = calculateTax(data, store('GB'), cart('GB', [item(12_345)], { currency: 'KWD' }))
    expect(kwd.totals.tax).toBe(2469)
    const working = calculateTax(data, store('GB'), cart('GB', [item(12_345)], { currency: 'KWD' }), {
      explain: true,
    })
    expect(working.working!.join('\n')).toContain('12.345 KWD')
  })

  it('stays exact where amount × rate passes 2^53, per line and per invoice', () => {
    // 19% of 90,071,992,547.40 EUR is 17,113,678,584.006 EUR → .01 after rounding.
    const huge = cart('DE', [item(9_007_199_254_740), item(9_007_199_254_740)])
    const perLine = calculateTax(withRounding('DE', 'line'), store('DE'), huge)
    expect(perLine.lines.map((l) => l.tax_amount)).toEqual([1_711_367_858_401, 1_711_367_858_401])
    // Once per invoice: 2 × …8,400.6 = …16,801.2 → …16,801, the odd cent to the first line.
    const perInvoice = calculateTax(withRounding('DE', 'invoice'), store('DE'), huge)
    expect(perInvoice.lines.map((l) => l.tax_amount)).toEqual([1_711_367_858_401, 1_711_367_858_400])
    const inclusive = calculateTax(data, store('DE'), { ...huge, prices_include_tax: true })
    expect(inclusive.totals.net + inclusive.totals.tax).toBe(2 * 9_007_199_254_740)
  })

  it('Singapore 9% and Switzerland 8.1% / 2.6%', () => {
    expect(calculateTax(data, store('SG'), cart('SG', [item(10_000)], { currency: 'SGD' })).totals.tax).toBe(
      900,
    )
    expect(
      calculateTax(
        data,
        store('SG'),
        cart('SG', [item(10_000)], { currency: 'SGD', date_of_supply: '2023-12-31' }),
      ).totals.tax,
    ).toBe(800)
    const ch = calculateTax(
      data,
      store('CH'),
      cart('CH', [item(10_000), item(10_000, 'food')], { currency: 'CHF' }),
    )
    expect(ch.lines.map((l) => l.tax_amount)).toEqual([810, 260])
  })
})

describe('tax engine: bad input is a clear 4xx, never a silent 0%', () => {
  const cases: Array<[string, TaxInput, string, string]> = [
    [
      'unknown currency',
      cart('DE', [item(100)], { currency: 'XYZ' }),
      'unsupported_currency',
      'body.currency',
    ],
    ['unknown country', cart('XX', [item(100)]), 'unknown_country', 'body.customer.address.country'],
    [
      'unknown category',
      cart('DE', [item(100, 'spaceships')]),
      'unknown_tax_category',
      'body.lines.0.tax_category',
    ],
    ['negative amount', cart('DE', [item(-100)]), 'validation_failed', 'body.lines.0.unit_amount'],
    ['fractional amount', cart('DE', [item(1.5)]), 'validation_failed', 'body.lines.0.unit_amount'],
    ['zero quantity', cart('DE', [item(100, 'standard', 0)]), 'validation_failed', 'body.lines.0.quantity'],
    [
      'discount above the line',
      cart('DE', [{ ...item(100), discount_amount: 101 }]),
      'validation_failed',
      'body.lines.0.discount_amount',
    ],
    [
      'bad date',
      cart('DE', [item(100)], { date_of_supply: '2025-02-30' }),
      'validation_failed',
      'body.date_of_supply',
    ],
    [
      'date before the data',
      cart('DE', [item(100)], { date_of_supply: '2019-01-01' }),
      'tax_rate_missing',
      'body.date_of_supply',
    ],
    [
      'date in the first century, before the data',
      cart('DE', [item(100)], { date_of_supply: '0050-06-15' }),
      'tax_rate_missing',
      'body.date_of_supply',
    ],
    [
      'US address without a state',
      cart('US', [item(100)], { currency: 'USD' }),
      'unknown_region',
      'body.customer.address.region',
    ],
    [
      'unknown province',
      cart('CA', [item(100)], { currency: 'CAD', customer: { address: { country: 'CA', region: 'ZZ' } } }),
      'unknown_region',
      'body.customer.address.region',
    ],
  ]
  for (const [name, input, code, path] of cases) {
    it(name, () => {
      const origin = input.customer.address.country === 'XX' ? 'DE' : input.customer.address.country
      const p = problemOf(() =>
        calculateTax(
          data,
          store(origin, {
            origin: { country: origin, region: origin === 'US' ? 'NY' : origin === 'CA' ? 'ON' : undefined },
          }),
          input,
        ),
      )
      expect(p.code).toBe(code)
      expect(p.status).toBeGreaterThanOrEqual(400)
      expect(p.status).toBeLessThan(500)
      expect(p.errors?.[0]?.path).toBe(path)
    })
  }
})
