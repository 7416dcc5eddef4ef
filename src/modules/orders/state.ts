/**
 * The order state machine. Every status change goes through `transitionOrder` (or, for a caller
 * that expects one status, `transitionFrom`), which refuses a move the table below does not allow,
 * records the transition with its actor and time, and emits `order.<status>` in the same
 * transaction, so what happened to an order is never lost or invented.
 */
import { sql } from 'kysely'
import type { Tx } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import type { OrderStatus } from './tables.ts'

/** Where each status may go next. canceled and refunded are final. */
export const ORDER_TRANSITIONS: Readonly<Record<OrderStatus, readonly OrderStatus[]>> = {
  // Placed, payment not yet taken (manual payments; or authorised, awaiting capture).
  pending: ['paid', 'processing', 'canceled'],
  paid: ['processing', 'partially_fulfilled', 'fulfilled', 'canceled', 'partially_refunded', 'refunded'],
  processing: ['paid', 'partially_fulfilled', 'fulfilled', 'canceled', 'partially_refunded', 'refunded'],
  partially_fulfilled: ['fulfilled', 'partially_refunded', 'refunded'],
  fulfilled: ['completed', 'partially_refunded', 'refunded'],
  completed: ['partially_refunded', 'refunded'],
  partially_refunded: [
    'partially_refunded',
    // Only when every refund failed at the processor: back to where refunding began.
    'paid',
    'processing',
    'partially_fulfilled',
    'fulfilled',
    'completed',
    'refunded',
    // Only when it had not shipped (cancelOrder asks statusBeforeRefunds): the rest is refunded.
    'canceled',
  ],
  canceled: [],
  // Only when a refund fails at the processor after it was booked: money is refundable again
  // (partially_refunded), or, when no refund is left, the status the order had before refunds.
  refunded: ['partially_refunded', 'paid', 'processing', 'partially_fulfilled', 'fulfilled', 'completed'],
}

/** The statuses refunds put an order in. */
export const REFUND_STATUSES: readonly OrderStatus[] = ['partially_refunded', 'refunded']

/**
 * The status an order had before it was refunded: the last one in its history that refunds did
 * not set. Where an order goes back to when every refund of it failed at the processor.
 */
export async function statusBeforeRefunds(trx: Tx, orderId: string): Promise<OrderStatus> {
  const row = await trx
    .selectFrom('order_transitions')
    .select('to_status')
    .where('order_id', '=', orderId)
    .where('to_status', 'not in', REFUND_STATUSES)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst()
  return (row?.to_status as OrderStatus | undefined) ?? 'paid'
}

export const ORDER_STATUSES = Object.keys(ORDER_TRANSITIONS) as OrderStatus[]

/** True when an order in `from` may move to `to`. */
export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
  return ORDER_TRANSITIONS[from].includes(to)
}

export interface TransitionInput {
  orderId: string
  to: OrderStatus
  /** `<principal kind>:<id>`, or `system:<job>`. */
  actor: string
  reason?: string | null
  /** Extra columns to set with the status (payment_status, canceled_at, …). */
  set?: Record<string, unknown>
  /** Fields for the event payload besides the order id, number and statuses. */
  event?: Record<string, unknown>
  /** The order's row as the caller already locked it in this transaction: not read again. */
  locked?: { status: OrderStatus; number: number | null }
  /**
   * A move staff asked for. The table's moves back out of the refund statuses are for refunds that
   * fail at the processor: staff may not move a refunded order, and move a partially refunded one
   * on only as the status it had before refunds could (a shipped order is not canceled or made
   * processing again by refunding a cent first; one not shipped is not made completed).
   */
  byStaff?: boolean
}

/**
 * Moves an order to `to` (locking its row), or throws not_found / invalid_order_transition.
 * Returns the status it came from.
 */
export async function transitionOrder(trx: Tx, outbox: Outbox, input: TransitionInput): Promise<OrderStatus> {
  const current =
    input.locked ??
    (await trx
      .selectFrom('orders')
      .select(['status', 'number'])
      .where('id', '=', input.orderId)
      .forUpdate()
      .executeTakeFirst())
  if (!current) throw problem('not_found', `No order ${input.orderId}`)
  if (!canTransition(current.status, input.to) || (input.byStaff && current.status === 'refunded')) {
    throw problem('invalid_order_transition', `An order that is ${current.status} cannot become ${input.to}`)
  }
  if (input.byStaff && current.status === 'partially_refunded') {
    const before = await statusBeforeRefunds(trx, input.orderId)
    if (!canTransition(before, input.to))
      throw problem(
        'invalid_order_transition',
        `A partially refunded order that was ${before} cannot become ${input.to}`,
      )
  }
  await trx
    .updateTable('orders')
    .set({ ...(input.set ?? {}), status: input.to, updated_at: sql<Date>`now()` })
    .where('id', '=', input.orderId)
    .execute()
  await recordMove(trx, outbox, input, current.status, current.number)
  return current.status
}

/**
 * Moves an order to `to` only if it is in `from` now, in one conditional write rather than a
 * locking read and a write: for callers that expect one status (the capture of an order just
 * placed). False, with nothing done, when the order is not in `from`.
 */
export async function transitionFrom(
  trx: Tx,
  outbox: Outbox,
  from: OrderStatus,
  input: Omit<TransitionInput, 'locked' | 'byStaff'>,
): Promise<boolean> {
  if (!canTransition(from, input.to)) {
    throw problem('invalid_order_transition', `An order that is ${from} cannot become ${input.to}`)
  }
  const move = trx
    .updateTable('orders')
    .set({ ...(input.set ?? {}), status: input.to, updated_at: sql<Date>`now()` })
    .where('id', '=', input.orderId)
    .where('status', '=', from)
    .returning('number')
  const history = transitionRow(input.orderId, from, input.to, input.actor, input.reason ?? null)
  // The move, its history row and its event in one statement; none of it when the order is not
  // in `from`.
  const moved = await outbox.emitWith(
    trx,
    `order.${input.to}`,
    { order_id: input.orderId, from, to: input.to, ...input.event },
    input.orderId,
    {
      ctes: sql`moved as (${move}),
        history as (
          insert into order_transitions (id, order_id, from_status, to_status, actor, reason)
          select ${history.id}, ${history.order_id}, ${history.from_status}, ${history.to_status},
            ${history.actor}, ${history.reason} from moved),
        source as (select number as value from moved)`,
      field: 'number',
    },
  )
  return moved !== undefined
}

/** The history row and the `order.<status>` event of a move already written. */
async function recordMove(
  trx: Tx,
  outbox: Outbox,
  input: Pick<TransitionInput, 'orderId' | 'to' | 'actor' | 'reason' | 'event'>,
  from: OrderStatus,
  number: number | null,
): Promise<void> {
  await recordTransition(trx, input.orderId, from, input.to, input.actor, input.reason ?? null)
  await outbox.emit(
    trx,
    `order.${input.to}`,
    { order_id: input.orderId, number, from, to: input.to, ...input.event },
    input.orderId,
  )
}

/**
 * Moves the order from `from` to `to` when there is one and the state machine allows it, setting
 * `set` with the status; otherwise sets `set` alone (the order moved on meanwhile, or needs no
 * move). True when it moved.
 */
export async function transitionOrSet(
  trx: Tx,
  outbox: Outbox,
  from: OrderStatus,
  input: Omit<TransitionInput, 'to'> & { to: OrderStatus | null },
): Promise<boolean> {
  const { to } = input
  if (to && canTransition(from, to)) {
    await transitionOrder(trx, outbox, { ...input, to })
    return true
  }
  await trx
    .updateTable('orders')
    .set({ ...(input.set ?? {}), updated_at: sql<Date>`now()` })
    .where('id', '=', input.orderId)
    .execute()
  return false
}

/** Appends a row to the order's history. */
export async function recordTransition(
  trx: Tx,
  orderId: string,
  from: OrderStatus | null,
  to: OrderStatus,
  actor: string,
  reason: string | null,
): Promise<void> {
  await trx
    .insertInto('order_transitions')
    .values(transitionRow(orderId, from, to, actor, reason))
    .execute()
}

/** A row of the order's history, for callers that write it within a statement of their own. */
export function transitionRow(
  orderId: string,
  from: OrderStatus | null,
  to: OrderStatus,
  actor: string,
  reason: string | null,
) {
  return { id: newId('otr'), order_id: orderId, from_status: from, to_status: to, actor, reason }
}

/**
 * Order statuses from which the payment may still be captured: every one but canceled and the
 * refund statuses, since goods may ship before the money is taken (capture on shipment, cash on
 * delivery) and an authorisation left behind must stay capturable.
 */
export const CAPTURE_FROM: readonly OrderStatus[] = [
  'pending',
  'processing',
  'paid',
  'partially_fulfilled',
  'fulfilled',
  'completed',
]

/**
 * Records on an order, in the caller's transaction, that its payment was captured: a pending order
 * becomes paid; one that moved on (processing, shipped) only takes the new payment status; a canceled one
 * is left alone, since the cancel owns its payment from there. True when the order became paid.
 */
export async function recordOrderCaptured(
  trx: Tx,
  outbox: Outbox,
  input: {
    orderId: string
    actor: string
    reason: string
    paymentStatus: string
    event?: Record<string, unknown>
  },
): Promise<boolean> {
  const toPaid = {
    orderId: input.orderId,
    to: 'paid' as const,
    actor: input.actor,
    reason: input.reason,
    set: { payment_status: input.paymentStatus },
    ...(input.event ? { event: input.event } : {}),
  }
  // Nearly always the order is still pending (checkout captures right after placing it).
  if (await transitionFrom(trx, outbox, 'pending', toPaid)) return true
  const current = await trx
    .selectFrom('orders')
    .select(['status', 'payment_status', 'number'])
    .where('id', '=', input.orderId)
    .forUpdate()
    .executeTakeFirst()
  if (!current) return false
  if (current.status === 'pending') {
    await transitionOrder(trx, outbox, { ...toPaid, locked: current })
    return true
  }
  if (CAPTURE_FROM.includes(current.status) && current.payment_status !== input.paymentStatus) {
    await trx
      .updateTable('orders')
      .set({ payment_status: input.paymentStatus, updated_at: sql<Date>`now()` })
      .where('id', '=', input.orderId)
      .execute()
  }
  return false
}
