/**
 * Applying what a processor's webhook reports. Processors deliver at least once and in any order,
 * so each event id is recorded in the same transaction as the change it causes: a redelivery finds
 * it and changes nothing, and an event that failed half-way is retried whole. State only moves
 * forward: a late "authorized" never undoes a capture, a late "failed" never undoes an authorisation.
 */
import type { Updateable } from 'kysely'
import { type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { CAPTURABLE, eventPayload, now, type PaymentDeps } from './common.ts'
import type { WebhookUpdate } from './provider.ts'
import { recordRefundElsewhere, settleRefundReport } from './refunds.ts'
import type { PaymentStatus, PaymentsTable } from './tables.ts'
import { type PaymentRow, type PaymentView, toPaymentView } from './views.ts'

const UNSETTLED: readonly PaymentStatus[] = ['pending', 'requires_action']

export interface WebhookOutcome {
  /** The event was applied before: nothing was done this time. */
  duplicate: boolean
  /** The payment the event is about, after the change; null when no payment of ours matches. */
  payment: PaymentView | null
}

/** Records the event and applies it to the payment it names, exactly once. */
export async function applyWebhook(
  deps: PaymentDeps,
  providerId: string,
  update: WebhookUpdate,
): Promise<WebhookOutcome> {
  return withTransaction(deps.db, async (trx) => {
    const seen = await trx
      .insertInto('payment_webhook_events')
      .values({ provider: providerId, event_id: update.event_id, type: update.type })
      .onConflict((oc) => oc.columns(['provider', 'event_id']).doNothing())
      .returning('event_id')
      .executeTakeFirst()
    if (!seen) return { duplicate: true, payment: null }
    if (!update.provider_ref) return { duplicate: false, payment: null }
    // An event about a payment not recorded yet (the checkout's own transaction has not committed)
    // is dropped: that checkout records the same state from the processor's synchronous answer.
    const payment = await trx
      .selectFrom('payments')
      .selectAll()
      .where('provider', '=', providerId)
      .where('provider_ref', '=', update.provider_ref)
      .forUpdate()
      .executeTakeFirst()
    if (!payment) return { duplicate: false, payment: null }
    const after = update.status
      ? await apply(deps, trx, payment, update)
      : update.refund
        ? await settleRefundReport(deps, trx, payment, update.refund)
        : payment
    return { duplicate: false, payment: toPaymentView(after) }
  })
}

async function apply(
  deps: PaymentDeps,
  trx: Tx,
  payment: PaymentRow,
  update: WebhookUpdate,
): Promise<PaymentRow> {
  const set = (changes: Updateable<PaymentsTable>) =>
    trx
      .updateTable('payments')
      .set({ ...changes, updated_at: now() })
      .where('id', '=', payment.id)
      .returningAll()
      .executeTakeFirstOrThrow()
  const amount = Number(payment.amount)
  switch (update.status) {
    case 'authorized':
      if (!UNSETTLED.includes(payment.status)) return payment
      return set({ status: 'authorized', next_action: null })
    case 'captured': {
      if (![...UNSETTLED, ...CAPTURABLE].includes(payment.status)) return payment
      const captured = Math.min(update.amount ?? amount, amount)
      const row = await set({ status: 'captured', captured_amount: captured, next_action: null })
      await deps.outbox.emit(trx, 'payment.captured', eventPayload(row, { actor: 'webhook' }), row.id)
      return row
    }
    case 'failed': {
      if (!UNSETTLED.includes(payment.status)) return payment
      const row = await set({
        status: 'failed',
        next_action: null,
        failure_code: update.failure_code ?? 'payment_failed',
        failure_message: update.failure_message ?? null,
      })
      await deps.outbox.emit(
        trx,
        'payment.failed',
        eventPayload(row, { failure_code: row.failure_code }),
        row.id,
      )
      return row
    }
    case 'canceled': {
      if (![...UNSETTLED, ...CAPTURABLE].includes(payment.status)) return payment
      const row = await set({ status: 'canceled', next_action: null })
      await deps.outbox.emit(
        trx,
        'payment.canceled',
        { ...eventPayload(row), amount, actor: 'webhook' },
        row.id,
      )
      return row
    }
    case 'refunded':
      return refundedElsewhere(deps, trx, payment, update)
    default:
      return payment
  }
}

/**
 * For a processor that reports a cumulative refunded total (Stripe's refunds are followed one by
 * one instead: settleRefundReport). Our own refunds are already counted (their amount is reserved
 * before the processor is called), so only a refund made elsewhere raises the total.
 */
async function refundedElsewhere(
  deps: PaymentDeps,
  trx: Tx,
  payment: PaymentRow,
  update: WebhookUpdate,
): Promise<PaymentRow> {
  if (update.amount === undefined) return payment
  const extra = Math.min(update.amount, Number(payment.captured_amount)) - Number(payment.refunded_amount)
  return recordRefundElsewhere(deps, trx, payment, {
    amount: extra,
    status: 'succeeded',
    key: `webhook:${update.event_id}`,
    provider_ref: null,
  })
}
