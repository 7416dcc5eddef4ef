/**
 * Orders follow what happens to their payment at the processor. A capture made there (Stripe's
 * dashboard, a webhook that arrived before our own capture was recorded) marks a pending order
 * paid; a refund made there raises the order's refunded total and moves its status. Listeners run
 * from the outbox at least once, so each sets absolute values rather than adding to them.
 */
import { sql } from 'kysely'
import { withTransaction } from '../../platform/db/transaction.ts'
import type { DomainEvent } from '../../platform/events/nats-publisher.ts'
import type { Runtime } from '../../platform/runtime.ts'
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
}
