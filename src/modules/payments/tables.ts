/** Row types of the tables the payments module owns. */
import type { ColumnType, Generated } from 'kysely'

type Json<T> = ColumnType<T, string | undefined, string>
type NullableJson<T> = ColumnType<T | null, string | null | undefined, string | null>
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
type Amount = ColumnType<number, number | undefined, number>

export type PaymentStatus =
  | 'pending'
  | 'requires_action'
  | 'authorized'
  | 'captured'
  | 'partially_refunded'
  | 'refunded'
  | 'canceled'
  | 'failed'
  | 'awaiting_transfer'

export interface PaymentsTable {
  id: string
  cart_id: string
  order_id: string | null
  provider: string
  status: Generated<PaymentStatus>
  currency_code: string
  amount: Amount
  captured_amount: Amount
  refunded_amount: Amount
  provider_ref: string | null
  payment_method: string | null
  card_fingerprint: string | null
  next_action: NullableJson<Record<string, unknown>>
  failure_code: string | null
  failure_message: string | null
  metadata: Json<Record<string, unknown>>
  created_at: Generated<Date>
  updated_at: Timestamp
}

export interface PaymentRefundsTable {
  id: string
  payment_id: string
  amount: Amount
  reason: string | null
  provider_ref: string | null
  status: 'succeeded' | 'pending' | 'failed'
  /** The caller's key, unique per payment: a retried refund resumes its first attempt. */
  idempotency_key: string
  actor: string
  created_at: Generated<Date>
}

export interface PaymentWebhookEventsTable {
  provider: string
  event_id: string
  type: string
  received_at: Generated<Date>
}

export interface TestGatewayOperationsTable {
  idempotency_key: string
  kind: 'authorize' | 'capture' | 'refund' | 'cancel'
  charge_id: string
  amount: Amount
  currency_code: string
  outcome: string
  created_at: Generated<Date>
}

export interface PaymentsTables {
  payments: PaymentsTable
  payment_refunds: PaymentRefundsTable
  payment_webhook_events: PaymentWebhookEventsTable
  test_gateway_operations: TestGatewayOperationsTable
}
