/**
 * Store routes whose answer depends on who asks (carts, checkout, catalog prices), with a customer
 * access token that no longer resolves: expired, or of a signed-out session. It is refused with 401,
 * never taken for a guest, which would hide the shopper's cart and make their new cart and order
 * guest ones. Without an Authorization header the caller is a guest as before; the routes that trade
 * a password or refresh token for new tokens still take a request that carries the stale one.
 */
import { hkdfSync, randomUUID } from 'node:crypto'
import type { LightMyRequestResponse } from 'fastify'
import { decodeJwt, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { berlin, createTestStore, readyCart, type TestStore } from './support/commerce.ts'
import { signUpConfirmed } from './support/customers.ts'
import { DATABASE_KINDS } from './support/database.ts'
import { bearer, strongPassword, uniqueEmail } from './support/staff.ts'

interface Tokens {
  access_token: string
  refresh_token: string
}

describe.each(DATABASE_KINDS)('%s: store credentials', (kind) => {
  let node: TestNode
  let store: TestStore
  const db = () => node.runtime.database.db

  const call = (method: string, url: string, payload?: object, headers: Record<string, string> = {}) =>
    node.app.inject({ method: method as 'POST', url, headers, ...(payload ? { payload } : {}) })

  async function signIn(email: string, password: string): Promise<Tokens> {
    const res = await call('POST', '/store/auth/sign-in', { email, password })
    expect(res.statusCode, res.body).toBe(200)
    return res.json()
  }

  /** A confirmed customer, signed in. */
  async function customer(): Promise<{ id: string; email: string; password: string; tokens: Tokens }> {
    const email = uniqueEmail('shopper')
    const password = strongPassword()
    await signUpConfirmed(node, email, password)
    const tokens = await signIn(email, password)
    const me = await call('GET', '/store/me', undefined, bearer(tokens.access_token))
    expect(me.statusCode, me.body).toBe(200)
    return { id: me.json().id, email, password, tokens }
  }

  /**
   * The token of a live session as it is after its 15 minutes: the same customer and session,
   * signed with this node's key (as TokenSigner derives it), its expiry in the past.
   */
  async function expired(accessToken: string): Promise<string> {
    const { sub, sid } = decodeJwt(accessToken)
    const key = new Uint8Array(
      hkdfSync('sha256', node.runtime.config.appSecret, 'shopwright', 'access-token', 32),
    )
    const past = Math.floor(Date.now() / 1000) - 3600
    return new SignJWT({ typ: 'customer', sid })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(sub as string)
      .setIssuer('shopwright')
      .setAudience('shopwright:store')
      .setIssuedAt(past - 900)
      .setExpirationTime(past)
      .sign(key)
  }

  /** A euro cart of the customer's, addressed and shipped, ready to check out. */
  async function ownReadyCart(headers: Record<string, string>): Promise<string> {
    const created = await call(
      'POST',
      '/store/carts',
      { region_id: store.euRegion, lines: [{ variant_id: store.shirt, quantity: 1 }] },
      headers,
    )
    expect(created.statusCode, created.body).toBe(201)
    const patched = await call(
      'PATCH',
      `/store/carts/${created.json().id}`,
      { shipping_address: berlin, shipping_option_id: store.euShipping },
      headers,
    )
    expect(patched.statusCode, patched.body).toBe(200)
    return created.json().id
  }

  const complete = (cartId: string, headers: Record<string, string> = {}) =>
    call(
      'POST',
      `/store/carts/${cartId}/complete`,
      { payment: { provider: 'test', payment_method: 'pm_card_visa' } },
      { 'idempotency-key': randomUUID(), ...headers },
    )

  function expectRefused(res: LightMyRequestResponse): void {
    expect(res.statusCode, res.body).toBe(401)
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(res.json().code).toBe('unauthenticated')
    expect(res.headers['www-authenticate']).toBe('Bearer')
  }

  const cartCount = async () =>
    (
      await db()
        .selectFrom('carts')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .executeTakeFirstOrThrow()
    ).n
  const orderCount = async () =>
    (
      await db()
        .selectFrom('orders')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .executeTakeFirstOrThrow()
    ).n

  beforeAll(async () => {
    node = await startTestNode(kind)
    store = await createTestStore(node.app)
  })
  afterAll(() => node?.close())

  describe.each(['expired', 'signed out'])('a customer token that is %s', (state) => {
    let shopper: Awaited<ReturnType<typeof customer>>
    let dead: Record<string, string>
    let cartId: string

    beforeAll(async () => {
      shopper = await customer()
      const live = bearer(shopper.tokens.access_token)
      cartId = await ownReadyCart(live)
      if (state === 'expired') {
        dead = bearer(await expired(shopper.tokens.access_token))
      } else {
        dead = live
        const out = await call('POST', '/store/auth/sign-out', undefined, live)
        expect(out.statusCode, out.body).toBe(204)
      }
    })

    it("is refused on the customer's own cart, not answered 404 as a stranger's", async () => {
      expectRefused(await call('GET', `/store/carts/${cartId}`, undefined, dead))
      expectRefused(
        await call('POST', `/store/carts/${cartId}/lines`, { variant_id: store.jacket, quantity: 1 }, dead),
      )
      expectRefused(await call('GET', `/store/carts/${cartId}/shipping-options`, undefined, dead))
    })

    it('is refused on creating a cart, which is not made as a guest cart', async () => {
      const before = await cartCount()
      expectRefused(
        await call(
          'POST',
          '/store/carts',
          { region_id: store.euRegion, lines: [{ variant_id: store.shirt, quantity: 1 }] },
          dead,
        ),
      )
      expect(await cartCount()).toBe(before)
    })

    it('is refused at checkout, placing no order, also on a guest cart', async () => {
      const before = await orderCount()
      expectRefused(await complete(cartId, dead))
      // On a guest cart the order would be placed as a guest's, cut off from the account.
      const guestCart = await readyCart(node.app, store)
      expectRefused(await complete(guestCart, dead))
      expect(await orderCount()).toBe(before)
      const cart = await db()
        .selectFrom('carts')
        .select(['status', 'customer_id'])
        .where('id', '=', cartId)
        .executeTakeFirstOrThrow()
      expect(cart).toEqual({ status: 'active', customer_id: shopper.id })
    })

    it('is refused on catalog reads, which would otherwise show prices without the customer group', async () => {
      expectRefused(await call('GET', `/store/products?region_id=${store.euRegion}`, undefined, dead))
      expectRefused(
        await call('GET', `/store/products/${store.product}?region_id=${store.euRegion}`, undefined, dead),
      )
      expectRefused(await call('GET', '/store/regions', undefined, dead))
    })

    it('still lets the client sign in again or refresh while it sends the stale token', async () => {
      const again = await call(
        'POST',
        '/store/auth/sign-in',
        { email: shopper.email, password: shopper.password },
        dead,
      )
      expect(again.statusCode, again.body).toBe(200)
      const refreshed = await call(
        'POST',
        '/store/auth/refresh',
        { refresh_token: again.json().refresh_token },
        dead,
      )
      expect(refreshed.statusCode, refreshed.body).toBe(200)
      const fresh = bearer(refreshed.json().access_token)
      // The cart was never lost: the new session's token reaches it.
      const own = await call('GET', `/store/carts/${cartId}`, undefined, fresh)
      expect(own.statusCode, own.body).toBe(200)
      expect(own.json().customer_id).toBe(shopper.id)
    })
  })

  it('refuses any Authorization header that names no credential, whatever its scheme', async () => {
    const guestCart = await readyCart(node.app, store)
    for (const authorization of ['Bearer nope', 'Bearer ', 'Basic dXNlcjpwYXNz', 'Bearer null']) {
      expectRefused(await call('GET', `/store/carts/${guestCart}`, undefined, { authorization }))
    }
    // The scheme name is case-insensitive: a valid token under `bearer` is the customer's.
    const shopper = await customer()
    const created = await call(
      'POST',
      '/store/carts',
      { region_id: store.euRegion },
      { authorization: `bearer ${shopper.tokens.access_token}` },
    )
    expect(created.statusCode, created.body).toBe(201)
    expect(created.json().customer_id).toBe(shopper.id)
  })

  it('serves a request without an Authorization header as a guest, as before', async () => {
    const created = await call('POST', '/store/carts', {
      region_id: store.euRegion,
      email: 'guest@example.com',
      lines: [{ variant_id: store.shirt, quantity: 1 }],
    })
    expect(created.statusCode, created.body).toBe(201)
    expect(created.json().customer_id).toBeNull()
    const read = await call('GET', `/store/carts/${created.json().id}`)
    expect(read.statusCode, read.body).toBe(200)
    const products = await call('GET', `/store/products?region_id=${store.euRegion}`)
    expect(products.statusCode, products.body).toBe(200)
    const placed = await complete(await readyCart(node.app, store))
    expect(placed.statusCode, placed.body).toBe(201)
    expect(placed.json().order.customer_id).toBeNull()
  })

  it('serves a valid staff credential on store routes as before: as a guest, not refused', async () => {
    const guestCart = await readyCart(node.app, store)
    const read = await call('GET', `/store/carts/${guestCart}`, undefined, adminAuth)
    expect(read.statusCode, read.body).toBe(200)
    const products = await call('GET', `/store/products?region_id=${store.euRegion}`, undefined, adminAuth)
    expect(products.statusCode, products.body).toBe(200)
  })

  it('never replays a kept public answer to a request with a dead token (edge cache, over HTTP)', async () => {
    const base = await node.app.listen({ host: '127.0.0.1', port: 0 })
    const url = `${base}/store/products?region_id=${store.euRegion}&limit=3`
    const anonymous = await fetch(url)
    expect(anonymous.status).toBe(200)
    await anonymous.text()
    const again = await fetch(url)
    expect(again.status).toBe(200)
    await again.text()
    const shopper = await customer()
    const dead = await fetch(url, { headers: bearer(await expired(shopper.tokens.access_token)) })
    expect(dead.status).toBe(401)
    expect(dead.headers.get('www-authenticate')).toBe('Bearer')
    expect(((await dead.json()) as { code: string }).code).toBe('unauthenticated')
  })
})
