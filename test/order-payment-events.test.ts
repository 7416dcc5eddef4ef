/**
 * Orders follow their payments' events from the processor: a capture made there marks a pending
 * order paid, and a refund made there (Stripe's dashboard) shows on the order, once however often
 * the event is delivered; a refund that fails there gives the order its money and status back.
 */
import { randomUUID } from 'node:crypto'
import { type Kysely, sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { countSale } from '../src/modules/catalog/sales.ts'
import { commerceDeps } from '../src/modules/orders/deps.ts'
import * as processorRefundsBooked from '../src/modules/orders/migrations/0005-processor-refunds-booked.ts'
import { PaymentProviderUnavailable } from '../src/modules/payments/provider.ts'
import { applyWebhook, paymentDeps } from '../src/modules/payments/service.ts'
import { problem } from '../src/platform/http/errors.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { completeCheckout, createTestStore, readyCart, type TestStore } from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'
import { eventually } from './support/eventually.ts'

describe.each(DATABASE_KINDS)('%s: orders follow payment events', (kind) => {
  let node: TestNode

  type Gate = {
    entered: PromiseWithResolvers<void>
    release: PromiseWithResolvers<void>
    orderId: string | undefined
  }
  const gates = new Map<string, Gate>()
  /**
   * Holds the next delivery of an event of `type` (of order `orderId`, when given) before the orders
   * module sees it.
   */
  const holdNext = (
    type: 'payment.captured' | 'refund.failed' | 'refund.created',
    orderId?: string,
  ): Gate => {
    const gate = { entered: Promise.withResolvers<void>(), release: Promise.withResolvers<void>(), orderId }
    gates.set(type, gate)
    return gate
  }
  const holdNextCapture = () => holdNext('payment.captured')

  beforeAll(async () => {
    // Captured later by staff, so the processor can capture first; workers deliver the events.
    node = await startTestNode(kind, {
      work: true,
      env: { PAYMENT_CAPTURE: 'manual' },
      beforeStart(runtime) {
        // Registered before the modules' listeners, so they run first in a delivery.
        for (const type of ['payment.captured', 'refund.failed', 'refund.created']) {
          runtime.outbox.on(type, `test.hold-${type}`, async (event) => {
            const gate = gates.get(type)
            if (!gate || (gate.orderId !== undefined && event.payload.order_id !== gate.orderId)) return
            gates.delete(type)
            gate.entered.resolve()
            await gate.release.promise
          })
        }
      },
    })
  })
  afterAll(() => node?.close())
  /** Staff actions on an order, each under a fresh Idempotency-Key. */
  const staff = (orderId: string, action: 'capture' | 'refunds', payload?: object) =>
    node.app.inject({
      method: 'POST',
      url: `/admin/orders/${orderId}/${action}`,
      headers: { ...adminAuth, 'idempotency-key': randomUUID() },
      ...(payload ? { payload } : {}),
    })
  const capture = (orderId: string) => staff(orderId, 'capture')
  /** A staff status move by hand. */
  const move = (orderId: string, to: string) =>
    node.app.inject({
      method: 'POST',
      url: `/admin/orders/${orderId}/transitions`,
      headers: adminAuth,
      payload: { to },
    })
  const refund = (orderId: string, payload: object) => staff(orderId, 'refunds', payload)
  let store: TestStore | undefined
  const storeOnce = async () => {
    store ??= await createTestStore(node.app)
    return store
  }

  const orderOf = (id: string) =>
    node.runtime.database.db
      .selectFrom('orders')
      .select(['status', 'payment_status', 'refunded_total'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow()

  /** The processor's reference and amount of a payment. */
  const paymentRow = (paymentId: string) =>
    node.runtime.database.db
      .selectFrom('payments')
      .select(['provider_ref', 'amount'])
      .where('id', '=', paymentId)
      .executeTakeFirstOrThrow()

  /** A checkout of `quantity` units: its order (pending, authorised) and its payment's row. */
  async function placedOrder(quantity: number) {
    const placed = await completeCheckout(node.app, await readyCart(node.app, await storeOnce(), quantity))
    expect(placed.statusCode, placed.body).toBe(201)
    const order = placed.json().order
    return { order, payment: await paymentRow(order.payment_id) }
  }

  /** The test processor's webhook that a payment became `status`, for `amount`. */
  const webhookOf =
    (payment: { provider_ref: string | null }) =>
    (type: string, status: 'captured' | 'refunded' | 'canceled', amount: number) =>
      applyWebhook(paymentDeps(node.runtime), 'test', {
        event_id: `evt_${randomUUID()}`,
        type,
        provider_ref: payment.provider_ref,
        status,
        amount,
      })

  /** The processor's webhook that a payment (all of it) became `status`. */
  async function processorSays(paymentId: string, type: string, status: 'refunded' | 'canceled') {
    const payment = await paymentRow(paymentId)
    await webhookOf(payment)(type, status, Number(payment.amount))
  }

  const reservationStatus = async (id: string) =>
    (
      await node.runtime.database.db
        .selectFrom('inventory_reservations')
        .select('status')
        .where('id', '=', id)
        .executeTakeFirstOrThrow()
    ).status

  /** The processor's news that a refund it accepted has failed, as its webhook brings it. */
  async function refundFailedEvent(refundId: string, paymentId: string, failureReason?: string) {
    const db = node.runtime.database.db
    const row = await db
      .selectFrom('payment_refunds')
      .select(['provider_ref', 'amount'])
      .where('id', '=', refundId)
      .executeTakeFirstOrThrow()
    const payment = await db
      .selectFrom('payments')
      .select(['provider_ref'])
      .where('id', '=', paymentId)
      .executeTakeFirstOrThrow()
    return {
      event_id: `evt_${randomUUID()}`,
      type: 'refund.failed',
      provider_ref: payment.provider_ref,
      refund: {
        provider_ref: row.provider_ref!,
        status: 'failed' as const,
        amount: Number(row.amount),
        ...(failureReason ? { failure_reason: failureReason } : {}),
      },
    }
  }

  /** A refund made in the processor's dashboard, as its webhook reports it: its id here. */
  async function dashboardRefund(payment: { provider_ref: string | null }, amount: number) {
    const providerRef = `re_dashboard_${randomUUID()}`
    await applyWebhook(paymentDeps(node.runtime), 'test', {
      event_id: `evt_${randomUUID()}`,
      type: 'refund.created',
      provider_ref: payment.provider_ref,
      refund: { provider_ref: providerRef, status: 'succeeded' as const, amount },
    })
    const row = await node.runtime.database.db
      .selectFrom('payment_refunds')
      .select('id')
      .where('provider_ref', '=', providerRef)
      .executeTakeFirstOrThrow()
    return row.id
  }

  /** Waits until every listener has had the payment's refund.created events. */
  const refundsFollowed = (paymentId: string) =>
    eventually(async () => {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from events where type = 'refund.created' and subject_id = ${paymentId}
          and published_at is null`.execute(node.runtime.database.db)
      return rows[0]?.n === 0 ? true : undefined
    })

  /** The order's refund events, in the order they were written. */
  const refundEvents = async (orderId: string) => {
    const rows = await node.runtime.database.db
      .selectFrom('events')
      .select(['type', 'payload'])
      .where('subject_id', '=', orderId)
      .where('type', 'in', ['order.partially_refunded', 'order.refunded'])
      .orderBy('sequence')
      .execute()
    return rows.map(({ type, payload }) => ({
      type,
      from: payload.from,
      to: payload.to,
      refund_id: payload.refund_id,
      amount: payload.amount as number,
      refunded_total: payload.refunded_total,
    }))
  }

  it('marks an order paid on a capture at the processor, and books a refund made there', async () => {
    const { order, payment } = await placedOrder(2)
    expect(order).toMatchObject({ status: 'pending', payment_status: 'authorized' })
    const deps = paymentDeps(node.runtime)
    const captured = {
      event_id: `evt_${randomUUID()}`,
      type: 'payment_intent.succeeded',
      provider_ref: payment.provider_ref,
      status: 'captured' as const,
      amount: Number(payment.amount),
    }
    await applyWebhook(deps, 'test', captured)
    await eventually(async () => ((await orderOf(order.id)).status === 'paid' ? true : undefined))
    expect(await orderOf(order.id)).toMatchObject({ status: 'paid', payment_status: 'captured' })

    const refund = {
      event_id: `evt_${randomUUID()}`,
      type: 'charge.refunded',
      provider_ref: payment.provider_ref,
      status: 'refunded' as const,
      amount: 1000,
    }
    await applyWebhook(deps, 'test', refund)
    // Delivered twice, as at-least-once delivery may: booked once.
    expect((await applyWebhook(deps, 'test', refund)).duplicate).toBe(true)
    await eventually(async () =>
      (await orderOf(order.id)).status === 'partially_refunded' ? true : undefined,
    )
    expect(await orderOf(order.id)).toMatchObject({
      refunded_total: 1000,
      payment_status: 'partially_refunded',
    })
  })

  it('moves an order refunded at the processor before its capture was followed, once the capture is', async () => {
    const { order, payment } = await placedOrder(2)
    expect(order.status).toBe('pending')
    const webhook = webhookOf(payment)
    const gate = holdNextCapture()
    await webhook('payment_intent.succeeded', 'captured', Number(payment.amount))
    await gate.entered.promise
    try {
      await webhook('charge.refunded', 'refunded', 1000)
      // The refund's event is followed first: counted, though a pending order has no refund status.
      await eventually(async () => ((await orderOf(order.id)).refunded_total === 1000 ? true : undefined))
      expect((await orderOf(order.id)).status).toBe('pending')
    } finally {
      gate.release.resolve()
    }
    await eventually(
      async () => ((await orderOf(order.id)).status === 'partially_refunded' ? true : undefined),
      15_000,
    )
    expect(await orderOf(order.id)).toMatchObject({
      refunded_total: 1000,
      payment_status: 'partially_refunded',
    })
    // The capture booked the refund as the refund's own listener would have: with its amount.
    expect(await refundEvents(order.id)).toEqual([
      {
        type: 'order.partially_refunded',
        from: 'paid',
        to: 'partially_refunded',
        refund_id: expect.stringMatching(/^re_/),
        amount: 1000,
        refunded_total: 1000,
      },
    ])
  })

  it('moves an order refunded at the processor before staff capture it on to its refund status', async () => {
    const { order, payment } = await placedOrder(2)
    const webhook = webhookOf(payment)
    const gate = holdNextCapture()
    await webhook('payment_intent.succeeded', 'captured', Number(payment.amount))
    await gate.entered.promise
    try {
      await webhook('charge.refunded', 'refunded', 1000)
      await eventually(async () => ((await orderOf(order.id)).refunded_total === 1000 ? true : undefined))
      // Staff capture the order before the capture's event reaches it.
      const captured = await capture(order.id)
      expect(captured.statusCode, captured.body).toBe(200)
      expect(captured.json()).toMatchObject({
        status: 'partially_refunded',
        payment_status: 'partially_refunded',
      })
    } finally {
      gate.release.resolve()
    }
    // The capture's event, followed last, leaves it so.
    await eventually(async () => {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from events where type = 'payment.captured' and subject_id = ${order.payment_id}
          and published_at is not null`.execute(node.runtime.database.db)
      return rows[0]?.n ? true : undefined
    })
    expect(await orderOf(order.id)).toMatchObject({
      status: 'partially_refunded',
      payment_status: 'partially_refunded',
      refunded_total: 1000,
    })
  })

  it('books each refund made at the processor with its own order event, as a staff refund is booked', async () => {
    const { order, payment } = await placedOrder(2)
    expect((await capture(order.id)).statusCode).toBeLessThan(300)
    const total = Number(payment.amount)
    const first = await dashboardRefund(payment, 1000)
    await refundsFollowed(order.payment_id)
    // The order stays partially refunded: the refund is an event all the same.
    const second = await dashboardRefund(payment, 2000)
    await refundsFollowed(order.payment_id)
    const byStaff = await refund(order.id, { amount: 500 })
    expect(byStaff.statusCode, byStaff.body).toBe(201)
    const rest = await dashboardRefund(payment, total - 3500)
    await refundsFollowed(order.payment_id)
    const partially = {
      type: 'order.partially_refunded',
      from: 'partially_refunded',
      to: 'partially_refunded',
    }
    expect(await refundEvents(order.id)).toEqual([
      { ...partially, from: 'paid', refund_id: first, amount: 1000, refunded_total: 1000 },
      { ...partially, refund_id: second, amount: 2000, refunded_total: 3000 },
      { ...partially, refund_id: byStaff.json().refund.id, amount: 500, refunded_total: 3500 },
      {
        type: 'order.refunded',
        from: 'partially_refunded',
        to: 'refunded',
        refund_id: rest,
        amount: total - 3500,
        refunded_total: total,
      },
    ])
    expect(await orderOf(order.id)).toMatchObject({ status: 'refunded', refunded_total: total })
  })

  it('gives each of concurrent refunds made at the processor its own order event', async () => {
    const { order, payment } = await placedOrder(2)
    expect((await capture(order.id)).statusCode).toBeLessThan(300)
    const ids = await Promise.all([700, 800, 900].map((amount) => dashboardRefund(payment, amount)))
    await refundsFollowed(order.payment_id)
    const events = await refundEvents(order.id)
    expect(events.map((e) => e.refund_id).sort()).toEqual([...ids].sort())
    // Each carries the order's refunded total as of its own refund.
    let running = 0
    for (const event of events) {
      running += event.amount
      expect(event).toMatchObject({ type: 'order.partially_refunded', refunded_total: running })
    }
    expect(running).toBe(2400)
    expect(await orderOf(order.id)).toMatchObject({ status: 'partially_refunded', refunded_total: 2400 })
  })

  it('books a refund made at the processor before a staff refund that overtook its event', async () => {
    const { order, payment } = await placedOrder(1)
    expect((await capture(order.id)).statusCode).toBeLessThan(300)
    const total = Number(payment.amount)
    const gate = holdNext('refund.created', order.id)
    const dashboard = await dashboardRefund(payment, 1000)
    await gate.entered.promise
    let rest: string
    try {
      // Staff refund the rest before the dashboard refund's listener runs: the order is refunded,
      // which is final, so the dashboard refund is booked first, with its own event.
      const res = await refund(order.id, { amount: total - 1000 })
      expect(res.statusCode, res.body).toBe(201)
      expect(res.json().order).toMatchObject({ status: 'refunded', totals: { refunded: total } })
      rest = res.json().refund.id
    } finally {
      gate.release.resolve()
    }
    await refundsFollowed(order.payment_id)
    expect(await refundEvents(order.id)).toEqual([
      {
        type: 'order.partially_refunded',
        from: 'paid',
        to: 'partially_refunded',
        refund_id: dashboard,
        amount: 1000,
        refunded_total: 1000,
      },
      {
        type: 'order.refunded',
        from: 'partially_refunded',
        to: 'refunded',
        refund_id: rest,
        amount: total - 1000,
        refunded_total: total,
      },
    ])
  })

  it('books no refund followed before the upgrade again, and leaves those not yet booked for the new code', async () => {
    const db = node.runtime.database.db
    const backfill = () => processorRefundsBooked.up(db as unknown as Kysely<unknown>)
    // Followed by the version before, which counted it on the order but wrote no order refund row.
    const followed = await placedOrder(2)
    expect((await capture(followed.order.id)).statusCode).toBeLessThan(300)
    await webhookOf(followed.payment)('charge.refunded', 'refunded', 1000)
    await refundsFollowed(followed.order.payment_id)
    const [before] = await refundEvents(followed.order.id)
    await db.deleteFrom('order_refunds').where('order_id', '=', followed.order.id).execute()
    // Refunded at the processor while its order was pending: counted, left for the capture to book.
    const pending = await placedOrder(2)
    const captureGate = holdNext('payment.captured', pending.order.id)
    await webhookOf(pending.payment)('payment_intent.succeeded', 'captured', Number(pending.payment.amount))
    // Refunded at the processor, its event not yet had by the orders listener.
    const unseen = await placedOrder(2)
    expect((await capture(unseen.order.id)).statusCode).toBeLessThan(300)
    const refundGate = holdNext('refund.created', unseen.order.id)
    let unseenRefund: string
    try {
      await captureGate.entered.promise
      await webhookOf(pending.payment)('charge.refunded', 'refunded', 1000)
      await eventually(async () =>
        (await orderOf(pending.order.id)).refunded_total === 1000 ? true : undefined,
      )
      unseenRefund = await dashboardRefund(unseen.payment, 700)
      await refundGate.entered.promise
      await backfill()
      // A second run adds nothing.
      await backfill()
    } finally {
      captureGate.release.resolve()
      refundGate.release.resolve()
    }
    // A staff refund after it books it no second time.
    const byStaff = await refund(followed.order.id, { amount: 500 })
    expect(byStaff.statusCode, byStaff.body).toBe(201)
    expect(
      (await refundEvents(followed.order.id)).map((e) => [e.refund_id, e.amount, e.refunded_total]),
    ).toEqual([
      [before!.refund_id, 1000, 1000],
      [byStaff.json().refund.id, 500, 1500],
    ])
    // The others are booked, with their events, as they would have been without the upgrade.
    await eventually(async () =>
      (await orderOf(pending.order.id)).status === 'partially_refunded' ? true : undefined,
    )
    expect((await refundEvents(pending.order.id)).map((e) => [e.from, e.amount, e.refunded_total])).toEqual([
      ['paid', 1000, 1000],
    ])
    await refundsFollowed(unseen.order.payment_id)
    expect((await refundEvents(unseen.order.id)).map((e) => [e.refund_id, e.amount])).toEqual([
      [unseenRefund, 700],
    ])
    expect(await orderOf(unseen.order.id)).toMatchObject({
      status: 'partially_refunded',
      refunded_total: 700,
    })
  })

  it('gives the stock of an unshipped order back when the processor refunds it in full', async () => {
    const placed = await completeCheckout(node.app, await readyCart(node.app, await storeOnce(), 2))
    const order = placed.json().order
    expect((await capture(order.id)).statusCode).toBe(200)
    expect(await reservationStatus(order.reservation_id)).toBe('active')
    // Refunded in full in the processor's dashboard, before it shipped.
    await processorSays(order.payment_id, 'charge.refunded', 'refunded')
    await eventually(async () => ((await orderOf(order.id)).status === 'refunded' ? true : undefined))
    // refunded is final: nothing later would release the units it held.
    expect(await reservationStatus(order.reservation_id)).toBe('released')
  })

  it('gives a refund back to the order when the processor fails it after accepting it', async () => {
    const db = node.runtime.database.db
    const store = await storeOnce()
    const cartId = await readyCart(node.app, store, 2)
    const placed = await completeCheckout(node.app, cartId)
    const order = placed.json().order
    const captured = await capture(order.id)
    expect(captured.statusCode, captured.body).toBeLessThan(300)
    const line = order.lines[0]
    const refunded = await refund(order.id, { lines: [{ line_id: line.id, quantity: 1 }] })
    expect(refunded.statusCode, refunded.body).toBe(201)
    const refundId = refunded.json().refund.id as string
    const failed = await refundFailedEvent(refundId, order.payment_id, 'expired_or_canceled_card')
    const deps = paymentDeps(node.runtime)
    await applyWebhook(deps, 'test', failed)
    // The same news in another event (Stripe sends refund.updated too): applied once.
    await applyWebhook(deps, 'test', { ...failed, event_id: `evt_${randomUUID()}`, type: 'refund.updated' })
    const after = await db
      .selectFrom('payments')
      .select(['status', 'refunded_amount'])
      .where('id', '=', order.payment_id)
      .executeTakeFirstOrThrow()
    expect(after).toEqual({ status: 'captured', refunded_amount: 0 })
    expect(
      (
        await db
          .selectFrom('payment_refunds')
          .select('status')
          .where('id', '=', refundId)
          .executeTakeFirstOrThrow()
      ).status,
    ).toBe('failed')
    await eventually(async () => (Number((await orderOf(order.id)).refunded_total) === 0 ? true : undefined))
    const lines = await db
      .selectFrom('order_lines')
      .select(['refunded_quantity', 'refunded_amount'])
      .where('id', '=', line.id)
      .executeTakeFirstOrThrow()
    expect(lines).toEqual({ refunded_quantity: 0, refunded_amount: 0 })
    const notes = await db.selectFrom('order_notes').select('body').where('order_id', '=', order.id).execute()
    expect(notes).toHaveLength(1)
    expect(notes[0]!.body).toContain('failed at the processor (expired_or_canceled_card)')
    // No refund is left: the order is paid again, as before the refund.
    expect((await orderOf(order.id)).status).toBe('paid')
    // The units can be refunded again.
    const again = await refund(order.id, { lines: [{ line_id: line.id, quantity: 1 }] })
    expect(again.statusCode, again.body).toBe(201)
  })

  it('keeps counting a failed refund, lines and total alike, until the order takes it back', async () => {
    const db = node.runtime.database.db
    const cartId = await readyCart(node.app, await storeOnce(), 2)
    const order = (await completeCheckout(node.app, cartId)).json().order
    await capture(order.id)
    const line = order.lines[0]
    const first = await refund(order.id, { lines: [{ line_id: line.id, quantity: 1 }] })
    expect(first.statusCode, first.body).toBe(201)
    const unit = first.json().refund.amount as number
    // Shipping goes on after a partial refund; a processing order can be captured again (a no-op).
    expect((await move(order.id, 'processing')).statusCode).toBe(200)
    const gate = holdNext('refund.failed')
    await applyWebhook(
      paymentDeps(node.runtime),
      'test',
      await refundFailedEvent(first.json().refund.id, order.payment_id),
    )
    await gate.entered.promise
    const counted = async () => ({
      total: Number((await orderOf(order.id)).refunded_total),
      lines: await db
        .selectFrom('order_lines')
        .select(['refunded_quantity', 'refunded_amount'])
        .where('id', '=', line.id)
        .executeTakeFirstOrThrow(),
    })
    try {
      // While the order has not taken the failed refund back, a capture staff repeat and a second
      // refund recount the order's refunds: neither may drop the failed one from the total alone.
      expect((await capture(order.id)).statusCode).toBeLessThan(300)
      expect(await counted()).toEqual({ total: unit, lines: { refunded_quantity: 1, refunded_amount: unit } })
      const second = await refund(order.id, { lines: [{ line_id: line.id, quantity: 1 }] })
      expect(second.statusCode, second.body).toBe(201)
      expect(await counted()).toEqual({
        total: 2 * unit,
        lines: { refunded_quantity: 2, refunded_amount: 2 * unit },
      })
    } finally {
      gate.release.resolve()
    }
    // Taken back: only the second refund is left, on the total and on the line.
    await eventually(async () =>
      (await db.selectFrom('order_notes').select('id').where('order_id', '=', order.id).executeTakeFirst())
        ? true
        : undefined,
    )
    expect(await counted()).toEqual({ total: unit, lines: { refunded_quantity: 1, refunded_amount: unit } })
    // The second refund moved it on to partially refunded, which the one left still is.
    expect((await orderOf(order.id)).status).toBe('partially_refunded')
  })

  it('puts a fully refunded order back to its status before refunds when its refund fails', async () => {
    const db = node.runtime.database.db
    const store = await storeOnce()
    const cartId = await readyCart(node.app, store, 1)
    const order = (await completeCheckout(node.app, cartId)).json().order
    await capture(order.id)
    const all = await refund(order.id, { amount: order.totals.total })
    expect(all.statusCode, all.body).toBe(201)
    expect((await orderOf(order.id)).status).toBe('refunded')
    // Staff cannot move a refunded order by hand.
    const byHand = await move(order.id, 'processing')
    expect(byHand.statusCode, byHand.body).toBe(409)
    expect(byHand.json().code).toBe('invalid_order_transition')
    await applyWebhook(
      paymentDeps(node.runtime),
      'test',
      await refundFailedEvent(all.json().refund.id, order.payment_id),
    )
    await eventually(async () => ((await orderOf(order.id)).status === 'paid' ? true : undefined))
    expect(await orderOf(order.id)).toMatchObject({ refunded_total: 0, payment_status: 'captured' })
    const history = await db
      .selectFrom('order_transitions')
      .select(['from_status', 'to_status', 'reason'])
      .where('order_id', '=', order.id)
      .orderBy('created_at')
      .orderBy('id')
      .execute()
    expect(history.slice(-2)).toEqual([
      { from_status: 'paid', to_status: 'refunded', reason: null },
      { from_status: 'refunded', to_status: 'paid', reason: 'a refund failed at the processor' },
    ])
    // Consumers can tell it from a new payment.
    const paidEvents = await db
      .selectFrom('events')
      .select('payload')
      .where('subject_id', '=', order.id)
      .where('type', '=', 'order.paid')
      .orderBy('occurred_at')
      .execute()
    expect(paidEvents.map((e) => e.payload.refunds_failed ?? false)).toEqual([false, true])
    // Its stock was released by the full refund: it cannot be shipped without it.
    const ship = await move(order.id, 'fulfilled')
    expect(ship.statusCode, ship.body).toBe(409)
    expect(ship.json().code).toBe('conflict')
    expect((await orderOf(order.id)).status).toBe('paid')
  })
  it('counts a dashboard refund once when it arrives while a staff refund is still pending', async () => {
    const db = node.runtime.database.db
    const store = await storeOnce()
    const order = (await completeCheckout(node.app, await readyCart(node.app, store, 2))).json().order
    expect((await capture(order.id)).statusCode).toBeLessThan(300)
    const gateway = commerceDeps(node.runtime).providers.get('test')!
    const original = gateway.refund.bind(gateway)
    gateway.refund = async () => {
      throw new PaymentProviderUnavailable('simulated outage')
    }
    // The staff refund reserves 1000 on the payment, then cannot reach the processor.
    const key = randomUUID()
    const staffRefund = () =>
      node.app.inject({
        method: 'POST',
        url: `/admin/orders/${order.id}/refunds`,
        headers: { ...adminAuth, 'idempotency-key': key },
        payload: { amount: 1000 },
      })
    try {
      const pending = await staffRefund()
      expect(pending.statusCode, pending.body).toBe(503)
    } finally {
      gateway.refund = original
    }
    // Meanwhile someone refunds 500 in the processor's dashboard.
    const payment = await db
      .selectFrom('payments')
      .select('provider_ref')
      .where('id', '=', order.payment_id)
      .executeTakeFirstOrThrow()
    await applyWebhook(paymentDeps(node.runtime), 'test', {
      event_id: `evt_${randomUUID()}`,
      type: 'refund.created',
      provider_ref: payment.provider_ref,
      refund: { provider_ref: `re_dashboard_${randomUUID()}`, status: 'succeeded' as const, amount: 500 },
    })
    await eventually(async () =>
      (await orderOf(order.id)).status === 'partially_refunded' ? true : undefined,
    )
    // Until the staff refund is booked, the order counts the dashboard's refund alone.
    expect(Number((await orderOf(order.id)).refunded_total)).toBe(500)
    const retried = await staffRefund()
    expect(retried.statusCode, retried.body).toBe(201)
    expect(retried.json().order.totals.refunded).toBe(1500)
    const after = await db
      .selectFrom('payments')
      .select('refunded_amount')
      .where('id', '=', order.payment_id)
      .executeTakeFirstOrThrow()
    expect(Number(after.refunded_amount)).toBe(1500)
    expect(Number((await orderOf(order.id)).refunded_total)).toBe(1500)
  })

  it('cancels a pending order whose authorisation was voided at the processor, giving its stock back', async () => {
    const shop = await storeOnce()
    const placed = await completeCheckout(node.app, await readyCart(node.app, shop, 1))
    expect(placed.statusCode, placed.body).toBe(201)
    const order = placed.json().order
    expect(order).toMatchObject({ status: 'pending', payment_status: 'authorized' })
    await processorSays(order.payment_id, 'payment_intent.canceled', 'canceled')
    await eventually(async () => ((await orderOf(order.id)).status === 'canceled' ? true : undefined))
    expect(await reservationStatus(order.reservation_id)).toBe('released')
  })

  /**
   * An order whose capture reached the processor but whose capturer died before recording it, then
   * canceled by staff (the processor refuses the void; nothing is captured here yet to refund).
   * Returns the order and its payment's reference and amount, for the capture's webhook.
   */
  const canceledAfterUnrecordedCapture = async () => {
    const { order, payment } = await placedOrder(1)
    await commerceDeps(node.runtime)
      .providers.get('test')!
      .capture({
        payment_id: order.payment_id,
        provider_ref: payment.provider_ref!,
        amount: Number(payment.amount),
        currency: 'EUR',
        idempotency_key: `${order.payment_id}:capture`,
      })
    const canceled = await node.app.inject({
      method: 'POST',
      url: `/admin/orders/${order.id}/cancel`,
      headers: adminAuth,
    })
    expect(canceled.statusCode, canceled.body).toBe(200)
    const reportCapture = () =>
      webhookOf(payment)('payment_intent.succeeded', 'captured', Number(payment.amount))
    return { order, amount: Number(payment.amount), reportCapture }
  }

  it('refunds a capture reported after its order was canceled, when whoever captured did not', async () => {
    const { order, amount, reportCapture } = await canceledAfterUnrecordedCapture()
    await reportCapture()
    await eventually(async () => ((await orderOf(order.id)).payment_status === 'refunded' ? true : undefined))
    expect(await orderOf(order.id)).toEqual({
      status: 'canceled',
      payment_status: 'refunded',
      refunded_total: amount,
    })
  })

  it('shows money held on a canceled order when the processor refuses the refund its late capture needs', async () => {
    const { order, reportCapture } = await canceledAfterUnrecordedCapture()
    const gateway = commerceDeps(node.runtime).providers.get('test')!
    const refund = gateway.refund.bind(gateway)
    gateway.refund = async () => {
      throw problem('conflict', 'Test gateway: the card account is closed')
    }
    try {
      await reportCapture()
      // The order says its money is held, and a note says what to do.
      await eventually(async () =>
        (await orderOf(order.id)).payment_status === 'captured' ? true : undefined,
      )
      expect(await orderOf(order.id)).toEqual({
        status: 'canceled',
        payment_status: 'captured',
        refunded_total: 0,
      })
      const notes = await node.runtime.database.db
        .selectFrom('order_notes')
        .select('body')
        .where('order_id', '=', order.id)
        .execute()
      expect(notes.map((n) => n.body)).toEqual([expect.stringContaining(`/admin/orders/${order.id}/refunds`)])
    } finally {
      gateway.refund = refund
    }
  })

  it("counts each placed order once in its product's best-selling order", async () => {
    const { app } = node
    const shop = await storeOnce()
    const sold = async () =>
      (
        await node.runtime.database.db
          .selectFrom('products')
          .select('sales_count')
          .where('id', '=', shop.product)
          .executeTakeFirstOrThrow()
      ).sales_count
    // Other tests here place and cancel orders of the same product, whose events may still be on
    // their way: the count must come to the units of its orders that stand, this one's included.
    const standing = async () =>
      Number(
        (
          await node.runtime.database.db
            .selectFrom('order_lines as l')
            .innerJoin('orders as o', 'o.id', 'l.order_id')
            .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('l.quantity'), eb.lit(0)).as('units'))
            .where('l.product_id', '=', shop.product)
            .where('o.status', '<>', 'canceled')
            .executeTakeFirstOrThrow()
        ).units,
      )
    const placed = await completeCheckout(app, await readyCart(app, shop, 3))
    expect(placed.statusCode, placed.body).toBe(201)
    await eventually(async () => {
      const [count, units] = [await sold(), await standing()]
      return count === units ? count : undefined
    })
    const before = (await sold()) - 3
    // The event delivered again (at least once) adds nothing.
    const orderId = placed.json().order.id as string
    expect(
      await countSale(node.runtime.database.db, orderId, [{ variant_id: shop.shirt, quantity: 3 }]),
    ).toBe(false)
    expect(await sold()).toBe(before + 3)
    const best = (await app.inject({ url: '/store/products?sort=best_selling&limit=1' })).json().data[0]
    expect(best.id).toBe(shop.product)
  })
})
