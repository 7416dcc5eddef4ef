/**
 * Carts through the HTTP API, on each database: a shipping option the cart can no longer use is
 * dropped with a notice and never charged, and a sign-in's claim merges the customer's previous
 * cart once, naming the lines and units it could not carry.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createShippingOption, updateShippingOption } from '../src/modules/carts/shipping.ts'
import { deleteVariant } from '../src/modules/catalog/products.ts'
import { deleteRegion } from '../src/modules/catalog/regions.ts'
import { deleteCategory } from '../src/modules/tax/admin.ts'
import { type Tx, withTransaction } from '../src/platform/db/transaction.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { berlin, createTestStore, type TestStore } from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'
import { holdOpen as holdOpenOn, waitForLockWaits } from './support/locks.ts'
import { createTestCustomer } from './support/orders.ts'

describe.each(DATABASE_KINDS)('%s: carts', (kind) => {
  let node: TestNode
  let store: TestStore
  const db = () => node.runtime.database.db

  const call = (method: string, url: string, payload?: object, headers: Record<string, string> = {}) =>
    node.app.inject({ method: method as 'POST', url, headers, ...(payload ? { payload } : {}) })

  const complete = (cartId: string) =>
    node.app.inject({
      method: 'POST',
      url: `/store/carts/${cartId}/complete`,
      headers: { 'idempotency-key': randomUUID() },
      payload: { payment: { provider: 'test', payment_method: 'pm_card_visa' } },
    })

  /** A flat option of the euro region, for one test to change or delete. */
  async function euOption(name: string, amount: number): Promise<string> {
    const res = await call(
      'POST',
      '/admin/shipping-options',
      { region_id: store.euRegion, name, price_type: 'flat', amount },
      adminAuth,
    )
    expect(res.statusCode, res.body).toBe(201)
    return res.json().id
  }

  /** A euro cart with a shirt, addressed to Berlin and shipped with the option given. */
  async function cartShippedWith(optionId: string): Promise<string> {
    const created = await call('POST', '/store/carts', {
      region_id: store.euRegion,
      email: 'shopper@example.com',
      lines: [{ variant_id: store.shirt, quantity: 1 }],
    })
    expect(created.statusCode, created.body).toBe(201)
    const chosen = await call('PATCH', `/store/carts/${created.json().id}`, {
      shipping_address: berlin,
      shipping_option_id: optionId,
    })
    expect(chosen.statusCode, chosen.body).toBe(200)
    expect(chosen.json().shipping_option_id).toBe(optionId)
    return created.json().id
  }

  beforeAll(async () => {
    node = await startTestNode(kind)
    store = await createTestStore(node.app)
  })
  afterAll(() => node?.close())

  describe('shipping options', () => {
    it('drops a deleted shipping option at the next change, with a notice', async () => {
      const option = await euOption('Temporary', 700)
      const cartId = await cartShippedWith(option)
      expect(
        (await call('DELETE', `/admin/shipping-options/${option}`, undefined, adminAuth)).statusCode,
      ).toBe(204)
      const next = await call('PATCH', `/store/carts/${cartId}`, { metadata: { k: 'v' } })
      expect(next.statusCode, next.body).toBe(200)
      expect(next.json()).toMatchObject({ shipping_option_id: null, shipping: null })
      expect(next.json().notices).toEqual([
        'The shipping option chosen for this cart is no longer offered: choose another shipping option',
      ])
      const stored = await db()
        .selectFrom('carts')
        .select('shipping_option_id')
        .where('id', '=', cartId)
        .executeTakeFirstOrThrow()
      expect(stored.shipping_option_id).toBeNull()
    })

    it('neither keeps nor charges an option staff moved to another region', async () => {
      // 9.99 in the euro region; once moved, its amount is in dollars.
      const option = await euOption('Express', 999)
      const changed = await cartShippedWith(option)
      const unchanged = await cartShippedWith(option)
      const moved = await call(
        'PATCH',
        `/admin/shipping-options/${option}`,
        { region_id: store.usRegion },
        adminAuth,
      )
      expect(moved.statusCode, moved.body).toBe(200)

      const next = await call('PATCH', `/store/carts/${changed}`, { metadata: { k: 'v' } })
      expect(next.statusCode, next.body).toBe(200)
      expect(next.json()).toMatchObject({ shipping_option_id: null, shipping: null })
      expect(next.json().totals.shipping_total).toBe(0)
      expect(next.json().notices).toEqual([
        'The shipping option chosen for this cart is no longer offered: choose another shipping option',
      ])

      // A cart not changed since still names it: checkout refuses it, holding and charging nothing.
      const refused = await complete(unchanged)
      expect(refused.statusCode, refused.body).toBe(422)
      expect(refused.json()).toMatchObject({
        code: 'cart_invalid',
        errors: [{ path: 'cart.shipping_option_id', message: expect.stringMatching(/no longer offered/) }],
      })
      const cart = await db()
        .selectFrom('carts')
        .select(['status', 'order_id', 'payment_id', 'shipping_option_id'])
        .where('id', '=', unchanged)
        .executeTakeFirstOrThrow()
      // Saved without the option, so the shopper is sent back to a cart that asks for another.
      expect(cart).toEqual({ status: 'active', order_id: null, payment_id: null, shipping_option_id: null })
      expect(
        await db().selectFrom('payments').select('id').where('cart_id', '=', unchanged).execute(),
      ).toEqual([])
    })

    it('refuses a tax category that does not exist, on create and update, changing nothing', async () => {
      const option = await euOption('Taxed', 450)
      const created = await call(
        'POST',
        '/admin/shipping-options',
        { region_id: store.euRegion, name: 'Typo', price_type: 'flat', amount: 450, tax_category: 'shiping' },
        adminAuth,
      )
      expect(created.statusCode, created.body).toBe(422)
      expect(created.json()).toMatchObject({
        code: 'unknown_tax_category',
        errors: [{ path: 'body.tax_category', message: 'no such tax category' }],
      })
      expect(
        await db().selectFrom('shipping_options').select('id').where('name', '=', 'Typo').execute(),
      ).toEqual([])
      const updated = await call(
        'PATCH',
        `/admin/shipping-options/${option}`,
        { name: 'Renamed', tax_category: 'shiping' },
        adminAuth,
      )
      expect(updated.statusCode, updated.body).toBe(422)
      expect(updated.json()).toMatchObject({
        code: 'unknown_tax_category',
        errors: [{ path: 'body.tax_category', message: 'no such tax category' }],
      })
      expect(
        await db()
          .selectFrom('shipping_options')
          .select(['name', 'tax_category'])
          .where('id', '=', option)
          .execute(),
      ).toEqual([{ name: 'Taxed', tax_category: 'standard' }])
    })

    it('lists and prices options on the catalog as it is now, as the cart and checkout price them', async () => {
      const own = await createTestStore(node.app, { reuse: store })
      const option = async (name: string, tiers: object[]) => {
        const payload = { region_id: store.euRegion, name, price_type: 'weight', tiers }
        const res = await call('POST', '/admin/shipping-options', payload, adminAuth)
        expect(res.statusCode, res.body).toBe(201)
        return res.json().id as string
      }
      const bounded = await option('Bounded', [
        { max_weight_g: 1000, amount: 300 },
        { max_weight_g: 2000, amount: 600 },
      ])
      const heavy = await option('Heavy', [
        { max_weight_g: 1000, amount: 400 },
        { max_weight_g: null, amount: 900 },
      ])
      // Two shirts of 500 g: 1,000 g.
      const created = await call('POST', '/store/carts', {
        region_id: store.euRegion,
        email: 'parcel@example.com',
        lines: [{ variant_id: own.shirt, quantity: 2 }],
      })
      const cartId = created.json().id as string
      const chosen = await call('PATCH', `/store/carts/${cartId}`, {
        shipping_address: berlin,
        shipping_option_id: bounded,
      })
      expect(chosen.json().totals.shipping_total).toBe(300)
      const listed = async () => {
        const res = await call('GET', `/store/carts/${cartId}/shipping-options`)
        expect(res.statusCode, res.body).toBe(200)
        const data = res.json().data as Array<{ id: string; amount: number }>
        return Object.fromEntries(
          data.filter((o) => [bounded, heavy].includes(o.id)).map((o) => [o.id, o.amount]),
        )
      }
      expect(await listed()).toEqual({ [bounded]: 300, [heavy]: 400 })

      // Staff make the shirt heavier: the cart now weighs 3,000 g, more than Bounded carries.
      const heavier = await call('PATCH', `/admin/variants/${own.shirt}`, { weight_g: 1500 }, adminAuth)
      expect(heavier.statusCode, heavier.body).toBe(200)
      expect(await listed()).toEqual({ [heavy]: 900 })

      // Checkout names the cart's option, not a field of its own request.
      const refused = await complete(cartId)
      expect(refused.statusCode, refused.body).toBe(422)
      expect(refused.json()).toMatchObject({
        code: 'shipping_not_available',
        errors: [{ path: 'cart.shipping_option_id' }],
      })
      // The refusal saved the cart without it, so the shopper is asked for another option.
      const after = (await call('GET', `/store/carts/${cartId}`)).json()
      expect(after.shipping_option_id).toBeNull()
      expect(after.totals.shipping_total).toBe(0)
      // Choosing it again names the request's field.
      const again = await call('PATCH', `/store/carts/${cartId}`, { shipping_option_id: bounded })
      expect(again.statusCode, again.body).toBe(422)
      expect(again.json()).toMatchObject({
        code: 'shipping_not_available',
        errors: [{ path: 'body.shipping_option_id' }],
      })
      const switched = await call('PATCH', `/store/carts/${cartId}`, { shipping_option_id: heavy })
      expect(switched.statusCode, switched.body).toBe(200)
      expect(switched.json().totals.shipping_total).toBe(900)
    })
  })

  // A request checks what it refers to, then writes; another request's delete of it can commit in
  // between. Staged on PostgreSQL (PGlite runs one transaction at a time): the delete is made and
  // held uncommitted, the request's check still sees the row and its write waits for the delete;
  // once the delete commits, the request must answer as it does when the delete comes first.
  describe.runIf(kind === 'postgres')('a write racing the delete of what it refers to', () => {
    const holdOpen = (work: (trx: Tx) => Promise<unknown>) => holdOpenOn(db(), work)
    const newRegion = async (country: string) => {
      const res = await call(
        'POST',
        '/admin/regions',
        { name: `Doomed ${country}`, currency: 'EUR', prices_include_tax: true, countries: [country] },
        adminAuth,
      )
      expect(res.statusCode, res.body).toBe(201)
      return res.json().id as string
    }
    const holdRegionDelete = (regionId: string) =>
      holdOpen(async (trx) => expect(await deleteRegion(trx, node.runtime.outbox, regionId)).toBe(true))
    const rowsNaming = async (table: 'carts' | 'shipping_options', regionId: string) =>
      db().selectFrom(table).select('id').where('region_id', '=', regionId).execute()

    it('refuses a cart in a region deleted meanwhile with unknown_region', async () => {
      const region = await newRegion('NZ')
      const deleted = await holdRegionDelete(region)
      const pending = Promise.all([
        call('POST', '/store/carts', { region_id: region }),
        call('POST', '/store/carts', { country_code: 'NZ', email: 'kiwi@example.com' }),
      ])
      await waitForLockWaits(db(), 2)
      await deleted.release()
      const [byId, byCountry] = await pending
      expect(byId.statusCode, byId.body).toBe(422)
      expect(byId.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(byId.json()).toMatchObject({
        code: 'unknown_region',
        errors: [{ path: 'body.region_id', message: 'no such region' }],
      })
      expect(byCountry.statusCode, byCountry.body).toBe(422)
      expect(byCountry.json()).toMatchObject({
        code: 'unknown_region',
        errors: [{ path: 'body.country_code', message: 'no region serves this country' }],
      })
      expect(await rowsNaming('carts', region)).toEqual([])
    })

    it('refuses a shipping option in, or moved to, a region deleted meanwhile with unknown_region', async () => {
      const region = await newRegion('AU')
      const option = await euOption('Moving', 500)
      const deleted = await holdRegionDelete(region)
      const pending = Promise.all([
        call(
          'POST',
          '/admin/shipping-options',
          { region_id: region, name: 'Down under', price_type: 'flat', amount: 900 },
          adminAuth,
        ),
        call('PATCH', `/admin/shipping-options/${option}`, { region_id: region }, adminAuth),
      ])
      await waitForLockWaits(db(), 2)
      await deleted.release()
      for (const answer of await pending) {
        expect(answer.statusCode, answer.body).toBe(422)
        expect(answer.json()).toMatchObject({
          code: 'unknown_region',
          errors: [{ path: 'body.region_id', message: 'no such region' }],
        })
      }
      expect(await rowsNaming('shipping_options', region)).toEqual([])
      const kept = await call(
        'GET',
        `/admin/shipping-options?region_id=${store.euRegion}`,
        undefined,
        adminAuth,
      )
      expect(kept.json().data.map((o: { id: string }) => o.id)).toContain(option)
    })

    const newTaxCategory = async (code: string) => {
      const res = await call(
        'PUT',
        `/admin/tax/categories/${code}`,
        { name: code, default_kind: 'standard' },
        adminAuth,
      )
      expect(res.statusCode, res.body).toBe(200)
    }
    const optionsNaming = (code: string) =>
      db()
        .selectFrom('shipping_options')
        .select('id')
        .where('tax_category', '=', code)
        .orderBy('id')
        .execute()

    it("makes a tax category's delete wait for shipping option writes naming it, then refuses it", async () => {
      await newTaxCategory('race_ship_a')
      const moving = await euOption('Moving to race_ship_a', 500)
      let created = ''
      const writes = await holdOpen(async (trx) => {
        created = (
          await createShippingOption(trx, {
            region_id: store.euRegion,
            name: 'Created in race_ship_a',
            price_type: 'flat',
            amount: 500,
            tax_category: 'race_ship_a',
          })
        ).id
        expect(await updateShippingOption(trx, moving, { tax_category: 'race_ship_a' })).toBeDefined()
      })
      const deleted = call('DELETE', '/admin/tax/categories/race_ship_a', undefined, adminAuth)
      await waitForLockWaits(db(), 1)
      await writes.release()
      const answer = await deleted
      expect(answer.statusCode, answer.body).toBe(409)
      expect(answer.json()).toMatchObject({
        code: 'tax_category_in_use',
        detail: '2 shipping options use tax category race_ship_a; move them to another category first',
      })
      expect(await optionsNaming('race_ship_a')).toEqual(
        [{ id: created }, { id: moving }].sort((a, b) => (a.id < b.id ? -1 : 1)),
      )
    })

    it('refuses a shipping option in, or moved to, a tax category deleted meanwhile with unknown_tax_category', async () => {
      await newTaxCategory('race_ship_b')
      const option = await euOption('Staying standard', 500)
      const deleted = await holdOpen(async (trx) =>
        expect(await deleteCategory(trx, 'race_ship_b')).toBe(true),
      )
      const pending = Promise.all([
        call(
          'POST',
          '/admin/shipping-options',
          {
            region_id: store.euRegion,
            name: 'Late',
            price_type: 'flat',
            amount: 500,
            tax_category: 'race_ship_b',
          },
          adminAuth,
        ),
        call('PATCH', `/admin/shipping-options/${option}`, { tax_category: 'race_ship_b' }, adminAuth),
      ])
      await waitForLockWaits(db(), 2)
      await deleted.release()
      for (const answer of await pending) {
        expect(answer.statusCode, answer.body).toBe(422)
        expect(answer.json()).toMatchObject({
          code: 'unknown_tax_category',
          errors: [{ path: 'body.tax_category', message: 'no such tax category' }],
        })
      }
      expect(await optionsNaming('race_ship_b')).toEqual([])
    })

    it('answers a purchase limit for a variant deleted meanwhile with 404', async () => {
      const tag = randomUUID().slice(0, 8)
      const product = await call(
        'POST',
        '/admin/products',
        { handle: `limited-${tag}`, title: 'Limited', variants: [{ sku: `LIM-${tag}` }] },
        adminAuth,
      )
      expect(product.statusCode, product.body).toBe(201)
      const variantId = product.json().variants[0].id as string
      const deleted = await holdOpen(async (trx) =>
        expect(await deleteVariant(trx, node.runtime.outbox, variantId)).toBeDefined(),
      )
      const pending = call(
        'PUT',
        `/admin/purchase-limits/${variantId}`,
        { max_per_line: 2, max_per_customer: null },
        adminAuth,
      )
      await waitForLockWaits(db(), 1)
      await deleted.release()
      const answer = await pending
      expect(answer.statusCode, answer.body).toBe(404)
      expect(answer.json()).toMatchObject({ code: 'not_found', detail: `No variant ${variantId}` })
      expect(
        await db()
          .selectFrom('purchase_limits')
          .select('variant_id')
          .where('variant_id', '=', variantId)
          .execute(),
      ).toEqual([])
    })
  })

  describe('claims on sign-in', () => {
    /** A transaction holding a cart's row until released. */
    const holdRow = (cartId: string) => {
      const { promise: released, resolve: release } = Promise.withResolvers<void>()
      const { promise: isLocked, resolve: locked } = Promise.withResolvers<void>()
      const done = withTransaction(db(), async (trx) => {
        await trx.selectFrom('carts').select('id').where('id', '=', cartId).forUpdate().execute()
        locked()
        await released
      })
      return { isLocked, release, done }
    }
    const quantities = (cart: { lines: Array<{ variant_id: string; quantity: number }> }) =>
      cart.lines.map((l) => [l.variant_id, l.quantity])

    it("merges the customer's previous cart once when several claims of the cart run at once", async () => {
      const customer = await createTestCustomer(node)
      const previous = await call(
        'POST',
        '/store/carts',
        { region_id: store.euRegion, lines: [{ variant_id: store.shirt, quantity: 3 }] },
        customer.headers,
      )
      expect(previous.statusCode, previous.body).toBe(201)
      const guest = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          lines: [{ variant_id: store.shirt, quantity: 2 }],
        })
      ).json()
      // On PostgreSQL the claims surely overlap: the guest cart's row is held until all four wait
      // on a lock, each having read both carts. PGlite runs one transaction at a time.
      const held = kind === 'postgres' ? holdRow(guest.id) : undefined
      await held?.isLocked
      // Two tabs, a sign-in sent twice: the same claim several times at once.
      const pending = Promise.all(
        [1, 2, 3, 4].map(() =>
          call('POST', `/store/carts/${guest.id}/customer`, undefined, customer.headers),
        ),
      )
      if (held) {
        await waitForLockWaits(db(), 4, { timeoutMs: 30_000 })
        held.release()
        await held.done
      }
      const claims = await pending
      for (const claim of claims) {
        expect(claim.statusCode, claim.body).toBe(200)
        expect(quantities(claim.json())).toEqual([[store.shirt, 5]])
      }
      const cart = (await call('GET', `/store/carts/${guest.id}`, undefined, customer.headers)).json()
      expect(cart.customer_id).toBe(customer.id)
      expect(quantities(cart)).toEqual([[store.shirt, 5]])
      const old = await db()
        .selectFrom('carts')
        .select('status')
        .where('id', '=', previous.json().id)
        .executeTakeFirstOrThrow()
      expect(old.status).toBe('merged')
    })

    it('names each line of the previous cart it could not carry, rather than dropping it unseen', async () => {
      const customer = await createTestCustomer(node)
      const tag = randomUUID().slice(0, 8)
      const usOnly = await call(
        'POST',
        '/admin/products',
        {
          handle: `us-only-${tag}`,
          title: 'US only',
          status: 'published',
          variants: [{ sku: `US-${tag}`, weight_g: 100, prices: [{ currency: 'USD', amount: 2000 }] }],
        },
        adminAuth,
      )
      expect(usOnly.statusCode, usOnly.body).toBe(201)
      const previous = await call(
        'POST',
        '/store/carts',
        {
          region_id: store.usRegion,
          lines: [
            { variant_id: usOnly.json().variants[0].id, quantity: 2 },
            { variant_id: store.shirt, quantity: 1 },
          ],
        },
        customer.headers,
      )
      expect(previous.statusCode, previous.body).toBe(201)
      const guest = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          lines: [{ variant_id: store.shirt, quantity: 1 }],
        })
      ).json()

      const claimed = await call('POST', `/store/carts/${guest.id}/customer`, undefined, customer.headers)
      expect(claimed.statusCode, claimed.body).toBe(200)
      expect(quantities(claimed.json())).toEqual([[store.shirt, 2]])
      expect(claimed.json().notices).toEqual([
        `US only (US-${tag}) from your earlier cart is not sold here and was not added`,
      ])
      const old = await db()
        .selectFrom('carts')
        .select('status')
        .where('id', '=', previous.json().id)
        .executeTakeFirstOrThrow()
      expect(old.status).toBe('merged')
    })

    it('names the units of the previous cart a line limit kept out, rather than dropping them unseen', async () => {
      const customer = await createTestCustomer(node)
      const own = await createTestStore(node.app, { reuse: store })
      for (const variantId of [own.shirt, own.jacket]) {
        const limited = await call(
          'PUT',
          `/admin/purchase-limits/${variantId}`,
          { max_per_line: 3, max_per_customer: null },
          adminAuth,
        )
        expect(limited.statusCode, limited.body).toBe(200)
      }
      const product = await call('GET', `/admin/products/${own.product}`, undefined, adminAuth)
      const skuOf = (id: string) =>
        product.json().variants.find((v: { id: string; sku: string }) => v.id === id).sku as string
      const previous = await call(
        'POST',
        '/store/carts',
        {
          region_id: store.euRegion,
          lines: [
            { variant_id: own.shirt, quantity: 3 },
            { variant_id: own.jacket, quantity: 2 },
            { variant_id: store.shirt, quantity: 4 },
          ],
        },
        customer.headers,
      )
      expect(previous.statusCode, previous.body).toBe(201)
      const guest = await call('POST', '/store/carts', {
        region_id: store.euRegion,
        lines: [
          { variant_id: own.shirt, quantity: 2 },
          { variant_id: own.jacket, quantity: 3 },
        ],
      })
      expect(guest.statusCode, guest.body).toBe(201)

      const claimed = await call(
        'POST',
        `/store/carts/${guest.json().id}/customer`,
        undefined,
        customer.headers,
      )
      expect(claimed.statusCode, claimed.body).toBe(200)
      expect(quantities(claimed.json())).toEqual([
        [own.shirt, 3],
        [own.jacket, 3],
        [store.shirt, 4],
      ])
      // A line carried whole gets no notice; one cut short, or left out at its limit, says how many.
      expect(claimed.json().notices).toEqual([
        `Organic tee (${skuOf(own.shirt)}): 2 of the 3 from your earlier cart could not be added (at most 3 per line)`,
        `Organic tee (${skuOf(own.jacket)}): 2 of the 2 from your earlier cart could not be added (at most 3 per line)`,
      ])
      const old = await db()
        .selectFrom('carts')
        .select('status')
        .where('id', '=', previous.json().id)
        .executeTakeFirstOrThrow()
      expect(old.status).toBe('merged')
    })
  })
})
