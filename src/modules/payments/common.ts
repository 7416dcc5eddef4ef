/** What the payment service's parts share: their dependencies, state sets and row helpers. */
import { type Kysely, sql } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import type { Queryable } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { type ProblemError, problem } from '../../platform/http/errors.ts'
import type { Runtime } from '../../platform/runtime.ts'
import type { FoundCharge, PaymentProviderUnavailable } from './provider.ts'
import { type PaymentProviders, paymentProvidersOf, providerOf } from './registry.ts'
import type { PaymentStatus } from './tables.ts'
import type { PaymentRow } from './views.ts'

/** What the functions that call a provider need. */
export interface PaymentDeps {
  db: Kysely<DB>
  providers: PaymentProviders
  outbox: Outbox
}

/** The deps of this node: its database, outbox and (one per runtime) provider registry. */
export function paymentDeps(runtime: Runtime): PaymentDeps {
  return { db: runtime.database.db, providers: paymentProvidersOf(runtime), outbox: runtime.outbox }
}

/** Captured in part or whole: capturing again is a no-op, cancelling is refused, refunding allowed. */
export const CAPTURED: readonly PaymentStatus[] = ['captured', 'partially_refunded', 'refunded']
/** Waiting for a capture: a card authorisation, or a bank transfer or cash not yet received. */
export const CAPTURABLE: readonly PaymentStatus[] = ['authorized', 'awaiting_transfer']
/** States a late authorisation answer must not overwrite. */
export const SETTLED: readonly PaymentStatus[] = [...CAPTURED, 'canceled']

export const now = () => sql<Date>`now()`

/** 503 for a processor that could not answer: the caller retries later, with the same key. */
export function providerUnavailable(error: PaymentProviderUnavailable): ProblemError {
  return problem('payment_provider_unavailable', error.message, { headers: { 'retry-after': '5' } })
}

/** Locks and returns the payment row; 404 when there is none. */
export async function lockPayment(trx: Queryable, id: string): Promise<PaymentRow> {
  const row = await trx.selectFrom('payments').selectAll().where('id', '=', id).forUpdate().executeTakeFirst()
  if (!row) throw problem('not_found', `No payment ${id}`)
  return row
}

/** Reads the payment row without locking it; 404 when there is none. */
export async function loadPayment(db: Queryable, id: string): Promise<PaymentRow> {
  const row = await db.selectFrom('payments').selectAll().where('id', '=', id).executeTakeFirst()
  if (!row) throw problem('not_found', `No payment ${id}`)
  return row
}

/** The payload of payment.* events: enough for a listener to act without reading our tables. */
export function eventPayload(row: PaymentRow, extra: Record<string, unknown> = {}) {
  return {
    payment_id: row.id,
    order_id: row.order_id,
    cart_id: row.cart_id,
    provider: row.provider,
    amount: Number(row.captured_amount) || Number(row.amount),
    currency: row.currency_code,
    ...extra,
  }
}

/**
 * Asks the payment's processor what it holds of the payment's charge: by the charge `providerRef`
 * names, else by the payment's id and the time it was made. undefined when the processor offers no
 * lookup (findCharge), null when it finds no charge. A processor out of reach throws
 * PaymentProviderUnavailable, for each caller to answer as its own path needs.
 */
export async function findChargeOf(
  deps: PaymentDeps,
  payment: Pick<PaymentRow, 'id' | 'provider' | 'created_at' | 'updated_at'>,
  providerRef: string | null | undefined,
): Promise<FoundCharge | null | undefined> {
  const provider = providerOf(deps.providers, payment.provider)
  if (!provider.findCharge) return undefined
  return provider.findCharge({
    payment_id: payment.id,
    created_at: new Date(payment.created_at),
    given_up_at: new Date(payment.updated_at),
    provider_ref: providerRef ?? undefined,
  })
}
