/** Row types of the tables the orders module owns. */
import type { ColumnType, Generated } from 'kysely'
import type { Address } from '../carts/tables.ts'

type Json<T> = ColumnType<T, string | undefined, string>
type NullableJson<T> = ColumnType<T | null, string | null | undefined, string | null>
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
type Amount = ColumnType<number, number | undefined, number>

export type OrderStatus =
  | 'pending'
  | 'paid'
  | 'processing'
  | 'partially_fulfilled'
  | 'fulfilled'
  | 'completed'
  | 'canceled'
  | 'refunded'
  | 'partially_refunded'

export interface OrderSequencesTable {
  name: string
  next_value: Amount
}

export interface OrdersTable {
  id: string
  /** Null only inside the transaction that places the order. */
  number: ColumnType<number, number | null | undefined, number | null>
  cart_id: string
  status: OrderStatus
  payment_status: string
  fulfillment_status: Generated<string>
  customer_id: string | null
  email: string
  region_id: string
  currency_code: string
  prices_include_tax: boolean
  shipping_address: Json<Address> | null
  billing_address: NullableJson<Address>
  shipping_method: NullableJson<Record<string, unknown>>
  subtotal: Amount
  discount_total: Amount
  shipping_total: Amount
  tax_total: Amount
  total: Amount
  refunded_total: Amount
  taxes: Json<unknown[]>
  tax_provider: string | null
  reservation_id: string | null
  payment_id: string | null
  promo_codes: ColumnType<string[], string[] | undefined, string[]>
  metadata: Json<Record<string, unknown>>
  placed_at: Generated<Date>
  canceled_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  created_at: Generated<Date>
  updated_at: Timestamp
}

export interface OrderLinesTable {
  id: string
  order_id: string
  position: number
  variant_id: string
  product_id: string
  sku: string
  title: string
  product_title: string
  quantity: number
  unit_amount: Amount
  subtotal: Amount
  discount_amount: Amount
  tax_amount: Amount
  total: Amount
  taxes: Json<unknown[]>
  tax_category: string
  fulfilled_quantity: Generated<number>
  refunded_quantity: Generated<number>
  refunded_amount: Amount
}

export interface OrderTransitionsTable {
  id: string
  order_id: string
  from_status: string | null
  to_status: string
  actor: string
  reason: string | null
  created_at: Generated<Date>
}

export interface OrderNotesTable {
  id: string
  order_id: string
  author: string
  body: string
  created_at: Generated<Date>
}

export type OrderRefundStatus = 'pending' | 'booked' | 'void' | 'failed'

/** A refund reserved against the order's remainder before its money moves. */
export interface OrderRefundsTable {
  id: string
  order_id: string
  refund_key: string
  amount: Amount
  shipping_amount: Amount
  lines: Json<Array<{ line_id: string; quantity: number; amount: number }>>
  reason: string | null
  status: Generated<OrderRefundStatus>
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface OrdersTables {
  order_sequences: OrderSequencesTable
  orders: OrdersTable
  order_lines: OrderLinesTable
  order_transitions: OrderTransitionsTable
  order_notes: OrderNotesTable
  order_refunds: OrderRefundsTable
}
