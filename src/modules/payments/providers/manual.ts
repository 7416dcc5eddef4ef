/**
 * Manual payments: bank transfer and cash on delivery. No processor is involved: the order is placed
 * awaiting the money, staff capture the payment when it has arrived, and a refund is staff paying
 * the money back by hand. The payment id is the reference the shopper quotes on the transfer.
 */
import type { ManualPaymentMethod } from '../../../config.ts'
import { problem } from '../../../platform/http/errors.ts'
import type {
  AuthorizeInput,
  AuthorizeResult,
  CaptureInput,
  PaymentProvider,
  RefundInput,
} from '../provider.ts'

export class ManualProvider implements PaymentProvider {
  readonly id = 'manual'
  readonly takesCards = false
  readonly #methods: readonly ManualPaymentMethod[]

  /** `methods`: those the store offers (PAYMENT_MANUAL_METHODS), the first being the default. */
  constructor(methods: readonly ManualPaymentMethod[]) {
    this.#methods = methods
  }

  checkMethod(paymentMethod: string | null): void {
    if (this.#methods.length === 0) {
      throw problem('unknown_payment_provider', 'This store does not take manual payments')
    }
    if (paymentMethod === null || (this.#methods as readonly string[]).includes(paymentMethod)) return
    throw problem(
      'unsupported_payment_method',
      `This store takes manual payments by ${this.#methods.join(' or ')}`,
      {
        errors: [
          { path: 'body.payment.payment_method', message: `must be one of ${this.#methods.join(', ')}` },
        ],
      },
    )
  }

  async authorize(input: AuthorizeInput): Promise<AuthorizeResult> {
    // Even when the store captures automatically nothing is captured here: the money is not in yet.
    const method =
      input.payment_method === 'cash_on_delivery' || input.payment_method === 'bank_transfer'
        ? input.payment_method
        : (this.#methods[0] ?? 'bank_transfer')
    return {
      status: 'awaiting_transfer',
      provider_ref: input.payment_id,
      instructions: {
        method,
        reference: input.payment_id,
        amount: input.amount,
        currency: input.currency,
      },
    }
  }

  async capture(input: CaptureInput): Promise<{ provider_ref: string; captured_amount: number }> {
    return { provider_ref: input.provider_ref, captured_amount: input.amount }
  }

  async refund(input: RefundInput): Promise<{ provider_ref: string; status: 'succeeded' | 'pending' }> {
    return { provider_ref: input.idempotency_key, status: 'succeeded' }
  }

  async cancel(): Promise<void> {}
}
