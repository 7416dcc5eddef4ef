/**
 * Checkout through Stripe, end to end, against the local stand-in of Stripe's API: an order paid
 * with one PaymentIntent however often the shopper retries, a decline that reopens the cart, 3-D
 * Secure completed at Stripe, an outage the retry recovers from with one intent, Stripe's webhook
 * for the capture accepted once, a cart handed back at once when the recovery job finds its
 * checkout answered meanwhile (PostgreSQL), and the void job giving back what a given-up checkout's
 * intent holds: voided, or refunded when captured in the dashboard, whether the row names the
 * intent (whose void Stripe then refuses) or the job finds it, by search or, where Stripe offers
 * the account none, by listing the intents of the payment's lifetime; and the books showing what
 * Stripe refunded when a dashboard refund overlaps a staff refund that Stripe then refuses, when a
 * dashboard refund's failure is reported before the refund, and when a refund is reported before
 * the capture it refunds is recorded (its answer lost); and a canceled order whose capture's answer
 * was lost refunded by its settle job, run again while Stripe cannot be asked.
 */
import { randomUUID } from 'node:crypto'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { commerceDeps } from '../src/modules/orders/deps.ts'
import { type RecoveryReport, recoverCheckouts, settleCanceled } from '../src/modules/orders/jobs.ts'
import { VOID_PAYMENT_JOB } from '../src/modules/payments/jobs.ts'
import { providerOf } from '../src/modules/payments/registry.ts'
import { createPayment, findPayment, refundsOfPayment } from '../src/modules/payments/service.ts'
import type { DatabaseKind } from '../src/platform/db/database.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { createTestStore, readyCart, type TestStore } from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'
import { eventually } from './support/eventually.ts'
import { waitForLockWaits } from './support/locks.ts'
import { type StripeServer, startStripeServer, stripeEvent } from './support/stripe-server.ts'

const WEBHOOK_SECRET = 'whsec_checkout_0123456789abcdef'

/** The Stripe stand-in and a node of a demo store that pays through it (running jobs, with `work`). */
async function startStripeStore(kind: DatabaseKind, { work }: { work: boolean }) {
  const stripe = await startStripeServer()
  const node = await startTestNode(kind, {
    work,
    env: {
      STRIPE_SECRET_KEY: 'sk_test_shopwright',
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      STRIPE_API_URL: stripe.url,
      RATE_LIMIT_PER_MINUTE: '100000',
    },
  })
  return { stripe, node, store: await createTestStore(node.app) }
}

describe.each(DATABASE_KINDS)('%s: checkout with Stripe', (kind) => {
  let node: TestNode
  let stripe: StripeServer
  let store: TestStore

  beforeAll(async () => {
    ;({ stripe, node, store } = await startStripeStore(kind, { work: false }))
  })
  afterAll(async () => {
    await node?.close()
    await stripe?.close()
  })

  const complete = (cartId: string, paymentMethod: string, key = randomUUID()) =>
    node.app.inject({
      method: 'POST',
      url: `/store/carts/${cartId}/complete`,
      headers: { 'idempotency-key': key },
      payload: { payment: { provider: 'stripe', payment_method: paymentMethod } },
    })

  it('places an order with one PaymentIntent, captured, whatever the retries', async () => {
    const before = stripe.stats.intentsCreated
    const cartId = await readyCart(node.app, store, 1)
    const key = randomUUID()
    const first = await complete(cartId, 'pm_card_visa', key)
    expect(first.statusCode, first.body).toBe(201)
    expect(first.json().order).toMatchObject({ status: 'paid', payment_status: 'captured' })
    expect((await complete(cartId, 'pm_card_visa', key)).body).toBe(first.body)
    expect((await complete(cartId, 'pm_card_visa')).statusCode).toBe(200)
    expect(stripe.stats.intentsCreated - before).toBe(1)
    const payment = await node.runtime.database.db
      .selectFrom('payments')
      .select(['provider_ref', 'captured_amount'])
      .where('cart_id', '=', cartId)
      .executeTakeFirstOrThrow()
    const intent = stripe.intent(payment.provider_ref!)!
    expect(intent).toMatchObject({
      status: 'succeeded',
      amount: first.json().order.totals.total,
      currency: 'eur',
    })
    expect(payment.captured_amount).toBe(first.json().order.totals.total)

    // Stripe then reports the capture by webhook: accepted, and once only.
    const payload = JSON.stringify({
      id: `evt_${randomUUID().replaceAll('-', '')}`,
      object: 'event',
      type: 'payment_intent.succeeded',
      data: { object: intent },
    })
    const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET })
    const send = () =>
      node.app.inject({
        method: 'POST',
        url: '/webhooks/stripe',
        headers: { 'content-type': 'application/json', 'stripe-signature': signature },
        payload,
      })
    expect((await send()).statusCode).toBe(200)
    expect((await send()).json()).toMatchObject({ duplicate: true })
    const forged = await node.app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      payload: payload.replace('succeeded', 'canceled'),
    })
    expect(forged.statusCode).toBe(400)
    expect(forged.json().code).toBe('invalid_webhook')
  })

  it('reopens the cart on a decline, and completes 3-D Secure passed at Stripe', async () => {
    const declined = await readyCart(node.app, store, 1)
    const res = await complete(declined, 'pm_card_chargeDeclined')
    expect(res.statusCode, res.body).toBe(402)
    expect((await node.app.inject({ url: `/store/carts/${declined}` })).json().status).toBe('active')

    const secure = await readyCart(node.app, store, 1)
    const first = await complete(secure, 'pm_card_threeDSecureRequired')
    expect(first.statusCode, first.body).toBe(200)
    expect(first.json().type).toBe('payment_action_required')
    stripe.completeAction(first.json().payment.provider_ref, true)
    const second = await complete(secure, 'pm_card_threeDSecureRequired')
    expect(second.statusCode, second.body).toBe(201)
    expect(second.json().order.payment_status).toBe('captured')
  })

  it('declines a payment Stripe refuses outright (under its minimum), reopening the cart', async () => {
    const cartId = await readyCart(node.app, store, 1)
    stripe.minimumAmount = 1_000_000_000
    try {
      const res = await complete(cartId, 'pm_card_visa')
      expect(res.statusCode, res.body).toBe(402)
      expect(res.json().detail).toContain('amount_too_small')
    } finally {
      stripe.minimumAmount = 50
    }
    expect((await node.app.inject({ url: `/store/carts/${cartId}` })).json().status).toBe('active')
    const again = await complete(cartId, 'pm_card_visa')
    expect(again.statusCode, again.body).toBe(201)
  })

  it('refuses a Stripe checkout without a payment method before holding anything', async () => {
    const cartId = await readyCart(node.app, store, 1)
    const res = await node.app.inject({
      method: 'POST',
      url: `/store/carts/${cartId}/complete`,
      headers: { 'idempotency-key': randomUUID() },
      payload: { payment: { provider: 'stripe' } },
    })
    expect(res.statusCode, res.body).toBe(422)
    expect(res.json().code).toBe('unsupported_payment_method')
    // Still the shopper's to change and pay, not held until the recovery job gives it up.
    expect((await node.app.inject({ url: `/store/carts/${cartId}` })).json().status).toBe('active')
    const paid = await complete(cartId, 'pm_card_visa')
    expect(paid.statusCode, paid.body).toBe(201)
  })

  it('recovers from a Stripe outage with the same intent', async () => {
    const before = stripe.stats.intentsCreated
    const cartId = await readyCart(node.app, store, 1)
    // Stripe takes the request and every answer is lost, more times than the SDK retries on its own.
    stripe.failNext(4, 'drop_after')
    const lost = await complete(cartId, 'pm_card_visa')
    expect(lost.statusCode, lost.body).toBe(503)
    expect(lost.json().code).toBe('payment_provider_unavailable')
    const retried = await complete(cartId, 'pm_card_visa')
    expect(retried.statusCode, retried.body).toBe(201)
    expect(stripe.stats.intentsCreated - before).toBe(1)
  })

  it("answers 503 while Stripe refuses the store's key, and completes once it takes it", async () => {
    const before = stripe.stats.intentsCreated
    const cartId = await readyCart(node.app, store, 1)
    // A key revoked or rolled in the dashboard: Stripe refuses it before doing anything.
    stripe.failNext(1, 401)
    const refused = await complete(cartId, 'pm_card_visa')
    expect(refused.statusCode, refused.body).toBe(503)
    expect(refused.json().code).toBe('payment_provider_unavailable')
    expect(stripe.stats.intentsCreated - before).toBe(0)
    // The lease is handed back: the shopper's retry goes through at once.
    const retried = await complete(cartId, 'pm_card_visa')
    expect(retried.statusCode, retried.body).toBe(201)
    expect(stripe.stats.intentsCreated - before).toBe(1)
  })

  it.runIf(kind === 'postgres')(
    'hands the cart back at once when the recovery job finds its checkout answered meanwhile',
    async () => {
      const db = node.runtime.database.db
      const before = stripe.stats.intentsCreated
      const cartId = await readyCart(node.app, store, 1)
      const first = await complete(cartId, 'pm_card_threeDSecureRequired')
      expect(first.json().type).toBe('payment_action_required')
      const { id: paymentId, provider_ref: intentId } = first.json().payment
      // Half an hour on, the shopper passes 3-D Secure just as the recovery job gives the checkout up.
      stripe.completeAction(intentId, true)
      await db
        .updateTable('carts')
        .set({ updated_at: new Date(Date.now() - 31 * 60_000) })
        .where('id', '=', cartId)
        .execute()
      // Stripe's webhook for the authorisation takes the payment's row first; the job queues behind it.
      const payload = JSON.stringify(
        stripeEvent('payment_intent.amount_capturable_updated', stripe.intent(intentId)),
      )
      let webhook!: ReturnType<typeof complete>
      let recovery!: Promise<RecoveryReport>
      await db.transaction().execute(async (trx) => {
        await trx.selectFrom('payments').select('id').where('id', '=', paymentId).forUpdate().execute()
        webhook = node.app.inject({
          method: 'POST',
          url: '/webhooks/stripe',
          headers: {
            'content-type': 'application/json',
            'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET }),
          },
          payload,
        })
        await waitForLockWaits(db, 1)
        recovery = recoverCheckouts(commerceDeps(node.runtime))
        await waitForLockWaits(db, 2)
      })
      expect((await webhook).statusCode).toBe(200)
      expect((await recovery).abandoned).toBe(0)
      const cart = await db
        .selectFrom('carts')
        .select(['status', 'payment_id', 'checkout_lease_until'])
        .where('id', '=', cartId)
        .executeTakeFirstOrThrow()
      expect(cart).toMatchObject({ status: 'completing', payment_id: paymentId, checkout_lease_until: null })
      expect((await findPayment(db, paymentId))?.status).toBe('authorized')
      // The storefront calls again after 3-D Secure: the checkout resumes now, on the same intent.
      const resumed = await complete(cartId, 'pm_card_threeDSecureRequired')
      expect(resumed.statusCode, resumed.body).toBe(201)
      expect(resumed.json().order).toMatchObject({ payment_id: paymentId, payment_status: 'captured' })
      expect(stripe.stats.intentsCreated - before).toBe(1)
    },
  )
})

describe.each(DATABASE_KINDS)('%s: the void job with Stripe', (kind) => {
  let node: TestNode
  let stripe: StripeServer
  let store: TestStore

  beforeAll(async () => {
    ;({ stripe, node, store } = await startStripeStore(kind, { work: true }))
  })
  afterAll(async () => {
    await node?.close()
    await stripe?.close()
  })

  /**
   * A payment of a ready cart that Stripe authorised and that was canceled here before any answer
   * named its intent, as the recovery job leaves a checkout whose every answer was lost; then the
   * void job queued for it.
   */
  async function givenUpUnnamed() {
    const db = node.runtime.database.db
    const cartId = await readyCart(node.app, store, 1)
    const payment = await withTransaction(db, (trx) =>
      createPayment(trx, {
        cart_id: cartId,
        provider: 'stripe',
        amount: 2500,
        currency: 'EUR',
        payment_method: 'pm_card_visa',
      }),
    )
    const answer = await providerOf(commerceDeps(node.runtime).providers, 'stripe').authorize({
      payment_id: payment.id,
      amount: 2500,
      currency: 'EUR',
      payment_method: 'pm_card_visa',
      provider_ref: null,
      email: null,
      capture: false,
    })
    await db.updateTable('payments').set({ status: 'canceled' }).where('id', '=', payment.id).execute()
    const queue = () =>
      withTransaction(db, (trx) =>
        node.runtime.jobs.enqueue(trx, VOID_PAYMENT_JOB, { payment_id: payment.id }),
      )
    return { paymentId: payment.id, intentId: answer.provider_ref!, queue }
  }

  it('refunds from the void job an intent captured in the dashboard after its checkout was given up', async () => {
    const { paymentId, intentId, queue } = await givenUpUnnamed()
    const dashboard = new Stripe('sk_test_shopwright', {
      host: '127.0.0.1',
      port: new URL(stripe.url).port,
      protocol: 'http',
    })
    await dashboard.paymentIntents.capture(intentId)
    const refundsBefore = stripe.stats.refunds
    await queue()
    // The payment reads refunded from the moment its refund is reserved; the refund row settles after.
    const refunds = await eventually(async () => {
      const rows = await refundsOfPayment(node.runtime.database.db, paymentId)
      return rows.some((r) => r.status !== 'pending') ? rows : undefined
    }, 15_000)
    expect(refunds).toMatchObject([{ amount: 2500, status: 'succeeded' }])
    expect(await findPayment(node.runtime.database.db, paymentId)).toMatchObject({
      status: 'refunded',
      order_id: null,
      provider_ref: intentId,
      refunded_amount: 2500,
    })
    expect(stripe.stats.refunds - refundsBefore).toBe(1)
  })

  it('refunds from the void job an intent captured in the dashboard whose void Stripe refuses', async () => {
    const db = node.runtime.database.db
    const { paymentId, intentId, queue } = await givenUpUnnamed()
    // Named on the row (its checkout heard the answer), then captured in the dashboard in part
    // before the void reached Stripe: the void is refused, and does not say how much was captured.
    await db.updateTable('payments').set({ provider_ref: intentId }).where('id', '=', paymentId).execute()
    const dashboard = new Stripe('sk_test_shopwright', {
      host: '127.0.0.1',
      port: new URL(stripe.url).port,
      protocol: 'http',
    })
    await dashboard.paymentIntents.capture(intentId, { amount_to_capture: 1800 })
    const refundsBefore = stripe.stats.refunds
    await queue()
    const refunds = await eventually(async () => {
      const rows = await refundsOfPayment(db, paymentId)
      return rows.some((r) => r.status !== 'pending') ? rows : undefined
    }, 15_000)
    expect(refunds).toMatchObject([{ amount: 1800, status: 'succeeded' }])
    expect(await findPayment(db, paymentId)).toMatchObject({
      status: 'refunded',
      order_id: null,
      provider_ref: intentId,
      captured_amount: 1800,
      refunded_amount: 1800,
    })
    expect(stripe.stats.refunds - refundsBefore).toBe(1)
    expect(stripe.intent(intentId)).toMatchObject({ status: 'succeeded', amount_received: 1800 })
  })

  it('voids from the void job the intent of a given-up payment that Stripe offers no search to find', async () => {
    const { paymentId, intentId, queue } = await givenUpUnnamed()
    stripe.searchUnavailable = true
    try {
      await queue()
      // Found by listing the intents of the payment's lifetime, and voided.
      await eventually(
        async () => (stripe.intent(intentId)?.status === 'canceled' ? true : undefined),
        15_000,
      )
    } finally {
      stripe.searchUnavailable = false
    }
    expect((await findPayment(node.runtime.database.db, paymentId))?.provider_ref).toBe(intentId)
  })
})

describe.each(DATABASE_KINDS)('%s: refunds with Stripe', (kind) => {
  let node: TestNode
  let stripe: StripeServer
  let store: TestStore

  beforeAll(async () => {
    // Workers run, so that the order follows its payment's refund events.
    ;({ stripe, node, store } = await startStripeStore(kind, { work: true }))
  })
  afterAll(async () => {
    await node?.close()
    await stripe?.close()
  })

  /**
   * An order paid with Stripe whose staff refund of 60% is left pending by an outage (503, its
   * amount reserved), and the same amount then refunded in Stripe's dashboard. Returns the order,
   * the amounts, and the two things still to come: Stripe's webhook for the dashboard refund, and
   * the staff refund retried under its key (which Stripe refuses: the money already went back).
   */
  async function dashboardRefundOverPendingStaffRefund() {
    const { order, total, intentId } = await placeStripeOrder()
    const part = Math.floor(total * 0.6)
    const key = randomUUID()
    const retryStaffRefund = () =>
      node.app.inject({
        method: 'POST',
        url: `/admin/orders/${order.id}/refunds`,
        headers: { ...adminAuth, 'idempotency-key': key },
        payload: { amount: part },
      })
    // Stripe is down, the SDK's own retry included.
    stripe.failNext(2, 500)
    const pending = await retryStaffRefund()
    expect(pending.statusCode, pending.body).toBe(503)
    const made = await dashboardClient().refunds.create({ payment_intent: intentId, amount: part })
    const event = stripeEvent('refund.created', made)
    const sendWebhook = () => deliver(event)
    return { order, total, part, dashboardRefundId: made.id, sendWebhook, retryStaffRefund }
  }

  const paymentOf = (id: string) =>
    node.runtime.database.db
      .selectFrom('payments')
      .select(['captured_amount', 'refunded_amount', 'status'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow()

  /** Delivers an event to the webhook, signed as Stripe signs it. */
  const deliver = (event: ReturnType<typeof stripeEvent>) => {
    const payload = JSON.stringify(event)
    return node.app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: {
        'content-type': 'application/json',
        'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET }),
      },
      payload,
    })
  }

  /** Stripe's dashboard: staff acting at Stripe, outside the app. */
  const dashboardClient = () =>
    new Stripe('sk_test_shopwright', {
      host: '127.0.0.1',
      port: new URL(stripe.url).port,
      protocol: 'http',
    })

  /** The charge of an intent as Stripe holds it: what it captured, and what was refunded of it. */
  const stripeCharge = async (intentId: string) =>
    (await dashboardClient().paymentIntents.retrieve(intentId, { expand: ['latest_charge'] }))
      .latest_charge as Stripe.Charge

  /**
   * An order paid with Stripe, its total and its intent. With `loseCaptureAnswer`, the capture
   * reaches Stripe but its answer is lost (the SDK's retry too): the order is placed `pending` with
   * its payment `authorized` here, while Stripe's intent has succeeded.
   */
  async function placeStripeOrder({ loseCaptureAnswer = false } = {}) {
    if (loseCaptureAnswer) {
      stripe.failNext(1, 'pass')
      stripe.failNext(1, 'drop_after')
      stripe.failNext(1, 'drop')
    }
    const placed = await node.app.inject({
      method: 'POST',
      url: `/store/carts/${await readyCart(node.app, store, 1)}/complete`,
      headers: { 'idempotency-key': randomUUID() },
      payload: { payment: { provider: 'stripe', payment_method: 'pm_card_visa' } },
    })
    expect(placed.statusCode, placed.body).toBe(201)
    const order = placed.json().order
    const { provider_ref } = await node.runtime.database.db
      .selectFrom('payments')
      .select('provider_ref')
      .where('id', '=', order.payment_id)
      .executeTakeFirstOrThrow()
    if (loseCaptureAnswer) {
      expect(order).toMatchObject({ status: 'pending', payment_status: 'authorized' })
      expect(stripe.intent(provider_ref!)).toMatchObject({ status: 'succeeded' })
    }
    return { order, total: order.totals.total as number, intentId: provider_ref! }
  }

  /** The order once its refund listener has followed the dashboard refund. */
  const orderAfterRefundEvents = (id: string) =>
    eventually(async () => {
      const row = await node.runtime.database.db
        .selectFrom('orders')
        .select(['status', 'refunded_total'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow()
      return row.status === 'partially_refunded' ? row : undefined
    }, 15_000)

  it('books what Stripe refunded when a dashboard refund overlaps a staff refund that Stripe then refuses', async () => {
    const db = node.runtime.database.db
    const refundsBefore = stripe.stats.refunds
    const { order, total, part, dashboardRefundId, sendWebhook, retryStaffRefund } =
      await dashboardRefundOverPendingStaffRefund()
    const webhook = await sendWebhook()
    expect(webhook.statusCode, webhook.body).toBe(200)
    // Recorded in full; the payment counts no more than its capture while the staff refund is pending.
    expect(await refundsOfPayment(db, order.payment_id)).toMatchObject([
      { amount: part, status: 'pending' },
      { amount: part, status: 'succeeded', provider_ref: dashboardRefundId },
    ])
    expect(await paymentOf(order.payment_id)).toMatchObject({ status: 'refunded', refunded_amount: total })
    // Stripe back, the staff refund is retried: Stripe refuses it (the money already went back).
    const refused = await retryStaffRefund()
    expect(refused.statusCode, refused.body).toBe(409)
    expect(refused.json().code).toBe('refund_exceeds_captured')
    expect(stripe.stats.refunds - refundsBefore).toBe(1)
    // The books show what Stripe refunded: the dashboard's refund, all of it.
    expect(await paymentOf(order.payment_id)).toMatchObject({
      status: 'partially_refunded',
      captured_amount: total,
      refunded_amount: part,
    })
    expect(await refundsOfPayment(db, order.payment_id)).toMatchObject([
      { amount: part, status: 'failed' },
      { amount: part, status: 'succeeded', provider_ref: dashboardRefundId },
    ])
    expect(await orderAfterRefundEvents(order.id)).toEqual({
      status: 'partially_refunded',
      refunded_total: part,
    })
    // Staff can refund the rest, and no more.
    const more = await node.app.inject({
      method: 'POST',
      url: `/admin/orders/${order.id}/refunds`,
      headers: { ...adminAuth, 'idempotency-key': randomUUID() },
      payload: { amount: total - part + 1 },
    })
    expect(more.statusCode, more.body).toBe(409)
    expect(more.json().code).toBe('refund_exceeds_captured')
  })

  it.runIf(kind === 'postgres')(
    "books what Stripe refunded when the dashboard refund's webhook and the refused staff refund arrive at once",
    async () => {
      for (let round = 0; round < 4; round++) {
        const { order, part, sendWebhook, retryStaffRefund } = await dashboardRefundOverPendingStaffRefund()
        const [webhook, refused] = await Promise.all([sendWebhook(), retryStaffRefund()])
        expect(webhook.statusCode, webhook.body).toBe(200)
        expect(refused.statusCode, refused.body).toBe(409)
        expect(await paymentOf(order.payment_id)).toMatchObject({
          status: 'partially_refunded',
          refunded_amount: part,
        })
        expect(await orderAfterRefundEvents(order.id)).toEqual({
          status: 'partially_refunded',
          refunded_total: part,
        })
      }
    },
  )

  it('books nothing for a dashboard refund whose failure Stripe reports before the refund itself', async () => {
    const db = node.runtime.database.db
    const { order, total, intentId } = await placeStripeOrder()
    const part = Math.floor(total / 4)
    // A refund made in the dashboard that then fails (the card account closed); Stripe delivers its
    // events in any order, and each carries the refund as it was when the event was made.
    const refundId = `re_${randomUUID().replaceAll('-', '')}`
    const refund = (status: string) => ({
      id: refundId,
      object: 'refund',
      amount: part,
      currency: 'eur',
      payment_intent: intentId,
      status,
      failure_reason: status === 'failed' ? 'expired_or_canceled_card' : null,
      metadata: {},
    })
    for (const [type, status] of [
      ['refund.failed', 'failed'],
      ['refund.created', 'pending'],
      ['refund.updated', 'succeeded'],
    ] as const) {
      const res = await deliver(stripeEvent(type, refund(status)))
      expect(res.statusCode, `${type}: ${res.body}`).toBe(200)
      expect(res.json()).toEqual({ received: true })
    }
    // Failed is where a refund ends at Stripe: the reports that came after it are older news.
    expect(await paymentOf(order.payment_id)).toMatchObject({ status: 'captured', refunded_amount: 0 })
    expect(await refundsOfPayment(db, order.payment_id)).toMatchObject([
      { amount: part, status: 'failed', provider_ref: refundId },
    ])
    // Staff still have the whole capture to refund.
    const all = await node.app.inject({
      method: 'POST',
      url: `/admin/orders/${order.id}/refunds`,
      headers: { ...adminAuth, 'idempotency-key': randomUUID() },
      payload: { amount: total },
    })
    expect(all.statusCode, all.body).toBe(201)
    expect(await paymentOf(order.payment_id)).toMatchObject({ status: 'refunded', refunded_amount: total })
  })

  it('books a dashboard refund that Stripe reports before the capture it made is recorded here', async () => {
    const db = node.runtime.database.db
    const { order, total, intentId } = await placeStripeOrder({ loseCaptureAnswer: true })
    const part = Math.floor(total / 4)
    // Staff refund part of it in the dashboard, and Stripe reports the refund first.
    const made = await dashboardClient().refunds.create({ payment_intent: intentId, amount: part })
    const refundCreated = stripeEvent('refund.created', made)
    // Stripe cannot be asked what the charge holds: the event is refused with nothing recorded, so
    // that Stripe delivers it again.
    stripe.failNext(2, 500)
    const unanswered = await deliver(refundCreated)
    expect(unanswered.statusCode, unanswered.body).toBe(503)
    expect(await paymentOf(order.payment_id)).toMatchObject({ status: 'authorized', refunded_amount: 0 })
    const redelivered = await deliver(refundCreated)
    expect(redelivered.statusCode, redelivered.body).toBe(200)
    expect(redelivered.json()).toEqual({ received: true })
    // The capture Stripe made is recorded with the refund: the books are Stripe's.
    expect(await paymentOf(order.payment_id)).toMatchObject({
      status: 'partially_refunded',
      captured_amount: total,
      refunded_amount: part,
    })
    expect(await refundsOfPayment(db, order.payment_id)).toMatchObject([
      { amount: part, status: 'succeeded', provider_ref: made.id },
    ])
    // The capture's own event, later, finds it recorded.
    const succeeded = await deliver(stripeEvent('payment_intent.succeeded', stripe.intent(intentId)))
    expect(succeeded.statusCode, succeeded.body).toBe(200)
    expect(await paymentOf(order.payment_id)).toMatchObject({
      status: 'partially_refunded',
      captured_amount: total,
      refunded_amount: part,
    })
    await eventually(async () => {
      const row = await db
        .selectFrom('orders')
        .select(['status', 'refunded_total'])
        .where('id', '=', order.id)
        .executeTakeFirstOrThrow()
      // Whichever of the capture's and the refund's events the order follows first.
      return row.status === 'partially_refunded' && row.refunded_total === part ? row : undefined
    }, 15_000)
  })

  /** Staff cancel the order: 200, its money not yet returned while our row reads authorised. */
  async function cancelOrder(orderId: string) {
    const canceled = await node.app.inject({
      method: 'POST',
      url: `/admin/orders/${orderId}/cancel`,
      headers: adminAuth,
      payload: { reason: 'customer asked' },
    })
    expect(canceled.statusCode, canceled.body).toBe(200)
    expect(canceled.json()).toMatchObject({ status: 'canceled', payment_status: 'authorized' })
  }

  it('refunds from the settle job a capture Stripe made whose answer was lost, on an order staff canceled', async () => {
    const db = node.runtime.database.db
    const { order, total, intentId } = await placeStripeOrder({ loseCaptureAnswer: true })
    const refundsBefore = stripe.stats.refunds
    // Canceled before the recovery job captures it again: Stripe refuses the void (the intent has
    // succeeded).
    await cancelOrder(order.id)
    // The settle job the cancel queued, when it comes due: refused the void in turn, it asks Stripe
    // what the charge holds.
    await settleCanceled(commerceDeps(node.runtime), order.id)
    expect(await paymentOf(order.payment_id)).toMatchObject({
      status: 'refunded',
      captured_amount: total,
      refunded_amount: total,
    })
    expect(await refundsOfPayment(db, order.payment_id)).toMatchObject([
      { amount: total, status: 'succeeded' },
    ])
    expect(
      await db
        .selectFrom('orders')
        .select(['status', 'payment_status', 'refunded_total'])
        .where('id', '=', order.id)
        .executeTakeFirstOrThrow(),
    ).toEqual({ status: 'canceled', payment_status: 'refunded', refunded_total: total })
    // Refunded at Stripe once, whoever else (the payment.captured listener) settles it too.
    await eventually(async () =>
      (await stripeCharge(intentId)).amount_refunded === total ? true : undefined,
    )
    expect(stripe.stats.refunds - refundsBefore).toBe(1)
  })

  it('runs the settle job again while Stripe cannot say what a lost capture holds', async () => {
    const { order, total, intentId } = await placeStripeOrder({ loseCaptureAnswer: true })
    await cancelOrder(order.id)
    // The void is refused and the intent read (two requests); then Stripe is out of reach.
    stripe.failNext(2, 'pass')
    stripe.failNext(2, 500)
    await expect(settleCanceled(commerceDeps(node.runtime), order.id)).rejects.toMatchObject({
      code: 'payment_provider_unavailable',
    })
    expect(await paymentOf(order.payment_id)).toMatchObject({ status: 'authorized', refunded_amount: 0 })
    // The queue runs it again.
    await settleCanceled(commerceDeps(node.runtime), order.id)
    expect(await paymentOf(order.payment_id)).toMatchObject({
      status: 'refunded',
      captured_amount: total,
      refunded_amount: total,
    })
    expect((await stripeCharge(intentId)).amount_refunded).toBe(total)
  })
})
