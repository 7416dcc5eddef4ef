/** Payment webhooks and the test gateway's 3-D Secure step. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { problem } from '../../platform/http/errors.ts'
import { errorResponses } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { getCart } from '../carts/carts.ts'
import { cartAccessOf, cartSecurity } from '../carts/routes.ts'
import { paymentDeps } from './common.ts'
import { PaymentWebhookInvalid } from './provider.ts'
import { answerTestChallenge } from './providers/test-gateway.ts'
import {
  AuthenticateBody,
  PaymentParams,
  PaymentRefundSchema,
  PaymentSchema,
  WebhookReceived,
} from './schemas.ts'
import { findPayment } from './views.ts'
import { applyWebhook } from './webhooks.ts'

const tags = ['payments']

export const paymentRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  app.addSchema(PaymentSchema)
  app.addSchema(PaymentRefundSchema)

  // A plugin of its own, so that only the webhook gets the raw body (encapsulation keeps this
  // parser out of every other route, the 3-D Secure one below included).
  await app.register(stripeWebhookRoute, { runtime })

  app.post(
    '/store/payments/:id/authenticate',
    {
      schema: {
        tags,
        security: cartSecurity,
        summary: 'Answer the test gateway’s 3-D Secure challenge',
        description:
          'The page a test gateway payment in `requires_action` redirects the shopper to. After ' +
          '`pass` the checkout, resumed, completes the payment; after `fail` it is declined with ' +
          '`payment_intent_authentication_failure`. Only for provider `test`; the body names the cart the ' +
          'payment is for, which the caller must be able to see (its id, or its customer signed in).',
        params: PaymentParams,
        body: AuthenticateBody,
        response: {
          200: Type.Object({
            payment_id: Type.String(),
            result: Type.Union([Type.Literal('passed'), Type.Literal('failed')]),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { id } = request.params
      // The cart's id (a guest's only key to it) or its customer's token proves the shopper's own.
      await getCart(runtime.database.db, request.body.cart_id, cartAccessOf(request))
      const payment = await findPayment(runtime.database.db, id)
      if (payment?.provider !== 'test' || payment.cart_id !== request.body.cart_id)
        throw problem('not_found', `No test gateway payment ${id}`)
      const passed = request.body.result === 'pass'
      if (!(await answerTestChallenge(runtime.database.db, id, passed))) {
        throw problem('conflict', `No 3-D Secure challenge is waiting for payment ${id}`)
      }
      return { payment_id: id, result: passed ? ('passed' as const) : ('failed' as const) }
    },
  )
}

const stripeWebhookRoute: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  // The signature covers the exact bytes Stripe sent: a parsed and re-serialised body would not verify.
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) =>
    done(null, body),
  )

  app.post(
    '/webhooks/stripe',
    {
      config: { rateLimit: false, rawBody: true },
      schema: {
        tags,
        summary: 'Stripe webhook events',
        description:
          'Verified with the `Stripe-Signature` header against the raw body (timestamps older than ' +
          '5 minutes are refused). Each event id is applied once; a redelivery answers `duplicate`.',
        response: { 200: WebhookReceived, ...errorResponses },
      },
    },
    async (request) => {
      const deps = paymentDeps(runtime)
      const stripe = deps.providers.get('stripe')
      if (!stripe?.parseWebhook || !runtime.config.stripeWebhookSecret) {
        throw problem('not_found', 'Stripe is not configured on this server')
      }
      if (!Buffer.isBuffer(request.body)) throw problem('invalid_webhook', 'Expected a JSON body')
      let update: ReturnType<NonNullable<typeof stripe.parseWebhook>>
      try {
        update = stripe.parseWebhook(request.body, request.headers)
      } catch (error) {
        if (error instanceof PaymentWebhookInvalid) throw problem('invalid_webhook', error.message)
        throw error
      }
      const outcome = await applyWebhook(deps, stripe.id, update)
      return outcome.duplicate ? { received: true, duplicate: true } : { received: true }
    },
  )
}
