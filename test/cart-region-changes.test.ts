/**
 * A cart follows its region as staff change it: after the region's tax basis or currency changes,
 * the cart's next change reprices it on the new one with a notice, and a checkout of a cart last
 * priced on the old one is refused (409 cart_changed) with the cart saved repriced, so that no
 * order is placed on the old basis or in the old currency.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestNode, type TestNode } from './support/app.ts'
import { adminCall, completeCheckout, createTestStore, type TestStore } from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'

describe.each(DATABASE_KINDS)('%s: carts follow changes to their region', (kind) => {
  let node: TestNode
  let store: TestStore

  beforeAll(async () => {
    node = await startTestNode(kind)
    store = await createTestStore(node.app)
  })
  afterAll(() => node?.close())

  const call = (method: string, url: string, payload?: object) =>
    node.app.inject({ method: method as 'POST', url, ...(payload ? { payload } : {}) })

  async function ok(method: string, url: string, payload: object, status = 201) {
    const res = await adminCall(node.app, method, url, payload)
    expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(status)
    return res.json()
  }

  /** A euro region with prices including tax, serving one country, with a flat 5.00 option. */
  async function region(country: string) {
    const created = await ok('POST', '/admin/regions', {
      name: `Region ${country}`,
      currency: 'EUR',
      prices_include_tax: true,
      countries: [country],
    })
    const option = await ok('POST', '/admin/shipping-options', {
      region_id: created.id,
      name: 'Flat',
      price_type: 'flat',
      amount: 500,
    })
    return { id: created.id as string, option: option.id as string }
  }

  /** A cart of one unit of the variant, addressed in the region and shipped with its option. */
  async function cartIn(r: { id: string; option: string }, country: string, variantId: string) {
    const created = await call('POST', '/store/carts', {
      region_id: r.id,
      email: 'region-shopper@example.com',
      lines: [{ variant_id: variantId, quantity: 1 }],
    })
    expect(created.statusCode, created.body).toBe(201)
    const ready = await call('PATCH', `/store/carts/${created.json().id}`, {
      shipping_address: { line1: 'Gade 1', city: 'City', postal_code: '1000', country_code: country },
      shipping_option_id: r.option,
    })
    expect(ready.statusCode, ready.body).toBe(200)
    return ready.json()
  }

  it('prices a cart on the tax basis its region has now, at its next change and at checkout', async () => {
    const dk = await region('DK')
    const changed = await cartIn(dk, 'DK', store.shirt)
    const checkedOut = await cartIn(dk, 'DK', store.shirt)
    expect(changed).toMatchObject({ prices_include_tax: true, totals: { total: 1999 + 500 } })

    await ok('PATCH', `/admin/regions/${dk.id}`, { prices_include_tax: false }, 200)
    // What a cart made now costs: tax on top of the prices.
    const fresh = await cartIn(dk, 'DK', store.shirt)
    expect(fresh.prices_include_tax).toBe(false)
    expect(fresh.totals.total).toBe(1999 + 500 + fresh.totals.tax_total)
    expect(fresh.totals.tax_total).toBeGreaterThan(0)

    const next = await call('PATCH', `/store/carts/${changed.id}`, { metadata: { seen: 'yes' } })
    expect(next.statusCode, next.body).toBe(200)
    expect(next.json()).toMatchObject({ prices_include_tax: false, totals: { total: fresh.totals.total } })
    expect(next.json().notices).toEqual([
      'Prices here now exclude tax, which is added on top: the cart was repriced',
    ])

    // A cart not changed since is not charged on the old basis: refused, and saved repriced.
    const refused = await completeCheckout(node.app, checkedOut.id)
    expect(refused.statusCode, refused.body).toBe(409)
    expect(refused.json().code).toBe('cart_changed')
    const shown = (await call('GET', `/store/carts/${checkedOut.id}`)).json()
    expect(shown).toMatchObject({ prices_include_tax: false, totals: { total: fresh.totals.total } })
    const placed = await completeCheckout(node.app, checkedOut.id)
    expect(placed.statusCode, placed.body).toBe(201)
    expect(placed.json().order).toMatchObject({ prices_include_tax: false, currency: 'EUR' })
    expect(placed.json().order.totals.total).toBe(fresh.totals.total)
  })

  it('prices a cart in the currency its region has now, never placing an order in the old one', async () => {
    const se = await region('SE')
    // The same amount in both currencies: only the currency tells the old pricing from the new.
    const tag = randomBytes(4).toString('hex')
    const product = await ok('POST', '/admin/products', {
      handle: `mug-${tag}`,
      title: 'Mug',
      status: 'published',
      variants: [
        {
          sku: `MUG-${tag}`,
          prices: [
            { currency: 'EUR', amount: 1000 },
            { currency: 'USD', amount: 1000 },
          ],
        },
      ],
    })
    const mug = product.variants[0].id as string
    await ok('POST', '/admin/inventory/receipts', {
      location_id: store.location,
      lines: [{ variant_id: mug, quantity: 10 }],
    })
    const changed = await cartIn(se, 'SE', mug)
    const checkedOut = await cartIn(se, 'SE', mug)
    expect(changed).toMatchObject({ currency: 'EUR', totals: { total: 1500 } })

    // The option's 5.00 is now meant in dollars.
    await ok('PATCH', `/admin/regions/${se.id}`, { currency: 'USD' }, 200)

    const next = await call('PATCH', `/store/carts/${changed.id}`, { metadata: { seen: 'yes' } })
    expect(next.statusCode, next.body).toBe(200)
    expect(next.json()).toMatchObject({ currency: 'USD', totals: { total: 1500, shipping_total: 500 } })
    expect(next.json().notices).toEqual(['Prices here are now in USD, no longer EUR: the cart was repriced'])

    const refused = await completeCheckout(node.app, checkedOut.id)
    expect(refused.statusCode, refused.body).toBe(409)
    expect(refused.json()).toMatchObject({
      code: 'cart_changed',
      errors: [{ path: 'cart.totals.total' }],
    })
    expect((await call('GET', `/store/carts/${checkedOut.id}`)).json().currency).toBe('USD')
    const placed = await completeCheckout(node.app, checkedOut.id)
    expect(placed.statusCode, placed.body).toBe(201)
    expect(placed.json().order).toMatchObject({ currency: 'USD', region_id: se.id })
    const payments = await node.runtime.database.db
      .selectFrom('payments')
      .select(['currency_code', 'amount'])
      .where('cart_id', '=', checkedOut.id)
      .execute()
    expect(payments).toEqual([{ currency_code: 'USD', amount: expect.anything() }])
  })

  it('refuses to add a variant with no price in the currency the region has now', async () => {
    const nl = await region('NL')
    const cart = await cartIn(nl, 'NL', store.shirt)
    await ok('PATCH', `/admin/regions/${nl.id}`, { currency: 'GBP' }, 200)
    // The shirt has no pound price: the cart drops it, saying so, rather than charge euros.
    const next = await call('PATCH', `/store/carts/${cart.id}`, { metadata: { seen: 'yes' } })
    expect(next.statusCode, next.body).toBe(200)
    expect(next.json()).toMatchObject({ currency: 'GBP', lines: [] })
    expect(next.json().notices).toHaveLength(2)
    const added = await call('POST', `/store/carts/${cart.id}/lines`, {
      variant_id: store.shirt,
      quantity: 1,
    })
    expect(added.statusCode).toBe(422)
    expect(added.json().code).toBe('not_sold_in_region')
  })
})
