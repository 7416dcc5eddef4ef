/**
 * The built-in test gateway: a deterministic stand-in for an external card processor, for demos and
 * tests. It answers to Stripe's test payment method names and keeps its own ledger
 * (test_gateway_operations) keyed by idempotency key, as a real processor does: a repeated call
 * with the same key returns the recorded outcome and never charges twice.
 *
 * | payment method                           | outcome                                       |
 * |------------------------------------------|-----------------------------------------------|
 * | pm_card_visa, pm_card_mastercard         | authorized (captured when asked to)           |
 * | pm_card_chargeDeclined                   | declined `card_declined`                      |
 * | pm_card_chargeDeclinedInsufficientFunds  | declined `insufficient_funds`                 |
 * | pm_card_threeDSecureRequired             | requires_action until the challenge is passed |
 * | pm_card_networkError                     | PaymentProviderUnavailable, nothing recorded  |
 * | anything else                            | declined `invalid_payment_method`             |
 */
import { createHash } from 'node:crypto'
import { type Kysely, type Selectable, sql } from 'kysely'
import type { DB } from '../../../platform/db/schema.ts'
import { PREPARE_MARK } from '../../../platform/db/statements.ts'
import { asynchronousCommit } from '../../../platform/db/transaction.ts'
import { problem } from '../../../platform/http/errors.ts'
import { newId } from '../../../platform/ids.ts'
import {
  type AuthorizeInput,
  type AuthorizeResult,
  type CaptureInput,
  type ChargeLookup,
  type FoundCharge,
  type PaymentProvider,
  PaymentProviderUnavailable,
  type RefundInput,
} from '../provider.ts'
import type { TestGatewayOperationsTable } from '../tables.ts'

type Outcome =
  | 'authorized'
  | 'captured'
  | 'requires_action'
  | 'challenge_passed'
  | 'challenge_failed'
  | `declined:${string}`

const DECLINES: Record<string, { code: string; message: string }> = {
  pm_card_chargeDeclined: { code: 'card_declined', message: 'Your card was declined.' },
  pm_card_chargeDeclinedInsufficientFunds: {
    code: 'insufficient_funds',
    message: 'Your card has insufficient funds.',
  },
}
const SUCCEEDING = new Set(['pm_card_visa', 'pm_card_mastercard'])
const THREE_D_SECURE = 'pm_card_threeDSecureRequired'
const NETWORK_ERROR = 'pm_card_networkError'
/** Stripe's code for a failed 3-D Secure challenge, so both card providers report it alike. */
const AUTHENTICATION_FAILED = 'payment_intent_authentication_failure'

/** A stable stand-in for the processor's card fingerprint: the same card always yields the same one. */
export function testCardFingerprint(paymentMethod: string): string {
  return createHash('sha256').update(paymentMethod).digest('hex').slice(0, 16)
}

function firstOutcome(paymentMethod: string | null, capture: boolean): Outcome {
  if (paymentMethod && SUCCEEDING.has(paymentMethod)) return capture ? 'captured' : 'authorized'
  if (paymentMethod === THREE_D_SECURE) return 'requires_action'
  const decline = paymentMethod ? DECLINES[paymentMethod] : undefined
  return `declined:${decline?.code ?? 'invalid_payment_method'}`
}

function declineMessage(code: string): string {
  if (code === AUTHENTICATION_FAILED) return 'The 3-D Secure challenge was not passed.'
  return (
    Object.values(DECLINES).find((d) => d.code === code)?.message ??
    'The payment method is not a known test card.'
  )
}

/** The ledger key of a payment's authorisation: derived here so every retry lands on the same row. */
function authorizeKey(paymentId: string): string {
  return `${paymentId}:authorize`
}

export class TestGateway implements PaymentProvider {
  readonly id = 'test'
  readonly takesCards = true
  readonly #db: Kysely<DB>
  readonly #publicUrl: string

  /** publicUrl is where the shopper's browser reaches this API (for the 3-D Secure challenge). */
  constructor(db: Kysely<DB>, publicUrl: string) {
    this.#db = db
    this.#publicUrl = publicUrl.replace(/\/+$/, '')
  }

  async authorize(input: AuthorizeInput): Promise<AuthorizeResult> {
    // A network failure leaves no trace at the processor: the retry is a first attempt.
    if (input.payment_method === NETWORK_ERROR) {
      throw new PaymentProviderUnavailable('Test gateway: simulated network error')
    }
    const key = authorizeKey(input.payment_id)
    const inserted = await this.#insertOnce({
      idempotency_key: key,
      kind: 'authorize',
      charge_id: newId('ch'),
      amount: input.amount,
      currency_code: input.currency,
      outcome: firstOutcome(input.payment_method, input.capture),
    })
    // Nothing inserted: a retry, which answers as the first attempt did.
    let op = inserted ?? (await this.#operation(key))
    if (op.outcome === 'challenge_passed' || op.outcome === 'challenge_failed') {
      // The shopper answered the challenge: settle the charge once, whichever retry gets here first.
      const settled: Outcome =
        op.outcome === 'challenge_failed'
          ? `declined:${AUTHENTICATION_FAILED}`
          : input.capture
            ? 'captured'
            : 'authorized'
      await this.#db
        .updateTable('test_gateway_operations')
        .set({ outcome: settled })
        .where('idempotency_key', '=', key)
        .where('outcome', '=', op.outcome)
        .execute()
      op = await this.#operation(key)
    }
    const fingerprint = input.payment_method ? testCardFingerprint(input.payment_method) : null
    const outcome = op.outcome as Outcome
    if (outcome === 'authorized' || outcome === 'captured') {
      return {
        status: outcome,
        provider_ref: op.charge_id,
        card_fingerprint: fingerprint,
        ...(outcome === 'captured' ? { captured_amount: op.amount } : {}),
      }
    }
    if (outcome === 'requires_action') {
      return {
        status: 'requires_action',
        provider_ref: op.charge_id,
        card_fingerprint: fingerprint,
        next_action: {
          type: 'redirect_to_url',
          url: `${this.#publicUrl}/store/payments/${input.payment_id}/authenticate`,
        },
      }
    }
    const code = outcome.slice('declined:'.length)
    return {
      status: 'declined',
      provider_ref: op.charge_id,
      decline_code: code,
      message: declineMessage(code),
      card_fingerprint: fingerprint,
    }
  }

  async capture(input: CaptureInput): Promise<{ provider_ref: string; captured_amount: number }> {
    const charge = await this.#charge(input.provider_ref)
    if (charge.outcome === 'captured')
      return { provider_ref: charge.charge_id, captured_amount: charge.amount }
    if (charge.outcome !== 'authorized' || charge.canceled) {
      throw problem('payment_not_capturable', `Test gateway: charge ${charge.charge_id} is ${charge.outcome}`)
    }
    if (input.amount > charge.amount) {
      throw problem('payment_not_capturable', 'Test gateway: cannot capture more than was authorised')
    }
    const op = await this.#record(
      input.idempotency_key,
      'capture',
      charge.charge_id,
      input.amount,
      input.currency,
    )
    return { provider_ref: charge.charge_id, captured_amount: op.amount }
  }

  async refund(input: RefundInput): Promise<{ provider_ref: string; status: 'succeeded' | 'pending' }> {
    const charge = await this.#charge(input.provider_ref)
    const captured =
      charge.outcome === 'captured' ? charge.amount : await this.#sum(charge.charge_id, 'capture')
    const existing = await this.#db
      .selectFrom('test_gateway_operations')
      .select('idempotency_key')
      .where('idempotency_key', '=', input.idempotency_key)
      .executeTakeFirst()
    if (!existing && (await this.#sum(charge.charge_id, 'refund')) + input.amount > captured) {
      throw problem(
        'refund_exceeds_captured',
        'Test gateway: the refund is larger than what remains captured',
      )
    }
    await this.#record(input.idempotency_key, 'refund', charge.charge_id, input.amount, input.currency)
    return { provider_ref: `re_${input.idempotency_key}`, status: 'succeeded' }
  }

  async cancel(input: { payment_id: string; provider_ref: string; idempotency_key: string }): Promise<void> {
    const charge = await this.#charge(input.provider_ref)
    if (charge.outcome === 'captured' || (await this.#sum(charge.charge_id, 'capture')) > 0) {
      throw problem('payment_not_capturable', 'Test gateway: a captured charge is refunded, not canceled')
    }
    await this.#record(input.idempotency_key, 'cancel', charge.charge_id, 0, charge.currency_code)
  }

  async #operation(key: string) {
    return this.#db
      .selectFrom('test_gateway_operations')
      .selectAll()
      .where('idempotency_key', '=', key)
      .executeTakeFirstOrThrow()
  }

  /**
   * The authorisation a charge id names, and whether it was canceled, in one read; an unknown one
   * is a caller bug, not a shopper's error.
   */
  async #charge(chargeId: string) {
    const charge = await this.#db
      .selectFrom('test_gateway_operations as op')
      .selectAll('op')
      .select((eb) =>
        eb
          .exists(
            eb
              .selectFrom('test_gateway_operations as c')
              .select('c.idempotency_key')
              .where('c.charge_id', '=', chargeId)
              .where('c.kind', '=', 'cancel'),
          )
          .as('canceled'),
      )
      .where('op.charge_id', '=', chargeId)
      .where('op.kind', '=', 'authorize')
      .executeTakeFirst()
    if (!charge) throw new Error(`Test gateway: no charge ${chargeId}`)
    return charge
  }

  async #sum(chargeId: string, kind: 'capture' | 'refund'): Promise<number> {
    const row = await this.#db
      .selectFrom('test_gateway_operations')
      .select(sql<number>`coalesce(sum(amount), 0)::int8`.as('total'))
      .where('charge_id', '=', chargeId)
      .where('kind', '=', kind)
      .executeTakeFirstOrThrow()
    return Number(row.total)
  }

  /**
   * The ledger has no lag: a charge not in it was never made. By the authorisation's key, or by
   * the charge id our row names.
   */
  async findCharge({ payment_id, provider_ref }: ChargeLookup): Promise<FoundCharge | null> {
    const op = await this.#db
      .selectFrom('test_gateway_operations')
      .select(['charge_id', 'outcome', 'amount'])
      .where((eb) =>
        provider_ref
          ? eb.and([eb('charge_id', '=', provider_ref), eb('kind', '=', 'authorize')])
          : eb('idempotency_key', '=', authorizeKey(payment_id)),
      )
      .executeTakeFirst()
    if (!op) return null
    const captured = op.outcome === 'captured' ? Number(op.amount) : await this.#sum(op.charge_id, 'capture')
    const refunded = captured > 0 ? await this.#sum(op.charge_id, 'refund') : 0
    return { provider_ref: op.charge_id, captured_amount: captured, refunded_amount: refunded }
  }

  /** Records an operation once per key and returns what was recorded first. */
  async #record(
    key: string,
    kind: 'capture' | 'refund' | 'cancel',
    chargeId: string,
    amount: number,
    currency: string,
  ) {
    const inserted = await this.#insertOnce({
      idempotency_key: key,
      kind,
      charge_id: chargeId,
      amount,
      currency_code: currency,
      outcome: kind === 'capture' ? 'captured' : kind === 'refund' ? 'refunded' : 'canceled',
    })
    return inserted ?? this.#operation(key)
  }

  /**
   * Records an operation unless its key has one (undefined then). Committed without waiting for
   * the disk, as the carts' writes are: this ledger stands in for the processor's own, outside our
   * database, and what the app records of an operation it commits synchronously after it, which
   * makes the operation durable too (a database crash that forgets one forgot all that followed).
   */
  async #insertOnce(op: Omit<Selectable<TestGatewayOperationsTable>, 'created_at'>) {
    const { rows } = await sql<Selectable<TestGatewayOperationsTable>>`
      ${sql.raw(PREPARE_MARK)} insert into test_gateway_operations
        (idempotency_key, kind, charge_id, amount, currency_code, outcome)
      select ${op.idempotency_key}, ${op.kind}, ${op.charge_id}, ${op.amount}, ${op.currency_code}, ${op.outcome}
      where ${asynchronousCommit}
      on conflict (idempotency_key) do nothing
      returning *`.execute(this.#db)
    return rows[0]
  }
}

/**
 * The shopper's answer to a pending 3-D Secure challenge of a test gateway payment. Returns false
 * when the payment has no challenge waiting (never started, or already answered).
 */
export async function answerTestChallenge(
  db: Kysely<DB>,
  paymentId: string,
  passed: boolean,
): Promise<boolean> {
  const result = await db
    .updateTable('test_gateway_operations')
    .set({ outcome: passed ? 'challenge_passed' : 'challenge_failed' })
    .where('idempotency_key', '=', authorizeKey(paymentId))
    .where('outcome', '=', 'requires_action')
    .executeTakeFirst()
  return result.numUpdatedRows > 0n
}
