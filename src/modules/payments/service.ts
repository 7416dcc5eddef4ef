/**
 * The payments service: the only writer of the payments tables. Checkout creates a payment and
 * records what the provider answered to the authorisation; orders capture, refund and cancel it.
 *
 * Provider calls never run inside a database transaction (a slow processor must not hold row locks
 * or a pooled connection); each is keyed so a retry after a crash or timeout repeats nothing at the
 * processor, and its result is recorded afterwards in a short transaction with the outbox event.
 */
import { sql, type UpdateObject } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { withTransaction } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { ProblemError, problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import {
  CAPTURABLE,
  CAPTURED,
  eventPayload,
  findChargeOf,
  loadPayment,
  lockPayment,
  now,
  type PaymentDeps,
  providerUnavailable,
  SETTLED,
} from './common.ts'
import {
  type AuthorizeResult,
  type FoundCharge,
  PaymentGiveBackRefused,
  type PaymentProvider,
  PaymentProviderUnavailable,
} from './provider.ts'
import { keyedRefundsOfPayment, refundPayment } from './refunds.ts'
import { providerOf } from './registry.ts'
import type { PaymentStatus } from './tables.ts'
import { VELOCITY_DECLINE } from './velocity.ts'
import { type PaymentRow, type PaymentView, toPaymentView } from './views.ts'

export { type PaymentDeps, paymentDeps } from './common.ts'
export type { PaymentView, RefundView } from './views.ts'
export { findPayment, paymentsOfCart, refundKeysOfPayment, refundsOfPayment } from './views.ts'
export { applyWebhook } from './webhooks.ts'
export { keyedRefundsOfPayment, refundPayment }

/** Records a new payment attempt of a cart, status pending, before the provider is called. */
export async function createPayment(
  trx: Queryable,
  input: {
    cart_id: string
    provider: string
    amount: number
    currency: string
    payment_method: string | null
  },
): Promise<PaymentView> {
  const row = await trx
    .insertInto('payments')
    .values({
      id: newId('pay'),
      cart_id: input.cart_id,
      provider: input.provider,
      amount: input.amount,
      currency_code: input.currency,
      payment_method: input.payment_method,
      updated_at: now(),
    })
    .returningAll()
    .executeTakeFirstOrThrow()
  return toPaymentView(row)
}

/**
 * Records the provider's answer to an authorisation, and links the payment to `orderId` when the
 * caller places that order in the same transaction. A payment already captured or canceled (a
 * webhook got there first) keeps its state; a canceled one is not linked, and the caller must not
 * place the order. With an outbox, an immediate capture emits
 * `payment.captured` as capturePayment would, so listeners see every capture once.
 *
 * One conditional UPDATE does it: checkout runs this on every order, and a read to lock the row
 * first would be a round trip for the rare answer that comes after a webhook's.
 */
export async function recordAuthorization(
  trx: Tx,
  paymentId: string,
  result: AuthorizeResult,
  outbox?: Outbox,
  options: { orderId?: string } = {},
): Promise<PaymentView> {
  const common = {
    provider_ref: result.provider_ref,
    ...(options.orderId ? { order_id: options.orderId } : {}),
    updated_at: now(),
  }
  const cleared = { next_action: null, failure_code: null, failure_message: null }
  const fingerprint = 'card_fingerprint' in result ? (result.card_fingerprint ?? null) : null
  let changes: UpdateObject<DB, 'payments'>
  switch (result.status) {
    case 'authorized':
      changes = { status: 'authorized', card_fingerprint: fingerprint, ...cleared }
      break
    case 'captured':
      changes = {
        status: 'captured',
        // Never more than the payment's amount, whatever the processor reports.
        captured_amount: sql<number>`least(coalesce(${result.captured_amount ?? null}::bigint, amount), amount)`,
        card_fingerprint: fingerprint,
        ...cleared,
      }
      break
    case 'requires_action':
      changes = {
        status: 'requires_action',
        card_fingerprint: fingerprint,
        ...cleared,
        next_action: JSON.stringify(result.next_action),
      }
      break
    case 'awaiting_transfer':
      changes = {
        status: 'awaiting_transfer',
        ...cleared,
        // Like Stripe's display_bank_transfer_instructions: the shopper is shown what to do.
        next_action: JSON.stringify({ type: 'display_transfer_instructions', ...result.instructions }),
      }
      break
    case 'declined':
      changes = {
        status: 'failed',
        card_fingerprint: fingerprint,
        next_action: null,
        failure_code: result.decline_code,
        failure_message: result.message,
      }
      break
  }
  const row = await trx
    .updateTable('payments')
    .set({ ...changes, ...common })
    .where('id', '=', paymentId)
    .where('status', 'not in', SETTLED)
    .returningAll()
    .executeTakeFirst()
  if (!row) {
    // Settled before the answer was recorded: it keeps its state. A captured one still gets its
    // order; a canceled one gets none, since its checkout places no order on it (checkout.ts).
    const current = await lockPayment(trx, paymentId)
    const orderId = current.status === 'canceled' ? undefined : options.orderId
    if (orderId) await attachOrder(trx, paymentId, orderId)
    return toPaymentView({ ...current, order_id: orderId ?? current.order_id })
  }
  // Only a payment that was not captured passes the condition: this capture is news.
  if (outbox && result.status === 'captured') {
    await outbox.emit(trx, 'payment.captured', eventPayload(row), row.id)
  }
  return toPaymentView(row)
}

/**
 * Asks the provider to authorise a pending payment (or to settle one waiting on 3-D Secure) and
 * records the answer in its own transaction. For callers that need no transaction of their own
 * around the recording; checkout may instead call the provider and recordAuthorization itself.
 */
export async function authorizePayment(
  deps: PaymentDeps,
  paymentId: string,
  options: { email?: string | null; capture: boolean },
): Promise<{ payment: PaymentView; result: AuthorizeResult }> {
  const payment = await loadPayment(deps.db, paymentId)
  const provider = providerOf(deps.providers, payment.provider)
  let result: AuthorizeResult
  try {
    result = await provider.authorize({
      payment_id: payment.id,
      amount: Number(payment.amount),
      currency: payment.currency_code,
      payment_method: payment.payment_method,
      provider_ref: payment.provider_ref,
      email: options.email ?? null,
      capture: options.capture,
    })
  } catch (error) {
    if (error instanceof PaymentProviderUnavailable) throw providerUnavailable(error)
    throw error
  }
  const view = await withTransaction(deps.db, (trx) =>
    recordAuthorization(trx, paymentId, result, deps.outbox),
  )
  return { payment: view, result }
}

/** Links the payment to the order checkout placed with it. */
export async function attachOrder(trx: Queryable, paymentId: string, orderId: string): Promise<void> {
  const result = await trx
    .updateTable('payments')
    .set({ order_id: orderId, updated_at: now() })
    .where('id', '=', paymentId)
    .executeTakeFirst()
  if (result.numUpdatedRows === 0n) throw problem('not_found', `No payment ${paymentId}`)
}

/**
 * Captures an authorised payment (all of it, or `amount` of it), or confirms that a manual
 * payment's money arrived. Capturing a captured payment returns it unchanged.
 */
export async function capturePayment(
  deps: PaymentDeps,
  paymentId: string,
  opts: {
    amount?: number
    actor: string
    /**
     * The payment as the caller just recorded it (checkout, right after placing the order), so it
     * is not read again; a stale one is harmless, since the recording below is conditional.
     */
    current?: PaymentView
    /** Runs in the transaction that records the capture (the order marks itself paid there). */
    onCaptured?: (trx: Tx, payment: PaymentView) => Promise<void>
  } = { actor: 'system' },
): Promise<PaymentView> {
  const payment = opts.current ?? toPaymentView(await loadPayment(deps.db, paymentId))
  if (CAPTURED.includes(payment.status)) return payment
  if (!CAPTURABLE.includes(payment.status) || !payment.provider_ref) {
    throw problem('payment_not_capturable', `Payment ${paymentId} is ${payment.status}`)
  }
  const amount = opts.amount ?? payment.amount
  if (!Number.isSafeInteger(amount) || amount <= 0 || amount > payment.amount) {
    throw problem('payment_not_capturable', `Capture between 1 and ${payment.amount}`, {
      errors: [{ path: 'body.amount', message: `must be from 1 to ${payment.amount}` }],
    })
  }
  const provider = providerOf(deps.providers, payment.provider)
  let captured: { captured_amount: number }
  try {
    captured = await provider.capture({
      payment_id: payment.id,
      provider_ref: payment.provider_ref,
      amount,
      currency: payment.currency,
      idempotency_key: `${payment.id}:capture`,
    })
  } catch (error) {
    if (error instanceof PaymentProviderUnavailable) throw providerUnavailable(error)
    throw error
  }
  return withTransaction(deps.db, async (trx) => {
    const row = await trx
      .updateTable('payments')
      .set({ status: 'captured', captured_amount: captured.captured_amount, updated_at: now() })
      .where('id', '=', paymentId)
      .where('status', 'in', CAPTURABLE)
      .returningAll()
      .executeTakeFirst()
    if (!row) {
      // A concurrent capture or the processor's webhook recorded it first.
      const current = await loadPayment(trx, paymentId)
      if (CAPTURED.includes(current.status)) return toPaymentView(current)
      throw problem('payment_not_capturable', `Payment ${paymentId} is ${current.status}`)
    }
    await deps.outbox.emit(trx, 'payment.captured', eventPayload(row, { actor: opts.actor }), row.id)
    const view = toPaymentView(row)
    await opts.onCaptured?.(trx, view)
    return view
  })
}

/**
 * Voids an authorisation at the processor under the key every void of this payment shares, so
 * that however many callers void it, the processor voids once. Our row is not touched: for
 * callers holding an answer the row does not record (cancelPayment records its own).
 */
export function voidAtProcessor(
  provider: PaymentProvider,
  paymentId: string,
  providerRef: string,
): Promise<void> {
  return provider.cancel({
    payment_id: paymentId,
    provider_ref: providerRef,
    idempotency_key: `${paymentId}:cancel`,
  })
}

/**
 * Returns what a payment that will get no order still holds at the processor (its checkout was
 * given up), for the void job (jobs.ts) to call until the processor takes it. The row decides, so a
 * run repeated or overtaken changes nothing: a payment canceled here, perhaps before the processor
 * named the charge, has the charge its row names voided under the key every void of it shares (one
 * the processor finds for it, captured there meanwhile, is refunded instead: chargeFoundFor); one
 * still authorised or waiting is voided and marked canceled by cancelPayment; one captured (at the
 * processor, outside the app: recordUnplacedCapture) is refunded by refundUnplaced; one refused
 * here over its card's failure limit has the authorisation its row names voided; one that an order
 * holds, or that the processor declined, is not this job's. A void the processor refuses because
 * the charge was captured there meanwhile (its dashboard) is followed by the refund of what it
 * reports captured (refundRefusedVoid).
 */
export async function voidUnplaced(deps: PaymentDeps, paymentId: string, actor: string): Promise<void> {
  const payment = await loadPayment(deps.db, paymentId)
  if (payment.order_id) return
  if (payment.status === 'canceled') {
    if (payment.provider_ref) return voidSettled(deps, payment, payment.provider_ref, actor)
    const found = await chargeFoundFor(deps, payment)
    if (found?.held === 'capture') await refundUnplaced(deps, paymentId, actor)
    else if (found?.held === 'authorization') await voidSettled(deps, payment, found.provider_ref, actor)
    return
  }
  if (payment.status === 'failed') {
    // Declined by the processor, it holds nothing; declined here over the card's failure limit, the
    // processor had authorised it.
    if (payment.failure_code === VELOCITY_DECLINE && payment.provider_ref)
      await voidSettled(deps, payment, payment.provider_ref, actor)
    return
  }
  if (UNPLACED_VOIDABLE.includes(payment.status)) {
    await cancelPayment(deps, paymentId, actor).catch(async (error: unknown) => {
      if (!(error instanceof ProblemError) || error.code !== 'payment_not_capturable') throw error
      // Refused by the processor, or the row captured meanwhile: the row tells which.
      const current = await loadPayment(deps.db, paymentId)
      if (current.order_id || !current.provider_ref || !UNPLACED_VOIDABLE.includes(current.status))
        throw error
      // Refused with nothing captured, it is retried as any void that did not go through.
      await refundRefusedVoid(deps, current, current.provider_ref, actor, error)
    })
  } else if (CAPTURED.includes(payment.status)) await refundUnplaced(deps, paymentId, actor)
}

/**
 * Voids the charge `providerRef` of a payment settled here with no order (canceled, or refused over
 * its card's failure limit), whose row changes no more. A refusal is for good: the charge was
 * captured meanwhile (its dashboard), and then its capture is refunded; with nothing captured,
 * only staff can act on it at the processor (PaymentGiveBackRefused).
 */
async function voidSettled(
  deps: PaymentDeps,
  payment: PaymentRow,
  providerRef: string,
  actor: string,
): Promise<void> {
  try {
    await voidAtProcessor(providerOf(deps.providers, payment.provider), payment.id, providerRef)
  } catch (error) {
    if (!(error instanceof ProblemError) || error.code === 'payment_provider_unavailable') throw error
    const refusal = new PaymentGiveBackRefused(
      `The processor refuses to void charge ${providerRef} of payment ${payment.id}: ${error.message}`,
      { cause: error },
    )
    await refundRefusedVoid(deps, payment, providerRef, actor, refusal)
  }
}

/**
 * After the processor refused to void the charge a payment with no order names: a refusal does not
 * say how much was captured, so that is asked of the processor by the charge's name and, when it is
 * more than nothing, recorded (chargeFoundFor) before it is refunded once under the unplaced key
 * (refundUnplaced). A run that stops between the two finds the row captured and resumes the refund.
 * A charge captured and refunded in full there holds nothing to give back: a row still open is
 * canceled. Throws `refusal` when the processor reports nothing captured.
 */
async function refundRefusedVoid(
  deps: PaymentDeps,
  payment: PaymentRow,
  providerRef: string,
  actor: string,
  refusal: Error,
): Promise<void> {
  const found = await chargeFoundFor(deps, payment, providerRef)
  if (found?.held === 'nothing') {
    await withTransaction(deps.db, (trx) =>
      cancelUnanswered(trx, deps.outbox, payment.id, actor, UNPLACED_VOIDABLE),
    )
    return
  }
  if (found?.held !== 'capture') throw refusal
  await refundUnplaced(deps, payment.id, actor)
}

/**
 * The charge the processor holds for a payment with no order, asked of the processor and recorded
 * on the row before anything is asked of it, so that a run repeated after a crash or an outage
 * picks up from the row: by the payment's id for a payment canceled here before any answer named
 * one (every answer was lost), or by `providerRef`, the charge the row names, when the processor
 * refused its void. An authorisation is named (nameCharge), for its void; a charge captured there
 * meanwhile (its dashboard) is recorded as that capture (recordUnplacedCapture, which names it
 * too), less what was refunded of it there, for its refund, since the processor refuses a void of
 * it for good; one refunded there in full holds nothing. null when the processor has none, or
 * cannot look one up; PaymentProviderUnavailable (the job retries) while it cannot say yet;
 * PaymentGiveBackRefused when it never will.
 */
async function chargeFoundFor(
  deps: PaymentDeps,
  payment: PaymentRow,
  providerRef?: string,
): Promise<{ provider_ref: string; held: 'authorization' | 'capture' | 'nothing' } | null> {
  const found = await findChargeOf(deps, payment, providerRef)
  if (!found) return null
  if (found.captured_amount > 0) {
    const held = found.captured_amount - found.refunded_amount
    if (held <= 0) return { provider_ref: found.provider_ref, held: 'nothing' }
    // Recorded as captured net of the refund made there, so that ours returns only the rest.
    await withTransaction(deps.db, (trx) =>
      recordUnplacedCapture(trx, deps.outbox, payment.id, { ...found, captured_amount: held }),
    )
    return { provider_ref: found.provider_ref, held: 'capture' }
  }
  if (!payment.provider_ref) await nameCharge(deps.db, payment.id, found.provider_ref)
  return { provider_ref: found.provider_ref, held: 'authorization' }
}

/**
 * Records what the processor holds of a charge whose void it refused while our row, which an order
 * holds (its order canceled: orders/cancel.ts), still reads as not captured: the processor captured
 * the charge (a capture whose answer was lost, or one made in its dashboard), and a refusal does
 * not say how much. Asked of the processor by the charge the row names, and recorded as that
 * capture (event `payment.captured`) less what was refunded of it there, so that the caller refunds
 * only the rest, as chargeFoundFor does for a payment with no order; a charge refunded there in
 * full holds nothing, and the row is canceled.
 *
 * 'captured' once the row records a capture (this call's, or one recorded meanwhile); 'nothing'
 * when the processor reports none; 'busy' when another writer holds the row. That writer is
 * recording an answer now (a capture's, whose recorder then finds the order canceled and refunds
 * it), so this call does not wait on it, and the caller asks again later. 503 while the processor
 * cannot answer.
 */
export async function recordRefusedVoidCapture(
  deps: PaymentDeps,
  paymentId: string,
  actor: string,
): Promise<'captured' | 'nothing' | 'busy'> {
  const payment = await loadPayment(deps.db, paymentId)
  if (CAPTURED.includes(payment.status)) return 'captured'
  if (!payment.provider_ref || !UNPLACED_VOIDABLE.includes(payment.status)) return 'nothing'
  let found: FoundCharge | null | undefined
  try {
    found = await findChargeOf(deps, payment, payment.provider_ref)
  } catch (error) {
    if (error instanceof PaymentProviderUnavailable) throw providerUnavailable(error)
    throw error
  }
  if (!found || found.captured_amount <= 0) return 'nothing'
  const held = found.captured_amount - found.refunded_amount
  return withTransaction(deps.db, async (trx) => {
    const current = await trx
      .selectFrom('payments')
      .select('status')
      .where('id', '=', paymentId)
      .forUpdate()
      .skipLocked()
      .executeTakeFirst()
    if (!current) return 'busy'
    if (CAPTURED.includes(current.status)) return 'captured'
    if (!UNPLACED_VOIDABLE.includes(current.status)) return 'nothing'
    if (held <= 0) {
      const row = await trx
        .updateTable('payments')
        .set({ status: 'canceled', next_action: null, updated_at: now() })
        .where('id', '=', paymentId)
        .returningAll()
        .executeTakeFirstOrThrow()
      await emitCanceled(trx, deps.outbox, row, actor)
      return 'nothing'
    }
    const row = await trx
      .updateTable('payments')
      .set({
        status: 'captured',
        captured_amount: sql<number>`least(${held}::bigint, amount)`,
        next_action: null,
        updated_at: now(),
      })
      .where('id', '=', paymentId)
      .returningAll()
      .executeTakeFirstOrThrow()
    await deps.outbox.emit(trx, 'payment.captured', eventPayload(row, { actor }), row.id)
    return 'captured'
  })
}

/** The refund key of a payment that got no order: one per payment, so that it is refunded once. */
const UNPLACED_REFUND_KEY = 'unplaced'

/**
 * Records a capture the processor reports for a payment that will get no order: we only ever
 * authorise, so it was made outside the app (the processor's dashboard) before the checkout gave
 * up, or before its void reached the processor. Recorded even over a cancel made here (before the
 * processor named the charge, or a void it then refused) and over a refusal here of a card over
 * its failure limit (whose failure code stays, saying why no order came): either way the money is
 * at the processor, and only a refund (refundUnplaced) returns it. A payment an order holds is left
 * to that order, and one the processor declined holds nothing to record.
 */
export async function recordUnplacedCapture(
  trx: Tx,
  outbox: Outbox,
  paymentId: string,
  answer: { provider_ref: string; captured_amount?: number },
): Promise<void> {
  const row = await trx
    .updateTable('payments')
    .set({
      status: 'captured',
      provider_ref: answer.provider_ref,
      captured_amount: sql<number>`least(coalesce(${answer.captured_amount ?? null}::bigint, amount), amount)`,
      next_action: null,
      updated_at: now(),
    })
    .where('id', '=', paymentId)
    .where('order_id', 'is', null)
    .where((eb) =>
      eb.or([
        eb('status', 'in', [...UNPLACED_VOIDABLE, 'canceled']),
        eb.and([eb('status', '=', 'failed'), eb('failure_code', '=', VELOCITY_DECLINE)]),
      ]),
    )
    .returningAll()
    .executeTakeFirst()
  if (row) await outbox.emit(trx, 'payment.captured', eventPayload(row), row.id)
}

/**
 * Refunds what a payment that got no order has captured (recordUnplacedCapture), all under one key,
 * as an order's cancel refunds under its own (orders/cancel.ts): a retry, or the void job resuming
 * a refund the processor did not answer, refunds once. Nothing for a payment an order holds.
 */
export async function refundUnplaced(deps: PaymentDeps, paymentId: string, actor: string): Promise<void> {
  const payment = await loadPayment(deps.db, paymentId)
  if (payment.order_id || !CAPTURED.includes(payment.status)) return
  // A refund begun under the key is resumed for its own amount (the payment already counts it).
  const earlier = await deps.db
    .selectFrom('payment_refunds')
    .select(['amount', 'status'])
    .where('payment_id', '=', paymentId)
    .where('idempotency_key', '=', UNPLACED_REFUND_KEY)
    .executeTakeFirst()
  if (earlier?.status === 'failed') {
    throw new PaymentGiveBackRefused(
      `The processor refused the refund of payment ${paymentId}, captured with no order: refund it there`,
    )
  }
  const amount = earlier
    ? Number(earlier.amount)
    : Number(payment.captured_amount) - Number(payment.refunded_amount)
  if (amount <= 0) return
  await refundPayment(deps, paymentId, {
    amount,
    reason: 'checkout given up',
    actor,
    key: UNPLACED_REFUND_KEY,
  })
}

/**
 * Marks canceled, in the caller's transaction, a payment the processor has not answered (pending)
 * or that waits on the shopper (3-D Secure), and that no order holds; undefined, with nothing
 * written, for one that has moved on (an answer recorded meanwhile belongs to whoever recorded
 * it). For a checkout given up before its payment is voided at the processor: decided first, so
 * that no answer recorded after it can place an order on the payment, then voided by the charge
 * it names (voidUnplaced, or the caller). `payment.canceled` is emitted as cancelPayment does.
 * `statuses` widens the states it cancels, for a payment whose charge holds nothing any more.
 */
export async function cancelUnanswered(
  trx: Tx,
  outbox: Outbox,
  paymentId: string,
  actor: string,
  statuses: readonly PaymentStatus[] = ['pending', 'requires_action'],
): Promise<PaymentView | undefined> {
  const row = await trx
    .updateTable('payments')
    .set({ status: 'canceled', next_action: null, updated_at: now() })
    .where('id', '=', paymentId)
    .where('status', 'in', statuses)
    .where('order_id', 'is', null)
    .returningAll()
    .executeTakeFirst()
  if (!row) return undefined
  await emitCanceled(trx, outbox, row, actor)
  return toPaymentView(row)
}

/** `payment.canceled` for a row this transaction canceled, by whoever canceled it. */
function emitCanceled(trx: Tx, outbox: Outbox, row: PaymentRow, actor: string) {
  return outbox.emit(
    trx,
    'payment.canceled',
    { ...eventPayload(row), amount: Number(row.amount), actor },
    row.id,
  )
}

/**
 * Names on a payment the charge the processor made for it, unless the row names one already: for
 * a row canceled before any answer named its charge, so that the void job and the processor's
 * webhooks find it.
 */
export async function nameCharge(db: Queryable, paymentId: string, providerRef: string): Promise<void> {
  await db
    .updateTable('payments')
    .set({ provider_ref: providerRef, updated_at: now() })
    .where('id', '=', paymentId)
    .where('provider_ref', 'is', null)
    .execute()
}

/**
 * States of a payment whose money a void returns: those the void job voids of a payment with no
 * order, and those in which a canceled order's void may be refused as captured at the processor
 * (recordRefusedVoidCapture).
 */
const UNPLACED_VOIDABLE: readonly PaymentStatus[] = ['pending', 'requires_action', ...CAPTURABLE]

/**
 * Voids a payment that will not be captured (an order canceled before capture). Already canceled
 * or failed: no-op. Captured: refused with payment_not_capturable, since that takes a refund.
 *
 * Marked canceled only in the state it was voided in: a payment authorised meanwhile (its
 * checkout's answer recorded while this waited on the row) is voided at the processor first,
 * never marked canceled over an authorisation that still stands.
 */
export function cancelPayment(deps: PaymentDeps, paymentId: string, actor: string): Promise<PaymentView> {
  return voidPayment(deps, paymentId, actor, 1)
}

async function voidPayment(
  deps: PaymentDeps,
  paymentId: string,
  actor: string,
  attempt: number,
): Promise<PaymentView> {
  const payment = await loadPayment(deps.db, paymentId)
  if (payment.status === 'canceled' || payment.status === 'failed') return toPaymentView(payment)
  if (CAPTURED.includes(payment.status)) {
    throw problem('payment_not_capturable', `Payment ${paymentId} is captured: refund it instead`)
  }
  if (payment.provider_ref) {
    try {
      await voidAtProcessor(providerOf(deps.providers, payment.provider), payment.id, payment.provider_ref)
    } catch (error) {
      if (error instanceof PaymentProviderUnavailable) throw providerUnavailable(error)
      throw error
    }
  }
  const voided = await withTransaction(deps.db, async (trx) => {
    const row = await trx
      .updateTable('payments')
      .set({ status: 'canceled', next_action: null, updated_at: now() })
      .where('id', '=', paymentId)
      .where('status', '=', payment.status)
      .where((eb) =>
        payment.provider_ref === null
          ? eb('provider_ref', 'is', null)
          : eb('provider_ref', '=', payment.provider_ref),
      )
      .returningAll()
      .executeTakeFirst()
    if (!row) {
      const current = await loadPayment(trx, paymentId)
      if (current.status === 'canceled' || current.status === 'failed') return toPaymentView(current)
      if (CAPTURED.includes(current.status)) {
        throw problem('payment_not_capturable', `Payment ${paymentId} is ${current.status}`)
      }
      return undefined
    }
    await emitCanceled(trx, deps.outbox, row, actor)
    return toPaymentView(row)
  })
  if (voided) return voided
  // It moved on (authorised, or waiting on 3-D Secure) since it was read: void that state instead.
  if (attempt >= 3) throw problem('conflict', `Payment ${paymentId} keeps changing; retry`)
  return voidPayment(deps, paymentId, actor, attempt + 1)
}
