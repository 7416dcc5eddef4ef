/**
 * The shape of the Stripe events the provider reads. A signature proves who sent an event, not
 * that it holds what the code reads: an event without an id, or a payment intent whose id is not a
 * string, would otherwise reach the database and fail there. Only the fields read are checked, and
 * events of types we do not act on only need an id and a type, so that Stripe can add fields and
 * event types without our webhook refusing them.
 */
import Type from 'typebox'
import { Compile } from 'typebox/compile'
import { PaymentWebhookInvalid } from '../provider.ts'

const StripeId = Type.String({ minLength: 1, maxLength: 255 })
const Amount = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
const OptionalText = Type.Optional(Type.Union([Type.String({ maxLength: 5000 }), Type.Null()]))

const Envelope = Type.Object({
  id: StripeId,
  type: Type.String({ minLength: 1, maxLength: 255 }),
})

const Intent = Type.Object({
  id: StripeId,
  amount_received: Type.Optional(Amount),
  amount_capturable: Type.Optional(Amount),
  last_payment_error: Type.Optional(
    Type.Union([
      Type.Null(),
      Type.Object({ code: OptionalText, decline_code: OptionalText, message: OptionalText }),
    ]),
  ),
})

const Refund = Type.Object({
  id: StripeId,
  amount: Amount,
  payment_intent: Type.Union([StripeId, Type.Object({ id: StripeId }), Type.Null()]),
  status: OptionalText,
  failure_reason: OptionalText,
  metadata: Type.Optional(
    Type.Union([Type.Null(), Type.Object({ idempotency_key: Type.Optional(Type.String()) })]),
  ),
})

const withObject = (object: typeof Intent | typeof Refund) =>
  Compile(Type.Object({ data: Type.Object({ object }) }))

const checkEnvelope = Compile(Envelope)
const checkIntentEvent = withObject(Intent)
const checkRefundEvent = withObject(Refund)

/** What each event type the provider acts on needs to hold; other types need only the envelope. */
const BY_TYPE = new Map<string, typeof checkIntentEvent | typeof checkRefundEvent>([
  ['payment_intent.succeeded', checkIntentEvent],
  ['payment_intent.amount_capturable_updated', checkIntentEvent],
  ['payment_intent.payment_failed', checkIntentEvent],
  ['payment_intent.canceled', checkIntentEvent],
  ['refund.created', checkRefundEvent],
  ['refund.updated', checkRefundEvent],
  ['refund.failed', checkRefundEvent],
  ['charge.refund.updated', checkRefundEvent],
])

/** Throws PaymentWebhookInvalid, naming the first field at fault, unless the event holds what is read. */
export function assertEventShape(event: unknown): void {
  if (!checkEnvelope.Check(event)) fault(checkEnvelope.Errors(event))
  const check = BY_TYPE.get((event as { type: string }).type)
  if (check && !check.Check(event)) fault(check.Errors(event))
}

function fault(errors: Iterable<{ instancePath: string; message: string }>): never {
  const [first] = errors
  throw new PaymentWebhookInvalid(
    `The event does not hold what its type promises at ${first?.instancePath || '/'}: ${first?.message}`,
  )
}
