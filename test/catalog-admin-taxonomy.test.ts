// biome-ignore-all lint/suspicious/noExplicitAny: problem and list bodies are read loosely in assertions
/**
 * The back office around products: categories (a tree that moves in one piece and refuses cycles),
 * collections, regions (a country in one region only), price lists (their prices reach the
 * storefront on the next read, and leave it the same way) and customer groups (group prices for
 * members only). Bad input gets a 4xx problem document and writes nothing; a staff member without
 * the permission gets 403.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { LightMyRequestResponse } from 'fastify'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nextPriceChange } from '../src/modules/catalog/price-lists.ts'
import { createRegion } from '../src/modules/catalog/regions.ts'
import { categoryTree, createCategory, updateCategory } from '../src/modules/catalog/taxonomy.ts'
import { type Tx, withTransaction } from '../src/platform/db/transaction.ts'
import type { ProblemError } from '../src/platform/http/errors.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { signUpConfirmed } from './support/customers.ts'
import { describeEachDatabase } from './support/database.ts'
import { eventually } from './support/eventually.ts'
import { waitForLockWaits } from './support/locks.ts'
import { bearer, newStaffSession, strongPassword, uniqueEmail } from './support/staff.ts'

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE'

describeEachDatabase('catalog admin: taxonomy, regions, price lists, customer groups', (kind) => {
  let node: TestNode
  /** The product every price test uses: variants S (EUR 1000) and M (EUR 1200). */
  let product: { id: string; handle: string; small: string; medium: string }
  let region: string

  const db = () => node.runtime.database.db

  const admin = (method: Method, url: string, payload?: object, headers: Record<string, string> = {}) =>
    node.app.inject({ method, url, headers: { ...adminAuth, ...headers }, ...(payload ? { payload } : {}) })

  function expectProblem(res: LightMyRequestResponse, status: number, code: string): Record<string, any> {
    expect(res.statusCode, res.body).toBe(status)
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
    const body = res.json()
    expect(body).toMatchObject({ status, code })
    return body
  }

  async function count(table: 'categories' | 'collections' | 'regions' | 'region_countries' | 'price_lists') {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(
      db(),
    )
    return rows[0]?.n ?? 0
  }

  async function createProduct(handle: string, prices: [number, number]) {
    const res = await admin('POST', '/admin/products', {
      handle,
      title: handle,
      status: 'published',
      options: [{ name: 'Size', values: ['S', 'M'] }],
      variants: [
        { sku: `${handle}-s`, options: { Size: 'S' }, prices: [{ currency: 'EUR', amount: prices[0] }] },
        { sku: `${handle}-m`, options: { Size: 'M' }, prices: [{ currency: 'EUR', amount: prices[1] }] },
      ],
    })
    expect(res.statusCode, res.body).toBe(201)
    const body = res.json()
    const variant = (size: string) => body.variants.find((v: any) => v.options.Size === size).id as string
    return { id: body.id as string, handle, small: variant('S'), medium: variant('M') }
  }

  /** The storefront's price of a variant of the product in the region, as a shopper sees it now. */
  async function shopperPrice(handle: string, variantId: string, token?: string) {
    const res = await node.app.inject({
      url: `/store/products/${handle}?region_id=${region}`,
      headers: token ? bearer(token) : {},
    })
    expect(res.statusCode, res.body).toBe(200)
    return res.json().variants.find((v: any) => v.id === variantId).price
  }

  async function eventTypes(subjectId: string): Promise<string[]> {
    const rows = await db()
      .selectFrom('events')
      .select('type')
      .where('subject_id', '=', subjectId)
      .orderBy('occurred_at')
      .execute()
    return rows.map((r) => r.type)
  }

  beforeAll(async () => {
    node = await startTestNode(kind, {
      env: { RATE_LIMIT_PER_MINUTE: '100000', AUTH_RATE_LIMIT_PER_MINUTE: '100000' },
    })
    product = await createProduct('plain-tee', [1000, 1200])
    const res = await admin('POST', '/admin/regions', {
      name: 'Eurozone',
      currency: 'EUR',
      prices_include_tax: true,
      countries: ['FR', 'DE'],
    })
    expect(res.statusCode, res.body).toBe(201)
    region = res.json().id
  })
  afterAll(() => node?.close())

  describe('categories', () => {
    const create = (body: object) => admin('POST', '/admin/categories', body)

    it('creates, reads, lists, renames and deletes', async () => {
      const res = await create({ handle: 'outdoor', name: 'Outdoor', description: 'Out there', position: 2 })
      expect(res.statusCode, res.body).toBe(201)
      const category = res.json()
      expect(category).toMatchObject({ handle: 'outdoor', name: 'Outdoor', parent_id: null, position: 2 })
      expect(category.id).toMatch(/^cat_/)
      expect(new Date(category.created_at).toISOString()).toBe(category.created_at)

      expect((await admin('GET', `/admin/categories/${category.id}`)).json()).toEqual(category)
      const list = await admin('GET', '/admin/categories')
      expect(list.statusCode).toBe(200)
      expect(list.json().data.map((c: any) => c.id)).toContain(category.id)

      const renamed = await admin('PATCH', `/admin/categories/${category.id}`, { name: 'The Outdoors' })
      expect(renamed.statusCode, renamed.body).toBe(200)
      expect(renamed.json()).toMatchObject({ name: 'The Outdoors', handle: 'outdoor' })

      expect((await admin('DELETE', `/admin/categories/${category.id}`)).statusCode).toBe(204)
      expectProblem(await admin('GET', `/admin/categories/${category.id}`), 404, 'not_found')
      expectProblem(await admin('DELETE', `/admin/categories/${category.id}`), 404, 'not_found')
      expectProblem(await admin('PATCH', `/admin/categories/${category.id}`, { name: 'x' }), 404, 'not_found')
      expect(await eventTypes(category.id)).toEqual([
        'category.created',
        'category.updated',
        'category.deleted',
      ])
    })

    it('moves a category with its subtree, rewriting every path, and serves the tree in order', async () => {
      const a = (await create({ handle: 'tree-a', name: 'A', position: 1 })).json()
      const b = (await create({ handle: 'tree-b', name: 'B', position: 0 })).json()
      const child = (await create({ handle: 'tree-child', name: 'Child', parent_id: a.id })).json()
      const grandchild = (
        await create({ handle: 'tree-grandchild', name: 'Grandchild', parent_id: child.id })
      ).json()
      const paths = async () =>
        Object.fromEntries(
          (await db().selectFrom('categories').select(['id', 'path']).execute()).map((r) => [r.id, r.path]),
        )
      expect((await paths())[grandchild.id]).toBe(`${a.id}/${child.id}/${grandchild.id}`)

      const moved = await admin('PATCH', `/admin/categories/${child.id}`, { parent_id: b.id })
      expect(moved.statusCode, moved.body).toBe(200)
      expect(moved.json().parent_id).toBe(b.id)
      const after = await paths()
      expect(after[child.id]).toBe(`${b.id}/${child.id}`)
      expect(after[grandchild.id]).toBe(`${b.id}/${child.id}/${grandchild.id}`)
      expect(after[a.id]).toBe(a.id)

      // Back to the root: the subtree's paths lose the old prefix.
      expect((await admin('PATCH', `/admin/categories/${child.id}`, { parent_id: null })).statusCode).toBe(
        200,
      )
      expect((await paths())[grandchild.id]).toBe(`${child.id}/${grandchild.id}`)
      expect((await admin('PATCH', `/admin/categories/${child.id}`, { parent_id: b.id })).statusCode).toBe(
        200,
      )

      const tree = await categoryTree(db())
      const ids = tree.map((n) => n.id)
      expect(ids.indexOf(b.id)).toBeLessThan(ids.indexOf(a.id))
      const nodeB = tree.find((n) => n.id === b.id)!
      expect(nodeB.children.map((n) => n.id)).toEqual([child.id])
      expect(nodeB.children[0]?.children.map((n) => n.id)).toEqual([grandchild.id])
      const store = await node.app.inject('/store/categories')
      expect(store.statusCode, store.body).toBe(200)
      expect(store.json().data.find((n: any) => n.id === b.id).children[0].children[0]).toMatchObject({
        id: grandchild.id,
        handle: 'tree-grandchild',
        children: [],
      })
    })

    it('refuses cycles, unknown parents, duplicate handles and deleting a parent, writing nothing', async () => {
      const root = (await create({ handle: 'cyc-root', name: 'Root' })).json()
      const mid = (await create({ handle: 'cyc-mid', name: 'Mid', parent_id: root.id })).json()
      const leaf = (await create({ handle: 'cyc-leaf', name: 'Leaf', parent_id: mid.id })).json()
      const before = await db().selectFrom('categories').selectAll().orderBy('id').execute()

      const cycle = expectProblem(
        await admin('PATCH', `/admin/categories/${root.id}`, { parent_id: leaf.id, name: 'Renamed' }),
        409,
        'conflict',
      )
      expect(cycle.errors).toContainEqual({ path: 'body.parent_id', message: expect.any(String) })
      expectProblem(
        await admin('PATCH', `/admin/categories/${mid.id}`, { parent_id: mid.id }),
        409,
        'conflict',
      )
      const unknown = expectProblem(
        await admin('PATCH', `/admin/categories/${mid.id}`, { parent_id: 'cat_00000000000000000000000000' }),
        400,
        'validation_failed',
      )
      expect(unknown.errors[0].path).toBe('body.parent_id')
      expectProblem(
        await create({ handle: 'orphan', name: 'Orphan', parent_id: 'cat_00000000000000000000000000' }),
        400,
        'validation_failed',
      )
      const taken = expectProblem(await create({ handle: 'cyc-mid', name: 'Again' }), 409, 'handle_taken')
      expect(taken.errors[0].path).toBe('body.handle')
      expectProblem(
        await admin('PATCH', `/admin/categories/${leaf.id}`, { handle: 'cyc-root' }),
        409,
        'handle_taken',
      )
      expectProblem(await admin('DELETE', `/admin/categories/${mid.id}`), 409, 'conflict')
      const badHandle = expectProblem(
        await create({ handle: 'Not A Slug', name: 'x' }),
        400,
        'validation_failed',
      )
      expect(badHandle.errors[0].path).toBe('body.handle')
      expectProblem(await create({ handle: 'extra', name: 'x', colour: 'red' }), 400, 'validation_failed')
      expectProblem(await admin('GET', '/admin/categories/not-an-id'), 400, 'validation_failed')

      expect(await db().selectFrom('categories').selectAll().orderBy('id').execute()).toEqual(before)
    })

    it('takes products out of a deleted category', async () => {
      const category = (await create({ handle: 'to-delete', name: 'Gone soon' })).json()
      const patched = await admin('PATCH', `/admin/products/${product.id}`, { category_ids: [category.id] })
      expect(patched.statusCode, patched.body).toBe(200)
      expect((await admin('DELETE', `/admin/categories/${category.id}`)).statusCode).toBe(204)
      const after = (await admin('GET', `/admin/products/${product.id}`)).json()
      expect(after.category_ids).toEqual([])
    })
  })

  describe('collections', () => {
    it('creates, reads, lists, updates and deletes; the storefront lists them', async () => {
      const res = await admin('POST', '/admin/collections', {
        handle: 'summer',
        title: 'Summer',
        metadata: { banner: 'sun.png' },
      })
      expect(res.statusCode, res.body).toBe(201)
      const collection = res.json()
      expect(collection).toMatchObject({
        handle: 'summer',
        title: 'Summer',
        description: '',
        metadata: { banner: 'sun.png' },
      })
      expect((await admin('GET', `/admin/collections/${collection.id}`)).json()).toEqual(collection)
      expect((await admin('GET', '/admin/collections')).json().data).toContainEqual(collection)

      const updated = await admin('PATCH', `/admin/collections/${collection.id}`, { title: 'Summer Sale' })
      expect(updated.statusCode, updated.body).toBe(200)
      expect(updated.json().title).toBe('Summer Sale')
      const store = await node.app.inject('/store/collections')
      expect(store.statusCode, store.body).toBe(200)
      expect(store.json().data.map((c: any) => c.title)).toContain('Summer Sale')

      const before = await count('collections')
      const dup = expectProblem(
        await admin('POST', '/admin/collections', { handle: 'summer', title: 'Copy' }),
        409,
        'handle_taken',
      )
      expect(dup.errors[0].path).toBe('body.handle')
      expectProblem(await admin('PATCH', `/admin/collections/${collection.id}`, {}), 400, 'validation_failed')
      expect(await count('collections')).toBe(before)

      expect((await admin('DELETE', `/admin/collections/${collection.id}`)).statusCode).toBe(204)
      expectProblem(await admin('GET', `/admin/collections/${collection.id}`), 404, 'not_found')
      expect(await eventTypes(collection.id)).toEqual([
        'collection.created',
        'collection.updated',
        'collection.deleted',
      ])
    })
  })

  describe('regions', () => {
    it('creates with sorted countries, updates, replaces countries and deletes', async () => {
      const res = await admin('POST', '/admin/regions', {
        name: 'North America',
        currency: 'USD',
        prices_include_tax: false,
        countries: ['US', 'CA'],
      })
      expect(res.statusCode, res.body).toBe(201)
      const created = res.json()
      expect(created).toMatchObject({ currency: 'USD', prices_include_tax: false, countries: ['CA', 'US'] })
      expect((await admin('GET', `/admin/regions/${created.id}`)).json()).toEqual(created)
      expect((await admin('GET', '/admin/regions')).json().data).toContainEqual(created)

      const updated = await admin('PATCH', `/admin/regions/${created.id}`, {
        countries: ['US', 'MX'],
        name: 'NA',
      })
      expect(updated.statusCode, updated.body).toBe(200)
      expect(updated.json()).toMatchObject({ name: 'NA', countries: ['MX', 'US'], currency: 'USD' })
      const store = await node.app.inject('/store/regions')
      expect(store.statusCode, store.body).toBe(200)
      expect(store.json().data.find((r: any) => r.id === created.id).countries).toEqual(['MX', 'US'])

      expect((await admin('DELETE', `/admin/regions/${created.id}`)).statusCode).toBe(204)
      expectProblem(await admin('GET', `/admin/regions/${created.id}`), 404, 'not_found')
      // Its countries are free again.
      const again = await admin('POST', '/admin/regions', {
        name: 'US only',
        currency: 'USD',
        prices_include_tax: false,
        countries: ['US'],
      })
      expect(again.statusCode, again.body).toBe(201)
      expect(await eventTypes(created.id)).toEqual(['region.created', 'region.updated', 'region.deleted'])
    })

    it('refuses an unknown currency or country and a country of another region, writing nothing', async () => {
      const before = [await count('regions'), await count('region_countries')]
      const body = { name: 'Bad', currency: 'EUR', prices_include_tax: true, countries: ['AT'] }
      const currency = expectProblem(
        await admin('POST', '/admin/regions', { ...body, currency: 'XYZ' }),
        400,
        'validation_failed',
      )
      expect(currency.errors).toContainEqual({
        path: 'body.currency',
        message: expect.stringContaining('XYZ'),
      })
      expectProblem(
        await admin('POST', '/admin/regions', { ...body, currency: 'eur' }),
        400,
        'validation_failed',
      )
      const country = expectProblem(
        await admin('POST', '/admin/regions', { ...body, countries: ['AT', 'XX'] }),
        400,
        'validation_failed',
      )
      expect(country.errors[0].path).toBe('body.countries[1]')
      const taken = expectProblem(
        await admin('POST', '/admin/regions', { ...body, countries: ['AT', 'DE'] }),
        409,
        'conflict',
      )
      expect(taken.detail).toContain('DE')
      expect(taken.errors).toEqual([{ path: 'body.countries[1]', message: expect.stringContaining('DE') }])
      expectProblem(
        await admin('POST', '/admin/regions', { ...body, countries: [] }),
        400,
        'validation_failed',
      )
      expectProblem(
        await admin('PATCH', `/admin/regions/${region}`, { currency: 'ABC' }),
        400,
        'validation_failed',
      )
      expect([await count('regions'), await count('region_countries')]).toEqual(before)

      // Taking a country by update is refused the same way, and the region keeps its countries.
      const other = (await admin('POST', '/admin/regions', { ...body, name: 'Austria' })).json()
      expectProblem(
        await admin('PATCH', `/admin/regions/${other.id}`, { countries: ['FR'] }),
        409,
        'conflict',
      )
      expect((await admin('GET', `/admin/regions/${other.id}`)).json().countries).toEqual(['AT'])
      expect((await admin('DELETE', `/admin/regions/${other.id}`)).statusCode).toBe(204)
    })

    it('refuses to delete a region that carts were made in, with a 409 and nothing deleted', async () => {
      const used = (
        await admin('POST', '/admin/regions', {
          name: 'Iceland',
          currency: 'ISK',
          prices_include_tax: true,
          countries: ['IS'],
        })
      ).json()
      const cart = await node.app.inject({
        method: 'POST',
        url: '/store/carts',
        payload: { region_id: used.id },
      })
      expect(cart.statusCode, cart.body).toBe(201)
      expectProblem(await admin('DELETE', `/admin/regions/${used.id}`), 409, 'conflict')
      expect((await admin('GET', `/admin/regions/${used.id}`)).json().countries).toEqual(['IS'])
    })

    it('replays a create sent twice with one Idempotency-Key', async () => {
      const body = { name: 'Nordics', currency: 'SEK', prices_include_tax: true, countries: ['SE'] }
      const headers = { 'idempotency-key': `region-${Date.now()}` }
      const first = await admin('POST', '/admin/regions', body, headers)
      const second = await admin('POST', '/admin/regions', body, headers)
      expect(first.statusCode, first.body).toBe(201)
      expect(second.statusCode).toBe(201)
      expect(second.headers['idempotent-replayed']).toBe('true')
      expect(second.json()).toEqual(first.json())
      expect(
        (await db().selectFrom('regions').select('id').where('name', '=', 'Nordics').execute()).length,
      ).toBe(1)
    })
  })

  describe('price lists', () => {
    it('creates, reads, pages, updates and deletes, with events', async () => {
      const res = await admin('POST', '/admin/price-lists', {
        name: 'Draft list',
        status: 'draft',
        prices: [{ variant_id: product.medium, currency: 'EUR', amount: 1100 }],
      })
      expect(res.statusCode, res.body).toBe(201)
      const list = res.json()
      expect(list).toMatchObject({
        name: 'Draft list',
        status: 'draft',
        customer_group_id: null,
        starts_at: null,
        ends_at: null,
        prices: [{ variant_id: product.medium, currency: 'EUR', amount: 1100 }],
      })
      expect(list.id).toMatch(/^plist_/)
      expect((await admin('GET', `/admin/price-lists/${list.id}`)).json()).toEqual(list)
      const second = (await admin('POST', '/admin/price-lists', { name: 'Empty', status: 'draft' })).json()

      const page1 = (await admin('GET', '/admin/price-lists?limit=1')).json()
      expect(page1.data.map((l: any) => l.id)).toEqual([second.id])
      expect(page1.next_cursor).toEqual(expect.any(String))
      const page2 = (await admin('GET', `/admin/price-lists?limit=1&cursor=${page1.next_cursor}`)).json()
      expect(page2.data.map((l: any) => l.id)).toEqual([list.id])
      expectProblem(await admin('GET', '/admin/price-lists?cursor=bogus!'), 400, 'invalid_cursor')
      expectProblem(await admin('GET', '/admin/price-lists?limit=1000'), 400, 'validation_failed')

      const starts = new Date(Date.now() + 86_400_000).toISOString()
      const ends = new Date(Date.now() + 2 * 86_400_000).toISOString()
      const updated = await admin('PATCH', `/admin/price-lists/${list.id}`, {
        name: 'Renamed',
        starts_at: starts,
        ends_at: ends,
        prices: [
          { variant_id: product.small, currency: 'EUR', amount: 900 },
          { variant_id: product.medium, currency: 'EUR', amount: 950 },
        ],
      })
      expect(updated.statusCode, updated.body).toBe(200)
      expect(updated.json()).toMatchObject({
        name: 'Renamed',
        starts_at: starts,
        ends_at: ends,
        prices: [
          { variant_id: product.small, currency: 'EUR', amount: 900 },
          { variant_id: product.medium, currency: 'EUR', amount: 950 },
        ],
      })
      expect((await admin('DELETE', `/admin/price-lists/${list.id}`)).statusCode).toBe(204)
      expect((await admin('DELETE', `/admin/price-lists/${second.id}`)).statusCode).toBe(204)
      expectProblem(await admin('GET', `/admin/price-lists/${list.id}`), 404, 'not_found')
      expect(await eventTypes(list.id)).toEqual([
        'price_list.created',
        'price_list.updated',
        'price_list.deleted',
      ])
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from price_list_product_prices where price_list_id = ${list.id}`.execute(
        db(),
      )
      expect(rows[0]?.n).toBe(0)
    })

    it('refuses unknown variants and currencies, dates out of order and unknown groups, writing nothing', async () => {
      const before = await count('price_lists')
      const price = { variant_id: product.small, currency: 'EUR', amount: 500 }
      const variant = expectProblem(
        await admin('POST', '/admin/price-lists', {
          name: 'Bad',
          prices: [price, { ...price, variant_id: 'var_00000000000000000000000000' }],
        }),
        400,
        'validation_failed',
      )
      expect(variant.errors).toEqual([{ path: 'body.prices[1].variant_id', message: expect.any(String) }])
      const currency = expectProblem(
        await admin('POST', '/admin/price-lists', { name: 'Bad', prices: [{ ...price, currency: 'XYZ' }] }),
        400,
        'validation_failed',
      )
      expect(currency.errors[0].path).toBe('body.prices[0].currency')
      expectProblem(
        await admin('POST', '/admin/price-lists', { name: 'Bad', prices: [price, price] }),
        400,
        'validation_failed',
      )
      expectProblem(
        await admin('POST', '/admin/price-lists', { name: 'Bad', prices: [{ ...price, amount: 9.5 }] }),
        400,
        'validation_failed',
      )
      expectProblem(
        await admin('POST', '/admin/price-lists', { name: 'Bad', prices: [{ ...price, amount: -1 }] }),
        400,
        'validation_failed',
      )
      const dates = expectProblem(
        await admin('POST', '/admin/price-lists', {
          name: 'Bad',
          starts_at: '2031-01-02T00:00:00Z',
          ends_at: '2031-01-01T00:00:00Z',
        }),
        400,
        'validation_failed',
      )
      expect(dates.errors[0].path).toBe('body.ends_at')
      expectProblem(
        await admin('POST', '/admin/price-lists', {
          name: 'Bad',
          starts_at: '2031-01-01T00:00:00Z',
          ends_at: '2031-01-01T00:00:00Z',
        }),
        400,
        'validation_failed',
      )
      expectProblem(
        await admin('POST', '/admin/price-lists', { name: 'Bad', starts_at: 'next tuesday' }),
        400,
        'validation_failed',
      )
      // Valid RFC 3339 that PostgreSQL cannot store (an offset past ±15:59, the year 0000, or an
      // offset that carries the year to 0 or 10000 in UTC) or that a JavaScript Date cannot hold (a
      // leap second).
      for (const starts_at of [
        '2031-06-01T00:00:00+16:00',
        '0000-01-01T00:00:00Z',
        '0001-01-01T00:00:00+01:00',
        '9999-12-31T23:00:00-05:00',
        '2016-12-31T23:59:60Z',
      ]) {
        const refused = expectProblem(
          await admin('POST', '/admin/price-lists', { name: 'Bad', starts_at }),
          400,
          'validation_failed',
        )
        expect(refused.errors[0].path).toBe('body.starts_at')
      }
      const group = expectProblem(
        await admin('POST', '/admin/price-lists', {
          name: 'Bad',
          customer_group_id: 'cgrp_00000000000000000000000000',
        }),
        400,
        'validation_failed',
      )
      expect(group.errors[0].path).toBe('body.customer_group_id')
      expect(await count('price_lists')).toBe(before)

      // An update is checked against the stored dates, and a refused one changes nothing.
      const list = (
        await admin('POST', '/admin/price-lists', {
          name: 'Dated',
          status: 'draft',
          starts_at: '2031-01-01T00:00:00Z',
          prices: [price],
        })
      ).json()
      const early = expectProblem(
        await admin('PATCH', `/admin/price-lists/${list.id}`, {
          ends_at: '2030-12-31T00:00:00Z',
          prices: [{ ...price, amount: 1 }],
        }),
        400,
        'validation_failed',
      )
      expect(early.errors[0].path).toBe('body.ends_at')
      expectProblem(
        await admin('PATCH', `/admin/price-lists/${list.id}`, {
          prices: [{ ...price, variant_id: 'var_00000000000000000000000000' }],
        }),
        400,
        'validation_failed',
      )
      expect((await admin('GET', `/admin/price-lists/${list.id}`)).json()).toEqual(list)
      expectProblem(
        await admin('PATCH', '/admin/price-lists/plist_00000000000000000000000000', { name: 'x' }),
        404,
        'not_found',
      )
      expect((await admin('DELETE', `/admin/price-lists/${list.id}`)).statusCode).toBe(204)
    })

    it('shows a sale price on the storefront on the next read, and the base price once it is deleted', async () => {
      const tee = await createProduct('sale-tee', [2000, 2500])
      const before = await shopperPrice(tee.handle, tee.small)
      expect(before).toMatchObject({
        amount: 2000,
        currency: 'EUR',
        compare_at_amount: null,
        price_list_id: null,
      })
      // A second read is served from the cache: the write below must invalidate it.
      expect(await shopperPrice(tee.handle, tee.small)).toEqual(before)

      const res = await admin('POST', '/admin/price-lists', {
        name: 'Summer sale',
        prices: [{ variant_id: tee.small, currency: 'EUR', amount: 1500 }],
      })
      expect(res.statusCode, res.body).toBe(201)
      const sale = res.json()
      expect(await shopperPrice(tee.handle, tee.small)).toEqual({
        amount: 1500,
        currency: 'EUR',
        compare_at_amount: 2000,
        includes_tax: true,
        price_list_id: sale.id,
      })
      // The other variant has no sale price; the list's "from" price is the sale price.
      expect(await shopperPrice(tee.handle, tee.medium)).toMatchObject({ amount: 2500, price_list_id: null })
      const listed = await node.app.inject(`/store/products?region_id=${region}&limit=100`)
      expect(listed.statusCode, listed.body).toBe(200)
      expect(listed.json().data.find((p: any) => p.id === tee.id).price).toMatchObject({
        amount: 1500,
        compare_at_amount: 2000,
      })

      // Replacing the prices moves the sale to the other variant.
      const moved = await admin('PATCH', `/admin/price-lists/${sale.id}`, {
        prices: [{ variant_id: tee.medium, currency: 'EUR', amount: 1800 }],
      })
      expect(moved.statusCode, moved.body).toBe(200)
      expect(await shopperPrice(tee.handle, tee.small)).toMatchObject({ amount: 2000, price_list_id: null })
      expect(await shopperPrice(tee.handle, tee.medium)).toMatchObject({
        amount: 1800,
        compare_at_amount: 2500,
      })

      // A draft list does not apply.
      expect((await admin('PATCH', `/admin/price-lists/${sale.id}`, { status: 'draft' })).statusCode).toBe(
        200,
      )
      expect(await shopperPrice(tee.handle, tee.medium)).toMatchObject({ amount: 2500, price_list_id: null })
      expect((await admin('PATCH', `/admin/price-lists/${sale.id}`, { status: 'active' })).statusCode).toBe(
        200,
      )

      expect((await admin('DELETE', `/admin/price-lists/${sale.id}`)).statusCode).toBe(204)
      expect(await shopperPrice(tee.handle, tee.medium)).toMatchObject({
        amount: 2500,
        compare_at_amount: null,
        price_list_id: null,
      })
      const relisted = await node.app.inject(`/store/products?region_id=${region}&limit=100`)
      expect(relisted.json().data.find((p: any) => p.id === tee.id).price).toMatchObject({
        amount: 2000,
        compare_at_amount: null,
      })
    })

    it('sells a variant only in the currencies of its base prices, whatever its price lists say', async () => {
      const tee = await createProduct('base-less-tee', [2000, 2500])
      // A list cannot put a variant on sale in a currency it has no base price in.
      const refused = expectProblem(
        await admin('POST', '/admin/price-lists', {
          name: 'Dollar sale',
          prices: [
            { variant_id: tee.medium, currency: 'EUR', amount: 2200 },
            { variant_id: tee.small, currency: 'USD', amount: 1500 },
          ],
        }),
        400,
        'validation_failed',
      )
      expect(refused.errors).toEqual([
        { path: 'body.prices[1].currency', message: expect.stringMatching(/USD/) },
      ])
      const sale = await admin('POST', '/admin/price-lists', {
        name: 'Euro sale',
        prices: [{ variant_id: tee.small, currency: 'EUR', amount: 1500 }],
      })
      expect(sale.statusCode, sale.body).toBe(201)
      expect(await shopperPrice(tee.handle, tee.small)).toMatchObject({ amount: 1500 })

      // The small size stops being sold in euros: its list price outlives the base price, unused.
      const moved = await admin('PATCH', `/admin/variants/${tee.small}`, {
        prices: [{ currency: 'USD', amount: 2100 }],
      })
      expect(moved.statusCode, moved.body).toBe(200)
      expect(await shopperPrice(tee.handle, tee.small)).toBeNull()
      const listed = await node.app.inject(`/store/products?region_id=${region}&limit=100`)
      expect(listed.json().data.find((p: any) => p.id === tee.id).price).toMatchObject({
        amount: 2500,
        price_list_id: null,
      })
      const cart = await node.app.inject({
        method: 'POST',
        url: '/store/carts',
        payload: { region_id: region, lines: [{ variant_id: tee.small, quantity: 1 }] },
      })
      expectProblem(cart, 422, 'not_sold_in_region')
      expect((await admin('DELETE', `/admin/price-lists/${sale.json().id}`)).statusCode).toBe(204)
    })

    it('starts a scheduled sale on time without any write, and reports when prices next change', async () => {
      const tee = await createProduct('scheduled-tee', [3000, 3000])
      expect(await shopperPrice(tee.handle, tee.small)).toMatchObject({ amount: 3000 })
      const startsAt = new Date(Date.now() + 1500)
      const res = await admin('POST', '/admin/price-lists', {
        name: 'Flash sale',
        starts_at: startsAt.toISOString(),
        ends_at: new Date(Date.now() + 3_600_000).toISOString(),
        prices: [{ variant_id: tee.small, currency: 'EUR', amount: 2000 }],
      })
      expect(res.statusCode, res.body).toBe(201)
      expect(await nextPriceChange(db())).toBe(startsAt.getTime())
      // Not yet: cached now, and the cache must let it go at the start.
      expect(await shopperPrice(tee.handle, tee.small)).toMatchObject({ amount: 3000 })
      await sleep(startsAt.getTime() - Date.now() + 50)
      await eventually(async () => {
        const price = await shopperPrice(tee.handle, tee.small)
        return price.amount === 2000 ? price : undefined
      }, 5_000)
      expect((await admin('DELETE', `/admin/price-lists/${res.json().id}`)).statusCode).toBe(204)
      expect(await nextPriceChange(db())).toBeUndefined()
    })
  })

  describe('customer groups', () => {
    async function signUpCustomer(): Promise<{ id: string; token: string }> {
      const email = uniqueEmail('shopper')
      const password = strongPassword()
      await signUpConfirmed(node, email, password)
      const signIn = await node.app.inject({
        method: 'POST',
        url: '/store/auth/sign-in',
        payload: { email, password },
      })
      expect(signIn.statusCode, signIn.body).toBe(200)
      const row = await db()
        .selectFrom('customers')
        .select('id')
        .where('email', '=', email)
        .executeTakeFirstOrThrow()
      return { id: row.id, token: signIn.json().access_token }
    }

    it('creates, renames, adds and removes members, and deletes', async () => {
      const res = await admin('POST', '/admin/customer-groups', { name: 'Wholesale', description: 'B2B' })
      expect(res.statusCode, res.body).toBe(201)
      const group = res.json()
      expect(group).toMatchObject({ name: 'Wholesale', description: 'B2B', customer_ids: [] })
      expect(group.id).toMatch(/^cgrp_/)
      const dup = expectProblem(
        await admin('POST', '/admin/customer-groups', { name: 'Wholesale' }),
        409,
        'conflict',
      )
      expect(dup.errors[0].path).toBe('body.name')

      const [a, b] = [await signUpCustomer(), await signUpCustomer()]
      const added = await admin('POST', `/admin/customer-groups/${group.id}/customers`, {
        customer_ids: [b.id, a.id],
      })
      expect(added.statusCode, added.body).toBe(200)
      expect(added.json().customer_ids).toEqual([a.id, b.id].sort())
      // Adding a member again is harmless.
      const again = await admin('POST', `/admin/customer-groups/${group.id}/customers`, {
        customer_ids: [a.id],
      })
      expect(again.json().customer_ids).toEqual([a.id, b.id].sort())
      const unknown = expectProblem(
        await admin('POST', `/admin/customer-groups/${group.id}/customers`, {
          customer_ids: [a.id, 'cus_00000000000000000000000000'],
        }),
        400,
        'validation_failed',
      )
      expect(unknown.errors).toEqual([{ path: 'body.customer_ids[1]', message: expect.any(String) }])
      expectProblem(
        await admin('POST', '/admin/customer-groups/cgrp_00000000000000000000000000/customers', {
          customer_ids: [a.id],
        }),
        404,
        'not_found',
      )

      const removed = await admin('DELETE', `/admin/customer-groups/${group.id}/customers/${a.id}`)
      expect(removed.statusCode, removed.body).toBe(200)
      expect(removed.json().customer_ids).toEqual([b.id])
      expectProblem(
        await admin('DELETE', `/admin/customer-groups/${group.id}/customers/${a.id}`),
        404,
        'not_found',
      )

      const renamed = await admin('PATCH', `/admin/customer-groups/${group.id}`, { name: 'Trade' })
      expect(renamed.json()).toMatchObject({ name: 'Trade', customer_ids: [b.id] })
      expect((await admin('GET', `/admin/customer-groups/${group.id}`)).json()).toEqual(renamed.json())
      expect((await admin('GET', '/admin/customer-groups')).json().data).toContainEqual(renamed.json())

      expect((await admin('DELETE', `/admin/customer-groups/${group.id}`)).statusCode).toBe(204)
      expectProblem(await admin('GET', `/admin/customer-groups/${group.id}`), 404, 'not_found')
      expect(await eventTypes(group.id)).toEqual([
        'customer_group.created',
        'customer_group.customers_added',
        'customer_group.customer_removed',
        'customer_group.updated',
        'customer_group.deleted',
      ])
    })

    it('gives group prices to members only, and takes them away on the next read when one leaves', async () => {
      const tee = await createProduct('vip-tee', [4000, 4000])
      const member = await signUpCustomer()
      const outsider = await signUpCustomer()
      const group = (await admin('POST', '/admin/customer-groups', { name: 'VIP' })).json()
      expect(
        (await admin('POST', `/admin/customer-groups/${group.id}/customers`, { customer_ids: [member.id] }))
          .statusCode,
      ).toBe(200)
      const list = await admin('POST', '/admin/price-lists', {
        name: 'VIP prices',
        customer_group_id: group.id,
        prices: [{ variant_id: tee.small, currency: 'EUR', amount: 3000 }],
      })
      expect(list.statusCode, list.body).toBe(201)

      expect(await shopperPrice(tee.handle, tee.small, member.token)).toMatchObject({
        amount: 3000,
        compare_at_amount: 4000,
      })
      expect(await shopperPrice(tee.handle, tee.small, outsider.token)).toMatchObject({ amount: 4000 })
      expect(await shopperPrice(tee.handle, tee.small)).toMatchObject({ amount: 4000 })

      const left = await admin('DELETE', `/admin/customer-groups/${group.id}/customers/${member.id}`)
      expect(left.statusCode, left.body).toBe(200)
      expect(await shopperPrice(tee.handle, tee.small, member.token)).toMatchObject({ amount: 4000 })

      // Deleting the group leaves its list applying to nobody, never to everybody.
      expect((await admin('DELETE', `/admin/customer-groups/${group.id}`)).statusCode).toBe(204)
      expect(await shopperPrice(tee.handle, tee.small)).toMatchObject({ amount: 4000 })
    })
  })

  // Two transactions held open at once: the second starts while the first has written but not
  // committed, which is exactly the window a missing lock would let a conflicting write through.
  describe('overlapping transactions', () => {
    async function overlap<T>(first: (trx: Tx) => Promise<unknown>, second: (trx: Tx) => Promise<T>) {
      const { promise: gate, resolve: release } = Promise.withResolvers<void>()
      const { promise: firstWrote, resolve: written } = Promise.withResolvers<void>()
      const one = withTransaction(db(), async (trx) => {
        await first(trx)
        written()
        await gate
      })
      await firstWrote
      const two = withTransaction(db(), second).then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      )
      await sleep(200)
      release()
      await one
      return two
    }

    it.runIf(kind === 'postgres')(
      'takes no lock on the variants a price list prices while it waits for their products',
      async () => {
        // A variant delete locks its product, then the variant: a list write holding the variant
        // while it waits for the product would deadlock with it.
        const tee = await createProduct('lock-order-tee', [1000, 1200])
        const { promise: released, resolve: release } = Promise.withResolvers<void>()
        const { promise: isLocked, resolve: locked } = Promise.withResolvers<void>()
        const holder = withTransaction(db(), async (trx) => {
          await trx.selectFrom('products').select('id').where('id', '=', tee.id).forUpdate().execute()
          locked()
          await released
        })
        await isLocked
        const list = admin('POST', '/admin/price-lists', {
          name: 'Lock order',
          prices: [{ variant_id: tee.small, currency: 'EUR', amount: 900 }],
        })
        try {
          await waitForLockWaits(db(), 1)
          // NOWAIT fails at once if the waiting list write holds the variant's row.
          await withTransaction(db(), (trx) =>
            sql`select id from product_variants where id = ${tee.small} for update nowait`.execute(trx),
          )
        } finally {
          release()
          await holder
        }
        const created = await list
        expect(created.statusCode, created.body).toBe(201)
        expect((await admin('DELETE', `/admin/price-lists/${created.json().id}`)).statusCode).toBe(204)
      },
    )

    it('gives a country wanted by two new regions to the first, and a conflict to the second', async () => {
      const body = (name: string) => ({
        name,
        currency: 'PLN',
        prices_include_tax: true,
        countries: ['CZ', 'PL'],
      })
      const outcome = await overlap(
        (trx) => createRegion(trx, node.runtime.outbox, body('Race A')),
        (trx) => createRegion(trx, node.runtime.outbox, body('Race B')),
      )
      expect(outcome.ok).toBe(false)
      expect(outcome.ok ? undefined : (outcome.error as ProblemError).code).toBe('conflict')
      const owners = await db()
        .selectFrom('region_countries')
        .innerJoin('regions', 'regions.id', 'region_countries.region_id')
        .select('regions.name')
        .distinct()
        .where('country_code', 'in', ['PL', 'CZ'])
        .execute()
      expect(owners).toEqual([{ name: 'Race A' }])
    })

    it('never lets two crossing moves make a cycle', async () => {
      // Each moves a root under the other's child: no row lock the two share would order them.
      const create = async (handle: string, parent_id?: string) =>
        (await admin('POST', '/admin/categories', { handle, name: handle, parent_id })).json().id as string
      const a = await create('race-a')
      const a1 = await create('race-a1', a)
      const b = await create('race-b')
      const b1 = await create('race-b1', b)
      const outcome = await overlap(
        (trx) => updateCategory(trx, node.runtime.outbox, a, { parent_id: b1 }),
        (trx) => updateCategory(trx, node.runtime.outbox, b, { parent_id: a1 }),
      )
      expect(outcome.ok ? undefined : (outcome.error as ProblemError).code).toBe('conflict')
      const paths = await db()
        .selectFrom('categories')
        .select(['id', 'parent_id', 'path'])
        .where('id', 'in', [a, a1, b, b1])
        .execute()
      expect(new Map(paths.map((r) => [r.id, r.path]))).toEqual(
        new Map([
          [b, b],
          [b1, `${b}/${b1}`],
          [a, `${b}/${b1}/${a}`],
          [a1, `${b}/${b1}/${a}/${a1}`],
        ]),
      )
    })

    it('files a new subcategory under the path its parent has after a concurrent move', async () => {
      const root = (await admin('POST', '/admin/categories', { handle: 'move-root', name: 'Root' })).json()
      const parent = (
        await admin('POST', '/admin/categories', { handle: 'move-parent', name: 'Parent' })
      ).json()
      const outcome = await overlap(
        (trx) => updateCategory(trx, node.runtime.outbox, parent.id, { parent_id: root.id }),
        (trx) =>
          createCategory(trx, node.runtime.outbox, {
            handle: 'move-child',
            name: 'Child',
            parent_id: parent.id,
          }),
      )
      expect(outcome.ok).toBe(true)
      const child = await db()
        .selectFrom('categories')
        .select(['id', 'path'])
        .where('handle', '=', 'move-child')
        .executeTakeFirstOrThrow()
      expect(child.path).toBe(`${root.id}/${parent.id}/${child.id}`)
    })
  })

  describe('permissions', () => {
    it('lets a read-only role read but not write, and writes nothing', async () => {
      // The inventory manager reads products but may not change them, nor see customer groups.
      const staff = await newStaffSession(node, 'role_inventory_manager')
      const as = (method: Method, url: string, payload?: object) =>
        node.app.inject({ method, url, headers: bearer(staff.accessToken), ...(payload ? { payload } : {}) })
      for (const url of ['/admin/categories', '/admin/collections', '/admin/regions', '/admin/price-lists'])
        expect((await as('GET', url)).statusCode, url).toBe(200)
      const before = [await count('categories'), await count('regions'), await count('price_lists')]
      expectProblem(await as('POST', '/admin/categories', { handle: 'nope', name: 'Nope' }), 403, 'forbidden')
      expectProblem(
        await as('POST', '/admin/collections', { handle: 'nope', title: 'Nope' }),
        403,
        'forbidden',
      )
      expectProblem(
        await as('POST', '/admin/regions', {
          name: 'x',
          currency: 'EUR',
          prices_include_tax: true,
          countries: ['IT'],
        }),
        403,
        'forbidden',
      )
      expectProblem(await as('POST', '/admin/price-lists', { name: 'Nope' }), 403, 'forbidden')
      expectProblem(await as('PATCH', `/admin/regions/${region}`, { name: 'Hijacked' }), 403, 'forbidden')
      expectProblem(await as('DELETE', `/admin/regions/${region}`), 403, 'forbidden')
      expectProblem(await as('GET', '/admin/customer-groups'), 403, 'forbidden')
      expectProblem(await as('POST', '/admin/customer-groups', { name: 'Nope' }), 403, 'forbidden')
      expect([await count('categories'), await count('regions'), await count('price_lists')]).toEqual(before)
      expect((await admin('GET', `/admin/regions/${region}`)).json().name).toBe('Eurozone')

      // The catalog manager manages prices but not customers.
      const manager = await newStaffSession(node, 'role_catalog_manager')
      const create = await node.app.inject({
        method: 'POST',
        url: '/admin/categories',
        headers: bearer(manager.accessToken),
        payload: { handle: 'by-manager', name: 'By manager' },
      })
      expect(create.statusCode, create.body).toBe(201)
      expectProblem(
        await node.app.inject({ url: '/admin/customer-groups', headers: bearer(manager.accessToken) }),
        403,
        'forbidden',
      )
    })

    it('asks for credentials', async () => {
      for (const url of [
        '/admin/categories',
        '/admin/regions',
        '/admin/price-lists',
        '/admin/customer-groups',
      ])
        expectProblem(await node.app.inject(url), 401, 'unauthenticated')
    })
  })
})
