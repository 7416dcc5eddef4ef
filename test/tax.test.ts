/**
 * The tax admin API end to end, on each database: the shipped rates loaded on start (once per data
 * version, admin edits kept), the preview with the store's own settings and recorded sales (the OSS
 * threshold crossed and uncrossed by recorded and voided sales), rate CRUD with effective dates,
 * categories and rules, registrations and the nexus report, and bad input as 4xx problem+json.
 */
import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TAX_DATA } from '../src/modules/tax/data/rates.ts'
import { REVERSE_CHARGE_NOTE } from '../src/modules/tax/place-of-supply.ts'
import { ensureTaxReferenceData } from '../src/modules/tax/reference-data.ts'
import { recordSale, voidSale } from '../src/modules/tax/sales.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'

type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE'

function expectProblem(res: LightMyRequestResponse, status: number, code: string, path?: string) {
  expect(res.statusCode, res.body).toBe(status)
  expect(res.headers['content-type']).toContain('application/problem+json')
  const body = res.json()
  expect(body.code).toBe(code)
  if (path) expect(body.errors?.map((e: { path: string }) => e.path)).toContain(path)
}

const cart = (overrides: Record<string, unknown> = {}) => ({
  currency: 'EUR',
  prices_include_tax: false,
  date_of_supply: '2025-09-15',
  customer: { address: { country: 'DE' } },
  lines: [{ id: 'mug', unit_amount: 10_000, quantity: 1, tax_category: 'standard' }],
  ...overrides,
})

describeEachDatabase('tax admin API', (kind) => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode(kind, { env: { RATE_LIMIT_PER_MINUTE: '100000' } })
  })
  afterAll(() => node?.close())

  const db = () => node.runtime.database.db
  const call = (
    method: Method,
    url: string,
    payload?: unknown,
    headers: Record<string, string> = adminAuth,
  ) =>
    node.app.inject({
      method,
      url,
      headers,
      ...(payload !== undefined ? { payload: payload as object } : {}),
    })
  const preview = (body: unknown) => call('POST', '/admin/tax/preview', body)
  const sale = (reference: string, country: string, net: number, extra: Record<string, unknown> = {}) =>
    withTransaction(db(), (trx) =>
      recordSale(trx, {
        reference,
        date_of_supply: '2025-03-01',
        origin_country: 'AT',
        customer: { country },
        b2b: false,
        currency: 'EUR',
        net_amount: net,
        tax_amount: 0,
        ...extra,
      }),
    )

  describe('reference data', () => {
    it('loads every shipped jurisdiction and rate with its source on start', async () => {
      const counts = await db()
        .selectFrom('tax_rates')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow()
      const shipped = TAX_DATA.jurisdictions.reduce((a, j) => a + j.rates.length, 0)
      expect(Number(counts.n)).toBe(shipped)

      const us = await call('GET', '/admin/tax/jurisdictions?country=US&limit=100')
      expect(us.statusCode).toBe(200)
      expect(us.json().data).toHaveLength(52) // the country, 50 states and DC

      const ro = await call('GET', '/admin/tax/jurisdictions/RO')
      expect(ro.statusCode).toBe(200)
      const standard = ro
        .json()
        .rates.filter((r: { kind: string }) => r.kind === 'standard')
        .map((r: { rate: string; valid_from: string; valid_to: string | null; source_name: string }) => [
          r.rate,
          r.valid_from,
          r.valid_to,
        ])
      expect(standard).toEqual([
        ['19', '2024-01-01', '2025-08-01'],
        ['21', '2025-08-01', null],
      ])
      expect(ro.json().rates[0].source_url).toMatch(/^https:\/\//)
    })

    it('sets a nexus threshold within bigint and JavaScript number range only', async () => {
      const set = (nexus_threshold_usd: unknown) =>
        call('PATCH', '/admin/tax/jurisdictions/US-TX', { nexus_threshold_usd })
      const ok = await set(500_000)
      expect(ok.statusCode, ok.body).toBe(200)
      expect(ok.json().nexus_threshold_usd).toBe(500_000)
      // Found by the bad-input fuzz test: these passed the schema and overflowed the bigint (500).
      for (const huge of [1e21, 2 ** 63, 1e12 + 1]) {
        expectProblem(await set(huge), 400, 'validation_failed', 'body.nexus_threshold_usd')
      }
      const infinity = await node.app.inject({
        method: 'PATCH',
        url: '/admin/tax/jurisdictions/US-TX',
        headers: { ...adminAuth, 'content-type': 'application/json' },
        payload: '{"nexus_threshold_usd":1e400}',
      })
      expectProblem(infinity, 400, 'validation_failed', 'body.nexus_threshold_usd')
    })

    it('pages through jurisdictions with a cursor', async () => {
      const first = await call('GET', '/admin/tax/jurisdictions?limit=5')
      const second = await call('GET', `/admin/tax/jurisdictions?limit=5&cursor=${first.json().next_cursor}`)
      const codes = [...first.json().data, ...second.json().data].map((j: { code: string }) => j.code)
      expect(codes).toEqual([...codes].sort())
      expect(new Set(codes).size).toBe(10)
    })

    it('applies a data version once, and a new version keeps rates an admin edited or deleted', async () => {
      expect(await ensureTaxReferenceData(db())).toBe(false)
      const edited = await call('PATCH', '/admin/tax/rates/txr_nl_reduced_2024-01-01', {
        label: 'BTW 9% (laag)',
      })
      expect(edited.statusCode, edited.body).toBe(200)
      expect(edited.json().origin).toBe('admin')
      const removed = await call('DELETE', '/admin/tax/rates/txr_dk_standard_2024-01-01')
      expect(removed.statusCode).toBe(204)

      const next = structuredClone(TAX_DATA)
      next.version = `${TAX_DATA.version}-test`
      for (const j of next.jurisdictions) for (const r of j.rates) r.label = 'changed by the data file'
      expect(await ensureTaxReferenceData(db(), next)).toBe(true)
      const nl = await call('GET', '/admin/tax/rates/txr_nl_reduced_2024-01-01')
      expect(nl.json().label).toBe('BTW 9% (laag)')
      expect((await call('GET', '/admin/tax/rates/txr_dk_standard_2024-01-01')).statusCode).toBe(404)
      expect((await call('GET', '/admin/tax/rates/txr_de_standard_2024-01-01')).json().label).toBe(
        'changed by the data file',
      )
      // Restore the shipped data for the tests that follow.
      await db()
        .updateTable('tax_rates')
        .set({ deleted_at: null })
        .where('id', '=', 'txr_dk_standard_2024-01-01')
        .execute()
      await db().updateTable('tax_settings').set({ data_version: null }).execute()
      await db().updateTable('tax_rates').set({ origin: 'data' }).execute()
      expect(await ensureTaxReferenceData(db())).toBe(true)
    })
  })

  describe('preview with the store settings', () => {
    it('needs an origin first, then uses it', async () => {
      expectProblem(await preview(cart()), 409, 'conflict')
      expectProblem(
        await call('PATCH', '/admin/tax/settings', { origin_country: 'ZZ' }),
        422,
        'unknown_country',
      )
      const set = await call('PATCH', '/admin/tax/settings', { origin_country: 'AT' })
      expect(set.statusCode, set.body).toBe(200)
      expect(set.json()).toMatchObject({ origin_country: 'AT', oss_opt_in: false, provider: 'builtin' })
    })

    it('German B2C: Austrian VAT below the OSS threshold, German VAT once recorded sales pass it', async () => {
      const below = await preview(cart())
      expect(below.statusCode, below.body).toBe(200)
      expect(below.json().taxes).toEqual([
        expect.objectContaining({ jurisdiction: 'AT', rate: '20', taxable_amount: 10_000, tax_amount: 2000 }),
      ])
      expect(below.json().working.join('\n')).toContain('not passed')

      await sale('ord_1', 'DE', 600_000)
      await sale('ord_2', 'FR', 400_001)
      await sale('ord_2', 'FR', 400_001) // the same order again counts once
      await sale('ord_b2b', 'IT', 5_000_000, { b2b: true }) // B2B does not count
      await sale('ord_home', 'AT', 5_000_000) // nor do domestic sales
      const oss = await call('GET', '/admin/tax/oss?year=2025')
      expect(oss.json()).toMatchObject({ current_year_eur: 1_000_001, passed: true })

      const above = await preview(cart())
      expect(above.json().taxes).toEqual([
        expect.objectContaining({ jurisdiction: 'DE', rate: '19', tax_amount: 1900 }),
      ])

      await withTransaction(db(), (trx) => voidSale(trx, 'ord_2'))
      expect((await preview(cart())).json().taxes[0].jurisdiction).toBe('AT')
      // Opting in taxes at destination below the threshold too.
      await call('PATCH', '/admin/tax/settings', { oss_opt_in: true })
      expect((await preview(cart())).json().taxes[0].jurisdiction).toBe('DE')
      await call('PATCH', '/admin/tax/settings', { oss_opt_in: false })
    })

    it('EU B2B with a valid VAT id is reverse-charged; an invalid one is a 422', async () => {
      const b2b = await preview(
        cart({ customer: { address: { country: 'DE' }, vat_id: 'DE136695976', is_business: true } }),
      )
      expect(b2b.statusCode, b2b.body).toBe(200)
      expect(b2b.json().totals.tax).toBe(0)
      expect(b2b.json().notes).toContain(REVERSE_CHARGE_NOTE)
      expect(b2b.json().lines[0].taxes[0]).toMatchObject({ treatment: 'reverse_charge', rate: '0' })

      const bad = await preview(
        cart({ customer: { address: { country: 'DE' }, vat_id: 'DE136695975', is_business: true } }),
      )
      expectProblem(bad, 422, 'invalid_vat_id', 'body.customer.vat_id')
      const check = await call('POST', '/admin/tax/vat-ids/check', { vat_id: 'DE136695975' })
      expect(check.json()).toMatchObject({ valid: false, reason: 'fails its check digits' })
    })

    it('previews a hypothetical store: a US order with and without nexus', async () => {
      const us = (region: string) =>
        preview(
          cart({
            currency: 'USD',
            customer: { address: { country: 'US', region } },
            store: { origin_country: 'US', origin_region: 'NY', registrations: ['US-CA'] },
          }),
        )
      const california = await us('CA')
      expect(california.statusCode, california.body).toBe(200)
      expect(california.json().totals).toMatchObject({ net: 10_000, tax: 725, gross: 10_725 })
      const texas = await us('TX')
      expect(texas.json().totals.tax).toBe(0)
      expect(texas.json().lines[0].taxes[0]).toMatchObject({ jurisdiction: 'US-TX', treatment: 'no_nexus' })
    })
  })

  describe('bad input: a clear 4xx, never a silent 0%', () => {
    const cases: Array<[string, unknown, number, string, string]> = [
      [
        'unknown country',
        cart({ customer: { address: { country: 'XX' } } }),
        422,
        'unknown_country',
        'body.customer.address.country',
      ],
      [
        'lowercase country',
        cart({ customer: { address: { country: 'de' } } }),
        400,
        'validation_failed',
        'body.customer.address.country',
      ],
      [
        'unknown category',
        cart({ lines: [{ unit_amount: 100, quantity: 1, tax_category: 'spaceships' }] }),
        422,
        'unknown_tax_category',
        'body.lines.0.tax_category',
      ],
      [
        'negative amount',
        cart({ lines: [{ unit_amount: -100, quantity: 1, tax_category: 'standard' }] }),
        400,
        'validation_failed',
        'body.lines.0.unit_amount',
      ],
      [
        'fractional amount',
        cart({ lines: [{ unit_amount: 10.5, quantity: 1, tax_category: 'standard' }] }),
        400,
        'validation_failed',
        'body.lines.0.unit_amount',
      ],
      [
        'negative shipping',
        cart({ shipping: { amount: -1 } }),
        400,
        'validation_failed',
        'body.shipping.amount',
      ],
      ['unknown currency', cart({ currency: 'XYZ' }), 422, 'unsupported_currency', 'body.currency'],
      ['unknown field', cart({ tax_free: true }), 400, 'validation_failed', 'body.tax_free'],
      ['no lines', cart({ lines: [] }), 400, 'validation_failed', 'body.lines'],
      [
        'discount above the line',
        cart({ lines: [{ unit_amount: 100, quantity: 1, tax_category: 'standard', discount_amount: 500 }] }),
        400,
        'validation_failed',
        'body.lines.0.discount_amount',
      ],
      [
        'impossible date',
        cart({ date_of_supply: '2025-02-30' }),
        400,
        'validation_failed',
        'body.date_of_supply',
      ],
      [
        'date before the data',
        cart({ date_of_supply: '2010-01-01' }),
        422,
        'tax_rate_missing',
        'body.date_of_supply',
      ],
      // The store's recorded sales are read for the year and the year before, zero-padded.
      [
        'date in the year 100',
        cart({ date_of_supply: '0100-01-01' }),
        422,
        'tax_rate_missing',
        'body.date_of_supply',
      ],
      [
        'date in the year 1',
        cart({ date_of_supply: '0001-01-01' }),
        422,
        'tax_rate_missing',
        'body.date_of_supply',
      ],
      [
        'unknown province',
        cart({
          currency: 'CAD',
          customer: { address: { country: 'CA', region: 'ZZ' } },
          store: { origin_country: 'CA', origin_region: 'ON' },
        }),
        422,
        'unknown_region',
        'body.customer.address.region',
      ],
    ]
    for (const [name, body, status, code, path] of cases) {
      it(name, async () => expectProblem(await preview(body), status, code, path))
    }

    it('currencies with 0 and 3 decimals are taxed in their minor unit', async () => {
      const jpy = await preview(
        cart({
          currency: 'JPY',
          lines: [{ unit_amount: 999, quantity: 1, tax_category: 'standard' }],
          store: { origin_country: 'JP' },
          customer: { address: { country: 'JP' } },
        }),
      )
      expect(jpy.json().totals).toMatchObject({ net: 999, tax: 100 })
      const kwd = await preview(
        cart({
          currency: 'KWD',
          lines: [{ unit_amount: 12_345, quantity: 1, tax_category: 'standard' }],
          store: { origin_country: 'GB' },
          customer: { address: { country: 'GB' } },
        }),
      )
      expect(kwd.json().totals).toMatchObject({ net: 12_345, tax: 2469 })
    })

    it('answers 401 without credentials', async () => {
      expectProblem(await call('POST', '/admin/tax/preview', cart(), {}), 401, 'unauthenticated')
    })
  })

  describe('rates', () => {
    const rate = (overrides: Record<string, unknown> = {}) => ({
      jurisdiction: 'DE',
      kind: 'standard',
      rate: '21',
      label: 'MwSt 21%',
      valid_from: '2030-01-01',
      source_name: 'Bundesministerium der Finanzen (hypothetical change for this test)',
      source_url: 'https://www.bundesfinanzministerium.de/',
      ...overrides,
    })
    const deAt = (date: string) => preview(cart({ date_of_supply: date, store: { origin_country: 'DE' } }))

    it('refuses an overlapping period, supersedes the open-ended rate on request, and applies by date', async () => {
      expectProblem(
        await call('POST', '/admin/tax/rates', rate()),
        409,
        'tax_rate_overlap',
        'body.valid_from',
      )
      const created = await call('POST', '/admin/tax/rates', rate({ supersede: true }), {
        ...adminAuth,
        'idempotency-key': 'de-2030',
      })
      expect(created.statusCode, created.body).toBe(201)
      expect(created.json()).toMatchObject({ rate: '21', rate_ppm: 210_000, valid_to: null, origin: 'admin' })
      expect(created.json().id).toMatch(/^txr_[0-9a-z]{26}$/)
      const replay = await call('POST', '/admin/tax/rates', rate({ supersede: true }), {
        ...adminAuth,
        'idempotency-key': 'de-2030',
      })
      expect(replay.json().id).toBe(created.json().id)

      expect((await deAt('2029-12-31')).json().totals.tax).toBe(1900)
      expect((await deAt('2030-01-01')).json().totals.tax).toBe(2100)

      const onDate = await call('GET', '/admin/tax/rates?jurisdiction=DE&kind=standard&on=2030-06-01')
      expect(onDate.json().data.map((r: { id: string }) => r.id)).toEqual([created.json().id])

      const patched = await call('PATCH', `/admin/tax/rates/${created.json().id}`, { rate: '20.5' })
      expect(patched.json()).toMatchObject({ rate: '20.5', rate_ppm: 205_000 })
      expectProblem(
        await call('PATCH', `/admin/tax/rates/${created.json().id}`, { valid_from: '2020-01-01' }),
        409,
        'tax_rate_overlap',
      )
      expect((await call('DELETE', `/admin/tax/rates/${created.json().id}`)).statusCode).toBe(204)
      expectProblem(await call('DELETE', `/admin/tax/rates/${created.json().id}`), 404, 'not_found')
      // With the 2030 rate gone and the 19% rate closed at 2030-01-01, nothing applies then: refused.
      expectProblem(await deAt('2030-01-01'), 422, 'tax_rate_missing')
      await call('PATCH', '/admin/tax/rates/txr_de_standard_2024-01-01', { valid_to: null })
      expect((await deAt('2030-01-01')).json().totals.tax).toBe(1900)
    })

    it('validates rate input', async () => {
      expectProblem(
        await call('POST', '/admin/tax/rates', rate({ jurisdiction: 'QQ' })),
        422,
        'unknown_country',
        'body.jurisdiction',
      )
      expectProblem(
        await call('POST', '/admin/tax/rates', rate({ rate: '-1' })),
        400,
        'validation_failed',
        'body.rate',
      )
      expectProblem(
        await call('POST', '/admin/tax/rates', rate({ rate: '101' })),
        400,
        'validation_failed',
        'body.rate',
      )
      expectProblem(
        await call('POST', '/admin/tax/rates', rate({ kind: 'zero' })),
        400,
        'validation_failed',
        'body.kind',
      )
      expectProblem(
        await call('POST', '/admin/tax/rates', rate({ valid_from: '2031-01-01', valid_to: '2030-01-01' })),
        400,
        'validation_failed',
        'body.valid_to',
      )
      expectProblem(await call('GET', '/admin/tax/rates/txr_missing'), 404, 'not_found')
      // Found by the bad-input fuzz test: the year 0000 is a valid date format but no PostgreSQL
      // date (500).
      expectProblem(
        await call('POST', '/admin/tax/rates', rate({ valid_from: '0000-01-01' })),
        400,
        'validation_failed',
        'body.valid_from',
      )
      expectProblem(
        await call('PATCH', '/admin/tax/rates/txr_de_standard_2024-01-01', { valid_to: '0000-12-31' }),
        400,
        'validation_failed',
        'body.valid_to',
      )
      expectProblem(await call('GET', '/admin/tax/rates?on=0000-06-01'), 400, 'validation_failed', 'query.on')
    })

    it('local rates by ZIP prefix add to the state rate', async () => {
      const local = await call('POST', '/admin/tax/rates', {
        jurisdiction: 'US-CA',
        kind: 'standard',
        rate: '2.5',
        label: 'Los Angeles County district tax 2.5%',
        valid_from: '2025-01-01',
        postal_prefix: '900',
        source_name: 'California Department of Tax and Fee Administration: district tax rates',
        source_url: 'https://www.cdtfa.ca.gov/',
      })
      expect(local.statusCode, local.body).toBe(201)
      const la = await preview(
        cart({
          currency: 'USD',
          customer: { address: { country: 'US', region: 'CA', postal_code: '90012' } },
          store: { origin_country: 'US', origin_region: 'CA' },
        }),
      )
      expect(
        la.json().lines[0].taxes.map((t: { label: string; tax_amount: number }) => [t.label, t.tax_amount]),
      ).toEqual([
        ['Sales tax 7.25%', 725],
        ['Los Angeles County district tax 2.5%', 250],
      ])
    })
  })

  describe('categories and rules', () => {
    it('adds a category, maps it per jurisdiction, and keeps built-in ones', async () => {
      const put = await call('PUT', '/admin/tax/categories/art', {
        name: 'Works of art',
        default_kind: 'standard',
      })
      expect(put.statusCode, put.body).toBe(200)
      const rule = await call('PUT', '/admin/tax/jurisdictions/DE/categories/art', { rate_kind: 'reduced' })
      expect(rule.json()).toEqual({ jurisdiction: 'DE', category: 'art', rate_kind: 'reduced' })
      const art = (country: string) =>
        preview(
          cart({
            customer: { address: { country } },
            lines: [{ unit_amount: 10_000, quantity: 1, tax_category: 'art' }],
            store: { origin_country: country },
          }),
        )
      expect((await art('DE')).json().totals.tax).toBe(700)
      expect((await art('FR')).json().totals.tax).toBe(2000)
      expectProblem(
        await call('PUT', '/admin/tax/jurisdictions/DE/categories/nope', { rate_kind: 'zero' }),
        422,
        'unknown_tax_category',
      )
      expectProblem(await call('DELETE', '/admin/tax/categories/books'), 409, 'tax_category_built_in')
      expect((await call('DELETE', '/admin/tax/categories/art')).statusCode).toBe(204)
      expectProblem(await art('DE'), 422, 'unknown_tax_category')
      const list = await call('GET', '/admin/tax/categories')
      expect(list.json().data.map((c: { code: string }) => c.code)).toContain('childrens_clothing')
    })
  })

  describe('a category products use', () => {
    // A cart holding such a product could not be taxed, so the shopper could not buy it.
    it('is not deleted while products use it, and is once they no longer do', async () => {
      const put = await call('PUT', '/admin/tax/categories/prints', {
        name: 'Prints',
        default_kind: 'reduced',
      })
      expect(put.statusCode, put.body).toBe(200)
      const product = (handle: string) =>
        call('POST', '/admin/products', {
          handle,
          title: 'Print',
          tax_category: 'prints',
          variants: [{ sku: handle.toUpperCase(), prices: [{ currency: 'EUR', amount: 1500 }] }],
        })
      const ids: string[] = []
      for (const handle of ['print-a', 'print-b']) {
        const res = await product(handle)
        expect(res.statusCode, res.body).toBe(201)
        ids.push(res.json().id)
      }
      const refused = await call('DELETE', '/admin/tax/categories/prints')
      expectProblem(refused, 409, 'tax_category_in_use')
      expect(refused.json().detail).toBe(
        '2 products use tax category prints; move them to another category first',
      )
      expect(
        (await call('PATCH', `/admin/products/${ids[0]}`, { tax_category: 'standard' })).statusCode,
      ).toBe(200)
      expect((await call('DELETE', '/admin/tax/categories/prints')).json().detail).toMatch(/^1 product uses /)
      expect((await call('DELETE', `/admin/products/${ids[1]}`)).statusCode).toBe(204)
      expect((await call('DELETE', '/admin/tax/categories/prints')).statusCode).toBe(204)
      expect((await call('GET', '/admin/tax/categories')).json().data).not.toContainEqual(
        expect.objectContaining({ code: 'prints' }),
      )
    })
  })

  describe('a category shipping options use', () => {
    // A cart shipped with such an option could not be taxed, so the shopper could not check out.
    it('is not deleted while products or shipping options use it, active or not', async () => {
      const put = await call('PUT', '/admin/tax/categories/parcels', {
        name: 'Parcels',
        default_kind: 'standard',
      })
      expect(put.statusCode, put.body).toBe(200)
      const region = await call('POST', '/admin/regions', {
        name: 'Malta',
        currency: 'EUR',
        prices_include_tax: true,
        countries: ['MT'],
      })
      expect(region.statusCode, region.body).toBe(201)
      const option = async (name: string, active: boolean) => {
        const res = await call('POST', '/admin/shipping-options', {
          region_id: region.json().id,
          name,
          price_type: 'flat',
          amount: 500,
          tax_category: 'parcels',
          active,
        })
        expect(res.statusCode, res.body).toBe(201)
        return res.json().id as string
      }
      const options = [await option('Courier', true), await option('Retired courier', false)]
      const product = await call('POST', '/admin/products', {
        handle: 'parcel-print',
        title: 'Print',
        tax_category: 'parcels',
        variants: [{ sku: 'PARCEL-PRINT', prices: [{ currency: 'EUR', amount: 1500 }] }],
      })
      expect(product.statusCode, product.body).toBe(201)
      const deleted = () => call('DELETE', '/admin/tax/categories/parcels')

      const refused = await deleted()
      expectProblem(refused, 409, 'tax_category_in_use')
      expect(refused.json().detail).toBe(
        '1 product and 2 shipping options use tax category parcels; move them to another category first',
      )
      expect((await call('DELETE', `/admin/products/${product.json().id}`)).statusCode).toBe(204)
      expect((await deleted()).json().detail).toBe(
        '2 shipping options use tax category parcels; move them to another category first',
      )
      const moved = await call('PATCH', `/admin/shipping-options/${options[0]}`, { tax_category: 'shipping' })
      expect(moved.statusCode, moved.body).toBe(200)
      expect((await deleted()).json().detail).toMatch(/^1 shipping option uses tax category parcels;/)
      expect((await call('DELETE', `/admin/shipping-options/${options[1]}`)).statusCode).toBe(204)
      expect((await deleted()).statusCode).toBe(204)

      // Gone, it is refused where an option names it, as any unknown category is.
      expectProblem(
        await call('PATCH', `/admin/shipping-options/${options[0]}`, { tax_category: 'parcels' }),
        422,
        'unknown_tax_category',
        'body.tax_category',
      )
    })
  })

  describe('registrations and the nexus report', () => {
    it('reports US sales per state against economic-nexus thresholds', async () => {
      expect((await call('PUT', '/admin/tax/registrations/US-CA', { number: 'SR-123' })).statusCode).toBe(200)
      expectProblem(await call('PUT', '/admin/tax/registrations/US-ZZ', {}), 404, 'not_found')
      const us = (reference: string, region: string, net: number) =>
        sale(reference, 'US', net, {
          customer: { country: 'US', region },
          currency: 'USD',
          origin_country: 'DE',
        })
      await us('us_1', 'FL', 6_000_000)
      await us('us_2', 'FL', 4_000_000) // $100,000 in all: the Florida threshold
      await us('us_3', 'TX', 9_000_000) // $90,000, under Texas' $500,000
      await us('us_4', 'CA', 100)
      const report = await call('GET', '/admin/tax/nexus?year=2025')
      expect(report.statusCode, report.body).toBe(200)
      const byState = new Map(report.json().states.map((s: { state: string }) => [s.state, s]))
      expect(byState.get('US-FL')).toMatchObject({
        sales_usd: 10_000_000,
        transactions: 2,
        threshold_usd: 100_000,
        status: 'threshold_exceeded',
      })
      expect(byState.get('US-TX')).toMatchObject({ sales_usd: 9_000_000, status: 'below_threshold' })
      expect(byState.get('US-CA')).toMatchObject({ registered: true, status: 'registered' })
      expect(byState.get('US-OR')).toMatchObject({ status: 'no_sales_tax' })
      const settings = await call('GET', '/admin/tax/settings')
      expect(settings.json().registrations).toEqual([{ jurisdiction: 'US-CA', number: 'SR-123' }])
      expect((await call('DELETE', '/admin/tax/registrations/US-CA')).statusCode).toBe(204)
    })
  })
})
