/**
 * The external provider against a real local HTTP server speaking the provider protocol (see
 * providers.ts): a good answer is used; a slow, failing, malformed or inconsistent one falls back
 * to the built-in engine; commit and void record the sale locally and reach the service.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTestDatabase,
  describeEachDatabase,
  type TestDatabase,
} from '../../../test/support/database.ts'
import type { Database } from '../../platform/db/database.ts'
import { migrateToLatest } from '../../platform/db/migrate.ts'
import { withTransaction } from '../../platform/db/transaction.ts'
import { ProblemError } from '../../platform/http/errors.ts'
import type { TaxInput } from './engine.ts'
import type { StoreTaxContext } from './place-of-supply.ts'
import { BuiltInTaxProvider, ExternalTaxProvider } from './providers.ts'
import { ensureTaxReferenceData } from './reference-data.ts'
import { euDistanceSales } from './sales.ts'
import { taxDataFromFile } from './tax-data.ts'

type Mode = 'ok' | 'slow' | 'error' | 'malformed' | 'missing-line' | 'too-much-tax'

interface Received {
  path: string
  body: { lines?: Array<{ id: string; amount: number }>; reference?: string; tax_amount?: number }
}

async function readJson(req: IncomingMessage): Promise<Received['body']> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

/** A tax service that charges a flat 10% per line, or misbehaves as the mode says. */
function taxService(state: { mode: Mode; received: Received[] }): Server {
  return createServer(async (req, res) => {
    const body = await readJson(req)
    state.received.push({ path: req.url ?? '', body })
    if (state.mode === 'slow') await new Promise((resolve) => setTimeout(resolve, 500))
    if (state.mode === 'error') {
      res.writeHead(500).end('{"error":"boom"}')
      return
    }
    if (req.url !== '/tax/calculate') {
      res.writeHead(204).end()
      return
    }
    let lines = (body.lines ?? []).map((l) => ({
      id: l.id,
      taxes: [
        {
          jurisdiction: 'EXT',
          label: 'External tax 10%',
          rate: '10',
          taxable_amount: l.amount,
          tax_amount: state.mode === 'too-much-tax' ? l.amount + 1 : Math.round(l.amount / 10),
        },
      ],
    }))
    if (state.mode === 'missing-line') lines = lines.slice(1)
    const answer =
      state.mode === 'malformed' ? { lines: lines.map((l) => ({ ...l, taxes: 'ten percent' })) } : { lines }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer))
  })
}

const store: StoreTaxContext = {
  origin: { country: 'AT' },
  registrations: [],
  oss_opt_in: false,
  eu_distance_sales_eur: { current_year: 0, previous_year: 0 },
}

const input: TaxInput = {
  currency: 'EUR',
  prices_include_tax: false,
  date_of_supply: '2025-09-15',
  customer: { address: { country: 'DE' } },
  lines: [
    { id: 'a', unit_amount: 1000, quantity: 2, tax_category: 'standard', discount_amount: 500 },
    { id: 'b', unit_amount: 333, quantity: 1, tax_category: 'books' },
  ],
}

describe('external tax provider', () => {
  const state = { mode: 'ok' as Mode, received: [] as Received[] }
  let server: Server
  let url: string
  const provider = () =>
    new ExternalTaxProvider({
      url,
      timeoutMs: 200,
      fallback: new BuiltInTaxProvider(taxDataFromFile(), store),
    })

  beforeAll(async () => {
    server = taxService(state)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tax`
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it('uses a valid answer, sent the lines after discounts, and totals add up', async () => {
    state.mode = 'ok'
    state.received = []
    const result = await provider().calculate(input)
    expect(result.provider).toBe('external')
    expect(state.received[0]!.body.lines).toEqual([
      { id: 'a', amount: 1500, tax_category: 'standard' },
      { id: 'b', amount: 333, tax_category: 'books' },
    ])
    expect(result.lines.map((l) => [l.tax_amount, l.taxes[0]!.label])).toEqual([
      [150, 'External tax 10%'],
      [33, 'External tax 10%'],
    ])
    expect(result.totals).toMatchObject({ net: 1833, tax: 183, gross: 2016 })
    expect(result.taxes).toEqual([expect.objectContaining({ taxable_amount: 1833, tax_amount: 183 })])
  })

  for (const [mode, reason] of [
    ['slow', /TimeoutError/],
    ['error', /answered 500/],
    ['malformed', /does not match the schema/],
    ['missing-line', /exactly the lines/],
    ['too-much-tax', /exceeds the line amount/],
  ] as const) {
    it(`falls back to the built-in engine when the service is ${mode}`, async () => {
      state.mode = mode
      const result = await provider().calculate(input)
      expect(result.provider).toBe('builtin')
      expect(result.fallback_reason).toMatch(reason)
      // The built-in answer: Austrian VAT (origin, below the OSS threshold) at 20% and 10% for books.
      expect(result.lines.map((l) => l.tax_amount)).toEqual([300, 33])
    })
  }

  it('refuses bad input itself, without asking the service', async () => {
    state.mode = 'ok'
    state.received = []
    await expect(provider().calculate({ ...input, currency: 'XYZ' })).rejects.toBeInstanceOf(ProblemError)
    expect(state.received).toEqual([])
  })
})

describeEachDatabase('tax providers: commit and void', (kind) => {
  const state = { mode: 'ok' as Mode, received: [] as Received[] }
  let server: Server
  let url: string
  let testDb: TestDatabase
  let database: Database

  beforeAll(async () => {
    server = taxService(state)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tax/`
    testDb = await createTestDatabase(kind)
    database = await testDb.open()
    await migrateToLatest(database.db)
    await ensureTaxReferenceData(database.db)
  })
  afterAll(async () => {
    await database?.close()
    await testDb?.drop()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  it('records the sale locally (counting towards the OSS threshold) and tells the service; void undoes it', async () => {
    const provider = new ExternalTaxProvider({
      url,
      timeoutMs: 1000,
      fallback: new BuiltInTaxProvider(taxDataFromFile(), store),
    })
    const result = await provider.calculate(input)
    await withTransaction(database.db, (trx) => provider.commit(trx, 'ord_ext_1', input, result))
    expect((await euDistanceSales(database.db, 2025)).eur).toBe(1833)
    expect(state.received.at(-1)).toMatchObject({
      path: '/tax/commit',
      body: { reference: 'ord_ext_1', tax_amount: 183 },
    })

    await withTransaction(database.db, (trx) => provider.void(trx, 'ord_ext_1'))
    expect((await euDistanceSales(database.db, 2025)).eur).toBe(0)
    expect(state.received.at(-1)).toMatchObject({ path: '/tax/void', body: { reference: 'ord_ext_1' } })
  })

  it('a failed commit call rolls the local record back with the transaction', async () => {
    state.mode = 'error'
    const builtin = new BuiltInTaxProvider(taxDataFromFile(), store)
    const provider = new ExternalTaxProvider({ url, timeoutMs: 1000, fallback: builtin })
    const result = await builtin.calculate(input)
    await expect(
      withTransaction(database.db, (trx) => provider.commit(trx, 'ord_ext_2', input, result)),
    ).rejects.toThrow(/answered 500/)
    expect((await euDistanceSales(database.db, 2025)).eur).toBe(0)
    state.mode = 'ok'
  })
})
