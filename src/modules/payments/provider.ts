/**
 * The payment provider contract. A provider speaks to one processor (the built-in test gateway,
 * manual bank transfer or cash on delivery, Stripe); the payments service records what it answers.
 * Every call that moves money carries an idempotency key that the processor deduplicates on, so a
 * retried call (after a crash, a timeout or a replayed checkout) never charges twice.
 *
 * Provider calls run outside database transactions; the caller records their results in its own.
 * A call that could not reach the processor, or whose outcome is unknown, throws
 * PaymentProviderUnavailable: the caller retries it later with the same key.
 */

export interface AuthorizeInput {
  /** Our payment id; also the base of every idempotency key sent to the processor. */
  payment_id: string
  amount: number
  currency: string
  /** A processor token for the method: `pm_card_visa` and friends for the test gateway and Stripe. */
  payment_method: string | null
  /** The processor's reference from an earlier attempt (after 3-D Secure, or a resumed checkout). */
  provider_ref: string | null
  email: string | null
  /** Authorise and capture in one step (the store captures automatically). */
  capture: boolean
}

export type AuthorizeResult =
  | {
      status: 'authorized' | 'captured'
      provider_ref: string
      card_fingerprint?: string | null
      captured_amount?: number
    }
  | {
      status: 'requires_action'
      provider_ref: string
      next_action: { type: string; url?: string; client_secret?: string }
      card_fingerprint?: string | null
    }
  | {
      /** Manual methods: the order is placed and paid later (bank transfer, cash on delivery). */
      status: 'awaiting_transfer'
      provider_ref: string
      instructions?: Record<string, unknown>
    }
  | {
      status: 'declined'
      provider_ref: string | null
      /** card_declined, insufficient_funds, expired_card, … */
      decline_code: string
      message: string
      card_fingerprint?: string | null
    }

export interface CaptureInput {
  payment_id: string
  provider_ref: string
  amount: number
  currency: string
  idempotency_key: string
}

export interface RefundInput {
  payment_id: string
  provider_ref: string
  amount: number
  currency: string
  idempotency_key: string
  reason?: string | null
}

export interface WebhookUpdate {
  /** The processor's event id: an event seen before is not applied again. */
  event_id: string
  type: string
  provider_ref: string | null
  /** The payment state the event reports, when it reports one. */
  status?: 'authorized' | 'captured' | 'failed' | 'canceled' | 'refunded' | 'requires_action'
  amount?: number
  failure_code?: string
  failure_message?: string
  /** What the event says about one refund, when it is about one (its later success or failure). */
  refund?: RefundReport
}

/** A refund's state at the processor, reported after the call that made it. */
export interface RefundReport {
  /** The processor's id of the refund (what `refund()` returned as provider_ref). */
  provider_ref: string
  status: 'pending' | 'requires_action' | 'succeeded' | 'failed' | 'canceled'
  amount: number
  failure_reason?: string | null
  /** The idempotency key we gave the refund (from its metadata): the refund is one of ours. */
  ours?: string
}

export interface PaymentProvider {
  readonly id: string
  /**
   * Whether it charges cards (or any credential a processor can decline), so card testers can use
   * it and checkout holds it to the card-testing limits (velocity.ts). Manual payments take none.
   */
  readonly takesCards: boolean
  /**
   * Refuses (422 `unsupported_payment_method`) a payment method this provider will not take here,
   * before checkout holds stock or opens a payment. Providers that judge methods only when
   * authorising (declines) leave it out.
   */
  checkMethod?(paymentMethod: string | null): void
  authorize(input: AuthorizeInput): Promise<AuthorizeResult>
  capture(input: CaptureInput): Promise<{ provider_ref: string; captured_amount: number }>
  refund(input: RefundInput): Promise<{ provider_ref: string; status: 'succeeded' | 'pending' }>
  /** Voids an authorisation that will not be captured. */
  cancel(input: { payment_id: string; provider_ref: string; idempotency_key: string }): Promise<void>
  /**
   * The charge the processor made for our payment, with what it captured of it (in its dashboard)
   * since. Found by the payment's id rather than by an answer for a payment given up after every
   * answer to its authorisation was lost (the processor out of reach each time), whose charge only
   * the processor can name; read by `provider_ref` instead when our row names the charge and the
   * processor refused its void, since the refusal does not say how much was captured. null when it
   * has none; PaymentProviderUnavailable when it cannot say (yet: a processor whose lookup by
   * payment lags new charges answers so for a payment given up too recently); PaymentGiveBackRefused
   * when it never will. Providers that hold no money leave it out.
   */
  findCharge?(lookup: ChargeLookup): Promise<FoundCharge | null>
  /**
   * Verifies and parses a webhook delivery; throws PaymentWebhookInvalid for a bad signature or a
   * stale timestamp. Providers without webhooks leave it out.
   */
  parseWebhook?(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): WebhookUpdate
}

/** What findCharge looks a payment's charge up by. */
export interface ChargeLookup {
  payment_id: string
  /** When the payment was created: no charge made for it is older. */
  created_at: Date
  /** When it was given up here: no charge made for it is much younger. */
  given_up_at: Date
  /** The charge our row names, when it names one. */
  provider_ref?: string | undefined
}

/** A charge findCharge found at the processor. */
export interface FoundCharge {
  provider_ref: string
  /**
   * Minor units the processor has captured of it: 0 for an authorisation. More means a capture
   * made there (we only authorise), which a void would not return: it takes a refund.
   */
  captured_amount: number
  /**
   * Minor units refunded of that capture at the processor. findCharge is only asked while our row
   * records no capture (so no refund of ours), so this is a refund made there (its dashboard): what
   * is left to give back is captured_amount less this.
   */
  refunded_amount: number
}

/** The processor could not be reached or its answer is unknown: retry later with the same key. */
export class PaymentProviderUnavailable extends Error {
  override name = 'PaymentProviderUnavailable'
}

/**
 * The processor refuses, for good, to give back what a payment with no order holds: a void it
 * turns down of a charge it reports nothing captured of (one it captured is refunded instead), a
 * refund it turned down, a lookup of the charge (findCharge) it does not offer this account.
 * Retrying changes nothing; staff must look the payment up at the processor.
 */
export class PaymentGiveBackRefused extends Error {
  override name = 'PaymentGiveBackRefused'
}

/** A webhook whose signature or timestamp does not verify. */
export class PaymentWebhookInvalid extends Error {
  override name = 'PaymentWebhookInvalid'
}
