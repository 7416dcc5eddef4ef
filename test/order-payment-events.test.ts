/**
 * Orders follow their payments' events from the processor: a capture made there marks a pending
 * order paid, and a refund made there (Stripe's dashboard) shows on the order, once however often
 * the event is delivered.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { applyWebhook, paymentDeps } from '../src/modules/payments/service.ts'
import { startTestNode, type TestNode } from './support/app.ts'
import { createTestStore, readyCart } from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'
import { eventually } from './support/eventually.ts'

describe.each(DATABASE_KINDS)('%s: orders follow payment events', (kind) => {
  let node: TestNode

  beforeAll(async () => {
    // Captured later by staff, so the processor can capture first; workers deliver the events.
    node = await startTestNode(kind, { work: true, env: { PAYMENT_CAPTURE: 'manual' } })
  })
  afterAll(() => node?.close())

  const orderOf = (id: string) =>
    node.runtime.database.db
      .selectFrom('orders')
      .select(['status', 'payment_status', 'refunded_total'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow()

  it('marks an order paid on a capture at the processor, and books a refund made there', async () => {
    const store = await createTestStore(node.app)
    const cartId = await readyCart(node.app, store, 2)
    const placed = await node.app.inject({
      method: 'POST',
      url: `/store/carts/${cartId}/complete`,
      headers: { 'idempotency-key': randomUUID() },
      payload: { payment: { provider: 'test', payment_method: 'pm_card_visa' } },
    })
    expect(placed.statusCode, placed.body).toBe(201)
    const order = placed.json().order
    expect(order).toMatchObject({ status: 'pending', payment_status: 'authorized' })
    const payment = await node.runtime.database.db
      .selectFrom('payments')
      .select(['provider_ref', 'amount'])
      .where('id', '=', order.payment_id)
      .executeTakeFirstOrThrow()
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
})
