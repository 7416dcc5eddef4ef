/** `POST /store/carts/:id/complete`: checkout, safe to retry with the same Idempotency-Key. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { Gate } from '../../platform/gate.ts'
import { releaseIdempotencyKey } from '../../platform/http/idempotency.ts'
import { errorResponses } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { cartAccessOf, cartSecurity } from '../carts/routes.ts'
import { CartParams, CompleteCart } from '../carts/schemas.ts'
import { completeCart } from './checkout.ts'
import { commerceDeps } from './deps.ts'

const Loose = Type.Object({}, { additionalProperties: true })
const CheckoutResponse = Type.Object({
  type: Type.Union([Type.Literal('order'), Type.Literal('payment_action_required')]),
  order: Type.Optional(Loose),
  cart: Type.Optional(Loose),
  payment: Type.Optional(Loose),
})

/** How long a checkout may queue for its turn on this node before answering 503. */
const GATE_WAIT_MS = 10_000

/** How long a request waits for another with the same key before answering 409. */
const SAME_KEY_WAIT_MS = 15_000

export const checkoutRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  // As many checkouts at once as the pool has connections; the rest queue here with nothing done.
  const gate = new Gate(runtime.config.databasePoolMax, GATE_WAIT_MS)

  app.post(
    '/store/carts/:id/complete',
    {
      config: { idempotency: 'required', idempotencyWaitMs: SAME_KEY_WAIT_MS },
      schema: {
        tags: ['checkout'],
        security: cartSecurity,
        summary: 'Check out: reserve stock, authorise payment and place the order (Idempotency-Key required)',
        description:
          'Answers 201 with the new order, 200 with the order when the cart was already completed, 200 with ' +
          '`payment_action_required` when the shopper must act (3-D Secure; call again afterwards, with the same ' +
          'Idempotency-Key or another: this answer is not stored under the key), 402 ' +
          '`payment_required` when the payment was declined (the cart is open again), or 409 `cart_changed` ' +
          'when the cart no longer costs what it showed (it is saved repriced: show it again, then check out ' +
          'with a new Idempotency-Key). Prices and tax are ' +
          "always the server's: nothing in the body can change them.",
        params: CartParams,
        body: CompleteCart,
        response: { 200: CheckoutResponse, 201: CheckoutResponse, ...errorResponses },
      },
    },
    async (request, reply) => {
      const principal = request.principal
      const result = await gate.run(() =>
        completeCart(commerceDeps(runtime), {
          cartId: request.params.id,
          access: cartAccessOf(request),
          payment: request.body.payment,
          ip: request.ip,
          actor: principal ? `${principal.kind}:${principal.id}` : 'guest',
        }),
      )
      if (result.type === 'order') {
        reply.code(result.created ? 201 : 200)
        return { type: 'order' as const, order: result.order }
      }
      // After the challenge the storefront calls again, with the same key: this answer is not final.
      releaseIdempotencyKey(request)
      return result
    },
  )
}
