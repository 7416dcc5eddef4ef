/**
 * EU distance sales priced in a currency other than EUR, on each database: a Swedish region in SEK
 * sold from a store established in Germany checks out (the sale is recorded in SEK, without a
 * value in EUR that nobody knows yet), is taxed where the customer is because its value against the
 * EUR 10,000 threshold is unknown, and the OSS figures of the quarter convert it at the rate given
 * for the quarter's last day, refusing with the currency named when that rate is missing.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { recordSale, voidSale } from '../src/modules/tax/sales.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { startTestNode, type TestNode } from './support/app.ts'
import { adminCall, completeCheckout, createTestStore, type TestStore } from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'

const stockholm = {
  line1: 'Drottninggatan 1',
  city: 'Stockholm',
  postal_code: '11151',
  country_code: 'SE',
}

describe.each(DATABASE_KINDS)('%s: EU distance sales in other currencies', (kind) => {
  let node: TestNode
  let store: TestStore
  let sweden: string
  let shipping: string
  const db = () => node.runtime.database.db

  beforeAll(async () => {
    node = await startTestNode(kind, { env: { RATE_LIMIT_PER_MINUTE: '100000' } })
    store = await createTestStore(node.app)
    const region = await adminCall(node.app, 'POST', '/admin/regions', {
      name: 'Sweden',
      currency: 'SEK',
      prices_include_tax: true,
      countries: ['SE'],
    })
    expect(region.statusCode, region.body).toBe(201)
    sweden = region.json().id
    const option = await adminCall(node.app, 'POST', '/admin/shipping-options', {
      region_id: sweden,
      name: 'Post',
      price_type: 'flat',
      amount: 4900,
    })
    expect(option.statusCode, option.body).toBe(201)
    shipping = option.json().id
    const priced = await adminCall(node.app, 'PATCH', `/admin/variants/${store.shirt}`, {
      prices: [
        { currency: 'EUR', amount: 1999 },
        { currency: 'USD', amount: 1500 },
        { currency: 'SEK', amount: 199_900 },
      ],
    })
    expect(priced.statusCode, priced.body).toBe(200)
  })
  afterAll(() => node?.close())

  const ossReturn = (body: object) => adminCall(node.app, 'POST', '/admin/tax/oss/return', body)

  it('checks out a SEK sale to Sweden from a German store, taxed in Sweden and recorded in SEK', async () => {
    const created = await node.app.inject({
      method: 'POST',
      url: '/store/carts',
      payload: {
        region_id: sweden,
        email: 'sven@example.com',
        lines: [{ variant_id: store.shirt, quantity: 1 }],
      },
    })
    expect(created.statusCode, created.body).toBe(201)
    const cartId = created.json().id as string
    const ready = await node.app.inject({
      method: 'PATCH',
      url: `/store/carts/${cartId}`,
      payload: { shipping_address: stockholm, shipping_option_id: shipping },
    })
    expect(ready.statusCode, ready.body).toBe(200)
    // 2,048.00 SEK including 25 % Swedish VAT: its value in EUR against the threshold is unknown.
    expect(ready.json().totals).toMatchObject({ subtotal: 199_900, shipping_total: 4900, total: 204_800 })
    expect(ready.json().totals.tax_total).toBe(40_960)
    expect(ready.json().taxes).toEqual([expect.objectContaining({ jurisdiction: 'SE', rate: '25' })])

    const placed = await completeCheckout(node.app, cartId)
    expect(placed.statusCode, placed.body).toBe(201)
    const orderId = placed.json().order.id as string
    const cart = await node.app.inject({ method: 'GET', url: `/store/carts/${cartId}` })
    expect(cart.json()).toMatchObject({ status: 'completed', order_id: orderId })

    const sale = await db()
      .selectFrom('tax_sales')
      .selectAll()
      .select(sql<string>`date_of_supply::text`.as('date_of_supply'))
      .where('reference', '=', orderId)
      .executeTakeFirstOrThrow()
    expect(sale).toMatchObject({
      origin_country: 'DE',
      country: 'SE',
      currency: 'SEK',
      eu_distance_sale: true,
      eur_amount: null,
    })
    expect(Number(sale.net_amount)).toBe(163_840)
    expect(Number(sale.tax_amount)).toBe(40_960)

    const year = Number(sale.date_of_supply.slice(0, 4))
    const oss = await adminCall(node.app, 'GET', `/admin/tax/oss?year=${year}`)
    expect(oss.statusCode, oss.body).toBe(200)
    expect(oss.json()).toMatchObject({
      current_year_eur: 0,
      unvalued_sales: { current_year: 1, previous_year: 0 },
      passed: true,
    })

    // The quarter's OSS figures need the SEK rate, and say so.
    const quarter = Math.floor((Number(sale.date_of_supply.slice(5, 7)) - 1) / 3) + 1
    const missing = await ossReturn({ year, quarter })
    expect(missing.statusCode, missing.body).toBe(400)
    expect(missing.json()).toMatchObject({
      code: 'validation_failed',
      errors: [expect.objectContaining({ path: 'body.exchange_rates.SEK' })],
    })
    const figures = await ossReturn({ year, quarter, exchange_rates: { SEK: '11.0485' } })
    expect(figures.statusCode, figures.body).toBe(200)
    // 1,638.40 SEK ÷ 11.0485 = 148.29 EUR; 409.60 SEK ÷ 11.0485 = 37.07 EUR.
    expect(figures.json().countries).toEqual([
      expect.objectContaining({ country: 'SE', sales: 1, net_eur: 14_829, tax_eur: 3707 }),
    ])
  })

  it('converts a quarter at the rates given for its last day, per country, and names a missing rate', async () => {
    const sale = (
      reference: string,
      country: string,
      currency: string,
      net: number,
      tax: number,
      extra = {},
    ) =>
      withTransaction(db(), (trx) =>
        recordSale(trx, {
          reference,
          date_of_supply: '2025-08-14',
          origin_country: 'DE',
          customer: { country },
          b2b: false,
          currency,
          net_amount: net,
          tax_amount: tax,
          ...extra,
        }),
      )
    await sale('q3_fr_eur', 'FR', 'EUR', 10_000, 2000)
    await sale('q3_se_sek_1', 'SE', 'SEK', 110_485, 27_621)
    await sale('q3_se_sek_2', 'SE', 'SEK', 55_242, 13_811)
    await sale('q3_dk_dkk', 'DK', 'DKK', 74_609, 18_652)
    await sale('q3_fr_gbp', 'FR', 'GBP', 8600, 1720)
    await sale('q3_voided', 'FR', 'SEK', 999_999, 0)
    await withTransaction(db(), (trx) => voidSale(trx, 'q3_voided'))
    await sale('q3_b2b', 'IT', 'PLN', 500_000, 0, { b2b: true }) // reverse charge: not a distance sale
    await sale('q3_home', 'DE', 'USD', 500_000, 95_000) // domestic
    await sale('q4_se', 'SE', 'NOK', 10_000, 2500, { date_of_supply: '2025-10-01' }) // next quarter

    const missing = await ossReturn({ year: 2025, quarter: 3, exchange_rates: { SEK: '11.0485' } })
    expect(missing.statusCode, missing.body).toBe(400)
    const paths = missing.json().errors.map((e: { path: string }) => e.path)
    expect(paths.sort()).toEqual(['body.exchange_rates.DKK', 'body.exchange_rates.GBP'])
    expect(missing.json().errors[0].message).toContain('2025-09-30')

    const figures = await ossReturn({
      year: 2025,
      quarter: 3,
      exchange_rates: { SEK: '11.0485', DKK: '7.4609', GBP: '0.86', JPY: '170' },
    })
    expect(figures.statusCode, figures.body).toBe(200)
    const body = figures.json()
    expect(body).toMatchObject({ year: 2025, quarter: 3, from: '2025-07-01', to: '2025-09-30' })
    expect(body.exchange_rates).toEqual({ SEK: '11.0485', DKK: '7.4609', GBP: '0.86' })
    expect(body.countries).toEqual([
      expect.objectContaining({ country: 'DK', sales: 1, net_eur: 10_000, tax_eur: 2500 }),
      // 100.00 EUR + 86.00 GBP ÷ 0.86
      expect.objectContaining({ country: 'FR', sales: 2, net_eur: 20_000, tax_eur: 4000 }),
      // 1,657.27 SEK ÷ 11.0485 = 150.00 EUR; 414.32 SEK ÷ 11.0485 = 37.50 EUR
      expect.objectContaining({ country: 'SE', sales: 2, net_eur: 15_000, tax_eur: 3750 }),
    ])
    expect(body.countries[2].currencies).toEqual([
      { currency: 'SEK', sales: 2, net_amount: 165_727, tax_amount: 41_432, net_eur: 15_000, tax_eur: 3750 },
    ])
    expect(body.totals).toEqual({ sales: 5, net_eur: 45_000, tax_eur: 10_250 })

    const bad = await ossReturn({ year: 2025, quarter: 5, exchange_rates: { SEK: '-1' } })
    expect(bad.statusCode, bad.body).toBe(400)
    const zero = await ossReturn({
      year: 2025,
      quarter: 3,
      exchange_rates: { SEK: '0.000', DKK: '7.4609', GBP: '0.86' },
    })
    expect(zero.statusCode, zero.body).toBe(400)
    expect(zero.json().errors).toEqual([expect.objectContaining({ path: 'body.exchange_rates.SEK' })])
  })
})
