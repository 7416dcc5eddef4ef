/**
 * Payments: the test gateway's cards and its ledger (one charge per key), its 3-D Secure step
 * through the store route, manual payments, Stripe through the official SDK against a local
 * stand-in of its API (declines, 3-D Secure, retries, outages), signed webhooks applied once,
 * capture / refund / cancel with their events, refunds that never exceed the capture under
 * concurrency (Postgres), and the card-testing velocity limits on both key-value stores.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PaymentGiveBackRefused, PaymentProviderUnavailable } from '../src/modules/payments/provider.ts'
import { StripeProvider } from '../src/modules/payments/providers/stripe.ts'
import { testCardFingerprint } from '../src/modules/payments/providers/test-gateway.ts'
import { providerOf } from '../src/modules/payments/registry.ts'
import {
  applyWebhook,
  attachOrder,
  authorizePayment,
  cancelPayment,
  capturePayment,
  createPayment,
  findPayment,
  type PaymentDeps,
  paymentDeps,
  paymentsOfCart,
  recordAuthorization,
  refundPayment,
  refundsOfPayment,
  voidUnplaced,
} from '../src/modules/payments/service.ts'
import { PaymentVelocity, VELOCITY_DECLINE } from '../src/modules/payments/velocity.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { ProblemError, problem } from '../src/platform/http/errors.ts'
import { newId } from '../src/platform/ids.ts'
import { createKv, type Kv } from '../src/platform/kv/index.ts'
import { startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase, describePostgres } from './support/database.ts'
import { waitForLockWaits } from './support/locks.ts'
import { type StripeServer, startStripeServer, stripeEvent } from './support/stripe-server.ts'

const WEBHOOK_SECRET = 'whsec_test_0123456789abcdef'
const stripeEnv = (server: StripeServer) => ({
  STRIPE_SECRET_KEY: 'sk_test_shopwright',
  STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  STRIPE_API_URL: server.url,
})

/** Rejects with the problem code (and returns the ProblemError for further checks). */
async function problemOf(promise: Promise<unknown>): Promise<ProblemError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(ProblemError)
  return error as ProblemError
}

function setup(kind: Parameters<typeof startTestNode>[0]) {
  const ctx = {} as { node: TestNode; stripe: StripeServer; deps: PaymentDeps }
  beforeAll(async () => {
    ctx.stripe = await startStripeServer()
    ctx.node = await startTestNode(kind, { env: stripeEnv(ctx.stripe) })
    ctx.deps = paymentDeps(ctx.node.runtime)
  })
  afterAll(async () => {
    await ctx.node?.close()
    await ctx.stripe?.close()
  })
  /** A payment for a fresh guest cart (a bare row: these tests drive payments, not carts). */
  const newPayment = async (provider: string, paymentMethod: string | null, amount = 1000) => {
    const region = newId('reg')
    await ctx.deps.db
      .insertInto('regions')
      .values({ id: region, name: region, currency_code: 'EUR', prices_include_tax: true })
      .execute()
    const cartId = newId('cart')
    await ctx.deps.db
      .insertInto('carts')
      .values({ id: cartId, region_id: region, currency_code: 'EUR', prices_include_tax: true })
      .execute()
    return withTransaction(ctx.deps.db, (trx) =>
      createPayment(trx, {
        cart_id: cartId,
        provider,
        amount,
        currency: 'EUR',
        payment_method: paymentMethod,
      }),
    )
  }
  const eventsOf = (subjectId: string, type?: string) => {
    let query = ctx.deps.db
      .selectFrom('events')
      .select(['type', 'payload'])
      .where('subject_id', '=', subjectId)
      .orderBy('id')
    if (type) query = query.where('type', '=', type)
    return query.execute()
  }
  const ledgerOf = (paymentId: string) =>
    ctx.deps.db
      .selectFrom('test_gateway_operations')
      .selectAll()
      .where('idempotency_key', 'like', `${paymentId}:%`)
      .execute()
  /** A capture made at the test gateway outside the app, as in its dashboard. */
  const captureAtGateway = (paymentId: string, providerRef: string, amount: number) =>
    providerOf(ctx.deps.providers, 'test').capture({
      payment_id: paymentId,
      provider_ref: providerRef,
      amount,
      currency: 'EUR',
      idempotency_key: `dashboard:${paymentId}`,
    })
  /** A payment with no order whose capture of `amount` was refunded once: one refund, one event each. */
  const expectRefundedOnce = async (paymentId: string, amount: number) => {
    expect(await findPayment(ctx.deps.db, paymentId)).toMatchObject({
      status: 'refunded',
      order_id: null,
      captured_amount: amount,
      refunded_amount: amount,
    })
    expect(await refundsOfPayment(ctx.deps.db, paymentId)).toMatchObject([
      { amount, status: 'succeeded', provider_ref: expect.any(String) },
    ])
    expect(await eventsOf(paymentId, 'payment.captured')).toHaveLength(1)
    expect(await eventsOf(paymentId, 'refund.created')).toHaveLength(1)
  }
  return { ctx, newPayment, eventsOf, ledgerOf, captureAtGateway, expectRefundedOnce }
}

describeEachDatabase('payments', (kind) => {
  const { ctx, newPayment, eventsOf, ledgerOf, captureAtGateway, expectRefundedOnce } = setup(kind)
  const authorize = (id: string, capture = false) => authorizePayment(ctx.deps, id, { capture })

  describe('test gateway', () => {
    it.each([
      ['pm_card_visa', false, 'authorized', null],
      ['pm_card_mastercard', true, 'captured', null],
      ['pm_card_chargeDeclined', false, 'failed', 'card_declined'],
      ['pm_card_chargeDeclinedInsufficientFunds', false, 'failed', 'insufficient_funds'],
      ['pm_card_unheardOf', false, 'failed', 'invalid_payment_method'],
    ])('%s (capture %s) → %s %s', async (pm, capture, status, failure) => {
      const created = await newPayment('test', pm)
      const { payment } = await authorize(created.id, capture)
      expect(payment).toMatchObject({ status, failure_code: failure })
      expect(payment.provider_ref).toMatch(/^ch_/)
      expect(payment.captured_amount).toBe(status === 'captured' ? 1000 : 0)
      const row = await ctx.deps.db
        .selectFrom('payments')
        .select('card_fingerprint')
        .where('id', '=', created.id)
        .executeTakeFirstOrThrow()
      expect(row.card_fingerprint).toBe(testCardFingerprint(pm))
    })

    it('an answer recorded late leaves a settled payment as it is, yet links the order placed on it', async () => {
      const created = await newPayment('test', 'pm_card_visa', 1500)
      const record = (result: Parameters<typeof recordAuthorization>[2], orderId?: string) =>
        withTransaction(ctx.deps.db, (trx) =>
          recordAuthorization(trx, created.id, result, ctx.deps.outbox, orderId ? { orderId } : {}),
        )
      // A processor reporting more than was asked: never more than the payment's amount.
      const captured = await record({ status: 'captured', provider_ref: 'ch_late', captured_amount: 99_999 })
      expect(captured).toMatchObject({ status: 'captured', captured_amount: 1500, order_id: null })
      const late = await record({ status: 'authorized', provider_ref: 'ch_late' }, 'ord_late')
      expect(late).toMatchObject({ status: 'captured', captured_amount: 1500, order_id: 'ord_late' })
      expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
        status: 'captured',
        captured_amount: 1500,
        order_id: 'ord_late',
      })
    })

    it('a network error throws 503 and records nothing, so the retry is a first attempt', async () => {
      const created = await newPayment('test', 'pm_card_networkError')
      const error = await problemOf(authorize(created.id))
      expect(error.code).toBe('payment_provider_unavailable')
      expect(await ledgerOf(created.id)).toHaveLength(0)
      expect((await findPayment(ctx.deps.db, created.id))?.status).toBe('pending')
    })

    it('the same authorisation repeated charges once', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      const gateway = providerOf(ctx.deps.providers, 'test')
      const input = {
        payment_id: created.id,
        amount: 1000,
        currency: 'EUR',
        payment_method: 'pm_card_visa',
        provider_ref: null,
        email: null,
        capture: false,
      }
      const results = await Promise.all([1, 2, 3].map(() => gateway.authorize(input)))
      results.push(await gateway.authorize(input))
      expect(new Set(results.map((r) => r.provider_ref)).size).toBe(1)
      expect(results.every((r) => r.status === 'authorized')).toBe(true)
      expect(await ledgerOf(created.id)).toHaveLength(1)
    })

    it('3-D Secure: requires action, then the challenge passed through the route authorises', async () => {
      const created = await newPayment('test', 'pm_card_threeDSecureRequired')
      const first = await authorize(created.id)
      expect(first.payment.status).toBe('requires_action')
      expect(first.payment.next_action).toMatchObject({
        type: 'redirect_to_url',
        url: expect.stringContaining(`/store/payments/${created.id}/authenticate`),
      })
      // Not answered yet: asking again changes nothing.
      expect((await authorize(created.id)).payment.status).toBe('requires_action')

      const answer = (result: string, cart_id = created.cart_id) =>
        ctx.node.app.inject({
          method: 'POST',
          url: `/store/payments/${created.id}/authenticate`,
          payload: { result, cart_id },
        })
      // Only the cart's shopper may answer: another cart's id (here, one that exists) is not found.
      const stranger = await newPayment('test', 'pm_card_visa')
      expect((await answer('pass', stranger.cart_id)).statusCode).toBe(404)
      expect((await answer('pass', newId('cart'))).statusCode).toBe(404)
      const res = await answer('pass')
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual({ payment_id: created.id, result: 'passed' })
      expect((await answer('pass')).json().code).toBe('conflict')

      const settled = await authorize(created.id, true)
      expect(settled.payment).toMatchObject({ status: 'captured', captured_amount: 1000 })
      expect(settled.payment.provider_ref).toBe(first.payment.provider_ref)
      expect(await ledgerOf(created.id)).toHaveLength(1)
      expect(await eventsOf(created.id, 'payment.captured')).toHaveLength(1)
    })

    it('3-D Secure failed: the payment is declined', async () => {
      const created = await newPayment('test', 'pm_card_threeDSecureRequired')
      await authorize(created.id)
      const res = await ctx.node.app.inject({
        method: 'POST',
        url: `/store/payments/${created.id}/authenticate`,
        payload: { result: 'fail', cart_id: created.cart_id },
      })
      expect(res.json().result).toBe('failed')
      const { payment } = await authorize(created.id)
      expect(payment).toMatchObject({
        status: 'failed',
        failure_code: 'payment_intent_authentication_failure',
      })
    })

    it('the challenge route validates its input and serves test gateway payments only', async () => {
      const manual = await newPayment('manual', 'bank_transfer')
      const post = (id: string, payload: object) =>
        ctx.node.app.inject({ method: 'POST', url: `/store/payments/${id}/authenticate`, payload })
      const unknown = await post(newId('pay'), { result: 'pass', cart_id: manual.cart_id })
      expect(unknown.statusCode).toBe(404)
      expect(unknown.headers['content-type']).toContain('application/problem+json')
      expect((await post(manual.id, { result: 'pass', cart_id: manual.cart_id })).statusCode).toBe(404)
      const bad = await post(manual.id, { result: 'maybe', cart_id: manual.cart_id })
      expect(bad.statusCode).toBe(400)
      expect(bad.json().errors[0].path).toBe('body.result')
      const noCart = await post(manual.id, { result: 'pass' })
      expect(noCart.statusCode).toBe(400)
      expect(noCart.json().errors[0].path).toBe('body.cart_id')
      expect((await post('nope', { result: 'pass' })).statusCode).toBe(400)
    })
  })

  describe('manual payments', () => {
    it('await the transfer, are captured by staff, refunded by hand', async () => {
      const created = await newPayment('manual', 'bank_transfer', 5000)
      const { payment } = await authorize(created.id, true)
      expect(payment).toMatchObject({ status: 'awaiting_transfer', provider_ref: created.id })
      expect(payment.next_action).toMatchObject({
        type: 'display_transfer_instructions',
        method: 'bank_transfer',
        reference: created.id,
        amount: 5000,
        currency: 'EUR',
      })
      const captured = await capturePayment(ctx.deps, created.id, { actor: 'staff_1' })
      expect(captured).toMatchObject({ status: 'captured', captured_amount: 5000 })
      const refund = await refundPayment(ctx.deps, created.id, { amount: 5000, actor: 'staff_1', key: 'r1' })
      expect(refund).toMatchObject({ status: 'succeeded', amount: 5000, currency: 'EUR' })
      expect((await findPayment(ctx.deps.db, created.id))?.status).toBe('refunded')
    })

    it('cash on delivery can be canceled before the money arrives', async () => {
      const created = await newPayment('manual', 'cash_on_delivery')
      const { payment } = await authorize(created.id)
      expect(payment.next_action).toMatchObject({ method: 'cash_on_delivery' })
      expect((await cancelPayment(ctx.deps, created.id, 'staff_1')).status).toBe('canceled')
    })
  })

  describe('capture, refund, cancel', () => {
    it('captures once, with one payment.captured event carrying the order', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      await authorize(created.id)
      await withTransaction(ctx.deps.db, (trx) => attachOrder(trx, created.id, 'ord_1'))
      const first = await capturePayment(ctx.deps, created.id, { actor: 'staff_1' })
      const again = await capturePayment(ctx.deps, created.id, { actor: 'staff_1' })
      expect(first).toMatchObject({ status: 'captured', captured_amount: 1000, order_id: 'ord_1' })
      expect(again).toEqual(first)
      const events = await eventsOf(created.id, 'payment.captured')
      expect(events).toHaveLength(1)
      expect(events[0]!.payload).toMatchObject({
        payment_id: created.id,
        order_id: 'ord_1',
        amount: 1000,
        currency: 'EUR',
      })
      expect((await ledgerOf(created.id)).map((op) => op.kind).sort()).toEqual(['authorize', 'capture'])
    })

    it('captures part of an authorisation', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      await authorize(created.id)
      const captured = await capturePayment(ctx.deps, created.id, { amount: 600, actor: 'staff_1' })
      expect(captured).toMatchObject({ status: 'captured', captured_amount: 600 })
    })

    it('refuses to capture a declined, pending or canceled payment', async () => {
      const declined = await newPayment('test', 'pm_card_chargeDeclined')
      await authorize(declined.id)
      expect((await problemOf(capturePayment(ctx.deps, declined.id))).code).toBe('payment_not_capturable')
      const pending = await newPayment('test', 'pm_card_visa')
      expect((await problemOf(capturePayment(ctx.deps, pending.id))).code).toBe('payment_not_capturable')
      expect((await problemOf(capturePayment(ctx.deps, newId('pay')))).code).toBe('not_found')
    })

    it('refunds in parts, replays a key, refuses more than was captured', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      await authorize(created.id, true)
      const first = await refundPayment(ctx.deps, created.id, {
        amount: 300,
        reason: 'damaged',
        actor: 'staff_1',
        key: 'k1',
      })
      expect(first).toMatchObject({ amount: 300, status: 'succeeded', reason: 'damaged', actor: 'staff_1' })
      expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
        status: 'partially_refunded',
        refunded_amount: 300,
      })
      const replay = await refundPayment(ctx.deps, created.id, { amount: 300, actor: 'staff_1', key: 'k1' })
      expect(replay.id).toBe(first.id)
      const reused = await problemOf(
        refundPayment(ctx.deps, created.id, { amount: 10, actor: 's', key: 'k1' }),
      )
      expect(reused.code).toBe('idempotency_key_reused')

      const over = await problemOf(
        refundPayment(ctx.deps, created.id, { amount: 701, actor: 's', key: 'k2' }),
      )
      expect(over.code).toBe('refund_exceeds_captured')
      expect(over.errors?.[0]).toEqual({ path: 'body.amount', message: 'must be at most 700' })

      await refundPayment(ctx.deps, created.id, { amount: 700, actor: 'staff_1', key: 'k3' })
      expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
        status: 'refunded',
        refunded_amount: 1000,
      })
      // The refused attempt left no row; the two refunds each left one event.
      expect((await refundsOfPayment(ctx.deps.db, created.id)).map((r) => r.amount)).toEqual([300, 700])
      expect(await eventsOf(created.id, 'refund.created')).toHaveLength(2)
      const gatewayRefunds = (await ledgerOf(created.id)).filter((op) => op.kind === 'refund')
      expect(gatewayRefunds).toHaveLength(2)
    })

    it('refuses to refund an uncaptured payment', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      await authorize(created.id)
      const error = await problemOf(refundPayment(ctx.deps, created.id, { amount: 1, actor: 's', key: 'k' }))
      expect(error.code).toBe('refund_exceeds_captured')
      expect(await refundsOfPayment(ctx.deps.db, created.id)).toEqual([])
    })

    it('cancels an authorisation once; a captured payment must be refunded instead', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      await authorize(created.id)
      const canceled = await cancelPayment(ctx.deps, created.id, 'staff_1')
      expect(canceled.status).toBe('canceled')
      expect((await cancelPayment(ctx.deps, created.id, 'staff_1')).status).toBe('canceled')
      expect(await eventsOf(created.id, 'payment.canceled')).toHaveLength(1)
      expect((await problemOf(capturePayment(ctx.deps, created.id))).code).toBe('payment_not_capturable')

      const captured = await newPayment('test', 'pm_card_visa')
      await authorize(captured.id, true)
      expect((await problemOf(cancelPayment(ctx.deps, captured.id, 's'))).code).toBe('payment_not_capturable')

      const declined = await newPayment('test', 'pm_card_chargeDeclined')
      await authorize(declined.id)
      expect((await cancelPayment(ctx.deps, declined.id, 's')).status).toBe('failed')
    })

    it('lists the attempts of a cart', async () => {
      const cartId = newId('cart')
      for (const pm of ['pm_card_chargeDeclined', 'pm_card_visa']) {
        const p = await withTransaction(ctx.deps.db, (trx) =>
          createPayment(trx, {
            cart_id: cartId,
            provider: 'test',
            amount: 10,
            currency: 'EUR',
            payment_method: pm,
          }),
        )
        await authorize(p.id)
      }
      expect((await paymentsOfCart(ctx.deps.db, cartId)).map((p) => p.status)).toEqual([
        'failed',
        'authorized',
      ])
    })

    it('names an unknown provider with 422', async () => {
      const created = await newPayment('paypal', 'x')
      expect((await problemOf(authorize(created.id))).code).toBe('unknown_payment_provider')
    })

    it('refunds what the processor captured of a charge the void job finds for a payment no answer named', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      const { payment } = await authorize(created.id)
      // As a give-up after every answer was lost leaves it: canceled here, no charge named.
      await ctx.deps.db
        .updateTable('payments')
        .set({ status: 'canceled', provider_ref: null })
        .where('id', '=', created.id)
        .execute()
      // Part of it captured at the processor meanwhile, outside the app: a void would be refused.
      await captureAtGateway(created.id, payment.provider_ref!, 600)
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      await expectRefundedOnce(created.id, 600)
      expect((await findPayment(ctx.deps.db, created.id))?.provider_ref).toBe(payment.provider_ref)
      const ours = await ledgerOf(created.id)
      expect(ours.map((op) => [op.kind, op.amount]).sort()).toEqual([
        ['authorize', 1000],
        ['refund', 600],
      ])
    })

    it('refunds once what the processor captured of a charge it refused to void for a payment canceled here', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      const { payment } = await authorize(created.id)
      // Given up: canceled here with its charge named, which is then captured in part at the
      // processor (its dashboard) before the void job's void reaches it.
      await ctx.deps.db
        .updateTable('payments')
        .set({ status: 'canceled' })
        .where('id', '=', created.id)
        .execute()
      const gateway = providerOf(ctx.deps.providers, 'test')
      await captureAtGateway(created.id, payment.provider_ref!, 600)
      // The run stops between recording the capture and the refund (the processor out of reach).
      const refund = gateway.refund.bind(gateway)
      gateway.refund = async () => {
        throw new PaymentProviderUnavailable('Test gateway: simulated network error')
      }
      try {
        const lost = await problemOf(voidUnplaced(ctx.deps, created.id, 'system:payment-voids'))
        expect(lost.code).toBe('payment_provider_unavailable')
      } finally {
        gateway.refund = refund
      }
      expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
        provider_ref: payment.provider_ref,
        captured_amount: 600,
        refunded_amount: 600,
      })
      // The next runs resume the refund from the row, once.
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      await expectRefundedOnce(created.id, 600)
      const ours = await ledgerOf(created.id)
      expect(ours.map((op) => [op.kind, op.amount]).sort()).toEqual([
        ['authorize', 1000],
        ['refund', 600],
      ])
    })

    it('refunds the capture of a card refused here over its limit, whose void the processor refused', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      const { payment } = await authorize(created.id)
      // Refused here over its card's failure limit after the processor authorised it.
      await ctx.deps.db
        .updateTable('payments')
        .set({ status: 'failed', failure_code: VELOCITY_DECLINE, failure_message: 'over the limit' })
        .where('id', '=', created.id)
        .execute()
      const gateway = providerOf(ctx.deps.providers, 'test')
      // A refusal with nothing captured stays for staff: the void job dead-letters it, as before.
      const cancel = gateway.cancel.bind(gateway)
      gateway.cancel = async () => {
        throw problem('payment_not_capturable', 'Test gateway: the void was refused')
      }
      let refused: unknown
      try {
        refused = await voidUnplaced(ctx.deps, created.id, 'system:payment-voids').then(
          () => undefined,
          (error: unknown) => error,
        )
      } finally {
        gateway.cancel = cancel
      }
      expect(refused).toBeInstanceOf(PaymentGiveBackRefused)
      expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
        status: 'failed',
        captured_amount: 0,
      })
      // Captured in full at the processor (its dashboard): the void is refused, the capture refunded.
      await captureAtGateway(created.id, payment.provider_ref!, 1000)
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      await expectRefundedOnce(created.id, 1000)
      // Why no order came stays on the row.
      expect((await findPayment(ctx.deps.db, created.id))?.failure_code).toBe(VELOCITY_DECLINE)
      const ours = await ledgerOf(created.id)
      expect(ours.map((op) => [op.kind, op.amount]).sort()).toEqual([
        ['authorize', 1000],
        ['refund', 1000],
      ])
    })

    it('refunds the capture of an authorised payment with no order whose void the processor refused', async () => {
      const created = await newPayment('test', 'pm_card_visa')
      const { payment } = await authorize(created.id)
      // As a give-up for lost stock leaves it: authorised, no order; then captured at the processor.
      await captureAtGateway(created.id, payment.provider_ref!, 1000)
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      await expectRefundedOnce(created.id, 1000)
      expect((await ledgerOf(created.id)).map((op) => op.kind).sort()).toEqual(['authorize', 'refund'])
      expect(await eventsOf(created.id, 'payment.canceled')).toHaveLength(0)
    })
  })

  describe('Stripe', () => {
    const stripeProvider = () => providerOf(ctx.deps.providers, 'stripe')
    const input = (paymentId: string, pm: string, capture = false) => ({
      payment_id: paymentId,
      amount: 2500,
      currency: 'EUR',
      payment_method: pm,
      provider_ref: null,
      email: 'shopper@example.com',
      capture,
    })

    it('authorises, captures and refunds a card', async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id)
      expect(payment.status).toBe('authorized')
      expect(payment.provider_ref).toMatch(/^pi_/)
      const intent = ctx.stripe.intent(payment.provider_ref!)!
      expect(intent).toMatchObject({
        amount: 2500,
        currency: 'eur',
        capture_method: 'manual',
        status: 'requires_capture',
        metadata: { payment_id: created.id },
      })
      const captured = await capturePayment(ctx.deps, created.id, { amount: 2000, actor: 'staff_1' })
      expect(captured).toMatchObject({ status: 'captured', captured_amount: 2000 })
      expect(intent.amount_received).toBe(2000)
      const refund = await refundPayment(ctx.deps, created.id, { amount: 500, actor: 'staff_1', key: 'r' })
      expect(refund).toMatchObject({ status: 'succeeded', amount: 500 })
      expect(refund.provider_ref).toMatch(/^re_/)
      const over = await problemOf(
        refundPayment(ctx.deps, created.id, { amount: 1501, actor: 's', key: 'r2' }),
      )
      expect(over.code).toBe('refund_exceeds_captured')
    })

    it('captures at once when asked, and reports declines with their code', async () => {
      const auto = await stripeProvider().authorize(input(newId('pay'), 'pm_card_mastercard', true))
      expect(auto).toMatchObject({ status: 'captured', captured_amount: 2500 })
      expect(auto.status === 'captured' && auto.card_fingerprint).toMatch(/^fp_/)
      const declined = await stripeProvider().authorize(
        input(newId('pay'), 'pm_card_chargeDeclinedInsufficientFunds'),
      )
      expect(declined).toMatchObject({ status: 'declined', decline_code: 'insufficient_funds' })
      expect(declined.provider_ref).toMatch(/^pi_/)
      const generic = await stripeProvider().authorize(input(newId('pay'), 'pm_card_chargeDeclined'))
      expect(generic).toMatchObject({ status: 'declined', decline_code: 'generic_decline' })
      const unknown = await stripeProvider().authorize(input(newId('pay'), 'pm_card_madeUp'))
      expect(unknown).toMatchObject({ status: 'declined', decline_code: 'invalid_payment_method' })
    })

    it('3-D Secure: requires action with the client secret, then authorises on the same intent', async () => {
      const created = await newPayment('stripe', 'pm_card_threeDSecureRequired', 2500)
      const first = await authorize(created.id)
      expect(first.payment.status).toBe('requires_action')
      expect(first.payment.next_action).toMatchObject({
        type: 'use_stripe_sdk',
        client_secret: expect.stringMatching(/^pi_.+_secret_/),
      })
      ctx.stripe.completeAction(first.payment.provider_ref!, true)
      const settled = await authorize(created.id)
      expect(settled.payment).toMatchObject({
        status: 'authorized',
        provider_ref: first.payment.provider_ref,
      })

      const failing = await newPayment('stripe', 'pm_card_threeDSecureRequired', 2500)
      const pending = await authorize(failing.id)
      ctx.stripe.completeAction(pending.payment.provider_ref!, false)
      const failed = await authorize(failing.id)
      expect(failed.payment).toMatchObject({
        status: 'failed',
        failure_code: 'payment_intent_authentication_failure',
      })
    })

    it('a retried authorisation finds the intent it created: one charge', async () => {
      const paymentId = newId('pay')
      const before = ctx.stripe.stats.intentsCreated
      const first = await stripeProvider().authorize(input(paymentId, 'pm_card_visa'))
      const second = await stripeProvider().authorize(input(paymentId, 'pm_card_visa'))
      expect(second.provider_ref).toBe(first.provider_ref)
      expect(second.status).toBe('authorized')
      // The answer lost on the way back: the SDK retries under the same key and gets the replay.
      const lost = newId('pay')
      ctx.stripe.failNext(1, 'drop_after')
      const recovered = await stripeProvider().authorize(input(lost, 'pm_card_visa'))
      expect(recovered.status).toBe('authorized')
      expect(ctx.stripe.stats.intentsCreated - before).toBe(2)
    })

    it('a 500 or a dropped connection is PaymentProviderUnavailable; the retry then succeeds once', async () => {
      const strict = new StripeProvider({
        secretKey: 'sk_test_shopwright',
        webhookSecret: WEBHOOK_SECRET,
        apiUrl: ctx.stripe.url,
        maxNetworkRetries: 0,
      })
      const paymentId = newId('pay')
      const before = ctx.stripe.stats.intentsCreated
      ctx.stripe.failNext(1, 500)
      await expect(strict.authorize(input(paymentId, 'pm_card_visa'))).rejects.toBeInstanceOf(
        PaymentProviderUnavailable,
      )
      // A closed connection is retried once by the SDK itself, so two drops to see it fail.
      ctx.stripe.failNext(2, 'drop')
      await expect(strict.authorize(input(paymentId, 'pm_card_visa'))).rejects.toBeInstanceOf(
        PaymentProviderUnavailable,
      )
      const ok = await strict.authorize(input(paymentId, 'pm_card_visa'))
      expect(ok.status).toBe('authorized')
      expect(ctx.stripe.stats.intentsCreated - before).toBe(1)

      // Through the service: 503 with Retry-After, and the payment stays pending.
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      ctx.stripe.failNext(2, 500)
      const error = await problemOf(authorize(created.id))
      expect(error.code).toBe('payment_provider_unavailable')
      expect(error.headers?.['retry-after']).toBeDefined()
      expect((await findPayment(ctx.deps.db, created.id))?.status).toBe('pending')
    })

    it('a refund the processor cannot confirm stays reserved; its retry settles it once', async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      await authorize(created.id, true)
      const refunds = ctx.stripe.stats.refunds
      ctx.stripe.failNext(2, 500)
      const error = await problemOf(
        refundPayment(ctx.deps, created.id, { amount: 2500, actor: 's', key: 'x' }),
      )
      expect(error.code).toBe('payment_provider_unavailable')
      expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({ refunded_amount: 2500 })
      const retried = await refundPayment(ctx.deps, created.id, { amount: 2500, actor: 's', key: 'x' })
      expect(retried.status).toBe('succeeded')
      expect(ctx.stripe.stats.refunds - refunds).toBe(1)
      expect(await eventsOf(created.id, 'refund.created')).toHaveLength(1)
    })

    it('a refund the processor refuses gives its amount back', async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id, true)
      // Refunded in the Stripe dashboard, unknown to us: Stripe refuses ours as too large.
      const stripe = new Stripe('sk_test_shopwright', {
        host: '127.0.0.1',
        port: new URL(ctx.stripe.url).port,
        protocol: 'http',
      })
      await stripe.refunds.create({ payment_intent: payment.provider_ref!, amount: 2000 })
      const error = await problemOf(
        refundPayment(ctx.deps, created.id, { amount: 1000, actor: 's', key: 'y' }),
      )
      expect(error.code).toBe('refund_exceeds_captured')
      expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
        refunded_amount: 0,
        status: 'captured',
      })
      expect((await refundsOfPayment(ctx.deps.db, created.id))[0]?.status).toBe('failed')
    })

    it('voids an authorisation', async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id)
      expect((await cancelPayment(ctx.deps, created.id, 'staff_1')).status).toBe('canceled')
      expect(ctx.stripe.intent(payment.provider_ref!)?.status).toBe('canceled')
    })

    it('calls a void Stripe refuses unknown, not refused, while it cannot say why', async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id, true)
      const stripe = ctx.deps.providers.get('stripe')!
      const cancel = () =>
        stripe.cancel({
          payment_id: created.id,
          provider_ref: payment.provider_ref!,
          idempotency_key: randomUUID(),
        })
      // Captured: the void is refused, and Stripe, asked, says the intent succeeded.
      expect((await problemOf(cancel())).code).toBe('payment_not_capturable')
      // The void refused, then Stripe out of reach when asked about the intent (every retry).
      ctx.stripe.failNext(1, 'pass')
      ctx.stripe.failNext(5, 500)
      await expect(cancel()).rejects.toBeInstanceOf(PaymentProviderUnavailable)
      // Still processing at Stripe: it may yet be voided.
      ctx.stripe.intent(payment.provider_ref!)!.status = 'processing'
      await expect(cancel()).rejects.toBeInstanceOf(PaymentProviderUnavailable)
    })

    it('finds and voids the intent of a payment canceled before any answer named it', async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id, false)
      // As a give-up after every answer was lost leaves it: canceled here, no charge named.
      await ctx.deps.db
        .updateTable('payments')
        .set({ status: 'canceled', provider_ref: null })
        .where('id', '=', created.id)
        .execute()
      const stripe = ctx.deps.providers.get('stripe')!
      const now = new Date()
      const lookup = (payment_id: string, given_up_at: Date) =>
        stripe.findCharge!({ payment_id, created_at: given_up_at, given_up_at })
      expect(await lookup(created.id, now)).toEqual({
        provider_ref: payment.provider_ref,
        captured_amount: 0,
        refunded_amount: 0,
      })
      // Stripe's search lags new intents: "none" is believed only well after the give-up.
      await expect(lookup('pay_never_sent', now)).rejects.toBeInstanceOf(PaymentProviderUnavailable)
      expect(await lookup('pay_never_sent', new Date(Date.now() - 3 * 3600_000))).toBeNull()
      // Not searchable yet: the void job is told to come back, not that there is nothing to void.
      const intent = ctx.stripe.intent(payment.provider_ref!)!
      const metadata = intent.metadata
      intent.metadata = {}
      await expect(voidUnplaced(ctx.deps, created.id, 'system:payment-voids')).rejects.toBeInstanceOf(
        PaymentProviderUnavailable,
      )
      intent.metadata = metadata
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      expect(ctx.stripe.intent(payment.provider_ref!)?.status).toBe('canceled')
      expect((await findPayment(ctx.deps.db, created.id))?.provider_ref).toBe(payment.provider_ref)
    })

    /** Stripe's API as its dashboard (or anything but this app) uses it. */
    const dashboard = () =>
      new Stripe('sk_test_shopwright', {
        host: '127.0.0.1',
        port: new URL(ctx.stripe.url).port,
        protocol: 'http',
      })
    /** A Stripe payment authorised there and canceled here before any answer named its intent. */
    const canceledUnnamed = async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id, false)
      await ctx.deps.db
        .updateTable('payments')
        .set({ status: 'canceled', provider_ref: null })
        .where('id', '=', created.id)
        .execute()
      return { paymentId: created.id, intentId: payment.provider_ref! }
    }

    it('refunds once an intent captured in the dashboard that the void job finds for a payment no answer named', async () => {
      const { paymentId, intentId } = await canceledUnnamed()
      await dashboard().paymentIntents.capture(intentId, { amount_to_capture: 2000 })
      const refunds = ctx.stripe.stats.refunds
      // The search and the intent answer; Stripe makes the refund and its answer is lost, twice.
      ctx.stripe.failNext(2, 'pass')
      ctx.stripe.failNext(1, 'drop_after')
      ctx.stripe.failNext(2, 500)
      const lost = await problemOf(voidUnplaced(ctx.deps, paymentId, 'system:payment-voids'))
      expect(lost.code).toBe('payment_provider_unavailable')
      expect(ctx.stripe.stats.refunds - refunds).toBe(1)
      // The capture is recorded before the refund is asked for: the job's next run resumes it.
      expect(await findPayment(ctx.deps.db, paymentId)).toMatchObject({
        provider_ref: intentId,
        captured_amount: 2000,
        refunded_amount: 2000,
      })
      await voidUnplaced(ctx.deps, paymentId, 'system:payment-voids')
      await voidUnplaced(ctx.deps, paymentId, 'system:payment-voids')
      expect(ctx.stripe.stats.refunds - refunds).toBe(1)
      await expectRefundedOnce(paymentId, 2000)
    })

    it("lists the intents of the payment's lifetime where Stripe offers the account no search", async () => {
      const { paymentId, intentId } = await canceledUnnamed()
      // Intents of other payments, made since: the list holds them too, newest first.
      const others = await Promise.all(
        [1, 2, 3].map((n) =>
          dashboard().paymentIntents.create({
            amount: 1000,
            currency: 'eur',
            metadata: { payment_id: `pay_other_${n}` },
          }),
        ),
      )
      ctx.stripe.searchUnavailable = true
      ctx.stripe.listPageSize = 2
      try {
        await voidUnplaced(ctx.deps, paymentId, 'system:payment-voids')
        expect(ctx.stripe.intent(intentId)?.status).toBe('canceled')
        expect((await findPayment(ctx.deps.db, paymentId))?.provider_ref).toBe(intentId)
        expect(others.map((o) => ctx.stripe.intent(o.id)?.status)).not.toContain('canceled')
        // Listed, not searched: "none" is believed at once, as a list does not lag.
        const now = new Date()
        const stripe = ctx.deps.providers.get('stripe')!
        expect(
          await stripe.findCharge!({ payment_id: 'pay_never_sent', created_at: now, given_up_at: now }),
        ).toBeNull()
      } finally {
        ctx.stripe.searchUnavailable = false
        ctx.stripe.listPageSize = 100
      }
    })

    it('leaves to staff an intent Stripe offers no search for, among more intents than it pages through', async () => {
      const { paymentId, intentId } = await canceledUnnamed()
      // One intent a page: the lookup gives up after its last page, before reaching this payment's.
      ctx.stripe.searchUnavailable = true
      ctx.stripe.listPageSize = 1
      let refused: unknown
      try {
        for (let n = 0; n < 20; n++)
          await dashboard().paymentIntents.create({
            amount: 1000,
            currency: 'eur',
            metadata: { payment_id: `pay_busy_${n}` },
          })
        refused = await voidUnplaced(ctx.deps, paymentId, 'system:payment-voids').then(
          () => undefined,
          (error: unknown) => error,
        )
      } finally {
        ctx.stripe.searchUnavailable = false
        ctx.stripe.listPageSize = 100
      }
      // For the void job, which dead-letters it at once: a retry would page through the same window.
      expect(refused).toBeInstanceOf(PaymentGiveBackRefused)
      expect((refused as Error).message).toContain(paymentId)
      expect((refused as Error).message).toContain('search feature is temporarily unavailable')
      expect(ctx.stripe.intent(intentId)?.status).toBe('requires_capture')
      // Replayed by staff once search works (or the intent is voided in the dashboard): done.
      await voidUnplaced(ctx.deps, paymentId, 'system:payment-voids')
      expect(ctx.stripe.intent(intentId)?.status).toBe('canceled')
    })

    it('refunds once what the dashboard captured of an intent the payment names, whose void Stripe refused', async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id, false)
      const intentId = payment.provider_ref!
      // Given up: canceled here with its intent named, which is then captured in part in the dashboard.
      await ctx.deps.db
        .updateTable('payments')
        .set({ status: 'canceled' })
        .where('id', '=', created.id)
        .execute()
      await dashboard().paymentIntents.capture(intentId, { amount_to_capture: 2000 })
      const refunds = ctx.stripe.stats.refunds
      // The intent is named: read directly, with no search (here none is offered) and no search lag.
      ctx.stripe.searchUnavailable = true
      try {
        // The void refused, the intent read (by the void, then for its capture); Stripe makes the
        // refund and its answer is lost, twice.
        ctx.stripe.failNext(3, 'pass')
        ctx.stripe.failNext(1, 'drop_after')
        ctx.stripe.failNext(2, 500)
        const lost = await problemOf(voidUnplaced(ctx.deps, created.id, 'system:payment-voids'))
        expect(lost.code).toBe('payment_provider_unavailable')
        expect(ctx.stripe.stats.refunds - refunds).toBe(1)
        // The capture is recorded before the refund is asked for: the job's next run resumes it.
        expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
          provider_ref: intentId,
          captured_amount: 2000,
          refunded_amount: 2000,
        })
        await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
        await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      } finally {
        ctx.stripe.searchUnavailable = false
      }
      expect(ctx.stripe.stats.refunds - refunds).toBe(1)
      await expectRefundedOnce(created.id, 2000)
      // Asked of Stripe by its name, an intent it does not know holds nothing to give back.
      const now = new Date()
      expect(
        await stripeProvider().findCharge!({
          payment_id: created.id,
          created_at: now,
          given_up_at: now,
          provider_ref: 'pi_unknown',
        }),
      ).toBeNull()
    })

    it('gives back only what a refund in the dashboard left of a capture made there', async () => {
      // Found by search for a payment no answer named: captured 2000 there, 500 of it refunded there.
      const partly = await canceledUnnamed()
      await dashboard().paymentIntents.capture(partly.intentId, { amount_to_capture: 2000 })
      await dashboard().refunds.create({ payment_intent: partly.intentId, amount: 500 })
      const refunds = ctx.stripe.stats.refunds
      await voidUnplaced(ctx.deps, partly.paymentId, 'system:payment-voids')
      await voidUnplaced(ctx.deps, partly.paymentId, 'system:payment-voids')
      expect(ctx.stripe.stats.refunds - refunds).toBe(1)
      await expectRefundedOnce(partly.paymentId, 1500)

      // Named on a row still authorised here, captured and refunded in full there: the void is
      // refused, nothing is left to give back, and the row no longer reads authorised.
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id, false)
      await dashboard().paymentIntents.capture(payment.provider_ref!)
      await dashboard().refunds.create({ payment_intent: payment.provider_ref! })
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      expect(ctx.stripe.stats.refunds - refunds).toBe(2)
      expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
        status: 'canceled',
        order_id: null,
        refunded_amount: 0,
      })
      expect(await eventsOf(created.id, 'payment.canceled')).toHaveLength(1)
      // Asked again (a replay by staff), it stays done.
      await voidUnplaced(ctx.deps, created.id, 'system:payment-voids')
      expect(ctx.stripe.stats.refunds - refunds).toBe(2)
    })

    it('voids an intent whose void Stripe refused while it was processing, once it is voidable', async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id, false)
      const intent = ctx.stripe.intent(payment.provider_ref!)!
      const stripe = ctx.deps.providers.get('stripe')!
      // The void job retries under one key, whose refusal Stripe replays for a day.
      const cancel = () =>
        stripe.cancel({
          payment_id: created.id,
          provider_ref: payment.provider_ref!,
          idempotency_key: `${created.id}:cancel`,
        })
      intent.status = 'processing'
      await expect(cancel()).rejects.toBeInstanceOf(PaymentProviderUnavailable)
      intent.status = 'requires_capture'
      await cancel()
      expect(ctx.stripe.intent(payment.provider_ref!)?.status).toBe('canceled')
      // Repeated, the void is done already.
      await cancel()
    })
  })

  describe('Stripe webhooks', () => {
    const deliver = (
      event: object,
      options: { secret?: string; timestamp?: number; header?: string } = {},
    ) => {
      const payload = JSON.stringify(event)
      const signature =
        options.header ??
        Stripe.webhooks.generateTestHeaderString({
          payload,
          secret: options.secret ?? WEBHOOK_SECRET,
          ...(options.timestamp ? { timestamp: options.timestamp } : {}),
        })
      return ctx.node.app.inject({
        method: 'POST',
        url: '/webhooks/stripe',
        headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signature },
        payload,
      })
    }
    const event = stripeEvent
    const authorized = async () => {
      const created = await newPayment('stripe', 'pm_card_visa', 2500)
      const { payment } = await authorize(created.id)
      return { payment, intent: ctx.stripe.intent(payment.provider_ref!)! }
    }

    it('applies a signed event once; a redelivery is acknowledged as a duplicate', async () => {
      const { payment, intent } = await authorized()
      const succeeded = event('payment_intent.succeeded', {
        ...intent,
        status: 'succeeded',
        amount_received: 2500,
      })
      const res = await deliver(succeeded)
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual({ received: true })
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({
        status: 'captured',
        captured_amount: 2500,
      })
      const again = await deliver(succeeded)
      expect(again.statusCode).toBe(200)
      expect(again.json()).toEqual({ received: true, duplicate: true })
      expect(await eventsOf(payment.id, 'payment.captured')).toHaveLength(1)
    })

    it('refuses a bad signature, a stale timestamp and a missing header with 400 invalid_webhook', async () => {
      const { payment, intent } = await authorized()
      const canceled = event('payment_intent.canceled', { ...intent, status: 'canceled' })
      for (const res of [
        await deliver(canceled, { secret: 'whsec_someone_else' }),
        await deliver(canceled, { timestamp: Math.floor(Date.now() / 1000) - 600 }),
        await deliver(canceled, { header: '' }),
      ]) {
        expect(res.statusCode).toBe(400)
        expect(res.json().code).toBe('invalid_webhook')
      }
      // A body altered after signing does not verify either.
      const payload = JSON.stringify(canceled)
      const header = Stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET })
      const tampered = await ctx.node.app.inject({
        method: 'POST',
        url: '/webhooks/stripe',
        headers: { 'content-type': 'application/json', 'stripe-signature': header },
        payload: payload.replace('"canceled"', '"succeeded"'),
      })
      expect(tampered.statusCode).toBe(400)
      expect((await findPayment(ctx.deps.db, payment.id))?.status).toBe('authorized')
      // Once properly signed it is applied.
      expect((await deliver(canceled)).statusCode).toBe(200)
      expect((await findPayment(ctx.deps.db, payment.id))?.status).toBe('canceled')
      expect(await eventsOf(payment.id, 'payment.canceled')).toHaveLength(1)
    })

    it('refuses a signed event that lacks what its type promises with 400, applying nothing', async () => {
      const { payment, intent } = await authorized()
      const succeeded = event('payment_intent.succeeded', { ...intent, amount_received: 2500 })
      const refund = { id: 're_1', amount: 100, payment_intent: intent.id, status: 'succeeded' }
      const malformed: Array<[string, object]> = [
        ['no id', { ...succeeded, id: undefined }],
        ['null type', { ...succeeded, type: null }],
        ['no data', { ...succeeded, data: undefined }],
        ['null object', { ...succeeded, data: { object: null } }],
        ['array id', { ...succeeded, data: { object: { ...intent, id: [intent.id] } } }],
        ['negative amount', { ...succeeded, data: { object: { ...intent, amount_received: -1 } } }],
        ['refund without amount', event('refund.updated', { ...refund, amount: undefined })],
        ['refund amount 1e21', event('refund.updated', { ...refund, amount: 1e21 })],
      ]
      for (const [label, body] of malformed) {
        const res = await deliver(body)
        expect(res.statusCode, label).toBe(400)
        expect(res.headers['content-type'], label).toContain('application/problem+json')
        expect(res.json().code, label).toBe('invalid_webhook')
      }
      // A JSON value that is no event at all, signed.
      for (const payload of ['null', '[]', '"evt"']) {
        const header = Stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET })
        const res = await ctx.node.app.inject({
          method: 'POST',
          url: '/webhooks/stripe',
          headers: { 'content-type': 'application/json', 'stripe-signature': header },
          payload,
        })
        expect(res.statusCode, payload).toBe(400)
        expect(res.json().code, payload).toBe('invalid_webhook')
      }
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({ status: 'authorized' })
      // Types we do not act on need only an id and a type, whatever else Stripe adds or leaves out.
      expect(
        (await deliver({ id: `evt_${randomBytes(8).toString('hex')}`, type: 'customer.created' })).statusCode,
      ).toBe(200)
      expect((await deliver(event('customer.updated', { id: 42 }))).statusCode).toBe(200)
      expect((await deliver(succeeded)).statusCode).toBe(200)
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({ status: 'captured' })
    })

    it('records a refund made in the Stripe dashboard once; our own refunds are not counted twice', async () => {
      const { payment, intent } = await authorized()
      await capturePayment(ctx.deps, payment.id, { actor: 'staff_1' })
      const ours = await refundPayment(ctx.deps, payment.id, { amount: 500, actor: 'staff_1', key: 'ours' })
      const [row] = (await refundsOfPayment(ctx.deps.db, payment.id)).filter((r) => r.id === ours.id)
      // Stripe reports our refund too, with the key we gave it.
      await deliver(
        event('refund.created', {
          id: row!.provider_ref,
          object: 'refund',
          amount: 500,
          payment_intent: intent.id,
          status: 'succeeded',
          metadata: { idempotency_key: `${payment.id}:refund:ours` },
        }),
      )
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({ refunded_amount: 500 })
      // A refund staff made in the dashboard: no key of ours. Reported twice, by two events.
      const dashboard = { id: 're_dashboard_1', object: 'refund', amount: 2000, payment_intent: intent.id }
      await deliver(event('refund.created', { ...dashboard, status: 'succeeded' }))
      await deliver(event('charge.refund.updated', { ...dashboard, status: 'succeeded' }))
      // A running total is not used: it would count refunds again when events come out of order.
      const charge = { id: intent.latest_charge, object: 'charge', payment_intent: intent.id, amount: 2500 }
      await deliver(event('charge.refunded', { ...charge, amount_refunded: 2500, refunded: true }))
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({
        refunded_amount: 2500,
        status: 'refunded',
      })
      const refunds = await refundsOfPayment(ctx.deps.db, payment.id)
      expect(refunds.map((r) => [r.amount, r.actor, r.provider_ref])).toEqual([
        [500, 'staff_1', row!.provider_ref],
        [2000, 'webhook:stripe', 're_dashboard_1'],
      ])
      expect(await eventsOf(payment.id, 'refund.created')).toHaveLength(2)
      // The dashboard refund fails later: followed by its id like our own.
      await deliver(event('refund.failed', { ...dashboard, status: 'failed', failure_reason: 'unknown' }))
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({
        refunded_amount: 500,
        status: 'partially_refunded',
      })
    })

    it('gives back a refund Stripe fails after accepting it, once', async () => {
      const { payment, intent } = await authorized()
      await capturePayment(ctx.deps, payment.id, { actor: 'staff_1' })
      const refund = await refundPayment(ctx.deps, payment.id, {
        amount: 700,
        actor: 'staff_1',
        key: 'late-fail',
      })
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({ refunded_amount: 700 })
      const [row] = (await refundsOfPayment(ctx.deps.db, payment.id)).filter((r) => r.id === refund.id)
      const stripeRefund = {
        id: row!.provider_ref,
        object: 'refund',
        amount: 700,
        currency: 'eur',
        payment_intent: intent.id,
        status: 'failed',
        failure_reason: 'expired_or_canceled_card',
      }
      expect((await deliver(event('refund.failed', stripeRefund))).statusCode).toBe(200)
      expect((await deliver(event('charge.refund.updated', stripeRefund))).statusCode).toBe(200)
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({
        refunded_amount: 0,
        status: 'captured',
      })
      expect((await refundsOfPayment(ctx.deps.db, payment.id)).find((r) => r.id === refund.id)).toMatchObject(
        {
          status: 'failed',
        },
      )
      const failures = await eventsOf(payment.id, 'refund.failed')
      expect(failures).toHaveLength(1)
      expect(failures[0]!.payload).toMatchObject({
        refund_id: refund.id,
        amount: 700,
        reason: 'expired_or_canceled_card',
        idempotency_key: 'late-fail',
      })
    })

    it('applies a refund failure that arrives before the refund is recorded, found by our key', async () => {
      const { payment, intent } = await authorized()
      await capturePayment(ctx.deps, payment.id, { actor: 'staff_1' })
      // As refundPayment leaves it between its reservation and the processor's answer.
      await ctx.deps.db
        .insertInto('payment_refunds')
        .values({
          id: 're_inflight_1',
          payment_id: payment.id,
          amount: 300,
          status: 'pending',
          idempotency_key: 'in-flight',
          actor: 'staff_1',
        })
        .execute()
      await ctx.deps.db
        .updateTable('payments')
        .set({ refunded_amount: 300, status: 'partially_refunded' })
        .where('id', '=', payment.id)
        .execute()
      const early = await deliver(
        event('refund.failed', {
          id: 're_stripe_inflight',
          object: 'refund',
          amount: 300,
          payment_intent: intent.id,
          status: 'failed',
          failure_reason: 'lost_or_stolen_card',
          metadata: { idempotency_key: `${payment.id}:refund:in-flight` },
        }),
      )
      expect(early.json()).toEqual({ received: true })
      const [row] = await ctx.deps.db
        .selectFrom('payment_refunds')
        .select(['status', 'provider_ref'])
        .where('id', '=', 're_inflight_1')
        .execute()
      expect(row).toEqual({ status: 'failed', provider_ref: 're_stripe_inflight' })
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({
        refunded_amount: 0,
        status: 'captured',
      })
      expect(await eventsOf(payment.id, 'refund.failed')).toHaveLength(1)
    })

    it('a failed payment and events about unknown intents', async () => {
      const created = await newPayment('stripe', 'pm_card_threeDSecureRequired', 2500)
      const { payment } = await authorize(created.id)
      const intent = ctx.stripe.intent(payment.provider_ref!)!
      const failed = event('payment_intent.payment_failed', {
        ...intent,
        status: 'requires_payment_method',
        last_payment_error: {
          type: 'card_error',
          code: 'card_declined',
          decline_code: 'lost_card',
          message: 'Lost',
        },
      })
      expect((await deliver(failed)).statusCode).toBe(200)
      expect(await findPayment(ctx.deps.db, payment.id)).toMatchObject({
        status: 'failed',
        failure_code: 'lost_card',
      })
      const stranger = event('payment_intent.succeeded', {
        ...intent,
        id: 'pi_not_ours',
        status: 'succeeded',
      })
      expect((await deliver(stranger)).json()).toEqual({ received: true })
      expect((await deliver(event('customer.created', { id: 'cus_1', object: 'customer' }))).statusCode).toBe(
        200,
      )
    })

    it('other JSON routes keep the app’s parser (the raw body is the webhook’s alone)', async () => {
      const res = await ctx.node.app.inject({
        method: 'POST',
        url: `/store/payments/${newId('pay')}/authenticate`,
        headers: { 'content-type': 'application/json' },
        payload: '{"result": ',
      })
      expect(res.statusCode).toBe(400)
      expect(res.json().code).toBe('malformed_json')
    })
  })
})

describeEachDatabase('payments without Stripe', (kind) => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode(kind)
  })
  afterAll(() => node.close())

  it('answers the Stripe webhook with 404 and offers no stripe provider', async () => {
    const res = await node.app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: { 'content-type': 'application/json', 'stripe-signature': 't=1,v1=00' },
      payload: '{}',
    })
    expect(res.statusCode).toBe(404)
    expect(res.json().code).toBe('not_found')
    const deps = paymentDeps(node.runtime)
    expect([...deps.providers.keys()].sort()).toEqual(['manual', 'test'])
    expect(() => providerOf(deps.providers, 'stripe')).toThrow(ProblemError)
  })
})

describePostgres('postgres: concurrent refunds', () => {
  const { ctx, newPayment } = setup('postgres')

  it('20 concurrent refunds of 10 on a capture of 100: exactly 10 succeed', async () => {
    const created = await newPayment('test', 'pm_card_visa', 100)
    await authorizePayment(ctx.deps, created.id, { capture: true })
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        refundPayment(ctx.deps, created.id, { amount: 10, actor: 'staff_1', key: `c${i}` }),
      ),
    )
    const ok = results.filter((r) => r.status === 'fulfilled')
    const refused = results.filter((r) => r.status === 'rejected')
    expect(ok).toHaveLength(10)
    for (const r of refused) expect((r.reason as ProblemError).code).toBe('refund_exceeds_captured')
    expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
      refunded_amount: 100,
      status: 'refunded',
    })
    const rows = await refundsOfPayment(ctx.deps.db, created.id)
    expect(rows.filter((r) => r.status === 'succeeded')).toHaveLength(10)
    expect(rows.reduce((sum, r) => sum + r.amount, 0)).toBe(100)
  })
})

const KV_KINDS = process.env.REDIS_URL ? (['memory', 'redis'] as const) : (['memory'] as const)

for (const kvKind of KV_KINDS) {
  describe(`${kvKind}: payment velocity`, () => {
    let kv: Kv
    const LIMIT = 3
    const unique = () => randomBytes(6).toString('hex')
    beforeAll(() => {
      kv = createKv({
        redisUrl: kvKind === 'redis' ? process.env.REDIS_URL : undefined,
        keyPrefix: `sw-test-${unique()}:`,
      })
    })
    afterAll(() => kv.close())

    const refusal = async (promise: Promise<void>) => {
      const error = await problemOf(promise)
      expect(error.code).toBe('payment_attempts_exceeded')
      return Number(error.headers?.['retry-after'])
    }

    it('refuses an IP once its failures this hour reach the limit', async () => {
      const velocity = new PaymentVelocity(kv, LIMIT)
      const ip = `10.0.0.${unique()}`
      for (let i = 0; i < LIMIT; i++) {
        await velocity.check({ ip, cart_id: `cart_${unique()}` })
        await velocity.recordFailure({ ip, cart_id: `cart_${unique()}` })
      }
      const wait = await refusal(velocity.check({ ip, cart_id: `cart_${unique()}` }))
      expect(wait).toBeGreaterThan(0)
      expect(wait).toBeLessThanOrEqual(3600)
      await velocity.check({ ip: `${ip}-other`, cart_id: `cart_${unique()}` })
    })

    it('refuses a card tried from many IPs, and an account whatever the case of its email', async () => {
      const velocity = new PaymentVelocity(kv, LIMIT)
      const fingerprint = unique()
      const email = `Shopper-${unique()}@Example.com`
      for (let i = 0; i < LIMIT; i++) {
        await velocity.recordFailure({ ip: unique(), cart_id: unique(), fingerprint })
        await velocity.recordFailure({ ip: unique(), cart_id: unique(), account: email })
      }
      await refusal(velocity.check({ ip: unique(), cart_id: unique(), fingerprint }))
      await refusal(velocity.check({ ip: unique(), cart_id: unique(), account: email.toLowerCase() }))
      await velocity.check({
        ip: unique(),
        cart_id: unique(),
        fingerprint: unique(),
        account: 'someone@else.com',
      })
    })

    it('locks a cart for 15 minutes once it reaches the limit, whatever the IP', async () => {
      const velocity = new PaymentVelocity(kv, LIMIT)
      const cart_id = `cart_${unique()}`
      for (let i = 0; i < LIMIT - 1; i++) await velocity.recordFailure({ ip: unique(), cart_id })
      await velocity.check({ ip: unique(), cart_id })
      await velocity.recordFailure({ ip: unique(), cart_id })
      const wait = await refusal(velocity.check({ ip: unique(), cart_id }))
      expect(wait).toBeGreaterThan(800)
      expect(wait).toBeLessThanOrEqual(900)
    })

    it('answers the longest wait among the limits that apply, and names the clock hour it counts in', async () => {
      const at = (time: string) => () => Date.parse(`2030-01-01T${time}Z`)
      // Failures at 10:05 lock the cart until 10:20, and trip the IP until its clock hour ends.
      const early = new PaymentVelocity(kv, LIMIT, at('10:05:00'))
      const ip = `10.1.${unique()}`
      const cart_id = `cart_${unique()}`
      for (let i = 0; i < LIMIT; i++) await early.recordFailure({ ip, cart_id })
      const locked = await problemOf(early.check({ ip, cart_id }))
      expect(locked.code).toBe('payment_attempts_exceeded')
      expect(locked.headers?.['retry-after']).toBe(String(55 * 60))
      expect(locked.detail).toBe(
        'Too many failed payments from this network, card or account in the clock hour since ' +
          '10:00:00 UTC; try again after 11:00:00 UTC',
      )
      // Another cart from the same IP waits as long: a retry after Retry-After is not refused again.
      const other = await problemOf(early.check({ ip, cart_id: `cart_${unique()}` }))
      expect(other.headers?.['retry-after']).toBe(String(55 * 60))

      // Failures at 10:55 lock the cart past the end of the IP's window: the lock is the longer wait.
      const late = new PaymentVelocity(kv, LIMIT, at('10:55:00'))
      const lateIp = `10.2.${unique()}`
      const lateCart = `cart_${unique()}`
      for (let i = 0; i < LIMIT; i++) await late.recordFailure({ ip: lateIp, cart_id: lateCart })
      const lockedLate = await problemOf(late.check({ ip: lateIp, cart_id: lateCart }))
      expect(lockedLate.headers?.['retry-after']).toBe(String(15 * 60))
      expect(lockedLate.detail).toBe('This cart had too many failed payments; try again after 11:10:00 UTC')
      // At 11:00 the IP's count starts afresh; the cart stays locked until 11:10.
      const nextHour = new PaymentVelocity(kv, LIMIT, at('11:00:00'))
      expect(
        (await problemOf(nextHour.check({ ip: lateIp, cart_id: lateCart }))).headers?.['retry-after'],
      ).toBe(String(10 * 60))
      await nextHour.check({ ip: lateIp, cart_id: `cart_${unique()}` })
    })
  })
}

describePostgres('postgres: a void racing the recording of an authorisation', () => {
  const { ctx, newPayment, ledgerOf } = setup('postgres')

  it('voids the authorisation at the processor instead of marking it canceled over it', async () => {
    // The recovery job gives up a checkout whose request is still recording its authorisation: its
    // cancel reads the payment pending (nothing to void at the processor yet) and then waits on
    // the row the placing transaction holds.
    const created = await newPayment('test', 'pm_card_visa', 1000)
    const answer = await providerOf(ctx.deps.providers, 'test').authorize({
      payment_id: created.id,
      amount: created.amount,
      currency: 'EUR',
      payment_method: 'pm_card_visa',
      provider_ref: null,
      email: null,
      capture: false,
    })
    const { promise: held, resolve: release } = Promise.withResolvers<void>()
    let recorded: Awaited<ReturnType<typeof recordAuthorization>> | undefined
    const placing = withTransaction(ctx.deps.db, async (trx) => {
      recorded = await recordAuthorization(trx, created.id, answer, ctx.deps.outbox, {
        orderId: newId('ord'),
      })
      await held
    })
    await eventuallyTrue(() => recorded !== undefined)
    const canceling = cancelPayment(ctx.deps, created.id, 'system:checkout-recovery')
    try {
      await waitForLockWaits(ctx.deps.db)
    } finally {
      release()
    }
    await placing
    expect(await canceling).toMatchObject({ status: 'canceled' })
    // The checkout then captures with the payment it recorded: the processor refuses, the void stands.
    await capturePayment(ctx.deps, created.id, { actor: 'guest', current: recorded! }).catch(() => undefined)
    const ledger = await ledgerOf(created.id)
    expect(ledger.map((op) => op.kind).sort()).toContain('cancel')
    expect(ledger.filter((op) => op.kind === 'capture' && op.outcome === 'captured')).toEqual([])
    expect(await findPayment(ctx.deps.db, created.id)).toMatchObject({
      status: 'canceled',
      captured_amount: 0,
    })
  })
})

async function eventuallyTrue(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await sleep(10)
  expect(check()).toBe(true)
}

describePostgres('postgres: a refused refund racing its webhook', () => {
  const { ctx, newPayment } = setup('postgres')

  it('releases the refund and applies the webhook without a deadlock', async () => {
    const created = await newPayment('test', 'pm_card_visa', 1000)
    const { payment } = await authorizePayment(ctx.deps, created.id, { capture: true })
    const db = ctx.deps.db
    // Held on the refund's row, so that the refusal's release and the webhook queue on it in turn.
    const { promise: held, resolve: release } = Promise.withResolvers<void>()
    const { promise: isLocked, resolve: locked } = Promise.withResolvers<void>()
    let holding: Promise<void> | undefined
    const gateway = providerOf(ctx.deps.providers, 'test')
    const refund = gateway.refund.bind(gateway)
    gateway.refund = async () => {
      holding = withTransaction(db, async (trx) => {
        await trx
          .selectFrom('payment_refunds')
          .select('id')
          .where('payment_id', '=', created.id)
          .forUpdate()
          .execute()
        locked()
        await held
      })
      await isLocked
      // The processor refuses the refund, and reports it failed by webhook at once.
      throw new ProblemError('conflict', 'Test gateway: refund refused')
    }
    // withTransaction retries a deadlock, so only the server's count shows one happened.
    const deadlocks = async () => {
      const { rows } = await sql<{ n: number }>`
        select deadlocks::int as n from pg_stat_database where datname = current_database()`.execute(db)
      return rows[0]!.n
    }
    const deadlocksBefore = await deadlocks()
    let refusing: Promise<unknown>
    let webhook: Promise<unknown>
    try {
      refusing = refundPayment(ctx.deps, created.id, { amount: 400, actor: 'staff_1', key: 'refused' }).then(
        () => 'refunded',
        (error: unknown) => error,
      )
      await waitForLockWaits(db, 1)
      webhook = applyWebhook(ctx.deps, 'test', {
        event_id: `evt_${newId('x')}`,
        type: 'refund.failed',
        provider_ref: payment.provider_ref,
        refund: {
          provider_ref: 're_refused',
          status: 'failed',
          amount: 400,
          ours: `${created.id}:refund:refused`,
        },
      }).then(
        () => 'applied',
        (error: unknown) => error,
      )
      await waitForLockWaits(db, 2)
    } finally {
      gateway.refund = refund
      release()
    }
    await holding
    const refused = await refusing!
    expect(refused).toBeInstanceOf(ProblemError)
    expect((refused as ProblemError).code).toBe('conflict')
    expect(await webhook!).toBe('applied')
    expect(await findPayment(db, created.id)).toMatchObject({ status: 'captured', refunded_amount: 0 })
    const rows = await refundsOfPayment(db, created.id)
    expect(rows.map((r) => r.status)).toEqual(['failed'])
    // Backends report their counts within about a second of going idle.
    for (let i = 0; i < 30 && (await deadlocks()) === deadlocksBefore; i++) await sleep(100)
    expect((await deadlocks()) - deadlocksBefore).toBe(0)
  })
})
