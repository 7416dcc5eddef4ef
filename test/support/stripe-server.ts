/**
 * A local stand-in for Stripe's API, speaking its wire format for the calls the Stripe provider
 * makes: form-encoded bodies (`metadata[payment_id]=…`, `expand[0]=…`), JSON objects shaped like
 * Stripe's, Stripe's error bodies (a card decline is HTTP 402 with `error.type = card_error`), and
 * Idempotency-Key replay (the same key returns the stored response with `Idempotent-Replayed:
 * true`; another request under the same key is refused). It honours Stripe's test payment methods
 * and can be told to fail the next requests (HTTP 500, or a dropped connection before or after the
 * request was processed) so that retries and "one charge per key" can be tested.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

type Json = Record<string, unknown>
type Params = Record<string, unknown>

export interface StripeIntent extends Json {
  id: string
  object: 'payment_intent'
  amount: number
  amount_capturable: number
  amount_received: number
  currency: string
  status: string
  capture_method: string
  client_secret: string
  latest_charge: string | null
  last_payment_error: Json | null
  next_action: Json | null
  payment_method: string | null
  metadata: Record<string, string>
  created: number
  livemode: false
}

/**
 * How the next requests fail: `500` answers an API error, `drop` closes the connection before the
 * request is processed, `drop_after` processes it (recording the idempotent response) and then
 * closes the connection, as when the answer is lost on the way back.
 */
/** How the next requests fail; `pass` answers one normally, to fail the request after it. */
export type Failure = 500 | 401 | 'drop' | 'drop_after' | 'pass'

export interface StripeStats {
  requests: number
  /** Payment intents created: one per charge, whatever the retries. */
  intentsCreated: number
  captures: number
  refunds: number
  cancels: number
  replays: number
}

export interface StripeServer {
  url: string
  stats: StripeStats
  /** The stored intent, as Stripe would return it (for building webhook events). */
  intent(id: string): StripeIntent | undefined
  intents(): StripeIntent[]
  /** The shopper's 3-D Secure answer for an intent in requires_action. */
  completeAction(id: string, passed: boolean): void
  failNext(count: number, how: Failure): void
  /** The smallest amount a PaymentIntent may take, as Stripe's per-currency minimum (50 cents). */
  minimumAmount: number
  /**
   * Refuses every search as Stripe does on an account it offers no search (India, among others):
   * HTTP 400 `invalid_request_error` with this message, as reported in
   * github.com/SAP-archive/btp-create-api-integrations/issues/7 (no error code is documented).
   */
  searchUnavailable: boolean
  /** The most intents one page of a list holds, whatever the request's `limit` (Stripe's: 100). */
  listPageSize: number
  close(): Promise<void>
}

const CARDS: Record<string, { brand: string; last4: string }> = {
  pm_card_visa: { brand: 'visa', last4: '4242' },
  pm_card_mastercard: { brand: 'mastercard', last4: '4444' },
  pm_card_chargeDeclined: { brand: 'visa', last4: '0002' },
  pm_card_chargeDeclinedInsufficientFunds: { brand: 'visa', last4: '9995' },
  pm_card_threeDSecureRequired: { brand: 'visa', last4: '3220' },
  pm_card_threeDSecure2Required: { brand: 'visa', last4: '3220' },
  pm_card_authenticationRequired: { brand: 'visa', last4: '3184' },
}
const DECLINES: Record<string, { decline_code: string; message: string }> = {
  pm_card_chargeDeclined: { decline_code: 'generic_decline', message: 'Your card was declined.' },
  pm_card_chargeDeclinedInsufficientFunds: {
    decline_code: 'insufficient_funds',
    message: 'Your card has insufficient funds.',
  },
}
const THREE_D_SECURE = new Set([
  'pm_card_threeDSecureRequired',
  'pm_card_threeDSecure2Required',
  'pm_card_authenticationRequired',
])

class StripeApiError extends Error {
  readonly status: number
  readonly body: Json

  constructor(status: number, body: Json) {
    super(String(body.message))
    this.status = status
    this.body = body
  }
}

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`

function invalidRequest(message: string, extra: Json = {}, status = 400) {
  return new StripeApiError(status, { type: 'invalid_request_error', message, ...extra })
}

/** `a[b][0]=c` → `{ a: { b: ['c'] } }`, the way Stripe reads its form bodies. */
export function parseStripeForm(text: string): Params {
  const root: Params = {}
  for (const [name, value] of new URLSearchParams(text)) {
    const path = name.split(/\[|\]\[|\]$/).filter((part, i) => i === 0 || part !== '')
    let node = root
    for (const [i, part] of path.entries()) {
      if (i === path.length - 1) {
        node[part] = value
      } else {
        node[part] ??= {}
        node = node[part] as Params
      }
    }
  }
  return root
}

function list(value: unknown): string[] {
  if (!value || typeof value !== 'object') return []
  return Object.values(value as Record<string, string>)
}

function paymentMethodObject(pm: string) {
  const card = CARDS[pm] ?? { brand: 'visa', last4: '0000' }
  return {
    id: pm,
    object: 'payment_method',
    type: 'card',
    card: { ...card, fingerprint: `fp_${pm.slice(-10)}`, exp_month: 12, exp_year: 2034, country: 'US' },
  }
}

/** Starts the stand-in on a free local port. */
/** A Stripe event as its webhooks deliver it, with a fresh id, about `object`. */
export function stripeEvent(type: string, object: unknown) {
  return {
    id: `evt_${randomBytes(12).toString('hex')}`,
    object: 'event',
    api_version: '2026-10-28.endive',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: { object },
  }
}

export async function startStripeServer(): Promise<StripeServer> {
  const intents = new Map<string, StripeIntent>()
  const refunds = new Map<string, Json & { amount: number }>()
  const replies = new Map<string, { request: string; status: number; body: Json }>()
  const failures: Failure[] = []
  let minimumAmount = 50
  let searchUnavailable = false
  let listPageSize = 100
  const stats: StripeStats = {
    requests: 0,
    intentsCreated: 0,
    captures: 0,
    refunds: 0,
    cancels: 0,
    replays: 0,
  }

  /** The intent as Stripe answers it, with the objects asked for (`data.…` in a list) expanded. */
  const view = (intent: StripeIntent, expand: string[]) => {
    const asked = (field: string) => expand.includes(field) || expand.includes(`data.${field}`)
    return {
      ...intent,
      ...(asked('payment_method') && intent.payment_method
        ? { payment_method: paymentMethodObject(intent.payment_method) }
        : {}),
      ...(asked('latest_charge') && intent.latest_charge ? { latest_charge: chargeOf(intent) } : {}),
    }
  }

  /** The charge an intent's latest_charge names: what it captured, and what was refunded of it. */
  const chargeOf = (intent: StripeIntent) => ({
    id: intent.latest_charge,
    object: 'charge',
    amount: intent.amount,
    amount_captured: intent.amount_received,
    amount_refunded: [...refunds.values()]
      .filter((r) => r.payment_intent === intent.id)
      .reduce((sum, r) => sum + r.amount, 0),
    captured: intent.amount_received > 0,
    payment_intent: intent.id,
  })

  function found(intentId: string): StripeIntent {
    const intent = intents.get(intentId)
    if (!intent) {
      throw invalidRequest(
        `No such payment_intent: '${intentId}'`,
        { code: 'resource_missing', param: 'intent' },
        404,
      )
    }
    return intent
  }

  /** Runs a confirmation: the test card decides where the intent goes. */
  function confirm(intent: StripeIntent, expand: string[]): StripeIntent {
    const pm = intent.payment_method
    if (!pm) throw invalidRequest('You must provide a payment method', { code: 'parameter_missing' })
    const decline = DECLINES[pm]
    if (decline) {
      const chargeId = id('ch')
      intent.status = 'requires_payment_method'
      intent.latest_charge = chargeId
      intent.last_payment_error = {
        type: 'card_error',
        code: 'card_declined',
        ...decline,
        charge: chargeId,
        payment_method: paymentMethodObject(pm),
      }
      throw new StripeApiError(402, {
        type: 'card_error',
        code: 'card_declined',
        ...decline,
        charge: chargeId,
        payment_intent: view(intent, expand),
        payment_method: paymentMethodObject(pm),
      })
    }
    if (THREE_D_SECURE.has(pm)) {
      intent.status = 'requires_action'
      intent.next_action = {
        type: 'use_stripe_sdk',
        use_stripe_sdk: { type: 'three_d_secure_redirect', stripe_js: 'https://hooks.stripe.com/3d_secure' },
      }
      return intent
    }
    settle(intent)
    return intent
  }

  /** The card is authorised: held for a manual capture, or charged at once. */
  function settle(intent: StripeIntent) {
    intent.next_action = null
    intent.last_payment_error = null
    intent.latest_charge = id('ch')
    if (intent.capture_method === 'manual') {
      intent.status = 'requires_capture'
      intent.amount_capturable = intent.amount
    } else {
      intent.status = 'succeeded'
      intent.amount_received = intent.amount
    }
  }

  function route(method: string, path: string, params: Params): Json {
    const expand = list(params.expand)
    if (method === 'POST' && path === '/v1/payment_intents') {
      const amount = Number(params.amount)
      if (!Number.isInteger(amount) || amount < 1) {
        throw invalidRequest('Invalid positive integer', {
          code: 'parameter_invalid_integer',
          param: 'amount',
        })
      }
      if (amount < minimumAmount) {
        throw invalidRequest('Amount must be at least €0.50 eur', {
          code: 'amount_too_small',
          param: 'amount',
        })
      }
      const pm = typeof params.payment_method === 'string' ? params.payment_method : null
      if (pm && !CARDS[pm]) {
        throw invalidRequest(`No such PaymentMethod: '${pm}'`, {
          code: 'resource_missing',
          param: 'payment_method',
        })
      }
      const intentId = id('pi')
      const intent: StripeIntent = {
        id: intentId,
        object: 'payment_intent',
        amount,
        amount_capturable: 0,
        amount_received: 0,
        currency: String(params.currency),
        status: pm ? 'requires_confirmation' : 'requires_payment_method',
        capture_method: params.capture_method === 'manual' ? 'manual' : 'automatic',
        client_secret: `${intentId}_secret_${randomBytes(8).toString('hex')}`,
        latest_charge: null,
        last_payment_error: null,
        next_action: null,
        payment_method: pm,
        metadata: (params.metadata as Record<string, string>) ?? {},
        created: Math.floor(Date.now() / 1000),
        livemode: false,
      }
      intents.set(intentId, intent)
      stats.intentsCreated++
      if (params.confirm === 'true') confirm(intent, expand)
      return view(intent, expand)
    }
    if (method === 'GET' && path === '/v1/payment_intents/search') {
      if (searchUnavailable)
        throw invalidRequest('The search feature is temporarily unavailable in your region.')
      // Only the query Shopwright sends: one metadata field equal to a value.
      const query = /^metadata\['(\w+)'\]:'([^']*)'$/.exec(String(params.query))
      if (!query)
        throw invalidRequest(`Unsupported search query: ${String(params.query)}`, { param: 'query' })
      const data = [...intents.values()].filter((i) => i.metadata[query[1]!] === query[2])
      return {
        object: 'search_result',
        data: data.map((i) => view(i, expand)),
        has_more: false,
        next_page: null,
      }
    }
    if (method === 'GET' && path === '/v1/payment_intents') {
      // Newest first, as Stripe lists, within the `created` bounds given (unix seconds).
      const bounds = (params.created ?? {}) as { gte?: string; lte?: string }
      const newestFirst = [...intents.values()]
        .reverse()
        .filter((i) => bounds.gte === undefined || i.created >= Number(bounds.gte))
        .filter((i) => bounds.lte === undefined || i.created <= Number(bounds.lte))
      const after = typeof params.starting_after === 'string' ? params.starting_after : undefined
      const from = after ? newestFirst.findIndex((i) => i.id === after) + 1 : 0
      const size = Math.min(Number(params.limit ?? 10), listPageSize)
      const page = newestFirst.slice(from, from + size)
      return {
        object: 'list',
        url: '/v1/payment_intents',
        data: page.map((i) => view(i, expand)),
        has_more: from + size < newestFirst.length,
      }
    }
    const one = path.match(/^\/v1\/payment_intents\/([^/]+)$/)
    if (one && method === 'GET') {
      return view(found(one[1]!), expand)
    }
    const match = path.match(/^\/v1\/payment_intents\/([^/]+)\/(confirm|capture|cancel)$/)
    if (match && method === 'POST') {
      const intent = found(match[1]!)
      const action = match[2]
      const unexpected = () =>
        invalidRequest(
          `You cannot ${action} this PaymentIntent because it has a status of ${intent.status}.`,
          {
            code: 'payment_intent_unexpected_state',
            payment_intent: view(intent, []),
          },
        )
      if (action === 'confirm') {
        if (!['requires_confirmation', 'requires_payment_method'].includes(intent.status)) throw unexpected()
        if (typeof params.payment_method === 'string') intent.payment_method = params.payment_method
        return view(confirm(intent, expand), expand)
      }
      if (action === 'capture') {
        if (intent.status !== 'requires_capture') throw unexpected()
        const amount =
          params.amount_to_capture === undefined ? intent.amount : Number(params.amount_to_capture)
        if (amount > intent.amount)
          throw invalidRequest('Amount to capture too large', { code: 'amount_too_large' })
        intent.status = 'succeeded'
        intent.amount_capturable = 0
        intent.amount_received = amount
        stats.captures++
        return view(intent, expand)
      }
      // Stripe voids a processing intent only in rare cases: refused here.
      if (['succeeded', 'canceled', 'processing'].includes(intent.status)) throw unexpected()
      intent.status = 'canceled'
      intent.amount_capturable = 0
      intent.next_action = null
      stats.cancels++
      return view(intent, expand)
    }
    if (method === 'POST' && path === '/v1/refunds') {
      const intent = found(String(params.payment_intent))
      if (intent.status !== 'succeeded') {
        throw invalidRequest(
          `This PaymentIntent (${intent.id}) does not have a successful charge to refund.`,
          {
            code: 'charge_not_refundable',
          },
        )
      }
      const refunded = [...refunds.values()]
        .filter((r) => r.payment_intent === intent.id)
        .reduce((sum, r) => sum + r.amount, 0)
      const amount = params.amount === undefined ? intent.amount_received - refunded : Number(params.amount)
      if (refunded + amount > intent.amount_received) {
        throw invalidRequest(
          `Refund amount (${amount}) is greater than unrefunded amount on charge (${intent.amount_received - refunded})`,
          { code: 'amount_too_large', param: 'amount' },
        )
      }
      const refund = {
        id: id('re'),
        object: 'refund',
        amount,
        currency: intent.currency,
        charge: intent.latest_charge,
        payment_intent: intent.id,
        status: 'succeeded',
        metadata: params.metadata ?? {},
        created: Math.floor(Date.now() / 1000),
      }
      refunds.set(refund.id, refund)
      stats.refunds++
      return refund
    }
    throw invalidRequest(`Unrecognized request URL (${method}: ${path}).`, {}, 404)
  }

  function send(res: ServerResponse, status: number, body: Json, replayed = false) {
    res.writeHead(status, {
      'content-type': 'application/json',
      'request-id': id('req'),
      'stripe-version': '2026-10-28.endive',
      ...(replayed ? { 'idempotent-replayed': 'true' } : {}),
    })
    res.end(JSON.stringify(body))
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    stats.requests++
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const failure = failures.shift()
    if (failure === 'drop') {
      req.socket.destroy()
      return
    }
    if (failure === 500) {
      send(res, 500, { error: { type: 'api_error', message: 'An unknown error occurred' } })
      return
    }
    if (failure === 401 || !/^Bearer sk_test_\w+/.test(req.headers.authorization ?? '')) {
      send(res, 401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } })
      return
    }
    const url = new URL(req.url ?? '/', 'http://stripe.local')
    const text = req.method === 'GET' ? url.search.slice(1) : Buffer.concat(chunks).toString('utf8')
    const method = req.method ?? 'GET'
    const key = method === 'POST' ? req.headers['idempotency-key'] : undefined
    const signature = `${method} ${url.pathname} ${text}`
    if (typeof key === 'string') {
      const stored = replies.get(key)
      if (stored) {
        if (stored.request !== signature) {
          send(res, 400, {
            error: {
              type: 'idempotency_error',
              message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
            },
          })
          return
        }
        stats.replays++
        send(res, stored.status, stored.body, true)
        return
      }
    }
    let status = 200
    let body: Json
    try {
      body = route(method, url.pathname, parseStripeForm(text))
    } catch (error) {
      if (!(error instanceof StripeApiError)) throw error
      status = error.status
      body = { error: error.body }
    }
    if (typeof key === 'string') replies.set(key, { request: signature, status, body })
    if (failure === 'drop_after') {
      req.socket.destroy()
      return
    }
    send(res, status, body)
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      send(res, 500, { error: { type: 'api_error', message: String(error) } })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    get minimumAmount() {
      return minimumAmount
    },
    set minimumAmount(value: number) {
      minimumAmount = value
    },
    get searchUnavailable() {
      return searchUnavailable
    },
    get listPageSize() {
      return listPageSize
    },
    set listPageSize(value: number) {
      listPageSize = value
    },
    set searchUnavailable(value: boolean) {
      searchUnavailable = value
    },
    intent: (intentId) => intents.get(intentId),
    intents: () => [...intents.values()],
    completeAction(intentId, passed) {
      const intent = found(intentId)
      if (intent.status !== 'requires_action') throw new Error(`${intentId} is ${intent.status}`)
      if (passed) {
        settle(intent)
      } else {
        intent.status = 'requires_payment_method'
        intent.next_action = null
        intent.last_payment_error = {
          type: 'invalid_request_error',
          code: 'payment_intent_authentication_failure',
          message: 'The provided PaymentMethod has failed authentication.',
        }
      }
    },
    failNext(count, how) {
      for (let i = 0; i < count; i++) failures.push(how)
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((error) => (error ? reject(error) : resolve()))
      }),
  }
}
