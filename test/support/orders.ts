/**
 * Order fixtures: real orders placed without the HTTP checkout. The region, product and tax settings
 * are made through the admin API; the cart through the carts service (priced and taxed as the store
 * would); then the payment is created and authorised at the built-in test gateway, and the order
 * placed in one transaction with the authorisation recorded, as checkout does.
 */
import { randomBytes } from 'node:crypto'
import { expect } from 'vitest'
import { changeCart, createCart } from '../../src/modules/carts/carts.ts'
import type { CartRow } from '../../src/modules/carts/load.ts'
import type { CartTotals } from '../../src/modules/carts/totals.ts'
import { inventoryContext } from '../../src/modules/inventory/context.ts'
import { reserve } from '../../src/modules/inventory/reservations.ts'
import { commerceDeps } from '../../src/modules/orders/deps.ts'
import { type OrderView, placeOrder } from '../../src/modules/orders/orders.ts'
import { providerOf } from '../../src/modules/payments/registry.ts'
import { attachOrder, createPayment, recordAuthorization } from '../../src/modules/payments/service.ts'
import { recordSale } from '../../src/modules/tax/sales.ts'
import { withTransaction } from '../../src/platform/db/transaction.ts'
import { adminAuth, type TestNode } from './app.ts'
import { signUpConfirmed } from './customers.ts'
import { createTestLocation } from './inventory.ts'
import { bearer, strongPassword, uniqueEmail } from './staff.ts'

export interface OrderCatalog {
  regionId: string
  /** Variants of one product, in the order given to createOrderCatalog. */
  variants: Array<{ id: string; sku: string; price: number }>
  locationId: string
}

async function admin(node: TestNode, method: 'POST' | 'PATCH', url: string, payload: object) {
  const res = await node.app.inject({ method, url, headers: adminAuth, payload })
  if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`)
  return res.json()
}

/**
 * A region (EUR, prices with tax, DE), the store's tax origin (DE), a published product with a
 * variant per price, and a location holding `stock` of each.
 */
export async function createOrderCatalog(
  node: TestNode,
  options: { prices?: number[]; stock?: number } = {},
): Promise<OrderCatalog> {
  const tag = randomBytes(4).toString('hex')
  const prices = options.prices ?? [2500, 1000]
  await admin(node, 'PATCH', '/admin/tax/settings', { origin_country: 'DE' })
  const region = await admin(node, 'POST', '/admin/regions', {
    name: `Germany ${tag}`,
    currency: 'EUR',
    prices_include_tax: true,
    countries: ['DE'],
  }).catch(async () => {
    // DE belongs to a region made by an earlier call: reuse it.
    const list = await node.app.inject({ url: '/admin/regions', headers: adminAuth })
    return list.json().data.find((r: { countries: string[] }) => r.countries.includes('DE'))
  })
  const product = await admin(node, 'POST', '/admin/products', {
    handle: `order-item-${tag}`,
    title: `Order item ${tag}`,
    status: 'published',
    options: [{ name: 'Size', values: prices.map((_, i) => `S${i}`) }],
    variants: prices.map((amount, i) => ({
      sku: `ORD-${tag}-${i}`,
      options: { Size: `S${i}` },
      prices: [{ currency: 'EUR', amount }],
    })),
  })
  const variants = product.variants.map((v: { id: string; sku: string }, i: number) => ({
    id: v.id,
    sku: v.sku,
    price: prices[i]!,
  }))
  const locationId = await createTestLocation(node.runtime.database.db, { country: 'DE' })
  await admin(node, 'POST', '/admin/inventory/receipts', {
    location_id: locationId,
    lines: variants.map((v: { id: string }) => ({ variant_id: v.id, quantity: options.stock ?? 1000 })),
  })
  return { regionId: region.id, variants, locationId }
}

export interface PlaceTestOrderOptions {
  /** Quantities per variant of the catalog (index → quantity); default one of the first. */
  quantities?: number[]
  customerId?: string | null
  email?: string
  /** Authorise and capture at once: the order is paid. */
  capture?: boolean
  /** Hold the stock with a reservation, as checkout does. */
  reserve?: boolean
  /** Record the tax sale, as checkout's tax commit does. */
  recordTaxSale?: boolean
}

/** Places a real order from a cart, paid with the test gateway's `pm_card_visa`. */
export async function placeTestOrder(
  node: TestNode,
  catalog: OrderCatalog,
  options: PlaceTestOrderOptions = {},
): Promise<OrderView> {
  const deps = commerceDeps(node.runtime)
  const { db } = deps
  const access = { customerId: options.customerId ?? null }
  const quantities = options.quantities ?? [1]
  const lines = quantities
    .map((quantity, i) => ({ variant_id: catalog.variants[i]!.id, quantity }))
    .filter((l) => l.quantity > 0)
  const email = options.email ?? uniqueEmail('shopper')
  const cart = await createCart(deps, { region_id: catalog.regionId, email, lines }, access)
  await changeCart(deps, cart.id, access, [], () => ({
    set: {
      email,
      shipping_address: { line1: 'Hauptstraße 1', city: 'Berlin', postal_code: '10115', country_code: 'DE' },
    },
  }))
  // The row as written, with the totals the last change computed.
  const row = (await db
    .selectFrom('carts')
    .selectAll()
    .where('id', '=', cart.id)
    .executeTakeFirstOrThrow()) as unknown as CartRow
  const loaded = { cart: row }
  const totals = row.totals as unknown as CartTotals
  expect(totals.tax_pending).toBe(false)

  const payment = await createPayment(db, {
    cart_id: cart.id,
    provider: 'test',
    amount: totals.total,
    currency: loaded.cart.currency_code,
    payment_method: 'pm_card_visa',
  })
  // The gateway keeps its own ledger: it is called outside the transaction, as checkout does.
  const result = await providerOf(deps.providers, 'test').authorize({
    payment_id: payment.id,
    amount: payment.amount,
    currency: payment.currency,
    payment_method: 'pm_card_visa',
    provider_ref: null,
    email,
    capture: options.capture ?? false,
  })
  const ctx = inventoryContext(node.runtime, 'system:test')
  const order = await withTransaction(db, async (trx) => {
    const recorded = await recordAuthorization(trx, payment.id, result, deps.outbox)
    const reservation = options.reserve
      ? await reserve(trx, { lines, reference: cart.id, country: 'DE' }, ctx)
      : null
    const placed = await placeOrder(trx, deps.outbox, {
      cart: loaded.cart,
      totals,
      paymentId: payment.id,
      paymentStatus: recorded.status,
      reservationId: reservation?.id ?? null,
      status: recorded.status === 'captured' ? 'paid' : 'pending',
      actor: 'system:test',
    })
    await attachOrder(trx, payment.id, placed.id)
    await trx
      .updateTable('carts')
      .set({ status: 'completed', order_id: placed.id, payment_id: payment.id })
      .where('id', '=', cart.id)
      .execute()
    if (options.recordTaxSale) {
      await recordSale(trx, {
        reference: placed.id,
        date_of_supply: totals.date_of_supply,
        origin_country: 'DE',
        customer: { country: 'DE' },
        b2b: false,
        currency: 'EUR',
        net_amount: totals.total - totals.tax_total,
        tax_amount: totals.tax_total,
      })
    }
    return placed
  })
  await ctx.publish()
  return order
}

/** A signed-up customer, email confirmed, with an access token. */
export async function createTestCustomer(
  node: TestNode,
): Promise<{ id: string; headers: Record<string, string> }> {
  const email = uniqueEmail('customer')
  const password = strongPassword()
  await signUpConfirmed(node, email, password)
  const signIn = await node.app.inject({
    method: 'POST',
    url: '/store/auth/sign-in',
    payload: { email, password },
  })
  if (signIn.statusCode !== 200) throw new Error(`sign-in: ${signIn.statusCode} ${signIn.body}`)
  const headers = bearer(signIn.json().access_token)
  const me = await node.app.inject({ url: '/store/me', headers })
  return { id: me.json().id, headers }
}
