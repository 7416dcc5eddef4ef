/**
 * Orders: created once from a cart at checkout, with a gapless human number, copies of the lines,
 * prices and tax as the shopper was charged (an order never changes when the catalog does), and
 * read back as one view for the store and the back office.
 */
import { sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { newId } from '../../platform/ids.ts'
import type { CartRow } from '../carts/load.ts'
import type { Address } from '../carts/tables.ts'
import type { CartTotals } from '../carts/totals.ts'
import { transitionRow } from './state.ts'
import type { OrderStatus } from './tables.ts'

export interface OrderLineView {
  id: string
  variant_id: string
  product_id: string
  sku: string
  title: string
  product_title: string
  quantity: number
  unit_amount: number
  subtotal: number
  discount_amount: number
  tax_amount: number
  total: number
  taxes: unknown[]
  tax_category: string
  fulfilled_quantity: number
  refunded_quantity: number
  refunded_amount: number
}

export interface OrderView {
  id: string
  number: number
  cart_id: string
  status: OrderStatus
  payment_status: string
  fulfillment_status: string
  customer_id: string | null
  email: string
  region_id: string
  currency: string
  prices_include_tax: boolean
  /** Null when nothing in the order is shipped (downloads, gift codes). */
  shipping_address: Address | null
  billing_address: Address | null
  shipping_method: Record<string, unknown> | null
  lines: OrderLineView[]
  totals: {
    subtotal: number
    discount: number
    shipping: number
    tax: number
    total: number
    refunded: number
  }
  taxes: unknown[]
  payment_id: string | null
  reservation_id: string | null
  promo_codes: string[]
  metadata: Record<string, unknown>
  placed_at: string
  canceled_at: string | null
  updated_at: string
}

export interface PlaceOrderInput {
  /** The order's id when the caller needs it before the order exists (to link it first). */
  id?: string
  cart: CartRow
  totals: CartTotals
  paymentId: string
  paymentStatus: string
  reservationId: string | null
  /** pending until paid; paid when the payment was captured with the authorisation. */
  status: OrderStatus
  actor: string
}

/**
 * The next order number, for Outbox.emitWith: the counter row is updated in the caller's
 * transaction, so a rolled-back checkout gives its number back: numbers are gapless and unique.
 * That row is the one point every checkout contends on, locked from this statement to commit, so
 * it comes last, in one statement with the order.placed event that carries the number.
 */
function nextNumber(orderId: string) {
  return sql`taken as (
      update order_sequences set next_value = next_value + 1 where name = 'orders'
      returning next_value - 1 as number),
    source as (
      update orders set number = taken.number from taken where orders.id = ${orderId}
      returning orders.number as value)`
}

/**
 * Creates the order for a cart (one per cart: the cart_id is unique) and emits order.placed.
 * `beforeNumbering` runs the caller's other work in the same transaction before the number is
 * taken, so the counter row stays locked for as short a time as possible.
 */
export async function placeOrder(
  trx: Tx,
  outbox: Outbox,
  input: PlaceOrderInput,
  beforeNumbering?: (orderId: string) => Promise<void>,
): Promise<OrderView> {
  const { cart, totals } = input
  const id = input.id ?? newId('ord')
  const lineTotals = new Map(totals.lines.map((l) => [l.id, l]))
  const lines = cart.lines.map((line, position) => {
    const t = lineTotals.get(line.id)!
    return {
      id: newId('ordl'),
      order_id: id,
      position,
      variant_id: line.variant_id,
      product_id: line.product_id,
      sku: line.sku,
      title: line.title,
      product_title: line.product_title,
      quantity: line.quantity,
      unit_amount: line.unit_amount,
      subtotal: t.subtotal,
      discount_amount: t.discount_amount,
      tax_amount: t.tax_amount,
      total: t.total,
      taxes: t.taxes as unknown[],
      tax_category: line.tax_category,
      fulfilled_quantity: 0,
      refunded_quantity: 0,
      refunded_amount: 0,
    }
  })
  // The order, its lines and its first history row in one statement: checkout's placing
  // transaction is a row of round trips, and these three need nothing from one another.
  const row = await trx
    .with('lines', (db) =>
      db.insertInto('order_lines').values(lines.map((l) => ({ ...l, taxes: JSON.stringify(l.taxes) }))),
    )
    .with('history', (db) =>
      db.insertInto('order_transitions').values(transitionRow(id, null, input.status, input.actor, 'placed')),
    )
    .insertInto('orders')
    .values({
      id,
      cart_id: cart.id,
      status: input.status,
      payment_status: input.paymentStatus,
      customer_id: cart.customer_id,
      email: cart.email!,
      region_id: cart.region_id,
      currency_code: cart.currency_code,
      prices_include_tax: cart.prices_include_tax,
      shipping_address: cart.shipping_address ? JSON.stringify(cart.shipping_address) : null,
      billing_address: cart.billing_address ? JSON.stringify(cart.billing_address) : null,
      shipping_method: totals.shipping ? JSON.stringify(totals.shipping) : null,
      subtotal: totals.subtotal,
      discount_total: totals.discount_total,
      shipping_total: totals.shipping_total,
      tax_total: totals.tax_total,
      total: totals.total,
      taxes: JSON.stringify(totals.taxes),
      tax_provider: totals.tax_provider,
      reservation_id: input.reservationId,
      payment_id: input.paymentId,
      promo_codes: cart.promo_codes,
      metadata: JSON.stringify(cart.metadata ?? {}),
      updated_at: sql<Date>`now()`,
    })
    .returningAll()
    .executeTakeFirstOrThrow()
  await beforeNumbering?.(id)
  const numbered = await outbox.emitWith(
    trx,
    'order.placed',
    {
      order_id: id,
      cart_id: cart.id,
      customer_id: cart.customer_id,
      email: cart.email,
      currency: cart.currency_code,
      total: totals.total,
      tax_total: totals.tax_total,
      lines: cart.lines.map((l) => ({ variant_id: l.variant_id, sku: l.sku, quantity: l.quantity })),
    },
    id,
    { ctes: nextNumber(id), field: 'number' },
    { whileLocked: true },
  )
  const number = Number(numbered!.value)
  return orderView({ ...row, number }, lines)
}

/** An order with its lines; undefined when unknown (or, with customerId, not that customer's). */
export async function findOrder(
  db: Queryable,
  id: string,
  options: { customerId?: string } = {},
): Promise<OrderView | undefined> {
  let query = db.selectFrom('orders').selectAll().where('id', '=', id)
  if (options.customerId !== undefined) query = query.where('customer_id', '=', options.customerId)
  const order = await query.executeTakeFirst()
  if (!order) return undefined
  const lines = await db
    .selectFrom('order_lines')
    .selectAll()
    .where('order_id', '=', id)
    .orderBy('position')
    .execute()
  return orderView(order, lines)
}

/** The order of a cart, if one was placed. */
export async function findOrderOfCart(db: Queryable, cartId: string): Promise<OrderView | undefined> {
  const row = await db.selectFrom('orders').select('id').where('cart_id', '=', cartId).executeTakeFirst()
  return row ? findOrder(db, row.id) : undefined
}

type OrderRow = Awaited<ReturnType<typeof selectOrder>>
type OrderLineRow = Awaited<ReturnType<typeof selectLines>>[number]
function selectOrder(db: Queryable) {
  return db.selectFrom('orders').selectAll().executeTakeFirstOrThrow()
}
function selectLines(db: Queryable) {
  return db.selectFrom('order_lines').selectAll().execute()
}

/** The response shape of an order row and its lines. */
export function orderView(order: OrderRow, lines: OrderLineRow[]): OrderView {
  return {
    id: order.id,
    number: Number(order.number),
    cart_id: order.cart_id,
    status: order.status,
    payment_status: order.payment_status,
    fulfillment_status: order.fulfillment_status,
    customer_id: order.customer_id,
    email: order.email,
    region_id: order.region_id,
    currency: order.currency_code,
    prices_include_tax: order.prices_include_tax,
    shipping_address: order.shipping_address,
    billing_address: order.billing_address,
    shipping_method: order.shipping_method,
    lines: lines.map((l) => ({
      id: l.id,
      variant_id: l.variant_id,
      product_id: l.product_id,
      sku: l.sku,
      title: l.title,
      product_title: l.product_title,
      quantity: l.quantity,
      unit_amount: Number(l.unit_amount),
      subtotal: Number(l.subtotal),
      discount_amount: Number(l.discount_amount),
      tax_amount: Number(l.tax_amount),
      total: Number(l.total),
      taxes: l.taxes,
      tax_category: l.tax_category,
      fulfilled_quantity: l.fulfilled_quantity,
      refunded_quantity: l.refunded_quantity,
      refunded_amount: Number(l.refunded_amount),
    })),
    totals: {
      subtotal: Number(order.subtotal),
      discount: Number(order.discount_total),
      shipping: Number(order.shipping_total),
      tax: Number(order.tax_total),
      total: Number(order.total),
      refunded: Number(order.refunded_total),
    },
    taxes: order.taxes,
    payment_id: order.payment_id,
    reservation_id: order.reservation_id,
    promo_codes: order.promo_codes,
    metadata: order.metadata,
    placed_at: order.placed_at.toISOString(),
    canceled_at: order.canceled_at ? new Date(order.canceled_at).toISOString() : null,
    updated_at: new Date(order.updated_at).toISOString(),
  }
}
