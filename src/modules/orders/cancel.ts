/**
 * Cancelling an order: the stock it holds goes back, its tax sale is voided, and its money goes
 * back to the shopper (the authorisation voided, or what was captured refunded).
 *
 * Order of operations, chosen so that a crash or an unreachable processor at any point leaves a
 * state that the next attempt completes, and never one where money moves on an order that stays
 * live:
 *
 * 1. One transaction (order row locked): refuse unless pending, paid or processing; release the
 *    reservation if still active; void the tax sale; move the order to canceled (canceled_at set,
 *    order.canceled emitted). From here on nothing can ship, capture or refund the order through
 *    the state machine, so the payment part below cannot race a fulfilment.
 * 2. The payment, outside any transaction (provider calls never hold locks): void an authorisation,
 *    or refund whatever remains captured. Each call is idempotent with a key derived from the
 *    payment (void) or the order id (refund), so repeating it repeats nothing at the processor.
 * 3. A short transaction records the payment's outcome on the order (payment_status, refunded_total).
 *
 * A capture already under way when step 1 commits (staff, the checkout's, the recovery job's) may
 * take the money at the processor after all: the void of step 2 is then refused while the payment
 * row still reads authorised, so there is nothing to refund yet. Whoever records that capture finds
 * the order canceled and refunds it (refundCaptureOfCanceled), as does the payment.captured
 * listener: money never stays on a canceled order.
 *
 * A crash or a 503 (payment_provider_unavailable) after step 1 leaves a canceled order whose
 * payment is still authorised or captured; cancelling it again skips step 1 (already canceled) and
 * finishes steps 2 and 3. Doing the payment first would risk the opposite: money returned on an
 * order that a failed step 1 leaves live and shippable.
 */
import { sql } from 'kysely'
import type { Tx } from '../../platform/db/transaction.ts'
import { withTransaction } from '../../platform/db/transaction.ts'
import { ProblemError, problem } from '../../platform/http/errors.ts'
import { inventoryContext } from '../inventory/context.ts'
import { findReservation, releaseReservation } from '../inventory/reservations.ts'
import { cancelPayment, findPayment, type PaymentView, refundPayment } from '../payments/service.ts'
import type { TaxProvider } from '../tax/providers.ts'
import { voidSale } from '../tax/sales.ts'
import type { CommerceDeps } from './deps.ts'
import { addOrderNote } from './notes.ts'
import { findOrder, type OrderView } from './orders.ts'
import { refundedTotalOf } from './refunds.ts'
import { transitionOrder } from './state.ts'
import type { OrderStatus } from './tables.ts'

/** Statuses an order may be canceled from: nothing has shipped yet. */
export const CANCELABLE: readonly OrderStatus[] = ['pending', 'paid', 'processing']

/** Payment states that are an authorisation (or a promise of money) still to void. */
const VOIDABLE = ['pending', 'requires_action', 'authorized', 'awaiting_transfer']
/**
 * Payment states with captured money. Refunded too: a refund left pending by an unreachable
 * processor already counts as refunded on the payment, and must be resumed under its key.
 */
const CAPTURED = ['captured', 'partially_refunded', 'refunded']

/** The refund key of an order's cancellation: one per order, so a retried cancel refunds once. */
export const cancelRefundKey = (orderId: string) => `order:${orderId}:cancel`

/** Cancels an order (see the file comment for the order of operations). */
export async function cancelOrder(
  deps: CommerceDeps,
  orderId: string,
  input: {
    actor: string
    reason?: string | undefined
    /** Statuses this cancel may start from, checked under the order's lock; CANCELABLE by default. */
    onlyFrom?: readonly OrderStatus[]
  },
): Promise<OrderView> {
  const placed = await deps.db
    .selectFrom('orders')
    .select('placed_at')
    .where('id', '=', orderId)
    .executeTakeFirst()
  if (!placed) throw problem('not_found', `No order ${orderId}`)
  // Loaded before the transaction: the provider reads the tax tables through the pool, which on
  // PGlite (one connection) would wait behind our own open transaction.
  const taxProvider = await taxProviderOf(deps, new Date(placed.placed_at))
  const ctx = inventoryContext(deps.runtime, input.actor)
  const order = await withTransaction(deps.db, async (trx) => {
    const row = await trx
      .selectFrom('orders')
      .select(['id', 'status', 'reservation_id', 'payment_id'])
      .where('id', '=', orderId)
      .forUpdate()
      .executeTakeFirst()
    if (!row) throw problem('not_found', `No order ${orderId}`)
    // Canceled before: only the payment part may remain (a retry after a 503 or a crash).
    if (row.status === 'canceled') return row
    if (!(input.onlyFrom ?? CANCELABLE).includes(row.status)) {
      throw problem('invalid_order_transition', `An order that is ${row.status} cannot be canceled`)
    }
    if (row.reservation_id) {
      const reservation = await findReservation(trx, row.reservation_id)
      if (reservation?.status === 'active') await releaseReservation(trx, row.reservation_id, ctx)
    }
    await voidTaxSale(deps, trx, orderId, taxProvider)
    await transitionOrder(trx, deps.outbox, {
      orderId,
      to: 'canceled',
      actor: input.actor,
      reason: input.reason ?? null,
      set: { canceled_at: sql<Date>`now()` },
      event: { reason: input.reason ?? null },
    })
    return row
  })
  await ctx.publish()
  if (order.payment_id) await settlePayment(deps, orderId, order.payment_id, input.actor)
  return (await findOrder(deps.db, orderId))!
}

/**
 * Voids the order's tax sale with the store's provider (the order id is the sale's reference).
 * The local record is always voided; an external service that cannot be told is logged, not
 * fatal: the cancellation must not depend on a third party being up.
 */
async function voidTaxSale(
  deps: CommerceDeps,
  trx: Tx,
  orderId: string,
  provider: TaxProvider | undefined,
): Promise<void> {
  if (provider) {
    try {
      await provider.void(trx, orderId)
      return
    } catch (error) {
      // A database error (an SQLSTATE) aborts the cancellation; a service that failed to answer does not.
      if (error instanceof ProblemError || typeof (error as { code?: unknown }).code === 'string') throw error
      deps.runtime.logger.warn({ err: error, order_id: orderId }, 'tax provider could not void the sale')
    }
  }
  await voidSale(trx, orderId)
}

/** The store's tax provider for the order's date of supply; undefined when tax is not set up. */
async function taxProviderOf(deps: CommerceDeps, placedAt: Date): Promise<TaxProvider | undefined> {
  try {
    return await deps.taxes.get(placedAt.toISOString().slice(0, 10))
  } catch {
    // No tax settings (no origin country): there is no provider, only the local record.
    return undefined
  }
}

/**
 * Returns the money of an order canceled while its payment was being captured. The cancel found the
 * payment still authorised (its void refused: the processor had captured) and so had nothing to
 * refund; the capture, recorded after it, is refunded here, under the cancel's own refund key, so a
 * cancel that did see it refunds once. False, with nothing done, for an order that is not canceled.
 * Every capture path calls it after recording a capture (and the payment.captured listener, should
 * that caller die first).
 */
export async function refundCaptureOfCanceled(
  deps: CommerceDeps,
  orderId: string,
  actor: string,
): Promise<boolean> {
  const order = await deps.db
    .selectFrom('orders')
    .select(['status', 'payment_id'])
    .where('id', '=', orderId)
    .executeTakeFirst()
  if (order?.status !== 'canceled' || !order.payment_id) return false
  await settlePayment(deps, orderId, order.payment_id, actor)
  return true
}

/** Steps 2 and 3: returns the money of a canceled order and records it on the order. */
async function settlePayment(deps: CommerceDeps, orderId: string, paymentId: string, actor: string) {
  let payment = await findPayment(deps.db, paymentId)
  if (!payment) return
  if (VOIDABLE.includes(payment.status)) {
    try {
      payment = await cancelPayment(deps, paymentId, actor)
    } catch (error) {
      // Captured meanwhile (a capture that raced the cancel): refund it instead.
      if (!(error instanceof ProblemError && error.code === 'payment_not_capturable')) throw error
      payment = (await findPayment(deps.db, paymentId))!
    }
  }
  if (CAPTURED.includes(payment.status)) {
    // What the order has not refunded yet, leaving out this very refund: the payment's
    // refunded_amount already counts a pending attempt of it, and a retry must ask again for the
    // same amount under the same key to resume it.
    // A staff refund still in flight (money reserved, not yet booked) makes this refund_exceeds_captured:
    // the cancel is then retried once that refund is booked.
    const key = cancelRefundKey(orderId)
    const refunded = await refundedTotalOf(deps.db, orderId, paymentId, key)
    const amount = payment.captured_amount - refunded
    if (amount > 0 && payment.captured_amount > 0) {
      // Refused by the processor, now or on an earlier attempt under this key (whatever staff have
      // refunded since): cancelling again would only repeat the refusal. Staff refund the rest
      // through the refund route, with a new key (and orders:refund and a step-up, as any refund).
      const refused = (detail: string) =>
        problem(
          'conflict',
          `The order is canceled, but its refund failed (${detail}); ` +
            `refund what remains with POST /admin/orders/${orderId}/refunds`,
        )
      if ((await cancelRefundStatus(deps, paymentId, key)) === 'failed')
        throw refused('refused by the processor')
      try {
        await refundPayment(deps, paymentId, { amount, reason: 'order canceled', actor, key })
      } catch (error) {
        if (error instanceof ProblemError && error.code === 'payment_provider_unavailable') throw error
        if ((await cancelRefundStatus(deps, paymentId, key)) !== 'failed') throw error
        const detail = error instanceof ProblemError ? (error.detail ?? error.message) : String(error)
        // Money held on a canceled order must show: on the order's payment status, which staff
        // filter by, and in a note on it (the refusal may come from a listener nobody watches).
        await recordPaymentOutcome(deps, orderId, (await findPayment(deps.db, paymentId))!)
        await addOrderNote(deps.db, orderId, {
          author: actor,
          body:
            `The processor refused the refund of ${amount} (${payment.currency}) this canceled order's ` +
            `payment needs (${detail}): refund it with POST /admin/orders/${orderId}/refunds.`,
        })
        throw refused(detail)
      }
      payment = (await findPayment(deps.db, paymentId))!
    }
  }
  await recordPaymentOutcome(deps, orderId, payment)
}

/** The status of the cancel's own refund (under its key), if it made one. */
async function cancelRefundStatus(deps: CommerceDeps, paymentId: string, key: string) {
  const row = await deps.db
    .selectFrom('payment_refunds')
    .select('status')
    .where('payment_id', '=', paymentId)
    .where('idempotency_key', '=', key)
    .executeTakeFirst()
  return row?.status
}

async function recordPaymentOutcome(deps: CommerceDeps, orderId: string, payment: PaymentView) {
  await withTransaction(deps.db, async (trx) => {
    // Under the order's lock, as the refund listeners write it: the last writer reads the latest.
    await trx.selectFrom('orders').select('id').where('id', '=', orderId).forUpdate().execute()
    await trx
      .updateTable('orders')
      .set({
        payment_status: payment.status,
        refunded_total: await refundedTotalOf(trx, orderId, payment.id),
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', orderId)
      .execute()
  })
}
