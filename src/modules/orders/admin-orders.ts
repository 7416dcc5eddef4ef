/**
 * The back office's reads of orders: the filtered, searchable list (newest first, by cursor), the
 * detail with history and notes, and the CSV export built page by page from the same filters.
 * Besides them, the two staff actions that are not cancel or refund: capture and status moves.
 */
import { Readable } from 'node:stream'
import { stringify } from 'csv-stringify/sync'
import { sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { withTransaction } from '../../platform/db/transaction.ts'
import { pausepoint } from '../../platform/failpoints.ts'
import { ProblemError, problem } from '../../platform/http/errors.ts'
import { decodeCursor, toPage } from '../../platform/http/pagination.ts'
import { formatMinor as formatMinorUnits, isCurrency, minorUnits } from '../../platform/money.ts'
import { inventoryContext } from '../inventory/context.ts'
import { capturePayment, findPayment, type PaymentView } from '../payments/service.ts'
import { refundCaptureOfCanceled } from './cancel.ts'
import type { CommerceDeps } from './deps.ts'
import { notesOf, type OrderNoteView } from './notes.ts'
import { findOrder, type OrderView, orderView } from './orders.ts'
import { followProcessorRefunds } from './payment-events.ts'
import { CAPTURE_FROM, recordOrderCaptured, transitionOrder } from './state.ts'
import { settleOrderStock } from './stock.ts'
import type { OrderStatus } from './tables.ts'

export interface OrderFilters {
  status?: OrderStatus | undefined
  payment_status?: string | undefined
  fulfillment_status?: string | undefined
  customer_id?: string | undefined
  email?: string | undefined
  q?: string | undefined
  placed_after?: string | undefined
  placed_before?: string | undefined
}

/** `like` with the pattern's own wildcards taken literally. */
function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`)
}

/** The orders query with the filters applied (no order, no limit). */
function filtered(db: Queryable, filters: OrderFilters) {
  let query = db.selectFrom('orders')
  if (filters.status !== undefined) query = query.where('status', '=', filters.status)
  if (filters.payment_status !== undefined) query = query.where('payment_status', '=', filters.payment_status)
  if (filters.fulfillment_status !== undefined)
    query = query.where('fulfillment_status', '=', filters.fulfillment_status)
  if (filters.customer_id !== undefined) query = query.where('customer_id', '=', filters.customer_id)
  if (filters.email !== undefined)
    query = query.where(sql<string>`lower(email)`, '=', filters.email.toLowerCase())
  if (filters.placed_after !== undefined)
    query = query.where('placed_at', '>=', new Date(filters.placed_after))
  if (filters.placed_before !== undefined)
    query = query.where('placed_at', '<', new Date(filters.placed_before))
  if (filters.q !== undefined) {
    const q = filters.q.trim()
    const number = /^#?\s*(\d{1,15})$/.exec(q)
    if (number) {
      query = query.where('number', '=', Number(number[1]))
    } else {
      const prefix = `${escapeLike(q.toLowerCase())}%`
      query = query.where(sql<boolean>`lower(email) like ${prefix}`)
    }
  }
  return query
}

/** Orders matching the filters, newest first, a page at a time. */
export async function listOrders(
  db: Queryable,
  filters: OrderFilters,
  page: { limit: number; cursor?: string | undefined },
): Promise<{ data: OrderView[]; next_cursor: string | null }> {
  let query = filtered(db, filters).selectAll()
  if (page.cursor !== undefined) {
    const [after] = decodeCursor(page.cursor, ['string'])
    query = query.where('id', '<', after as string)
  }
  const rows = await query
    .orderBy('id', 'desc')
    .limit(page.limit + 1)
    .execute()
  const result = toPage(rows, page.limit, (r) => [r.id])
  return { data: await withLines(db, result.data), next_cursor: result.next_cursor }
}

/** The order views of rows, their lines read in one query. */
export async function withLines(
  db: Queryable,
  rows: Array<Parameters<typeof orderView>[0]>,
): Promise<OrderView[]> {
  if (rows.length === 0) return []
  const lines = await db
    .selectFrom('order_lines')
    .selectAll()
    .where(
      'order_id',
      'in',
      rows.map((r) => r.id),
    )
    .orderBy('order_id')
    .orderBy('position')
    .execute()
  const byOrder = new Map<string, typeof lines>()
  for (const line of lines) {
    const list = byOrder.get(line.order_id) ?? []
    list.push(line)
    byOrder.set(line.order_id, list)
  }
  return rows.map((r) => orderView(r, byOrder.get(r.id) ?? []))
}

export interface OrderTransitionView {
  id: string
  from: OrderStatus | null
  to: OrderStatus
  actor: string
  reason: string | null
  at: string
}

export interface OrderDetailView extends OrderView {
  transitions: OrderTransitionView[]
  notes: OrderNoteView[]
}

/** An order with its status history (oldest first) and notes; undefined when unknown. */
export async function orderDetail(db: Queryable, id: string): Promise<OrderDetailView | undefined> {
  const order = await findOrder(db, id)
  if (!order) return undefined
  const [transitions, notes] = await Promise.all([
    db.selectFrom('order_transitions').selectAll().where('order_id', '=', id).orderBy('id').execute(),
    notesOf(db, id),
  ])
  return {
    ...order,
    transitions: transitions.map((t) => ({
      id: t.id,
      from: t.from_status as OrderStatus | null,
      to: t.to_status as OrderStatus,
      actor: t.actor,
      reason: t.reason,
      at: new Date(t.created_at).toISOString(),
    })),
    notes,
  }
}

/** Rows per query of the export. */
export const EXPORT_PAGE_SIZE = 500

const EXPORT_AMOUNTS = [
  ['subtotal', 'subtotal'],
  ['discount', 'discount_total'],
  ['shipping', 'shipping_total'],
  ['tax', 'tax_total'],
  ['total', 'total'],
  ['refunded', 'refunded_total'],
] as const

export const EXPORT_COLUMNS = [
  'number',
  'id',
  'placed_at',
  'status',
  'payment_status',
  'fulfillment_status',
  'email',
  'currency',
  ...EXPORT_AMOUNTS.flatMap(([name]) => [name, `${name}_decimal`]),
]

/** An amount of minor units as a decimal string in the currency's minor unit: 1999 EUR → "19.99". */
export function formatMinor(amount: number, currency: string): string {
  return formatMinorUnits(amount, isCurrency(currency) ? minorUnits(currency) : 2)
}

/** A spreadsheet reads a cell starting with = + - @ as a formula: such text is quoted with a '. */
function safeCell(value: string): string {
  return /^[=+\-@\t\r]/.test(value) ? `'${value}` : value
}

/** The export file, chunk by chunk: the header, then one chunk per page of orders. */
export async function* exportOrders(db: Queryable, filters: OrderFilters): AsyncGenerator<string> {
  yield stringify([EXPORT_COLUMNS])
  let after: string | undefined
  for (;;) {
    let query = filtered(db, filters).selectAll()
    if (after !== undefined) query = query.where('id', '<', after)
    const rows = await query.orderBy('id', 'desc').limit(EXPORT_PAGE_SIZE).execute()
    if (rows.length === 0) return
    yield stringify(
      rows.map((r) => [
        Number(r.number),
        r.id,
        new Date(r.placed_at).toISOString(),
        r.status,
        safeCell(r.payment_status),
        safeCell(r.fulfillment_status),
        safeCell(r.email),
        r.currency_code,
        ...EXPORT_AMOUNTS.flatMap(([, column]) => {
          const amount = Number(r[column])
          return [amount, formatMinor(amount, r.currency_code)]
        }),
      ]),
    )
    if (rows.length < EXPORT_PAGE_SIZE) return
    after = rows[rows.length - 1]!.id
  }
}

/**
 * The export as a readable stream, for `reply.send`. The first page is read before the stream is
 * handed over: a query that fails on what the filters hold (text PostgreSQL refuses, say) is then
 * answered as a problem, where once streaming it could only cut the 200 off mid-file.
 */
export async function exportOrdersStream(db: Queryable, filters: OrderFilters): Promise<Readable> {
  const chunks = exportOrders(db, filters)
  const header = await chunks.next()
  const firstPage = await chunks.next()
  async function* rest() {
    if (!header.done) yield header.value
    if (!firstPage.done) yield firstPage.value
    yield* chunks
  }
  return Readable.from(rest(), { objectMode: false })
}

/** Statuses staff may move an order to by hand; the others have their own routes. */
export const STAFF_TARGETS: readonly OrderStatus[] = [
  'processing',
  'partially_fulfilled',
  'fulfilled',
  'completed',
]

const OWN_ROUTE: Partial<Record<OrderStatus, string>> = {
  canceled: 'POST /admin/orders/:id/cancel',
  refunded: 'POST /admin/orders/:id/refunds',
  partially_refunded: 'POST /admin/orders/:id/refunds',
  paid: 'POST /admin/orders/:id/capture',
}

/**
 * A staff-driven status move (processing, fulfilled, completed …), checked by the state machine.
 * Moves with money or stock attached (paid, canceled, refunds) are refused here: they have routes
 * that do the rest of the work.
 */
export async function moveOrder(
  deps: Pick<CommerceDeps, 'db' | 'outbox' | 'kv'>,
  orderId: string,
  input: { to: OrderStatus; reason?: string | undefined; actor: string },
): Promise<OrderView> {
  if (!STAFF_TARGETS.includes(input.to)) {
    const route = OWN_ROUTE[input.to]
    throw problem(
      'invalid_order_transition',
      route ? `Use ${route} to make an order ${input.to}` : `An order cannot be moved to ${input.to} by hand`,
      { errors: [{ path: 'body.to', message: `must be one of ${STAFF_TARGETS.join(', ')}` }] },
    )
  }
  const fulfillment =
    input.to === 'fulfilled'
      ? 'fulfilled'
      : input.to === 'partially_fulfilled'
        ? 'partially_fulfilled'
        : undefined
  const ctx = inventoryContext(deps, input.actor)
  const order = await withTransaction(deps.db, async (trx) => {
    await transitionOrder(trx, deps.outbox, {
      orderId,
      to: input.to,
      actor: input.actor,
      reason: input.reason ?? null,
      byStaff: true,
      ...(fulfillment ? { set: { fulfillment_status: fulfillment } } : {}),
    })
    await settleOrderStock(trx, ctx, orderId, input.to)
    return (await findOrder(trx, orderId))!
  })
  await ctx.publish()
  return order
}

/**
 * Captures the order's payment (the whole authorisation, or confirms a manual payment arrived),
 * and records it on the order in the same transaction: pending becomes paid; an order moved on
 * (processing, shipped) keeps its status. The provider is called outside any transaction with a
 * key derived from the payment, so a retry captures once; a capture already recorded answers with
 * the order as it is. An order canceled while the processor captured has the capture refunded,
 * and the answer is 409 invalid_order_transition; a manual payment's order canceled first (the
 * expiry of unpaid orders, staff) gets the same answer with nothing recorded.
 */
export async function captureOrder(deps: CommerceDeps, orderId: string, actor: string): Promise<OrderView> {
  const order = await findOrder(deps.db, orderId)
  if (!order) throw problem('not_found', `No order ${orderId}`)
  if (!CAPTURE_FROM.includes(order.status)) {
    throw problem('invalid_order_transition', `An order that is ${order.status} cannot be captured`)
  }
  if (!order.payment_id) throw problem('payment_not_capturable', `Order ${orderId} has no payment`)
  const existing = await findPayment(deps.db, order.payment_id)
  if (!existing) throw problem('payment_not_capturable', `Order ${orderId} has no payment`)
  const ctx = inventoryContext(deps, actor)
  const record = async (trx: Tx, payment: PaymentView): Promise<OrderView> => {
    await recordOrderCaptured(trx, deps.outbox, {
      orderId,
      actor,
      reason: 'payment captured',
      paymentStatus: payment.status,
      event: { payment_id: payment.id, amount: payment.captured_amount },
    })
    // A refund made at the processor may be counted on the order already (its event was followed
    // while the order was pending): the order moves on to its refund status now, not paid.
    await followProcessorRefunds(trx, ctx, orderId, { onlyIfCounted: true })
    return (await findOrder(trx, orderId))!
  }
  const recorded: { order?: OrderView } = {}
  let payment: PaymentView
  try {
    payment = await capturePayment(deps, order.payment_id, {
      actor,
      // On the order in the transaction that records the capture, which updates the payment's row
      // first: the expiry of unpaid orders passes over a payment whose capture is under way.
      onCaptured: async (trx, captured) => {
        await pausepoint('orders.capture_recording')
        recorded.order = await record(trx, captured)
        // A manual payment's capture moves no money, it records that the money arrived: on an
        // order canceled meanwhile (unpaid for too long, or by staff) nothing is recorded, rather
        // than a capture and a refund that nobody paid.
        if (recorded.order.status === 'canceled' && existing.provider === 'manual')
          throw canceledFirst(orderId)
      },
    })
  } catch (error) {
    // The payment canceled with its order before this capture reached it.
    if (error instanceof ProblemError && error.code === 'payment_not_capturable') {
      if ((await findOrder(deps.db, orderId))?.status === 'canceled') throw canceledFirst(orderId)
    }
    throw error
  }
  // Captured before (a webhook, or an earlier attempt that stopped before the order): recorded now.
  const captured = recorded.order ?? (await withTransaction(deps.db, (trx) => record(trx, payment)))
  await ctx.publish()
  // Canceled while the processor captured: the cancel had nothing to refund yet, so it is done here.
  if (captured.status === 'canceled' && (await refundCaptureOfCanceled(deps, orderId, actor))) {
    throw problem(
      'invalid_order_transition',
      `Order ${orderId} was canceled while its payment was captured: the capture was refunded`,
    )
  }
  return captured
}

function canceledFirst(orderId: string) {
  return problem(
    'invalid_order_transition',
    `Order ${orderId} was canceled before its payment was captured: nothing was recorded`,
  )
}
