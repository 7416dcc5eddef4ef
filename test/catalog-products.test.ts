/**
 * Product admin: products with option sets, variants and prices are created, updated, archived
 * and deleted through /admin; bad documents get 4xx problem+json and leave nothing half-written;
 * every change shows on the storefront's next read.
 */
import { randomBytes } from 'node:crypto'
import { type Kysely, sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as backfillSales from '../src/modules/catalog/migrations/0005-sales-backfill.ts'
import * as listReferencePrices from '../src/modules/catalog/migrations/0006-list-reference-prices.ts'
import { createProduct, deleteVariant } from '../src/modules/catalog/products.ts'
import { countSale, uncountSale } from '../src/modules/catalog/sales.ts'
import { deleteCategory } from '../src/modules/tax/admin.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'
import { eventually } from './support/eventually.ts'
import { holdOpen, waitForLockWaits } from './support/locks.ts'
import { createOrderCatalog, type OrderCatalog, placeTestOrder } from './support/orders.ts'
import { bearer, createStaffMember, signInAndEnrol } from './support/staff.ts'

const tee = (handle = 'tee', sku = 'TEE') => ({
  handle,
  title: 'Organic Tee',
  description: 'A soft organic cotton tee',
  status: 'published',
  tags: ['organic', 'summer'],
  attributes: { material: 'cotton' },
  media: [{ url: 'https://cdn.example.test/tee.jpg', alt: 'The tee' }],
  options: [
    { name: 'Size', values: ['S', 'M'] },
    { name: 'Colour', values: ['Black', 'White'] },
  ],
  variants: [
    {
      sku: `${sku}-S-BLK`,
      options: { Size: 'S', Colour: 'Black' },
      weight_g: 180,
      prices: [
        { currency: 'EUR', amount: 2500, compare_at_amount: 3000 },
        { currency: 'USD', amount: 2700 },
      ],
    },
    {
      sku: `${sku}-M-WHT`,
      options: { Size: 'M', Colour: 'White' },
      prices: [
        { currency: 'EUR', amount: 2300 },
        { currency: 'USD', amount: 2500 },
      ],
    },
  ],
})

describeEachDatabase('catalog: product admin', (kind) => {
  let node: TestNode
  let eu: string

  const admin = (method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: unknown) =>
    node.app.inject({
      method,
      url,
      headers: adminAuth,
      ...(payload === undefined ? {} : { payload: payload as object }),
    })
  const store = (url: string) => node.app.inject({ url })
  const counts = async () => {
    const db = node.runtime.database.db
    const [p, v, pr] = await Promise.all(
      (['products', 'product_variants', 'variant_prices'] as const).map((t) =>
        db
          .selectFrom(t)
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow(),
      ),
    )
    return [Number(p?.n), Number(v?.n), Number(pr?.n)]
  }

  beforeAll(async () => {
    node = await startTestNode(kind)
    const region = await admin('POST', '/admin/regions', {
      name: 'Europe',
      currency: 'EUR',
      prices_include_tax: true,
      countries: ['DE', 'FR'],
    })
    expect(region.statusCode).toBe(201)
    eu = region.json().id
  })
  afterAll(() => node.close())

  it('creates a product with options, variants and prices, and the storefront shows it priced', async () => {
    const res = await admin('POST', '/admin/products', tee())
    expect(res.statusCode).toBe(201)
    const product = res.json()
    expect(product).toMatchObject({
      id: expect.stringMatching(/^prod_/),
      handle: 'tee',
      status: 'published',
      tax_category: 'standard',
      options: [
        { name: 'Size', values: ['S', 'M'] },
        { name: 'Colour', values: ['Black', 'White'] },
      ],
    })
    expect(product.variants).toHaveLength(2)
    expect(product.variants[0]).toMatchObject({
      id: expect.stringMatching(/^var_/),
      sku: 'TEE-S-BLK',
      title: 'S / Black',
      options: { Size: 'S', Colour: 'Black' },
      weight_g: 180,
      position: 0,
      prices: [
        { currency: 'EUR', amount: 2500, compare_at_amount: 3000 },
        { currency: 'USD', amount: 2700, compare_at_amount: null },
      ],
    })

    const page = await store(`/store/products/tee?region_id=${eu}`)
    expect(page.statusCode).toBe(200)
    const shown = page.json()
    expect(shown.variants.map((v: { price: unknown }) => v.price)).toEqual([
      { amount: 2500, currency: 'EUR', compare_at_amount: 3000, includes_tax: true, price_list_id: null },
      { amount: 2300, currency: 'EUR', compare_at_amount: null, includes_tax: true, price_list_id: null },
    ])
    const list = (await store(`/store/products?region_id=${eu}`)).json()
    const summary = list.data.find((p: { handle: string }) => p.handle === 'tee')
    expect(summary.price).toEqual({
      amount: 2300,
      currency: 'EUR',
      compare_at_amount: null,
      includes_tax: true,
      price_list_id: null,
    })
    expect(summary.thumbnail).toEqual({ url: 'https://cdn.example.test/tee.jpg', alt: 'The tee' })
  })

  it("shows a sale's from price with the compare-at of the variant it came from", async () => {
    // The cheapest base price (2000, was 5000) and the sale price (1500, was 2800) are different variants.
    const res = await admin('POST', '/admin/products', {
      ...tee('sale-tee', 'SALE'),
      variants: [
        {
          sku: 'SALE-S-BLK',
          options: { Size: 'S', Colour: 'Black' },
          prices: [{ currency: 'EUR', amount: 2000, compare_at_amount: 5000 }],
        },
        {
          sku: 'SALE-M-WHT',
          options: { Size: 'M', Colour: 'White' },
          prices: [{ currency: 'EUR', amount: 2500, compare_at_amount: 2800 }],
        },
      ],
    })
    expect(res.statusCode, res.body).toBe(201)
    const onSale = res.json().variants[1].id as string
    const list = await admin('POST', '/admin/price-lists', {
      name: 'One variant on sale',
      status: 'active',
      prices: [{ variant_id: onSale, currency: 'EUR', amount: 1500 }],
    })
    expect(list.statusCode, list.body).toBe(201)
    const expected = {
      amount: 1500,
      currency: 'EUR',
      compare_at_amount: 2800,
      includes_tax: true,
      price_list_id: list.json().id,
    }
    const page = (await store(`/store/products/sale-tee?region_id=${eu}`)).json()
    expect(page.variants[1].price).toEqual(expected)
    const summary = (await store(`/store/products?region_id=${eu}&limit=100`))
      .json()
      .data.find((p: { handle: string }) => p.handle === 'sale-tee')
    expect(summary.price).toEqual(expected)
    // A row written before this rule held the sale variant's base price alone: the migration fixes it.
    const db = node.runtime.database.db
    const row = () =>
      db
        .selectFrom('price_list_product_prices')
        .select('base_amount')
        .where('price_list_id', '=', list.json().id)
        .executeTakeFirstOrThrow()
    await sql`update price_list_product_prices set base_amount = 2500
      where price_list_id = ${list.json().id}`.execute(db)
    await listReferencePrices.up(db as unknown as Kysely<unknown>)
    expect(Number((await row()).base_amount)).toBe(2800)
    expect((await admin('DELETE', `/admin/price-lists/${list.json().id}`)).statusCode).toBe(204)
  })

  it.each([
    [
      'a variant missing an option',
      { variants: [{ sku: 'X-1', options: { Size: 'S' }, prices: [] }] },
      'body.variants.0.options',
    ],
    [
      'a value outside the option set',
      { variants: [{ sku: 'X-1', options: { Size: 'XL', Colour: 'Black' } }] },
      'body.variants.0.options.Size',
    ],
    [
      'an option the product does not have',
      { variants: [{ sku: 'X-1', options: { Size: 'S', Colour: 'Black', Fit: 'Slim' } }] },
      'body.variants.0.options.Fit',
    ],
    [
      'two variants with the same options',
      {
        variants: [
          { sku: 'X-1', options: { Size: 'S', Colour: 'Black' } },
          { sku: 'X-2', options: { Size: 'S', Colour: 'Black' } },
        ],
      },
      'body.variants.1.options',
    ],
    [
      'a SKU twice',
      {
        variants: [
          { sku: 'X-1', options: { Size: 'S', Colour: 'Black' } },
          { sku: 'X-1', options: { Size: 'M', Colour: 'Black' } },
        ],
      },
      'body.variants.1.sku',
    ],
    [
      'an unknown currency',
      {
        variants: [
          { sku: 'X-1', options: { Size: 'S', Colour: 'Black' }, prices: [{ currency: 'XYZ', amount: 1 }] },
        ],
      },
      'body.variants.0.prices.0.currency',
    ],
    [
      'a non-integer price',
      {
        variants: [
          {
            sku: 'X-1',
            options: { Size: 'S', Colour: 'Black' },
            prices: [{ currency: 'EUR', amount: 10.5 }],
          },
        ],
      },
      'body.variants.0.prices.0.amount',
    ],
    [
      'a negative price',
      {
        variants: [
          { sku: 'X-1', options: { Size: 'S', Colour: 'Black' }, prices: [{ currency: 'EUR', amount: -1 }] },
        ],
      },
      'body.variants.0.prices.0.amount',
    ],
    [
      'a price given as a string',
      {
        variants: [
          {
            sku: 'X-1',
            options: { Size: 'S', Colour: 'Black' },
            prices: [{ currency: 'EUR', amount: '100' }],
          },
        ],
      },
      'body.variants.0.prices.0.amount',
    ],
    ['a bad handle', { handle: 'Not A Slug' }, 'body.handle'],
    ['an unknown field', { colour: 'red' }, 'body.colour'],
  ])('refuses %s with 400 naming the field, writing nothing', async (_name, change, path) => {
    const before = await counts()
    const res = await admin('POST', '/admin/products', { ...tee('bad', 'BAD'), ...change })
    expect(res.statusCode).toBe(400)
    expect(res.headers['content-type']).toMatch(/application\/problem\+json/)
    expect(res.json().code).toBe('validation_failed')
    expect(res.json().errors.map((e: { path: string }) => e.path)).toContain(path)
    expect(await counts()).toEqual(before)
  })

  it('refuses attribute keys and values, option names and metadata keys outside their schema', async () => {
    const before = await counts()
    const refused = (res: Awaited<ReturnType<typeof admin>>) => {
      expect(res.statusCode, res.body).toBe(400)
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/)
      expect(res.json().code).toBe('validation_failed')
      return res.json().errors.map((e: { path: string }) => e.path) as string[]
    }
    const paths = refused(
      await admin('POST', '/admin/products', {
        ...tee('bad-attrs', 'BAD-ATTRS'),
        attributes: { Colour: { nested: [1, 2] }, 'a:b': 'x', '': 7 },
      }),
    )
    expect(paths).toEqual(
      expect.arrayContaining(['body.attributes.Colour', 'body.attributes.a:b', 'body.attributes.']),
    )
    for (const attributes of [
      { colour: { nested: [1, 2] } },
      { colour: 7 },
      { Colour: 'black' },
      { 'a:b': 'x' },
      { '': 'x' },
      { [`k${'x'.repeat(64)}`]: 'x' },
    ])
      refused(await admin('POST', '/admin/products', { ...tee('bad-attrs', 'BAD-ATTRS'), attributes }))
    refused(
      await admin('POST', '/admin/products', {
        ...tee('bad-attrs', 'BAD-ATTRS'),
        variants: [{ sku: 'BAD-ATTRS-1', options: { 'Size\n': { nested: true } } }],
      }),
    )
    for (const metadata of [{ [`k${'x'.repeat(64)}`]: 1 }])
      refused(await admin('POST', '/admin/products', { ...tee('bad-attrs', 'BAD-ATTRS'), metadata }))
    expect(await counts()).toEqual(before)

    // Metadata keys are free-form up to 64 characters; attribute keys are a documented slug.
    const fine = await admin('POST', '/admin/products', {
      ...tee('fine-attrs', 'FINE-ATTRS'),
      attributes: { fit_2: 'slim' },
      metadata: { 'Größe / a:b\n': { any: ['thing'] }, [`k${'x'.repeat(63)}`]: 1 },
    })
    expect(fine.statusCode, fine.body).toBe(201)
    const created = fine.json()
    refused(await admin('PATCH', `/admin/products/${created.id}`, { attributes: { 'a:b': 'x' } }))
    refused(
      await admin('PATCH', `/admin/variants/${created.variants[0].id}`, {
        options: { [`${'S'.repeat(65)}`]: 'x' },
      }),
    )
    expect((await admin('DELETE', `/admin/products/${created.id}`)).statusCode).toBe(204)
  })

  it('refuses a taken handle or SKU with 409, writing nothing', async () => {
    await admin('POST', '/admin/products', tee('taken', 'TAKEN'))
    const before = await counts()
    const handle = await admin('POST', '/admin/products', tee('taken', 'OTHER'))
    expect(handle.statusCode).toBe(409)
    expect(handle.json().code).toBe('handle_taken')
    const sku = await admin('POST', '/admin/products', tee('fresh', 'TAKEN'))
    expect(sku.statusCode).toBe(409)
    expect(sku.json().code).toBe('sku_taken')
    expect(await counts()).toEqual(before)
  })

  it('refuses an unknown category or collection with 400', async () => {
    const res = await admin('POST', '/admin/products', {
      ...tee('orphan', 'ORPHAN'),
      category_ids: ['cat_00000000000000000000000000'],
    })
    expect(res.statusCode).toBe(400)
    expect(res.json().errors[0].path).toBe('body.category_ids')
  })

  it('refuses a tax category that does not exist, on create and update, and takes one the store added', async () => {
    const before = await counts()
    const typo = await admin('POST', '/admin/products', {
      ...tee('tax-typo', 'TAX-TYPO'),
      tax_category: 'standrd',
    })
    expect(typo.statusCode, typo.body).toBe(400)
    expect(typo.json()).toMatchObject({
      code: 'validation_failed',
      detail: 'No tax category standrd',
      errors: [{ path: 'body.tax_category' }],
    })
    expect(await counts()).toEqual(before)

    const added = await admin('PUT', '/admin/tax/categories/tax_typo_art', {
      name: 'Art',
      default_kind: 'reduced',
    })
    expect(added.statusCode, added.body).toBe(200)
    const created = await admin('POST', '/admin/products', {
      ...tee('tax-typo', 'TAX-TYPO'),
      tax_category: 'tax_typo_art',
    })
    expect(created.statusCode, created.body).toBe(201)
    const id = created.json().id
    const patched = await admin('PATCH', `/admin/products/${id}`, {
      title: 'Renamed',
      tax_category: 'reducd',
    })
    expect(patched.statusCode, patched.body).toBe(400)
    expect(patched.json()).toMatchObject({
      code: 'validation_failed',
      errors: [{ path: 'body.tax_category' }],
    })
    expect((await admin('GET', `/admin/products/${id}`)).json()).toMatchObject({
      title: 'Organic Tee',
      tax_category: 'tax_typo_art',
    })
    const moved = await admin('PATCH', `/admin/products/${id}`, { tax_category: 'reduced' })
    expect(moved.statusCode, moved.body).toBe(200)
    expect(moved.json().tax_category).toBe('reduced')
  })

  it('takes only http and https media URLs, since storefronts put them in src and href', async () => {
    const before = await counts()
    const hostile = await admin('POST', '/admin/products', {
      ...tee('script-media', 'SCRIPT-MEDIA'),
      media: [
        { url: 'javascript:alert(document.cookie)', alt: 'x' },
        { url: 'data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==', alt: 'y' },
        { url: 'https://cdn.example.test/fine.jpg', alt: 'z' },
        { url: 'JavaScript:alert(1)//https://cdn.example.test/', alt: 'w' },
      ],
    })
    expect(hostile.statusCode, hostile.body).toBe(400)
    expect(hostile.json().code).toBe('validation_failed')
    expect(hostile.json().errors.map((e: { path: string }) => e.path)).toEqual([
      'body.media.0.url',
      'body.media.1.url',
      'body.media.3.url',
    ])
    expect(await counts()).toEqual(before)

    // The scheme is case-insensitive, as browsers read it.
    const fine = await admin('POST', '/admin/products', {
      ...tee('web-media', 'WEB-MEDIA'),
      media: [
        { url: 'HTTPS://cdn.example.test/a.jpg', alt: 'a' },
        { url: 'http://cdn.example.test/b.jpg', alt: 'b' },
      ],
    })
    expect(fine.statusCode, fine.body).toBe(201)
    const patched = await admin('PATCH', `/admin/products/${fine.json().id}`, {
      media: [{ url: 'vbscript:msgbox(1)', alt: 'x' }],
    })
    expect(patched.statusCode, patched.body).toBe(400)
    expect(patched.json().errors.map((e: { path: string }) => e.path)).toEqual(['body.media.0.url'])
    expect((await store('/store/products/web-media')).json().media[0].url).toBe(
      'HTTPS://cdn.example.test/a.jpg',
    )
  })

  it('names the field a taken SKU was sent in and the SKU, in words of its own', async () => {
    await admin('POST', '/admin/products', tee('sku-owner', 'SKU-OWNER'))
    const other = (await admin('POST', '/admin/products', tee('sku-other', 'SKU-OTHER'))).json()
    const taken = 'SKU-OWNER-M-WHT'
    const refused = (res: Awaited<ReturnType<typeof admin>>, path: string) => {
      expect(res.statusCode, res.body).toBe(409)
      expect(res.json()).toMatchObject({
        code: 'sku_taken',
        detail: `Another variant already uses SKU ${taken}`,
        errors: [{ path, message: `SKU ${taken} is already in use` }],
      })
      // Not PostgreSQL's own words: they name a column, not the request's field.
      expect(res.body).not.toMatch(/Key \(|already exists/)
    }
    const product = tee('sku-new', 'SKU-NEW')
    product.variants[1]!.sku = taken
    refused(await admin('POST', '/admin/products', product), 'body.variants.1.sku')
    refused(
      await admin('POST', `/admin/products/${other.id}/variants`, {
        sku: taken,
        options: { Size: 'S', Colour: 'White' },
      }),
      'body.sku',
    )
    refused(await admin('PATCH', `/admin/variants/${other.variants[0].id}`, { sku: taken }), 'body.sku')
  })

  it('names the variant an option set would strand, on the option set the update sends', async () => {
    const created = (await admin('POST', '/admin/products', tee('stranded', 'STRANDED'))).json()
    const refused = async (options: unknown) => {
      const res = await admin('PATCH', `/admin/products/${created.id}`, { options })
      expect(res.statusCode, res.body).toBe(400)
      expect(res.json().code).toBe('validation_failed')
      return res.json().errors
    }
    const colours = { name: 'Colour', values: ['Black', 'White'] }
    expect(await refused([{ name: 'Size', values: ['S'] }, colours])).toEqual([
      { path: 'body.options.0', message: 'variant STRANDED-M-WHT: Size must be one of S' },
    ])
    expect(await refused([{ name: 'Size', values: ['S', 'M'] }])).toEqual([
      { path: 'body.options', message: 'variant STRANDED-S-BLK: Colour is not an option of the product' },
      { path: 'body.options', message: 'variant STRANDED-M-WHT: Colour is not an option of the product' },
    ])
    expect(
      await refused([{ name: 'Size', values: ['S', 'M'] }, colours, { name: 'Fit', values: ['Slim'] }]),
    ).toEqual([
      { path: 'body.options.2', message: 'variant STRANDED-S-BLK: needs Fit' },
      { path: 'body.options.2', message: 'variant STRANDED-M-WHT: needs Fit' },
    ])
    expect(
      await refused([
        { name: 'Size', values: ['S', 'M'] },
        { name: 'Size', values: ['S'] },
      ]),
    ).toEqual([{ path: 'body.options', message: 'option names must be unique' }])
    expect((await admin('GET', `/admin/products/${created.id}`)).json().options).toEqual(created.options)
  })

  it('updates, adds and removes variants, and refuses an option set its variants no longer fit', async () => {
    const created = (await admin('POST', '/admin/products', tee('variant-ops', 'VOPS'))).json()
    const added = await admin('POST', `/admin/products/${created.id}/variants`, {
      sku: 'VOPS-M-BLK',
      options: { Size: 'M', Colour: 'Black' },
      prices: [{ currency: 'EUR', amount: 1999 }],
    })
    expect(added.statusCode).toBe(201)
    expect(added.json().variants.map((v: { sku: string }) => v.sku)).toEqual([
      'VOPS-S-BLK',
      'VOPS-M-WHT',
      'VOPS-M-BLK',
    ])

    const mismatch = await admin('POST', `/admin/products/${created.id}/variants`, {
      sku: 'VOPS-L',
      options: { Size: 'L', Colour: 'Black' },
    })
    expect(mismatch.statusCode).toBe(400)

    const newId = added.json().variants[2].id
    const repriced = await admin('PATCH', `/admin/variants/${newId}`, {
      prices: [{ currency: 'EUR', amount: 999 }],
    })
    expect(repriced.statusCode).toBe(200)
    expect((await store(`/store/products/variant-ops?region_id=${eu}`)).json().variants[2].price.amount).toBe(
      999,
    )

    const narrowed = await admin('PATCH', `/admin/products/${created.id}`, {
      options: [{ name: 'Size', values: ['S'] }],
    })
    expect(narrowed.statusCode).toBe(400)
    const still = (await admin('GET', `/admin/products/${created.id}`)).json()
    expect(still.options).toHaveLength(2)

    const removed = await admin('DELETE', `/admin/variants/${newId}`)
    expect(removed.statusCode).toBe(200)
    expect(removed.json().variants).toHaveLength(2)
    expect((await admin('DELETE', `/admin/variants/${newId}`)).statusCode).toBe(404)
  })

  it('renames generated variant titles with their options and option order, never a custom one', async () => {
    const created = (await admin('POST', '/admin/products', tee('retitled', 'RT'))).json()
    const [plain, named] = created.variants as Array<{ id: string; title: string }>
    expect(plain?.title).toBe('S / Black')
    const custom = await admin('PATCH', `/admin/variants/${named?.id}`, { title: 'The white one' })
    expect(custom.statusCode).toBe(200)

    const moved = await admin('PATCH', `/admin/variants/${plain?.id}`, {
      options: { Size: 'M', Colour: 'Black' },
    })
    expect(moved.statusCode).toBe(200)
    const titles = async () =>
      (await store(`/store/products/retitled?region_id=${eu}`))
        .json()
        .variants.map((v: { title: string; sku: string }) => `${v.sku}: ${v.title}`)
    expect(await titles()).toEqual(['RT-S-BLK: M / Black', 'RT-M-WHT: The white one'])

    const reordered = await admin('PATCH', `/admin/products/${created.id}`, {
      options: [
        { name: 'Colour', values: ['Black', 'White'] },
        { name: 'Size', values: ['S', 'M'] },
      ],
    })
    expect(reordered.statusCode).toBe(200)
    expect(await titles()).toEqual(['RT-S-BLK: Black / M', 'RT-M-WHT: The white one'])

    // A title given with the options wins over the generated one.
    const both = await admin('PATCH', `/admin/variants/${plain?.id}`, {
      options: { Size: 'S', Colour: 'White' },
      title: 'Snow, small',
    })
    expect(both.statusCode).toBe(200)
    expect(await titles()).toEqual(['RT-S-BLK: Snow, small', 'RT-M-WHT: The white one'])
  })

  // PostgreSQL only: PGlite runs one transaction at a time, so these races cannot happen there.
  describe.runIf(kind === 'postgres')('a variant edit racing its delete', () => {
    /** A product of two variants: the first for a test to edit and delete. */
    const variantToRace = async (tag: string) => {
      const created = await admin('POST', '/admin/products', tee(`race-${tag}`, `RACE-${tag}`))
      expect(created.statusCode, created.body).toBe(201)
      return { productId: created.json().id as string, variantId: created.json().variants[0].id as string }
    }
    /** The variant's delete, made and left uncommitted (its locks held) until release(). */
    const holdDelete = (variantId: string) =>
      holdOpen(node.runtime.database.db, async (trx) =>
        expect(await deleteVariant(trx, node.runtime.outbox, variantId)).toBeDefined(),
      )
    const stored = async (variantId: string) => {
      const db = node.runtime.database.db
      return {
        variant: await db.selectFrom('product_variants').select('id').where('id', '=', variantId).execute(),
        prices: await db
          .selectFrom('variant_prices')
          .select('amount')
          .where('variant_id', '=', variantId)
          .execute(),
      }
    }

    // The edit looks the variant up, then waits for the product; the delete commits meanwhile.
    it('answers an edit that waited on the delete with 404, as when the delete came first', async () => {
      const plain = await variantToRace('plain')
      const priced = await variantToRace('priced')
      const deletes = [await holdDelete(plain.variantId), await holdDelete(priced.variantId)]
      const edits = Promise.all([
        admin('PATCH', `/admin/variants/${plain.variantId}`, { title: 'Renamed' }),
        admin('PATCH', `/admin/variants/${priced.variantId}`, {
          prices: [{ currency: 'EUR', amount: 1234 }],
        }),
      ])
      await waitForLockWaits(node.runtime.database.db, 2)
      for (const d of deletes) await d.release()
      const [renamed, repriced] = await edits
      // Not 200 as if the title had been written, and not the prices' foreign key refusing them.
      for (const [edit, variantId] of [
        [renamed, plain.variantId],
        [repriced, priced.variantId],
      ] as const) {
        expect(edit.statusCode, edit.body).toBe(404)
        expect(edit.json()).toMatchObject({ code: 'not_found', detail: `No variant ${variantId}` })
        expect(await stored(variantId)).toEqual({ variant: [], prices: [] })
      }
    })

    // An edit locks the product, then writes the variant; a delete that locked the variant first
    // and then waited for the product would make the two wait on each other.
    it('queues a delete behind an edit that holds the product, so the edit writes and the delete follows', async () => {
      const { productId, variantId } = await variantToRace('queued')
      const { promise: deleteWaits, resolve: goOn } = Promise.withResolvers<void>()
      const { promise: productLocked, resolve: locked } = Promise.withResolvers<void>()
      const edit = withTransaction(node.runtime.database.db, async (trx) => {
        // Fail fast rather than wait for the deadlock detector: nothing may hold the variant.
        await sql`set local lock_timeout = '500ms'`.execute(trx)
        await trx.selectFrom('products').select('id').where('id', '=', productId).forUpdate().execute()
        locked()
        await deleteWaits
        await trx
          .updateTable('product_variants')
          .set({ title: 'Edited' })
          .where('id', '=', variantId)
          .execute()
      })
      await productLocked
      const deleted = admin('DELETE', `/admin/variants/${variantId}`)
      await waitForLockWaits(node.runtime.database.db, 1)
      goOn()
      await edit
      const answer = await deleted
      expect(answer.statusCode, answer.body).toBe(200)
      expect(answer.json().variants.map((v: { id: string }) => v.id)).not.toContain(variantId)
      expect(await stored(variantId)).toEqual({ variant: [], prices: [] })
    })
  })

  // PostgreSQL only: PGlite runs one transaction at a time, so these races cannot happen there.
  describe.runIf(kind === 'postgres')('a product write racing the delete of its tax category', () => {
    const storedTaxCategory = (handle: string) =>
      node.runtime.database.db
        .selectFrom('products')
        .select('tax_category')
        .where('handle', '=', handle)
        .execute()
    const addCategory = async (code: string) => {
      const res = await admin('PUT', `/admin/tax/categories/${code}`, {
        name: code,
        default_kind: 'standard',
      })
      expect(res.statusCode, res.body).toBe(200)
    }

    it('makes the delete wait for a product write naming the category, then refuses it', async () => {
      await addCategory('race_tax_a')
      const write = await holdOpen(node.runtime.database.db, (trx) =>
        createProduct(trx, node.runtime.outbox, {
          ...tee('race-tax-a', 'RACE-TAX-A'),
          tax_category: 'race_tax_a',
        } as Parameters<typeof createProduct>[2]),
      )
      const deleted = admin('DELETE', '/admin/tax/categories/race_tax_a')
      await waitForLockWaits(node.runtime.database.db, 1)
      await write.release()
      const answer = await deleted
      expect(answer.statusCode, answer.body).toBe(409)
      expect(answer.json()).toMatchObject({
        code: 'tax_category_in_use',
        detail: '1 product uses tax category race_tax_a; move them to another category first',
      })
      expect(await storedTaxCategory('race-tax-a')).toEqual([{ tax_category: 'race_tax_a' }])
    })

    it('refuses a product write that waited for the delete of its category', async () => {
      await addCategory('race_tax_b')
      const held = await holdOpen(node.runtime.database.db, async (trx) =>
        expect(await deleteCategory(trx, 'race_tax_b')).toBe(true),
      )
      const created = admin('POST', '/admin/products', {
        ...tee('race-tax-b', 'RACE-TAX-B'),
        tax_category: 'race_tax_b',
      })
      await waitForLockWaits(node.runtime.database.db, 1)
      await held.release()
      const answer = await created
      expect(answer.statusCode, answer.body).toBe(400)
      expect(answer.json()).toMatchObject({
        code: 'validation_failed',
        errors: [{ path: 'body.tax_category' }],
      })
      expect(await storedTaxCategory('race-tax-b')).toEqual([])
    })
  })

  it('ranks products with the words in their title before those with them elsewhere', async () => {
    const make = (handle: string, title: string, description: string) =>
      admin('POST', '/admin/products', { handle, title, description, status: 'published' })
    expect(
      (await make('plain-scarf', 'Plain Scarf', 'Pairs well with any zephyrine hoodie')).statusCode,
    ).toBe(201)
    expect((await make('zephyrine-cap', 'Zephyrine Cap', 'A cap')).statusCode).toBe(201)
    const found = (await store('/store/products?q=zephyrine'))
      .json()
      .data.map((p: { handle: string }) => p.handle)
    expect(found).toEqual(['zephyrine-cap', 'plain-scarf'])
    const second = await store('/store/products?q=zephyrine&limit=1')
    expect(second.json().data[0].handle).toBe('zephyrine-cap')
    const next = await store(`/store/products?q=zephyrine&limit=1&cursor=${second.json().next_cursor}`)
    expect(next.json().data.map((p: { handle: string }) => p.handle)).toEqual(['plain-scarf'])
    expect(next.json().next_cursor).toBeNull()
  })

  it('tells consumers which fields an edit changed, and nothing for an edit that changes nothing', async () => {
    const created = (await admin('POST', '/admin/products', tee('edited', 'EDIT'))).json()
    const updates = async () =>
      (
        await node.runtime.database.db
          .selectFrom('events')
          .select(sql<string[]>`payload -> 'changed'`.as('changed'))
          .where('type', '=', 'product.updated')
          .where('subject_id', '=', created.id)
          .orderBy('id')
          .execute()
      ).map((e) => e.changed)
    const edit = async (body: object) =>
      expect((await admin('PATCH', `/admin/products/${created.id}`, body)).statusCode).toBe(200)
    await edit({ title: 'Organic Tee', subtitle: 'Now softer', tags: ['organic', 'summer'] })
    await edit({ title: 'Organic Tee', attributes: { material: 'cotton' } })
    await edit({
      options: [
        { name: 'Colour', values: ['Black', 'White'] },
        { name: 'Size', values: ['S', 'M'] },
      ],
    })
    expect(await updates()).toEqual([['subtitle'], ['options', 'variants']])
  })

  it('archives a product off the storefront and deletes it', async () => {
    const created = (await admin('POST', '/admin/products', tee('short-lived', 'SHORT'))).json()
    expect((await store('/store/products/short-lived')).statusCode).toBe(200)
    const archived = await admin('POST', `/admin/products/${created.id}/archive`)
    expect(archived.json().status).toBe('archived')
    expect((await store('/store/products/short-lived')).statusCode).toBe(404)
    expect((await store(`/store/products/${created.id}`)).statusCode).toBe(404)
    expect((await admin('DELETE', `/admin/products/${created.id}`)).statusCode).toBe(204)
    expect((await admin('GET', `/admin/products/${created.id}`)).statusCode).toBe(404)
    const left = await node.runtime.database.db
      .selectFrom('product_variants')
      .select('id')
      .where('product_id', '=', created.id)
      .execute()
    expect(left).toEqual([])
  })

  it('pages through products in the admin list with a status filter', async () => {
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const res = await admin('GET', `/admin/products?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      expect(res.statusCode).toBe(200)
      seen.push(...res.json().data.map((p: { id: string }) => p.id))
      cursor = res.json().next_cursor
    } while (cursor)
    expect(new Set(seen).size).toBe(seen.length)
    const [total] = await counts()
    expect(seen).toHaveLength(total as number)
    const drafts = (await admin('GET', '/admin/products?status=draft')).json().data
    expect(drafts.every((p: { status: string }) => p.status === 'draft')).toBe(true)
  })

  describe('permissions', () => {
    it('lets an analyst read products but not write them', async () => {
      const viewer = await signInAndEnrol(node, await createStaffMember(node, 'role_analyst'))
      const list = await node.app.inject({ url: '/admin/products', headers: bearer(viewer.accessToken) })
      expect(list.statusCode).toBe(200)
      const write = await node.app.inject({
        method: 'POST',
        url: '/admin/products',
        headers: bearer(viewer.accessToken),
        payload: tee('viewer', 'VIEWER'),
      })
      expect(write.statusCode).toBe(403)
      expect(write.json().code).toBe('forbidden')
    })
  })
})

describeEachDatabase('catalog: best-selling counts', (kind) => {
  let node: TestNode
  let catalog: OrderCatalog

  beforeAll(async () => {
    node = await startTestNode(kind, { work: true })
    catalog = await createOrderCatalog(node)
  })
  afterAll(() => node.close())

  const db = () => node.runtime.database.db
  const productOf = async () =>
    (
      await db()
        .selectFrom('product_variants')
        .select('product_id')
        .where('id', '=', catalog.variants[0]!.id)
        .executeTakeFirstOrThrow()
    ).product_id
  const sold = async () =>
    (
      await db()
        .selectFrom('products')
        .select('sales_count')
        .where('id', '=', await productOf())
        .executeTakeFirstOrThrow()
    ).sales_count
  const cancel = async (orderId: string) => {
    const res = await node.app.inject({
      method: 'POST',
      url: `/admin/orders/${orderId}/cancel`,
      headers: adminAuth,
      payload: {},
    })
    expect(res.statusCode, res.body).toBe(200)
  }

  it("takes a canceled order's units back out, once whatever the redeliveries", async () => {
    const before = await sold()
    const kept = await placeTestOrder(node, catalog, { quantities: [2] })
    const canceled = await placeTestOrder(node, catalog, { quantities: [3] })
    await eventually(async () => ((await sold()) === before + 5 ? true : undefined))
    await cancel(canceled.id)
    await eventually(async () => ((await sold()) === before + 2 ? true : undefined))
    // Both events delivered again (at least once): nothing moves.
    expect(await uncountSale(db(), canceled.id)).toBe(false)
    expect(await countSale(db(), canceled.id, [{ variant_id: catalog.variants[0]!.id, quantity: 3 }])).toBe(
      false,
    )
    expect(await sold()).toBe(before + 2)
    expect(kept.status).not.toBe('canceled')
  })

  it('never counts an order whose cancellation arrives before its placing', async () => {
    const before = await sold()
    const orderId = `ord_${randomBytes(8).toString('hex')}`
    expect(await uncountSale(db(), orderId)).toBe(false)
    expect(await countSale(db(), orderId, [{ variant_id: catalog.variants[0]!.id, quantity: 4 }])).toBe(false)
    expect(await sold()).toBe(before)
  })

  it('backfills orders placed before sales were counted, canceled ones excepted, once', async () => {
    const before = await sold()
    const old = await placeTestOrder(node, catalog, { quantities: [2] })
    const oldCanceled = await placeTestOrder(node, catalog, { quantities: [5] })
    await eventually(async () => ((await sold()) === before + 7 ? true : undefined))
    await cancel(oldCanceled.id)
    await eventually(async () => ((await sold()) === before + 2 ? true : undefined))
    // As if both had been placed before the count existed.
    await sql`delete from product_sales_counted where order_id like ${`${old.id}%`} or order_id like ${`${oldCanceled.id}%`}`.execute(
      db(),
    )
    await sql`update products set sales_count = ${before} where id = ${await productOf()}`.execute(db())
    await backfillSales.up(db() as unknown as Kysely<unknown>)
    expect(await sold()).toBe(before + 2)
    await backfillSales.up(db() as unknown as Kysely<unknown>)
    expect(await sold()).toBe(before + 2)
    expect(await countSale(db(), old.id, [{ variant_id: catalog.variants[0]!.id, quantity: 2 }])).toBe(false)
    expect(await sold()).toBe(before + 2)
  })
})
