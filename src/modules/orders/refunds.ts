/**
 * Refunds of an order, by amount or by line (units of lines, pro rata, plus shipping if asked).
 *
 * Three steps, each exact in its own way:
 * 1. reserve: under the order's row lock, the amount is computed from the order as it is, less the
 *    refunds reserved and not yet booked, checked against what remains (the order's total less its
 *    refunds; each line's units and amount left), and recorded as a pending order refund under
 *    the caller's key. Two refunds of the same last units therefore cannot both pass.
 * 2. money: the payments service reserves the amount on the payment row with one conditional
 *    UPDATE (concurrent refunds can never together pass what was captured), calls the processor
 *    keyed by the caller's Idempotency-Key, and records the outcome. A refusal voids the order
 *    refund, giving its units back.
 * 3. bookkeeping: one transaction locks the order row, adds the refund to the lines, marks the
 *    order refund booked, sets refunded_total from the payment's refunds (refundedTotalOf), moves
 *    the order to partially_refunded or refunded, and (through the route's runIdempotent) stores
 *    the response in the same transaction.
 *
 * A crash or a 503 between 1 and 3 leaves the order refund pending (and the money refunded, or
 * pending at the processor); the retry under the same Idempotency-Key finds the same reservation,
 * the payments service resumes the same refund (no second refund), and step 3 books it once.
 */
import { sql } from 'kysely'
import { type Queryable, type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { type FieldError, ProblemError, problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import { type InventoryContext, inventoryContext } from '../inventory/context.ts'
import { findPayment, type RefundView, refundKeysOfPayment, refundPayment } from '../payments/service.ts'
import { refundAmountsOfPayment } from '../payments/views.ts'
import type { CommerceDeps } from './deps.ts'
import { findOrder, type OrderLineView, type OrderView } from './orders.ts'
import { canTransition, transitionOrSet } from './state.ts'
import { settleOrderStock } from './stock.ts'
import type { OrderStatus } from './tables.ts'

export type RefundInput =
  | { amount: number; reason?: string | undefined }
  | {
      lines: Array<{ line_id: string; quantity: number }>
      include_shipping?: boolean | undefined
      reason?: string | undefined
    }

export interface RefundPlan {
  amount: number
  lines: Array<{ line_id: string; quantity: number; amount: number }>
  shipping_amount: number
  reason: string | null
}

export interface OrderRefundResult {
  refund: {
    id: string
    amount: number
    currency: string
    status: string
    reason: string | null
    lines: RefundPlan['lines']
    shipping_amount: number
  }
  order: OrderView
}

/** `numerator / denominator` rounded half up, in integers (both non-negative, denominator > 0). */
export function divideHalfUp(numerator: number, denominator: number): number {
  return Math.floor((2 * numerator + denominator) / (2 * denominator))
}

/**
 * What refunding `quantity` units of a line gives back: the line's total pro rata per unit, half up,
 * never more than remains of the line; the last units take exactly what remains, so a line refunded
 * unit by unit adds up to its total.
 */
export function lineRefundAmount(line: OrderLineView, quantity: number): number {
  const unitsLeft = line.quantity - line.refunded_quantity
  const amountLeft = Math.max(0, line.total - line.refunded_amount)
  if (quantity >= unitsLeft) return amountLeft
  return Math.min(amountLeft, divideHalfUp(line.total * quantity, line.quantity))
}

/** What remains refundable of the shipping: the order's remainder not held by its lines. */
export function shippingRefundable(order: OrderView): number {
  const lineTotals = order.lines.reduce((sum, l) => sum + l.total, 0)
  const shipping = Math.max(0, order.totals.total - lineTotals)
  const linesLeft = order.lines.reduce((sum, l) => sum + Math.max(0, l.total - l.refunded_amount), 0)
  const orderLeft = order.totals.total - order.totals.refunded
  return Math.max(0, Math.min(shipping, orderLeft - linesLeft))
}

/**
 * The refund a request asks for, checked against the order as it is. Throws validation_failed for
 * unknown lines or more units than remain, refund_exceeds_captured for more money than remains (by
 * amount; units worth more than remains give back what remains, or are refused when nothing does), and
 * invalid_order_transition for an order that cannot be refunded (not paid yet, refunded, canceled
 * with nothing left on its payment). `paymentHeld` is what the payment still holds (captured, not
 * refunded nor being refunded): only a canceled order needs it.
 */
export function planRefund(
  order: OrderView,
  input: RefundInput,
  options: { paymentHeld?: number } = {},
): RefundPlan {
  const reason = input.reason ?? null
  let plan: RefundPlan
  if ('amount' in input) {
    plan = { amount: input.amount, lines: [], shipping_amount: 0, reason }
  } else {
    const errors: FieldError[] = []
    const byId = new Map(order.lines.map((l) => [l.id, l]))
    const seen = new Set<string>()
    const lines: RefundPlan['lines'] = []
    input.lines.forEach((wanted, i) => {
      const line = byId.get(wanted.line_id)
      if (!line) {
        errors.push({ path: `body.lines.${i}.line_id`, message: 'no such line in this order' })
        return
      }
      if (seen.has(line.id)) {
        errors.push({ path: `body.lines.${i}.line_id`, message: 'the line is named twice' })
        return
      }
      seen.add(line.id)
      const left = line.quantity - line.refunded_quantity
      if (wanted.quantity > left) {
        errors.push({
          path: `body.lines.${i}.quantity`,
          message: `must be at most ${left}: the units not yet refunded`,
        })
        return
      }
      lines.push({
        line_id: line.id,
        quantity: wanted.quantity,
        amount: lineRefundAmount(line, wanted.quantity),
      })
    })
    if (errors.length) throw problem('validation_failed', errors[0]!.message, { errors })
    const shipping = input.include_shipping ? shippingRefundable(order) : 0
    plan = {
      amount: lines.reduce((sum, l) => sum + l.amount, 0) + shipping,
      lines,
      shipping_amount: shipping,
      reason,
    }
    if (plan.amount <= 0) {
      throw problem('validation_failed', 'Those lines have nothing left to refund', {
        errors: [{ path: 'body.lines', message: 'nothing left to refund on these lines' }],
      })
    }
  }
  const left = order.totals.total - order.totals.refunded
  const target = refundTarget(order.totals.refunded + plan.amount, order.totals.total)
  // A canceled order stays canceled, but money its cancel could not return (the processor refused
  // that refund, or failed it later) must not be stuck: it is refunded here like any other order's.
  const refundable =
    order.status === 'canceled' ? (options.paymentHeld ?? 0) > 0 : canTransition(order.status, target)
  if (!order.payment_id || !refundable) {
    throw problem('invalid_order_transition', `An order that is ${order.status} cannot be refunded`)
  }
  // Units whose value is more than remains of the order (refunds by amount are charged to no line,
  // so a line's last units can be worth more than is left) give back what remains: the goods are
  // recorded as returned, and the money stays within what was captured.
  if (plan.amount > left && left > 0 && plan.lines.length > 0) plan = clampLines(plan, left)
  if (plan.amount > left) {
    throw problem('refund_exceeds_captured', `${left} ${order.currency} remains refundable on this order`, {
      errors: [
        { path: 'amount' in input ? 'body.amount' : 'body.lines', message: `must be at most ${left}` },
      ],
    })
  }
  return plan
}

/**
 * A refund by lines cut down to `budget` (less than its amount, more than 0), shared among its lines
 * pro rata to what each would have given back, half up on running totals so the lines add up to the
 * budget exactly and none takes more than it would have. Its shipping is 0 already: shipping is
 * refundable only beyond what the lines still hold.
 */
function clampLines(plan: RefundPlan, budget: number): RefundPlan {
  const whole = BigInt(plan.lines.reduce((sum, l) => sum + l.amount, 0))
  let before = 0n
  let given = 0
  const lines = plan.lines.map((line) => {
    before += BigInt(line.amount)
    // In BigInt: amount × budget can pass 2^53.
    const upTo = Number((2n * before * BigInt(budget) + whole) / (2n * whole))
    const amount = upTo - given
    given = upTo
    return { ...line, amount }
  })
  return { ...plan, amount: budget, lines, shipping_amount: 0 }
}

function refundTarget(refunded: number, total: number): OrderStatus {
  return refunded >= total ? 'refunded' : 'partially_refunded'
}

/**
 * What an order has refunded: its payment's refunds that hold money, less those a staff refund of
 * the order reserved and has not booked yet (the reservation counts them until then: withReserved)
 * and those keyed in `except`, plus the booked ones the processor failed that the order has not
 * taken back yet (the refund.failed listener does, giving their lines their units back in the same
 * transaction: until then the lines count them, so the total does too). Derived from the
 * payment's refunds, the one record of the money, rather than added up event by event, so it is
 * right whatever order refunds, their failures and the listeners that follow them come in.
 *
 * `asBooked`: less the refunds made at the processor that the order has not booked yet either:
 * the total as of the refund being booked, for its event (each such refund's own booking, under
 * the same row lock, counts it next, so one made while this one is booked is never counted twice
 * nor in the wrong event).
 */
export async function refundedTotalOf(
  db: Queryable,
  orderId: string,
  paymentId: string,
  options: { except?: Iterable<string>; asBooked?: boolean } = {},
): Promise<number> {
  const refunds = await refundAmountsOfPayment(db, paymentId)
  const own = await db
    .selectFrom('order_refunds')
    .select(['refund_key', 'status'])
    .where('order_id', '=', orderId)
    .where('status', 'in', ['pending', 'booked'])
    .execute()
  const unbooked = new Set(own.filter((r) => r.status === 'pending').map((r) => r.refund_key))
  for (const key of options.except ?? []) unbooked.add(key)
  const booked = new Set(own.filter((r) => r.status === 'booked').map((r) => r.refund_key))
  const counted = refunds.filter(
    (r) =>
      !unbooked.has(r.key) &&
      (!r.failed || booked.has(r.key)) &&
      !(options.asBooked && r.elsewhere && !booked.has(r.key)),
  )
  return counted.reduce((sum, r) => sum + r.amount, 0)
}

/** The payment refund key of a staff refund: the caller's key, scoped to the order and caller. */
export const staffRefundKey = (orderId: string, principal: string, key: string) =>
  `order:${orderId}:refund:${principal}:${key}`

/**
 * Steps 1 and 2: reserves the refund against the order and moves the money. Returns what step 3
 * (bookRefund) needs.
 */
export async function refundOrderPayment(
  deps: CommerceDeps,
  orderId: string,
  input: RefundInput,
  options: { actor: string; key: string; resumeOnly?: boolean },
): Promise<{ plan: RefundPlan; refund: RefundView; paymentStatus: string; key: string }> {
  const { order, plan } = await withTransaction(deps.db, (trx) =>
    reserveRefund(trx, orderId, input, options.key, options.resumeOnly),
  )
  let refund: RefundView
  try {
    refund = await refundPayment(deps, order.payment_id!, {
      amount: plan.amount,
      reason: plan.reason,
      actor: options.actor,
      key: options.key,
    })
  } catch (error) {
    // Refused, or failed in a way the payments service recorded as failed: give the units back.
    // Only an unanswered call (503, unavailable) stays pending for the retry under the same key.
    if (!(error instanceof ProblemError && error.status === 503)) {
      await deps.db
        .updateTable('order_refunds')
        .set({ status: 'void', updated_at: sql<Date>`now()` })
        .where('order_id', '=', orderId)
        .where('refund_key', '=', options.key)
        .where('status', '=', 'pending')
        .execute()
    }
    throw error
  }
  const payment = await findPayment(deps.db, order.payment_id!)
  return { plan, refund, paymentStatus: payment?.status ?? order.payment_status, key: options.key }
}

/**
 * Step 1, in its own transaction: under the order's row lock, the plan for this key (the same one
 * again on a retry), checked against the order less the refunds other keys have reserved.
 */
async function reserveRefund(
  trx: Tx,
  orderId: string,
  input: RefundInput,
  key: string,
  resumeOnly = false,
): Promise<{ order: OrderView; plan: RefundPlan }> {
  const locked = await trx
    .selectFrom('orders')
    .select('id')
    .where('id', '=', orderId)
    .forUpdate()
    .executeTakeFirst()
  if (!locked) throw problem('not_found', `No order ${orderId}`)
  const found = (await findOrder(trx, orderId))!
  // The refunds as the payment has them now, not as the listeners have caught up with them yet.
  const order = found.payment_id
    ? {
        ...found,
        totals: { ...found.totals, refunded: await refundedTotalOf(trx, orderId, found.payment_id) },
      }
    : found
  const mine = await trx
    .selectFrom('order_refunds')
    .selectAll()
    .where('order_id', '=', orderId)
    .where('refund_key', '=', key)
    .executeTakeFirst()
  // A resume (resumeUnansweredRefunds) only finishes a reservation still pending, never plans anew.
  if (resumeOnly && mine?.status !== 'pending')
    throw problem('conflict', `No pending refund ${key} to resume`)
  if (mine && mine.status !== 'void') {
    return {
      order,
      plan: {
        amount: Number(mine.amount),
        lines: mine.lines,
        shipping_amount: Number(mine.shipping_amount),
        reason: mine.reason,
      },
    }
  }
  const pending = await liveReservations(trx, order)
  const payment = order.status === 'canceled' ? await findPayment(trx, order.payment_id!) : undefined
  const plan = planRefund(withReserved(order, pending), input, {
    paymentHeld: payment ? payment.captured_amount - payment.refunded_amount : 0,
  })
  const values = {
    amount: plan.amount,
    shipping_amount: plan.shipping_amount,
    lines: JSON.stringify(plan.lines),
    reason: plan.reason,
  }
  if (mine) {
    await trx
      .updateTable('order_refunds')
      .set({ ...values, status: 'pending', updated_at: sql<Date>`now()` })
      .where('id', '=', mine.id)
      .execute()
  } else {
    await trx
      .insertInto('order_refunds')
      .values({ id: newId('oref'), order_id: orderId, refund_key: key, ...values })
      .execute()
  }
  return { order, plan }
}

/** Minutes a refund is left to the request that made it before the recovery job resumes it. */
const RESUME_AFTER_MINUTES = 10

/**
 * Finishes order refunds whose request stopped after their money was asked for: the processor was
 * out of reach (a 503 answered to staff) or the request died. Each such refund holds its amount on
 * the payment and its units on the order, so left alone it would keep them from every other refund
 * for good. Only reservations whose payment refund started are taken (those that never reached the
 * payments service are abandoned instead: liveReservations); each is resumed under its own key,
 * which asks the processor nothing twice, and booked as its request would have booked it. Refunds
 * the processor still cannot be asked about wait for the next run. Returns how many were booked.
 */
export async function resumeUnansweredRefunds(
  deps: CommerceDeps,
  options: { limit?: number } = {},
): Promise<{ booked: number; waiting: number; refused: number }> {
  const stale = await deps.db
    .selectFrom('order_refunds as r')
    .innerJoin('orders as o', 'o.id', 'r.order_id')
    .innerJoin('payment_refunds as pr', (join) =>
      join.onRef('pr.payment_id', '=', 'o.payment_id').onRef('pr.idempotency_key', '=', 'r.refund_key'),
    )
    .select(['r.order_id', 'r.refund_key'])
    .where('r.status', '=', 'pending')
    .where('pr.status', 'in', ['pending', 'succeeded'])
    .where(sql<boolean>`r.updated_at < now() - make_interval(mins => ${RESUME_AFTER_MINUTES})`)
    .orderBy('r.updated_at')
    .limit(options.limit ?? 50)
    .execute()
  const report = { booked: 0, waiting: 0, refused: 0 }
  const actor = 'system:refund-recovery'
  for (const { order_id: orderId, refund_key: key } of stale) {
    try {
      // The input is not read: the reservation's own plan is resumed.
      const moved = await refundOrderPayment(deps, orderId, { amount: 1 }, { actor, key, resumeOnly: true })
      const ctx = inventoryContext(deps.runtime, actor)
      await withTransaction(deps.db, (trx) => bookRefund(trx, ctx, orderId, moved, actor))
      await ctx.publish()
      report.booked++
    } catch (error) {
      if (!(error instanceof ProblemError)) throw error
      if (error.status === 503) report.waiting++
      // Refused by the processor (the reservation is void, its units back), or finished meanwhile.
      else report.refused++
    }
  }
  return report
}

/** A reservation this old whose refund never reached the payments service was abandoned. */
const ABANDONED_AFTER_MINUTES = 15

/**
 * The order's pending refund reservations, less those abandoned: a request that died after
 * reserving and before moving any money, and was not retried, would otherwise hold its units for
 * ever. Those are voided; their retry, if it ever comes, reserves again.
 */
async function liveReservations(trx: Tx, order: OrderView) {
  const pending = await trx
    .selectFrom('order_refunds')
    .select(['id', 'refund_key', 'amount', 'lines'])
    .select(sql<boolean>`updated_at < now() - make_interval(mins => ${ABANDONED_AFTER_MINUTES})`.as('old'))
    .where('order_id', '=', order.id)
    .where('status', '=', 'pending')
    .execute()
  if (!pending.some((p) => p.old)) return pending
  const started = await refundKeysOfPayment(trx, order.payment_id!)
  const abandoned = pending.filter((p) => p.old && !started.has(p.refund_key)).map((p) => p.id)
  if (abandoned.length === 0) return pending
  await trx
    .updateTable('order_refunds')
    .set({ status: 'void', updated_at: sql<Date>`now()` })
    .where('id', 'in', abandoned)
    .execute()
  return pending.filter((p) => !abandoned.includes(p.id))
}

/** The order as if the reserved refunds were already booked: what remains for another refund. */
function withReserved(
  order: OrderView,
  reserved: Array<{ amount: number; lines: RefundPlan['lines'] }>,
): OrderView {
  if (reserved.length === 0) return order
  const byLine = new Map<string, { quantity: number; amount: number }>()
  for (const r of reserved) {
    for (const l of r.lines) {
      const sum = byLine.get(l.line_id) ?? { quantity: 0, amount: 0 }
      sum.quantity += l.quantity
      sum.amount += l.amount
      byLine.set(l.line_id, sum)
    }
  }
  return {
    ...order,
    totals: {
      ...order.totals,
      refunded: order.totals.refunded + reserved.reduce((s, r) => s + Number(r.amount), 0),
    },
    lines: order.lines.map((l) => {
      const taken = byLine.get(l.id)
      return taken
        ? {
            ...l,
            refunded_quantity: l.refunded_quantity + taken.quantity,
            refunded_amount: l.refunded_amount + taken.amount,
          }
        : l
    }),
  }
}

/**
 * Step 3, in the caller's transaction: adds the refund to the order's lines and refunded_total and
 * moves the order to partially_refunded or refunded (emitting the event). Refunds made at the
 * processor that the order has not booked yet are booked first, each with its own event, so that
 * each event's refunded_total counts the refunds booked before it and its own. That is the order of
 * booking, not always the order the money moved: a dashboard refund made after this refund's money
 * moved, whose event was not followed yet, still comes first.
 */
export async function bookRefund(
  trx: Tx,
  ctx: InventoryContext,
  orderId: string,
  booked: { plan: RefundPlan; refund: RefundView; paymentStatus: string; key: string },
  actor: string,
): Promise<OrderRefundResult> {
  const { plan, refund } = booked
  await trx.selectFrom('orders').select('id').where('id', '=', orderId).forUpdate().executeTakeFirstOrThrow()
  const marked = await trx
    .updateTable('order_refunds')
    .set({ status: 'booked', updated_at: sql<Date>`now()` })
    .where('order_id', '=', orderId)
    .where('refund_key', '=', booked.key)
    // Void too: a reservation taken for abandoned whose money moved after all is still booked.
    .where('status', 'in', ['pending', 'void'])
    .returning('id')
    .executeTakeFirst()
  // Booked already (a retry long after its answer was forgotten): the order has it once.
  if (marked) {
    await bookProcessorRefunds(trx, ctx, orderId, refund.payment_id, booked.paymentStatus, [booked.key])
    await applyRefund(trx, ctx, orderId, booked, actor)
  }
  return {
    refund: {
      id: refund.id,
      amount: refund.amount,
      currency: refund.currency,
      status: refund.status,
      reason: plan.reason,
      lines: plan.lines,
      shipping_amount: plan.shipping_amount,
    },
    order: (await findOrder(trx, orderId))!,
  }
}

/** Who moved the order for a refund made at the processor, and why, in its history. */
const PROCESSOR_REFUND_ACTOR = 'system:payment-events'
const PROCESSOR_REFUND_REASON = 'refunded at the processor'

/**
 * Books on the order, oldest first, the refunds made at the processor (its dashboard) that hold
 * money and that it has not booked yet. Each is recorded as a booked order refund under its key,
 * as a staff refund's reservation is (so it is booked once, and the refund.failed listener takes
 * it back as it takes a staff refund back), and applied as its own move with its own event, so
 * that a consumer following `order.*` events sees every refund however many are booked at once and
 * whichever path books them: their refund.created listener, a capture recorded after them (an order
 * that was pending could not show them), or a staff refund booked after them. The caller holds the
 * order's row lock and has checked that the order is not pending. `except`: keys of refunds booked
 * already but applied after these (the staff refund being booked), left out of their totals.
 */
export async function bookProcessorRefunds(
  trx: Tx,
  ctx: InventoryContext,
  orderId: string,
  paymentId: string,
  paymentStatus: string,
  except: readonly string[] = [],
): Promise<void> {
  const known = await trx
    .selectFrom('order_refunds')
    .select('refund_key')
    .where('order_id', '=', orderId)
    .execute()
  const seen = new Set(known.map((r) => r.refund_key))
  // A failed one is never booked: it moved no money (its refund.failed listener leaves a marker).
  const unbooked = (await refundAmountsOfPayment(trx, paymentId)).filter(
    (r) => r.elsewhere && !r.failed && !seen.has(r.key),
  )
  for (const refund of unbooked) {
    await trx
      .insertInto('order_refunds')
      .values({
        id: newId('oref'),
        order_id: orderId,
        refund_key: refund.key,
        amount: refund.amount,
        reason: PROCESSOR_REFUND_REASON,
        status: 'booked',
      })
      .execute()
    await applyRefund(
      trx,
      ctx,
      orderId,
      {
        plan: { lines: [], reason: PROCESSOR_REFUND_REASON },
        refund: { id: refund.id, amount: refund.amount, payment_id: paymentId },
        paymentStatus,
      },
      PROCESSOR_REFUND_ACTOR,
      except,
    )
  }
}

/**
 * Books one refund on the order, whose row the caller has locked: adds it to the lines, sets
 * refunded_total from the payment's refunds as the order has booked them (less those in `except`,
 * applied after this one), so that each event's total is the order's as of its refund, and moves
 * the order to partially_refunded or refunded with the refund in the event. A partially refunded
 * order moves to partially_refunded again, so that every refund booked is one event with its amount.
 */
async function applyRefund(
  trx: Tx,
  ctx: InventoryContext,
  orderId: string,
  booked: {
    plan: Pick<RefundPlan, 'lines' | 'reason'>
    refund: Pick<RefundView, 'id' | 'amount' | 'payment_id'>
    paymentStatus: string
  },
  actor: string,
  except: readonly string[] = [],
): Promise<void> {
  const { plan, refund } = booked
  for (const line of plan.lines) {
    // Clamped to the line as a last safeguard: the reservation already kept the units within it.
    await trx
      .updateTable('order_lines')
      .set({
        refunded_quantity: sql<number>`least(quantity, refunded_quantity + ${line.quantity})`,
        refunded_amount: sql<number>`least(total, refunded_amount + ${line.amount})`,
      })
      .where('id', '=', line.line_id)
      .where('order_id', '=', orderId)
      .execute()
  }
  const order = await trx
    .selectFrom('orders')
    .select(['status', 'total'])
    .where('id', '=', orderId)
    .executeTakeFirstOrThrow()
  const refunded = await refundedTotalOf(trx, orderId, refund.payment_id, { except, asBooked: true })
  const target = refundTarget(refunded, Number(order.total))
  // Canceled while the money moved, the order stays canceled (the cancellation refunds the rest);
  // the books are kept exact either way.
  const moved = await transitionOrSet(trx, ctx.outbox, order.status, {
    orderId,
    to: target,
    actor,
    reason: plan.reason,
    set: { refunded_total: refunded, payment_status: booked.paymentStatus },
    event: { refund_id: refund.id, amount: refund.amount, refunded_total: refunded },
  })
  if (moved) await settleOrderStock(trx, ctx, orderId, target)
}
