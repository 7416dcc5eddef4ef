/**
 * Applying what a processor's webhook reports. Processors deliver at least once and in any order,
 * so each event id is recorded in the same transaction as the change it causes: a redelivery finds
 * it and changes nothing, and an event that failed half-way is retried whole. State only moves
 * forward: a late "authorized" never undoes a capture, a late "failed" never undoes an authorisation.
 *
 * A refund made at the processor can be reported before the capture it refunds is recorded here
 * (the capture's answer was lost, and the processor's event for it is still to come, or never
 * comes). Such an event is not acknowledged unapplied: the processor is asked what the charge holds
 * first, outside any transaction, and its capture is recorded with the refund (chargeBehindRefund).
 */
import type { Updateable } from 'kysely'
import { type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import {
  CAPTURABLE,
  eventPayload,
  findChargeOf,
  now,
  type PaymentDeps,
  providerUnavailable,
} from './common.ts'
import { type FoundCharge, PaymentProviderUnavailable, type WebhookUpdate } from './provider.ts'
import { recordRefundElsewhere, settleRefundReport } from './refunds.ts'
import type { PaymentStatus, PaymentsTable } from './tables.ts'
import { type PaymentRow, type PaymentView, toPaymentView } from './views.ts'

const UNSETTLED: readonly PaymentStatus[] = ['pending', 'requires_action']
/** States a capture reported by the processor moves to captured. */
const CAPTURE_AWAITED: readonly PaymentStatus[] = [...UNSETTLED, ...CAPTURABLE]

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
  const charge = await chargeBehindRefund(deps, providerId, update)
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
        ? await settleRefundReport(deps, trx, await captureOf(deps, trx, payment, charge), update.refund)
        : payment
    return { duplicate: false, payment: toPaymentView(after) }
  })
}

/**
 * What the processor holds of the charge behind a refund made there (its dashboard) that it reports
 * on a payment whose capture is not recorded here yet: refunds are made only of a capture, so the
 * capture happened and its answer was lost (or was made in the dashboard too), and the refund
 * cannot be booked on a payment that reads uncaptured. undefined when there is nothing to ask: no
 * such payment, one captured here, an event seen before, a refund of ours (reserved only on a
 * capture), or a report that books nothing.
 *
 * The processor is asked rather than the event refused for it to deliver again later: Stripe
 * retries a refused event for three days (a few hours in test mode), and the capture's own event
 * may never come (lost, or not subscribed), so a refusal would only book the refund if something
 * else recorded the capture in time; and Stripe makes a refund of a voided authorisation too (its
 * cancel refunds the uncaptured amount), which no capture will ever follow. The answer is current,
 * unlike the events. A processor that cannot answer now gets a 503 with nothing recorded, so that
 * it delivers the event again; so does one that offers no lookup (findCharge), until the capture
 * is recorded here.
 */
async function chargeBehindRefund(
  deps: PaymentDeps,
  providerId: string,
  update: WebhookUpdate,
): Promise<FoundCharge | null | undefined> {
  const report = update.refund
  if (!report || !update.provider_ref || report.ours) return undefined
  if (report.status !== 'succeeded' && report.status !== 'pending') return undefined
  const payment = await deps.db
    .selectFrom('payments')
    .selectAll()
    .where('provider', '=', providerId)
    .where('provider_ref', '=', update.provider_ref)
    .executeTakeFirst()
  if (!payment || !CAPTURE_AWAITED.includes(payment.status)) return undefined
  const seen = await deps.db
    .selectFrom('payment_webhook_events')
    .select('event_id')
    .where('provider', '=', providerId)
    .where('event_id', '=', update.event_id)
    .executeTakeFirst()
  if (seen) return undefined
  let found: FoundCharge | null | undefined
  try {
    found = await findChargeOf(deps, payment, update.provider_ref)
  } catch (error) {
    if (error instanceof PaymentProviderUnavailable) throw providerUnavailable(error)
    throw error
  }
  if (found === undefined) {
    throw problem(
      'payment_provider_unavailable',
      `Payment ${payment.id} is ${payment.status} here: a refund of it is applied once its capture is recorded`,
      { headers: { 'retry-after': '60' } },
    )
  }
  return found
}

/**
 * The payment with the capture the processor reported (chargeBehindRefund) recorded, as its
 * capture's own event would record it, when the row still awaits one under the lock; a charge
 * with nothing captured (a voided authorisation's refund) leaves it as it is, and so the refund
 * books nothing.
 */
async function captureOf(
  deps: PaymentDeps,
  trx: Tx,
  payment: PaymentRow,
  charge: FoundCharge | null | undefined,
): Promise<PaymentRow> {
  if (!charge || charge.captured_amount <= 0 || !CAPTURE_AWAITED.includes(payment.status)) return payment
  return recordCapture(deps, trx, payment, charge.captured_amount)
}

/** Marks the payment captured (never more than its amount) and emits `payment.captured`, once. */
async function recordCapture(
  deps: PaymentDeps,
  trx: Tx,
  payment: PaymentRow,
  reported: number | undefined,
): Promise<PaymentRow> {
  const amount = Number(payment.amount)
  const row = await trx
    .updateTable('payments')
    .set({
      status: 'captured',
      captured_amount: Math.min(reported ?? amount, amount),
      next_action: null,
      updated_at: now(),
    })
    .where('id', '=', payment.id)
    .returningAll()
    .executeTakeFirstOrThrow()
  await deps.outbox.emit(trx, 'payment.captured', eventPayload(row, { actor: 'webhook' }), row.id)
  return row
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
    case 'captured':
      if (!CAPTURE_AWAITED.includes(payment.status)) return payment
      return recordCapture(deps, trx, payment, update.amount)
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
