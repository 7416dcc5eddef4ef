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
 *    The same transaction queues the settle job (SETTLE_CANCELED_JOB), which does steps 2 and 3
 *    again later until nothing is left to do: whatever this request leaves (a crash, a 503, a
 *    refund of someone else's still pending), the money still goes back.
 * 2. The payment, outside any transaction (provider calls never hold locks): void an authorisation,
 *    or refund what the payment still holds: captured, and neither refunded nor reserved by a refund
 *    under way (a staff refund in flight). Each call is idempotent with a key derived from the
 *    payment (void) or the order id (refund), so repeating it repeats nothing at the processor.
 * 3. A short transaction records the payment's outcome on the order (payment_status, refunded_total).
 *
 * A capture already under way when step 1 commits (staff, the checkout's, the recovery job's) may
 * take the money at the processor after all: the void of step 2 is then refused while the payment
 * row still reads authorised. Whoever records that capture finds the order canceled and refunds it
 * (refundCaptureOfCanceled), as does the payment.captured listener. A capture whose answer was lost
 * has no such recorder (only the processor's webhook, which may never come): the settle job, whose
 * void is refused in turn, asks the processor what the charge holds, records that capture and
 * refunds it (recordRefusedVoidCapture). The job asks, not the cancel's request, which leaves a
 * capture racing it to that capture's caller: 30 seconds on, a capture under way at the cancel has
 * as a rule been recorded, so a row that still reads uncaptured is one whose answer was lost (and
 * one recorded later still refunds under the cancel's key, once). A row another writer holds at
 * that moment is left to that writer, and the job runs again. Money never stays on a canceled order.
 *
 * A refund under way when the cancel runs (staff's, not yet answered by the processor) keeps its
 * reservation and is left to finish: if it fails, its reservation goes back to the payment, and the
 * settle job, which waits while any refund of the payment is pending, refunds that too, under a key
 * of its own (cancelRefundKey with a sequence number).
 *
 * A crash or a 503 (payment_provider_unavailable) after step 1 leaves a canceled order whose
 * payment is still authorised or captured; cancelling it again skips step 1 (already canceled) and
 * finishes steps 2 and 3, as does the settle job. Doing the payment first would risk the opposite:
 * money returned on an order that a failed step 1 leaves live and shippable.
 */
import { sql } from 'kysely'
import type { Tx } from '../../platform/db/transaction.ts'
import { withTransaction } from '../../platform/db/transaction.ts'
import { pausepoint } from '../../platform/failpoints.ts'
import { ProblemError, problem } from '../../platform/http/errors.ts'
import { inventoryContext } from '../inventory/context.ts'
import { findReservation, releaseReservation } from '../inventory/reservations.ts'
import {
  cancelPayment,
  findPayment,
  keyedRefundsOfPayment,
  type PaymentView,
  recordRefusedVoidCapture,
  refundPayment,
} from '../payments/service.ts'
import type { TaxProvider } from '../tax/providers.ts'
import { voidSale } from '../tax/sales.ts'
import type { CommerceDeps } from './deps.ts'
import { addOrderNote } from './notes.ts'
import { findOrder, type OrderView } from './orders.ts'
import { refundedTotalOf } from './refunds.ts'
import { statusBeforeRefunds, transitionOrder } from './state.ts'
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

/**
 * The refund key of an order's cancellation: one per order, so a retried cancel refunds once. What
 * a refund pending during the cancel gives back when it fails is refunded under the same key with
 * a sequence number (`:2`, `:3`, …), each the next one once the earlier ones are recorded.
 */
export const cancelRefundKey = (orderId: string) => `order:${orderId}:cancel`

/** True for the keys of an order's cancellation refunds (cancelRefundKey). */
const isCancelRefundKey = (orderId: string, key: string) =>
  key === cancelRefundKey(orderId) || key.startsWith(`${cancelRefundKey(orderId)}:`)

/**
 * The job that settles a canceled order's payment (steps 2 and 3) until nothing is left: queued by
 * the cancel's transaction, run by orders/jobs.ts, retried with backoff while a refund is pending.
 */
export const SETTLE_CANCELED_JOB = 'orders.settle-canceled'
/**
 * Seconds before the settle job first runs: the cancel's own request settles the payment right
 * after its transaction, and the job is its backstop, not a second caller of the processor at once.
 */
export const SETTLE_AFTER_SECONDS = 30

/**
 * How often one settle reads the payment again when other refunds reserve what it saw held before
 * its own reservation: concurrent refunds serialise on the payment row, so one of them always
 * wins, and after these passes the settle job takes over.
 */
const SETTLE_PASSES = 3

/** What settling a canceled order's payment left: nothing, or a pending refund to wait for. */
export type Settlement = 'settled' | 'waiting'

/** Cancels an order (see the file comment for the order of operations). */
export async function cancelOrder(
  deps: CommerceDeps,
  orderId: string,
  input: {
    actor: string
    reason?: string | undefined
    /** Statuses this cancel may start from, checked under the order's lock; CANCELABLE by default. */
    onlyFrom?: readonly OrderStatus[]
    /**
     * Only while the payment still waits for the money (a manual payment not yet confirmed) and
     * no capture of it is under way (lockUnpaid); 409 invalid_order_transition otherwise. For the
     * expiry of unpaid orders, which must lose to a payment confirmed meanwhile.
     */
    onlyUnpaid?: boolean
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
    if (!(await cancelableFrom(trx, orderId, row.status, input.onlyFrom))) {
      throw problem('invalid_order_transition', `An order that is ${row.status} cannot be canceled`)
    }
    if (input.onlyUnpaid) {
      if (!(await lockUnpaid(trx, row.payment_id))) {
        throw problem(
          'invalid_order_transition',
          `Order ${orderId}'s payment was confirmed, or is being confirmed`,
        )
      }
      // Decided, the payment's row held: a test stages a capture arriving now.
      await pausepoint('orders.unpaid_cancel_decided')
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
    if (row.payment_id) {
      await deps.runtime.jobs.enqueue(
        trx,
        SETTLE_CANCELED_JOB,
        { order_id: orderId },
        { startAfter: SETTLE_AFTER_SECONDS },
      )
    }
    return row
  })
  await ctx.publish()
  if (order.payment_id) await settlePayment(deps, orderId, order.payment_id, input.actor)
  return (await findOrder(deps.db, orderId))!
}

/**
 * Locks the order's payment while it still waits for the money (`awaiting_transfer`): false when
 * it does not, or when a capture holds its row. A capture records itself, and marks the order paid,
 * in one transaction that updates this row first (admin-orders.ts, captureOrder): one under way is
 * passed over (SKIP LOCKED), and the cancel gives way to it; one that comes after waits for the
 * cancel's transaction, then finds the order canceled and records nothing. The payment's row is
 * read here rather than through the payments service because it is the lock that decides.
 */
async function lockUnpaid(trx: Tx, paymentId: string | null): Promise<boolean> {
  if (!paymentId) return false
  const row = await trx
    .selectFrom('payments')
    .select('id')
    .where('id', '=', paymentId)
    .where('status', '=', 'awaiting_transfer')
    .forUpdate()
    .skipLocked()
    .executeTakeFirst()
  return row !== undefined
}

/**
 * Whether an order in `status` may be canceled. A partially refunded order may be when it had not
 * shipped before its refunds (staff refunded part, then cancel the rest): the refunds do not make
 * the unshipped goods shipped, and the cancel refunds what remains.
 */
async function cancelableFrom(
  trx: Tx,
  orderId: string,
  status: OrderStatus,
  onlyFrom: readonly OrderStatus[] | undefined,
): Promise<boolean> {
  if (onlyFrom) return onlyFrom.includes(status)
  if (status === 'partially_refunded') return CANCELABLE.includes(await statusBeforeRefunds(trx, orderId))
  return CANCELABLE.includes(status)
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

/**
 * What the settle job does: steps 2 and 3 for an order that is canceled. 'waiting' while a refund
 * of its payment is pending, or while another writer held its payment's row when a refused void
 * had the processor asked what it captured (the job runs again later); 'refused' when the
 * processor refused the cancel's refund (a note on the order tells staff to refund the rest
 * through the refund route).
 */
export async function settleCanceledOrder(
  deps: CommerceDeps,
  orderId: string,
  actor: string,
): Promise<Settlement | 'refused'> {
  const order = await deps.db
    .selectFrom('orders')
    .select(['status', 'payment_id'])
    .where('id', '=', orderId)
    .executeTakeFirst()
  if (order?.status !== 'canceled' || !order.payment_id) return 'settled'
  try {
    return await settlePayment(deps, orderId, order.payment_id, actor, { askProcessor: true })
  } catch (error) {
    if (error instanceof ProblemError && error.code === 'conflict') {
      const refunds = await keyedRefundsOfPayment(deps.db, order.payment_id)
      if (refunds.some((r) => isCancelRefundKey(orderId, r.key) && r.status === 'failed')) return 'refused'
    }
    throw error
  }
}

/**
 * Steps 2 and 3: returns the money of a canceled order and records it on the order. With
 * `askProcessor` (the settle job), a void refused while the payment reads uncaptured has the
 * processor asked what it captured (see the file comment).
 */
async function settlePayment(
  deps: CommerceDeps,
  orderId: string,
  paymentId: string,
  actor: string,
  { askProcessor = false }: { askProcessor?: boolean } = {},
): Promise<Settlement> {
  let payment = await findPayment(deps.db, paymentId)
  if (!payment) return 'settled'
  let settlement: Settlement = 'settled'
  if (VOIDABLE.includes(payment.status)) {
    try {
      payment = await cancelPayment(deps, paymentId, actor)
    } catch (error) {
      // Captured meanwhile (a capture that raced the cancel): refund it instead. Refused while the
      // row reads uncaptured, the processor captured it: its recorder refunds it, or, its answer
      // lost, the settle job asks the processor and records it, so that the refund below returns it.
      if (!(error instanceof ProblemError && error.code === 'payment_not_capturable')) throw error
      if (askProcessor && (await recordRefusedVoidCapture(deps, paymentId, actor)) === 'busy')
        settlement = 'waiting'
      payment = (await findPayment(deps.db, paymentId))!
    }
  }
  if (CAPTURED.includes(payment.status)) {
    ;({ payment, settlement } = await refundWhatIsHeld(deps, orderId, payment, actor))
  }
  await recordPaymentOutcome(deps, orderId, payment)
  return settlement
}

/**
 * Refunds what the payment holds: captured, less what is refunded or reserved by a refund under way
 * (payments.refunded_amount counts both, so this never asks for money another refund already
 * claims, and the payment's conditional reservation still refuses any refund past the capture).
 * The cancel's own refunds left unanswered (a 503, a crash) are resumed first, each for its own
 * amount under its key. 'waiting' while any refund of the payment is still pending: one that fails
 * gives its reservation back, and the next settle refunds that part too.
 */
async function refundWhatIsHeld(
  deps: CommerceDeps,
  orderId: string,
  initial: PaymentView,
  actor: string,
): Promise<{ payment: PaymentView; settlement: Settlement }> {
  let payment = initial
  const reload = async () => (await findPayment(deps.db, payment.id))!
  const own = (await keyedRefundsOfPayment(deps.db, payment.id)).filter((r) =>
    isCancelRefundKey(orderId, r.key),
  )
  for (const unanswered of own.filter((r) => r.status === 'pending')) {
    await refundForCancel(deps, orderId, payment, { amount: unanswered.amount, key: unanswered.key }, actor)
    payment = await reload()
  }
  for (let pass = 0; pass < SETTLE_PASSES; pass++) {
    const refunds = await keyedRefundsOfPayment(deps.db, payment.id)
    const mine = refunds.filter((r) => isCancelRefundKey(orderId, r.key))
    const held = payment.captured_amount - payment.refunded_amount
    if (held <= 0) {
      return { payment, settlement: refunds.some((r) => r.status === 'pending') ? 'waiting' : 'settled' }
    }
    // Refused by the processor, now or on an earlier attempt (whatever staff have refunded since):
    // asking again would only repeat the refusal. Staff refund the rest through the refund route,
    // with a new key (and orders:refund and a step-up, as any refund).
    if (mine.some((r) => r.status === 'failed')) throw refusal(orderId, 'refused by the processor')
    const key =
      mine.length === 0 ? cancelRefundKey(orderId) : `${cancelRefundKey(orderId)}:${mine.length + 1}`
    try {
      await refundForCancel(deps, orderId, payment, { amount: held, key }, actor)
    } catch (error) {
      // Another refund reserved some of it between our read and our reservation (the reservation
      // refused ours, which left nothing under the key), or another settle took this key for
      // another amount: read again.
      const raced =
        error instanceof ProblemError &&
        (error.code === 'refund_exceeds_captured' || error.code === 'idempotency_key_reused')
      if (!raced) throw error
    }
    payment = await reload()
  }
  // Still losing to other refunds: the settle job finishes it.
  return { payment, settlement: 'waiting' }
}

/**
 * One refund of the cancel, under its key. A refusal by the processor (the refund under the key is
 * then failed) is shown on the order, on its payment status and in a note (it may come from a job
 * nobody watches), and thrown as 409 conflict; a 503 is thrown as it is.
 */
async function refundForCancel(
  deps: CommerceDeps,
  orderId: string,
  payment: PaymentView,
  refund: { amount: number; key: string },
  actor: string,
): Promise<void> {
  try {
    await refundPayment(deps, payment.id, { ...refund, reason: 'order canceled', actor })
  } catch (error) {
    if (error instanceof ProblemError && error.code === 'payment_provider_unavailable') throw error
    const status = (await keyedRefundsOfPayment(deps.db, payment.id)).find(
      (r) => r.key === refund.key,
    )?.status
    if (status !== 'failed') throw error
    const detail = error instanceof ProblemError ? (error.detail ?? error.message) : String(error)
    await recordPaymentOutcome(deps, orderId, (await findPayment(deps.db, payment.id))!)
    await addOrderNote(deps.db, orderId, {
      author: actor,
      body:
        `The processor refused the refund of ${refund.amount} (${payment.currency}) this canceled order's ` +
        `payment needs (${detail}): refund it with POST /admin/orders/${orderId}/refunds.`,
    })
    throw refusal(orderId, detail)
  }
}

/** The answer to a cancel whose refund the processor refused: where staff go instead. */
function refusal(orderId: string, detail: string) {
  return problem(
    'conflict',
    `The order is canceled, but its refund failed (${detail}); ` +
      `refund what remains with POST /admin/orders/${orderId}/refunds`,
  )
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
