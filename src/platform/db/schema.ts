/**
 * The database as Kysely sees it: the platform's tables plus each module's, which each module
 * declares in its own tables.ts.
 */
import type { ColumnType, Generated } from 'kysely'
import type { CartsTables } from '../../modules/carts/tables.ts'
import type { CatalogTables } from '../../modules/catalog/tables.ts'
import type { IdentityTables } from '../../modules/identity/tables.ts'
import type { InventoryTables } from '../../modules/inventory/tables.ts'
import type { OrdersTables } from '../../modules/orders/tables.ts'
import type { PaymentsTables } from '../../modules/payments/tables.ts'
import type { TaxTables } from '../../modules/tax/tables.ts'

export interface IdempotencyKeysTable {
  principal: string
  key: string
  method: string
  path: string
  request_hash: string
  state: 'running' | 'done'
  response_status: number | null
  response_body: ColumnType<unknown, string | null | undefined, string | null>
  /** The response exactly as first sent, when it was sent as text (replays send these bytes). */
  response_text: string | null
  locked_at: Generated<Date>
  created_at: Generated<Date>
  completed_at: Date | null
}

export interface EventsTable {
  id: string
  type: string
  subject_id: string | null
  payload: ColumnType<Record<string, unknown>, string, string>
  occurred_at: Generated<Date>
  /** Taken when the event is written (migration 0027): bigint, read as text. */
  sequence: Generated<string>
  /** When every consumer (NATS, each listener) had the event; null while any has not. */
  published_at: Date | null
}

/** Consumers an in-flight event has been delivered to; see migration 0024. */
export interface EventDeliveriesTable {
  event_id: string
  /** `nats`, or the name a listener was registered under (`Outbox.on`). */
  consumer: string
  delivered_at: Generated<Date>
}

export interface PlatformTables {
  idempotency_keys: IdempotencyKeysTable
  events: EventsTable
  event_deliveries: EventDeliveriesTable
}

export interface DB
  extends PlatformTables,
    CatalogTables,
    IdentityTables,
    InventoryTables,
    TaxTables,
    CartsTables,
    PaymentsTables,
    OrdersTables {}
