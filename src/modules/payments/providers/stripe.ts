/**
 * Stripe, through the official SDK and PaymentIntents. Authorisation creates and confirms an intent
 * in one call (capture manual or automatic), keyed `${payment_id}:authorize` so a retried checkout
 * finds the intent it already created instead of charging again; capture, refund and cancel carry
 * the caller's keys. Webhooks are verified against the raw body with the signing secret.
 *
 * Mapping of an intent's status: requires_capture → authorized, succeeded → captured,
 * requires_action → requires_action, requires_payment_method (and card errors) → declined.
 * `processing` means the outcome is not known yet, so it throws PaymentProviderUnavailable: the
 * caller retries with the same key, and a replayed create is followed by a fresh retrieve (below),
 * so the retry sees the settled state rather than the stale first answer.
 */
import Stripe from 'stripe'
import { problem } from '../../../platform/http/errors.ts'
import {
  type AuthorizeInput,
  type AuthorizeResult,
  type CaptureInput,
  type ChargeLookup,
  type FoundCharge,
  PaymentGiveBackRefused,
  type PaymentProvider,
  PaymentProviderUnavailable,
  PaymentWebhookInvalid,
  type RefundInput,
  type RefundReport,
  type WebhookUpdate,
} from '../provider.ts'
import { assertEventShape } from './stripe-events.ts'

export interface StripeProviderOptions {
  secretKey: string
  webhookSecret: string | undefined
  /** Base URL of the API (a local stand-in in tests); Stripe's own when unset. */
  apiUrl?: string
  /** Retries the SDK makes itself, with the same idempotency key (Stripe recommends at least 1). */
  maxNetworkRetries?: number
  timeoutMs?: number
}

/** Webhook timestamps older than this are refused: a captured delivery cannot be replayed later. */
const WEBHOOK_TOLERANCE_SECONDS = 300
const { errors } = Stripe

/** The SDK's options for an API base URL: host, port and protocol taken from it. */
function endpoint(apiUrl: string | undefined): Pick<Stripe.StripeConfig, 'host' | 'port' | 'protocol'> {
  if (!apiUrl) return {}
  const url = new URL(apiUrl)
  const protocol = url.protocol === 'http:' ? 'http' : 'https'
  return { host: url.hostname, port: url.port || (protocol === 'http' ? 80 : 443), protocol }
}

/**
 * Network failures, Stripe's 5xx, rate limits and lock conflicts: the answer is unknown, retry
 * later. Also our key refused (revoked, rolled, or lacking a permission): Stripe did nothing, and
 * the same call goes through once the key is fixed; until then a checkout is a 503 that hands its
 * lease back, never the SDK's 401 passed on to a shopper as their own.
 */
function isUnavailable(error: unknown): boolean {
  if (error instanceof errors.StripeConnectionError || error instanceof errors.StripeRateLimitError)
    return true
  if (error instanceof errors.StripeAuthenticationError || error instanceof errors.StripePermissionError)
    return true
  if (error instanceof errors.StripeAPIError) return true
  if (error instanceof errors.StripeError) {
    const status = error.statusCode ?? 0
    return status >= 500 || status === 409 || status === 429
  }
  return false
}

function unavailable(error: unknown): PaymentProviderUnavailable {
  const message = error instanceof Error ? error.message : String(error)
  return new PaymentProviderUnavailable(`Stripe: ${message}`, { cause: error })
}

/** A Stripe request whose failure to get an answer is PaymentProviderUnavailable, as any call's. */
function asked<T>(request: Promise<T>): Promise<T> {
  return request.catch((error: unknown) => {
    throw isUnavailable(error) ? unavailable(error) : error
  })
}

function fingerprintOf(intent: Stripe.PaymentIntent): string | null {
  const method = intent.payment_method
  return method && typeof method === 'object' ? (method.card?.fingerprint ?? null) : null
}

function idOf(ref: string | { id: string } | null | undefined): string | null {
  if (!ref) return null
  return typeof ref === 'string' ? ref : ref.id
}

/** Stripe's codes for an amount outside what it charges: the shopper's cart, not our bug. */
const AMOUNT_REFUSED = new Set(['amount_too_small', 'amount_too_large'])
/** How long Stripe's search may not show a new intent. */
const SEARCH_LAG_MS = 2 * 60 * 60_000
/**
 * How Stripe answers a search on an account it offers none (India, among others). No error code is
 * documented for it, so its message tells it apart: HTTP 400 `invalid_request_error` "The search
 * feature is temporarily unavailable in your region." on an Indian account
 * (github.com/SAP-archive/btp-create-api-integrations/issues/7), and "search feature unavailable
 * for merchant" (github.com/better-auth/better-auth/issues/7959, pointing at Stripe's list of the
 * countries search supports). "Temporarily" notwithstanding, it lasts as long as the account's country.
 */
const SEARCH_REFUSED = /\bsearch\b.*\b(unavailable|not available)\b/i
/** Pages of 100 intents listed, where search is refused, before the lookup is left to staff. */
const LIST_PAGES_MAX = 20
/** Seconds either side of a payment's life in which its intent may have been created, by Stripe's clock. */
const CLOCK_MARGIN_S = 300
/** Intent states Stripe voids (cancels). */
const CANCELABLE = new Set<string>([
  'requires_payment_method',
  'requires_confirmation',
  'requires_action',
  'requires_capture',
])

/**
 * An intent (its latest_charge expanded) as findCharge reports it. `amount_received` stays what was
 * captured after a refund in the dashboard: only the charge says how much of it was refunded.
 */
function chargeOf(intent: Stripe.PaymentIntent): FoundCharge {
  const charge = intent.latest_charge
  return {
    provider_ref: intent.id,
    captured_amount: intent.amount_received,
    refunded_amount: charge && typeof charge === 'object' ? charge.amount_refunded : 0,
  }
}

export class StripeProvider implements PaymentProvider {
  readonly id = 'stripe'
  readonly takesCards = true
  readonly #stripe: Stripe
  readonly #webhookSecret: string | undefined

  constructor(options: StripeProviderOptions) {
    this.#stripe = new Stripe(options.secretKey, {
      ...endpoint(options.apiUrl),
      maxNetworkRetries: options.maxNetworkRetries ?? 1,
      timeout: options.timeoutMs ?? 20_000,
      telemetry: false,
    })
    this.#webhookSecret = options.webhookSecret
  }

  /**
   * Intents are confirmed here, on the server, with the method Stripe.js collected: without one,
   * Stripe refuses every attempt alike, and checkout would hold the stock of a cart it cannot pay.
   */
  checkMethod(paymentMethod: string | null): void {
    if (paymentMethod) return
    throw problem(
      'unsupported_payment_method',
      'Stripe payments need the payment method Stripe.js collected',
      {
        errors: [{ path: 'body.payment.payment_method', message: 'is required for Stripe (a pm_… id)' }],
      },
    )
  }

  async authorize(input: AuthorizeInput): Promise<AuthorizeResult> {
    try {
      return this.#resultOf(await this.#intentFor(input))
    } catch (error) {
      if (error instanceof PaymentProviderUnavailable) throw error
      if (isUnavailable(error)) throw unavailable(error)
      if (error instanceof errors.StripeCardError) {
        return {
          status: 'declined',
          provider_ref: idOf(error.payment_intent),
          decline_code: error.decline_code ?? error.code ?? 'card_declined',
          message: error.message,
          card_fingerprint: error.payment_method?.card?.fingerprint ?? null,
        }
      }
      // A token Stripe does not know is the shopper's bad input, not our bug.
      if (error instanceof errors.StripeInvalidRequestError && error.param === 'payment_method') {
        return {
          status: 'declined',
          provider_ref: null,
          decline_code: 'invalid_payment_method',
          message: error.message,
        }
      }
      // An amount Stripe does not take fails the same way on every retry: a decline reopens the
      // cart and frees its stock, where an error would leave the checkout stuck until the recovery
      // job gives it up. Other refusals may be our own mistakes, so they stay errors (and are logged).
      if (error instanceof errors.StripeInvalidRequestError && AMOUNT_REFUSED.has(error.code ?? '')) {
        return {
          status: 'declined',
          provider_ref: idOf(error.payment_intent),
          decline_code: error.code ?? 'invalid_request',
          message: error.message,
        }
      }
      throw error
    }
  }

  /** The intent for this payment: the one already created (retrieved, confirmed if needed) or a new one. */
  async #intentFor(input: AuthorizeInput): Promise<Stripe.PaymentIntent> {
    const paymentIntents = this.#stripe.paymentIntents
    const expand = ['payment_method']
    if (input.provider_ref) {
      const intent = await paymentIntents.retrieve(input.provider_ref, { expand })
      if (intent.status !== 'requires_confirmation') return intent
      return paymentIntents.confirm(intent.id, { expand }, { idempotencyKey: `${input.payment_id}:confirm` })
    }
    const created = await paymentIntents.create(
      {
        amount: input.amount,
        currency: input.currency.toLowerCase(),
        ...(input.payment_method ? { payment_method: input.payment_method } : {}),
        // Methods that leave the page for a bank's site would need a return_url this API lacks;
        // cards' 3-D Secure still runs, through next_action and Stripe.js.
        automatic_payment_methods: { enabled: true, allow_redirects: 'never' },
        confirm: true,
        capture_method: input.capture ? 'automatic' : 'manual',
        metadata: { payment_id: input.payment_id },
        ...(input.email ? { receipt_email: input.email } : {}),
        expand,
      },
      { idempotencyKey: `${input.payment_id}:authorize` },
    )
    // A replay returns the intent as it was first created; its state may have moved on since.
    if (created.lastResponse.headers['idempotent-replayed'] === 'true') {
      return paymentIntents.retrieve(created.id, { expand })
    }
    return created
  }

  #resultOf(intent: Stripe.PaymentIntent): AuthorizeResult {
    const card_fingerprint = fingerprintOf(intent)
    switch (intent.status) {
      case 'requires_capture':
        return { status: 'authorized', provider_ref: intent.id, card_fingerprint }
      case 'succeeded':
        return {
          status: 'captured',
          provider_ref: intent.id,
          card_fingerprint,
          captured_amount: intent.amount_received,
        }
      case 'requires_action': {
        const next = intent.next_action
        return {
          status: 'requires_action',
          provider_ref: intent.id,
          card_fingerprint,
          next_action: {
            type: next?.type ?? 'use_stripe_sdk',
            ...(next?.redirect_to_url?.url ? { url: next.redirect_to_url.url } : {}),
            ...(intent.client_secret ? { client_secret: intent.client_secret } : {}),
          },
        }
      }
      case 'requires_payment_method':
      case 'canceled': {
        const error = intent.last_payment_error
        return {
          status: 'declined',
          provider_ref: intent.id,
          decline_code:
            error?.decline_code ??
            error?.code ??
            (intent.status === 'canceled' ? 'canceled' : 'card_declined'),
          message: error?.message ?? `The payment intent is ${intent.status}`,
          card_fingerprint,
        }
      }
      default:
        // processing, requires_confirmation: not settled yet, so no answer we could record.
        throw new PaymentProviderUnavailable(`Stripe: payment intent ${intent.id} is ${intent.status}`)
    }
  }

  async capture(input: CaptureInput): Promise<{ provider_ref: string; captured_amount: number }> {
    try {
      const intent = await this.#stripe.paymentIntents.capture(
        input.provider_ref,
        { amount_to_capture: input.amount },
        { idempotencyKey: input.idempotency_key },
      )
      return { provider_ref: intent.id, captured_amount: intent.amount_received }
    } catch (error) {
      if (isUnavailable(error)) throw unavailable(error)
      if (error instanceof errors.StripeInvalidRequestError) {
        throw problem('payment_not_capturable', `Stripe: ${error.message}`)
      }
      throw error
    }
  }

  async refund(input: RefundInput): Promise<{ provider_ref: string; status: 'succeeded' | 'pending' }> {
    try {
      const refund = await this.#stripe.refunds.create(
        {
          payment_intent: input.provider_ref,
          amount: input.amount,
          // Stripe's `reason` is an enum; our free-text reason travels as metadata.
          // The key lets a refund event that arrives before our record of the refund find it.
          metadata: {
            payment_id: input.payment_id,
            idempotency_key: input.idempotency_key,
            ...(input.reason ? { reason: input.reason } : {}),
          },
        },
        { idempotencyKey: input.idempotency_key },
      )
      if (refund.status === 'failed' || refund.status === 'canceled') {
        throw problem('conflict', `Stripe refused the refund ${refund.id}: ${refund.status}`)
      }
      return { provider_ref: refund.id, status: refund.status === 'succeeded' ? 'succeeded' : 'pending' }
    } catch (error) {
      if (isUnavailable(error)) throw unavailable(error)
      if (error instanceof errors.StripeInvalidRequestError) {
        const tooLarge = error.code === 'amount_too_large' || error.code === 'charge_already_refunded'
        throw problem(tooLarge ? 'refund_exceeds_captured' : 'conflict', `Stripe: ${error.message}`)
      }
      throw error
    }
  }

  async cancel(input: { payment_id: string; provider_ref: string; idempotency_key: string }): Promise<void> {
    try {
      await this.#stripe.paymentIntents.cancel(
        input.provider_ref,
        {},
        { idempotencyKey: input.idempotency_key },
      )
    } catch (error) {
      if (isUnavailable(error)) throw unavailable(error)
      if (error instanceof errors.StripeInvalidRequestError) {
        // Canceled already (by a webhook's twin, or in the dashboard) is what we wanted; still
        // processing, it may yet be voidable; unknown for now if Stripe cannot be asked.
        const intent = await this.#stripe.paymentIntents.retrieve(input.provider_ref).catch((failure) => {
          if (isUnavailable(failure)) throw unavailable(failure)
          return null
        })
        if (intent?.status === 'canceled') return
        if (intent?.status === 'processing')
          throw new PaymentProviderUnavailable('Stripe: the intent is processing')
        // Stripe replays a refusal under its key for a day: one made while the intent was
        // processing would refuse this retry's void too. Asked again under a key of its state.
        const stateKey = `:${intent?.status}`
        if (intent && CANCELABLE.has(intent.status) && !input.idempotency_key.endsWith(stateKey))
          return this.cancel({ ...input, idempotency_key: input.idempotency_key + stateKey })
        throw problem('payment_not_capturable', `Stripe: ${error.message}`)
      }
      throw error
    }
  }

  /**
   * By the `payment_id` metadata every intent is created with, through Stripe's search. Search lags
   * new intents (under a minute as a rule, up to an hour in Stripe's incidents, which is when
   * answers get lost), and an intent may be created up to a request's timeout before the give-up:
   * "none" is believed only SEARCH_LAG_MS after it, and is "not yet" (unavailable) before. An
   * account Stripe offers no search has the intents of the payment's lifetime listed instead. An
   * intent our row names (`provider_ref`) needs neither: it is retrieved, so no lag holds up the
   * refund of what was captured of it.
   */
  async findCharge(lookup: ChargeLookup): Promise<FoundCharge | null> {
    if (lookup.provider_ref) {
      return this.#capturedOf(lookup.provider_ref).catch((error: unknown) => {
        // Not an intent of this account: nothing of it to give back, and asking again changes nothing.
        if (error instanceof errors.StripeInvalidRequestError && error.statusCode === 404) return null
        throw error
      })
    }
    let found: Stripe.ApiSearchResult<Stripe.PaymentIntent>
    try {
      found = await this.#stripe.paymentIntents.search({
        query: `metadata['payment_id']:'${lookup.payment_id}'`,
        limit: 1,
      })
    } catch (error) {
      if (isUnavailable(error)) throw unavailable(error)
      if (error instanceof errors.StripeError && SEARCH_REFUSED.test(error.message))
        return this.#listedFor(lookup, error.message)
      throw error
    }
    const hit = found.data[0]
    if (!hit) {
      if (Date.now() - lookup.given_up_at.getTime() < SEARCH_LAG_MS)
        throw new PaymentProviderUnavailable(`Stripe: no intent of payment ${lookup.payment_id} found yet`)
      return null
    }
    // Search shows the intent as it was indexed, up to its lag ago: whether it was captured since (in
    // the dashboard), which decides between a void and a refund, is read from the intent itself.
    return this.#capturedOf(hit.id)
  }

  /**
   * For an account Stripe offers no search: the intents created between the payment's creation
   * and its give-up (with a margin for the two clocks), listed page by page (a list does not lag,
   * so "none" is believed at once) and matched by their `payment_id` metadata. A window too busy to
   * page through (LIST_PAGES_MAX) is refused for good, for staff to look up in the dashboard.
   */
  async #listedFor(lookup: ChargeLookup, searchRefusal: string): Promise<FoundCharge | null> {
    const created = {
      gte: Math.floor(lookup.created_at.getTime() / 1000) - CLOCK_MARGIN_S,
      lte: Math.ceil(lookup.given_up_at.getTime() / 1000) + CLOCK_MARGIN_S,
    }
    let startingAfter: string | undefined
    for (let page = 0; page < LIST_PAGES_MAX; page++) {
      const listed = await asked(
        this.#stripe.paymentIntents.list({
          created,
          limit: 100,
          expand: ['data.latest_charge'],
          ...(startingAfter ? { starting_after: startingAfter } : {}),
        }),
      )
      const intent = listed.data.find((i) => i.metadata.payment_id === lookup.payment_id)
      if (intent) return chargeOf(intent)
      if (!listed.has_more || listed.data.length === 0) return null
      startingAfter = listed.data[listed.data.length - 1]!.id
    }
    throw new PaymentGiveBackRefused(
      `Stripe offers this account no search (${searchRefusal}), and over ${LIST_PAGES_MAX * 100} intents ` +
        `were created while payment ${lookup.payment_id} was open: look its intent up in the Stripe ` +
        'dashboard by its payment_id metadata, and cancel it there (or refund it if it was captured)',
    )
  }

  /** What Stripe has captured of an intent as it stands now, not as a search indexed it. */
  async #capturedOf(intentId: string): Promise<FoundCharge> {
    return chargeOf(
      await asked(this.#stripe.paymentIntents.retrieve(intentId, { expand: ['latest_charge'] })),
    )
  }

  parseWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): WebhookUpdate {
    const signature = headers['stripe-signature']
    if (!this.#webhookSecret) throw new PaymentWebhookInvalid('No Stripe webhook secret is configured')
    if (typeof signature !== 'string') throw new PaymentWebhookInvalid('Missing Stripe-Signature header')
    let event: Stripe.Event
    try {
      event = this.#stripe.webhooks.constructEvent(
        rawBody,
        signature,
        this.#webhookSecret,
        WEBHOOK_TOLERANCE_SECONDS,
      )
    } catch (error) {
      throw new PaymentWebhookInvalid(error instanceof Error ? error.message : 'Invalid webhook', {
        cause: error,
      })
    }
    assertEventShape(event)
    return webhookUpdateOf(event)
  }
}

/** What a Stripe event says about a payment; events we do not act on only carry their id and type. */
export function webhookUpdateOf(event: Stripe.Event): WebhookUpdate {
  const base = { event_id: event.id, type: event.type }
  switch (event.type) {
    case 'payment_intent.succeeded': {
      const intent = event.data.object
      return { ...base, provider_ref: intent.id, status: 'captured', amount: intent.amount_received }
    }
    case 'payment_intent.amount_capturable_updated': {
      const intent = event.data.object
      return { ...base, provider_ref: intent.id, status: 'authorized', amount: intent.amount_capturable }
    }
    case 'payment_intent.payment_failed': {
      const intent = event.data.object
      const error = intent.last_payment_error
      return {
        ...base,
        provider_ref: intent.id,
        status: 'failed',
        failure_code: error?.decline_code ?? error?.code ?? 'card_declined',
        failure_message: error?.message ?? 'The payment failed',
      }
    }
    case 'payment_intent.canceled':
      return { ...base, provider_ref: event.data.object.id, status: 'canceled' }
    // charge.refunded reports a running total, which events out of order make unreliable; refunds
    // are followed one by one through the refund.* events instead (docs/checkout.md).
    case 'refund.created':
    case 'refund.updated':
    case 'refund.failed':
    case 'charge.refund.updated': {
      const refund = event.data.object
      const ours = refund.metadata?.idempotency_key
      return {
        ...base,
        provider_ref: idOf(refund.payment_intent),
        refund: {
          provider_ref: refund.id,
          status: (refund.status ?? 'pending') as RefundReport['status'],
          amount: refund.amount,
          failure_reason: refund.failure_reason ?? null,
          ...(ours ? { ours } : {}),
        },
      }
    }
    default:
      return { ...base, provider_ref: null }
  }
}
