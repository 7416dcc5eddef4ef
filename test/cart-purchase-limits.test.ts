/**
 * Per-customer purchase limits count one shopper however they buy: signed in, or as a guest under
 * their account's email, so neither way buys the limit again after the other, not even by two
 * checkouts at once. How many are left is told to a signed-in customer about their own purchases,
 * never to a guest, who could type anyone's email.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { currentLines, lockCustomerLimits } from '../src/modules/carts/carts.ts'
import { loadCart } from '../src/modules/carts/load.ts'
import { type Tx, withTransaction } from '../src/platform/db/transaction.ts'
import type { ProblemError } from '../src/platform/http/errors.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { berlin, createTestStore, type TestStore } from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'
import { holdOpen, waitForLockWaits } from './support/locks.ts'
import { createTestCustomer } from './support/orders.ts'

describe.each(DATABASE_KINDS)('%s: per-customer purchase limits', (kind) => {
  let node: TestNode
  let store: TestStore
  const db = () => node.runtime.database.db

  beforeAll(async () => {
    node = await startTestNode(kind)
    store = await createTestStore(node.app)
  })
  afterAll(() => node?.close())

  const call = (method: string, url: string, payload?: object, headers: Record<string, string> = {}) =>
    node.app.inject({ method: method as 'POST', url, headers, ...(payload ? { payload } : {}) })

  /** A new shirt that one customer may buy `max` of; its variant id and SKU. */
  async function limitedTo(max: number) {
    const own = await createTestStore(node.app, { stock: 50, reuse: store })
    const limit = { max_per_line: null, max_per_customer: max }
    const res = await call('PUT', `/admin/purchase-limits/${own.shirt}`, limit, adminAuth)
    expect(res.statusCode, res.body).toBe(200)
    const cart = await call('POST', '/store/carts', { region_id: store.euRegion })
    const added = await call('POST', `/store/carts/${cart.json().id}/lines`, {
      variant_id: own.shirt,
      quantity: 1,
    })
    return { variant: own.shirt, sku: added.json().lines[0].sku as string }
  }

  /** A signed-up customer, their account's email and their token's headers. */
  async function customer() {
    const { id, headers } = await createTestCustomer(node)
    const me = await call('GET', '/store/me', undefined, headers)
    return { id, headers, email: me.json().email as string }
  }

  /** Creates a cart (the customer's, with `headers`) of `quantity` of the variant, under `email`. */
  function cartOf(variant: string, quantity: number, email: string, headers: Record<string, string> = {}) {
    const body = { region_id: store.euRegion, email, lines: [{ variant_id: variant, quantity }] }
    return call('POST', '/store/carts', body, headers)
  }

  /** A cart ready to check out; its id. */
  async function readyCart(variant: string, quantity: number, email: string, headers = {}) {
    const created = await cartOf(variant, quantity, email, headers)
    expect(created.statusCode, created.body).toBe(201)
    const id = created.json().id as string
    const ready = await call(
      'PATCH',
      `/store/carts/${id}`,
      { shipping_address: berlin, shipping_option_id: store.euShipping },
      headers,
    )
    expect(ready.statusCode, ready.body).toBe(200)
    return id
  }

  async function buy(variant: string, quantity: number, email: string, headers: Record<string, string> = {}) {
    const cartId = await readyCart(variant, quantity, email, headers)
    const placed = await call(
      'POST',
      `/store/carts/${cartId}/complete`,
      { payment: { provider: 'test', payment_method: 'pm_card_visa' } },
      { ...headers, 'idempotency-key': randomUUID() },
    )
    expect(placed.statusCode, placed.body).toBe(201)
  }

  function expectRefused(res: Awaited<ReturnType<typeof call>>) {
    expect(res.statusCode, res.body).toBe(422)
    expect(res.json().code).toBe('purchase_limit_exceeded')
  }

  it('counts what a guest bought under the account email against the customer signed in', async () => {
    const { variant } = await limitedTo(3)
    const shopper = await customer()
    await buy(variant, 3, shopper.email)
    expectRefused(await cartOf(variant, 1, shopper.email, shopper.headers))
    // Nor does another email on the customer's cart leave the account's purchases behind.
    expectRefused(await cartOf(variant, 1, `gift-${shopper.email}`, shopper.headers))
  })

  it('counts what a customer bought signed in against a guest under the account email', async () => {
    const { variant } = await limitedTo(3)
    const shopper = await customer()
    const gift = `gift-${shopper.email}`
    // Bought signed in, but sent under another email.
    await buy(variant, 2, gift, shopper.headers)
    expectRefused(await cartOf(variant, 2, shopper.email))
    expectRefused(await cartOf(variant, 2, gift))
    const within = await cartOf(variant, 1, shopper.email)
    expect(within.statusCode, within.body).toBe(201)
  })

  it('tells how many are left only to the signed-in customer whose purchases they are', async () => {
    const { variant, sku } = await limitedTo(5)
    const shopper = await customer()
    await buy(variant, 1, shopper.email, shopper.headers)

    // Anyone may type the customer's email on a guest cart: they learn of no count.
    const guest = await cartOf(variant, 5, shopper.email)
    expectRefused(guest)
    const withheld = `${sku} is limited to 5 per customer, counting earlier purchases`
    expect(guest.json()).toMatchObject({ detail: withheld, errors: [{ message: withheld }] })
    // Nor on the customer's cart under another email, whose purchases may be someone else's.
    const elsewhere = await cartOf(variant, 5, `gift-${shopper.email}`, shopper.headers)
    expectRefused(elsewhere)
    expect(elsewhere.json().detail).toBe(withheld)

    const own = await cartOf(variant, 5, shopper.email, shopper.headers)
    expectRefused(own)
    expect(own.json().detail).toBe(`${sku} is limited to 5 per customer; 4 left`)
  })

  // Staged on PostgreSQL (PGlite runs one transaction at a time): the first checkout's
  // transaction is held open once it has taken its locks and moved its cart on.
  it.runIf(kind === 'postgres')(
    "makes a guest's checkout under the account email and the customer's wait for each other",
    async () => {
      const { variant } = await limitedTo(1)
      const shopper = await customer()
      const guestCart = await readyCart(variant, 1, shopper.email)
      const customerCart = await readyCart(variant, 1, `gift-${shopper.email}`, shopper.headers)
      // Each passes the unlocked check alone, as checkout's first step does before the transaction.
      const staged = async (cartId: string) => {
        const loaded = (await loadCart(db(), cartId))!
        return { cartId, loaded, lines: currentLines(loaded).lines }
      }
      const guest = await staged(guestCart)
      const signedIn = await staged(customerCart)
      const move = async (trx: Tx, s: typeof guest) => {
        await lockCustomerLimits(trx, s.loaded, s.lines)
        await trx
          .updateTable('carts')
          .set({ status: 'completing' })
          .where('id', '=', s.cartId)
          .where('status', '=', 'active')
          .execute()
      }
      try {
        const first = await holdOpen(db(), (trx) => move(trx, guest))
        let outcome: Promise<string>
        try {
          outcome = withTransaction(db(), (trx) => move(trx, signedIn)).then(
            () => 'moved',
            (error: ProblemError) => error.code,
          )
          await waitForLockWaits(db())
        } finally {
          await first.release()
        }
        expect(await outcome).toBe('purchase_limit_exceeded')
      } finally {
        // Not real checkouts: out of the recovery job's way.
        await db()
          .updateTable('carts')
          .set({ status: 'expired' })
          .where('id', 'in', [guestCart, customerCart])
          .execute()
      }
    },
  )
})
