/**
 * Manual payments: bank transfer and cash on delivery. No processor is involved: the order is placed
 * awaiting the money, staff capture the payment when it has arrived, and a refund is staff paying
 * the money back by hand. The payment id is the reference the shopper quotes on the transfer.
 */
import type {
  AuthorizeInput,
  AuthorizeResult,
  CaptureInput,
  PaymentProvider,
  RefundInput,
} from '../provider.ts'

export class ManualProvider implements PaymentProvider {
  readonly id = 'manual'

  async authorize(input: AuthorizeInput): Promise<AuthorizeResult> {
    // Even when the store captures automatically nothing is captured here: the money is not in yet.
    const method = input.payment_method === 'cash_on_delivery' ? 'cash_on_delivery' : 'bank_transfer'
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
