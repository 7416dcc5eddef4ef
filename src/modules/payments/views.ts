/** Payments and refunds as the API and other modules see them, and the reads that return them. */
import type { Selectable } from 'kysely'
import type { Queryable } from '../../platform/db/transaction.ts'
import type { PaymentRefundsTable, PaymentStatus, PaymentsTable } from './tables.ts'

export interface PaymentView {
  id: string
  cart_id: string
  order_id: string | null
  provider: string
  status: PaymentStatus
  amount: number
  captured_amount: number
  /** Refunded and being refunded: a refund under way holds its amount until it fails. */
  refunded_amount: number
  currency: string
  provider_ref: string | null
  next_action: Record<string, unknown> | null
  failure_code: string | null
  failure_message: string | null
  created_at: string
  updated_at: string
}

export interface RefundView {
  id: string
  payment_id: string
  amount: number
  currency: string
  reason: string | null
  status: 'succeeded' | 'pending' | 'failed'
  provider_ref: string | null
  actor: string
  created_at: string
}

export type PaymentRow = Selectable<PaymentsTable>
export type RefundRow = Selectable<PaymentRefundsTable>

const iso = (d: Date | string) => new Date(d).toISOString()

export function toPaymentView(row: PaymentRow): PaymentView {
  return {
    id: row.id,
    cart_id: row.cart_id,
    order_id: row.order_id,
    provider: row.provider,
    status: row.status,
    // bigint columns: numbers from pg's parser, but never trust a driver with money arithmetic.
    amount: Number(row.amount),
    captured_amount: Number(row.captured_amount),
    refunded_amount: Number(row.refunded_amount),
    currency: row.currency_code,
    provider_ref: row.provider_ref,
    next_action: row.next_action,
    failure_code: row.failure_code,
    failure_message: row.failure_message,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  }
}

export function toRefundView(row: RefundRow, currency: string): RefundView {
  return {
    id: row.id,
    payment_id: row.payment_id,
    amount: Number(row.amount),
    currency,
    reason: row.reason,
    status: row.status,
    provider_ref: row.provider_ref,
    actor: row.actor,
    created_at: iso(row.created_at),
  }
}

/** The payment with this id, or undefined. */
export async function findPayment(db: Queryable, id: string): Promise<PaymentView | undefined> {
  const row = await db.selectFrom('payments').selectAll().where('id', '=', id).executeTakeFirst()
  return row && toPaymentView(row)
}

/** Every payment attempt of a cart, oldest first (a declined card, then the one that worked). */
export async function paymentsOfCart(db: Queryable, cartId: string): Promise<PaymentView[]> {
  const rows = await db
    .selectFrom('payments')
    .selectAll()
    .where('cart_id', '=', cartId)
    .orderBy('id')
    .execute()
  return rows.map(toPaymentView)
}

/** The idempotency keys of a payment's refunds: the refunds that reached the payments service. */
export async function refundKeysOfPayment(db: Queryable, paymentId: string): Promise<Set<string>> {
  const rows = await db
    .selectFrom('payment_refunds')
    .select('idempotency_key')
    .where('payment_id', '=', paymentId)
    .execute()
  return new Set(rows.map((r) => r.idempotency_key))
}

/**
 * The refunds of a payment by the caller's key, oldest first, with whether each failed and whether
 * it was made at the processor (its dashboard: recorded from a webhook, not asked for here). Those
 * that did not fail hold money (succeeded, or pending: accepted by the processor, or reserved while
 * it is called), and their sum is the payment's refunded_amount; an order that booked a failed one
 * keeps counting it until it takes the refund back (orders' refund.failed listener).
 */
export async function refundAmountsOfPayment(
  db: Queryable,
  paymentId: string,
): Promise<Array<{ id: string; key: string; amount: number; failed: boolean; elsewhere: boolean }>> {
  const rows = await db
    .selectFrom('payment_refunds')
    .select(['id', 'idempotency_key', 'amount', 'status', 'actor'])
    .where('payment_id', '=', paymentId)
    .orderBy('created_at')
    .orderBy('id')
    .execute()
  return rows.map((r) => ({
    id: r.id,
    key: r.idempotency_key,
    amount: Number(r.amount),
    failed: r.status === 'failed',
    elsewhere: r.actor.startsWith('webhook:'),
  }))
}

/** The refunds of a payment, oldest first, failed ones included. */
export async function refundsOfPayment(db: Queryable, paymentId: string): Promise<RefundView[]> {
  const rows = await db
    .selectFrom('payment_refunds')
    .innerJoin('payments', 'payments.id', 'payment_refunds.payment_id')
    .selectAll('payment_refunds')
    .select('payments.currency_code')
    .where('payment_refunds.payment_id', '=', paymentId)
    .orderBy('payment_refunds.id')
    .execute()
  return rows.map((r) => toRefundView(r, r.currency_code))
}
