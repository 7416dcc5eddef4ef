/**
 * Orders follow what happens to their payment at the processor. A capture made there (Stripe's
 * dashboard, a webhook that arrived before our own capture was recorded) marks a pending order
 * paid; a refund made there is booked on the order as a staff refund is (its own move and event)
 * and raises its refunded total; a refund that failed there after it was accepted gives its units
 * and amount back; an authorisation voided there cancels a pending order. Listeners run from the
 * outbox at least once and in any order relative to staff refunds, so each acts once per refund
 * (its order refund row says whether it was booked or taken back) and sets absolute values: the
 * refunded total is derived from the payment's refunds (refundedTotalOf), never added to or
 * subtracted from.
 */
import { sql } from 'kysely'
import { type Tx, withTransaction } from '../../platform/db/transaction.ts'
import type { DomainEvent } from '../../platform/events/nats-publisher.ts'
import { ProblemError } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { type InventoryContext, inventoryContext } from '../inventory/context.ts'
import { cancelOrder, refundCaptureOfCanceled } from './cancel.ts'
import { commerceDeps } from './deps.ts'
import { addOrderNote } from './notes.ts'
import { bookProcessorRefunds, refundedTotalOf } from './refunds.ts'
import { REFUND_STATUSES, recordOrderCaptured, statusBeforeRefunds, transitionOrSet } from './state.ts'

const ACTOR = 'system:payment-events'

/** Subscribes the orders module to payment events (call once per runtime, before jobs start). */
export function followPaymentEvents(runtime: Runtime): void {
  const { db } = runtime.database
  const { outbox } = runtime

  runtime.outbox.on('payment.captured', 'orders.record-capture', async (event: DomainEvent) => {
    const orderId = event.payload.order_id
    if (typeof orderId !== 'string') return
    const ctx = inventoryContext(runtime, ACTOR)
    const paid = await withTransaction(db, async (trx) => {
      const moved = await recordOrderCaptured(trx, outbox, {
        orderId,
        actor: ACTOR,
        reason: 'payment captured at the processor',
        paymentStatus: 'captured',
      })
      // A refund made at the processor whose event was followed first found the order pending,
      // which no refund status follows: it counted the money and left the move to the capture,
      // this one or an earlier one of staff or the recovery job (captureOrder does the same).
      await followProcessorRefunds(trx, ctx, orderId, { onlyIfCounted: true })
      return moved
    })
    await ctx.publish()
    // A capture that landed while the order was being canceled: its refund, in case whoever
    // captured died before making it (a second one under the cancel's key refunds nothing more).
    if (!paid) {
      await refundCaptureOfCanceled(commerceDeps(runtime), orderId, ACTOR).catch((error: unknown) => {
        // Refused by the processor: staff refund it through the refund route, as the note on the
        // order says (other failures are retried with the event).
        if (!(error instanceof ProblemError) || error.code !== 'conflict') throw error
        runtime.logger.warn({ err: error, orderId }, 'refund of a capture on a canceled order refused')
      })
    }
  })

  // An authorisation voided at the processor (expired after days uncaptured, voided in its
  // dashboard) can never be captured: a pending order on it is canceled, so its stock goes back.
  // Orders staff moved on are left to staff; cancels of our own find the order canceled already.
  runtime.outbox.on('payment.canceled', 'orders.cancel-on-void', async (event: DomainEvent) => {
    const orderId = event.payload.order_id
    if (typeof orderId !== 'string') return
    const order = await db.selectFrom('orders').select('status').where('id', '=', orderId).executeTakeFirst()
    if (order?.status !== 'pending') return
    // Checked again under the order's lock: staff may move it on meanwhile.
    await cancelOrder(commerceDeps(runtime), orderId, {
      actor: ACTOR,
      reason: 'payment canceled at the processor',
      onlyFrom: ['pending'],
    }).catch((error: unknown) => {
      if (!(error instanceof ProblemError) || error.code !== 'invalid_order_transition') throw error
    })
  })

  runtime.outbox.on('refund.created', 'orders.book-processor-refund', async (event: DomainEvent) => {
    const orderId = event.payload.order_id
    // Refunds staff made through the order are booked on it already (refunds.ts).
    if (typeof orderId !== 'string' || !String(event.payload.actor ?? '').startsWith('webhook:')) return
    const ctx = inventoryContext(runtime, ACTOR)
    await withTransaction(db, (trx) => followProcessorRefunds(trx, ctx, orderId))
    await ctx.publish()
  })

  // A refund the processor accepted and later failed: the money never left. Once per refund (its
  // order refund, or a marker for a refund made elsewhere, turns failed), the order's refunded
  // total loses the amount, the refund's units become refundable again, a fully refunded order
  // becomes partially refunded (or, with no refund left, goes back to its status before refunds),
  // and staff read why in a note.
  runtime.outbox.on('refund.failed', 'orders.reverse-failed-refund', async (event: DomainEvent) => {
    const orderId = event.payload.order_id
    if (typeof orderId !== 'string') return
    const amount = Number(event.payload.amount)
    const refundKey = String(event.payload.idempotency_key ?? `refund:${String(event.payload.refund_id)}`)
    await withTransaction(db, async (trx) => {
      const order = await lockOrderWithPayment(trx, orderId)
      if (!order) return
      const reservation = await trx
        .selectFrom('order_refunds')
        .select(['id', 'status', 'lines'])
        .where('order_id', '=', orderId)
        .where('refund_key', '=', refundKey)
        .executeTakeFirst()
      if (reservation?.status === 'failed') return
      if (reservation) {
        await trx
          .updateTable('order_refunds')
          .set({ status: 'failed', updated_at: sql<Date>`now()` })
          .where('id', '=', reservation.id)
          .execute()
        // Reserved but never booked on the order: nothing to take back.
        if (reservation.status !== 'booked') return
      } else {
        await trx
          .insertInto('order_refunds')
          .values({ id: newId('oref'), order_id: orderId, refund_key: refundKey, amount, status: 'failed' })
          .execute()
      }
      for (const line of reservation?.lines ?? []) {
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
      const refunded = await refundedTotalOf(trx, orderId, order.payment_id)
      // No refund left: the order is what it was before refunding began (paid, fulfilled, …).
      const to =
        refunded === 0 && REFUND_STATUSES.includes(order.status)
          ? await statusBeforeRefunds(trx, orderId)
          : order.status === 'refunded' && refunded < Number(order.total)
            ? 'partially_refunded'
            : null
      const restored = to !== null && !REFUND_STATUSES.includes(to)
      await transitionOrSet(trx, outbox, order.status, {
        locked: { status: order.status, number: order.number },
        orderId,
        to,
        // `order.paid` (or fulfilled, …) again: marked, so that consumers do not take it for a new
        // payment or shipment.
        ...(restored ? { event: { refunds_failed: true } } : {}),
        actor: ACTOR,
        reason: 'a refund failed at the processor',
        set: { refunded_total: refunded, payment_status: order.payment_status },
      })
      const reason = event.payload.reason ? ` (${String(event.payload.reason)})` : ''
      await addOrderNote(trx, orderId, {
        author: ACTOR,
        body: `Refund ${String(event.payload.refund_id)} of ${amount} ${String(
          event.payload.currency,
        )} (minor units) failed at the processor${reason}: the money was not returned.`,
      })
    })
  })
}

/**
 * Books on the order the refunds made at the processor that it has not booked yet, each as its own
 * move to partially refunded or refunded with its own event, as a staff refund is booked
 * (bookProcessorRefunds), and sets the order's refunded total from its payment's refunds and its
 * payment status from the payment (which a capture recorded on the order just set to captured). A
 * pending order books none: no refund status follows pending, so its capture books them later,
 * calling this again. `onlyIfCounted`: only when a refund is counted on the order already, so that
 * a capture with nothing refunded costs one read more.
 */
export async function followProcessorRefunds(
  trx: Tx,
  ctx: InventoryContext,
  orderId: string,
  options: { onlyIfCounted?: boolean } = {},
): Promise<void> {
  const order = await lockOrderWithPayment(trx, orderId)
  if (!order || (options.onlyIfCounted && Number(order.refunded_total) === 0)) return
  // Booked refunds moved the order once already: a capture recorded late, or again, books nothing
  // and moves nothing back (staff may have moved it on since: a partially refunded order ships).
  if (order.status !== 'pending')
    await bookProcessorRefunds(trx, ctx, orderId, order.payment_id, order.payment_status)
  await trx
    .updateTable('orders')
    .set({
      refunded_total: await refundedTotalOf(trx, orderId, order.payment_id),
      payment_status: order.payment_status,
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', orderId)
    .execute()
}

/** The order's row, locked, with what its payment says now: the refund listeners' starting point. */
function lockOrderWithPayment(trx: Tx, orderId: string) {
  return trx
    .selectFrom('orders')
    .innerJoin('payments', 'payments.id', 'orders.payment_id')
    .select([
      'orders.status',
      'orders.number',
      'orders.total',
      'orders.refunded_total',
      'payments.id as payment_id',
      'payments.status as payment_status',
    ])
    .where('orders.id', '=', orderId)
    .forUpdate('orders')
    .executeTakeFirst()
}
