/**
 * Orders paid manually (bank transfer, cash on delivery) hold their stock unpaid: the expiry job
 * cancels those still unpaid after MANUAL_PAYMENT_TTL_HOURS (stock released, payment canceled,
 * `order.canceled` with its reason, the move recorded with the job as its actor), leaves alone
 * those paid or moved on, and loses to a payment confirmed meanwhile: on PostgreSQL, a capture
 * under way is passed over, and captures racing the job never leave money on a canceled order.
 * Manual checkouts are limited per IP and account (MANUAL_PAYMENT_ORDER_LIMIT), counted before
 * anything is held.
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { findReservation } from '../src/modules/inventory/reservations.ts'
import { commerceDeps } from '../src/modules/orders/deps.ts'
import { expireUnpaidOrders } from '../src/modules/orders/jobs.ts'
import { pauseAt } from '../src/platform/failpoints.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { berlin, createTestStore, type TestStore } from './support/commerce.ts'
import { DATABASE_KINDS, describePostgres } from './support/database.ts'
import { waitForLockWaits } from './support/locks.ts'

const TTL_HOURS = 72
const LIMIT = 3

interface Fixture {
  node: TestNode
  store: TestStore
}

let ipCounter = 0
/** A fresh client address, so that the per-IP limit of one test does not meet another's. */
const newIp = () => `198.51.${Math.floor(++ipCounter / 250)}.${(ipCounter % 250) + 1}`

/** A cart of `quantity` of the variant for `email`, with the address and option checkout needs. */
async function cartOf(f: Fixture, variantId: string, quantity: number, email: string): Promise<string> {
  const created = await f.node.app.inject({
    method: 'POST',
    url: '/store/carts',
    payload: { region_id: f.store.euRegion, email, lines: [{ variant_id: variantId, quantity }] },
  })
  expect(created.statusCode, created.body).toBe(201)
  const id = created.json().id as string
  const patched = await f.node.app.inject({
    method: 'PATCH',
    url: `/store/carts/${id}`,
    payload: { shipping_address: berlin, shipping_option_id: f.store.euShipping },
  })
  expect(patched.statusCode, patched.body).toBe(200)
  return id
}

function complete(f: Fixture, cartId: string, payment: object, ip = newIp()) {
  return f.node.app.inject({
    method: 'POST',
    url: `/store/carts/${cartId}/complete`,
    headers: { 'idempotency-key': randomUUID() },
    payload: { payment },
    remoteAddress: ip,
  })
}

const transfer = { provider: 'manual', payment_method: 'bank_transfer' }
const visa = { provider: 'test', payment_method: 'pm_card_visa' }

/** A pending order paid by bank transfer, placed `hoursAgo` hours ago; its id and reservation. */
async function unpaidOrder(f: Fixture, variantId: string, quantity = 1, hoursAgo = TTL_HOURS + 1) {
  const cartId = await cartOf(f, variantId, quantity, `transfer-${randomUUID()}@example.com`)
  const res = await complete(f, cartId, transfer)
  expect(res.statusCode, res.body).toBe(201)
  const order = res.json().order
  expect(order).toMatchObject({ status: 'pending', payment_status: 'awaiting_transfer' })
  await f.node.runtime.database.db
    .updateTable('orders')
    .set({ placed_at: new Date(Date.now() - hoursAgo * 3_600_000) })
    .where('id', '=', order.id)
    .execute()
  return order as { id: string; payment_id: string; reservation_id: string }
}

function capture(f: Fixture, orderId: string) {
  return f.node.app.inject({ method: 'POST', url: `/admin/orders/${orderId}/capture`, headers: adminAuth })
}

async function stateOf(f: Fixture, order: { id: string; payment_id: string; reservation_id: string }) {
  const db = f.node.runtime.database.db
  const row = await db
    .selectFrom('orders')
    .select(['status', 'payment_status'])
    .where('id', '=', order.id)
    .executeTakeFirstOrThrow()
  const payment = await db
    .selectFrom('payments')
    .select(['status', 'captured_amount', 'refunded_amount'])
    .where('id', '=', order.payment_id)
    .executeTakeFirstOrThrow()
  const refunds = await db
    .selectFrom('payment_refunds')
    .select('id')
    .where('payment_id', '=', order.payment_id)
    .execute()
  const reservation = await findReservation(db, order.reservation_id)
  return {
    order: row.status,
    orderPayment: row.payment_status,
    payment: payment.status,
    captured: Number(payment.captured_amount),
    refunds: refunds.length,
    reservation: reservation?.status,
  }
}

/** Holds whatever reaches the pause point `name` until `release`; `reached` once it is there. */
function holdAt(name: string) {
  const { promise: reached, resolve: reach } = Promise.withResolvers<void>()
  const { promise: released, resolve: release } = Promise.withResolvers<void>()
  const unpause = pauseAt(name, async () => {
    reach()
    await released
  })
  return { reached, release: () => release(), unpause }
}

describe.each(DATABASE_KINDS)('%s: unpaid manual-payment orders', (kind) => {
  const f = {} as Fixture
  const db = () => f.node.runtime.database.db
  const expire = () => expireUnpaidOrders(commerceDeps(f.node.runtime))

  beforeAll(async () => {
    f.node = await startTestNode(kind, {
      env: { MANUAL_PAYMENT_TTL_HOURS: String(TTL_HOURS), MANUAL_PAYMENT_ORDER_LIMIT: String(LIMIT) },
    })
    f.store = await createTestStore(f.node.app)
  })
  afterAll(() => f.node?.close())

  it('cancels an order unpaid past MANUAL_PAYMENT_TTL_HOURS, putting its stock back on sale', async () => {
    const { shirt: variant } = await createTestStore(f.node.app, { reuse: f.store, stock: 5 })
    const order = await unpaidOrder(f, variant, 5)
    // Every unit is held: a shopper paying by card cannot have one.
    const shopper = await cartOf(f, variant, 1, `shopper-${randomUUID()}@example.com`)
    const refused = await complete(f, shopper, visa)
    expect(refused.statusCode, refused.body).toBe(409)
    expect(refused.json().code).toBe('insufficient_stock')

    expect(await expire()).toEqual({ canceled: 1, kept: 0, failed: 0 })
    expect(await stateOf(f, order)).toEqual({
      order: 'canceled',
      orderPayment: 'canceled',
      payment: 'canceled',
      captured: 0,
      refunds: 0,
      reservation: 'released',
    })
    const detail = (await f.node.app.inject({ url: `/admin/orders/${order.id}`, headers: adminAuth })).json()
    expect(detail.transitions.at(-1)).toMatchObject({
      from: 'pending',
      to: 'canceled',
      actor: 'system:payment-expiry',
      reason: `payment not received within ${TTL_HOURS} hours`,
    })
    const events = await db()
      .selectFrom('events')
      .select(['type', 'payload'])
      .where('subject_id', 'in', [order.id, order.payment_id])
      .where('type', 'in', ['order.canceled', 'payment.canceled'])
      .execute()
    expect(events.map((e) => e.type).sort()).toEqual(['order.canceled', 'payment.canceled'])
    expect(events.find((e) => e.type === 'order.canceled')!.payload).toMatchObject({
      order_id: order.id,
      reason: `payment not received within ${TTL_HOURS} hours`,
    })
    // The stock is on sale again.
    const paid = await complete(f, shopper, visa)
    expect(paid.statusCode, paid.body).toBe(201)
    // A second pass finds nothing left to do.
    expect(await expire()).toEqual({ canceled: 0, kept: 0, failed: 0 })
  })

  it('leaves young, paid and moved-on orders alone', async () => {
    const young = await unpaidOrder(f, f.store.shirt, 1, TTL_HOURS - 1)
    const paid = await unpaidOrder(f, f.store.shirt)
    expect((await capture(f, paid.id)).statusCode).toBe(200)
    // Cash on delivery that staff accepted: it ships before the money comes.
    const accepted = await unpaidOrder(f, f.store.shirt)
    const moved = await f.node.app.inject({
      method: 'POST',
      url: `/admin/orders/${accepted.id}/transitions`,
      headers: adminAuth,
      payload: { to: 'processing' },
    })
    expect(moved.statusCode, moved.body).toBe(200)
    expect(await expire()).toEqual({ canceled: 0, kept: 0, failed: 0 })
    expect((await stateOf(f, young)).order).toBe('pending')
    expect(await stateOf(f, paid)).toMatchObject({
      order: 'paid',
      payment: 'captured',
      reservation: 'active',
    })
    expect(await stateOf(f, accepted)).toMatchObject({
      order: 'processing',
      payment: 'awaiting_transfer',
      reservation: 'active',
    })
  })

  it('refuses to confirm the payment of an expired order, recording nothing', async () => {
    const order = await unpaidOrder(f, f.store.shirt)
    expect((await expire()).canceled).toBe(1)
    const late = await capture(f, order.id)
    expect(late.statusCode, late.body).toBe(409)
    expect(late.json().code).toBe('invalid_order_transition')
    expect(await stateOf(f, order)).toMatchObject({
      order: 'canceled',
      payment: 'canceled',
      captured: 0,
      refunds: 0,
    })
  })

  it('limits manual checkouts per IP and per account, counting only those that hold stock', async () => {
    const ip = newIp()
    const email = `many-${randomUUID()}@example.com`
    const cart = () => cartOf(f, f.store.shirt, 1, email)
    // A checkout that holds nothing (not enough stock) gives its count back.
    const short = await cartOf(f, f.store.shirt, 1000, email)
    expect((await complete(f, short, transfer, ip)).statusCode).toBe(409)
    for (let i = 0; i < LIMIT; i++) {
      const res = await complete(f, await cart(), transfer, ip)
      expect(res.statusCode, res.body).toBe(201)
    }
    const over = await cart()
    const reservationsBefore = await db().selectFrom('inventory_reservations').select('id').execute()
    const refused = await complete(f, over, transfer, ip)
    expect(refused.statusCode, refused.body).toBe(429)
    expect(refused.json().code).toBe('rate_limited')
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
    // Refused before anything was held.
    expect(await db().selectFrom('inventory_reservations').select('id').execute()).toHaveLength(
      reservationsBefore.length,
    )
    expect((await f.node.app.inject({ url: `/store/carts/${over}` })).json().status).toBe('active')
    // The same account from elsewhere is refused too; the same IP may still pay by card.
    expect((await complete(f, over, transfer, newIp())).statusCode).toBe(429)
    expect((await complete(f, over, visa, ip)).statusCode).toBe(201)
    // Another shopper behind another address is not concerned.
    const other = await cartOf(f, f.store.shirt, 1, `other-${randomUUID()}@example.com`)
    expect((await complete(f, other, transfer)).statusCode).toBe(201)
  })
})

describePostgres('postgres: the expiry of unpaid orders racing their capture', () => {
  const f = {} as Fixture
  const expire = () => expireUnpaidOrders(commerceDeps(f.node.runtime))

  beforeAll(async () => {
    f.node = await startTestNode('postgres', {
      env: { MANUAL_PAYMENT_TTL_HOURS: String(TTL_HOURS), MANUAL_PAYMENT_ORDER_LIMIT: '1000' },
    })
    f.store = await createTestStore(f.node.app, { stock: 1000 })
  })
  afterAll(() => f.node?.close())

  it('passes over an order whose capture is under way, which then marks it paid', async () => {
    const order = await unpaidOrder(f, f.store.shirt)
    // The capture has updated the payment's row and holds it, the order not yet marked.
    const { reached, release, unpause } = holdAt('orders.capture_recording')
    try {
      const confirming = capture(f, order.id)
      await reached
      expect(await expire()).toEqual({ canceled: 0, kept: 1, failed: 0 })
      release()
      const res = await confirming
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json()).toMatchObject({ status: 'paid', payment_status: 'captured' })
    } finally {
      release()
      unpause()
    }
    expect(await stateOf(f, order)).toMatchObject({
      order: 'paid',
      payment: 'captured',
      refunds: 0,
      reservation: 'active',
    })
    expect(await expire()).toEqual({ canceled: 0, kept: 0, failed: 0 })
  })

  it('refuses a capture that reaches the payment once the job has decided, recording nothing', async () => {
    const order = await unpaidOrder(f, f.store.shirt)
    // The job has locked the order and its payment, still awaiting the money, and goes on to cancel.
    const { reached, release, unpause } = holdAt('orders.unpaid_cancel_decided')
    try {
      const expiring = expire()
      await reached
      const confirming = capture(f, order.id)
      await waitForLockWaits(f.node.runtime.database.db, 1, { statement: 'update "payments"' })
      release()
      expect(await expiring).toEqual({ canceled: 1, kept: 0, failed: 0 })
      const res = await confirming
      expect(res.statusCode, res.body).toBe(409)
      expect(res.json().code).toBe('invalid_order_transition')
    } finally {
      release()
      unpause()
    }
    expect(await stateOf(f, order)).toEqual({
      order: 'canceled',
      orderPayment: 'canceled',
      payment: 'canceled',
      captured: 0,
      refunds: 0,
      reservation: 'released',
    })
  })

  it('never leaves a confirmed payment on a canceled order when captures race the job', async () => {
    const orders = []
    for (let i = 0; i < 20; i++) orders.push(await unpaidOrder(f, f.store.shirt))
    // The job works through the orders oldest first while staff confirm them one after another:
    // captures land before the job reaches their order, while it decides, and after. Each outcome
    // is checked for what it is, whichever it is.
    const [report, ...answers] = await Promise.all([
      expire(),
      ...orders.map((order, i) => sleep(i * 50).then(() => capture(f, order.id))),
    ])
    expect(report.failed).toBe(0)
    for (const [i, order] of orders.entries()) {
      const state = await stateOf(f, order)
      const answer = answers[i]!
      if (answer.statusCode === 200) {
        // The capture won: the order is paid and keeps its stock.
        expect(state, answer.body).toEqual({
          order: 'paid',
          orderPayment: 'captured',
          payment: 'captured',
          captured: expect.any(Number),
          refunds: 0,
          reservation: 'active',
        })
        expect(state.captured).toBeGreaterThan(0)
      } else {
        // The job decided first: the capture recorded nothing.
        expect(answer.statusCode, answer.body).toBe(409)
        expect(answer.json().code).toBe('invalid_order_transition')
        expect(state).toEqual({
          order: 'canceled',
          orderPayment: 'canceled',
          payment: 'canceled',
          captured: 0,
          refunds: 0,
          reservation: 'released',
        })
      }
    }
  })
})
