/** Wire schemas of the payments API. */

import { Type } from 'typebox'
import { CartId } from '../carts/schemas.ts'

const Amount = Type.Integer({ minimum: 0, description: 'In the currency’s minor unit' })

export const PaymentSchema = Type.Object(
  {
    id: Type.String({ description: 'pay_…' }),
    cart_id: Type.String(),
    order_id: Type.Union([Type.String(), Type.Null()]),
    provider: Type.String({ description: 'test, manual, stripe' }),
    status: Type.Union(
      [
        'pending',
        'requires_action',
        'authorized',
        'captured',
        'partially_refunded',
        'refunded',
        'canceled',
        'failed',
        'awaiting_transfer',
      ].map((s) => Type.Literal(s)),
    ),
    amount: Amount,
    captured_amount: Amount,
    refunded_amount: Type.Integer({
      minimum: 0,
      description: 'Refunded and being refunded: a refund under way already counts',
    }),
    currency: Type.String({ description: 'ISO 4217 code' }),
    provider_ref: Type.Union([Type.String(), Type.Null()], {
      description: 'The processor’s id: charge, payment intent, or the transfer reference',
    }),
    next_action: Type.Union(
      [
        Type.Object(
          {
            type: Type.String({
              description: 'redirect_to_url, use_stripe_sdk, display_transfer_instructions, …',
            }),
            url: Type.Optional(Type.String()),
            client_secret: Type.Optional(Type.String()),
          },
          { additionalProperties: true },
        ),
        Type.Null(),
      ],
      { description: 'What the shopper must do next (3-D Secure, a bank transfer)' },
    ),
    failure_code: Type.Union([Type.String(), Type.Null()]),
    failure_message: Type.Union([Type.String(), Type.Null()]),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Payment' },
)

export const PaymentRefundSchema = Type.Object(
  {
    id: Type.String({ description: 're_…' }),
    payment_id: Type.String(),
    amount: Amount,
    currency: Type.String(),
    reason: Type.Union([Type.String(), Type.Null()]),
    status: Type.Union([Type.Literal('succeeded'), Type.Literal('pending'), Type.Literal('failed')]),
    provider_ref: Type.Union([Type.String(), Type.Null()]),
    actor: Type.String(),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'PaymentRefund' },
)

export const PaymentParams = Type.Object({ id: Type.String({ pattern: '^pay_[0-9a-z]{26}$' }) })

export const AuthenticateBody = Type.Object(
  {
    result: Type.Union([Type.Literal('pass'), Type.Literal('fail')], {
      description: 'The shopper’s answer to the test gateway’s 3-D Secure challenge',
    }),
    /** The cart being checked out: only its shopper may answer the challenge. */
    cart_id: CartId,
  },
  { additionalProperties: false },
)

export const WebhookReceived = Type.Object({
  received: Type.Boolean(),
  duplicate: Type.Optional(Type.Boolean()),
})
