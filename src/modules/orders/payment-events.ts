/**
 * Orders follow what happens to their payment at the processor. A capture made there (Stripe's
 * dashboard, a webhook that arrived before our own capture was recorded) marks a pending order
 * paid; a refund made there raises the order's refunded total and moves its status; a refund that
 * failed there after it was accepted gives its units and amount back. Listeners run
 * from the outbox at least once, so each sets absolute values rather than adding to them.
 */
import { sql } from 'kysely'
import { withTransaction } from '../../platform/db/transaction.ts'
import type { DomainEvent } from '../../platform/events/nats-publisher.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { addOrderNote } from './notes.ts'
import { canTransition, recordOrderCaptured, transitionOrder } from './state.ts'

const ACTOR = 'system:payment-events'

/** Subscribes the orders module to payment events (call once per runtime, before jobs start). */
export function followPaymentEvents(runtime: Runtime): void {
  const { db } = runtime.database
  const { outbox } = runtime

  runtime.outbox.on('payment.captured', async (event: DomainEvent) => {
    const orderId = event.payload.order_id
    if (typeof orderId !== 'string') return
    await withTransaction(db, (trx) =>
      recordOrderCaptured(trx, outbox, {
        orderId,
        actor: ACTOR,
        reason: 'payment captured at the processor',
        paymentStatus: 'captured',
      }),
    )
  })

  runtime.outbox.on('refund.created', async (event: DomainEvent) => {
    const orderId = event.payload.order_id
    // Refunds staff made through the order are booked on it already (refunds.ts).
    if (typeof orderId !== 'string' || !String(event.payload.actor ?? '').startsWith('webhook:')) return
    await withTransaction(db, async (trx) => {
      const order = await trx
        .selectFrom('orders')
        .innerJoin('payments', 'payments.id', 'orders.payment_id')
        .select([
          'orders.status',
          'orders.total',
          'payments.refunded_amount',
          'payments.status as payment_status',
        ])
        .where('orders.id', '=', orderId)
        .forUpdate('orders')
        .executeTakeFirst()
      if (!order) return
      const refunded = Number(order.refunded_amount)
      const to = refunded >= Number(order.total) ? 'refunded' : 'partially_refunded'
      const set = { refunded_total: refunded, payment_status: order.payment_status }
      if (order.status !== to && canTransition(order.status, to)) {
        await transitionOrder(trx, outbox, {
          orderId,
          to,
          actor: ACTOR,
          reason: 'refunded at the processor',
          set,
        })
      } else {
        await trx
          .updateTable('orders')
          .set({ ...set, updated_at: sql<Date>`now()` })
          .where('id', '=', orderId)
          .execute()
      }
    })
  })

  // A refund the processor accepted and later failed: the money never left. The order's refunded
  // total follows the payment's again, the refund's units become refundable again, and staff read
  // why in a note. The status stays: an order does not move back from (partially) refunded.
  runtime.outbox.on('refund.failed', async (event: DomainEvent) => {
    const orderId = event.payload.order_id
    if (typeof orderId !== 'string') return
    await withTransaction(db, async (trx) => {
      const order = await trx
        .selectFrom('orders')
        .innerJoin('payments', 'payments.id', 'orders.payment_id')
        .select(['orders.refunded_total', 'payments.refunded_amount', 'payments.status as payment_status'])
        .where('orders.id', '=', orderId)
        .forUpdate('orders')
        .executeTakeFirst()
      if (!order) return
      const reserved = await trx
        .updateTable('order_refunds')
        .set({ status: 'void', updated_at: sql<Date>`now()` })
        .where('order_id', '=', orderId)
        .where('refund_key', '=', String(event.payload.idempotency_key ?? ''))
        .where('status', '=', 'booked')
        .returning(['lines'])
        .executeTakeFirst()
      for (const line of reserved?.lines ?? []) {
        await trx
          .updateTable('order_lines')
          .set({
            refunded_quantity: sql<number>`greatest(0, refunded_quantity - ${line.quantity})`,
            refunded_amount: sql<number>`greatest(0, refunded_amount - ${line.amount})`,
          })
          .where('id', '=', line.line_id)
          .where('order_id', '=', orderId)
          .execute()
      }
      const refunded = Number(order.refunded_amount)
      if (!reserved && Number(order.refunded_total) === refunded) return
      await trx
        .updateTable('orders')
        .set({ refunded_total: refunded, payment_status: order.payment_status, updated_at: sql<Date>`now()` })
        .where('id', '=', orderId)
        .execute()
      const reason = event.payload.reason ? ` (${String(event.payload.reason)})` : ''
      await addOrderNote(trx, orderId, {
        author: ACTOR,
        body: `Refund ${String(event.payload.refund_id)} of ${String(event.payload.amount)} ${String(
          event.payload.currency,
        )} (minor units) failed at the processor${reason}: the money was not returned.`,
      })
    })
  })
}
