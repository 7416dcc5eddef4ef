/**
 * Checkout through Stripe, end to end, against the local stand-in of Stripe's API: an order paid
 * with one PaymentIntent however often the shopper retries, a decline that reopens the cart, 3-D
 * Secure completed at Stripe, an outage the retry recovers from with one intent, and Stripe's
 * webhook for the capture accepted once.
 */
import { randomUUID } from 'node:crypto'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestNode, type TestNode } from './support/app.ts'
import { createTestStore, readyCart, type TestStore } from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'
import { type StripeServer, startStripeServer } from './support/stripe-server.ts'

const WEBHOOK_SECRET = 'whsec_checkout_0123456789abcdef'

describe.each(DATABASE_KINDS)('%s: checkout with Stripe', (kind) => {
  let node: TestNode
  let stripe: StripeServer
  let store: TestStore

  beforeAll(async () => {
    stripe = await startStripeServer()
    node = await startTestNode(kind, {
      env: {
        STRIPE_SECRET_KEY: 'sk_test_shopwright',
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        STRIPE_API_URL: stripe.url,
        RATE_LIMIT_PER_MINUTE: '100000',
      },
    })
    store = await createTestStore(node.app)
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
})
