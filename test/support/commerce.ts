/**
 * A small store made through the admin API, for cart and checkout tests: tax origin DE, a euro
 * region with prices including tax (DE, FR, AT) and a dollar region without (US), a product with
 * two variants priced in both, a warehouse with stock, and shipping options in each region.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { expect } from 'vitest'
import { inventoryContext } from '../../src/modules/inventory/context.ts'
import { expireReservations, reserveNow } from '../../src/modules/inventory/reservations.ts'
import { adminAuth, type TestNode } from './app.ts'

export interface TestStore {
  euRegion: string
  usRegion: string
  product: string
  /** 19.99 EUR incl. VAT / 15.00 USD, 500 g. */
  shirt: string
  /** 49.50 EUR / 40.00 USD, 1200 g. */
  jacket: string
  location: string
  euShipping: string
  usShipping: string
}

export async function adminCall(app: FastifyInstance, method: string, url: string, payload?: object) {
  const res = await app.inject({
    method: method as 'POST',
    url,
    headers: adminAuth,
    ...(payload ? { payload } : {}),
  })
  return res
}

/**
 * A published e-book: one variant priced 12.00 EUR, digital services, nothing to ship or stock.
 * Its variant id.
 */
export async function createEbook(app: FastifyInstance, title: string): Promise<string> {
  const tag = randomUUID().slice(0, 8)
  const res = await adminCall(app, 'POST', '/admin/products', {
    handle: `ebook-${tag}`,
    title,
    status: 'published',
    tax_category: 'digital_services',
    variants: [
      {
        sku: `EBOOK-${tag}`,
        manage_inventory: false,
        requires_shipping: false,
        prices: [{ currency: 'EUR', amount: 1200 }],
      },
    ],
  })
  expect(res.statusCode, res.body).toBe(201)
  expect(res.json().variants[0].requires_shipping).toBe(false)
  return res.json().variants[0].id as string
}

async function ok(app: FastifyInstance, method: string, url: string, payload: object, status = 201) {
  const res = await adminCall(app, method, url, payload)
  expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(status)
  return res.json()
}

/**
 * Creates the store; `stock` units of each variant are received at the warehouse. With `reuse`,
 * only a new product (and its stock) is made, in that store's regions.
 */
export async function createTestStore(
  app: FastifyInstance,
  options: { stock?: number; reuse?: TestStore } = {},
): Promise<TestStore> {
  const tag = randomBytes(4).toString('hex')
  const reuse = options.reuse
  if (!reuse) await ok(app, 'PATCH', '/admin/tax/settings', { origin_country: 'DE' }, 200)
  const eu = reuse
    ? { id: reuse.euRegion }
    : await ok(app, 'POST', '/admin/regions', {
        name: `Europe ${tag}`,
        currency: 'EUR',
        prices_include_tax: true,
        countries: ['DE', 'FR', 'AT'],
      })
  const us = reuse
    ? { id: reuse.usRegion }
    : await ok(app, 'POST', '/admin/regions', {
        name: `United States ${tag}`,
        currency: 'USD',
        prices_include_tax: false,
        countries: ['US'],
      })
  const product = await ok(app, 'POST', '/admin/products', {
    handle: `tee-${tag}`,
    title: 'Organic tee',
    status: 'published',
    options: [{ name: 'Style', values: ['Shirt', 'Jacket'] }],
    variants: [
      {
        sku: `SHIRT-${tag}`,
        options: { Style: 'Shirt' },
        weight_g: 500,
        prices: [
          { currency: 'EUR', amount: 1999 },
          { currency: 'USD', amount: 1500 },
        ],
      },
      {
        sku: `JACKET-${tag}`,
        options: { Style: 'Jacket' },
        weight_g: 1200,
        prices: [
          { currency: 'EUR', amount: 4950 },
          { currency: 'USD', amount: 4000 },
        ],
      },
    ],
  })
  const variant = (style: string) =>
    product.variants.find((v: { options: { Style: string } }) => v.options.Style === style).id as string
  const location = reuse
    ? { id: reuse.location }
    : await ok(app, 'POST', '/admin/inventory/locations', {
        code: `wh-${tag}`,
        name: 'Main warehouse',
        address: { country_code: 'DE' },
      })
  const stock = options.stock ?? 100
  await ok(app, 'POST', '/admin/inventory/receipts', {
    location_id: location.id,
    lines: [
      { variant_id: variant('Shirt'), quantity: stock },
      { variant_id: variant('Jacket'), quantity: stock },
    ],
  })
  if (reuse) {
    return { ...reuse, product: product.id, shirt: variant('Shirt'), jacket: variant('Jacket') }
  }
  const euShipping = await ok(app, 'POST', '/admin/shipping-options', {
    region_id: eu.id,
    name: 'Standard',
    price_type: 'flat',
    amount: 490,
    free_above_amount: 10000,
  })
  const usShipping = await ok(app, 'POST', '/admin/shipping-options', {
    region_id: us.id,
    name: 'Ground',
    price_type: 'weight',
    tiers: [
      { max_weight_g: 1000, amount: 600 },
      { max_weight_g: 5000, amount: 1200 },
      { max_weight_g: null, amount: 2500 },
    ],
  })
  return {
    euRegion: eu.id,
    usRegion: us.id,
    product: product.id,
    shirt: variant('Shirt'),
    jacket: variant('Jacket'),
    location: location.id,
    euShipping: euShipping.id,
    usShipping: usShipping.id,
  }
}

export const berlin = {
  line1: 'Unter den Linden 1',
  city: 'Berlin',
  postal_code: '10117',
  country_code: 'DE',
}

/** A cart in the euro region, filled and ready to check out. */
export async function readyCart(app: FastifyInstance, store: TestStore, quantity = 1): Promise<string> {
  const created = await app.inject({
    method: 'POST',
    url: '/store/carts',
    payload: {
      region_id: store.euRegion,
      email: 'shopper@example.com',
      lines: [{ variant_id: store.shirt, quantity }],
    },
  })
  expect(created.statusCode, created.body).toBe(201)
  const id = created.json().id as string
  const patched = await app.inject({
    method: 'PATCH',
    url: `/store/carts/${id}`,
    payload: { shipping_address: berlin, shipping_option_id: store.euShipping },
  })
  expect(patched.statusCode, patched.body).toBe(200)
  return id
}

/** Checks a cart out with the test gateway's card (or the payment given) under a fresh key. */
export function completeCheckout(
  app: FastifyInstance,
  cartId: string,
  payment: object = { provider: 'test', payment_method: 'pm_card_visa' },
) {
  return app.inject({
    method: 'POST',
    url: `/store/carts/${cartId}/complete`,
    headers: { 'idempotency-key': randomUUID() },
    payload: { payment },
  })
}

/** A cart, ready to check out, of the last unit of a shirt. */
export async function lastUnitCart(node: TestNode, store: TestStore, email: string) {
  const only = await createTestStore(node.app, { reuse: store, stock: 1 })
  const created = await node.app.inject({
    method: 'POST',
    url: '/store/carts',
    payload: { region_id: store.euRegion, email, lines: [{ variant_id: only.shirt, quantity: 1 }] },
  })
  const cartId = created.json().id as string
  await node.app.inject({
    method: 'PATCH',
    url: `/store/carts/${cartId}`,
    payload: { shipping_address: berlin, shipping_option_id: store.euShipping },
  })
  return { cartId, variantId: only.shirt }
}

/** The cart's hold lapses and another shopper takes the unit. */
export async function takeLastUnit(node: TestNode, cartId: string, variantId: string) {
  const db = node.runtime.database.db
  await db
    .updateTable('inventory_reservations')
    .set({ expires_at: new Date(Date.now() - 1000) })
    .where('reference', '=', cartId)
    .execute()
  await expireReservations(db, inventoryContext(node.runtime, 'test:expire'))
  const ctx = inventoryContext(node.runtime, 'test:other')
  await reserveNow(
    db,
    { lines: [{ variant_id: variantId, quantity: 1 }], reference: `cart_other_${cartId}`, country: 'DE' },
    ctx,
  )
  await ctx.publish()
}
