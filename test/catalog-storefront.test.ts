/**
 * The storefront read path on a generated catalog: pagination that visits every product once in
 * each sort, filters (category with descendants, collection, tag, attribute, price), search with
 * typo tolerance, facets that agree with the list, ETag/304, and caches that never serve a stale
 * price after a change, on one node or across nodes sharing Redis.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { catalogCacheOf } from '../src/modules/catalog/cache.ts'
import { parseSearch } from '../src/modules/catalog/search.ts'
import { seedCatalog } from '../src/modules/catalog/seed.ts'
import { listStoreProducts } from '../src/modules/catalog/storefront.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { createTestDatabase, describeEachDatabase } from './support/database.ts'
import { createTestLocation } from './support/inventory.ts'

const PRODUCTS = 60

interface Summary {
  id: string
  handle: string
  title: string
  tags: string[]
  price: { amount: number; currency: string } | null
}

describeEachDatabase('catalog: storefront', (kind) => {
  let node: TestNode
  let eu: string
  let usd: string

  const get = (url: string, headers: Record<string, string> = {}) => node.app.inject({ url, headers })
  const db = () => node.runtime.database.db

  /** Every product of a list, following next_cursor to the end. */
  async function all(query: string): Promise<Summary[]> {
    const items: Summary[] = []
    let cursor: string | null = null
    for (let pages = 0; pages < 100; pages++) {
      const res = await get(`/store/products?limit=7&${query}${cursor ? `&cursor=${cursor}` : ''}`)
      expect(res.statusCode, res.body).toBe(200)
      items.push(...res.json().data)
      cursor = res.json().next_cursor
      if (!cursor) return items
    }
    throw new Error('pagination did not end')
  }

  async function publishedIds(where = sql`true`): Promise<string[]> {
    const { rows } = await sql<{ id: string }>`
      select id from products p where status = 'published' and ${where} order by id`.execute(db())
    return rows.map((r) => r.id)
  }

  beforeAll(async () => {
    node = await startTestNode(kind)
    await seedCatalog(node.runtime, { products: PRODUCTS, batchSize: 25 })
    const regions = await db().selectFrom('regions').select(['id', 'currency_code']).execute()
    eu = regions.find((r) => r.currency_code === 'EUR')?.id as string
    usd = regions.find((r) => r.currency_code === 'USD')?.id as string
  })
  afterAll(() => node.close())

  it('visits every published product exactly once in each sort, in order', async () => {
    const expected = await publishedIds()
    const newest = await all('')
    expect(newest.map((p) => p.id)).toEqual([...expected].reverse())

    const byName = await all('sort=name')
    expect(byName.map((p) => p.id).sort()).toEqual(expected)
    const titles = byName.map((p) => p.title)
    const { rows } = await sql<{ ok: boolean }>`
      select (array_agg(t order by ord) = array_agg(t order by lower(t), t, ord)) as ok
      from unnest(${titles}::text[]) with ordinality as x(t, ord)`.execute(db())
    expect(rows[0]?.ok).toBe(true)

    const cheapest = await all(`sort=price_asc&region_id=${eu}`)
    expect(cheapest.map((p) => p.id).sort()).toEqual(expected)
    const amounts = cheapest.map((p) => p.price?.amount as number)
    expect(amounts).toEqual([...amounts].sort((a, b) => a - b))
    const dearest = await all(`sort=price_desc&region_id=${usd}`)
    expect(dearest.every((p) => p.price?.currency === 'USD')).toBe(true)
    const usdAmounts = dearest.map((p) => p.price?.amount as number)
    expect(usdAmounts).toEqual([...usdAmounts].sort((a, b) => b - a))

    const best = await all('sort=best_selling')
    expect(best.map((p) => p.id).sort()).toEqual(expected)
  })

  it('prices each product from its cheapest variant in the region currency', async () => {
    const [first] = (await get(`/store/products?limit=1&region_id=${eu}`)).json().data
    const { rows } = await sql<{ min: number }>`
      select min(vp.amount)::int as min from variant_prices vp join product_variants v on v.id = vp.variant_id
      where v.product_id = ${first.id} and vp.currency_code = 'EUR'`.execute(db())
    expect(first.price).toMatchObject({ amount: rows[0]?.min, currency: 'EUR', includes_tax: true })
    const us = (await get(`/store/products?limit=1&region_id=${usd}`)).json().data[0]
    expect(us.price).toMatchObject({ currency: 'USD', includes_tax: false })
    expect((await get('/store/products?limit=1')).json().data[0].price).toBeNull()
  })

  it('filters by a category with its descendants, collection, tag, attribute and price', async () => {
    const root = await db()
      .selectFrom('categories')
      .select(['id', 'path'])
      .where('parent_id', 'is', null)
      .executeTakeFirstOrThrow()
    const inTree = await publishedIds(sql`exists (
      select 1 from product_categories pc join categories c on c.id = pc.category_id
      where pc.product_id = p.id and (c.path = ${root.path} or c.path like ${`${root.path}/%`}))`)
    expect(inTree.length).toBeGreaterThan(0)
    expect((await all(`category_id=${root.id}`)).map((p) => p.id).sort()).toEqual(inTree)

    const collection = await db().selectFrom('collections').select('id').executeTakeFirstOrThrow()
    expect((await all(`collection_id=${collection.id}`)).map((p) => p.id).sort()).toEqual(
      await publishedIds(sql`p.collection_id = ${collection.id}`),
    )

    const tagged = await all('tag=new&tag=gift')
    expect(tagged.map((p) => p.id).sort()).toEqual(await publishedIds(sql`p.tags @> array['new', 'gift']`))

    const materials = await all('attribute=material:cotton&attribute=material:wool&attribute=fit:slim')
    expect(materials.map((p) => p.id).sort()).toEqual(
      await publishedIds(
        sql`p.attributes->>'material' in ('cotton', 'wool') and p.attributes->>'fit' = 'slim'`,
      ),
    )

    const ranged = await all(`region_id=${eu}&price_min=2000&price_max=8000`)
    expect(ranged.length).toBeGreaterThan(0)
    expect(
      ranged.every((p) => (p.price?.amount as number) >= 2000 && (p.price?.amount as number) <= 8000),
    ).toBe(true)
    expect(ranged.map((p) => p.id).sort()).toEqual(
      await publishedIds(sql`exists (select 1 from product_prices pp where pp.product_id = p.id
        and pp.currency_code = 'EUR' and pp.min_amount between 2000 and 8000)`),
    )
  })

  it('counts facets that agree with the filtered list', async () => {
    const res = await get('/store/products?tag=new&facets=true&limit=100')
    const { data, facets } = res.json()
    const tagCounts = new Map<string, number>()
    for (const p of data as Summary[]) for (const t of p.tags) tagCounts.set(t, (tagCounts.get(t) ?? 0) + 1)
    expect(
      Object.fromEntries(facets.tags.map((f: { value: string; count: number }) => [f.value, f.count])),
    ).toEqual(Object.fromEntries(tagCounts))
    expect(facets.tags.find((f: { value: string }) => f.value === 'new').count).toBe(data.length)
    const materialTotal = facets.attributes.material.reduce(
      (n: number, f: { count: number }) => n + f.count,
      0,
    )
    expect(materialTotal).toBe(data.length)
  })

  it('counts a category facet as the products its filter lists, descendants included, each once', async () => {
    // One product in a leaf, its sibling and their parent: listed once under the parent, so counted once.
    const { rows } = await sql<{ product_id: string; sibling: string; parent: string }>`
      select pc.product_id, sib.id as sibling, leaf.parent_id as parent
      from product_categories pc
      join products p on p.id = pc.product_id and p.status = 'published'
      join categories leaf on leaf.id = pc.category_id
      join categories sib on sib.parent_id = leaf.parent_id and sib.id <> leaf.id
      order by pc.product_id limit 1`.execute(db())
    const twin = rows[0]!
    await sql`insert into product_categories (product_id, category_id)
      values (${twin.product_id}, ${twin.sibling}), (${twin.product_id}, ${twin.parent})
      on conflict do nothing`.execute(db())
    await catalogCacheOf(node.runtime).invalidate()
    try {
      const categories = await db().selectFrom('categories').select('id').execute()
      for (const filter of ['', 'tag=new&']) {
        const res = await get(`/store/products?${filter}facets=true&limit=1`)
        expect(res.statusCode, res.body).toBe(200)
        const counted = new Map<string, number>(
          res.json().facets.categories.map((f: { value: string; count: number }) => [f.value, f.count]),
        )
        const listed = new Map<string, number>()
        for (const { id } of categories) {
          const page = await get(`/store/products?${filter}category_id=${id}&limit=100`)
          const n = page.json().data.length
          if (n > 0) listed.set(id, n)
        }
        expect(Object.fromEntries(counted)).toEqual(Object.fromEntries(listed))
      }
    } finally {
      await sql`delete from product_categories
        where product_id = ${twin.product_id} and category_id in (${twin.sibling}, ${twin.parent})`.execute(
        db(),
      )
      await catalogCacheOf(node.runtime).invalidate()
    }
  })

  it('finds products by words, by prefix, and despite a typo', async () => {
    const hoodie = await db()
      .selectFrom('products')
      .select(['id', 'title'])
      .where('status', '=', 'published')
      .where('title', 'like', '%Hoodie%')
      .executeTakeFirst()
    const target =
      hoodie ??
      (await db()
        .selectFrom('products')
        .select(['id', 'title'])
        .where('status', '=', 'published')
        .executeTakeFirstOrThrow())
    const word = target.title.split(' ').at(-1) as string
    const exact = (await get(`/store/products?q=${encodeURIComponent(word)}&limit=100`)).json()
      .data as Summary[]
    expect(exact.map((p) => p.id)).toContain(target.id)
    const prefix = (await get(`/store/products?q=${encodeURIComponent(word.slice(0, 4))}&limit=100`)).json()
      .data
    expect(prefix.map((p: Summary) => p.id)).toContain(target.id)
    // Swap two letters in the middle: no word matches, the similarity fallback does.
    const typo = `${word.slice(0, 2)}${word[3]}${word[2]}${word.slice(4)}`
    const fuzzy = (
      await get(
        `/store/products?q=${encodeURIComponent(`${target.title.split(' ')[0]} ${typo}`)}&limit=100&facets=true`,
      )
    ).json()
    expect(fuzzy.data.map((p: Summary) => p.id)).toContain(target.id)
    // The facets count what the list matched, with the typo search's own thresholds.
    expect(fuzzy.next_cursor).toBeNull()
    const tagCounts = new Map<string, number>()
    for (const p of fuzzy.data as Summary[])
      for (const t of p.tags) tagCounts.set(t, (tagCounts.get(t) ?? 0) + 1)
    expect(
      Object.fromEntries(fuzzy.facets.tags.map((f: { value: string; count: number }) => [f.value, f.count])),
    ).toEqual(Object.fromEntries(tagCounts))
  })

  it('ranks title matches first, newest first in each tier, across pages and in a region', async () => {
    // A node of its own: the products made here would change what the other tests see first.
    const own = await startTestNode(kind)
    try {
      await seedCatalog(own.runtime, { products: 2, batchSize: 2 })
      const regions = await own.runtime.database.db
        .selectFrom('regions')
        .select(['id', 'currency_code'])
        .execute()
      const euro = regions.find((r) => r.currency_code === 'EUR')!.id
      const dollar = regions.find((r) => r.currency_code === 'USD')!.id
      const create = async (title: string, description: string) => {
        const res = await own.app.inject({
          method: 'POST',
          url: '/admin/products',
          headers: adminAuth,
          payload: {
            handle: `zephyr-${Math.random().toString(36).slice(2, 10)}`,
            title,
            description,
            status: 'published',
            variants: [
              {
                sku: `ZEP-${Math.random().toString(36).slice(2, 10)}`,
                prices: [{ currency: 'EUR', amount: 1000 }],
              },
            ],
          },
        })
        expect(res.statusCode, res.body).toBe(201)
        return res.json().id as string
      }
      const inText: string[] = []
      const inTitle: string[] = []
      for (let i = 0; i < 5; i++) {
        inText.push(await create(`Plain thing ${i}`, 'Woven from zephyrine yarn'))
        inTitle.push(await create(`Zephyrine scarf ${i}`, 'Soft'))
      }
      const pages = async (query: string, limit = 7) => {
        const items: Summary[] = []
        let cursor: string | null = null
        do {
          const url: string = `/store/products?limit=${limit}&${query}${cursor ? `&cursor=${cursor}` : ''}`
          const res = await own.app.inject({ url })
          expect(res.statusCode, res.body).toBe(200)
          const body = res.json() as { data: Summary[]; next_cursor: string | null }
          items.push(...body.data)
          cursor = body.next_cursor
        } while (cursor)
        return items
      }
      const expected = [...inTitle.reverse(), ...inText.reverse()]
      expect((await pages('q=zephyrine')).map((p) => p.id)).toEqual(expected)
      // Pages the title matches fill alone, one that straddles the tiers, and ones past them.
      for (const limit of [2, 3, 4]) {
        expect((await pages(`q=zephyrine&region_id=${euro}`, limit)).map((p) => p.id)).toEqual(expected)
      }
      const priced = await pages(`q=zephyrine&region_id=${euro}`)
      expect(priced.map((p) => p.id)).toEqual(expected)
      expect(priced.every((p) => p.price?.currency === 'EUR')).toBe(true)
      // Not sold in US dollars: a search in that region finds none of them.
      expect(await pages(`q=zephyrine&region_id=${dollar}`)).toEqual([])
    } finally {
      await own.close()
    }
  })

  it.each([
    ['an unknown filter', '/store/products?colour=red', 'validation_failed'],
    ['limit 0', '/store/products?limit=0', 'validation_failed'],
    ['a huge limit', '/store/products?limit=100000', 'validation_failed'],
    ['a negative limit', '/store/products?limit=-5', 'validation_failed'],
    ['a forged cursor', '/store/products?cursor=bm90LWEtY3Vyc29y', 'invalid_cursor'],
    ['a 10 KB search', `/store/products?q=${'a'.repeat(10_240)}`, 'validation_failed'],
    ['a search of symbols only', `/store/products?q=${encodeURIComponent("'; --")}`, 'validation_failed'],
    ['a price sort without a region', '/store/products?sort=price_asc', 'validation_failed'],
    ['a price filter without a region', '/store/products?price_min=100', 'validation_failed'],
    ['an unknown region', '/store/products?region_id=reg_00000000000000000000000000', 'validation_failed'],
    ['a malformed region id', '/store/products?region_id=eu', 'validation_failed'],
    ['a non-integer price bound', '/store/products?price_min=1.5', 'validation_failed'],
    ['a malformed attribute filter', '/store/products?attribute=material', 'validation_failed'],
  ])('answers %s with 400 problem+json', async (_name, url, code) => {
    const res = await get(url)
    expect(res.statusCode).toBe(400)
    expect(res.headers['content-type']).toMatch(/application\/problem\+json/)
    expect(res.json().code).toBe(code)
  })

  it('falls back to substring matching where pg_trgm is missing', async () => {
    const page = await listStoreProducts(db(), {
      limit: 100,
      search: { ...parseSearch('OODI'), mode: 'substring' },
      customerGroupIds: [],
      at: new Date(),
    })
    expect(page.data.length).toBeGreaterThan(0)
    expect(page.data.every((p) => p.title.toLowerCase().includes('oodi'))).toBe(true)
    expect(page.data.map((p) => p.id).sort()).toEqual(await publishedIds(sql`p.title ilike '%oodi%'`))
  })

  it('treats SQL metacharacters in a search as text', async () => {
    for (const q of ["hoodie' or 1=1 --", 'tee); drop table products; --', 'tee%_\\', 'tee:* & !']) {
      const res = await get(`/store/products?q=${encodeURIComponent(q)}`)
      expect(res.statusCode, q).toBe(200)
    }
    expect((await publishedIds()).length).toBeGreaterThan(0)
  })

  it('refuses forged cursors and NUL characters with a 400, never a 500', async () => {
    const forge = (key: unknown) => Buffer.from(JSON.stringify(key)).toString('base64url')
    // The list's own tag, taken from a cursor it issued, so that only the forged key is wrong.
    const tagOf = async (query: string) => {
      const cursor = (await get(`/store/products?limit=1&${query}`)).json().next_cursor as string
      return JSON.parse(Buffer.from(cursor, 'base64url').toString())[1] as string
    }
    for (const [sort, key] of [
      ['price_asc', [1.5, 'prod_x']],
      ['best_selling', [2 ** 40 + 0.5, 'prod_x']],
      ['newest', ['prod\u0000x']],
    ] as const) {
      const query = `sort=${sort}&region_id=${eu}`
      const res = await get(`/store/products?${query}&cursor=${forge([sort, await tagOf(query), ...key])}`)
      expect(res.statusCode, `${sort} ${res.body}`).toBe(400)
      expect(res.json().code).toBe('invalid_cursor')
    }
    // A real price cursor beyond the int range of sales counts pages best-sellers without an overflow.
    const best = await tagOf('sort=best_selling')
    const big = await get(
      `/store/products?sort=best_selling&cursor=${forge(['best_selling', best, 2 ** 40, 'prod_zzz'])}`,
    )
    expect(big.statusCode, big.body).toBe(200)
    for (const url of [
      '/store/products/%00',
      '/store/products?tag=%00',
      '/store/products/a%00b/availability',
    ]) {
      const res = await get(url)
      expect(res.statusCode, `${url} ${res.body}`).toBe(400)
      expect(res.json().code).toBe('validation_failed')
    }
    const before = await db()
      .selectFrom('products')
      .select(db().fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow()
    const write = await node.app.inject({
      method: 'POST',
      url: '/admin/products',
      headers: adminAuth,
      payload: { handle: 'nul-title', title: 'Nul\u0000Title' },
    })
    expect(write.statusCode, write.body).toBe(400)
    const after = await db()
      .selectFrom('products')
      .select(db().fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow()
    expect(Number(after.n)).toBe(Number(before.n))
  })

  it('refuses a cursor from another sort', async () => {
    const byName = (await get('/store/products?sort=name&limit=2')).json()
    const res = await get(`/store/products?sort=price_asc&region_id=${eu}&cursor=${byName.next_cursor}`)
    expect(res.statusCode).toBe(400)
    expect(res.json().code).toBe('invalid_cursor')
  })

  it('refuses a cursor from another sort whose key has the same shape', async () => {
    const cursorOf = async (query: string) => {
      const res = await get(`/store/products?limit=2&${query}`)
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json().next_cursor, query).toEqual(expect.any(String))
      return res.json().next_cursor as string
    }
    const queries = {
      price_asc: `sort=price_asc&region_id=${eu}`,
      price_desc: `sort=price_desc&region_id=${eu}`,
      best_selling: 'sort=best_selling',
      // Every seeded description says "designed for".
      relevance: 'q=designed&sort=relevance',
    }
    const cursors = Object.fromEntries(
      await Promise.all(Object.entries(queries).map(async ([sort, q]) => [sort, await cursorOf(q)])),
    ) as Record<keyof typeof queries, string>
    for (const [from, cursor] of Object.entries(cursors))
      for (const [to, query] of Object.entries(queries)) {
        const res = await get(`/store/products?limit=2&${query}&cursor=${cursor}`)
        if (from === to) expect(res.statusCode, `${from} ${res.body}`).toBe(200)
        else {
          expect(res.statusCode, `${from} cursor on ${to}: ${res.body}`).toBe(400)
          expect(res.json()).toMatchObject({ code: 'invalid_cursor', errors: [{ path: 'query.cursor' }] })
        }
      }
  })

  it('refuses a cursor from another filter or region, and takes one from the same filters in any order', async () => {
    const cursorOf = async (query: string) => {
      const res = await get(`/store/products?limit=2&${query}`)
      expect(res.json().next_cursor, `${query}: ${res.body}`).toEqual(expect.any(String))
      return res.json().next_cursor as string
    }
    const tags = (await all('')).flatMap((p) => p.tags)
    const [first, second] = [...new Set(tags)] as [string, string]
    const refused = [
      // A price sort's key is an amount in the region's currency: another region's would skip products.
      [`sort=price_asc&region_id=${eu}`, `sort=price_asc&region_id=${usd}`],
      [`tag=${first}`, `tag=${second}`],
      [`tag=${first}`, ''],
      ['q=designed', 'q=hoodie'],
      [`sort=name&price_min=1&region_id=${eu}`, `sort=name&price_min=2&region_id=${eu}`],
      // Out-of-stock products are not filtered out by in_stock=false: the same list as without it.
      ['in_stock=false', 'in_stock=true'],
    ]
    for (const [from, to] of refused as Array<[string, string]>) {
      const res = await get(`/store/products?limit=2&${to}&cursor=${await cursorOf(from)}`)
      expect(res.statusCode, `${from} cursor on ${to}: ${res.body}`).toBe(400)
      expect(res.json()).toMatchObject({ code: 'invalid_cursor', errors: [{ path: 'query.cursor' }] })
    }
    const both = await cursorOf(`tag=${first}&tag=${second}&in_stock=false`)
    const swapped = await get(`/store/products?limit=2&tag=${second}&tag=${first}&cursor=${both}`)
    expect(swapped.statusCode, swapped.body).toBe(200)
  })

  it("filters to products in stock and shows each variant's availability, fresh after a receipt", async () => {
    const inStockBefore = await all('in_stock=true')
    expect(inStockBefore).toEqual([])
    const [first] = (await get('/store/products?limit=1')).json().data
    const page = await get(`/store/products/${first.handle}`)
    expect(page.json().variants.every((v: { in_stock: boolean }) => v.in_stock === false)).toBe(true)

    const location = await createTestLocation(db())
    const sku = page.json().variants[1].sku
    const receipt = await node.app.inject({
      method: 'POST',
      url: '/admin/inventory/receipts',
      headers: adminAuth,
      payload: { location_id: location, lines: [{ sku, quantity: 3 }] },
    })
    expect(receipt.statusCode, receipt.body).toBe(201)
    // The cached page must not keep saying "sold out".
    const after = (await get(`/store/products/${first.handle}`)).json()
    expect(after.variants.map((v: { in_stock: boolean }) => v.in_stock)).toEqual(
      after.variants.map((_: unknown, i: number) => i === 1),
    )
    expect(JSON.stringify(after)).not.toContain('"available"')
    expect((await all('in_stock=true')).map((p) => p.id)).toEqual([first.id])

    // An untracked variant is always sellable: its product joins the list, and no other does.
    const [, second] = (await get('/store/products?limit=2')).json().data
    const secondPage = (await get(`/store/products/${second.handle}`)).json()
    const untrack = await node.app.inject({
      method: 'PATCH',
      url: `/admin/variants/${secondPage.variants[0].id}`,
      headers: adminAuth,
      payload: { manage_inventory: false },
    })
    expect(untrack.statusCode, untrack.body).toBe(200)
    expect(new Set((await all('in_stock=true')).map((p) => p.id))).toEqual(new Set([first.id, second.id]))
    expect(
      (await get(`/store/products/${second.handle}`))
        .json()
        .variants.map((v: { in_stock: boolean }) => v.in_stock),
    ).toEqual(secondPage.variants.map((_: unknown, i: number) => i === 0))

    // Backorders make a sold-out variant buyable: the cached page says so on the next read.
    const [, , third] = (await get('/store/products?limit=3')).json().data
    const thirdPage = (await get(`/store/products/${third.handle}`)).json()
    expect(thirdPage.variants[0].in_stock).toBe(false)
    const backorder = await node.app.inject({
      method: 'PUT',
      url: `/admin/inventory/variants/${thirdPage.variants[0].id}/policy`,
      headers: adminAuth,
      payload: { allow_backorder: true },
    })
    expect(backorder.statusCode, backorder.body).toBe(200)
    expect((await get(`/store/products/${third.handle}`)).json().variants[0].in_stock).toBe(true)

    // The live route: never cached, and no counts unless the store publishes them.
    const live = await get(`/store/products/${first.handle}/availability`)
    expect(live.statusCode, live.body).toBe(200)
    expect(live.headers['cache-control']).toBe('no-store')
    expect(live.json().product_id).toBe(first.id)
    expect(live.json().variants.map((v: { variant_id: string }) => v.variant_id)).toEqual(
      after.variants.map((v: { id: string }) => v.id),
    )
    expect(live.json().variants[1]).toEqual({
      variant_id: after.variants[1].id,
      in_stock: true,
      available: null,
      backorder: false,
      preorder: false,
    })
    expect(live.json().variants[0]).toMatchObject({ in_stock: false, available: null })
  })

  it('tells units left per shipping country when the store publishes counts', async () => {
    const counting = await startTestNode(kind, { env: { STOREFRONT_STOCK_COUNTS: 'true' } })
    try {
      await seedCatalog(counting.runtime, { products: 2, batchSize: 2 })
      const [product] = (await counting.app.inject({ url: '/store/products?limit=1' })).json().data
      const page = (await counting.app.inject({ url: `/store/products/${product.handle}` })).json()
      const location = await createTestLocation(counting.runtime.database.db, { ships_to: ['FR'] })
      const receipt = await counting.app.inject({
        method: 'POST',
        url: '/admin/inventory/receipts',
        headers: adminAuth,
        payload: { location_id: location, lines: [{ sku: page.variants[0].sku, quantity: 7 }] },
      })
      expect(receipt.statusCode, receipt.body).toBe(201)
      const availability = async (query: string) =>
        (await counting.app.inject({ url: `/store/products/${product.id}/availability${query}` })).json()
          .variants[0]
      expect(await availability('')).toMatchObject({ in_stock: true, available: 7 })
      expect(await availability('?country=FR')).toMatchObject({ in_stock: true, available: 7 })
      expect(await availability('?country=DE')).toMatchObject({ in_stock: false, available: 0 })
      const bad = await counting.app.inject({ url: `/store/products/${product.id}/availability?country=de` })
      expect(bad.statusCode).toBe(400)
      const unknown = await counting.app.inject({ url: '/store/products/no-such-thing/availability' })
      expect(unknown.statusCode).toBe(404)
      expect(unknown.json().code).toBe('not_found')
    } finally {
      await counting.close()
    }
  })

  it('answers a product page by id or handle, 404 for drafts and unknowns', async () => {
    const [first] = (await get('/store/products?limit=1')).json().data
    const byHandle = await get(`/store/products/${first.handle}?region_id=${eu}`)
    expect(byHandle.statusCode).toBe(200)
    const product = byHandle.json()
    expect(product.variants.length).toBeGreaterThanOrEqual(3)
    expect(product.variants.length).toBeLessThanOrEqual(20)
    expect(product.variants.every((v: { price: { currency: string } }) => v.price.currency === 'EUR')).toBe(
      true,
    )
    expect((await get(`/store/products/${first.id}`)).json().handle).toBe(first.handle)
    const draft = await db()
      .selectFrom('products')
      .select('handle')
      .where('status', '=', 'draft')
      .executeTakeFirst()
    if (draft) expect((await get(`/store/products/${draft.handle}`)).statusCode).toBe(404)
    expect((await get('/store/products/no-such-product')).statusCode).toBe(404)
  })

  it('serves the category tree and collections', async () => {
    const tree = (await get('/store/categories')).json().data
    expect(tree.length).toBeGreaterThan(1)
    expect(tree[0].children.length).toBeGreaterThan(0)
    expect((await get('/store/collections')).json().data.length).toBeGreaterThan(0)
    expect(
      (await get('/store/regions'))
        .json()
        .data.map((r: { currency: string }) => r.currency)
        .sort(),
    ).toEqual(['EUR', 'GBP', 'USD'])
  })

  it('never lets a CDN keep a priced answer past the next price-list start or end', async () => {
    const [first] = (await get(`/store/products?limit=1&region_id=${eu}`)).json().data
    const page = (await get(`/store/products/${first.handle}?region_id=${eu}`)).json()
    const windowOf = (res: { headers: Record<string, unknown> }) => {
      const match = /^public, max-age=(\d+), stale-while-revalidate=(\d+)$/.exec(
        String(res.headers['cache-control']),
      )
      expect(match, String(res.headers['cache-control'])).not.toBeNull()
      return [Number(match?.[1]), Number(match?.[2])] as const
    }
    for (const when of ['starts_at', 'ends_at'] as const) {
      const at = Date.now() + 20_000
      const list = await node.app.inject({
        method: 'POST',
        url: '/admin/price-lists',
        headers: adminAuth,
        payload: {
          name: `Flash sale (${when})`,
          status: 'active',
          [when]: new Date(at).toISOString(),
          prices: [{ variant_id: page.variants[0].id, currency: 'EUR', amount: 1 }],
        },
      })
      expect(list.statusCode, list.body).toBe(201)
      try {
        for (const url of [
          `/store/products?limit=3&region_id=${eu}`,
          `/store/products/${first.handle}?region_id=${eu}`,
        ]) {
          // Rendered, then served from the node's cache: neither may outlive the change at a CDN.
          for (let round = 0; round < 2; round++) {
            const [maxAge, stale] = windowOf(await get(url))
            expect(Date.now() + (maxAge + stale) * 1000).toBeLessThanOrEqual(at)
          }
        }
        // No price list changes an answer without prices: it keeps the whole window.
        expect(windowOf(await get('/store/products?limit=3'))).toEqual([30, 60])
      } finally {
        await node.app.inject({
          method: 'DELETE',
          url: `/admin/price-lists/${list.json().id}`,
          headers: adminAuth,
        })
      }
    }
  })

  it('sends an ETag and Cache-Control, answers a matching If-None-Match with 304, and a change with a new tag', async () => {
    const [first] = (await get(`/store/products?limit=1&region_id=${eu}`)).json().data
    const url = `/store/products/${first.handle}?region_id=${eu}`
    const one = await get(url)
    expect(one.headers['cache-control']).toMatch(/^public, max-age=\d+/)
    const etag = one.headers.etag as string
    expect(etag).toMatch(/^"[\w-]+"$/)
    expect((await get(url)).headers.etag).toBe(etag)
    const notModified = await get(url, { 'if-none-match': `W/${etag}` })
    expect(notModified.statusCode).toBe(304)
    expect(notModified.body).toBe('')

    const variant = one.json().variants[0]
    const patch = await node.app.inject({
      method: 'PATCH',
      url: `/admin/variants/${variant.id}`,
      headers: adminAuth,
      payload: { prices: [{ currency: 'EUR', amount: 123 }] },
    })
    expect(patch.statusCode).toBe(200)
    const changed = await get(url, { 'if-none-match': etag })
    expect(changed.statusCode).toBe(200)
    expect(changed.headers.etag).not.toBe(etag)
    expect(changed.json().variants[0].price.amount).toBe(123)
    const list = (await get(`/store/products?limit=1&region_id=${eu}`)).json().data[0]
    expect(list.price.amount).toBe(123)
  })

  /** Publishes a product per title under `tag`, runs `check` with their ids, then deletes them. */
  const withTitles = async (tag: string, titles: string[], check: (ids: string[]) => Promise<void>) => {
    const ids: string[] = []
    try {
      for (const [i, title] of titles.entries()) {
        const res = await node.app.inject({
          method: 'POST',
          url: '/admin/products',
          headers: adminAuth,
          payload: { handle: `${tag}-${i}`, title, status: 'published', tags: [tag] },
        })
        expect(res.statusCode, res.body).toBe(201)
        ids.push(res.json().id)
      }
      await check(ids)
    } finally {
      for (const id of ids)
        await node.app.inject({ method: 'DELETE', url: `/admin/products/${id}`, headers: adminAuth })
    }
  }

  /** Pages through the products tagged `tag` by name: them in order, and the longest cursor issued. */
  const pagesByName = async (tag: string, limit: number) => {
    const products: Summary[] = []
    let longest = 0
    let cursor: string | null = null
    for (let pages = 0; pages < 10; pages++) {
      const res = await get(
        `/store/products?sort=name&tag=${tag}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`,
      )
      expect(res.statusCode, res.body).toBe(200)
      products.push(...res.json().data)
      cursor = res.json().next_cursor
      if (!cursor) break
      longest = Math.max(longest, cursor.length)
    }
    return { products, longest }
  }

  it('sorts by name whatever the case, paging through titles that differ only in case', async () => {
    const titles = ['zebra', 'Apple', 'apple pie', 'Zebra', 'apple', 'APPLE', 'Banana']
    await withTitles('cased-titles', titles, async () => {
      const { products } = await pagesByName('cased-titles', 2)
      const served = products.map((p) => p.title)
      // Folded titles in order; ties (and letters beyond ASCII) as the database's collation says.
      expect(served.map((t) => t.toLowerCase())).toEqual([
        'apple',
        'apple',
        'apple',
        'apple pie',
        'banana',
        'zebra',
        'zebra',
      ])
      const { rows } = await sql<{ ordered: string[] }>`
        select array_agg(t order by lower(t), t) as ordered from unnest(${titles}::text[]) as x(t)`.execute(
        db(),
      )
      expect(served).toEqual(rows[0]?.ordered)
    })
  })

  it('pages by name across titles whose cursors are the longest the API issues', async () => {
    // JSON escapes a control character as six bytes: the title that makes the longest name cursor.
    const titles = ['\u0001', '\u0002', '\u001f'].map((c) => c.repeat(255))
    await withTitles('control-titles', titles, async (ids) => {
      const { products, longest } = await pagesByName('control-titles', 1)
      expect(products.map((p) => p.id).sort()).toEqual([...ids].sort())
      expect(longest).toBeGreaterThan(2048)
    })
  })
})

describe.runIf(Boolean(process.env.TEST_DATABASE_URL && process.env.REDIS_URL))(
  'catalog: cache across nodes (PostgreSQL + Redis)',
  () => {
    it('shows a price change on the next read on every node', async () => {
      const database = await createTestDatabase('postgres')
      const env = { REDIS_URL: process.env.REDIS_URL }
      const a = await startTestNode('postgres', { database, env })
      const b = await startTestNode('postgres', { database, env })
      try {
        await seedCatalog(a.runtime, { products: 5 })
        const region = await a.runtime.database.db
          .selectFrom('regions')
          .select('id')
          .where('currency_code', '=', 'EUR')
          .executeTakeFirstOrThrow()
        const [first] = (await a.app.inject(`/store/products?limit=1&region_id=${region.id}`)).json().data
        const url = `/store/products/${first.handle}?region_id=${region.id}`
        const before = (await b.app.inject(url)).json()
        expect((await b.app.inject(url)).json()).toEqual(before)
        for (const amount of [4242, 4343]) {
          const patch = await a.app.inject({
            method: 'PATCH',
            url: `/admin/variants/${before.variants[0].id}`,
            headers: adminAuth,
            payload: { prices: [{ currency: 'EUR', amount }] },
          })
          expect(patch.statusCode).toBe(200)
          for (const node of [b, a]) {
            expect((await node.app.inject(url)).json().variants[0].price.amount).toBe(amount)
            const list = (await node.app.inject(`/store/products?region_id=${region.id}&limit=100`)).json()
            expect(list.data.find((p: Summary) => p.id === first.id).price.amount).toBeLessThanOrEqual(amount)
          }
        }
      } finally {
        await a.close()
        await b.close()
        await database.drop()
      }
    })
  },
)
