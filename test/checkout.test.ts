/**
 * Carts and checkout through the HTTP API, on each database: totals that add up in inclusive and
 * exclusive regions, one read and one write per change, bad input refused with nothing written,
 * and checkout's outcomes: an order (once per key and per cart), a decline that reopens the cart,
 * a 3-D Secure step, and the recovery job finishing a checkout its request abandoned.
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expireCarts } from '../src/modules/carts/carts.ts'
import { inventoryContext } from '../src/modules/inventory/context.ts'
import { expireReservations, releaseReservation, reserveNow } from '../src/modules/inventory/reservations.ts'
import { abandonCheckout, LEASE_MICROS } from '../src/modules/orders/checkout.ts'
import { commerceDeps } from '../src/modules/orders/deps.ts'
import { recoverCheckouts } from '../src/modules/orders/jobs.ts'
import { findOrder } from '../src/modules/orders/orders.ts'
import { VOID_PAYMENT_JOB } from '../src/modules/payments/jobs.ts'
import {
  type AuthorizeInput,
  type AuthorizeResult,
  PaymentProviderUnavailable,
} from '../src/modules/payments/provider.ts'
import { testCardFingerprint } from '../src/modules/payments/providers/test-gateway.ts'
import { applyWebhook, createPayment, paymentDeps, voidUnplaced } from '../src/modules/payments/service.ts'
import { PaymentVelocity } from '../src/modules/payments/velocity.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { pauseAt } from '../src/platform/failpoints.ts'
import { problem } from '../src/platform/http/errors.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import {
  adminCall,
  berlin,
  createEbook,
  createTestStore,
  lastUnitCart,
  readyCart,
  type TestStore,
  takeLastUnit,
} from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'
import { eventually } from './support/eventually.ts'
import { waitForLockWaits } from './support/locks.ts'
import { createTestCustomer } from './support/orders.ts'

describe.each(DATABASE_KINDS)('%s: carts and checkout', (kind) => {
  let node: TestNode
  let store: TestStore
  const db = () => node.runtime.database.db

  const call = (method: string, url: string, payload?: object, headers: Record<string, string> = {}) =>
    node.app.inject({ method: method as 'POST', url, headers, ...(payload ? { payload } : {}) })
  const complete = (cartId: string, payment: object, key = randomUUID(), remoteAddress = '127.0.0.1') =>
    node.app.inject({
      method: 'POST',
      url: `/store/carts/${cartId}/complete`,
      headers: { 'idempotency-key': key },
      payload: { payment },
      remoteAddress,
    })

  /** Lets the cart's checkout lease run out, as a request that outlived it finds it. */
  const runOutLease = (cartId: string) =>
    db()
      .updateTable('carts')
      .set({ checkout_lease_until: new Date(Date.now() - 1000) })
      .where('id', '=', cartId)
      .execute()

  async function levelOf(variantId: string) {
    return db()
      .selectFrom('inventory_levels')
      .select(['on_hand', 'reserved'])
      .where('variant_id', '=', variantId)
      .where('location_id', '=', store.location)
      .executeTakeFirstOrThrow()
  }

  beforeAll(async () => {
    node = await startTestNode(kind, {
      env: { RATE_LIMIT_PER_MINUTE: '100000', CHECKOUT_LEASE_SECONDS: '1' },
    })
    store = await createTestStore(node.app)
  })
  afterAll(() => node?.close())

  describe('carts', () => {
    it('prices lines from the server and keeps totals that add up (tax included)', async () => {
      const res = await call('POST', '/store/carts', {
        country_code: 'DE',
        lines: [{ variant_id: store.shirt, quantity: 2 }],
      })
      expect(res.statusCode, res.body).toBe(201)
      const cart = res.json()
      expect(cart.region_id).toBe(store.euRegion)
      expect(cart.lines[0]).toMatchObject({ unit_amount: 1999, quantity: 2, subtotal: 3998 })
      // The region has three countries and no address yet: tax is pending, not zero-rated.
      expect(cart.totals.tax_pending).toBe(true)

      const addressed = (
        await call('PATCH', `/store/carts/${cart.id}`, {
          shipping_address: berlin,
          shipping_option_id: store.euShipping,
        })
      ).json()
      expect(addressed.totals).toMatchObject({
        subtotal: 3998,
        shipping_total: 490,
        total: 4488,
        tax_pending: false,
      })
      // 19% German VAT inside 44.88: 7.17 (lines 6.38 + shipping 0.78, rounded per line).
      const lineTax = addressed.lines.reduce(
        (sum: number, l: { tax_amount: number }) => sum + l.tax_amount,
        0,
      )
      expect(lineTax + addressed.shipping.tax_amount).toBe(addressed.totals.tax_total)
      expect(addressed.totals.tax_total).toBe(717)

      const grown = (
        await call('POST', `/store/carts/${cart.id}/lines`, { variant_id: store.shirt, quantity: 3 })
      ).json()
      expect(grown.lines).toHaveLength(1)
      expect(grown.lines[0].quantity).toBe(5)
      // 99.95 is below the 100.00 free-shipping threshold; one more jacket passes it.
      expect(grown.totals.shipping_total).toBe(490)
      const free = (
        await call('POST', `/store/carts/${cart.id}/lines`, { variant_id: store.jacket, quantity: 1 })
      ).json()
      expect(free.totals.shipping_total).toBe(0)
      expect(free.totals.total).toBe(9995 + 4950)
    })

    it('adds tax on top in a region whose prices exclude it (US, no nexus: no tax)', async () => {
      const res = await call('POST', '/store/carts', {
        region_id: store.usRegion,
        lines: [{ variant_id: store.jacket, quantity: 1 }],
      })
      const cart = res.json()
      // A one-country region knows its destination from the start.
      expect(cart.totals.tax_pending).toBe(false)
      const shipped = (
        await call('PATCH', `/store/carts/${cart.id}`, {
          shipping_address: {
            line1: '1 Main St',
            city: 'Austin',
            region: 'TX',
            postal_code: '73301',
            country_code: 'US',
          },
          shipping_option_id: store.usShipping,
        })
      ).json()
      // 1200 g falls in the second weight tier.
      expect(shipped.totals).toMatchObject({
        subtotal: 4000,
        shipping_total: 1200,
        tax_total: 0,
        total: 5200,
      })
    })

    it('taxes shipped goods where they go, never by a billing address elsewhere', async () => {
      const austin = {
        line1: '1 Main St',
        city: 'Austin',
        region: 'TX',
        postal_code: '73301',
        country_code: 'US',
      }
      const cart = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          lines: [{ variant_id: store.shirt, quantity: 1 }],
        })
      ).json()
      const billed = await call('PATCH', `/store/carts/${cart.id}`, { billing_address: austin })
      expect(billed.statusCode, billed.body).toBe(200)
      // Where the shirt goes is not known yet: a bill to the US does not make it an export.
      expect(billed.json().totals).toMatchObject({ tax_pending: true, tax_total: 0, tax_notes: [] })
      const shipped = await call('PATCH', `/store/carts/${cart.id}`, { shipping_address: berlin })
      // 19% German VAT inside 19.99.
      expect(shipped.json().totals).toMatchObject({ tax_pending: false, tax_total: 319, total: 1999 })

      // In a one-country region the goods go there, whatever country the bill goes to.
      const us = (
        await call('POST', '/store/carts', {
          region_id: store.usRegion,
          lines: [{ variant_id: store.jacket, quantity: 1 }],
        })
      ).json()
      const billedHome = await call('PATCH', `/store/carts/${us.id}`, { billing_address: berlin })
      expect(billedHome.statusCode, billedHome.body).toBe(200)
      expect(billedHome.json().totals).toMatchObject({ tax_total: 0, total: 4000 })

      // Goods not shipped are taxed where the buyer is, but only at an address the region serves:
      // checkout refuses any other.
      const ebook = await createEbook(node.app, 'Atlas (PDF)')
      const download = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          lines: [{ variant_id: ebook, quantity: 1 }],
        })
      ).json()
      const outside = await call('PATCH', `/store/carts/${download.id}`, { billing_address: austin })
      expect(outside.json().totals).toMatchObject({ tax_pending: true, tax_total: 0, tax_notes: [] })
      const paris = { ...berlin, country_code: 'FR', city: 'Paris', postal_code: '75001' }
      const inside = await call('PATCH', `/store/carts/${download.id}`, { billing_address: paris })
      expect(inside.json().totals).toMatchObject({ tax_pending: false, tax_total: 200 })
    })

    it('keeps tax pending in a one-country region whose tax needs the state, until the address gives it', async () => {
      const registered = await adminCall(node.app, 'PUT', '/admin/tax/registrations/US-NY', {})
      expect(registered.statusCode, registered.body).toBe(200)
      const newYork = {
        line1: '350 Fifth Avenue',
        city: 'New York',
        region: 'NY',
        postal_code: '10118',
        country_code: 'US',
      }
      try {
        // Each node keeps the tax settings a few seconds: wait until this one taxes New York.
        await eventually(async () => {
          const probe = (await call('POST', '/store/carts', { region_id: store.usRegion })).json()
          await call('PATCH', `/store/carts/${probe.id}`, { shipping_address: newYork })
          const added = await call('POST', `/store/carts/${probe.id}/lines`, {
            variant_id: store.shirt,
            quantity: 1,
          })
          return added.json().totals.tax_total > 0 ? true : undefined
        })
        const created = await call('POST', '/store/carts', {
          region_id: store.usRegion,
          email: 'new-york@example.com',
          lines: [{ variant_id: store.jacket, quantity: 1 }],
        })
        expect(created.statusCode, created.body).toBe(201)
        expect(created.json().totals).toMatchObject({ tax_pending: true, tax_total: 0, total: 4000 })
        const cartId = created.json().id
        const added = await call('POST', `/store/carts/${cartId}/lines`, {
          variant_id: store.shirt,
          quantity: 1,
        })
        expect(added.statusCode, added.body).toBe(200)
        expect(added.json().totals).toMatchObject({ tax_pending: true, tax_total: 0, total: 5500 })
        const early = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
        expect(early.statusCode, early.body).toBe(422)
        expect(early.json().code).toBe('cart_invalid')

        // An address without the state its tax needs is refused, naming the cart's field.
        const { region: _state, ...stateless } = newYork
        const vague = await call('PATCH', `/store/carts/${cartId}`, { shipping_address: stateless })
        expect(vague.statusCode, vague.body).toBe(422)
        expect(vague.json()).toMatchObject({
          code: 'unknown_region',
          errors: [{ path: 'shipping_address.region' }],
        })
        expect((await call('GET', `/store/carts/${cartId}`)).json().version).toBe(added.json().version)

        const shipped = await call('PATCH', `/store/carts/${cartId}`, {
          shipping_address: newYork,
          shipping_option_id: store.usShipping,
        })
        expect(shipped.statusCode, shipped.body).toBe(200)
        const totals = shipped.json().totals
        expect(totals).toMatchObject({ tax_pending: false, subtotal: 5500, shipping_total: 1200 })
        // New York's 4% on the items and the shipping: 4% of 67.00.
        expect(totals).toMatchObject({ tax_total: 268, total: 5500 + 1200 + 268 })
        const placed = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
        expect(placed.statusCode, placed.body).toBe(201)
        expect(placed.json().order.totals).toMatchObject({ tax: totals.tax_total, total: totals.total })
      } finally {
        await adminCall(node.app, 'DELETE', '/admin/tax/registrations/US-NY')
      }
    })

    it('changes and removes lines, and refuses bad input with nothing written', async () => {
      const cart = (await call('POST', '/store/carts', { region_id: store.euRegion })).json()
      const added = (
        await call('POST', `/store/carts/${cart.id}/lines`, { variant_id: store.shirt, quantity: 1 })
      ).json()
      const lineId = added.lines[0].id
      const bad = [
        await call('POST', `/store/carts/${cart.id}/lines`, { variant_id: store.shirt, quantity: 0 }),
        await call('POST', `/store/carts/${cart.id}/lines`, { variant_id: store.shirt, quantity: -2 }),
        await call('POST', `/store/carts/${cart.id}/lines`, {
          variant_id: store.shirt,
          quantity: 1,
          unit_amount: 1,
        }),
        await call('PATCH', `/store/carts/${cart.id}/lines/${lineId}`, { quantity: 1001 }),
      ]
      for (const res of bad) {
        expect(res.statusCode, res.body).toBe(400)
        expect(res.headers['content-type']).toContain('application/problem+json')
      }
      const unknown = await call('POST', `/store/carts/${cart.id}/lines`, {
        variant_id: `var_${'0'.repeat(26)}`,
        quantity: 1,
      })
      expect(unknown.statusCode).toBe(422)
      expect(unknown.json().code).toBe('unknown_variant')
      const elsewhere = await call('PATCH', `/store/carts/${cart.id}`, {
        shipping_address: { ...berlin, country_code: 'US' },
      })
      expect(elsewhere.statusCode).toBe(422)
      const promo = await call('POST', `/store/carts/${cart.id}/promotions`, { code: 'SUMMER10' })
      expect(promo.json().code).toBe('unknown_promotion')
      const after = (await call('GET', `/store/carts/${cart.id}`)).json()
      expect(after.version).toBe(added.version)
      expect(after.lines).toEqual(added.lines)

      const set = (await call('PATCH', `/store/carts/${cart.id}/lines/${lineId}`, { quantity: 4 })).json()
      expect(set.lines[0].quantity).toBe(4)
      const removed = (await call('DELETE', `/store/carts/${cart.id}/lines/${lineId}`)).json()
      expect(removed.lines).toEqual([])
      expect(removed.totals.total).toBe(0)
    })

    it('drops a shipping option that can no longer serve the cart, with a notice', async () => {
      const admin = { authorization: 'Bearer test-admin-token-0123456789abcdef0123456789' }
      const courier = (
        await call(
          'POST',
          '/admin/shipping-options',
          { region_id: store.euRegion, name: 'Courier', price_type: 'flat', amount: 990 },
          admin,
        )
      ).json()
      const cart = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          lines: [{ variant_id: store.shirt, quantity: 1 }],
        })
      ).json()
      const chosen = (
        await call('PATCH', `/store/carts/${cart.id}`, {
          shipping_address: berlin,
          shipping_option_id: courier.id,
        })
      ).json()
      expect(chosen.totals.shipping_total).toBe(990)
      expect(
        (await call('PATCH', `/admin/shipping-options/${courier.id}`, { active: false }, admin)).statusCode,
      ).toBe(200)
      const next = await call('POST', `/store/carts/${cart.id}/lines`, {
        variant_id: store.shirt,
        quantity: 1,
      })
      expect(next.statusCode, next.body).toBe(200)
      expect(next.json()).toMatchObject({ shipping_option_id: null, shipping: null })
      expect(next.json().totals.shipping_total).toBe(0)
      expect(next.json().notices).toEqual([
        'Courier can no longer ship this cart: choose another shipping option',
      ])
      // Choosing it explicitly is still refused.
      const again = await call('PATCH', `/store/carts/${cart.id}`, { shipping_option_id: courier.id })
      expect(again.statusCode).toBe(422)
    })

    it('enforces purchase limits per line', async () => {
      const limit = await call(
        'PUT',
        `/admin/purchase-limits/${store.jacket}`,
        { max_per_line: 2, max_per_customer: null },
        {
          authorization: 'Bearer test-admin-token-0123456789abcdef0123456789',
        },
      )
      expect(limit.statusCode, limit.body).toBe(200)
      const cart = (await call('POST', '/store/carts', { region_id: store.euRegion })).json()
      const over = await call('POST', `/store/carts/${cart.id}/lines`, {
        variant_id: store.jacket,
        quantity: 3,
      })
      expect(over.statusCode).toBe(422)
      expect(over.json().code).toBe('purchase_limit_exceeded')
      await call(
        'PUT',
        `/admin/purchase-limits/${store.jacket}`,
        { max_per_line: null, max_per_customer: null },
        {
          authorization: 'Bearer test-admin-token-0123456789abcdef0123456789',
        },
      )
    })
    it('gives a guest cart to the customer who signs in, merging their earlier cart', async () => {
      const customer = await createTestCustomer(node)
      const earlier = await call(
        'POST',
        '/store/carts',
        { region_id: store.euRegion, lines: [{ variant_id: store.jacket, quantity: 1 }] },
        customer.headers,
      )
      expect(earlier.json().customer_id).toBe(customer.id)
      // Another shopper cannot see a customer's cart, signed in or not.
      expect((await call('GET', `/store/carts/${earlier.json().id}`)).statusCode).toBe(404)
      const guest = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          lines: [{ variant_id: store.shirt, quantity: 2 }],
        })
      ).json()
      const claimed = await call('POST', `/store/carts/${guest.id}/customer`, undefined, customer.headers)
      expect(claimed.statusCode, claimed.body).toBe(200)
      const merged = claimed.json()
      expect(merged.customer_id).toBe(customer.id)
      expect(
        merged.lines.map((l: { variant_id: string; quantity: number }) => [l.variant_id, l.quantity]).sort(),
      ).toEqual(
        [
          [store.jacket, 1],
          [store.shirt, 2],
        ].sort(),
      )
      const old = await db()
        .selectFrom('carts')
        .select('status')
        .where('id', '=', earlier.json().id)
        .executeTakeFirstOrThrow()
      expect(old.status).toBe('merged')
      expect((await call('POST', `/store/carts/${guest.id}/customer`)).statusCode).toBe(401)
    })

    it("names the cart's own field when its VAT id fails, writing nothing", async () => {
      const created = await call('POST', '/store/carts', {
        region_id: store.euRegion,
        lines: [{ variant_id: store.shirt, quantity: 1 }],
      })
      const cart = (
        await call('PATCH', `/store/carts/${created.json().id}`, { shipping_address: berlin })
      ).json()
      // A German VAT id whose check digit is wrong.
      const bad = await call('PATCH', `/store/carts/${cart.id}`, { vat_id: 'DE136695975', is_business: true })
      expect(bad.statusCode, bad.body).toBe(422)
      expect(bad.json()).toMatchObject({ code: 'invalid_vat_id', errors: [{ path: 'vat_id' }] })
      expect((await call('GET', `/store/carts/${cart.id}`)).json()).toMatchObject({
        vat_id: null,
        version: cart.version,
      })
      const good = await call('PATCH', `/store/carts/${cart.id}`, {
        vat_id: 'DE136695976',
        is_business: true,
      })
      expect(good.statusCode, good.body).toBe(200)
    })

    it("prices a claimed cart for its customer at once, and holds it to the customer's limits", async () => {
      const own = await createTestStore(node.app, { stock: 50, reuse: store })
      const customer = await createTestCustomer(node)
      const group = await call('POST', '/admin/customer-groups', { name: `Staff ${randomUUID()}` }, adminAuth)
      await call(
        'POST',
        `/admin/customer-groups/${group.json().id}/customers`,
        { customer_ids: [customer.id] },
        adminAuth,
      )
      const list = await call(
        'POST',
        '/admin/price-lists',
        {
          name: 'Staff prices',
          status: 'active',
          customer_group_id: group.json().id,
          prices: [{ variant_id: own.shirt, currency: 'EUR', amount: 500 }],
        },
        adminAuth,
      )
      expect(list.statusCode, list.body).toBe(201)
      const guestCart = () =>
        call('POST', '/store/carts', {
          region_id: store.euRegion,
          lines: [{ variant_id: own.shirt, quantity: 2 }],
        })
      const guest = (await guestCart()).json()
      expect(guest.lines[0].unit_amount).toBe(1999)
      const claimed = await call('POST', `/store/carts/${guest.id}/customer`, undefined, customer.headers)
      expect(claimed.statusCode, claimed.body).toBe(200)
      expect(claimed.json().lines[0]).toMatchObject({ unit_amount: 500, subtotal: 1000 })

      // Three more under way in another checkout of theirs: a guest cart of two would pass four.
      await call(
        'PUT',
        `/admin/purchase-limits/${own.shirt}`,
        { max_per_line: null, max_per_customer: 4 },
        adminAuth,
      )
      await call('PATCH', `/store/carts/${guest.id}`, { lines: [] }, customer.headers)
      const other = (
        await call(
          'POST',
          '/store/carts',
          { region_id: store.euRegion, lines: [{ variant_id: own.shirt, quantity: 3 }] },
          customer.headers,
        )
      ).json()
      await db().updateTable('carts').set({ status: 'completing' }).where('id', '=', other.id).execute()
      const second = (await guestCart()).json()
      const refused = await call('POST', `/store/carts/${second.id}/customer`, undefined, customer.headers)
      expect(refused.statusCode, refused.body).toBe(422)
      expect(refused.json().code).toBe('purchase_limit_exceeded')
      const kept = await db()
        .selectFrom('carts')
        .select(['customer_id', 'version'])
        .where('id', '=', second.id)
        .executeTakeFirstOrThrow()
      expect(kept).toMatchObject({ customer_id: null, version: second.version })
    })

    it('limits how many of an item one customer may buy across orders', async () => {
      const limited = await createTestStore(node.app, { stock: 50, reuse: store })
      const admin = { authorization: 'Bearer test-admin-token-0123456789abcdef0123456789' }
      await call(
        'PUT',
        `/admin/purchase-limits/${limited.shirt}`,
        { max_per_line: null, max_per_customer: 3 },
        admin,
      )
      const customer = await createTestCustomer(node)
      const first = (
        await call(
          'POST',
          '/store/carts',
          {
            region_id: store.euRegion,
            email: 'limit@example.com',
            lines: [{ variant_id: limited.shirt, quantity: 2 }],
          },
          customer.headers,
        )
      ).json()
      await call(
        'PATCH',
        `/store/carts/${first.id}`,
        { shipping_address: berlin, shipping_option_id: store.euShipping },
        customer.headers,
      )
      const placed = await call(
        'POST',
        `/store/carts/${first.id}/complete`,
        { payment: { provider: 'test', payment_method: 'pm_card_visa' } },
        { ...customer.headers, 'idempotency-key': randomUUID() },
      )
      expect(placed.statusCode, placed.body).toBe(201)
      const second = (
        await call('POST', '/store/carts', { region_id: store.euRegion }, customer.headers)
      ).json()
      const over = await call(
        'POST',
        `/store/carts/${second.id}/lines`,
        { variant_id: limited.shirt, quantity: 2 },
        customer.headers,
      )
      expect(over.statusCode).toBe(422)
      expect(over.json().code).toBe('purchase_limit_exceeded')
      const within = await call(
        'POST',
        `/store/carts/${second.id}/lines`,
        { variant_id: limited.shirt, quantity: 1 },
        customer.headers,
      )
      expect(within.statusCode, within.body).toBe(200)
    })

    it("checks a guest's per-customer limit against the email the cart is given", async () => {
      const limited = await createTestStore(node.app, { stock: 50, reuse: store })
      const admin = { authorization: 'Bearer test-admin-token-0123456789abcdef0123456789' }
      await call(
        'PUT',
        `/admin/purchase-limits/${limited.shirt}`,
        { max_per_line: null, max_per_customer: 4 },
        admin,
      )
      const email = `limit-${randomUUID().slice(0, 8)}@example.com`
      const first = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          email,
          lines: [{ variant_id: limited.shirt, quantity: 3 }],
        })
      ).json()
      await call('PATCH', `/store/carts/${first.id}`, {
        shipping_address: berlin,
        shipping_option_id: store.euShipping,
      })
      const placed = await complete(first.id, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(placed.statusCode, placed.body).toBe(201)

      // An anonymous cart holds 2: within the limit until it says whose it is.
      const second = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          lines: [{ variant_id: limited.shirt, quantity: 2 }],
        })
      ).json()
      const named = await call('PATCH', `/store/carts/${second.id}`, { email: email.toUpperCase() })
      expect(named.statusCode, named.body).toBe(422)
      expect(named.json()).toMatchObject({
        code: 'purchase_limit_exceeded',
        errors: [{ path: `lines.${second.lines[0].id}.quantity` }],
      })
      const after = (await call('GET', `/store/carts/${second.id}`)).json()
      expect(after).toMatchObject({ email: null, version: second.version })
      const other = await call('PATCH', `/store/carts/${second.id}`, { email: `other-${email}` })
      expect(other.statusCode, other.body).toBe(200)
    })

    it("counts a customer's checkout still under way against the limit, so a second cart cannot pass it", async () => {
      const limited = await createTestStore(node.app, { stock: 50, reuse: store })
      const admin = { authorization: 'Bearer test-admin-token-0123456789abcdef0123456789' }
      await call(
        'PUT',
        `/admin/purchase-limits/${limited.shirt}`,
        { max_per_line: null, max_per_customer: 1 },
        admin,
      )
      const customer = await createTestCustomer(node)
      // Two carts of one customer, each within the limit on its own.
      const cartWithOne = async () => {
        const cart = (
          await call(
            'POST',
            '/store/carts',
            {
              region_id: store.euRegion,
              email: 'limit-two-carts@example.com',
              lines: [{ variant_id: limited.shirt, quantity: 1 }],
            },
            customer.headers,
          )
        ).json()
        await call(
          'PATCH',
          `/store/carts/${cart.id}`,
          { shipping_address: berlin, shipping_option_id: store.euShipping },
          customer.headers,
        )
        return cart.id as string
      }
      const first = await cartWithOne()
      const second = await cartWithOne()
      const checkout = (cartId: string, payment_method: string, key = randomUUID()) =>
        call(
          'POST',
          `/store/carts/${cartId}/complete`,
          { payment: { provider: 'test', payment_method } },
          { ...customer.headers, 'idempotency-key': key },
        )
      // The first waits for the shopper's 3-D Secure step: no order yet, but it is being bought.
      const key = randomUUID()
      const challenged = await checkout(first, 'pm_card_threeDSecureRequired', key)
      expect(challenged.json().type).toBe('payment_action_required')
      const over = await checkout(second, 'pm_card_visa')
      expect(over.statusCode, over.body).toBe(422)
      expect(over.json().code).toBe('purchase_limit_exceeded')
      const paymentId = challenged.json().payment.id
      const passed = await call(
        'POST',
        `/store/payments/${paymentId}/authenticate`,
        { result: 'pass', cart_id: first },
        customer.headers,
      )
      expect(passed.statusCode, passed.body).toBe(200)
      const placed = await checkout(first, 'pm_card_threeDSecureRequired', key)
      expect(placed.statusCode, placed.body).toBe(201)
      const bought = await db()
        .selectFrom('order_lines')
        .innerJoin('orders', 'orders.id', 'order_lines.order_id')
        .select((eb) => eb.fn.sum<number>('order_lines.quantity').as('units'))
        .where('orders.customer_id', '=', customer.id)
        .where('order_lines.variant_id', '=', limited.shirt)
        .executeTakeFirstOrThrow()
      expect(Number(bought.units)).toBe(1)
    })

    it('refuses a change that would take the cart past the largest exact amount, writing nothing', async () => {
      const tag = randomUUID().slice(0, 8)
      // Ten bars at the highest price the catalog takes, and one priced to make up 2^53 − 1 exactly.
      const max = Number.MAX_SAFE_INTEGER
      const rest = max - 9_007_000_000_000_000
      const sizes = Array.from({ length: 11 }, (_, i) => String(i + 1))
      const gold = await adminCall(node.app, 'POST', '/admin/products', {
        handle: `gold-${tag}`,
        title: 'Gold bar',
        status: 'published',
        options: [{ name: 'Bar', values: sizes }],
        variants: sizes.map((size, i) => {
          const amount = i < 10 ? 1_000_000_000_000 : rest
          return {
            sku: `GOLD-${tag}-${size}`,
            options: { Bar: size },
            manage_inventory: false,
            prices: [
              { currency: 'EUR', amount },
              { currency: 'USD', amount },
            ],
          }
        }),
      })
      expect(gold.statusCode, gold.body).toBe(201)
      const [odd, ...bars] = (gold.json().variants as Array<{ id: string; options: { Bar: string } }>)
        .sort((a, b) => Number(b.options.Bar === '11') - Number(a.options.Bar === '11'))
        .map((v) => v.id)
      const email = `gold-${tag}@example.com`

      // Ten lines of a thousand: 10^16, past 2^53.
      const tooMuch = await call('POST', '/store/carts', {
        region_id: store.euRegion,
        email,
        lines: bars.map((variant_id) => ({ variant_id, quantity: 1000 })),
      })
      expect(tooMuch.statusCode, tooMuch.body).toBe(422)
      expect(tooMuch.json()).toMatchObject({ code: 'cart_invalid', errors: [{ path: 'totals.subtotal' }] })
      // The refused cart was not left behind.
      const left = await db().selectFrom('carts').select('id').where('email', '=', email).execute()
      expect(left).toEqual([])

      const created = await call('POST', '/store/carts', {
        region_id: store.euRegion,
        email,
        lines: bars.slice(0, 9).map((variant_id) => ({ variant_id, quantity: 1000 })),
      })
      expect(created.statusCode, created.body).toBe(201)
      const cart = created.json()
      expect(cart.totals.total).toBe(9e15)
      // 9·10^15 + 8·10^12 passes 2^53 − 1; 7·10^12 more stays within it.
      const over = await call('POST', `/store/carts/${cart.id}/lines`, { variant_id: bars[9], quantity: 8 })
      expect(over.statusCode, over.body).toBe(422)
      expect(over.json()).toMatchObject({
        code: 'cart_invalid',
        errors: [{ path: 'totals.subtotal', message: `must be at most ${max}` }],
      })
      expect((await call('GET', `/store/carts/${cart.id}`)).json().version).toBe(cart.version)
      const within = await call('POST', `/store/carts/${cart.id}/lines`, { variant_id: bars[9], quantity: 7 })
      expect(within.statusCode, within.body).toBe(200)
      expect(within.json().totals.total).toBe(9e15 + 7e12)
      const grown = await call('PATCH', `/store/carts/${cart.id}/lines/${within.json().lines[9].id}`, {
        quantity: 8,
      })
      expect(grown.statusCode, grown.body).toBe(422)

      // What is in the cart can be paid for, and captured.
      const ready = await call('PATCH', `/store/carts/${cart.id}`, {
        shipping_address: berlin,
        shipping_option_id: store.euShipping,
      })
      expect(ready.statusCode, ready.body).toBe(200)
      const placed = await complete(cart.id, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(placed.statusCode, placed.body).toBe(201)
      expect(placed.json().order).toMatchObject({
        status: 'paid',
        payment_status: 'captured',
        totals: { total: 9e15 + 7e12 },
      })

      // Items of 2^53 − 1 exactly are taken; shipping on top of them is not.
      const edge = await call('POST', '/store/carts', {
        region_id: store.usRegion,
        lines: [
          ...bars.slice(0, 9).map((variant_id) => ({ variant_id, quantity: 1000 })),
          { variant_id: bars[9], quantity: 7 },
          { variant_id: odd, quantity: 1 },
        ],
      })
      expect(edge.statusCode, edge.body).toBe(201)
      expect(edge.json().totals).toMatchObject({ subtotal: max, total: max })
      const shipping = await call('PATCH', `/store/carts/${edge.json().id}`, {
        shipping_option_id: store.usShipping,
      })
      expect(shipping.statusCode, shipping.body).toBe(422)
      expect(shipping.json()).toMatchObject({ code: 'cart_invalid', errors: [{ path: 'totals.total' }] })
      const unchanged = (await call('GET', `/store/carts/${edge.json().id}`)).json()
      expect(unchanged).toMatchObject({ shipping_option_id: null, version: edge.json().version })

      // A cart within it that a price rise takes past it cannot be checked out.
      const last = await call('POST', '/store/carts', {
        region_id: store.euRegion,
        email,
        lines: [
          ...bars.slice(0, 9).map((variant_id) => ({ variant_id, quantity: 1000 })),
          { variant_id: bars[9], quantity: 7 },
          { variant_id: odd, quantity: 1 },
        ],
      })
      expect(last.statusCode, last.body).toBe(201)
      const lastReady = await call('PATCH', `/store/carts/${last.json().id}`, {
        shipping_address: berlin,
        shipping_option_id: store.euShipping,
      })
      expect(lastReady.statusCode, lastReady.body).toBe(200)
      expect(lastReady.json().totals).toMatchObject({ total: max, tax_pending: false })
      const risen = await adminCall(node.app, 'PATCH', `/admin/variants/${odd}`, {
        prices: [{ currency: 'EUR', amount: rest + 1 }],
      })
      expect(risen.statusCode, risen.body).toBe(200)
      const refused = await complete(last.json().id, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(refused.statusCode, refused.body).toBe(422)
      expect(refused.json()).toMatchObject({ code: 'cart_invalid', errors: [{ path: 'totals.subtotal' }] })
      const orders = await db()
        .selectFrom('orders')
        .select('id')
        .where('cart_id', '=', last.json().id)
        .execute()
      expect(orders).toEqual([])
    })

    it('refuses a variant with no price in the cart currency', async () => {
      const res = await adminCall(node.app, 'POST', '/admin/products', {
        handle: `eu-only-${randomUUID().slice(0, 8)}`,
        title: 'Euro only',
        status: 'published',
        variants: [{ sku: `EU-${randomUUID().slice(0, 8)}`, prices: [{ currency: 'EUR', amount: 500 }] }],
      })
      expect(res.statusCode, res.body).toBe(201)
      const cart = (await call('POST', '/store/carts', { region_id: store.usRegion })).json()
      const added = await call('POST', `/store/carts/${cart.id}/lines`, {
        variant_id: res.json().variants[0].id,
        quantity: 1,
      })
      expect(added.statusCode).toBe(422)
      expect(added.json().code).toBe('not_sold_in_region')
    })

    it('expires carts nobody touched for the configured time', async () => {
      const cart = (await call('POST', '/store/carts', { region_id: store.euRegion })).json()
      await db()
        .updateTable('carts')
        .set({ updated_at: new Date(Date.now() - 31 * 24 * 3600_000) })
        .where('id', '=', cart.id)
        .execute()
      expect(await expireCarts(db(), 24 * 30)).toBeGreaterThanOrEqual(1)
      const res = await call('POST', `/store/carts/${cart.id}/lines`, {
        variant_id: store.shirt,
        quantity: 1,
      })
      expect(res.statusCode).toBe(409)
      expect(res.json().code).toBe('cart_not_active')
    })
  })

  describe('checkout', () => {
    it('places one order, captures it and holds its stock', async () => {
      const before = await levelOf(store.shirt)
      const cartId = await readyCart(node.app, store, 2)
      const key = randomUUID()
      const res = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' }, key)
      expect(res.statusCode, res.body).toBe(201)
      const { order } = res.json()
      expect(order).toMatchObject({
        status: 'paid',
        payment_status: 'captured',
        email: 'shopper@example.com',
      })
      expect(order.totals.total).toBe(2 * 1999 + 490)
      expect(order.number).toBeGreaterThanOrEqual(1001)
      // The answer is the order as stored, lines and history included.
      const stored = (await findOrder(db(), order.id))!
      expect(order).toEqual({ ...JSON.parse(JSON.stringify(stored)), updated_at: order.updated_at })
      const history = await db()
        .selectFrom('order_transitions')
        .select(['from_status', 'to_status', 'reason'])
        .where('order_id', '=', order.id)
        .orderBy('created_at')
        .execute()
      expect(history).toEqual([
        { from_status: null, to_status: 'pending', reason: 'placed' },
        { from_status: 'pending', to_status: 'paid', reason: 'payment captured' },
      ])
      const after = await levelOf(store.shirt)
      expect(after.reserved - before.reserved).toBe(2)
      const reservation = await db()
        .selectFrom('inventory_reservations')
        .select(['status', 'expires_at', 'reference'])
        .where('id', '=', order.reservation_id)
        .executeTakeFirstOrThrow()
      expect(reservation).toMatchObject({ status: 'active', expires_at: null, reference: order.id })

      // The same key and body replays the answer; another body under it is refused.
      const replay = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' }, key)
      expect(replay.statusCode).toBe(201)
      expect(replay.headers['idempotent-replayed']).toBe('true')
      expect(replay.json()).toEqual(res.json())
      const reused = await complete(cartId, { provider: 'test', payment_method: 'pm_card_mastercard' }, key)
      expect(reused.statusCode).toBe(422)
      // Another key on a completed cart answers with the same order, placing nothing new.
      const again = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(again.statusCode).toBe(200)
      expect(again.json().order.id).toBe(order.id)
      const orders = await db().selectFrom('orders').select('id').where('cart_id', '=', cartId).execute()
      expect(orders).toHaveLength(1)
      const charges = await db()
        .selectFrom('test_gateway_operations')
        .select('kind')
        .where(
          'charge_id',
          'in',
          db()
            .selectFrom('payments')
            .select('provider_ref')
            .where('cart_id', '=', cartId)
            .where('provider_ref', 'is not', null) as never,
        )
        .execute()
      expect(charges.filter((c) => c.kind === 'authorize')).toHaveLength(1)
      const events = await db()
        .selectFrom('events')
        .select(['type', 'payload'])
        .where('subject_id', '=', order.id)
        .execute()
      expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['order.placed', 'order.paid']))
      // The number is written with the event, in the statement that takes it.
      expect(events.find((e) => e.type === 'order.placed')?.payload).toMatchObject({
        order_id: order.id,
        number: order.number,
        cart_id: cartId,
      })
    })

    it('takes stock out when the order ships, and gives it back when refunded before shipping', async () => {
      const admin = { authorization: 'Bearer test-admin-token-0123456789abcdef0123456789' }
      const before = await levelOf(store.shirt)
      const shipped = (
        await complete(await readyCart(node.app, store, 2), {
          provider: 'test',
          payment_method: 'pm_card_visa',
        })
      ).json().order
      const moved = await call('POST', `/admin/orders/${shipped.id}/transitions`, { to: 'fulfilled' }, admin)
      expect(moved.statusCode, moved.body).toBe(200)
      expect(await levelOf(store.shirt)).toEqual({ on_hand: before.on_hand - 2, reserved: before.reserved })

      const unshipped = (
        await complete(await readyCart(node.app, store, 3), {
          provider: 'test',
          payment_method: 'pm_card_visa',
        })
      ).json().order
      expect((await levelOf(store.shirt)).reserved).toBe(before.reserved + 3)
      const refund = await call(
        'POST',
        `/admin/orders/${unshipped.id}/refunds`,
        { amount: unshipped.totals.total },
        {
          ...admin,
          'idempotency-key': randomUUID(),
        },
      )
      expect(refund.statusCode, refund.body).toBe(201)
      expect(refund.json().order.status).toBe('refunded')
      expect(await levelOf(store.shirt)).toEqual({ on_hand: before.on_hand - 2, reserved: before.reserved })
    })

    it('reopens the cart and releases its stock when the card is declined', async () => {
      const before = await levelOf(store.shirt)
      const cartId = await readyCart(node.app, store, 1)
      const res = await complete(cartId, {
        provider: 'test',
        payment_method: 'pm_card_chargeDeclinedInsufficientFunds',
      })
      expect(res.statusCode, res.body).toBe(402)
      expect(res.json().code).toBe('payment_required')
      expect(await levelOf(store.shirt)).toEqual(before)
      const cart = (await call('GET', `/store/carts/${cartId}`)).json()
      expect(cart.status).toBe('active')
      const retry = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(retry.statusCode, retry.body).toBe(201)
    })

    it('asks for 3-D Secure and completes after the challenge, under the same key', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const key = randomUUID()
      const threeDs = { provider: 'test', payment_method: 'pm_card_threeDSecureRequired' }
      const first = await complete(cartId, threeDs, key)
      expect(first.statusCode, first.body).toBe(200)
      const body = first.json()
      expect(body.type).toBe('payment_action_required')
      expect(body.payment.status).toBe('requires_action')
      // Until the shopper acts, calling again answers the same challenge (not a stored replay).
      const again = await complete(cartId, threeDs, key)
      expect(again.statusCode, again.body).toBe(200)
      expect(again.json()).toMatchObject({
        type: 'payment_action_required',
        payment: { id: body.payment.id },
      })
      const passed = await call('POST', `/store/payments/${body.payment.id}/authenticate`, {
        result: 'pass',
        cart_id: cartId,
      })
      expect(passed.statusCode, passed.body).toBeLessThan(300)
      const second = await complete(cartId, threeDs, key)
      expect(second.statusCode, second.body).toBe(201)
      expect(second.json().order.payment_status).toBe('captured')
      // From now on the key replays the order.
      const replay = await complete(cartId, threeDs, key)
      expect(replay.statusCode).toBe(201)
      expect(replay.body).toBe(second.body)
    })

    it('reopens the cart when 3-D Secure fails after the stock hold lapsed', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const threeDs = { provider: 'test', payment_method: 'pm_card_threeDSecureRequired' }
      const first = await complete(cartId, threeDs)
      expect(first.json().type).toBe('payment_action_required')
      // The shopper takes longer than the hold: the inventory job expires it.
      const db = node.runtime.database.db
      const { reservation_id } = await db
        .selectFrom('carts')
        .select('reservation_id')
        .where('id', '=', cartId)
        .executeTakeFirstOrThrow()
      await db
        .updateTable('inventory_reservations')
        .set({ expires_at: new Date(Date.now() - 1000) })
        .where('id', '=', reservation_id!)
        .execute()
      expect(
        await expireReservations(db, inventoryContext(node.runtime, 'test:expire')),
      ).toBeGreaterThanOrEqual(1)
      const failed = await call('POST', `/store/payments/${first.json().payment.id}/authenticate`, {
        result: 'fail',
        cart_id: cartId,
      })
      expect(failed.statusCode, failed.body).toBeLessThan(300)
      const declined = await complete(cartId, threeDs)
      expect(declined.statusCode, declined.body).toBe(402)
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
    })

    it('places no order on a payment canceled at the processor while the checkout was placing it', async () => {
      const before = await levelOf(store.shirt)
      const cartId = await readyCart(node.app, store, 1)
      const threeDs = { provider: 'test', payment_method: 'pm_card_threeDSecureRequired' }
      const first = await complete(cartId, threeDs)
      expect(first.json().type).toBe('payment_action_required')
      const paymentId = first.json().payment.id as string
      await call('POST', `/store/payments/${paymentId}/authenticate`, { result: 'pass', cart_id: cartId })
      // The processor authorises, then the intent is canceled there (its dashboard) and the webhook
      // lands before the checkout records the answer.
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const authorize = gateway.authorize.bind(gateway)
      gateway.authorize = async (input: AuthorizeInput) => {
        const answer = await authorize(input)
        await gateway.cancel({
          payment_id: input.payment_id,
          provider_ref: answer.provider_ref!,
          idempotency_key: `dashboard:${input.payment_id}`,
        })
        await applyWebhook(paymentDeps(node.runtime), 'test', {
          event_id: `evt_${randomUUID()}`,
          type: 'payment_intent.canceled',
          provider_ref: answer.provider_ref,
          status: 'canceled',
        })
        return answer
      }
      let res: Awaited<ReturnType<typeof complete>>
      try {
        res = await complete(cartId, threeDs)
      } finally {
        gateway.authorize = authorize
      }
      expect(res.statusCode, res.body).toBe(402)
      expect(res.json().code).toBe('payment_required')
      const orders = await db().selectFrom('orders').select('id').where('cart_id', '=', cartId).execute()
      expect(orders).toEqual([])
      expect((await call('GET', `/store/carts/${cartId}`)).json()).toMatchObject({
        status: 'active',
        order_id: null,
      })
      expect(await levelOf(store.shirt)).toEqual(before)
      const payment = await db()
        .selectFrom('payments')
        .select(['status', 'order_id'])
        .where('id', '=', paymentId)
        .executeTakeFirstOrThrow()
      expect(payment).toEqual({ status: 'canceled', order_id: null })
      // The shopper can pay again.
      const again = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(again.statusCode, again.body).toBe(201)
    })

    /** Runs `meanwhile` after the test gateway authorises and before checkout hears its answer. */
    async function completeWhileAuthorizing(
      cartId: string,
      meanwhile: (input: AuthorizeInput) => Promise<void>,
    ) {
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const authorize = gateway.authorize.bind(gateway)
      gateway.authorize = async (input: AuthorizeInput) => {
        const answer = await authorize(input)
        await meanwhile(input)
        return answer
      }
      try {
        return await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
      } finally {
        gateway.authorize = authorize
      }
    }
    const operationsOf = async (cartId: string) => {
      const payment = await db()
        .selectFrom('payments')
        .select(['id', 'status'])
        .where('cart_id', '=', cartId)
        .executeTakeFirstOrThrow()
      const ops = await db()
        .selectFrom('test_gateway_operations')
        .select('kind')
        .where('idempotency_key', 'like', `${payment.id}:%`)
        .execute()
      return { payment, kinds: ops.map((o) => o.kind).sort() }
    }

    it('voids a first authorisation at the processor when the stock went while it was asked for', async () => {
      const { cartId, variantId } = await lastUnitCart(node, store, 'late@example.com')
      const res = await completeWhileAuthorizing(cartId, async () => {
        // The hold lapses and another shopper takes the last unit.
        await takeLastUnit(node, cartId, variantId)
      })
      expect(res.statusCode, res.body).toBe(409)
      expect(res.json().code).toBe('insufficient_stock')
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      const { payment, kinds } = await operationsOf(cartId)
      expect(payment.status).toBe('canceled')
      expect(kinds).toEqual(['authorize', 'cancel'])
    })

    /**
     * Completes the cart while the charge is captured at the processor outside the app (its
     * dashboard) before checkout hears the answer, which therefore says captured; `meanwhile` runs
     * first, as in completeWhileAuthorizing.
     */
    async function completeCapturedElsewhere(
      cartId: string,
      meanwhile: (input: AuthorizeInput) => Promise<void>,
    ) {
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const authorize = gateway.authorize.bind(gateway)
      gateway.authorize = async (input: AuthorizeInput) => {
        const answer = await authorize(input)
        await meanwhile(input)
        const { captured_amount } = await gateway.capture({
          payment_id: input.payment_id,
          provider_ref: answer.provider_ref!,
          amount: input.amount,
          currency: input.currency,
          idempotency_key: `dashboard:${input.payment_id}`,
        })
        return { status: 'captured', provider_ref: answer.provider_ref!, captured_amount }
      }
      try {
        return await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
      } finally {
        gateway.authorize = authorize
      }
    }
    /** The cart's payment, which got no order, and what the gateway did with its charge. */
    const refundedWithoutOrder = async (cartId: string) => {
      const payment = await db()
        .selectFrom('payments')
        .select(['status', 'order_id', 'amount', 'captured_amount', 'refunded_amount', 'provider_ref'])
        .where('cart_id', '=', cartId)
        .executeTakeFirstOrThrow()
      const ops = await db()
        .selectFrom('test_gateway_operations')
        .select(['kind', 'amount'])
        .where('charge_id', '=', payment.provider_ref!)
        .execute()
      return { payment, ops: ops.map((o) => `${o.kind} ${o.amount}`).sort() }
    }

    it('refunds a charge captured outside the app when its checkout gives up for the stock', async () => {
      const { cartId, variantId } = await lastUnitCart(node, store, 'captured-late@example.com')
      const res = await completeCapturedElsewhere(cartId, async () => {
        await takeLastUnit(node, cartId, variantId)
      })
      expect(res.statusCode, res.body).toBe(409)
      expect(res.json().code).toBe('insufficient_stock')
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      const { payment, ops } = await refundedWithoutOrder(cartId)
      const amount = Number(payment.amount)
      expect(payment).toMatchObject({
        status: 'refunded',
        order_id: null,
        captured_amount: amount,
        refunded_amount: amount,
      })
      expect(ops).toEqual([`authorize ${amount}`, `capture ${amount}`, `refund ${amount}`])
    })

    it('refunds a charge captured outside the app when its answer comes after the checkout was given up', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const res = await completeCapturedElsewhere(cartId, async () => {
        // The recovery job gave the checkout up first, canceling a payment that had no charge yet.
        const cart = (await db()
          .selectFrom('carts')
          .selectAll()
          .where('id', '=', cartId)
          .executeTakeFirstOrThrow()) as never
        await abandonCheckout(commerceDeps(node.runtime), cart, 'system:checkout-recovery')
      })
      expect(res.statusCode, res.body).toBe(409)
      const { payment, ops } = await refundedWithoutOrder(cartId)
      const amount = Number(payment.amount)
      expect(payment).toMatchObject({
        status: 'refunded',
        order_id: null,
        captured_amount: amount,
        refunded_amount: amount,
      })
      expect(ops).toEqual([`authorize ${amount}`, `capture ${amount}`, `refund ${amount}`])
      // The capture was recorded by the transaction that queued the backstop void job (this node
      // runs no workers, so jobs are as they were queued): a node dying before its own give-back
      // leaves the job a captured row to refund, not a canceled one whose void would be refused.
      const { rows } = await sql<{ same: boolean }>`
        select e.xmin::text = j.xmin::text as same
        from payments p
        join events e on e.type = 'payment.captured' and e.subject_id = p.id
        join pgboss.job j on j.name = 'payments.void' and j.data ->> 'payment_id' = p.id
        where p.cart_id = ${cartId}`.execute(db())
      expect(rows.filter((r) => r.same)).toHaveLength(1)
    })

    it('leaves the payment of an order a take-over placed after the recovery job looked at its cart', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const capture = gateway.capture.bind(gateway)
      // The order stays authorised, as it would until its capture: a void would find it.
      gateway.capture = async () => {
        throw new PaymentProviderUnavailable('Test gateway: simulated network error')
      }
      // The recovery job read the cart while the processor answered (the checkout looked stalled).
      let seen: unknown
      let res: Awaited<ReturnType<typeof complete>>
      try {
        res = await completeWhileAuthorizing(cartId, async () => {
          seen = await db().selectFrom('carts').selectAll().where('id', '=', cartId).executeTakeFirstOrThrow()
        })
      } finally {
        gateway.capture = capture
      }
      expect(res.statusCode, res.body).toBe(201)
      const order = res.json().order
      // The job gives up the checkout as it saw it, after the order was placed on its payment.
      expect(
        await abandonCheckout(commerceDeps(node.runtime), seen as never, 'system:checkout-recovery'),
      ).toBe(false)
      const { payment, kinds } = await operationsOf(cartId)
      expect(payment.status).toBe('authorized')
      expect(kinds).toEqual(['authorize'])
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('completed')
      expect((await findOrder(db(), order.id))?.status).toBe('pending')
    })

    it('voids an authorisation that comes after its checkout was given up', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const before = await levelOf(store.shirt)
      const res = await completeWhileAuthorizing(cartId, async () => {
        // The processor took longer than the lease and the recovery job gave the checkout up,
        // voiding a payment that had no charge yet.
        const cart = (await db()
          .selectFrom('carts')
          .selectAll()
          .where('id', '=', cartId)
          .executeTakeFirstOrThrow()) as never
        await abandonCheckout(commerceDeps(node.runtime), cart, 'system:checkout-recovery')
      })
      expect(res.statusCode, res.body).toBe(409)
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      expect(await levelOf(store.shirt)).toEqual(before)
      const { payment, kinds } = await operationsOf(cartId)
      expect(payment.status).toBe('canceled')
      expect(kinds).toEqual(['authorize', 'cancel'])
    })

    it.runIf(kind === 'postgres')(
      'places no order when the payment is canceled while the placing transaction waits on it',
      async () => {
        const before = await levelOf(store.shirt)
        const cartId = await readyCart(node.app, store, 1)
        const { promise: held, resolve: release } = Promise.withResolvers<void>()
        let holding: Promise<void> | undefined
        const res = completeWhileAuthorizing(cartId, async (input) => {
          // A webhook's transaction cancels the payment and commits only once checkout's placing
          // transaction waits on the row.
          const { promise: isLocked, resolve: locked } = Promise.withResolvers<void>()
          holding = withTransaction(db(), async (trx) => {
            await trx
              .updateTable('payments')
              .set({ status: 'canceled' })
              .where('id', '=', input.payment_id)
              .execute()
            locked()
            await held
          })
          await isLocked
        })
        try {
          await waitForLockWaits(db())
        } finally {
          release()
        }
        await holding
        const answer = await res
        expect(answer.statusCode, answer.body).toBe(402)
        const orders = await db().selectFrom('orders').select('id').where('cart_id', '=', cartId).execute()
        expect(orders).toEqual([])
        expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
        expect(await levelOf(store.shirt)).toEqual(before)
        const { payment, kinds } = await operationsOf(cartId)
        expect(payment.status).toBe('canceled')
        expect(kinds).toEqual(['authorize', 'cancel'])
      },
    )

    it.runIf(kind === 'postgres')(
      'keeps the order a take-over placed while a checkout that lost its stock gave up',
      // Longer than a stage may take (STAGE), so that a stage never reached names the sessions.
      { timeout: 60_000 },
      async () => {
        // Checkout A loses the last unit while the processor answers and gives up; meanwhile its
        // lease ran out and a retry, B, took the same checkout over, and places the order once the
        // unit is back. A's give-up starts while B's placing transaction is open.
        const only = await createTestStore(node.app, { reuse: store, stock: 1 })
        const cartId = (
          await call('POST', '/store/carts', {
            region_id: store.euRegion,
            email: 'raced@example.com',
            lines: [{ variant_id: only.shirt, quantity: 1 }],
          })
        ).json().id as string
        await call('PATCH', `/store/carts/${cartId}`, {
          shipping_address: berlin,
          shipping_option_id: store.euShipping,
        })
        const visa = { provider: 'test', payment_method: 'pm_card_visa' }
        // Time for each stage to be reached on a busy machine; a stage that is never reached fails.
        const STAGE = { timeoutMs: 20_000 }
        // The unit comes back in a transaction held open: the stock row stays locked until release().
        const { promise: released, resolve: release } = Promise.withResolvers<void>()
        const { promise: isReturned, resolve: returned } = Promise.withResolvers<void>()
        let giveBack: Promise<void> | undefined
        let other: { id: string } | undefined
        let takeOver: ReturnType<typeof complete> | undefined
        const { promise: isTakenOver, resolve: takenOver } = Promise.withResolvers<void>()
        const { promise: isGivingUp, resolve: givingUp } = Promise.withResolvers<void>()
        const gateway = commerceDeps(node.runtime).providers.get('test')!
        const authorize = gateway.authorize.bind(gateway)
        const capture = gateway.capture.bind(gateway)
        // The take-over's order stays authorised, as it would until its capture: a void finds it.
        gateway.capture = async () => {
          throw new PaymentProviderUnavailable('Test gateway: simulated network error')
        }
        let calls = 0
        gateway.authorize = async (input: AuthorizeInput) => {
          if (++calls > 1) {
            // B: answered once A has rolled back and begun to give up, and the stock row is held.
            takenOver()
            await isReturned
            return authorize(input)
          }
          const answer = await authorize(input)
          await db()
            .updateTable('inventory_reservations')
            .set({ expires_at: new Date(Date.now() - 1000) })
            .where('reference', '=', cartId)
            .execute()
          await expireReservations(db(), inventoryContext(node.runtime, 'test:expire'))
          const ctx = inventoryContext(node.runtime, 'test:other')
          other = await reserveNow(
            db(),
            { lines: [{ variant_id: only.shirt, quantity: 1 }], reference: 'cart_other', country: 'DE' },
            ctx,
          )
          await ctx.publish()
          await runOutLease(cartId)
          takeOver = complete(cartId, visa)
          await isTakenOver
          return answer
        }
        // Each stage is a request waiting on a row that the test, or the other request, holds until
        // the test goes on; no stage counts on who gets a row first once its holder ends. A session
        // that was waiting on a row is only woken when the holder ends, and a request that asks for
        // the row before that session runs takes it: a test transaction queued on the payment row
        // behind A's placing transaction lost it, under load, to B's update right after A's rollback.
        const unpause = pauseAt('checkout.give_up', async () => {
          givingUp()
          // B, past closing the cart, waits for the unit with the cart locked.
          await waitForLockWaits(db(), 1, { ...STAGE, statement: 'select "variant_id", "location_id"' })
        })
        const ctx = inventoryContext(node.runtime, 'test:other')
        try {
          const first = complete(cartId, visa)
          try {
            // A finds no stock and rolls back, and begins to give up.
            await Promise.race([
              isGivingUp,
              first.then((res) => {
                throw new Error(`A answered without giving up: ${res.statusCode} ${res.body}`)
              }),
            ])
            // The unit comes back, uncommitted: B, answered now, closes the cart and waits on it.
            giveBack = withTransaction(db(), async (trx) => {
              await releaseReservation(trx, other!.id, ctx)
              returned()
              await released
            })
            await Promise.race([isReturned, giveBack])
            // A's give-up waits on the cart that B's placing transaction holds.
            await waitForLockWaits(db(), 1, { ...STAGE, statement: 'select * from "carts"' })
          } catch (error) {
            // Which checkout left the race early, and with what answer.
            const answered = async (request: ReturnType<typeof complete> | undefined) => {
              const settled = await Promise.race([
                request?.then(
                  (res) => `${res.statusCode} ${res.body}`,
                  (failure) => `threw ${failure}`,
                ),
                sleep(0).then(() => 'still running'),
              ])
              return settled ?? 'not sent'
            }
            throw new Error(
              `${(error as Error).message}\nA: ${await answered(first)}\nB: ${await answered(takeOver)}`,
              { cause: error },
            )
          }
          // B places the order, and A's give-up finds it.
          release()
          await giveBack
          await ctx.publish()
          const [a, b] = await Promise.all([first, takeOver!])
          expect(b.statusCode, b.body).toBe(201)
          // A finds the order placed on its own payment and answers with it, not with the stock.
          expect(a.statusCode, a.body).toBe(200)
          expect(a.json().order.id).toBe(b.json().order.id)
        } finally {
          unpause()
          gateway.authorize = authorize
          gateway.capture = capture
          returned()
          release()
          await giveBack?.catch(() => {})
        }
        const orders = await db()
          .selectFrom('orders')
          .select(['id', 'status', 'payment_status'])
          .where('cart_id', '=', cartId)
          .execute()
        expect(orders).toMatchObject([{ status: 'pending', payment_status: 'authorized' }])
        const { payment: paid, kinds } = await operationsOf(cartId)
        expect(paid.status).toBe('authorized')
        expect(kinds).toEqual(['authorize'])
        expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('completed')
      },
    )

    it('reopens a cart waiting on 3-D Secure whose payment was canceled at the processor', async () => {
      const before = await levelOf(store.shirt)
      const cartId = await readyCart(node.app, store, 1)
      const threeDs = { provider: 'test', payment_method: 'pm_card_threeDSecureRequired' }
      const first = await complete(cartId, threeDs)
      expect(first.json().type).toBe('payment_action_required')
      const paymentId = first.json().payment.id as string
      const { provider_ref } = await db()
        .selectFrom('payments')
        .select('provider_ref')
        .where('id', '=', paymentId)
        .executeTakeFirstOrThrow()
      // The shopper never answers; the intent is canceled at the processor (its dashboard, its expiry).
      await applyWebhook(paymentDeps(node.runtime), 'test', {
        event_id: `evt_${randomUUID()}`,
        type: 'payment_intent.canceled',
        provider_ref,
        status: 'canceled',
      })
      // Asking again cannot resume a canceled payment: the cart opens again for another card.
      const again = await complete(cartId, threeDs)
      expect(again.statusCode, again.body).toBe(402)
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      expect(await levelOf(store.shirt)).toEqual(before)
    })

    it('checks out goods that are not shipped with a billing address and no shipping', async () => {
      const variantId = await createEbook(node.app, 'Field guide (PDF)')
      const created = await call('POST', '/store/carts', {
        region_id: store.euRegion,
        email: 'reader@example.com',
        lines: [{ variant_id: variantId, quantity: 1 }],
      })
      expect(created.statusCode, created.body).toBe(201)
      const cartId = created.json().id as string
      expect(created.json().lines[0].requires_shipping).toBe(false)
      // Nothing to ship: no options to choose, and without any address nothing says where to tax.
      expect((await call('GET', `/store/carts/${cartId}/shipping-options`)).json().data).toEqual([])
      const noAddress = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(noAddress.statusCode).toBe(422)
      expect(noAddress.json().errors).toEqual([
        { path: 'cart.billing_address', message: 'is missing: it says where the sale is taxed' },
      ])
      const patched = await call('PATCH', `/store/carts/${cartId}`, {
        billing_address: { ...berlin, country_code: 'FR', city: 'Paris', postal_code: '75001' },
      })
      expect(patched.statusCode, patched.body).toBe(200)
      // An electronic service to a consumer is taxed where the consumer is: France, 20 %.
      expect(patched.json()).toMatchObject({
        shipping: null,
        totals: { shipping_total: 0, total: 1200, tax_total: 200 },
      })
      const placed = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(placed.statusCode, placed.body).toBe(201)
      expect(placed.json().order).toMatchObject({
        shipping_address: null,
        shipping_method: null,
        totals: { shipping: 0, tax: 200, total: 1200 },
      })

      // A variant that came to need shipping since it was added is checked as it is now.
      const later = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          email: 'reader@example.com',
          lines: [{ variant_id: variantId, quantity: 1 }],
        })
      ).json()
      await call('PATCH', `/store/carts/${later.id}`, { billing_address: berlin })
      const flipped = await adminCall(node.app, 'PATCH', `/admin/variants/${variantId}`, {
        requires_shipping: true,
      })
      expect(flipped.statusCode, flipped.body).toBe(200)
      const stale = await complete(later.id, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(stale.statusCode).toBe(422)
      expect(stale.json().errors[0].path).toBe('cart.shipping_address')
      await adminCall(node.app, 'PATCH', `/admin/variants/${variantId}`, { requires_shipping: false })

      // With a shipped item beside it, shipping is needed again.
      const mixed = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          email: 'reader@example.com',
          lines: [
            { variant_id: variantId, quantity: 1 },
            { variant_id: store.shirt, quantity: 1 },
          ],
        })
      ).json()
      await call('PATCH', `/store/carts/${mixed.id}`, { billing_address: berlin })
      const unshipped = await complete(mixed.id, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(unshipped.statusCode).toBe(422)
      expect(unshipped.json().errors[0].path).toBe('cart.shipping_address')
    })

    it('takes a manual payment as a pending order', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const res = await complete(cartId, { provider: 'manual' })
      expect(res.statusCode, res.body).toBe(201)
      expect(res.json().order).toMatchObject({ status: 'pending', payment_status: 'awaiting_transfer' })
    })

    it('refuses carts that cannot be checked out, and keys that are missing', async () => {
      const empty = (
        await call('POST', '/store/carts', { region_id: store.euRegion, email: 'a@example.com' })
      ).json()
      const res = await complete(empty.id, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(res.statusCode).toBe(422)
      expect(res.json().code).toBe('cart_invalid')
      const noKey = await call('POST', `/store/carts/${empty.id}/complete`, { payment: { provider: 'test' } })
      expect(noKey.statusCode).toBe(400)
      expect(noKey.json().code).toBe('idempotency_key_required')
      const cartId = await readyCart(node.app, store, 1)
      const tampered = await call(
        'POST',
        `/store/carts/${cartId}/complete`,
        { payment: { provider: 'test', payment_method: 'pm_card_visa' }, total: 1 },
        { 'idempotency-key': randomUUID() },
      )
      expect(tampered.statusCode).toBe(400)
      const unknownProvider = await complete(cartId, { provider: 'paypal' })
      expect(unknownProvider.statusCode).toBe(422)
      expect(unknownProvider.json().code).toBe('unknown_payment_provider')
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
    })

    it('refuses a checkout whose prices changed since the cart was shown, and charges them once reviewed', async () => {
      const own = await createTestStore(node.app, { stock: 10, reuse: store })
      const cartId = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          email: 'late@example.com',
          lines: [
            { variant_id: own.shirt, quantity: 1 },
            { variant_id: own.jacket, quantity: 1 },
          ],
        })
      ).json().id
      await call('PATCH', `/store/carts/${cartId}`, {
        shipping_address: berlin,
        shipping_option_id: store.euShipping,
      })
      const shown = (await call('GET', `/store/carts/${cartId}`)).json()
      expect(shown.totals.total).toBe(1999 + 4950 + 490)
      const shirtLine = shown.lines.find((l: { variant_id: string }) => l.variant_id === own.shirt).id
      const levels = await Promise.all([levelOf(own.shirt), levelOf(own.jacket)])
      // Staff raise the shirt's price after the shopper saw the cart.
      const repriced = await adminCall(node.app, 'PATCH', `/admin/variants/${own.shirt}`, {
        prices: [{ currency: 'EUR', amount: 2499 }],
      })
      expect(repriced.statusCode, repriced.body).toBe(200)

      const key = randomUUID()
      const refused = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' }, key)
      expect(refused.statusCode, refused.body).toBe(409)
      expect(refused.headers['content-type']).toContain('application/problem+json')
      expect(refused.json()).toMatchObject({
        code: 'cart_changed',
        errors: [{ path: `cart.lines.${shirtLine}.unit_amount`, message: 'was 1999, is now 2499' }],
      })
      // Nothing held, nothing asked of the processor.
      expect(await Promise.all([levelOf(own.shirt), levelOf(own.jacket)])).toEqual(levels)
      expect(await db().selectFrom('payments').select('id').where('cart_id', '=', cartId).execute()).toEqual(
        [],
      )
      // The cart now shows what a checkout would charge.
      const review = (await call('GET', `/store/carts/${cartId}`)).json()
      expect(review.status).toBe('active')
      expect(review.lines.find((l: { id: string }) => l.id === shirtLine).unit_amount).toBe(2499)
      expect(review.totals.total).toBe(2499 + 4950 + 490)
      // A blind retry under the same key pays nothing the shopper was not shown: the refusal is replayed.
      const replayed = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' }, key)
      expect(replayed.statusCode).toBe(409)
      expect(replayed.headers['idempotent-replayed']).toBe('true')
      // Once reviewed, a new key checks out at the price shown.
      const placed = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(placed.statusCode, placed.body).toBe(201)
      const order = placed.json().order
      expect(order.lines.find((l: { variant_id: string }) => l.variant_id === own.shirt).unit_amount).toBe(
        2499,
      )
      expect(order.totals.total).toBe(review.totals.total)

      const second = await readyCart(node.app, own, 1)
      const archived = await adminCall(node.app, 'POST', `/admin/products/${own.product}/archive`)
      expect(archived.statusCode, archived.body).toBeLessThan(300)
      const gone = await complete(second, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(gone.statusCode).toBe(422)
      expect(gone.json().code).toBe('cart_invalid')
      // The cart the shopper goes back to no longer holds what cannot be sold.
      const left = (await call('GET', `/store/carts/${second}`)).json()
      expect(left.lines.map((l: { variant_id: string }) => l.variant_id)).not.toContain(own.shirt)
    })

    it('refuses a checkout whose total moved with the shipping option since the cart was shown', async () => {
      const option = await adminCall(node.app, 'POST', '/admin/shipping-options', {
        region_id: store.euRegion,
        name: `Courier ${randomUUID().slice(0, 8)}`,
        price_type: 'flat',
        amount: 300,
      })
      expect(option.statusCode, option.body).toBe(201)
      const optionId = option.json().id
      try {
        const cartId = await readyCart(node.app, store, 1)
        await call('PATCH', `/store/carts/${cartId}`, { shipping_option_id: optionId })
        expect((await call('GET', `/store/carts/${cartId}`)).json().totals.total).toBe(1999 + 300)
        const before = await levelOf(store.shirt)
        const raised = await adminCall(node.app, 'PATCH', `/admin/shipping-options/${optionId}`, {
          amount: 900,
        })
        expect(raised.statusCode, raised.body).toBe(200)

        const refused = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
        expect(refused.statusCode, refused.body).toBe(409)
        expect(refused.json()).toMatchObject({
          code: 'cart_changed',
          errors: [{ path: 'cart.totals.total', message: `was ${1999 + 300}, is now ${1999 + 900}` }],
        })
        expect(await levelOf(store.shirt)).toEqual(before)
        expect(
          await db().selectFrom('payments').select('id').where('cart_id', '=', cartId).execute(),
        ).toEqual([])
        expect((await call('GET', `/store/carts/${cartId}`)).json().totals).toMatchObject({
          shipping_total: 900,
          total: 1999 + 900,
        })
        const placed = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
        expect(placed.statusCode, placed.body).toBe(201)
        expect(placed.json().order.totals.total).toBe(1999 + 900)
      } finally {
        await adminCall(node.app, 'DELETE', `/admin/shipping-options/${optionId}`)
      }
    })

    it('refuses a checkout whose tax changed the same day since the cart was shown', async () => {
      const miami = {
        line1: '1 Ocean Drive',
        city: 'Miami',
        region: 'FL',
        postal_code: '33139',
        country_code: 'US',
      }
      const created = await call('POST', '/store/carts', {
        region_id: store.usRegion,
        email: 'miami@example.com',
        lines: [{ variant_id: store.jacket, quantity: 1 }],
      })
      expect(created.statusCode, created.body).toBe(201)
      const cartId = created.json().id
      const shown = await call('PATCH', `/store/carts/${cartId}`, {
        shipping_address: miami,
        shipping_option_id: store.usShipping,
      })
      expect(shown.statusCode, shown.body).toBe(200)
      // No registration in Florida: no tax shown.
      expect(shown.json().totals.tax_total).toBe(0)
      const registered = await adminCall(node.app, 'PUT', '/admin/tax/registrations/US-FL', {})
      expect(registered.statusCode, registered.body).toBe(200)
      try {
        // Each node keeps the tax settings a few seconds: wait until this one taxes Florida.
        await eventually(async () => {
          const probe = (await call('POST', '/store/carts', { region_id: store.usRegion })).json()
          await call('PATCH', `/store/carts/${probe.id}`, { shipping_address: miami })
          const added = await call('POST', `/store/carts/${probe.id}/lines`, {
            variant_id: store.shirt,
            quantity: 1,
          })
          return added.json().totals.tax_total > 0 ? true : undefined
        })
        const levels = await levelOf(store.jacket)
        const refused = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
        expect(refused.statusCode, refused.body).toBe(409)
        expect(refused.json()).toMatchObject({
          code: 'cart_changed',
          errors: [{ path: 'cart.totals.total' }],
        })
        expect(await levelOf(store.jacket)).toEqual(levels)
        // Reviewed, the cart shows the tax, and a new key pays what it shows.
        const review = (await call('GET', `/store/carts/${cartId}`)).json()
        expect(review.totals.tax_total).toBeGreaterThan(0)
        const placed = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
        expect(placed.statusCode, placed.body).toBe(201)
        expect(placed.json().order.totals.total).toBe(review.totals.total)
      } finally {
        await adminCall(node.app, 'DELETE', '/admin/tax/registrations/US-FL')
      }
    })

    it('checks out a cart last priced on an earlier day whose total has not moved', async () => {
      const cartId = await readyCart(node.app, store, 1)
      // Priced two days ago: the total is compared with the stored one, which still holds.
      await db()
        .updateTable('carts')
        .set({ updated_at: sql<Date>`now() - interval '2 days'` })
        .where('id', '=', cartId)
        .execute()
      const placed = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
      expect(placed.statusCode, placed.body).toBe(201)
      expect(placed.json().order.totals.total).toBe(1999 + 490)
    })

    it('locks a cart after repeated declines (card-testing defence)', async () => {
      // A shopper of their own (address and email), so the counters of other tests do not count.
      const cartId = await readyCart(node.app, store, 1)
      await call('PATCH', `/store/carts/${cartId}`, { email: 'card-tester@example.com' })
      const ip = '203.0.113.9'
      const limit = node.runtime.config.paymentFailureLimit
      for (let i = 0; i < limit; i++) {
        const res = await complete(
          cartId,
          { provider: 'test', payment_method: 'pm_card_chargeDeclined' },
          randomUUID(),
          ip,
        )
        expect(res.statusCode, res.body).toBe(402)
      }
      const locked = await complete(
        cartId,
        { provider: 'test', payment_method: 'pm_card_visa' },
        randomUUID(),
        ip,
      )
      expect(locked.statusCode).toBe(429)
      expect(locked.json().code).toBe('payment_attempts_exceeded')
      // The same failures tripped the IP's hourly count: the cart's answer waits for whichever of
      // its 15-minute lock and that count ends last, as another cart from the IP is told.
      const untilHourEnd = Math.ceil((3_600_000 - (Date.now() % 3_600_000)) / 1000)
      const wait = Number(locked.headers['retry-after'])
      expect(Math.abs(wait - Math.max(900, untilHourEnd))).toBeLessThanOrEqual(2)
      const otherCart = await readyCart(node.app, store, 1)
      await call('PATCH', `/store/carts/${otherCart}`, { email: 'other-shopper@example.com' })
      const other = await complete(
        otherCart,
        { provider: 'test', payment_method: 'pm_card_visa' },
        randomUUID(),
        ip,
      )
      expect(other.statusCode).toBe(429)
      expect(wait).toBeGreaterThanOrEqual(Number(other.headers['retry-after']))
    })

    it('takes a bank transfer or cash on delivery from a shopper locked out of card payments', async () => {
      const cartId = await readyCart(node.app, store, 1)
      await call('PATCH', `/store/carts/${cartId}`, { email: `locked-out-${randomUUID()}@example.com` })
      const ip = '203.0.113.10'
      for (let i = 0; i < node.runtime.config.paymentFailureLimit; i++) {
        const res = await complete(
          cartId,
          { provider: 'test', payment_method: 'pm_card_chargeDeclined' },
          randomUUID(),
          ip,
        )
        expect(res.statusCode, res.body).toBe(402)
      }
      const card = await complete(
        cartId,
        { provider: 'test', payment_method: 'pm_card_visa' },
        randomUUID(),
        ip,
      )
      expect(card.statusCode).toBe(429)
      // Manual payments never decline, so they test no card: not held to the card-testing limits.
      const transfer = await complete(cartId, { provider: 'manual' }, randomUUID(), ip)
      expect(transfer.statusCode, transfer.body).toBe(201)
      expect(transfer.json().order).toMatchObject({ status: 'pending', payment_status: 'awaiting_transfer' })
      const cash = await readyCart(node.app, store, 1)
      const cod = await complete(
        cash,
        { provider: 'manual', payment_method: 'cash_on_delivery' },
        randomUUID(),
        ip,
      )
      expect(cod.statusCode, cod.body).toBe(201)
    })

    it('refuses a card that failed too often elsewhere, voiding its authorisation', async () => {
      await failTooOftenElsewhere(node, 'pm_card_mastercard')
      const before = await levelOf(store.shirt)
      const cartId = await readyCart(node.app, store, 1)
      await call('PATCH', `/store/carts/${cartId}`, { email: 'new-shopper@example.com' })
      const res = await complete(
        cartId,
        { provider: 'test', payment_method: 'pm_card_mastercard' },
        randomUUID(),
        '192.0.2.77',
      )
      expect(res.statusCode, res.body).toBe(429)
      expect(res.json().code).toBe('payment_attempts_exceeded')
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      expect(await levelOf(store.shirt)).toEqual(before)
      const payment = await db()
        .selectFrom('payments')
        .selectAll()
        .where('cart_id', '=', cartId)
        .executeTakeFirstOrThrow()
      expect(payment).toMatchObject({ status: 'failed', failure_code: 'card_velocity_exceeded' })
      const voided = await db()
        .selectFrom('test_gateway_operations')
        .select('kind')
        .where('charge_id', '=', payment.provider_ref!)
        .execute()
      expect(voided.map((v) => v.kind).sort()).toEqual(['authorize', 'cancel'])
    })

    it('queues the void of a card refused over its limit in the transaction that records the refusal', async () => {
      await failTooOftenElsewhere(node, 'pm_card_mastercard')
      const cartId = await readyCart(node.app, store, 1)
      await call('PATCH', `/store/carts/${cartId}`, { email: `refused-${randomUUID()}@example.com` })
      // The processor is out of reach for the void: the refusal stands and a job must void it.
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const cancel = gateway.cancel.bind(gateway)
      gateway.cancel = async () => {
        throw new PaymentProviderUnavailable('Test gateway: simulated network error')
      }
      try {
        const res = await complete(
          cartId,
          { provider: 'test', payment_method: 'pm_card_mastercard' },
          randomUUID(),
          '192.0.2.78',
        )
        expect(res.statusCode, res.body).toBe(429)
      } finally {
        gateway.cancel = cancel
      }
      // One void job was written by the refusal's own transaction (this node runs no workers, so
      // jobs are as they were queued): a node that died once the refusal committed still has the
      // void to do. (Another, queued when the void failed, makes it sooner.)
      const { rows } = await sql<{ id: string; same: boolean }>`
        select p.id, p.xmin::text = j.xmin::text as same
        from payments p join pgboss.job j on j.name = 'payments.void' and j.data ->> 'payment_id' = p.id
        where p.cart_id = ${cartId}`.execute(db())
      expect(rows.filter((r) => r.same)).toHaveLength(1)
      const paymentId = rows[0]!.id
      await voidUnplaced(paymentDeps(node.runtime), paymentId, 'system:payment-voids')
      const ops = await db()
        .selectFrom('test_gateway_operations')
        .select('kind')
        .where('idempotency_key', 'like', `${paymentId}:%`)
        .execute()
      expect(ops.map((o) => o.kind).sort()).toEqual(['authorize', 'cancel'])
    })

    /**
     * A card over its failure limit checks a new cart out from `ip`; the test gateway's answer
     * goes through `around` first (what happens while the processor answers).
     */
    async function completeOverLimit(
      email: string,
      ip: string,
      around: (input: AuthorizeInput, answer: AuthorizeResult, cartId: string) => Promise<AuthorizeResult>,
    ) {
      await failTooOftenElsewhere(node, 'pm_card_mastercard')
      const cartId = await readyCart(node.app, store, 1)
      await call('PATCH', `/store/carts/${cartId}`, { email })
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const authorize = gateway.authorize.bind(gateway)
      gateway.authorize = async (input: AuthorizeInput) => around(input, await authorize(input), cartId)
      try {
        const card = { provider: 'test', payment_method: 'pm_card_mastercard' }
        return { cartId, res: await complete(cartId, card, randomUUID(), ip) }
      } finally {
        gateway.authorize = authorize
      }
    }

    it("keeps the authorisation of an order a take-over placed while the card's refusal was on its way", async () => {
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const capture = gateway.capture.bind(gateway)
      // The order stays authorised, as it would until its capture: a void would find it.
      gateway.capture = async () => {
        throw new PaymentProviderUnavailable('Test gateway: simulated network error')
      }
      let calls = 0
      let res: Awaited<ReturnType<typeof complete>>
      try {
        ;({ res } = await completeOverLimit(
          `taken-over-${randomUUID()}@example.com`,
          '192.0.2.80',
          async (_input, answer, cartId) => {
            if (++calls === 1) {
              // The processor took its time: the lease ran out and the recovery job, which checks
              // no client IP, resumed the checkout and placed the order on this same payment.
              await runOutLease(cartId)
              await recoverCheckouts(commerceDeps(node.runtime))
            }
            return answer
          },
        ))
      } finally {
        gateway.capture = capture
      }
      expect(res.statusCode, res.body).toBe(200)
      const order = res.json().order
      expect(order).toMatchObject({ status: 'pending', payment_status: 'authorized' })
      const ops = await db()
        .selectFrom('test_gateway_operations')
        .select('kind')
        .where('idempotency_key', 'like', `${order.payment_id}:%`)
        .execute()
      expect(ops.map((o) => o.kind)).toEqual(['authorize'])
    })

    it('refuses a card over its limit whose checkout the recovery job gave up while it was refused', async () => {
      const email = `given-up-${randomUUID()}@example.com`
      const { cartId, res } = await completeOverLimit(email, '192.0.2.81', async (_input, answer, cartId) => {
        // The processor took longer than the lease: the recovery job gave the checkout up,
        // canceling a payment that named no charge yet, and opened the cart again.
        const cart = (await db()
          .selectFrom('carts')
          .selectAll()
          .where('id', '=', cartId)
          .executeTakeFirstOrThrow()) as never
        await abandonCheckout(commerceDeps(node.runtime), cart, 'system:checkout-recovery')
        return answer
      })
      // Told its card is refused, not to retry a checkout that a retry would only refuse again.
      expect(res.statusCode, res.body).toBe(429)
      expect(res.json().code).toBe('payment_attempts_exceeded')
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      const payment = await db()
        .selectFrom('payments')
        .select(['id', 'status', 'order_id'])
        .where('cart_id', '=', cartId)
        .executeTakeFirstOrThrow()
      expect(payment).toMatchObject({ status: 'canceled', order_id: null })
      const ops = await db()
        .selectFrom('test_gateway_operations')
        .select('kind')
        .where('idempotency_key', 'like', `${payment.id}:%`)
        .execute()
      expect(ops.map((o) => o.kind).sort()).toEqual(['authorize', 'cancel'])
    })

    it('places the order of a card over its limit whose charge was captured at the processor', async () => {
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const email = `captured-${randomUUID()}@example.com`
      const { res } = await completeOverLimit(email, '192.0.2.79', async (input, answer) => {
        // Staff captured the charge in the processor's dashboard before checkout heard the answer.
        const { captured_amount } = await gateway.capture({
          payment_id: input.payment_id,
          provider_ref: answer.provider_ref!,
          amount: input.amount,
          currency: input.currency,
          idempotency_key: `dashboard:${input.payment_id}`,
        })
        const fingerprint = 'card_fingerprint' in answer ? answer.card_fingerprint : null
        return {
          status: 'captured',
          provider_ref: answer.provider_ref!,
          captured_amount,
          card_fingerprint: fingerprint,
        }
      })
      // Refused, the money would stay taken with no order: the capture is the store's own doing.
      expect(res.statusCode, res.body).toBe(201)
      expect(res.json().order).toMatchObject({ status: 'paid', payment_status: 'captured' })
    })

    /** Half an hour on, the recovery job gives up the cart's checkout, still unanswered. */
    async function giveUpHalfAnHourLater(cartId: string) {
      await db()
        .updateTable('carts')
        .set({ updated_at: new Date(Date.now() - 31 * 60_000), checkout_lease_until: null })
        .where('id', '=', cartId)
        .execute()
      const report = await recoverCheckouts(commerceDeps(node.runtime))
      expect(report.abandoned).toBeGreaterThanOrEqual(1)
    }

    /** The payments.void jobs queued for a payment (this node runs no workers: as queued). */
    async function voidJobsOf(paymentId: string) {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from pgboss.job
        where name = ${VOID_PAYMENT_JOB} and data ->> 'payment_id' = ${paymentId}`.execute(db())
      return rows[0]!.n
    }

    it('gives up a checkout the processor never answered, releasing its stock', async () => {
      const before = await levelOf(store.jacket)
      const cartId = (
        await call('POST', '/store/carts', {
          region_id: store.euRegion,
          email: 'patient@example.com',
          lines: [{ variant_id: store.jacket, quantity: 1 }],
        })
      ).json().id
      await call('PATCH', `/store/carts/${cartId}`, {
        shipping_address: berlin,
        shipping_option_id: store.euShipping,
      })
      const res = await complete(cartId, { provider: 'test', payment_method: 'pm_card_networkError' })
      expect(res.statusCode).toBe(503)
      expect((await levelOf(store.jacket)).reserved).toBe(before.reserved + 1)
      // Half an hour later the processor still has not answered.
      await giveUpHalfAnHourLater(cartId)
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      expect(await levelOf(store.jacket)).toEqual(before)
      const payment = await db()
        .selectFrom('payments')
        .select('status')
        .where('cart_id', '=', cartId)
        .executeTakeFirstOrThrow()
      expect(payment.status).toBe('canceled')
    })

    it('gives up a checkout left at 3-D Secure, voiding its authorisation at the processor', async () => {
      const before = await levelOf(store.shirt)
      const cartId = await readyCart(node.app, store, 1)
      const first = await complete(cartId, {
        provider: 'test',
        payment_method: 'pm_card_threeDSecureRequired',
      })
      expect(first.json().type).toBe('payment_action_required')
      // Half an hour later the shopper has still not answered the challenge.
      await giveUpHalfAnHourLater(cartId)
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      expect(await levelOf(store.shirt)).toEqual(before)
      const { payment, kinds } = await operationsOf(cartId)
      expect(payment.status).toBe('canceled')
      expect(kinds).toEqual(['authorize', 'cancel'])
      // Queued with the give-up, in case the node had died before that void.
      expect(await voidJobsOf(payment.id)).toBe(1)
    })

    it('voids the charge of a checkout given up after every answer to its authorisation was lost', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const authorize = gateway.authorize.bind(gateway)
      // The processor authorises, and then its answers never arrive: every attempt times out.
      gateway.authorize = async (input: AuthorizeInput) => {
        await authorize(input)
        throw new PaymentProviderUnavailable('Test gateway: simulated timeout')
      }
      try {
        const res = await complete(cartId, { provider: 'test', payment_method: 'pm_card_visa' })
        expect(res.statusCode, res.body).toBe(503)
        await giveUpHalfAnHourLater(cartId)
      } finally {
        gateway.authorize = authorize
      }
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      const { payment } = await operationsOf(cartId)
      expect(payment.status).toBe('canceled')
      // The give-up queued the void job, which asks the processor for the charge no answer named.
      expect(await voidJobsOf(payment.id)).toBe(1)
      await voidUnplaced(paymentDeps(node.runtime), payment.id, 'system:payment-voids')
      expect((await operationsOf(cartId)).kinds).toEqual(['authorize', 'cancel'])
      const named = await db()
        .selectFrom('payments')
        .select('provider_ref')
        .where('id', '=', payment.id)
        .executeTakeFirstOrThrow()
      expect(named.provider_ref).not.toBeNull()
    })

    /** The cart's lease as it holds it now. */
    const leaseOf = async (cartId: string) =>
      (
        await db()
          .selectFrom('carts')
          .select('checkout_lease_until')
          .where('id', '=', cartId)
          .executeTakeFirstOrThrow()
      ).checkout_lease_until

    /**
     * Checks `cartId` out with a first authorisation that outlives its lease: the shopper's retry
     * takes the checkout over meanwhile and waits in its own authorisation until the first request
     * has answered. The take-over's lease, and the lease as the first request left it, are read
     * while the take-over is still authorising.
     */
    async function completeWhileTakenOver(cartId: string, payment: object) {
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const authorize = gateway.authorize.bind(gateway)
      const { promise: released, resolve: release } = Promise.withResolvers<void>()
      const { promise: isAuthorizing, resolve: authorizing } = Promise.withResolvers<void>()
      let takeOver: ReturnType<typeof complete> | undefined
      let taken: Date | null = null
      let calls = 0
      gateway.authorize = async (input: AuthorizeInput) => {
        if (++calls > 1) {
          authorizing()
          await released
          return authorize(input)
        }
        await runOutLease(cartId)
        takeOver = complete(cartId, payment)
        await isAuthorizing
        taken = await leaseOf(cartId)
        return authorize(input)
      }
      try {
        const first = await complete(cartId, payment)
        const left = await leaseOf(cartId)
        return { first, taken, left, takeOver: takeOver! }
      } finally {
        release()
        gateway.authorize = authorize
      }
    }

    it("leaves a take-over's lease when the request it took over from finds the processor unavailable", async () => {
      const cartId = await readyCart(node.app, store, 1)
      // The processor hangs up only once its timeout is past the lease.
      const card = { provider: 'test', payment_method: 'pm_card_networkError' }
      const { first, taken, left, takeOver } = await completeWhileTakenOver(cartId, card)
      expect(first.statusCode, first.body).toBe(503)
      expect(taken).not.toBeNull()
      // Still the take-over's: no third request can take the checkout over beside it.
      expect(left).toEqual(taken)
      const second = await takeOver
      expect(second.statusCode, second.body).toBe(503)
      // The take-over's own lease is given back, so the shopper's retry resumes at once.
      expect(await leaseOf(cartId)).toBeNull()
      await giveUpHalfAnHourLater(cartId)
    })

    it("leaves a take-over's lease when the request it took over from is asked for 3-D Secure", async () => {
      const cartId = await readyCart(node.app, store, 1)
      const threeDs = { provider: 'test', payment_method: 'pm_card_threeDSecureRequired' }
      const { first, taken, left, takeOver } = await completeWhileTakenOver(cartId, threeDs)
      expect(first.statusCode, first.body).toBe(200)
      expect(first.json().type).toBe('payment_action_required')
      expect(taken).not.toBeNull()
      expect(left).toEqual(taken)
      const second = await takeOver
      expect(second.statusCode, second.body).toBe(200)
      expect(second.json()).toMatchObject({
        type: 'payment_action_required',
        payment: { id: first.json().payment.id },
      })
      expect(await leaseOf(cartId)).toBeNull()
      await giveUpHalfAnHourLater(cartId)
    })

    it("leaves a take-over's lease when the recovery job hands back a 3-D Secure checkout after its own ran out", async () => {
      const cartId = await readyCart(node.app, store, 1)
      const threeDs = { provider: 'test', payment_method: 'pm_card_threeDSecureRequired' }
      const first = await complete(cartId, threeDs)
      expect(first.json().type).toBe('payment_action_required')
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const authorize = gateway.authorize.bind(gateway)
      const { promise: released, resolve: release } = Promise.withResolvers<void>()
      const { promise: isAuthorizing, resolve: authorizing } = Promise.withResolvers<void>()
      gateway.authorize = async (input: AuthorizeInput) => {
        if (input.payment_id === first.json().payment.id) {
          authorizing()
          await released
        }
        return authorize(input)
      }
      let takeOver: ReturnType<typeof complete> | undefined
      let taken: Date | null = null
      // The job claims the cart, and its lease runs out while it works through the rest of its
      // batch: the shopper, back from the challenge, takes the checkout over meanwhile.
      const unpause = pauseAt('checkout.recovery_claimed', async () => {
        await runOutLease(cartId)
        takeOver = complete(cartId, threeDs)
        await isAuthorizing
        taken = await leaseOf(cartId)
      })
      let left: Date | null
      try {
        await recoverCheckouts(commerceDeps(node.runtime))
        left = await leaseOf(cartId)
      } finally {
        unpause()
        release()
        gateway.authorize = authorize
      }
      expect(taken).not.toBeNull()
      expect(left).toEqual(taken)
      const second = await takeOver!
      expect(second.statusCode, second.body).toBe(200)
      expect(second.json().type).toBe('payment_action_required')
      expect(await leaseOf(cartId)).toBeNull()
      await giveUpHalfAnHourLater(cartId)
    })

    it('leaves to the shopper a checkout taken over from the recovery job that came to give it up', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const threeDs = { provider: 'test', payment_method: 'pm_card_threeDSecureRequired' }
      const first = await complete(cartId, threeDs)
      const paymentId = first.json().payment.id as string
      // Half an hour at the challenge: the job comes to give the checkout up.
      await db()
        .updateTable('carts')
        .set({ updated_at: new Date(Date.now() - 31 * 60_000), checkout_lease_until: null })
        .where('id', '=', cartId)
        .execute()
      const gateway = commerceDeps(node.runtime).providers.get('test')!
      const authorize = gateway.authorize.bind(gateway)
      const { promise: released, resolve: release } = Promise.withResolvers<void>()
      const { promise: isAuthorizing, resolve: authorizing } = Promise.withResolvers<void>()
      gateway.authorize = async (input: AuthorizeInput) => {
        if (input.payment_id === paymentId) {
          authorizing()
          await released
        }
        return authorize(input)
      }
      let takeOver: ReturnType<typeof complete> | undefined
      // The job's lease runs out while it works through its batch, and the shopper, back from the
      // challenge they passed, takes the checkout over meanwhile.
      const unpause = pauseAt('checkout.recovery_claimed', async () => {
        await runOutLease(cartId)
        const passed = await call('POST', `/store/payments/${paymentId}/authenticate`, {
          result: 'pass',
          cart_id: cartId,
        })
        expect(passed.statusCode, passed.body).toBeLessThan(300)
        takeOver = complete(cartId, threeDs)
        await isAuthorizing
      })
      let report: Awaited<ReturnType<typeof recoverCheckouts>>
      try {
        report = await recoverCheckouts(commerceDeps(node.runtime))
      } finally {
        unpause()
        release()
        gateway.authorize = authorize
      }
      expect(report.abandoned).toBe(0)
      const second = await takeOver!
      expect(second.statusCode, second.body).toBe(201)
      expect(second.json().order).toMatchObject({ payment_id: paymentId })
    })

    it('gives back its own lease to the microsecond when the recovery job finds the checkout answered', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const threeDs = { provider: 'test', payment_method: 'pm_card_threeDSecureRequired' }
      const first = await complete(cartId, threeDs)
      expect(first.json().type).toBe('payment_action_required')
      const { id: paymentId, provider_ref } = first.json().payment
      const leaseText = async () =>
        (
          await sql<{ lease: string | null }>`
            select ${LEASE_MICROS} as lease from carts where id = ${cartId}`.execute(db())
        ).rows[0]!.lease
      // The job's claim, as it holds it: a lease with microseconds, as now() gives them.
      const {
        rows: [claimed],
      } = await sql<{ lease: string }>`
        update carts set checkout_lease_until =
          date_trunc('milliseconds', now() + interval '1 minute') + interval '123 microseconds'
        where id = ${cartId} returning *, ${LEASE_MICROS} as lease`.execute(db())
      const { lease: own, ...cart } = claimed!
      // The shopper passes the challenge and the processor says so before the job gives up.
      const passed = await call('POST', `/store/payments/${paymentId}/authenticate`, {
        result: 'pass',
        cart_id: cartId,
      })
      expect(passed.statusCode, passed.body).toBeLessThan(300)
      await applyWebhook(paymentDeps(node.runtime), 'test', {
        event_id: `evt_${randomUUID()}`,
        type: 'payment_intent.amount_capturable_updated',
        provider_ref,
        status: 'authorized',
      })
      // A take-over's lease within the same millisecond: a Date (milliseconds) cannot tell them apart.
      await sql`
        update carts set checkout_lease_until = checkout_lease_until + interval '456 microseconds'
        where id = ${cartId}`.execute(db())
      const taken = await leaseText()
      const deps = commerceDeps(node.runtime)
      expect(await abandonCheckout(deps, cart as never, 'system:checkout-recovery', own)).toBe(false)
      expect(await leaseText()).toBe(taken)
      // The job's own lease is given back, so the shopper's retry resumes at once.
      await sql`
        update carts set checkout_lease_until = checkout_lease_until - interval '456 microseconds'
        where id = ${cartId}`.execute(db())
      expect(await leaseText()).toBe(own)
      expect(await abandonCheckout(deps, cart as never, 'system:checkout-recovery', own)).toBe(false)
      expect(await leaseText()).toBeNull()
      const resumed = await complete(cartId, threeDs)
      expect(resumed.statusCode, resumed.body).toBe(201)
    })

    it('recovers a checkout whose request stopped after reserving stock', async () => {
      const cartId = await readyCart(node.app, store, 1)
      // As a request that died after phase 1 leaves it: completing, payment pending, lease run out.
      const { network } = await (async () => {
        const res = await complete(cartId, { provider: 'test', payment_method: 'pm_card_networkError' })
        return { network: res }
      })()
      expect(network.statusCode, network.body).toBe(503)
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('completing')
      await db()
        .updateTable('payments')
        .set({ payment_method: 'pm_card_visa' })
        .where('cart_id', '=', cartId)
        .execute()
      const report = await recoverCheckouts(commerceDeps(node.runtime))
      expect(report.resumed).toBeGreaterThanOrEqual(1)
      const order = await db()
        .selectFrom('orders')
        .selectAll()
        .where('cart_id', '=', cartId)
        .executeTakeFirstOrThrow()
      expect(order.status).toBe('paid')
    })

    it('counts a checkout it resumed into a decline as settled, not failed', async () => {
      const cartId = await readyCart(node.app, store, 1)
      const stopped = await complete(cartId, { provider: 'test', payment_method: 'pm_card_networkError' })
      expect(stopped.statusCode, stopped.body).toBe(503)
      // The processor answers the resumed checkout with a decline: the cart opens again.
      await db()
        .updateTable('payments')
        .set({ payment_method: 'pm_card_chargeDeclined' })
        .where('cart_id', '=', cartId)
        .execute()
      const report = await recoverCheckouts(commerceDeps(node.runtime))
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      expect(report.settled).toBeGreaterThanOrEqual(1)
      expect(report.failed).toBe(0)
    })

    it('counts a checkout whose stock went but whose give-up could not be written as failed, then gives it up', async () => {
      const { cartId, restore } = await stockGoesWhileAuthorizing(node, store, 'give-up-refused@example.com')
      const stopped = await node.app.inject({
        method: 'POST',
        url: `/store/carts/${cartId}/complete`,
        headers: { 'idempotency-key': randomUUID() },
        payload: { payment: { provider: 'test', payment_method: 'pm_card_networkError' } },
      })
      expect(stopped.statusCode, stopped.body).toBe(503)
      await db()
        .updateTable('payments')
        .set({ payment_method: 'pm_card_visa' })
        .where('cart_id', '=', cartId)
        .execute()
      await db().updateTable('carts').set({ checkout_lease_until: null }).where('id', '=', cartId).execute()
      // The database refuses to reopen this cart: the give-up's transaction fails.
      const trigger = `refuse_reopen_${randomUUID().slice(0, 8)}`
      await sql
        .raw(`create function ${trigger}() returns trigger language plpgsql as $$
          begin
            if old.id = '${cartId}' and new.status = 'active' then
              raise exception 'refused by the test';
            end if;
            return new;
          end $$`)
        .execute(db())
      await sql
        .raw(`create trigger ${trigger} before update on carts for each row execute function ${trigger}()`)
        .execute(db())
      let report: Awaited<ReturnType<typeof recoverCheckouts>>
      try {
        report = await recoverCheckouts(commerceDeps(node.runtime))
      } finally {
        await sql.raw(`drop trigger ${trigger} on carts`).execute(db())
        await sql.raw(`drop function ${trigger}()`).execute(db())
        restore()
      }
      expect(report).toMatchObject({ settled: 0, failed: 1 })
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('completing')

      // The next pass, once the lease has run out, gives it up: the cart open, the payment voided.
      await db().updateTable('carts').set({ checkout_lease_until: null }).where('id', '=', cartId).execute()
      const again = await recoverCheckouts(commerceDeps(node.runtime))
      expect(again).toMatchObject({ settled: 1, failed: 0 })
      expect((await call('GET', `/store/carts/${cartId}`)).json().status).toBe('active')
      const payment = await db()
        .selectFrom('payments')
        .select(['status', 'order_id'])
        .where('cart_id', '=', cartId)
        .executeTakeFirstOrThrow()
      expect(payment).toMatchObject({ status: 'canceled', order_id: null })
    })
  })
})

describe.each(DATABASE_KINDS)('%s: voids the processor could not take at once', (kind) => {
  let node: TestNode
  let store: TestStore
  const db = () => node.runtime.database.db

  beforeAll(async () => {
    // Workers run the void job, retrying a failed run a second later.
    node = await startTestNode(kind, {
      work: true,
      env: { RATE_LIMIT_PER_MINUTE: '100000', CHECKOUT_LEASE_SECONDS: '1', JOB_RETRY_DELAY_SECONDS: '1' },
    })
    store = await createTestStore(node.app)
  })
  afterAll(() => node?.close())

  const complete = (cartId: string) =>
    node.app.inject({
      method: 'POST',
      url: `/store/carts/${cartId}/complete`,
      headers: { 'idempotency-key': randomUUID() },
      payload: { payment: { provider: 'test', payment_method: 'pm_card_visa' } },
    })
  /** The cart's payment and what the test gateway did with it (its ledger, by kind). */
  const operationsOf = async (cartId: string) => {
    const payment = await db()
      .selectFrom('payments')
      .select(['id', 'status', 'order_id'])
      .where('cart_id', '=', cartId)
      .executeTakeFirstOrThrow()
    const ops = await db()
      .selectFrom('test_gateway_operations')
      .select('kind')
      .where('idempotency_key', 'like', `${payment.id}:%`)
      .execute()
    return { payment, kinds: ops.map((o) => o.kind).sort() }
  }
  /** Waits for the void job: the processor's void of the cart's payment, and the row canceled. */
  const voided = (cartId: string) =>
    eventually(async () => {
      const { payment, kinds } = await operationsOf(cartId)
      return kinds.includes('cancel') && payment.status === 'canceled' ? true : undefined
    }, 15_000)
  /** The test gateway out of reach for its next `count` voids. */
  function voidsFail(
    count: number,
    failure = () => new PaymentProviderUnavailable('Test gateway: simulated network error'),
  ) {
    const gateway = commerceDeps(node.runtime).providers.get('test')!
    const cancel = gateway.cancel.bind(gateway)
    const state = { refused: 0 }
    gateway.cancel = async (input) => {
      if (state.refused < count) {
        state.refused++
        throw failure()
      }
      return cancel(input)
    }
    return { state, restore: () => (gateway.cancel = cancel) }
  }

  it('voids from a job an authorisation that came after its checkout was given up', async () => {
    const cartId = await readyCart(node.app, store, 1)
    // The checkout's own void and the job's first run fail; the job's retry gets through.
    const outage = voidsFail(2)
    const gateway = commerceDeps(node.runtime).providers.get('test')!
    const authorize = gateway.authorize.bind(gateway)
    gateway.authorize = async (input: AuthorizeInput) => {
      const answer = await authorize(input)
      // The processor took longer than the lease and the recovery job gave the checkout up.
      const cart = await db()
        .selectFrom('carts')
        .selectAll()
        .where('id', '=', cartId)
        .executeTakeFirstOrThrow()
      await abandonCheckout(commerceDeps(node.runtime), cart as never, 'system:checkout-recovery')
      return answer
    }
    try {
      const res = await complete(cartId)
      expect(res.statusCode, res.body).toBe(409)
      expect((await operationsOf(cartId)).kinds).toEqual(['authorize'])
      await voided(cartId)
    } finally {
      gateway.authorize = authorize
      outage.restore()
    }
    expect(outage.state.refused).toBe(2)
    const { payment, kinds } = await operationsOf(cartId)
    expect(payment).toMatchObject({ status: 'canceled', order_id: null })
    expect(kinds).toEqual(['authorize', 'cancel'])
    expect((await node.app.inject({ url: `/store/carts/${cartId}` })).json().status).toBe('active')
  })

  it('refuses a card over its failure limit when the void fails, and voids it from a job', async () => {
    // A 503 here would leave the checkout to the recovery job, which cannot check the limit.
    await failTooOftenElsewhere(node, 'pm_card_mastercard')
    const cartId = await readyCart(node.app, store, 1)
    await node.app.inject({
      method: 'PATCH',
      url: `/store/carts/${cartId}`,
      payload: { email: `card-${randomUUID()}@example.com` },
    })
    const outage = voidsFail(1)
    try {
      const res = await node.app.inject({
        method: 'POST',
        url: `/store/carts/${cartId}/complete`,
        headers: { 'idempotency-key': randomUUID() },
        payload: { payment: { provider: 'test', payment_method: 'pm_card_mastercard' } },
        remoteAddress: `2001:db8::${randomUUID().slice(0, 4)}`,
      })
      expect(res.statusCode, res.body).toBe(429)
      expect(res.json().code).toBe('payment_attempts_exceeded')
      expect((await node.app.inject({ url: `/store/carts/${cartId}` })).json().status).toBe('active')
      await eventually(
        async () => ((await operationsOf(cartId)).kinds.includes('cancel') ? true : undefined),
        15_000,
      )
    } finally {
      outage.restore()
    }
    expect(outage.state.refused).toBe(1)
    const { payment, kinds } = await operationsOf(cartId)
    expect(payment).toMatchObject({ status: 'failed', order_id: null })
    expect(kinds).toEqual(['authorize', 'cancel'])
  })

  it('reopens at once a cart whose stock went, and voids its authorisation from a job', async () => {
    const { cartId, restore } = await stockGoesWhileAuthorizing(node, store, 'late-and-down@example.com')
    const outage = voidsFail(1)
    try {
      const res = await complete(cartId)
      expect(res.statusCode, res.body).toBe(409)
      expect(res.json().code).toBe('insufficient_stock')
      // The shopper may change the cart or pay again at once, while the old hold waits on the job.
      expect((await node.app.inject({ url: `/store/carts/${cartId}` })).json().status).toBe('active')
      await voided(cartId)
    } finally {
      restore()
      outage.restore()
    }
    expect(outage.state.refused).toBe(1)
    const { payment, kinds } = await operationsOf(cartId)
    expect(payment).toMatchObject({ status: 'canceled', order_id: null })
    expect(kinds).toEqual(['authorize', 'cancel'])
  })

  it('queues the void with the give-up, for a node that dies before it voids', async () => {
    const { cartId, restore } = await stockGoesWhileAuthorizing(node, store, 'late-and-gone@example.com')
    // Not an outage the checkout recognises: as if the node had died after the give-up committed.
    const outage = voidsFail(1, () => new Error('the node died'))
    try {
      const res = await complete(cartId)
      expect(res.statusCode, res.body).toBe(409)
    } finally {
      restore()
      outage.restore()
    }
    const { payment } = await operationsOf(cartId)
    expect(payment).toMatchObject({ status: 'authorized', order_id: null })
    const queued = await sql<{ n: number }>`
      select count(*)::int as n from pgboss.job
      where name = 'payments.void' and data ->> 'payment_id' = ${payment.id}`.execute(db())
    expect(queued.rows[0]?.n).toBe(1)
    // What that job does when it comes due.
    await voidUnplaced(paymentDeps(node.runtime), payment.id, 'system:payment-voids')
    const after = await operationsOf(cartId)
    expect(after.payment).toMatchObject({ status: 'canceled', order_id: null })
    expect(after.kinds).toEqual(['authorize', 'cancel'])
  })

  it('refunds from a job a charge captured outside the app that its given-up checkout could not refund', async () => {
    const cartId = await readyCart(node.app, store, 1)
    const gateway = commerceDeps(node.runtime).providers.get('test')!
    const authorize = gateway.authorize.bind(gateway)
    const refund = gateway.refund.bind(gateway)
    let refusals = 1
    gateway.refund = async (input) => {
      if (refusals-- > 0) throw new PaymentProviderUnavailable('Test gateway: simulated network error')
      return refund(input)
    }
    gateway.authorize = async (input: AuthorizeInput) => {
      const answer = await authorize(input)
      // The recovery job gives the checkout up, and the charge is captured in the dashboard.
      const cart = await db()
        .selectFrom('carts')
        .selectAll()
        .where('id', '=', cartId)
        .executeTakeFirstOrThrow()
      await abandonCheckout(commerceDeps(node.runtime), cart as never, 'system:checkout-recovery')
      const { captured_amount } = await gateway.capture({
        payment_id: input.payment_id,
        provider_ref: answer.provider_ref!,
        amount: input.amount,
        currency: input.currency,
        idempotency_key: `dashboard:${input.payment_id}`,
      })
      return { status: 'captured', provider_ref: answer.provider_ref!, captured_amount }
    }
    try {
      const res = await complete(cartId)
      expect(res.statusCode, res.body).toBe(409)
      await eventually(async () => {
        const { kinds } = await operationsOf(cartId)
        const refunds = await db()
          .selectFrom('payment_refunds')
          .innerJoin('payments', 'payments.id', 'payment_refunds.payment_id')
          .select('payment_refunds.status')
          .where('payments.cart_id', '=', cartId)
          .execute()
        return kinds.includes('refund') && refunds[0]?.status === 'succeeded' ? true : undefined
      }, 15_000)
    } finally {
      gateway.authorize = authorize
      gateway.refund = refund
    }
    expect(refusals).toBe(-1)
    const payment = await db()
      .selectFrom('payments')
      .select(['status', 'order_id', 'amount', 'captured_amount', 'refunded_amount', 'provider_ref'])
      .where('cart_id', '=', cartId)
      .executeTakeFirstOrThrow()
    expect(payment).toMatchObject({
      status: 'refunded',
      order_id: null,
      captured_amount: payment.amount,
      refunded_amount: payment.amount,
    })
    const charge = await db()
      .selectFrom('test_gateway_operations')
      .select('kind')
      .where('charge_id', '=', payment.provider_ref!)
      .execute()
    expect(charge.map((o) => o.kind).sort()).toEqual(['authorize', 'capture', 'refund'])
  })

  /** A payment of a ready cart with no order, charged (and captured) at the test gateway. */
  async function capturedWithoutOrder() {
    const cartId = await readyCart(node.app, store, 1)
    const payment = await withTransaction(db(), (trx) =>
      createPayment(trx, {
        cart_id: cartId,
        provider: 'test',
        amount: 2500,
        currency: 'EUR',
        payment_method: 'pm_card_visa',
      }),
    )
    const gateway = commerceDeps(node.runtime).providers.get('test')!
    const answer = await gateway.authorize({
      payment_id: payment.id,
      amount: 2500,
      currency: 'EUR',
      payment_method: 'pm_card_visa',
      provider_ref: null,
      email: null,
      capture: true,
    })
    return { payment, gateway, providerRef: answer.provider_ref! }
  }
  /** The void job's run for the payment, as staff see it among the failed jobs once it is there. */
  const deadLettered = (paymentId: string) =>
    eventually(async () => {
      const res = await node.app.inject({ url: '/admin/jobs/failed?limit=100', headers: adminAuth })
      type Failed = { queue: string; data: { payment_id: string }; retries: number; error: unknown }
      return (res.json().data as Failed[]).find(
        (j) => j.queue === VOID_PAYMENT_JOB && j.data.payment_id === paymentId,
      )
    }, 15_000)

  it('refunds from a job a charge the processor captured after the checkout was given up, whose void it refuses', async () => {
    const { payment, providerRef } = await capturedWithoutOrder()
    // Canceled here, the charge then captured in the processor's dashboard: no void returns it, and
    // the refusal does not say how much was captured, so the job asks the processor.
    await db()
      .updateTable('payments')
      .set({ status: 'canceled', provider_ref: providerRef })
      .where('id', '=', payment.id)
      .execute()
    await withTransaction(db(), (trx) =>
      node.runtime.jobs.enqueue(trx, VOID_PAYMENT_JOB, { payment_id: payment.id }),
    )
    // The payment reads refunded from the moment its refund is reserved; the refund row settles after.
    const refunded = await eventually(async () => {
      const rows = await db()
        .selectFrom('payment_refunds')
        .select(['amount', 'status'])
        .where('payment_id', '=', payment.id)
        .execute()
      return rows.some((r) => r.status !== 'pending') ? rows : undefined
    }, 15_000)
    expect(refunded.map((r) => [Number(r.amount), r.status])).toEqual([[2500, 'succeeded']])
    const after = await db()
      .selectFrom('payments')
      .select(['status', 'order_id', 'provider_ref', 'captured_amount', 'refunded_amount'])
      .where('id', '=', payment.id)
      .executeTakeFirstOrThrow()
    expect(after).toMatchObject({ status: 'refunded', order_id: null, provider_ref: providerRef })
    expect([Number(after.captured_amount), Number(after.refunded_amount)]).toEqual([2500, 2500])
    const charge = await db()
      .selectFrom('test_gateway_operations')
      .select('kind')
      .where('charge_id', '=', providerRef)
      .execute()
    expect(charge.map((o) => o.kind).sort()).toEqual(['authorize', 'refund'])
  })

  it('dead-letters the refund of a charge captured with no order once the processor has refused it', async () => {
    const { payment, gateway, providerRef } = await capturedWithoutOrder()
    await db()
      .updateTable('payments')
      .set({ status: 'captured', captured_amount: 2500, provider_ref: providerRef })
      .where('id', '=', payment.id)
      .execute()
    const refund = gateway.refund.bind(gateway)
    gateway.refund = async () => {
      throw problem('conflict', 'Test gateway: the refund was refused')
    }
    try {
      await withTransaction(db(), (trx) =>
        node.runtime.jobs.enqueue(trx, VOID_PAYMENT_JOB, { payment_id: payment.id }),
      )
      // The refusal is recorded on the first run; the next sees it and stops retrying.
      const failed = await deadLettered(payment.id)
      expect(failed.retries).toBe(1)
      expect(JSON.stringify(failed.error)).toContain('refused the refund')
    } finally {
      gateway.refund = refund
    }
  })
})

describe('the test gateway switched off', () => {
  it('is not a payment provider, so its test cards place no order', async () => {
    const node = await startTestNode('pglite', { env: { PAYMENT_TEST_GATEWAY: 'false' } })
    try {
      const store = await createTestStore(node.app)
      const cartId = await readyCart(node.app, store, 1)
      const res = await node.app.inject({
        method: 'POST',
        url: `/store/carts/${cartId}/complete`,
        headers: { 'idempotency-key': randomUUID() },
        payload: { payment: { provider: 'test', payment_method: 'pm_card_visa' } },
      })
      expect(res.statusCode).toBe(422)
      expect(res.json().code).toBe('unknown_payment_provider')
      expect(await node.runtime.database.db.selectFrom('orders').select('id').execute()).toEqual([])
    } finally {
      await node.close()
    }
  })
})

describe('manual payments as configured', () => {
  const checkout = (node: TestNode, cartId: string, payment: object) =>
    node.app.inject({
      method: 'POST',
      url: `/store/carts/${cartId}/complete`,
      headers: { 'idempotency-key': randomUUID() },
      payload: { payment },
    })

  it('takes only the methods the store offers, refused before anything is held', async () => {
    const node = await startTestNode('pglite', { env: { PAYMENT_MANUAL_METHODS: 'bank_transfer' } })
    try {
      const store = await createTestStore(node.app)
      const cartId = await readyCart(node.app, store, 1)
      const cod = await checkout(node, cartId, { provider: 'manual', payment_method: 'cash_on_delivery' })
      expect(cod.statusCode, cod.body).toBe(422)
      expect(cod.json()).toMatchObject({
        code: 'unsupported_payment_method',
        errors: [{ path: 'body.payment.payment_method' }],
      })
      const db = node.runtime.database.db
      expect(await db.selectFrom('payments').select('id').execute()).toEqual([])
      expect(await db.selectFrom('inventory_reservations').select('id').execute()).toEqual([])
      const transfer = await checkout(node, cartId, { provider: 'manual' })
      expect(transfer.statusCode, transfer.body).toBe(201)
      expect(transfer.json().order.payment_status).toBe('awaiting_transfer')
    } finally {
      await node.close()
    }
  })

  it('offers no manual provider at all with PAYMENT_MANUAL_METHODS=none', async () => {
    const node = await startTestNode('pglite', { env: { PAYMENT_MANUAL_METHODS: 'none' } })
    try {
      const store = await createTestStore(node.app)
      const cartId = await readyCart(node.app, store, 1)
      const res = await checkout(node, cartId, { provider: 'manual', payment_method: 'bank_transfer' })
      expect(res.statusCode).toBe(422)
      expect(res.json().code).toBe('unknown_payment_provider')
    } finally {
      await node.close()
    }
  })
})

/**
 * A cart of the last unit of a shirt whose stock goes while the processor authorises: the hold
 * lapses and another shopper takes the unit. Returns the cart and how to put the gateway back.
 */
async function stockGoesWhileAuthorizing(node: TestNode, store: TestStore, email: string) {
  const { cartId, variantId } = await lastUnitCart(node, store, email)
  const gateway = commerceDeps(node.runtime).providers.get('test')!
  const authorize = gateway.authorize.bind(gateway)
  gateway.authorize = async (input: AuthorizeInput) => {
    const answer = await authorize(input)
    await takeLastUnit(node, cartId, variantId)
    return answer
  }
  return { cartId, restore: () => (gateway.authorize = authorize) }
}

/** Puts a test card over its failure limit, as if it had been declined that often elsewhere. */
async function failTooOftenElsewhere(node: TestNode, paymentMethod: string) {
  const velocity = new PaymentVelocity(node.runtime.kv, node.runtime.config.paymentFailureLimit)
  const card = testCardFingerprint(paymentMethod)
  for (let i = 0; i < node.runtime.config.paymentFailureLimit; i++)
    await velocity.recordFailure({ ip: `198.51.100.${i}`, cart_id: `cart_elsewhere_${i}`, fingerprint: card })
}
