// biome-ignore-all lint/suspicious/noExplicitAny: response bodies are read loosely in assertions
/**
 * Bulk product import and export over HTTP with the job running in-process: CSV, JSON and NDJSON
 * create and upsert products; a bad file is refused whole (all_or_nothing) or skipped row by row
 * (per_row) with a report naming each row and field; progress shows while the job runs; an export
 * imported again gives the same catalog; and nothing a client sends gives a 500.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { parse } from 'csv-parse/sync'
import { type Kysely, sql } from 'kysely'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { importTuning, runImport, stageImport, validateImport } from '../src/modules/catalog/import.ts'
import * as webMediaOnly from '../src/modules/catalog/migrations/0009-web-media-only.ts'
import { refreshReadModels, variantOptionFaults } from '../src/modules/catalog/products.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { newId } from '../src/platform/ids.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'
import { eventually } from './support/eventually.ts'
import { bearer, newStaffSession } from './support/staff.ts'

const CSV_TYPES = { csv: 'text/csv', json: 'application/json', ndjson: 'application/x-ndjson' } as const

const HEADER =
  'handle,title,status,tags,attributes,media,media_alt,option1_name,option1_value,option2_name,option2_value,' +
  'sku,weight_g,manage_inventory,price_EUR,compare_at_EUR,price_USD'

/** A CSV of `header` and rows given as arrays of cells (quoted when needed). */
function csv(header: string, rows: Array<Array<string | number>>): string {
  const quote = (v: string | number) => {
    const s = String(v)
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
  }
  return `${[header, ...rows.map((r) => r.map(quote).join(','))].join('\n')}\n`
}

/** A simple valid JSON document with one variant per size. */
function doc(handle: string, sizes: string[] = ['S', 'M'], price = 1999) {
  return {
    handle,
    title: `Product ${handle}`,
    status: 'published',
    options: [{ name: 'Size', values: sizes }],
    variants: sizes.map((size) => ({
      sku: `${handle}-${size}`.toUpperCase(),
      options: { Size: size },
      prices: [{ currency: 'EUR', amount: price }],
    })),
  }
}

describeEachDatabase('catalog import and export', (kind) => {
  let node: TestNode

  beforeAll(async () => {
    node = await startTestNode(kind, { work: true })
  })
  afterAll(() => node.close())

  const post = (
    body: string | Buffer,
    query: { format?: 'csv' | 'json' | 'ndjson'; mode?: string; dry_run?: boolean } = {},
    headers: Record<string, string> = {},
  ) => {
    const format = query.format ?? 'csv'
    const params = new URLSearchParams({ format, mode: query.mode ?? 'all_or_nothing' })
    if (query.dry_run) params.set('dry_run', 'true')
    return node.app.inject({
      method: 'POST',
      url: `/admin/products/import?${params}`,
      headers: { ...adminAuth, 'content-type': CSV_TYPES[format], ...headers },
      payload: body,
    })
  }

  const finished = (id: string) =>
    eventually(async () => {
      const res = await node.app.inject({ url: `/admin/products/imports/${id}`, headers: adminAuth })
      const body = res.json()
      return body.status === 'succeeded' || body.status === 'failed' ? body : undefined
    }, 20_000)

  /** Posts a file, expects 202 and waits for the job; the finished import. */
  async function imported(body: string, query: Parameters<typeof post>[1] = {}) {
    const res = await post(body, query)
    expect(res.statusCode, res.body).toBe(202)
    expect(res.json()).toMatchObject({ status: 'queued' })
    return finished(res.json().id)
  }

  const product = async (handle: string) => {
    const res = await node.app.inject({ url: '/admin/products?limit=100', headers: adminAuth })
    const all = res.json().data as any[]
    return all.find((p) => p.handle === handle)
  }

  const countOf = async (table: 'products' | 'product_variants' | 'catalog_imports') =>
    Number(
      (
        await node.runtime.database.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    )

  const exportFile = async (format: 'csv' | 'json' | 'ndjson') => {
    const res = await node.app.inject({ url: `/admin/products/export?format=${format}`, headers: adminAuth })
    expect(res.statusCode).toBe(200)
    return res.body
  }

  it('imports a CSV: one product per handle, a variant per row, prices per currency, one event', async () => {
    const file = csv(HEADER, [
      [
        'csv-tee',
        'CSV Tee',
        'published',
        'new|cotton',
        'material=cotton|fit=slim',
        'https://cdn.test/a.jpg|https://cdn.test/b.jpg',
        'Front|Back',
        'Size',
        'S',
        'Colour',
        'Black',
        'CSV-TEE-S-BLK',
        180,
        'true',
        1999,
        2499,
        2199,
      ],
      [
        'csv-tee',
        '',
        '',
        '',
        '',
        '',
        '',
        'Size',
        'M',
        'Colour',
        'Black',
        'CSV-TEE-M-BLK',
        190,
        '',
        1999,
        '',
        2199,
      ],
      [
        'csv-tee',
        'CSV Tee',
        '',
        '',
        '',
        '',
        '',
        'Size',
        'M',
        'Colour',
        'White',
        'CSV-TEE-M-WHT',
        190,
        'false',
        2099,
        '',
        '',
      ],
      ['csv-mug', 'CSV Mug', 'draft', '', '', '', '', '', '', '', '', 'CSV-MUG', 350, '', 1200, '', 1300],
    ])
    const result = await imported(file)
    expect(result).toMatchObject({
      status: 'succeeded',
      total_rows: 2,
      created_count: 2,
      updated_count: 0,
      failed_count: 0,
      progress: 1,
      errors: [],
    })
    const tee = await product('csv-tee')
    expect(tee).toMatchObject({
      title: 'CSV Tee',
      status: 'published',
      tags: ['new', 'cotton'],
      attributes: { material: 'cotton', fit: 'slim' },
      media: [
        { url: 'https://cdn.test/a.jpg', alt: 'Front' },
        { url: 'https://cdn.test/b.jpg', alt: 'Back' },
      ],
      options: [
        { name: 'Size', values: ['S', 'M'] },
        { name: 'Colour', values: ['Black', 'White'] },
      ],
    })
    expect(tee.variants.map((v: any) => [v.sku, v.options, v.weight_g, v.manage_inventory])).toEqual([
      ['CSV-TEE-S-BLK', { Size: 'S', Colour: 'Black' }, 180, true],
      ['CSV-TEE-M-BLK', { Size: 'M', Colour: 'Black' }, 190, true],
      ['CSV-TEE-M-WHT', { Size: 'M', Colour: 'White' }, 190, false],
    ])
    expect(tee.variants[0].prices).toEqual([
      { currency: 'EUR', amount: 1999, compare_at_amount: 2499 },
      { currency: 'USD', amount: 2199, compare_at_amount: null },
    ])
    expect(tee.variants[2].prices).toEqual([{ currency: 'EUR', amount: 2099, compare_at_amount: null }])
    expect(await product('csv-mug')).toMatchObject({
      status: 'draft',
      options: [],
      variants: [{ sku: 'CSV-MUG' }],
    })
    const events = await node.runtime.database.db
      .selectFrom('events')
      .selectAll()
      .where('type', '=', 'catalog.imported')
      .where('subject_id', '=', result.id)
      .execute()
    expect(events).toHaveLength(1)
    expect(events[0]?.payload).toMatchObject({ created_count: 2, updated_count: 0 })
    const staged = await node.runtime.database.db.selectFrom('catalog_import_batches').selectAll().execute()
    expect(staged).toEqual([])
  })

  it('writes the read models of new products exactly as the product rules would', async () => {
    const { db } = node.runtime.database
    const ids = [(await product('csv-tee')).id, (await product('csv-mug')).id]
    const readModels = async () => ({
      search:
        // Lexemes with their weights: positions follow the order SKUs are aggregated in, which the
        // product rules leave to the plan.
        (
          await sql<{ row: string }>`select (product_id, status, currencies,
            array(select distinct u.lexeme || ':' || w from unnest(s.search) u, unnest(u.weights) w order by 1))::text
            as row
          from product_search s where product_id = any(${ids}) order by product_id`.execute(db)
        ).rows,
      prices: await db
        .selectFrom('product_prices')
        .selectAll()
        .where('product_id', 'in', ids)
        .orderBy(['product_id', 'currency_code'])
        .execute(),
    })
    const imported = await readModels()
    expect(imported.search).toHaveLength(2)
    expect(imported.prices).toContainEqual({
      product_id: ids[0],
      currency_code: 'EUR',
      min_amount: 1999,
      min_compare_at_amount: 2499,
      max_amount: 2099,
    })
    await withTransaction(db, (trx) => refreshReadModels(trx, ids))
    expect(await readModels()).toEqual(imported)
  })

  it('imports JSON (array or {products}) and NDJSON, and upserts by handle and SKU', async () => {
    expect(await imported(JSON.stringify([doc('json-a'), doc('json-b')]), { format: 'json' })).toMatchObject({
      status: 'succeeded',
      created_count: 2,
    })
    const variantsBefore = await countOf('product_variants')
    const again = await imported(JSON.stringify({ products: [doc('json-a', ['S', 'M', 'L'], 2500)] }), {
      format: 'json',
    })
    expect(again).toMatchObject({ status: 'succeeded', created_count: 0, updated_count: 1 })
    expect(await countOf('product_variants')).toBe(variantsBefore + 1)
    const a = await product('json-a')
    expect(a.variants.map((v: any) => [v.sku, v.prices[0].amount])).toEqual([
      ['JSON-A-S', 2500],
      ['JSON-A-M', 2500],
      ['JSON-A-L', 2500],
    ])
    const ndjson = `${JSON.stringify(doc('json-b', ['S', 'M'], 999))}\n\n${JSON.stringify(doc('nd-c'))}\n`
    expect(await imported(ndjson, { format: 'ndjson' })).toMatchObject({ created_count: 1, updated_count: 1 })
    expect((await product('json-b')).variants[0].prices[0].amount).toBe(999)
  })

  it('refuses a file with one bad row whole in all_or_nothing mode, naming row and column', async () => {
    const before = await Promise.all([countOf('products'), countOf('catalog_imports')])
    const file = csv(HEADER, [
      ['aon-good', 'Good', '', '', '', '', '', 'Size', 'S', '', '', 'AON-GOOD-S', '', '', 1000, '', ''],
      ['aon-bad', 'Bad', '', '', '', '', '', 'Size', 'S', '', '', 'AON-BAD-S', '', '', '12.50', '', ''],
    ])
    const res = await post(file)
    expect(res.statusCode).toBe(422)
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(res.json()).toMatchObject({ code: 'import_invalid', status: 422 })
    expect(res.json().errors).toEqual([
      { row: 2, path: 'price_EUR', message: expect.stringContaining('whole number') },
    ])
    expect(await Promise.all([countOf('products'), countOf('catalog_imports')])).toEqual(before)
    const dry = await post(file, { mode: 'per_row', dry_run: true })
    expect(dry.statusCode).toBe(200)
    expect(dry.json()).toMatchObject({
      dry_run: true,
      total_rows: 2,
      valid_rows: 1,
      failed_count: 1,
      error_count: 1,
    })
    expect(await Promise.all([countOf('products'), countOf('catalog_imports')])).toEqual(before)
  })

  it('imports the good rows in per_row mode and reports each bad row and field', async () => {
    // Another product owns this SKU already.
    await imported(JSON.stringify([doc('owner')]), { format: 'json' })
    const header = `${HEADER},price_XYZ`
    const file = csv(header, [
      ['pr-good', 'Good', '', '', '', '', '', 'Size', 'S', '', '', 'PR-GOOD-S', '', '', 1000, '', '', ''],
      ['pr-good', '', '', '', '', '', '', 'Size', 'M', '', '', 'PR-GOOD-M', '', '', 1000, '', '', ''],
      ['pr-taken', 'Taken SKU', '', '', '', '', '', '', '', '', '', 'OWNER-S', '', '', 1000, '', '', ''],
      ['pr-dup', 'Duplicate SKU', '', '', '', '', '', '', '', '', '', 'PR-GOOD-M', '', '', 1000, '', '', ''],
      [
        'pr-currency',
        'Unknown currency',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        'PR-CUR',
        '',
        '',
        1000,
        '',
        '',
        5,
      ],
      [
        'pr-options',
        'Options',
        '',
        '',
        '',
        '',
        '',
        'Size',
        'S',
        '',
        '',
        'PR-OPT-S',
        '',
        '',
        1000,
        '',
        '',
        '',
      ],
      ['pr-options', '', '', '', '', '', '', '', '', '', '', 'PR-OPT-X', '', '', 1000, '', '', ''],
      [
        'pr-contradicts',
        'One title',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        'PR-CON-1',
        '',
        '',
        1000,
        '',
        '',
        '',
      ],
      [
        'pr-contradicts',
        'Another title',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        'PR-CON-2',
        '',
        '',
        1000,
        '',
        '',
        '',
      ],
      ['pr-bool', 'Bool', '', '', '', '', '', '', '', '', '', 'PR-BOOL', '', 'maybe', 1000, '', '', ''],
      ['', 'No handle', '', '', '', '', '', '', '', '', '', 'PR-NONE', '', '', 1000, '', '', ''],
    ])
    const result = await imported(file, { mode: 'per_row' })
    expect(result).toMatchObject({ status: 'succeeded', total_rows: 8, created_count: 1, failed_count: 7 })
    const errors = result.errors as Array<{ row: number; path: string; message: string }>
    const at = (row: number) => errors.filter((e) => e.row === row).map((e) => e.path)
    expect(at(3)).toEqual(['sku']) // SKU of product "owner"
    expect(errors.find((e) => e.row === 3)?.message).toMatch(/belongs to product owner/)
    expect(at(4)).toEqual(['sku']) // repeats PR-GOOD-M of row 1
    expect(at(5)).toEqual(['price_XYZ'])
    expect(at(7)).toContain('option1_value') // needs a Size
    expect(at(9)).toEqual(['title'])
    expect(at(10)).toEqual(['manage_inventory'])
    expect(at(11)).toEqual(['handle'])
    expect(result.error_count).toBe(errors.length)
    expect(await product('pr-good')).toMatchObject({ variants: [{ sku: 'PR-GOOD-S' }, { sku: 'PR-GOOD-M' }] })
    expect(await product('pr-taken')).toBeUndefined()
  })

  it('reports JSON problems with JSON pointers: schema, duplicate handles, options, currencies', async () => {
    const bad = [
      {
        ...doc('jp-price'),
        variants: [{ sku: 'JP-1', prices: [{ currency: 'EUR', amount: 12.5 }] }],
        options: [],
      },
      doc('jp-dup'),
      { ...doc('jp-dup'), variants: [] },
      { ...doc('jp-opt'), variants: [{ sku: 'JP-OPT', options: { Colour: 'Red' } }] },
      {
        ...doc('jp-cur'),
        options: [],
        variants: [{ sku: 'JP-CUR', prices: [{ currency: 'XYZ', amount: 100 }] }],
      },
      { handle: 'jp-unknown', title: 'T', colour: 'red' },
    ]
    const res = await post(JSON.stringify(bad), { format: 'json', dry_run: true, mode: 'per_row' })
    expect(res.statusCode).toBe(200)
    const errors = res.json().errors as any[]
    expect(errors).toContainEqual({ row: 1, path: '/variants/0/prices/0/amount', message: 'must be integer' })
    expect(errors).toContainEqual({ row: 3, path: '/handle', message: 'repeats the handle of row 2' })
    expect(errors).toContainEqual(expect.objectContaining({ row: 4, path: '/variants/0/options/Colour' }))
    expect(errors).toContainEqual(expect.objectContaining({ row: 5, path: '/variants/0/prices/0/currency' }))
    expect(errors).toContainEqual({ row: 6, path: '/colour', message: 'is not a known field' })
    expect(res.json()).toMatchObject({ valid_rows: 1, failed_count: 5 })
  })

  it('answers malformed files with 4xx problem documents, never a 500', async () => {
    const cases: Array<[string | Buffer, Parameters<typeof post>[1], number, string]> = [
      ['handle,title\n"broken,quote\n', {}, 422, 'invalid_csv'],
      ['handle,title,colour\nx,X,red\n', {}, 422, 'invalid_csv'],
      ['title\nX\n', {}, 422, 'invalid_csv'],
      ['', {}, 422, 'invalid_csv'],
      ['[{"handle": "x",', { format: 'json' }, 400, 'malformed_json'],
      ['{"handle": "x"}', { format: 'json' }, 400, 'validation_failed'],
      ['{"handle":"nd-ok","title":"OK"}\n{oops\n', { format: 'ndjson' }, 422, 'import_invalid'],
      [Buffer.from([0x68, 0x61, 0xc3, 0x28, 0x0a]), {}, 400, 'invalid_encoding'],
    ]
    for (const [body, query, status, code] of cases) {
      const res = await post(body, query)
      expect(res.statusCode, `${code}: ${res.body}`).toBe(status)
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(res.json().code).toBe(code)
    }
    const row = await post('handle,title\nok-row,OK\nbad-row,Bad,extra\n', { mode: 'per_row', dry_run: true })
    expect(row.json().errors).toEqual([{ row: 2, path: 'row', message: 'has 3 cells; the header has 2' }])
    const unknownType = await node.app.inject({
      method: 'POST',
      url: '/admin/products/import',
      headers: { ...adminAuth, 'content-type': 'application/xml' },
      payload: '<x/>',
    })
    expect(unknownType.statusCode).toBe(415)
    const noFormat = await node.app.inject({
      method: 'POST',
      url: '/admin/products/import',
      headers: { ...adminAuth, 'content-type': 'text/plain' },
      payload: 'handle\n',
    })
    expect(noFormat.json()).toMatchObject({ status: 400, errors: [{ path: 'query.format' }] })
  })

  it('refuses documents nested too deep or holding text PostgreSQL refuses, as a JSON body would be', async () => {
    // Found by the bad-input fuzz test: staging a metadata nested 5,000 deep overflowed the stack (500).
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`
    const file = `[{"handle":"deep-meta","title":"T","metadata":${deep}},{"handle":"nul-title","title":"a\\u0000b"},${JSON.stringify(doc('fine-doc'))}]`
    for (const dry_run of [true, false]) {
      const res = await post(file, { format: 'json', mode: 'per_row', dry_run })
      expect(res.statusCode, res.body).toBe(dry_run ? 200 : 202)
      expect(res.json().errors).toEqual([
        { row: 1, path: `/metadata${'/a'.repeat(31)}`, message: 'is nested more than 32 levels deep' },
        { row: 2, path: '/title', message: 'contains U+0000 (NUL)' },
      ])
    }
    const ndjson = await post(`{"handle":"lone","title":"\\ud800"}\n`, { format: 'ndjson', dry_run: true })
    expect(ndjson.statusCode, ndjson.body).toBe(422)
    expect(ndjson.json().errors).toEqual([
      { row: 1, path: '/title', message: 'contains a lone surrogate (not valid Unicode)' },
    ])
  })

  it('reports a CSV row holding U+0000 by row and column when the file has option columns', async () => {
    // Option columns make the request look up the stored products by handle, which PostgreSQL
    // refuses for the whole file when a handle holds NUL.
    const header = 'handle,title,option1_name,option1_value,sku'
    const cases: Array<[string[], { row: number; path: string; message: string }]> = [
      [
        ['nul\u0000handle', 'Bad', 'Size', 'S', 'NUL-HANDLE'],
        { row: 2, path: 'handle', message: 'contains U+0000 (NUL)' },
      ],
      [
        ['nul-sku', 'Bad', 'Size', 'S', 'NUL\u0000SKU'],
        { row: 2, path: 'sku', message: 'contains U+0000 (NUL)' },
      ],
    ]
    for (const [bad, error] of cases) {
      const file = csv(header, [['nul-good', 'Good', 'Size', 'S', 'NUL-GOOD'], bad])
      const dry = await post(file, { mode: 'per_row', dry_run: true })
      expect(dry.statusCode, dry.body).toBe(200)
      expect(dry.json()).toMatchObject({ valid_rows: 1, failed_count: 1, errors: [error] })
      const done = await imported(file, { mode: 'per_row' })
      expect(done).toMatchObject({ status: 'succeeded', created_count: 1, failed_count: 1, errors: [error] })
      expect((await product('nul-good')).variants.map((v: any) => v.sku)).toEqual(['NUL-GOOD'])
      await node.runtime.database.db.deleteFrom('products').where('handle', '=', 'nul-good').execute()
    }
  })

  it('shows progress while the job runs, in both modes', async () => {
    importTuning.batchSize = 10
    try {
      for (const mode of ['per_row', 'all_or_nothing']) {
        const docs = Array.from({ length: 150 }, (_, i) =>
          doc(`progress-${mode.replace(/_/g, '-')}-${i}`, ['S']),
        )
        const res = await post(JSON.stringify(docs), { format: 'json', mode })
        expect(res.statusCode).toBe(202)
        // Polled without pause: on PGlite a batch of ten takes a few milliseconds.
        const seen: any[] = []
        const deadline = Date.now() + 20_000
        while (Date.now() < deadline && seen.at(-1)?.status !== 'succeeded') {
          const got = await node.app.inject({
            url: `/admin/products/imports/${res.json().id}`,
            headers: adminAuth,
          })
          seen.push(got.json())
          await sleep(1)
        }
        const done = seen.at(-1)
        expect(done, mode).toMatchObject({ status: 'succeeded', created_count: 150, processed_rows: 150 })
        const midway = seen.filter(
          (s) => s.status === 'running' && s.processed_rows > 0 && s.processed_rows < 150,
        )
        expect(midway.length, mode).toBeGreaterThan(0)
        expect(midway[0].progress).toBeCloseTo(midway[0].processed_rows / 150)
      }
    } finally {
      importTuning.batchSize = 1000
    }
  })

  it('finds write-time failures: per_row skips the product, all_or_nothing rolls the file back', async () => {
    const { db } = node.runtime.database
    const narrowed = { ...doc('kept-variants', ['L']) }
    // Validated while the product does not exist yet, as if it were stored while the file waited
    // for its job: only the write can see that its variants S and M do not fit an option set of L.
    const perRowFile = await validateImport(
      db,
      'json',
      'per_row',
      JSON.stringify([doc('beside-a'), narrowed, doc('beside-b')]),
    )
    const wholeFile = await validateImport(
      db,
      'json',
      'all_or_nothing',
      JSON.stringify([doc('aon-beside'), narrowed]),
    )
    expect([perRowFile.errors, wholeFile.errors]).toEqual([[], []])
    await imported(JSON.stringify([doc('kept-variants', ['S', 'M'])]), { format: 'json' })
    const staged = async (validated: typeof perRowFile) =>
      finished((await withTransaction(db, (trx) => stageImport(trx, node.runtime.jobs, validated, null))).id)
    const perRow = await staged(perRowFile)
    expect(perRow).toMatchObject({ status: 'succeeded', created_count: 2, updated_count: 0, failed_count: 1 })
    expect(perRow.errors).toEqual([
      {
        row: 2,
        path: '/options/0',
        message: 'kept variant KEPT-VARIANTS-S (not in the import): Size must be one of L',
      },
      {
        row: 2,
        path: '/options/0',
        message: 'kept variant KEPT-VARIANTS-M (not in the import): Size must be one of L',
      },
    ])
    expect((await product('kept-variants')).options).toEqual([{ name: 'Size', values: ['S', 'M'] }])

    const whole = await staged(wholeFile)
    expect(whole).toMatchObject({ status: 'failed', created_count: 0, updated_count: 0, failed_count: 2 })
    expect(whole.errors[0]).toMatchObject({ row: 2, message: expect.stringContaining('must be one of L') })
    expect(await product('aon-beside')).toBeUndefined()
    const events = await node.runtime.database.db
      .selectFrom('events')
      .select('id')
      .where('subject_id', '=', whole.id)
      .execute()
    expect(events).toEqual([])
  })

  it('replays an import sent again with the same Idempotency-Key', async () => {
    const body = JSON.stringify([doc('idempotent')])
    const first = await post(body, { format: 'json' }, { 'idempotency-key': 'import-once' })
    const again = await post(body, { format: 'json' }, { 'idempotency-key': 'import-once' })
    expect(first.statusCode).toBe(202)
    expect(again.statusCode).toBe(202)
    expect(again.headers['idempotent-replayed']).toBe('true')
    expect(again.json().id).toBe(first.json().id)
    const other = await post(
      JSON.stringify([doc('idempotent-2')]),
      { format: 'json' },
      { 'idempotency-key': 'import-once' },
    )
    expect(other.statusCode).toBe(422)
    await finished(first.json().id)
  })

  it('runs an import once even if its job is delivered twice', async () => {
    const result = await imported(JSON.stringify([doc('twice')]), { format: 'json' })
    await runImport(node.runtime, result.id)
    const after = await finished(result.id)
    expect(after).toEqual(result)
  })

  it('exports CSV, JSON and NDJSON that import back to the same catalog', async () => {
    const { db } = node.runtime.database
    const categoryId = newId('cat')
    await db
      .insertInto('categories')
      .values({ id: categoryId, handle: 'round-trip', name: 'Round trip', path: categoryId })
      .execute()
    const rich = {
      ...doc('rt-rich', ['S', 'M']),
      subtitle: 'With, commas "and" quotes',
      description: 'Line one\nLine two',
      category_ids: [categoryId],
      tax_category: 'reduced',
      tags: ['a|b', 'plain'],
      attributes: { material: 'wool=warm', fit: 'regular' },
      media: [{ url: 'https://cdn.test/x.jpg', alt: '' }],
      metadata: { source: 'erp', n: 1 },
    }
    rich.variants[0] = {
      ...rich.variants[0]!,
      title: 'Small one',
      barcode: '0123',
      metadata: { bin: 'A1' },
    } as any
    await imported(JSON.stringify([rich]), { format: 'json' })
    for (const format of ['csv', 'json', 'ndjson'] as const) {
      const first = await exportFile(format)
      const products = await countOf('products')
      // Importing the export over the catalog changes nothing.
      const same = await imported(first, { format })
      expect(same).toMatchObject({
        status: 'succeeded',
        created_count: 0,
        updated_count: products,
        failed_count: 0,
      })
      expect(await exportFile(format)).toBe(first)
      // Nor does importing it into an empty catalog.
      await db.deleteFrom('products').execute()
      const fresh = await imported(first, { format })
      expect(fresh).toMatchObject({ created_count: products, failed_count: 0 })
      expect(await exportFile(format)).toBe(first)
    }
    const csvFile = await exportFile('csv')
    expect(csvFile.split('\n')[0]).toMatch(
      /^handle,title,.*,sku,.*price_EUR,compare_at_EUR,price_USD,compare_at_USD$/,
    )
    const jsonFile = JSON.parse(await exportFile('json'))
    expect(jsonFile.find((p: any) => p.handle === 'rt-rich')).toMatchObject({
      tags: ['a|b', 'plain'],
      attributes: { material: 'wool=warm' },
      category_ids: [categoryId],
    })
    const drafts = await node.app.inject({
      url: '/admin/products/export?format=ndjson&status=draft',
      headers: adminAuth,
    })
    const statuses = drafts.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).status)
    expect(statuses.length).toBeGreaterThan(0)
    expect(new Set(statuses)).toEqual(new Set(['draft']))
  })

  /** Creates products through the admin API, as a merchant would, rather than by import. */
  async function created(...products: object[]) {
    for (const body of products) {
      const res = await node.app.inject({
        method: 'POST',
        url: '/admin/products',
        headers: adminAuth,
        payload: body,
      })
      expect(res.statusCode, res.body).toBe(201)
    }
  }

  /** The header and the rows of these products in a CSV export, as a file of its own. */
  const rowsOf = (file: string, handles: string[]) =>
    `${file
      .split('\n')
      .filter((line, i) => i === 0 || handles.some((h) => line.startsWith(`${h},`)))
      .join('\n')}\n`

  it('exports option sets that its rows cannot carry, and imports them back unchanged', async () => {
    const handles = ['rt-no-variants', 'rt-option-order']
    await created(
      { handle: handles[0], title: 'Options, no variants', options: [{ name: 'Size', values: ['S', 'M'] }] },
      {
        handle: handles[1],
        title: 'Option order',
        options: [{ name: 'Size', values: ['S', 'M', 'L', 'XL'] }],
        // Rows in another order than the values, and XL on none of them.
        variants: ['L', 'S', 'M'].map((size) => ({ sku: `RT-ORDER-${size}`, options: { Size: size } })),
      },
    )
    const optionsOf = async () => Promise.all(handles.map(async (h) => (await product(h)).options))
    const before = await optionsOf()
    const file = rowsOf(await exportFile('csv'), handles)
    expect(file.split('\n').filter((line) => line !== '')).toHaveLength(5)
    expect(await imported(file)).toMatchObject({ status: 'succeeded', updated_count: 2, errors: [] })
    expect(await optionsOf()).toEqual(before)
    expect(rowsOf(await exportFile('csv'), handles)).toBe(file)
    const { db } = node.runtime.database
    await db.deleteFrom('products').where('handle', 'in', handles).execute()
    expect(await imported(file)).toMatchObject({ status: 'succeeded', created_count: 2, errors: [] })
    expect(await optionsOf()).toEqual(before)
    expect(rowsOf(await exportFile('csv'), handles)).toBe(file)
    await db.deleteFrom('products').where('handle', 'in', handles).execute()
  })

  it("gives a variant without a title its values in the product's option order, through a round trip", async () => {
    const handle = 'rt-title'
    const handles = [handle]
    // The request names the variant's options in another order than the product's.
    await created({
      handle: handle,
      title: 'Variant title',
      options: [
        { name: 'Colour', values: ['Red', 'Blue'] },
        { name: 'Size', values: ['M'] },
      ],
      variants: [
        { sku: 'RT-TITLE-RED', options: { Size: 'M', Colour: 'Red' } },
        { sku: 'RT-TITLE-BLUE', options: { Size: 'M', Colour: 'Blue' } },
      ],
    })
    const titles = async () => (await product(handle)).variants.map((v: any) => [v.sku, v.title])
    expect(await titles()).toEqual([
      ['RT-TITLE-RED', 'Red / M'],
      ['RT-TITLE-BLUE', 'Blue / M'],
    ])
    // A title given in the other order is the variant's own, and the export keeps it.
    const blue = (await product(handle)).variants[1]
    const patched = await node.app.inject({
      method: 'PATCH',
      url: `/admin/variants/${blue.id}`,
      headers: adminAuth,
      payload: { title: 'M / Blue' },
    })
    expect(patched.statusCode, patched.body).toBe(200)
    const before = await titles()
    const file = rowsOf(await exportFile('csv'), handles)
    expect(await imported(file)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
    expect(await titles()).toEqual(before)
    await node.runtime.database.db.deleteFrom('products').where('handle', 'in', handles).execute()
    expect(await imported(file)).toMatchObject({ status: 'succeeded', created_count: 1, errors: [] })
    expect(await titles()).toEqual(before)
    expect(rowsOf(await exportFile('csv'), handles)).toBe(file)
    await node.runtime.database.db.deleteFrom('products').where('handle', 'in', handles).execute()
  })

  /**
   * A product with every field filled, created through the API (sized S and M, or with one variant
   * and no options); how it reads and how to remove it.
   */
  async function storeFilled(handle: string, sized = true) {
    const { db } = node.runtime.database
    const categoryId = newId('cat')
    const collectionId = newId('col')
    await db
      .insertInto('categories')
      .values({ id: categoryId, handle: `${handle}-cat`, name: 'Filled', path: categoryId })
      .execute()
    await db
      .insertInto('collections')
      .values({ id: collectionId, handle: `${handle}-col`, title: 'Filled', metadata: '{}' })
      .execute()
    const prefix = handle.toUpperCase()
    const res = await node.app.inject({
      method: 'POST',
      url: '/admin/products',
      headers: adminAuth,
      payload: {
        handle,
        title: 'Filled',
        subtitle: 'Sub',
        description: 'Long description',
        status: 'published',
        collection_id: collectionId,
        category_ids: [categoryId],
        tax_category: 'reduced',
        options: sized ? [{ name: 'Size', values: ['S', 'M'] }] : [],
        tags: ['t1', 't2'],
        attributes: { material: 'wool' },
        media: [{ url: 'https://cdn.test/1.jpg', alt: 'one' }],
        metadata: { erp: '123' },
        variants: [
          {
            sku: `${prefix}-S`,
            title: 'Custom variant name',
            options: sized ? { Size: 'S' } : {},
            barcode: '4006381333931',
            weight_g: 500,
            length_mm: 300,
            width_mm: 200,
            height_mm: 10,
            manage_inventory: false,
            requires_shipping: false,
            metadata: { bin: 'A1' },
            prices: [
              { currency: 'EUR', amount: 1000, compare_at_amount: 1500 },
              { currency: 'USD', amount: 1100 },
            ],
          },
          { sku: `${prefix}-M`, options: { Size: 'M' }, prices: [{ currency: 'EUR', amount: 1000 }] },
        ].slice(0, sized ? 2 : 1),
      },
    })
    expect(res.statusCode, res.body).toBe(201)
    const read = async () => {
      const got = await node.app.inject({ url: `/admin/products/${res.json().id}`, headers: adminAuth })
      const { updated_at: _, variants, ...rest } = got.json()
      return { ...rest, variants: variants.map(({ updated_at: _u, ...v }: any) => v) }
    }
    const before = await read()
    expect(before).toMatchObject({ collection_id: collectionId, category_ids: [categoryId] })
    const remove = async () => {
      await db.deleteFrom('products').where('handle', '=', handle).execute()
      await db.deleteFrom('categories').where('id', '=', categoryId).execute()
      await db.deleteFrom('collections').where('id', '=', collectionId).execute()
    }
    return { prefix, before, read, remove }
  }

  it('keeps every field a CSV, JSON or NDJSON upsert leaves out, on the product and its variants', async () => {
    // The report's case: a product without options, its one variant repriced by a file of four columns.
    const single = await storeFilled('partial-single', false)
    try {
      const file = `handle,title,sku,price_EUR\npartial-single,Filled,${single.prefix}-S,1200\n`
      expect(await imported(file)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
      // The euro price alone: its compare-at (no column) and the dollar price (no column) stay.
      const repriced = structuredClone(single.before)
      repriced.variants[0].prices = [
        { currency: 'EUR', amount: 1200, compare_at_amount: 1500 },
        { currency: 'USD', amount: 1100, compare_at_amount: null },
      ]
      expect(await single.read()).toEqual(repriced)
    } finally {
      await single.remove()
    }
    const handle = 'partial-keep'
    const { prefix, before, read, remove } = await storeFilled(handle)
    try {
      // Prices only: the euro price changes, nothing else (its compare-at and the dollar price stay).
      const prices = `handle,title,sku,price_EUR\n${handle},Filled,${prefix}-S,1200\n`
      const dry = await post(prices, { dry_run: true })
      expect(dry.json()).toMatchObject({ valid_rows: 1, failed_count: 0, errors: [] })
      expect(await imported(prices)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
      const repriced = structuredClone(before)
      repriced.variants[0].prices[0].amount = 1200
      expect(await read()).toEqual(repriced)
      // Without a title column the title is kept too.
      expect(await imported(`handle,sku,price_EUR\n${handle},${prefix}-S,1300\n`)).toMatchObject({
        status: 'succeeded',
        updated_count: 1,
      })
      repriced.variants[0].prices[0].amount = 1300
      expect(await read()).toEqual(repriced)
      // JSON and NDJSON: a document giving only some fields changes only those.
      const json = [{ handle, title: 'Renamed', variants: [{ sku: `${prefix}-M`, weight_g: 250 }] }]
      expect(await imported(JSON.stringify(json), { format: 'json' })).toMatchObject({
        status: 'succeeded',
        updated_count: 1,
        errors: [],
      })
      const renamed = structuredClone(repriced)
      renamed.title = 'Renamed'
      renamed.variants[1].weight_g = 250
      expect(await read()).toEqual(renamed)
      const ndjson = `${JSON.stringify({ handle, subtitle: 'New sub', variants: [{ sku: `${prefix}-S` }] })}\n`
      expect(await imported(ndjson, { format: 'ndjson' })).toMatchObject({ status: 'succeeded', errors: [] })
      renamed.subtitle = 'New sub'
      expect(await read()).toEqual(renamed)
    } finally {
      await remove()
    }
  })

  it('clears what a blank cell or a JSON null clears, and keeps what always has a value', async () => {
    const handle = 'partial-blank'
    const { prefix, before, read, remove } = await storeFilled(handle)
    try {
      const header =
        'handle,title,subtitle,description,status,collection_id,category_ids,tax_category,tags,attributes,' +
        'media,media_alt,metadata,sku,variant_title,barcode,weight_g,length_mm,width_mm,height_mm,' +
        'manage_inventory,requires_shipping,variant_metadata'
      const blanks = csv(header, [
        [handle, 'Filled', '', '', '', '', '', '', '', '', '', '', '', `${prefix}-S`, ...Array(9).fill('')],
      ])
      expect(await imported(blanks)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
      const cleared = {
        ...before,
        subtitle: '',
        description: '',
        collection_id: null,
        category_ids: [],
        tags: [],
        attributes: {},
        media: [],
        metadata: {},
        variants: [
          {
            ...before.variants[0],
            // A blank title is the one made of the values.
            title: 'S',
            barcode: null,
            weight_g: null,
            length_mm: null,
            width_mm: null,
            height_mm: null,
            metadata: {},
          },
          before.variants[1],
        ],
      }
      // Title, status, tax category and the variant's flags always have a value: a blank keeps it.
      expect(cleared).toMatchObject({ title: 'Filled', status: 'published', tax_category: 'reduced' })
      expect(cleared.variants[0]).toMatchObject({ manage_inventory: false, requires_shipping: false })
      expect(await read()).toEqual(cleared)
      // A blank title is no title: the stored one stays.
      expect(await imported(csv('handle,title,sku', [[handle, '', `${prefix}-S`]]))).toMatchObject({
        status: 'succeeded',
        updated_count: 1,
      })
      expect(await read()).toEqual(cleared)
    } finally {
      await remove()
    }
    const json = await storeFilled(handle)
    try {
      const nulls = {
        handle,
        subtitle: null,
        description: null,
        collection_id: null,
        category_ids: null,
        tags: null,
        attributes: null,
        media: null,
        metadata: null,
        variants: [
          {
            sku: `${json.prefix}-S`,
            title: null,
            barcode: null,
            weight_g: null,
            length_mm: null,
            width_mm: null,
            height_mm: null,
            metadata: null,
          },
        ],
      }
      expect(await imported(JSON.stringify([nulls]), { format: 'json' })).toMatchObject({
        status: 'succeeded',
        updated_count: 1,
        errors: [],
      })
      const after = await json.read()
      expect(after).toMatchObject({
        title: 'Filled',
        subtitle: '',
        description: '',
        status: 'published',
        collection_id: null,
        category_ids: [],
        tax_category: 'reduced',
        tags: [],
        attributes: {},
        media: [],
        metadata: {},
      })
      expect(after.variants[0]).toEqual({
        ...json.before.variants[0],
        title: 'S',
        barcode: null,
        weight_g: null,
        length_mm: null,
        width_mm: null,
        height_mm: null,
        metadata: {},
      })
      expect(after.variants[1]).toEqual(json.before.variants[1])
    } finally {
      await json.remove()
    }
  })

  it("keeps a variant's own title when the file has none, and remakes one made of values that change", async () => {
    const handle = 'partial-title'
    const { prefix, before, read, remove } = await storeFilled(handle)
    try {
      expect(before.variants.map((v: any) => v.title)).toEqual(['Custom variant name', 'M'])
      // The two variants trade sizes, in a file without variant titles.
      const file = csv('handle,title,option1_name,option1_value,sku', [
        [handle, 'Filled', 'Size', 'M', `${prefix}-S`],
        [handle, 'Filled', 'Size', 'S', `${prefix}-M`],
      ])
      expect(await imported(file)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
      const after = await read()
      expect(after.variants.map((v: any) => [v.sku, v.options.Size, v.title])).toEqual([
        [`${prefix}-S`, 'M', 'Custom variant name'],
        [`${prefix}-M`, 'S', 'S'],
      ])
      // Nothing else moved.
      expect({ ...after, variants: [] }).toEqual({ ...before, variants: [] })
      expect(after.variants[0]).toEqual({ ...before.variants[0], options: { Size: 'M' } })
    } finally {
      await remove()
    }
  })

  it('refuses a new product without a title, and a new variant without the options its product has', async () => {
    const handle = 'partial-refused'
    const { prefix, remove } = await storeFilled(handle)
    try {
      const file = `handle,sku,price_EUR\nno-such-product,NO-SUCH-1,100\n${handle},${prefix}-L,100\n`
      const dry = await post(file, { mode: 'per_row', dry_run: true })
      expect(dry.statusCode, dry.body).toBe(200)
      expect(dry.json()).toMatchObject({
        valid_rows: 0,
        failed_count: 2,
        errors: [
          { row: 1, path: 'title', message: 'is required for a new product' },
          { row: 2, path: 'option1_value', message: expect.stringMatching(/^needs Size/) },
        ],
      })
      const json = [{ handle: 'no-such-product', variants: [{ sku: 'NO-SUCH-1' }] }]
      const refused = await post(JSON.stringify(json), { format: 'json' })
      expect(refused.statusCode).toBe(422)
      expect(refused.json().errors).toEqual([
        { row: 1, path: '/title', message: 'is required for a new product' },
      ])
    } finally {
      await remove()
    }
  })

  it('imports back an export of a filled product unchanged after partial upserts', async () => {
    const handle = 'partial-round-trip'
    const { prefix, before, read, remove } = await storeFilled(handle)
    try {
      await imported(`handle,title,sku,price_EUR\n${handle},Filled,${prefix}-M,1400\n`)
      const expected = structuredClone(before)
      expected.variants[1].prices = [{ currency: 'EUR', amount: 1400, compare_at_amount: null }]
      expect(await read()).toEqual(expected)
      for (const format of ['csv', 'json', 'ndjson'] as const) {
        const all = await exportFile(format)
        const file =
          format === 'csv'
            ? rowsOf(all, [handle])
            : format === 'json'
              ? JSON.stringify(JSON.parse(all).filter((p: any) => p.handle === handle))
              : `${all.split('\n').filter((l) => l.includes(`"handle":"${handle}"`))[0]}\n`
        expect(await imported(file, { format })).toMatchObject({
          status: 'succeeded',
          updated_count: 1,
          errors: [],
        })
        expect(await read()).toEqual(expected)
        const again = await exportFile(format)
        expect(again).toBe(all)
      }
    } finally {
      await remove()
    }
  })

  /** A variant's prices as `CUR amount/compare-at` (`-` for none), in currency order. */
  const pricesOf = (variant: any) =>
    variant.prices.map((p: any) => `${p.currency} ${p.amount}/${p.compare_at_amount ?? '-'}`)

  it('changes the prices of the currencies a CSV has columns for and keeps the others', async () => {
    const handle = 'partial-prices'
    const { prefix, before, read, remove } = await storeFilled(handle)
    const [small, medium] = [`${prefix}-S`, `${prefix}-M`]
    /** Imports a file and expects the product as it was but for these variants' prices. */
    const expectPrices = async (file: string, s: string[], m: string[]) => {
      expect(await imported(file)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
      const after = await read()
      expect(after.variants.map(pricesOf)).toEqual([s, m])
      const unpriced = (p: any) => ({ ...p, variants: p.variants.map((v: any) => ({ ...v, prices: [] })) })
      expect(unpriced(after)).toEqual(unpriced(before))
    }
    try {
      expect(before.variants.map(pricesOf)).toEqual([['EUR 1000/1500', 'USD 1100/-'], ['EUR 1000/-']])
      // A currency added by its own columns; those the file has no column for stay.
      await expectPrices(
        csv('handle,sku,price_GBP,compare_at_GBP', [[handle, small, 900, 950]]),
        ['EUR 1000/1500', 'GBP 900/950', 'USD 1100/-'],
        ['EUR 1000/-'],
      )
      // One currency's prices from a spreadsheet: the others stay, and so does a compare-at
      // the file has no column for. A variant without the currency gets it, without compare-at.
      const euros = csv('handle,sku,price_EUR', [
        [handle, small, 1200],
        [handle, medium, 1300],
      ])
      const dry = await post(euros, { dry_run: true })
      expect(dry.json()).toMatchObject({ valid_rows: 1, failed_count: 0, errors: [] })
      // Named variants keep their stored values; those of a product without options cannot differ.
      const twins = csv('handle,title,sku,price_EUR', [
        ['partial-twins', 'Twins', 'TWIN-1', 100],
        ['partial-twins', 'Twins', 'TWIN-2', 100],
      ])
      expect((await post(twins, { dry_run: true })).json()).toMatchObject({
        errors: [{ row: 2, path: 'option1_value', message: 'another variant has the same options' }],
      })
      await expectPrices(euros, ['EUR 1200/1500', 'GBP 900/950', 'USD 1100/-'], ['EUR 1300/-'])
      await expectPrices(
        csv('handle,sku,price_GBP', [[handle, medium, 800]]),
        ['EUR 1200/1500', 'GBP 900/950', 'USD 1100/-'],
        ['EUR 1300/-', 'GBP 800/-'],
      )
      // A blank price cell removes that currency's price alone; a kept or given price keeps its
      // compare-at without a compare-at column.
      await expectPrices(
        csv('handle,sku,price_USD,price_GBP', [[handle, small, '', 990]]),
        ['EUR 1200/1500', 'GBP 990/950'],
        ['EUR 1300/-', 'GBP 800/-'],
      )
      // A compare-at column gives the compare-at: a blank clears it, the price stays.
      await expectPrices(
        csv('handle,sku,price_EUR,compare_at_EUR,price_GBP,compare_at_GBP', [
          [handle, small, 1200, '', 990, 1100],
          [handle, medium, 1300, 1600, 800, ''],
        ]),
        ['EUR 1200/-', 'GBP 990/1100'],
        ['EUR 1300/1600', 'GBP 800/-'],
      )
      // A compare-at needs a price beside it; blank both, the price and its compare-at go.
      const orphan = await post(csv('handle,sku,price_GBP,compare_at_GBP', [[handle, small, '', 1100]]))
      expect(orphan.statusCode).toBe(422)
      expect(orphan.json().errors).toEqual([
        { row: 1, path: 'compare_at_GBP', message: 'needs a price in price_GBP' },
      ])
      await expectPrices(
        csv('handle,sku,price_GBP,compare_at_GBP', [[handle, small, '', '']]),
        ['EUR 1200/-'],
        ['EUR 1300/1600', 'GBP 800/-'],
      )
      // The export of the product imports back unchanged.
      const expected = await read()
      const all = await exportFile('csv')
      expect(await imported(rowsOf(all, [handle]))).toMatchObject({ status: 'succeeded', updated_count: 1 })
      expect(await read()).toEqual(expected)
      expect(await exportFile('csv')).toBe(all)
    } finally {
      await remove()
    }
  })

  it("replaces a variant's prices with a JSON or NDJSON document's prices, and keeps them without", async () => {
    const handle = 'partial-json-prices'
    const { prefix, before, read, remove } = await storeFilled(handle)
    try {
      const json = [
        { handle, variants: [{ sku: `${prefix}-S`, prices: [{ currency: 'GBP', amount: 900 }] }] },
      ]
      expect(await imported(JSON.stringify(json), { format: 'json' })).toMatchObject({
        status: 'succeeded',
        updated_count: 1,
        errors: [],
      })
      // The list is the variant's prices: the euro and dollar prices go, a compare-at left out is none.
      const after = await read()
      expect(after.variants.map(pricesOf)).toEqual([['GBP 900/-'], ['EUR 1000/-']])
      expect({ ...after.variants[0], prices: [] }).toEqual({ ...before.variants[0], prices: [] })
      const ndjson = `${JSON.stringify({
        handle,
        variants: [
          { sku: `${prefix}-S`, weight_g: 1 },
          { sku: `${prefix}-M`, prices: [] },
        ],
      })}\n`
      expect(await imported(ndjson, { format: 'ndjson' })).toMatchObject({ status: 'succeeded', errors: [] })
      expect((await read()).variants.map(pricesOf)).toEqual([['GBP 900/-'], []])
    } finally {
      await remove()
    }
  })

  it('removes a base price a price list uses, as PATCH /admin/variants does: the list price waits unused', async () => {
    const { db } = node.runtime.database
    const handle = 'partial-listed'
    const { prefix, before, read, remove } = await storeFilled(handle)
    const small = before.variants[0]
    const list = await node.app.inject({
      method: 'POST',
      url: '/admin/price-lists',
      headers: adminAuth,
      payload: { name: 'Listed sale', prices: [{ variant_id: small.id, currency: 'EUR', amount: 800 }] },
    })
    expect(list.statusCode, list.body).toBe(201)
    const listed = () =>
      db
        .selectFrom('price_list_product_prices')
        .select(['currency_code', 'min_amount'])
        .where('product_id', '=', before.id)
        .execute()
    try {
      expect(await listed()).toEqual([{ currency_code: 'EUR', min_amount: expect.anything() }])
      const file = csv('handle,sku,price_EUR', [[handle, `${prefix}-S`, '']])
      expect((await post(file, { dry_run: true })).json()).toMatchObject({ failed_count: 0, errors: [] })
      expect(await imported(file)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
      expect((await read()).variants.map(pricesOf)).toEqual([['USD 1100/-'], ['EUR 1000/-']])
      // The list keeps its price, which counts for nothing without the base price.
      const kept = await db
        .selectFrom('price_list_prices')
        .select('amount')
        .where('variant_id', '=', small.id)
        .execute()
      expect(kept.map((r) => Number(r.amount))).toEqual([800])
      expect(await listed()).toEqual([])
      // The base price back, the list price counts again.
      await imported(csv('handle,sku,price_EUR', [[handle, `${prefix}-S`, 1000]]))
      expect((await listed()).map((r) => Number(r.min_amount))).toEqual([800])
    } finally {
      await node.app.inject({
        method: 'DELETE',
        url: `/admin/price-lists/${list.json().id}`,
        headers: adminAuth,
      })
      await remove()
    }
  })

  it('keeps the prices of currencies without columns when a per_row batch is written product by product', async () => {
    const { db } = node.runtime.database
    const handle = 'partial-retried'
    const { prefix, read, remove } = await storeFilled(handle)
    try {
      // Validated while SKU RACE-1 is free; taken before the job runs, so the batch fails at write
      // time and is written again one product at a time.
      const validated = await validateImport(
        db,
        'csv',
        'per_row',
        csv('handle,title,sku,price_EUR', [
          [handle, '', `${prefix}-S`, 1200],
          ['sku-race', 'Race', 'RACE-1', 100],
        ]),
      )
      expect(validated.errors).toEqual([])
      await created({ handle: 'sku-owner', title: 'Owner', variants: [{ sku: 'RACE-1' }] })
      const done = await finished(
        (await withTransaction(db, (trx) => stageImport(trx, node.runtime.jobs, validated, null))).id,
      )
      expect(done).toMatchObject({ status: 'succeeded', updated_count: 1, failed_count: 1 })
      expect((await read()).variants.map(pricesOf)).toEqual([['EUR 1200/1500', 'USD 1100/-'], ['EUR 1000/-']])
    } finally {
      await db.deleteFrom('products').where('handle', 'in', ['sku-owner', 'sku-race']).execute()
      await remove()
    }
  })

  it('writes cells a spreadsheet would run as formulas quoted, and imports them back as they were', async () => {
    const handle = 'rt-formulas'
    const texts = {
      title: '=HYPERLINK("https://evil.example","Click")',
      subtitle: "'=already quoted once",
      description: '+1 555 0100',
    }
    await created({
      handle,
      ...texts,
      tags: ['@home'],
      options: [{ name: 'Size', values: ['-S', 'M'] }],
      variants: [
        { sku: 'RT-FORMULA-S', title: '\tTabbed', options: { Size: '-S' } },
        { sku: 'RT-FORMULA-M', options: { Size: 'M' } },
      ],
    })
    const stored = async () => {
      const p = await product(handle)
      return [p.title, p.subtitle, p.description, p.tags, p.options, p.variants.map((v: any) => v.title)]
    }
    const before = await stored()
    const file = rowsOf(await exportFile('csv'), [handle])
    const cells = parse(file, { relax_column_count: true }).slice(1).flat() as string[]
    // Nothing in the file starts as a formula; what would have is quoted with an apostrophe.
    expect(cells.filter((cell) => /^[=+\-@\t\r]/.test(cell))).toEqual([])
    expect(cells).toEqual(
      expect.arrayContaining([`'${texts.title}`, `''=already quoted once`, "'@home", "'-S"]),
    )
    expect(await imported(file)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
    expect(await stored()).toEqual(before)
    expect(rowsOf(await exportFile('csv'), [handle])).toBe(file)
    await node.runtime.database.db.deleteFrom('products').where('handle', '=', handle).execute()
  })

  it('lists imports with a cursor', async () => {
    const first = await node.app.inject({ url: '/admin/products/imports?limit=2', headers: adminAuth })
    expect(first.statusCode).toBe(200)
    expect(first.json().data).toHaveLength(2)
    const next = await node.app.inject({
      url: `/admin/products/imports?limit=2&cursor=${first.json().next_cursor}`,
      headers: adminAuth,
    })
    expect(next.json().data[0].id < first.json().data[1].id).toBe(true)
    expect(
      (await node.app.inject({ url: '/admin/products/imports?cursor=bogus', headers: adminAuth })).statusCode,
    ).toBe(400)
    expect(
      (await node.app.inject({ url: `/admin/products/imports/${newId('imp')}`, headers: adminAuth }))
        .statusCode,
    ).toBe(404)
  })

  it('needs products:write to import and products:read to export', async () => {
    const analyst = await newStaffSession(node, 'role_analyst')
    const refused = await node.app.inject({
      method: 'POST',
      url: '/admin/products/import?format=json',
      headers: { ...bearer(analyst.accessToken), 'content-type': 'application/json' },
      payload: JSON.stringify([doc('forbidden')]),
    })
    expect(refused.statusCode).toBe(403)
    expect(refused.json().code).toBe('forbidden')
    const exported = await node.app.inject({
      url: '/admin/products/export',
      headers: bearer(analyst.accessToken),
    })
    expect(exported.statusCode).toBe(200)
    expect((await node.app.inject({ url: '/admin/products/export' })).statusCode).toBe(401)
  })

  it('documents the export under the media type each format is sent as', async () => {
    const spec = (await node.app.inject({ url: '/openapi.json' })).json()
    const ok = spec.paths['/admin/products/export'].get.responses['200']
    expect(Object.keys(ok.content).sort()).toEqual(Object.values(CSV_TYPES).sort())
    for (const [format, type] of Object.entries(CSV_TYPES)) {
      expect(ok.content[type].schema).toMatchObject({ type: 'string' })
      const file = await node.app.inject({
        url: `/admin/products/export?format=${format}`,
        headers: adminAuth,
      })
      expect(file.headers['content-type']).toBe(`${type}; charset=utf-8`)
    }
  })

  it('reports rows whose attributes break the schema as bad rows, in CSV and JSON', async () => {
    const header = 'handle,title,attributes,sku,price_EUR'
    const file = csv(header, [
      ['attr-good', 'Good', 'fit=slim', 'ATTR-GOOD', 1000],
      ['attr-colon', 'Colon', 'a:b=x', 'ATTR-COLON', 1000],
      ['attr-upper', 'Upper', 'Colour=black', 'ATTR-UPPER', 1000],
      ['attr-empty', 'Empty key', '=x', 'ATTR-EMPTY', 1000],
    ])
    const dry = await post(file, { mode: 'per_row', dry_run: true })
    expect(dry.statusCode, dry.body).toBe(200)
    expect(dry.json()).toMatchObject({ valid_rows: 1, failed_count: 3 })
    expect(dry.json().errors.map((e: any) => [e.row, e.path])).toEqual([
      [2, 'attributes'],
      [3, 'attributes'],
      [4, 'attributes'],
    ])
    const refused = await post(file)
    expect(refused.statusCode).toBe(422)
    expect(refused.json().code).toBe('import_invalid')
    const json = [
      { ...doc('attr-json-nested'), attributes: { colour: { nested: [1, 2] } } },
      { ...doc('attr-json-key'), attributes: { 'a:b': 'x' } },
      { ...doc('attr-json-number'), attributes: { '': 7 } },
    ]
    const result = await imported(JSON.stringify(json), { format: 'json', mode: 'per_row' })
    expect(result).toMatchObject({ status: 'succeeded', created_count: 0, failed_count: 3 })
    expect(result.errors.map((e: any) => [e.row, e.path])).toEqual([
      [1, '/attributes/colour'],
      [2, '/attributes/a:b'],
      [3, '/attributes/'],
    ])
  })

  it('reports a CSV attributes cell that repeats a key, as a repeated tag is, instead of keeping the last', async () => {
    const header = 'handle,title,tags,attributes,sku,price_EUR'
    const file = csv(header, [
      ['attr-once', 'Once', 'a|b', 'k=v|j=w', 'ATTR-ONCE', 1000],
      ['attr-twice', 'Twice', 'a|b', 'k=v|j=x|k=w', 'ATTR-TWICE', 1000],
      ['tag-twice', 'Tag twice', 'a|a', 'k=v', 'TAG-TWICE', 1000],
    ])
    const dry = await post(file, { mode: 'per_row', dry_run: true })
    expect(dry.statusCode, dry.body).toBe(200)
    expect(dry.json()).toMatchObject({ valid_rows: 1, failed_count: 2 })
    expect(dry.json().errors).toEqual([
      { row: 2, path: 'attributes', message: 'repeats the key k' },
      { row: 3, path: 'tags', message: expect.stringContaining('duplicate') },
    ])
    const result = await imported(file, { mode: 'per_row' })
    expect(result).toMatchObject({ status: 'succeeded', created_count: 1, failed_count: 2 })
    expect(await product('attr-twice')).toBeUndefined()
  })

  it('takes only http and https media URLs, naming the row and column or the JSON pointer', async () => {
    const header = 'handle,title,media,media_alt,sku'
    const file = csv(header, [
      ['media-web', 'Web', 'https://cdn.test/a.jpg|HTTP://cdn.test/b.jpg', 'a|b', 'MEDIA-WEB'],
      ['media-js', 'Script', 'https://cdn.test/a.jpg|javascript:alert(1)', 'a|b', 'MEDIA-JS'],
      ['media-data', 'Data', 'data:text/html;base64,PHNjcmlwdD4=', 'x', 'MEDIA-DATA'],
    ])
    const dry = await post(file, { mode: 'per_row', dry_run: true })
    expect(dry.statusCode, dry.body).toBe(200)
    expect(dry.json()).toMatchObject({ valid_rows: 1, failed_count: 2 })
    expect(dry.json().errors.map((e: any) => [e.row, e.path])).toEqual([
      [2, 'media'],
      [3, 'media'],
    ])
    const json = [
      { ...doc('media-json-ok'), media: [{ url: 'https://cdn.test/a.jpg', alt: 'a' }] },
      {
        ...doc('media-json-bad'),
        media: [
          { url: 'https://cdn.test/a.jpg', alt: 'a' },
          { url: 'vbscript:msgbox(1)', alt: 'b' },
        ],
      },
    ]
    const result = await post(JSON.stringify(json), { format: 'json', mode: 'per_row', dry_run: true })
    expect(result.statusCode, result.body).toBe(200)
    expect(result.json().errors.map((e: any) => [e.row, e.path])).toEqual([[2, '/media/1/url']])
  })

  it('reports a tax category that does not exist in the dry run, and one deleted before the job writes', async () => {
    const category = (method: 'PUT' | 'DELETE') =>
      node.app.inject({
        method,
        url: '/admin/tax/categories/import_art',
        headers: adminAuth,
        ...(method === 'PUT' ? { payload: { name: 'Art', default_kind: 'reduced' } } : {}),
      })
    expect((await category('PUT')).statusCode).toBe(200)
    const header = 'handle,title,tax_category,sku,price_EUR'
    const file = csv(header, [
      ['tax-standard', 'Standard', 'standard', 'TAX-STANDARD', 1000],
      ['tax-typo', 'Typo', 'standrd', 'TAX-TYPO', 1000],
      ['tax-art', 'Art', 'import_art', 'TAX-ART', 1000],
    ])
    const dry = await post(file, { mode: 'per_row', dry_run: true })
    expect(dry.statusCode, dry.body).toBe(200)
    expect(dry.json()).toMatchObject({ valid_rows: 2, failed_count: 1 })
    expect(dry.json().errors).toEqual([{ row: 2, path: 'tax_category', message: 'no tax category standrd' }])
    const refused = await post(file)
    expect(refused.statusCode).toBe(422)
    expect(refused.json().errors).toEqual([
      { row: 2, path: 'tax_category', message: 'no tax category standrd' },
    ])
    const json = await post(JSON.stringify([{ ...doc('tax-json'), tax_category: 'reducd' }]), {
      format: 'json',
      mode: 'per_row',
      dry_run: true,
    })
    expect(json.json().errors).toEqual([{ row: 1, path: '/tax_category', message: 'no tax category reducd' }])

    // Valid when checked; the category is deleted (no product uses it yet) before the job writes.
    const { db } = node.runtime.database
    const validated = await validateImport(
      db,
      'json',
      'per_row',
      JSON.stringify([doc('tax-beside'), { ...doc('tax-gone'), tax_category: 'import_art' }]),
    )
    expect(validated.errors).toEqual([])
    expect((await category('DELETE')).statusCode).toBe(204)
    const staged = await withTransaction(db, (trx) => stageImport(trx, node.runtime.jobs, validated, null))
    const result = await finished(staged.id)
    expect(result).toMatchObject({ status: 'succeeded', created_count: 1, failed_count: 1 })
    expect(result.errors).toEqual([{ row: 2, path: '/tax_category', message: 'no tax category import_art' }])
    expect(await product('tax-gone')).toBeUndefined()
  })

  it("refuses a JSON file's wrapper keys other than products, as a document's unknown fields are", async () => {
    const products = [doc('wrapped')]
    const mode = await post(JSON.stringify({ products, mode: 'per_row' }), { format: 'json', dry_run: true })
    expect(mode.statusCode, mode.body).toBe(400)
    expect(mode.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(mode.json()).toMatchObject({
      code: 'validation_failed',
      detail: expect.stringContaining('"mode" is not known'),
      errors: [{ path: 'body.mode', message: 'is not a known field' }],
    })
    const typo = await post(JSON.stringify({ product: products }), { format: 'json', dry_run: true })
    expect(typo.statusCode, typo.body).toBe(400)
    expect(typo.json().errors).toEqual([
      { path: 'body', message: 'must be an array of products or an object with products' },
      { path: 'body.product', message: 'is not a known field' },
    ])
    const fine = await post(JSON.stringify({ products }), { format: 'json', dry_run: true })
    expect(fine.json()).toMatchObject({ valid_rows: 1, error_count: 0 })
  })

  it('drops media URLs other than http and https stored before they were refused, and says which', async () => {
    const { db } = node.runtime.database
    const handle = 'media-legacy'
    const product = {
      ...doc(handle),
      tags: ['legacy-media'],
      media: [{ url: 'https://cdn.test/a.jpg', alt: 'a' }],
    }
    expect(await imported(JSON.stringify([product]), { format: 'json' })).toMatchObject({
      status: 'succeeded',
    })
    // What an import could store before such URLs were refused.
    const legacy = [
      { url: 'javascript:alert(1)', alt: 'script' },
      { url: 'HTTPS://cdn.test/a.jpg', alt: 'a' },
      { url: 'data:text/html;base64,PHNjcmlwdD4=', alt: 'data' },
      { url: 'http://cdn.test/b.jpg', alt: 'b' },
    ]
    const { id } = await db
      .updateTable('products')
      .set({ media: JSON.stringify(legacy) })
      .where('handle', '=', handle)
      .returning('id')
      .executeTakeFirstOrThrow()
    await webMediaOnly.up(db as unknown as Kysely<unknown>)
    // A second run removes and reports nothing more.
    await webMediaOnly.up(db as unknown as Kysely<unknown>)

    // The storefront has only the web URLs, in their order, the first as the thumbnail (nothing of
    // this product was read since its import: a node that migrates starts with an empty cache).
    const web = [legacy[1], legacy[3]]
    expect((await node.app.inject({ url: `/store/products/${handle}` })).json().media).toEqual(web)
    const listed = (await node.app.inject({ url: '/store/products?tag=legacy-media' })).json().data
    expect(listed.map((p: any) => p.thumbnail)).toEqual([web[0]])
    // Its export imports back.
    const file = rowsOf(await exportFile('csv'), [handle])
    expect(await imported(file)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
    // Staff can read what was removed, and from where.
    const audit = await db
      .selectFrom('audit_log')
      .select(['actor_type', 'resource_type', 'details'])
      .where('resource_id', '=', id)
      .execute()
    expect(audit).toEqual([
      {
        actor_type: 'system',
        resource_type: 'products',
        details: {
          removed: [
            { position: 0, ...legacy[0] },
            { position: 2, ...legacy[2] },
          ],
        },
      },
    ])
  })

  it('exports a stored attribute that is not text instead of cutting the CSV short', async () => {
    await imported(JSON.stringify([doc('legacy-attrs'), doc('legacy-after')]), { format: 'json' })
    const { db } = node.runtime.database
    // Written before attributes were validated: nothing the API accepts today stores this.
    await sql`update products set attributes = ${JSON.stringify({ colour: { nested: [1, 2] }, size: 7 })}::jsonb
      where handle = 'legacy-attrs'`.execute(db)
    try {
      const file = await exportFile('csv')
      const lines = file.trim().split('\n')
      const legacy = lines.find((l) => l.startsWith('legacy-attrs,'))
      expect(legacy).toContain('colour={""nested"":[1,2]}')
      expect(legacy).toContain('size=7')
      expect(lines.some((l) => l.startsWith('legacy-after,'))).toBe(true)
    } finally {
      await db.deleteFrom('products').where('handle', 'in', ['legacy-attrs', 'legacy-after']).execute()
    }
  })

  it('upserts some variants of a stored product from CSV, keeping the others and their option values', async () => {
    const sizes = ['S', 'M', 'L']
    const stored = {
      handle: 'tee',
      title: 'Tee',
      options: [{ name: 'Size', values: sizes }],
      variants: sizes.map((size) => ({
        sku: `TEE-${size}`,
        options: { Size: size },
        prices: [{ currency: 'EUR', amount: 1500 }],
      })),
    }
    expect(await imported(JSON.stringify([stored]), { format: 'json' })).toMatchObject({
      status: 'succeeded',
    })
    const file = 'handle,title,option1_name,option1_value,sku,price_EUR\ntee,Tee,Size,S,TEE-S,900\n'
    const dry = await post(file, { dry_run: true })
    expect(dry.statusCode, dry.body).toBe(200)
    expect(dry.json()).toMatchObject({ valid_rows: 1, failed_count: 0, errors: [] })
    const result = await imported(file)
    expect(result).toMatchObject({ status: 'succeeded', updated_count: 1, failed_count: 0, errors: [] })
    const tee = await product('tee')
    expect(tee.options).toEqual([{ name: 'Size', values: ['S', 'M', 'L'] }])
    expect(tee.variants.map((v: any) => [v.sku, v.options.Size, v.prices[0].amount])).toEqual([
      ['TEE-S', 'S', 900],
      ['TEE-M', 'M', 1500],
      ['TEE-L', 'L', 1500],
    ])
    // A value only the file names joins the stored ones, after them.
    const grown = await imported(
      'handle,title,option1_name,option1_value,sku,price_EUR\ntee,Tee,Size,XL,TEE-XL,900\n',
    )
    expect(grown).toMatchObject({ status: 'succeeded', updated_count: 1 })
    expect((await product('tee')).options).toEqual([{ name: 'Size', values: ['S', 'M', 'L', 'XL'] }])
    await node.runtime.database.db.deleteFrom('products').where('handle', '=', 'tee').execute()
  })

  /** A stored product of sizes S and M in black, for the tests of what an upsert keeps. */
  async function storeNarrow(handle: string) {
    const prefix = handle.toUpperCase()
    const stored = {
      handle,
      title: 'Narrow',
      options: [
        { name: 'Size', values: ['S', 'M'] },
        { name: 'Colour', values: ['Black'] },
      ],
      variants: ['S', 'M'].map((size) => ({
        sku: `${prefix}-${size}`,
        options: { Size: size, Colour: 'Black' } as Record<string, string>,
        prices: [{ currency: 'EUR', amount: 1500 }],
      })),
    }
    expect(await imported(JSON.stringify([stored]), { format: 'json' })).toMatchObject({
      status: 'succeeded',
    })
    return { stored, small: stored.variants[0]!, before: await product(handle) }
  }

  /** The dry run's report, the refusal of all_or_nothing and a per_row job's report all agree. */
  async function expectRefusedAlike(file: string, format: 'csv' | 'json', errors: unknown[]) {
    const dry = await post(file, { format, mode: 'per_row', dry_run: true })
    expect(dry.statusCode, dry.body).toBe(200)
    expect(dry.json()).toMatchObject({ valid_rows: 0, failed_count: 1, errors })
    const whole = await post(file, { format })
    expect(whole.statusCode, whole.body).toBe(422)
    expect(whole.json()).toMatchObject({ code: 'import_invalid', errors })
    const perRow = await imported(file, { format, mode: 'per_row' })
    expect(perRow).toMatchObject({ status: 'succeeded', updated_count: 0, failed_count: 1, errors })
  }

  it('reports in the dry run a kept variant that a JSON file narrowing the options would strand', async () => {
    const { stored, small, before } = await storeNarrow('narrow')
    const kept = 'kept variant NARROW-M (not in the import):'
    const cases: Array<[object, { path: string; message: string }]> = [
      [
        { ...stored, options: [{ name: 'Size', values: ['S'] }, stored.options[1]], variants: [small] },
        { path: '/options/0', message: `${kept} Size must be one of S` },
      ],
      [
        { ...stored, options: [stored.options[0]], variants: [{ ...small, options: { Size: 'S' } }] },
        { path: '/options', message: `${kept} Colour is not an option of the product` },
      ],
      [
        {
          ...stored,
          variants: [small, { ...small, sku: 'NARROW-M2', options: { Size: 'M', Colour: 'Black' } }],
        },
        { path: '/options', message: `${kept} another variant has the same options` },
      ],
    ]
    for (const [file, error] of cases)
      await expectRefusedAlike(JSON.stringify([file]), 'json', [{ row: 1, ...error }])
    // A CSV's option set drops an option its columns leave out, just as JSON's does.
    await expectRefusedAlike(
      csv('handle,title,option1_name,option1_value,sku,price_EUR', [
        ['narrow', 'Narrow', 'Size', 'S', 'NARROW-S', 900],
      ]),
      'csv',
      [{ row: 1, path: 'option1_name', message: `${kept} Colour is not an option of the product` }],
    )
    expect(await product('narrow')).toEqual(before)
    // Naming every variant, the file may drop the option.
    const sizesOnly = {
      ...stored,
      options: [stored.options[0]],
      variants: stored.variants.map((v) => ({ ...v, options: { Size: v.options.Size as string } })),
    }
    const dry = await post(JSON.stringify([sizesOnly]), { format: 'json', dry_run: true })
    expect(dry.json()).toMatchObject({ valid_rows: 1, errors: [] })
    expect(await imported(JSON.stringify([sizesOnly]), { format: 'json' })).toMatchObject({
      status: 'succeeded',
      updated_count: 1,
    })
    expect((await product('narrow')).options).toEqual([{ name: 'Size', values: ['S', 'M'] }])
  })

  it('points a kept variant missing a new option at that option', async () => {
    const { stored, small } = await storeNarrow('widen')
    const fit = { ...stored, options: [...stored.options, { name: 'Fit', values: ['Slim'] }] }
    const file = { ...fit, variants: [{ ...small, options: { ...small.options, Fit: 'Slim' } }] }
    await expectRefusedAlike(JSON.stringify([file]), 'json', [
      { row: 1, path: '/options/2', message: 'kept variant WIDEN-M (not in the import): needs Fit' },
    ])
    const header =
      'handle,title,option1_name,option1_value,option2_name,option2_value,option3_name,option3_value,sku'
    await expectRefusedAlike(
      csv(header, [['widen', 'Narrow', 'Size', 'S', 'Colour', 'Black', 'Fit', 'Slim', 'WIDEN-S']]),
      'csv',
      [{ row: 1, path: 'option3_name', message: 'kept variant WIDEN-M (not in the import): needs Fit' }],
    )
  })

  it('keeps the stored option values and their order unless the CSV lists them', async () => {
    const sizes = ['S', 'M', 'L', 'XL']
    const stored = {
      handle: 'cap',
      title: 'Cap',
      options: [{ name: 'Size', values: sizes }],
      // Variants in another order than the sizes, and XL not sold yet.
      variants: ['L', 'S', 'M'].map((size) => ({
        sku: `CAP-${size}`,
        options: { Size: size },
        prices: [{ currency: 'EUR', amount: 1500 }],
      })),
    }
    expect(await imported(JSON.stringify([stored]), { format: 'json' })).toMatchObject({
      status: 'succeeded',
    })
    const header = 'handle,title,option1_name,option1_value,sku,price_EUR'
    const sizesOf = async () => (await product('cap')).options[0].values
    // A price change on one variant leaves the option set alone.
    const repriced = csv(header, [['cap', 'Cap', 'Size', 'L', 'CAP-L', 1200]])
    expect((await post(repriced, { dry_run: true })).json()).toMatchObject({ valid_rows: 1, errors: [] })
    expect(await imported(repriced)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
    expect(await sizesOf()).toEqual(sizes)
    // M renamed on its variant's row: Medium joins at the end, and M stays until a list drops it.
    const renamed = csv(header, [
      ['cap', 'Cap', 'Size', 'S', 'CAP-S', 1500],
      ['cap', 'Cap', 'Size', 'Medium', 'CAP-M', 1500],
    ])
    expect(await imported(renamed)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
    expect(await sizesOf()).toEqual(['S', 'M', 'L', 'XL', 'Medium'])
    // A listed option is taken as given: it removes and reorders values.
    const listed = csv(`${header},option1_values`, [['cap', 'Cap', 'Size', 'S', 'CAP-S', 1500, 'S|Medium|L']])
    expect(await imported(listed)).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
    expect(await sizesOf()).toEqual(['S', 'Medium', 'L'])
    expect((await product('cap')).variants.map((v: any) => [v.sku, v.options.Size])).toEqual([
      ['CAP-L', 'L'],
      ['CAP-S', 'S'],
      ['CAP-M', 'Medium'],
    ])
    // A list that would strand a variant the file leaves out is refused, as a JSON option set is.
    await expectRefusedAlike(
      csv(`${header},option1_values`, [['cap', 'Cap', 'Size', 'S', 'CAP-S', 1500, 'S|L']]),
      'csv',
      [
        {
          row: 1,
          path: 'option1_name',
          message: 'kept variant CAP-M (not in the import): Size must be one of S, L',
        },
      ],
    )
    await node.runtime.database.db.deleteFrom('products').where('handle', '=', 'cap').execute()
  })

  it('adds imported variants after the stored ones, and moves none past a variant the file leaves out', async () => {
    const stored = doc('placed', ['S', 'M', 'L'])
    stored.options[0]!.values.push('XL', 'XXL')
    expect(await imported(JSON.stringify([stored]), { format: 'json' })).toMatchObject({
      status: 'succeeded',
    })
    const placed = async () =>
      (await product('placed')).variants.map((v: any) => `${v.sku.slice('PLACED-'.length)}@${v.position}`)
    expect(await placed()).toEqual(['S@0', 'M@1', 'L@2'])
    const header = 'handle,title,option1_name,option1_value,sku,price_EUR'
    const rows = (sizes: string[]) =>
      csv(
        header,
        sizes.map((size) => ['placed', 'Placed', 'Size', size, `PLACED-${size}`, 900]),
      )
    // A new variant goes last, as one added through the API does.
    expect(await imported(rows(['XL']))).toMatchObject({ status: 'succeeded', errors: [] })
    expect(await placed()).toEqual(['S@0', 'M@1', 'L@2', 'XL@3'])
    // A variant named alone keeps its place, beside a new one that goes last.
    expect(await imported(rows(['XXL', 'M']), { mode: 'per_row' })).toMatchObject({
      status: 'succeeded',
      errors: [],
    })
    expect(await placed()).toEqual(['S@0', 'M@1', 'L@2', 'XL@3', 'XXL@4'])
    // Named variants trade places in the file's order, within the places they held.
    expect(await imported(rows(['L', 'S']))).toMatchObject({ status: 'succeeded', errors: [] })
    expect(await placed()).toEqual(['L@0', 'M@1', 'S@2', 'XL@3', 'XXL@4'])
    // A file naming every variant sets their order.
    expect(await imported(rows(['XXL', 'XL', 'L', 'M', 'S']))).toMatchObject({
      status: 'succeeded',
      errors: [],
    })
    expect(await placed()).toEqual(['XXL@0', 'XL@1', 'L@2', 'M@3', 'S@4'])
    await node.runtime.database.db.deleteFrom('products').where('handle', '=', 'placed').execute()
  })

  it('lets an upsert trade options between stored variants, in JSON and CSV, in both modes', async () => {
    const sizes = ['S', 'M', 'L']
    const stored = {
      handle: 'swap',
      title: 'Swap',
      options: [{ name: 'Size', values: sizes }],
      variants: sizes.map((size) => ({
        sku: `SWAP-${size}`,
        options: { Size: size },
        prices: [{ currency: 'EUR', amount: 1500 }],
      })),
    }
    expect(await imported(JSON.stringify([stored]), { format: 'json' })).toMatchObject({
      status: 'succeeded',
    })
    const sizesOf = async () =>
      Object.fromEntries((await product('swap')).variants.map((v: any) => [v.sku, v.options.Size]))
    const traded = {
      ...stored,
      variants: [
        { sku: 'SWAP-S', options: { Size: 'M' } },
        { sku: 'SWAP-M', options: { Size: 'S' } },
      ],
    }
    const json = JSON.stringify([traded])
    const dry = await post(json, { format: 'json', dry_run: true })
    expect(dry.json()).toMatchObject({ valid_rows: 1, errors: [] })
    expect(await imported(json, { format: 'json' })).toMatchObject({
      status: 'succeeded',
      updated_count: 1,
      errors: [],
    })
    expect(await sizesOf()).toEqual({ 'SWAP-S': 'M', 'SWAP-M': 'S', 'SWAP-L': 'L' })
    // Three variants passing their sizes round, by CSV, one product at a time (per_row).
    const rotated = csv('handle,title,option1_name,option1_value,sku', [
      ['swap', 'Swap', 'Size', 'S', 'SWAP-S'],
      ['swap', 'Swap', 'Size', 'L', 'SWAP-M'],
      ['swap', 'Swap', 'Size', 'M', 'SWAP-L'],
    ])
    expect(await imported(rotated, { mode: 'per_row' })).toMatchObject({
      status: 'succeeded',
      updated_count: 1,
      failed_count: 0,
      errors: [],
    })
    expect(await sizesOf()).toEqual({ 'SWAP-S': 'S', 'SWAP-M': 'L', 'SWAP-L': 'M' })
    // Two of them trading by CSV beside a kept one, whose size stays in the option set.
    const swapped = await imported(
      csv('handle,title,option1_name,option1_value,sku', [
        ['swap', 'Swap', 'Size', 'M', 'SWAP-S'],
        ['swap', 'Swap', 'Size', 'S', 'SWAP-L'],
      ]),
    )
    expect(swapped).toMatchObject({ status: 'succeeded', updated_count: 1, errors: [] })
    expect(await sizesOf()).toEqual({ 'SWAP-S': 'M', 'SWAP-M': 'L', 'SWAP-L': 'S' })
    expect((await product('swap')).options).toEqual([{ name: 'Size', values: ['S', 'M', 'L'] }])
    await node.runtime.database.db.deleteFrom('products').where('handle', '=', 'swap').execute()
  })

  it('reads the stored variants a CSV upsert keeps a batch at a time, never the whole file at once', async () => {
    const sizes = ['S', 'M', 'L']
    const stored = ['batch-a', 'batch-b', 'batch-c'].map((handle) => doc(handle, sizes))
    expect(await imported(JSON.stringify(stored), { format: 'json' })).toMatchObject({
      status: 'succeeded',
    })
    // Each product named by its S variant alone: its M and L are kept, and so are their sizes.
    const file = csv(
      'handle,title,option1_name,option1_value,sku',
      stored.map((p) => [p.handle, p.title, 'Size', 'S', `${p.handle.toUpperCase()}-S`]),
    )
    let largest = 0
    const watched = node.runtime.database.db.withPlugin({
      transformQuery: ({ node }) => node,
      transformResult: async ({ result }) => {
        largest = Math.max(largest, result.rows.length)
        return result
      },
    })
    importTuning.batchSize = 2
    try {
      const validated = await validateImport(watched, 'csv', 'all_or_nothing', file)
      expect(validated.errors).toEqual([])
      expect(validated.valid.map((v) => v.document.options)).toEqual(
        stored.map(() => [{ name: 'Size', values: sizes }]),
      )
    } finally {
      importTuning.batchSize = 1000
    }
    // A batch of two products holds six stored variants; the file, nine.
    expect(largest).toBeGreaterThan(0)
    expect(largest).toBeLessThanOrEqual(6)
  })
})

it('tells which variant, option and value misfit the option set, without a path to read back', () => {
  const options = [{ name: 'Size', values: ['S'] }]
  const variants: Array<{ sku: string; options: Record<string, string> }> = [
    { sku: 'A', options: { Size: 'S' } },
    { sku: 'B', options: { Size: 'M', Colour: 'Red' } },
    { sku: 'C', options: {} },
    { sku: 'D', options: { Size: 'S' } },
  ]
  expect(variantOptionFaults(options, variants)).toEqual([
    { kind: 'not_allowed', variant: 1, sku: 'B', option: 'Size', value: 'M', allowed: ['S'] },
    { kind: 'unknown_option', variant: 1, sku: 'B', option: 'Colour', value: 'Red' },
    { kind: 'missing', variant: 2, sku: 'C', option: 'Size' },
    { kind: 'same_options', variant: 3, sku: 'D' },
  ])
})
