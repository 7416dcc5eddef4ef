/**
 * Refunds, safe under concurrency and retries. A refund first reserves its amount in a short
 * transaction: one conditional UPDATE adds it to refunded_amount only while the total stays within
 * captured_amount, so concurrent refunds serialise on the payment row and can never together
 * refund more than was captured. Then the processor is called with a key derived from the caller's,
 * and a second transaction records the outcome: accepted (event `refund.created`), or refused, which
 * gives the reserved amount back. A processor that could not answer leaves the refund pending and
 * its amount reserved; the caller retries with the same key, which resumes that refund.
 */
import { type RawBuilder, sql } from 'kysely'
import { type Queryable, type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import { CAPTURED, loadPayment, lockPayment, now, type PaymentDeps, providerUnavailable } from './common.ts'
import { PaymentProviderUnavailable, type RefundReport } from './provider.ts'
import { providerOf } from './registry.ts'
import { type PaymentRow, type RefundRow, type RefundView, toRefundView } from './views.ts'

export interface RefundRequest {
  /** Minor units, at least 1. */
  amount: number
  reason?: string | null
  /** Who asked: a staff id, `system`, … */
  actor: string
  /** The caller's idempotency key: the same key (and amount) returns the same refund. */
  key: string
}

/** The status refunded_amount implies, as SQL over the row being updated. */
const statusAfter = (refunded: RawBuilder<number>) =>
  sql<'captured' | 'partially_refunded' | 'refunded'>`case
    when ${refunded} <= 0 then 'captured'
    when ${refunded} >= captured_amount then 'refunded'
    else 'partially_refunded' end`

/** Refunds part or all of a captured payment. See the module comment for how it stays exact. */
export async function refundPayment(
  deps: PaymentDeps,
  paymentId: string,
  request: RefundRequest,
): Promise<RefundView> {
  const { amount } = request
  if (!Number.isSafeInteger(amount) || amount <= 0) {
    throw problem('validation_failed', 'A refund amount is a positive integer in minor units', {
      errors: [{ path: 'body.amount', message: 'must be a positive integer' }],
    })
  }
  const payment = await loadPayment(deps.db, paymentId)
  const refund = await withTransaction(deps.db, (trx) => reserve(trx, paymentId, request))
  if (refund.status === 'succeeded') return toRefundView(refund, payment.currency_code)

  let result: { provider_ref: string; status: 'succeeded' | 'pending' }
  try {
    result = await providerOf(deps.providers, payment.provider).refund({
      payment_id: paymentId,
      provider_ref: payment.provider_ref ?? paymentId,
      amount: Number(refund.amount),
      currency: payment.currency_code,
      idempotency_key: `${paymentId}:refund:${request.key}`,
      reason: request.reason ?? null,
    })
  } catch (error) {
    // Unknown outcome: the reservation stands until a retry with the same key settles it.
    if (error instanceof PaymentProviderUnavailable) throw providerUnavailable(error)
    await withTransaction(deps.db, (trx) => release(trx, refund))
    throw error
  }

  return withTransaction(deps.db, async (trx) => {
    const accepted = await trx
      .updateTable('payment_refunds')
      .set({ status: result.status, provider_ref: result.provider_ref })
      .where('id', '=', refund.id)
      .where('status', '=', 'pending')
      // An early event may have recorded the processor's id already (settleRefundReport).
      .where((eb) => eb.or([eb('provider_ref', 'is', null), eb('provider_ref', '=', result.provider_ref)]))
      .returningAll()
      .executeTakeFirst()
    if (accepted) {
      const current = await loadPayment(trx, paymentId)
      await deps.outbox.emit(
        trx,
        'refund.created',
        {
          refund_id: accepted.id,
          payment_id: paymentId,
          order_id: current.order_id,
          amount: Number(accepted.amount),
          currency: current.currency_code,
          status: accepted.status,
          reason: accepted.reason,
          actor: accepted.actor,
        },
        paymentId,
      )
      return toRefundView(accepted, current.currency_code)
    }
    // A retry under the same key got here first, or a pending refund settled: record the news.
    const row = await trx
      .updateTable('payment_refunds')
      .set({ status: result.status })
      .where('id', '=', refund.id)
      .where('status', '=', 'pending')
      .returningAll()
      .executeTakeFirst()
    const latest =
      row ??
      (await trx
        .selectFrom('payment_refunds')
        .selectAll()
        .where('id', '=', refund.id)
        .executeTakeFirstOrThrow())
    return toRefundView(latest, payment.currency_code)
  })
}

/**
 * A payment's refunds with the keys they were made under, oldest first, failed ones included: for
 * a caller that refunds under keys of its own and must resume the ones it began.
 */
export async function keyedRefundsOfPayment(
  db: Queryable,
  paymentId: string,
): Promise<Array<{ key: string; amount: number; status: RefundRow['status'] }>> {
  const rows = await db
    .selectFrom('payment_refunds')
    .select(['idempotency_key', 'amount', 'status'])
    .where('payment_id', '=', paymentId)
    .orderBy('created_at')
    .orderBy('id')
    .execute()
  return rows.map((r) => ({ key: r.idempotency_key, amount: Number(r.amount), status: r.status }))
}

/**
 * Records the refund and reserves its amount, or finds the refund made earlier under this key.
 * Throws refund_exceeds_captured when the amount does not fit in what remains captured.
 */
async function reserve(trx: Tx, paymentId: string, request: RefundRequest): Promise<RefundRow> {
  const inserted = await trx
    .insertInto('payment_refunds')
    .values({
      id: newId('re'),
      payment_id: paymentId,
      amount: request.amount,
      reason: request.reason ?? null,
      status: 'pending',
      idempotency_key: request.key,
      actor: request.actor,
    })
    .onConflict((oc) => oc.columns(['payment_id', 'idempotency_key']).doNothing())
    .returningAll()
    .executeTakeFirst()
  if (!inserted) {
    const earlier = await trx
      .selectFrom('payment_refunds')
      .selectAll()
      .where('payment_id', '=', paymentId)
      .where('idempotency_key', '=', request.key)
      .executeTakeFirstOrThrow()
    if (Number(earlier.amount) !== request.amount) {
      throw problem('idempotency_key_reused', `Refund ${earlier.id} used this key for ${earlier.amount}`)
    }
    if (earlier.status === 'failed') {
      throw problem('conflict', `Refund ${earlier.id} under this key failed; use a new key to try again`)
    }
    return earlier
  }
  const refunded = sql<number>`refunded_amount + ${request.amount}`
  const reserved = await trx
    .updateTable('payments')
    .set({ refunded_amount: refunded, status: statusAfter(refunded), updated_at: now() })
    .where('id', '=', paymentId)
    .where('status', 'in', CAPTURED)
    .where(sql<boolean>`${refunded} <= captured_amount`)
    .executeTakeFirst()
  if (reserved.numUpdatedRows === 0n) {
    const payment = await loadPayment(trx, paymentId)
    const left = CAPTURED.includes(payment.status)
      ? Number(payment.captured_amount) - Number(payment.refunded_amount)
      : 0
    throw problem('refund_exceeds_captured', `${left} ${payment.currency_code} remains refundable`, {
      errors: [{ path: 'body.amount', message: `must be at most ${left}` }],
    })
  }
  return inserted
}

/**
 * What the processor reported later about one of our refunds: a pending one succeeded, or one that
 * was accepted failed after all (a closed card account, say), which gives its amount back to the
 * payment and emits `refund.failed` so that the order can follow. Applied once per refund.
 */
export async function settleRefundReport(
  deps: PaymentDeps,
  trx: Tx,
  payment: PaymentRow,
  report: RefundReport,
): Promise<PaymentRow> {
  let refund = await trx
    .selectFrom('payment_refunds')
    .selectAll()
    .where('payment_id', '=', payment.id)
    .where('provider_ref', '=', report.provider_ref)
    .forUpdate()
    .executeTakeFirst()
  // One of ours whose answer is not recorded yet (the event came first): found by the key we gave
  // it, and given the processor's id now. Its acceptance is still recorded by the call's own path.
  const prefix = `${payment.id}:refund:`
  if (!refund && report.ours?.startsWith(prefix)) {
    refund = await trx
      .selectFrom('payment_refunds')
      .selectAll()
      .where('payment_id', '=', payment.id)
      .where('idempotency_key', '=', report.ours.slice(prefix.length))
      .forUpdate()
      .executeTakeFirst()
    if (refund && refund.provider_ref === null) {
      await trx
        .updateTable('payment_refunds')
        .set({ provider_ref: report.provider_ref })
        .where('id', '=', refund.id)
        .execute()
      if (report.status !== 'failed' && report.status !== 'canceled') return payment
    }
  }
  if (!refund) {
    // Not ours: made in the processor's dashboard. Recorded once, by the processor's id.
    if (report.ours) return payment
    if (report.status === 'failed' || report.status === 'canceled') {
      await recordFailedElsewhere(trx, payment, report)
      return payment
    }
    if (report.status !== 'succeeded' && report.status !== 'pending') return payment
    return recordRefundElsewhere(deps, trx, payment, {
      amount: report.amount,
      status: report.status,
      key: `processor:${report.provider_ref}`,
      provider_ref: report.provider_ref,
    })
  }
  if (report.status === 'succeeded') {
    await trx
      .updateTable('payment_refunds')
      .set({ status: 'succeeded' })
      .where('id', '=', refund.id)
      .where('status', '=', 'pending')
      .execute()
    return payment
  }
  if (report.status !== 'failed' && report.status !== 'canceled') return payment
  if (!(await release(trx, refund, ['pending', 'succeeded']))) return payment
  const after = await loadPayment(trx, payment.id)
  await deps.outbox.emit(
    trx,
    'refund.failed',
    {
      refund_id: refund.id,
      payment_id: payment.id,
      order_id: after.order_id,
      amount: Number(refund.amount),
      currency: after.currency_code,
      reason: report.failure_reason ?? null,
      idempotency_key: refund.idempotency_key,
    },
    payment.id,
  )
  return after
}

/**
 * Records as failed a refund made at the processor (its dashboard) that the processor reports
 * failed or canceled before any report of it booked it here. Processors deliver events in any
 * order, and a refund's status ends at failed or canceled and never moves back: a report of it as
 * pending or succeeded that comes later is older news. The row, under the key recordRefundElsewhere
 * would give it, is what tells that report so (settleRefundReport finds it by the processor's id,
 * failed, and books nothing); it holds no money, so the payment and the order do not change.
 */
async function recordFailedElsewhere(trx: Tx, payment: PaymentRow, report: RefundReport): Promise<void> {
  if (report.amount <= 0) return
  await trx
    .insertInto('payment_refunds')
    .values({
      id: newId('re'),
      payment_id: payment.id,
      amount: report.amount,
      reason: report.failure_reason
        ? `Failed at the processor: ${report.failure_reason}`
        : 'Failed at the processor',
      status: 'failed',
      provider_ref: report.provider_ref,
      idempotency_key: `processor:${report.provider_ref}`,
      actor: `webhook:${payment.provider}`,
    })
    .onConflict((oc) => oc.columns(['payment_id', 'idempotency_key']).doNothing())
    .execute()
}

/**
 * The refund did not happen (refused, or failed later): mark it failed and give its amount back,
 * once. True when this call did it.
 *
 * The payment's row is locked before the refund's, the order a webhook about the refund takes them
 * in (applyWebhook, then settleRefundReport): the other way round, a refusal released while the
 * processor's refund.failed event is applied deadlocks the two.
 */
async function release(
  trx: Tx,
  refund: RefundRow,
  from: ReadonlyArray<'pending' | 'succeeded'> = ['pending'],
): Promise<boolean> {
  await lockPayment(trx, refund.payment_id)
  const failed = await trx
    .updateTable('payment_refunds')
    .set({ status: 'failed' })
    .where('id', '=', refund.id)
    .where('status', 'in', from)
    .executeTakeFirst()
  if (failed.numUpdatedRows === 0n) return false
  // Summed again from the refunds that still hold money rather than less this one: the payment
  // counts at most its capture, so a processor refund that overlapped this one while it was pending
  // was counted only in part (recordRefundElsewhere), and gets the part this one held now.
  const refunded = sql<number>`least(captured_amount, (
    select coalesce(sum(r.amount), 0) from payment_refunds r
    where r.payment_id = payments.id and r.status <> 'failed'))::bigint`
  await trx
    .updateTable('payments')
    .set({ refunded_amount: refunded, status: statusAfter(refunded), updated_at: now() })
    .where('id', '=', refund.payment_id)
    .execute()
  return true
}

/**
 * Records a refund made at the processor (its dashboard) as one of the payment's refunds, once per
 * key, within what the processor's own record leaves of the capture, and emits `refund.created` for
 * the order to follow.
 *
 * Our refunds still pending are left out of that bound: the processor has not carried them out, so
 * when one overlaps this refund it is the one that must give way (the processor refuses it as more
 * than remains). This refund is recorded in full, as the processor made it; the payment, which
 * counts at most its capture, counts the overlap once until that refund fails, and then the whole
 * of this one (release).
 */
export async function recordRefundElsewhere(
  deps: PaymentDeps,
  trx: Tx,
  payment: PaymentRow,
  refund: { amount: number; status: 'succeeded' | 'pending'; key: string; provider_ref: string | null },
): Promise<PaymentRow> {
  if (!CAPTURED.includes(payment.status)) return payment
  const made = await trx
    .selectFrom('payment_refunds')
    .select(sql<string>`coalesce(sum(amount), 0)`.as('total'))
    .where('payment_id', '=', payment.id)
    .where((eb) =>
      eb.or([
        eb('status', '=', 'succeeded'),
        eb.and([eb('status', '=', 'pending'), eb('actor', 'like', 'webhook:%')]),
      ]),
    )
    .executeTakeFirstOrThrow()
  const amount = Math.min(refund.amount, Number(payment.captured_amount) - Number(made.total))
  if (amount <= 0) return payment
  const row = await trx
    .insertInto('payment_refunds')
    .values({
      id: newId('re'),
      payment_id: payment.id,
      amount,
      reason: 'Refunded at the processor',
      status: refund.status,
      provider_ref: refund.provider_ref,
      idempotency_key: refund.key,
      actor: `webhook:${payment.provider}`,
    })
    .onConflict((oc) => oc.columns(['payment_id', 'idempotency_key']).doNothing())
    .returningAll()
    .executeTakeFirst()
  if (!row) return payment
  const refunded = sql<number>`least(captured_amount, refunded_amount + ${amount})`
  const after = await trx
    .updateTable('payments')
    .set({ refunded_amount: refunded, status: statusAfter(refunded), updated_at: now() })
    .where('id', '=', payment.id)
    .returningAll()
    .executeTakeFirstOrThrow()
  await deps.outbox.emit(
    trx,
    'refund.created',
    {
      refund_id: row.id,
      payment_id: payment.id,
      order_id: payment.order_id,
      amount,
      currency: payment.currency_code,
      status: row.status,
      reason: row.reason,
      actor: row.actor,
    },
    payment.id,
  )
  return after
}
