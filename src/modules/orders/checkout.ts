/**
 * Checkout: turns a cart into exactly one order and at most one charge, whatever retries, crashes
 * and concurrent requests do. It runs in phases, each ending in a committed state that a retry
 * (with the same Idempotency-Key or another) or the recovery job can pick up:
 *
 *   1. start    (one transaction) validate and price the cart, reserve its stock, record a pending
 *               payment, mark the cart `completing` under a short lease.
 *   2. authorise (no transaction) ask the provider, with an idempotency key derived from the
 *               payment id, so asking twice authorises once.
 *   3. place    (one transaction) record the answer; on success place the order (gapless number,
 *               cart_id unique), hold the reservation for it, commit the tax sale, close the cart;
 *               on a decline release the stock and reopen the cart.
 *   4. capture  (when the store captures automatically) capture, then mark the order paid.
 *
 * A crash after 1 leaves a completing cart whose lease runs out: the next attempt resumes at 2. A
 * crash after 2 is the same: the provider replays its answer for the same key. A crash after 3
 * leaves a completed cart: any retry answers with its order. A crash in 4 leaves an authorised
 * order that the recovery job captures. Never a charge without an order, nor an order without
 * its reservation.
 */
import { sql } from 'kysely'
import { type Queryable, type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { failpoint, pausepoint } from '../../platform/failpoints.ts'
import { type FieldError, ProblemError, problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import {
  type CartAccess,
  type CartView,
  cartView,
  changeCart,
  checkAccess,
  currentLines,
  lockCustomerLimits,
} from '../carts/carts.ts'
import { type CartRow, type LoadedCart, loadCart } from '../carts/load.ts'
import type { CartLine } from '../carts/tables.ts'
import { type CartTotals, computeTotals, needsShipping, taxAddress } from '../carts/totals.ts'
import { inventoryContext } from '../inventory/context.ts'
import { holdReservation, releaseReservation, reserve, reserveNow } from '../inventory/reservations.ts'
import { queueVoid, voidLater } from '../payments/jobs.ts'
import type { AuthorizeResult } from '../payments/provider.ts'
import { PaymentProviderUnavailable } from '../payments/provider.ts'
import { providerOf } from '../payments/registry.ts'
import {
  cancelPayment,
  cancelUnanswered,
  capturePayment,
  createPayment,
  findPayment,
  type PaymentView,
  recordAuthorization,
  recordUnplacedCapture,
  refundUnplaced,
  voidAtProcessor,
} from '../payments/service.ts'
import { ManualOrderLimit, PaymentVelocity, VELOCITY_DECLINE } from '../payments/velocity.ts'
import type { TaxInput, TaxResult } from '../tax/engine.ts'
import type { TaxProvider } from '../tax/providers.ts'
import { refundCaptureOfCanceled } from './cancel.ts'
import type { CommerceDeps } from './deps.ts'
import { findOrder, findOrderOfCart, type OrderView, placeOrder } from './orders.ts'
import { recordOrderCaptured } from './state.ts'

/** How long an unpaid checkout holds its stock before the inventory job releases it. */
const HOLD_MINUTES = 30

export interface CheckoutRequest {
  cartId: string
  access: CartAccess
  payment: { provider: string; payment_method?: string | undefined }
  ip: string
  /** `<kind>:<id>` of whoever asked. */
  actor: string
}

export type CheckoutResult =
  | { type: 'order'; created: boolean; order: OrderView }
  | { type: 'payment_action_required'; cart: CartView; payment: PaymentView }

interface Started {
  cart: CartRow
  payment: PaymentView
  /** The processor token the payment was started with. */
  paymentMethod: string | null
  /** The lease this caller set on the cart (LEASE_MICROS): all it may give back. */
  lease: string
}

/**
 * A cart's lease as the microseconds since the epoch, exact (numeric since PostgreSQL 14), for
 * `releaseLease` to compare in SQL. Not the Date the driver returns: the column keeps microseconds
 * and a Date milliseconds, so a Date sent back would miss the lease it came from, and compared in
 * milliseconds it would match another lease set within the same millisecond. Nor the column's
 * text, which the session's DateStyle and TimeZone shape (`IST` reads back as Israel's).
 */
export const LEASE_MICROS = sql<string>`(extract(epoch from checkout_lease_until) * 1000000)::int8::text`

const leaseColumn = LEASE_MICROS.as('lease')

/**
 * Gives a checkout's lease back so that the next request resumes it at once, only while the lease
 * is still the caller's: one that ran out meanwhile may be a take-over's, busy with the same
 * checkout, and clearing it would let a third request take over beside that one.
 */
export async function releaseLease(db: Queryable, cartId: string, lease: string): Promise<void> {
  await db
    .updateTable('carts')
    .set({ checkout_lease_until: null })
    .where('id', '=', cartId)
    .where(LEASE_MICROS, '=', lease)
    .execute()
}

/** Completes a cart: the order (placed now or before), or the payment step the shopper must take. */
export async function completeCart(deps: CommerceDeps, request: CheckoutRequest): Promise<CheckoutResult> {
  const velocity = new PaymentVelocity(deps.kv, deps.runtime.config.paymentFailureLimit)
  const begun = await start(deps, request, velocity)
  if ('order' in begun) return { type: 'order', created: false, order: begun.order }
  failpoint('checkout.after_start')
  return finish(deps, begun, request.actor, { velocity, ip: request.ip })
}

/** Phase 1, or the take-over of a checkout whose lease ran out. */
async function start(
  deps: CommerceDeps,
  request: CheckoutRequest,
  velocity: PaymentVelocity,
): Promise<Started | { order: OrderView }> {
  const lease = deps.runtime.config.checkoutLeaseSeconds
  const loaded = await loadCart(deps.db, request.cartId)
  const cart = checkAccess(loaded?.cart, request.cartId, request.access)
  if (cart.status === 'completed') return { order: (await findOrderOfCart(deps.db, cart.id))! }
  if (cart.status === 'completing') {
    return withTransaction(deps.db, async (trx) => ({ ...(await takeOver(trx, cart.id, lease)) }))
  }
  if (cart.status !== 'active') throw problem('cart_not_active', `The cart is ${cart.status}`)

  const provider = providerOf(deps.providers, request.payment.provider)
  provider.checkMethod?.(request.payment.payment_method ?? null)
  // A shopper locked out of card payments may still pay by bank transfer or cash on delivery:
  // those never decline, so they test no card. They are held to a limit of their own, below.
  const account = cart.customer_id ?? cart.email
  if (provider.takesCards) await velocity.check({ ip: request.ip, cart_id: cart.id, account })
  // Prices, limits and tax as they are now: what the shopper saw may be stale, and is checked below.
  const { lines, notices } = currentLines(loaded!)
  if (notices.length) {
    await saveRepriced(deps, request)
    throw problem('cart_invalid', notices.join('; '), {
      errors: notices.map((message) => ({ path: 'cart.lines', message })),
    })
  }
  // On the lines as the catalog has them now: a variant may have come to need shipping since.
  let totals: CartTotals
  try {
    checkReady({ ...cart, lines }, loaded!.regionCountries, loaded!.shippingOption !== null)
    totals = await computeTotals(loaded!, lines, deps)
  } catch (error) {
    // The chosen option can no longer ship the cart (deleted, moved, switched off, outgrown): the
    // cart is saved without it, as its next change would, so the shopper is asked for another.
    const onOption =
      error instanceof ProblemError && error.errors?.some((e) => e.path === 'cart.shipping_option_id')
    if (onOption) await saveRepriced(deps, request)
    throw error
  }
  if (totals.tax_pending) throw invalid('shipping_address', 'is needed to compute tax')
  if (totals.total <= 0) throw invalid('lines', 'the cart has nothing to pay')
  const changes = changesSinceShown(loaded!, lines, totals)
  if (changes.length) await refuseChanged(deps, request, changes)

  // An order paid manually holds its stock unpaid for days (until MANUAL_PAYMENT_TTL_HOURS): each
  // such checkout is counted before it holds anything, and gives its count back if it holds nothing.
  const giveBack = provider.takesCards
    ? undefined
    : await new ManualOrderLimit(deps.kv, deps.runtime.config.manualPaymentOrderLimit).claim({
        ip: request.ip,
        account,
      })
  // Stock is held before the cart is locked, in statements of its own (one, for a single line), so
  // that a sold-out SKU's row is locked for a statement, not for a whole checkout step. The hold
  // expires: if this request dies before the cart records it, the stock comes back on its own.
  const ctx = inventoryContext(deps, request.actor)
  const reservation = await reserveNow(
    deps.db,
    {
      lines: lines.map((l) => ({ variant_id: l.variant_id, quantity: l.quantity })),
      reference: cart.id,
      expires_at: new Date(Date.now() + HOLD_MINUTES * 60_000),
      country: cart.shipping_address?.country_code ?? null,
    },
    ctx,
  ).catch(async (error: unknown) => {
    await giveBack?.().catch(() => {})
    throw error
  })
  try {
    const started = await withTransaction(deps.db, async (trx): Promise<Started> => {
      // One checkout of a customer's limited items at a time, each counting the others'.
      await lockCustomerLimits(trx, loaded!, lines)
      const payment = await createPayment(trx, {
        cart_id: cart.id,
        provider: provider.id,
        amount: totals.total,
        currency: cart.currency_code,
        payment_method: request.payment.payment_method ?? null,
      })
      // Only the cart as it was priced moves on: a change since, or another checkout, means
      // pricing again, and the payment row above goes with this transaction.
      const updated = await trx
        .updateTable('carts')
        .set({
          status: 'completing',
          lines: JSON.stringify(lines),
          totals: JSON.stringify(totals),
          payment_id: payment.id,
          reservation_id: reservation.id,
          checkout: JSON.stringify({ provider: provider.id, started_by: request.actor }),
          checkout_lease_until: sql<Date>`now() + make_interval(secs => ${lease})`,
          version: sql<number>`version + 1`,
          updated_at: sql<Date>`now()`,
        })
        .where('id', '=', cart.id)
        .where('status', '=', 'active')
        .where('version', '=', cart.version)
        .returningAll()
        .returning(leaseColumn)
        .executeTakeFirst()
      if (!updated) {
        throw problem('checkout_in_progress', 'The cart changed or another checkout began; retry', {
          headers: { 'retry-after': '1' },
        })
      }
      const { lease: held, ...row } = updated
      return {
        cart: row as unknown as CartRow,
        payment,
        paymentMethod: request.payment.payment_method ?? null,
        lease: held,
      }
    })
    return started
  } catch (error) {
    await withTransaction(deps.db, (trx) => releaseReservation(trx, reservation.id, ctx)).catch(() => {})
    await giveBack?.().catch(() => {})
    throw error
  } finally {
    await ctx.publish()
  }
}

/** A checkout already under way: taken over when its holder's lease ran out, else 409. */
async function takeOver(trx: Tx, cartId: string, leaseSeconds: number): Promise<Started> {
  const taken = await trx
    .updateTable('carts')
    .set({ checkout_lease_until: sql<Date>`now() + make_interval(secs => ${leaseSeconds})` })
    .where('id', '=', cartId)
    .where('status', '=', 'completing')
    .where((eb) =>
      eb.or([eb('checkout_lease_until', 'is', null), eb('checkout_lease_until', '<=', sql<Date>`now()`)]),
    )
    .returningAll()
    .returning(leaseColumn)
    .executeTakeFirst()
  if (!taken) {
    throw problem('checkout_in_progress', 'Another request is completing this cart; retry shortly', {
      headers: { 'retry-after': '1' },
    })
  }
  const { lease, ...row } = taken
  const cart = row as unknown as CartRow
  const payment = (await findPayment(trx, cart.payment_id!))!
  return { cart, payment, paymentMethod: await paymentMethodOf(trx, payment.id), lease }
}

/**
 * How the cart priced now differs from the cart the shopper was shown (its last change): the
 * shopper must never be charged an amount they were not shown. Each line's price is compared, to
 * name what changed; then the total, which is made of more than line prices (each line's weight and
 * tax category, the shipping option's price, the tax rates and registrations of the day): the cart
 * read carries the total stored with the cart at its last change, so this costs no statement.
 */
function changesSinceShown(loaded: LoadedCart, lines: readonly CartLine[], totals: CartTotals): FieldError[] {
  const shown = new Map(loaded.cart.lines.map((line) => [line.id, line]))
  const changes: FieldError[] = []
  for (const line of lines) {
    const before = shown.get(line.id)!
    if (before.unit_amount !== line.unit_amount) {
      changes.push({
        path: `cart.lines.${line.id}.unit_amount`,
        message: `was ${before.unit_amount}, is now ${line.unit_amount}`,
      })
    }
  }
  if (changes.length || loaded.shownTotal === totals.total) return changes
  return [
    {
      path: 'cart.totals.total',
      message:
        loaded.shownTotal === null
          ? `was never shown, is ${totals.total}`
          : `was ${loaded.shownTotal}, is now ${totals.total}`,
    },
  ]
}

/**
 * Refuses a checkout whose cart no longer costs what the shopper was shown, before anything is
 * held or asked of the processor. The cart is saved as priced now, so that the shopper sees the new
 * amounts and their next checkout (under a new key: this answer is stored under its own, so that
 * a client's blind retry cannot pay an amount nobody showed) charges them. If that save loses to
 * another change of the cart, the next checkout compares again.
 */
async function refuseChanged(
  deps: CommerceDeps,
  request: CheckoutRequest,
  changes: FieldError[],
): Promise<never> {
  await saveRepriced(deps, request)
  throw problem(
    'cart_changed',
    'The cart changed since it was last shown (a price, shipping or tax): show the shopper the cart ' +
      'again, then check out with a new Idempotency-Key',
    { errors: changes },
  )
}

/**
 * Saves the cart as the catalog prices it now, lines it can no longer sell dropped, before a
 * checkout refuses it: the cart the shopper is sent back to shows what changed. The refusal stands
 * even when this save loses to another change of the cart.
 */
async function saveRepriced(deps: CommerceDeps, request: CheckoutRequest): Promise<void> {
  try {
    await changeCart(deps, request.cartId, request.access, [], () => ({}))
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error
    deps.runtime.logger.warn({ err: error, cartId: request.cartId }, 'could not save the repriced cart')
  }
}

function invalid(field: string, message: string): ProblemError {
  return problem('cart_invalid', `The cart's ${field} ${message}`, {
    errors: [{ path: `cart.${field}`, message }],
  })
}

/**
 * What a cart needs before it can be paid for. Goods that are shipped need a shipping address in
 * the region and a shipping option; a cart of goods that are not (downloads, gift codes) needs an
 * address only to tax the sale where the buyer is: the shipping or the billing address.
 */
function checkReady(cart: CartRow, regionCountries: string[], hasShipping: boolean): void {
  if (cart.lines.length === 0) throw invalid('lines', 'is empty')
  if (!cart.email) throw invalid('email', 'is needed for the order confirmation')
  const shipped = needsShipping(cart.lines)
  const field = shipped || cart.shipping_address ? 'shipping_address' : 'billing_address'
  const address = taxAddress(cart)
  if (!address) throw invalid(field, shipped ? 'is missing' : 'is missing: it says where the sale is taxed')
  if (!regionCountries.includes(address.country_code))
    throw invalid(field, `is in ${address.country_code}, which the region does not serve`)
  if (shipped && !hasShipping)
    throw invalid(
      'shipping_option_id',
      // The cart still names an option its read could not load: deleted, or moved to another region.
      cart.shipping_option_id
        ? 'is no longer offered: choose another shipping option'
        : 'is missing: choose how to ship',
    )
}

interface FinishOptions {
  velocity?: PaymentVelocity
  ip?: string
}

/** Phases 2 to 4 for a completing cart whose lease this caller holds. */
export async function finish(
  deps: CommerceDeps,
  { cart, payment, paymentMethod, lease }: Started,
  actor: string,
  options: FinishOptions = {},
): Promise<CheckoutResult> {
  const provider = providerOf(deps.providers, payment.provider)
  let answer: AuthorizeResult
  try {
    answer = await provider.authorize({
      payment_id: payment.id,
      amount: payment.amount,
      currency: payment.currency,
      payment_method: paymentMethod,
      provider_ref: payment.provider_ref,
      email: cart.email,
      capture: false,
    })
  } catch (error) {
    if (!(error instanceof PaymentProviderUnavailable)) throw error
    // The shopper's retry resumes at once rather than waiting the lease out. The processor may
    // have kept this call past the lease, and a retry taken the checkout over meanwhile.
    await releaseLease(deps.db, cart.id, lease)
    processorUnavailable(error)
  }
  failpoint('checkout.after_authorize')
  const blocked = await cardOverLimit(answer, cart, options)
  // What the processor holds for this payment, to give back should it get no order (a refusal over
  // the card's limit replaces the answer it is recorded with, not what the processor holds).
  const held = answer
  if (blocked) answer = blocked.answer

  const ctx = inventoryContext(deps, actor)
  // Only an answer that places an order needs the tax sale.
  const sale =
    answer.status === 'declined' || answer.status === 'requires_action'
      ? undefined
      : await prepareTaxSale(deps, cart)
  let outcome: Placed
  try {
    outcome = await withTransaction(deps.db, async (trx) => {
      const placed = await place(deps, trx, cart.id, payment.id, lease, answer, actor, ctx, sale)
      // Each outcome that leaves the payment without an order queues its give-back with it, due
      // once the give-back below has normally been made: a node dying after the commit is covered.
      const orderless =
        placed.type === 'orphaned' || placed.type === 'voided' || (blocked && placed.type === 'declined')
      if (orderless && holdsMoney(held)) {
        // A capture (made in the processor's dashboard) is recorded with it: the job refunds a
        // captured row, while a void of the charge a canceled row names would be refused.
        if (held.status === 'captured')
          await recordUnplacedCapture(trx, deps.outbox, payment.id, {
            provider_ref: held.provider_ref!,
            captured_amount: held.captured_amount,
          })
        await queueVoid(trx, deps.runtime.jobs, payment.id, held.provider_ref, GIVE_BACK_BACKSTOP_SECONDS)
      }
      return placed
    })
  } catch (error) {
    // The stock went while the payment was pending and cannot be reserved again: give up cleanly.
    if (error instanceof ProblemError && error.code === 'insufficient_stock') {
      const order = await giveUpAuthorized(deps, cart, payment, answer, actor).catch((failure: unknown) => {
        // Still completing (the database failed us), the recovery job resumes it; reopened, the
        // void was refused: either way the shopper learns of the stock now.
        deps.runtime.logger.warn({ err: failure, cartId: cart.id }, 'could not give up the checkout yet')
        return undefined
      })
      if (order) return { type: 'order', created: false, order }
    }
    throw error
  }
  await ctx.publish()
  failpoint('checkout.after_place')

  if (outcome.type === 'declined') {
    if (blocked) {
      // Voided only now that the cart is known to be this checkout's: a take-over may have placed
      // the order on this very payment meanwhile ('existing' below), and that order keeps it.
      await giveBack(deps, payment, held, actor)
      throw blocked.problem
    }
    if (options.velocity && options.ip) {
      await options.velocity.recordFailure({
        ip: options.ip,
        cart_id: cart.id,
        account: cart.customer_id ?? cart.email,
        fingerprint: 'card_fingerprint' in answer ? answer.card_fingerprint : null,
      })
    }
    const decline = answer as Extract<AuthorizeResult, { status: 'declined' }>
    throw problem('payment_required', `${decline.message} (${decline.decline_code}); the cart is open again`)
  }
  if (outcome.type === 'orphaned') {
    // The checkout was given up (or the cart moved on) while the processor answered: this payment
    // gets no order, so what the answer holds goes back. Its row was canceled by whoever gave the
    // checkout up, perhaps before the processor named the charge: given back here by its name.
    await giveBack(deps, payment, held, actor)
    if (outcome.order) return { type: 'order', created: false, order: outcome.order }
    // A card refused over its limit is told so, whoever moved the cart on: its retry is refused too.
    if (blocked) throw blocked.problem
    throw problem('checkout_in_progress', 'The checkout was restarted by another request', {
      headers: { 'retry-after': '1' },
    })
  }
  if (outcome.type === 'voided') {
    // A webhook's cancel voided it at the processor already; our own give-up may have marked it
    // canceled before the processor named the charge, so the charge is given back here by its name.
    await giveBack(deps, payment, held, actor)
    throw problem(
      'payment_required',
      'The payment was canceled before the order was placed; the cart is open again',
    )
  }
  if (outcome.type === 'payment_action_required') return outcome
  if (outcome.type === 'existing') return { type: 'order', created: false, order: outcome.order }
  if (deps.runtime.config.paymentCapture === 'automatic' && outcome.order.payment_status === 'authorized') {
    const order = await capturePlaced(deps, outcome.order, outcome.payment, actor)
    failpoint('checkout.after_capture')
    return { type: 'order', created: true, order }
  }
  return { type: 'order', created: true, order: outcome.order }
}

/**
 * The card's own limit, known only once the processor names the card: a card that failed too
 * often elsewhere this hour is refused even where it would pay now. The attempt becomes a decline,
 * so the cart reopens and its stock goes back; finish voids the authorisation once that decline is
 * recorded.
 */
async function cardOverLimit(
  answer: AuthorizeResult,
  cart: CartRow,
  options: FinishOptions,
): Promise<{ answer: AuthorizeResult; problem: ProblemError } | undefined> {
  const fingerprint = 'card_fingerprint' in answer ? answer.card_fingerprint : null
  // A captured answer is money staff took at the processor (checkout only authorises): refusing it
  // would leave the money without an order, and card testers cannot capture.
  if (!options.velocity || !options.ip || !fingerprint) return undefined
  if (answer.status === 'declined' || answer.status === 'captured') return undefined
  try {
    await options.velocity.check({
      ip: options.ip,
      cart_id: cart.id,
      account: cart.customer_id ?? cart.email,
      fingerprint,
    })
    return undefined
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error
    return {
      problem: error,
      answer: {
        status: 'declined',
        provider_ref: answer.provider_ref,
        decline_code: VELOCITY_DECLINE,
        message: 'This card failed too often this clock hour',
        card_fingerprint: fingerprint,
      },
    }
  }
}

/** True when the processor's answer leaves money held there (an authorisation or a capture). */
function holdsMoney(answer: AuthorizeResult): boolean {
  return (
    Boolean(answer.provider_ref) &&
    (answer.status === 'authorized' || answer.status === 'requires_action' || answer.status === 'captured')
  )
}

/**
 * Gives back what a payment that gets no order holds at the processor, as the processor's answer
 * names it: an authorisation is voided, keyed as cancelPayment keys it; a capture (made outside the
 * app, in the processor's dashboard: checkout only authorises) is recorded and refunded, since no
 * void returns it; an answer that holds no money needs nothing. The checkout's answer does not
 * wait on it: a processor out of reach gets it later from the void job, which retries until it
 * takes it, so the shopper's card does not carry this hold beside the next attempt's until it
 * lapses.
 */
async function giveBack(deps: CommerceDeps, payment: PaymentView, answer: AuthorizeResult, actor: string) {
  try {
    try {
      if (answer.status === 'captured') {
        await withTransaction(deps.db, (trx) => recordUnplacedCapture(trx, deps.outbox, payment.id, answer))
        await refundUnplaced(deps, payment.id, actor)
      } else if (answer.status === 'authorized' || answer.status === 'requires_action') {
        await voidAtProcessor(providerOf(deps.providers, payment.provider), payment.id, answer.provider_ref)
      }
    } catch (error) {
      if (!outOfReach(error) || !answer.provider_ref) throw error
      await voidLater(deps, deps.runtime.jobs, payment.id, answer.provider_ref)
    }
  } catch (failure) {
    deps.runtime.logger.warn({ err: failure, paymentId: payment.id }, 'could not give the payment back')
  }
}

/** The processor did not answer (its outcome is unknown): the same call later may go through. */
function outOfReach(error: unknown): boolean {
  return (
    error instanceof PaymentProviderUnavailable ||
    (error instanceof ProblemError && error.code === 'payment_provider_unavailable')
  )
}

/** A processor that did not answer is 503 (a shopper's retry soon goes through); other errors stand. */
function processorUnavailable(error: unknown): never {
  if (error instanceof PaymentProviderUnavailable) {
    throw problem('payment_provider_unavailable', error.message, { headers: { 'retry-after': '2' } })
  }
  throw error
}

/** The processor token a payment was started with. */
export async function paymentMethodOf(db: Queryable, paymentId: string): Promise<string | null> {
  const row = await db
    .selectFrom('payments')
    .select('payment_method')
    .where('id', '=', paymentId)
    .executeTakeFirst()
  return row?.payment_method ?? null
}

type Placed =
  | { type: 'placed'; order: OrderView; payment: PaymentView }
  | { type: 'existing'; order: OrderView }
  /** The cart is no longer this payment's checkout (given up, or completed with another payment). */
  | { type: 'orphaned'; order?: OrderView }
  | { type: 'declined' }
  /** The payment was canceled before its answer was recorded: no order, the cart is open again. */
  | { type: 'voided' }
  | { type: 'payment_action_required'; cart: CartView; payment: PaymentView }

/** Phase 3: record the provider's answer and place the order, or reopen the cart. */
async function place(
  deps: CommerceDeps,
  trx: Tx,
  cartId: string,
  paymentId: string,
  /** The lease the caller holds on the cart (`Started.lease`). */
  lease: string,
  answer: AuthorizeResult,
  actor: string,
  ctx: ReturnType<typeof inventoryContext>,
  sale: TaxSale | undefined,
): Promise<Placed> {
  const places = answer.status !== 'declined' && answer.status !== 'requires_action'
  const orderId = newId('ord')
  // An answer that places the order closes the cart at once, on the condition a locking read
  // would have checked: the row is then locked for the phase all the same, a round trip sooner.
  const closed = places ? await closeCart(trx, cartId, paymentId, orderId) : undefined
  const cart = closed ?? (await lockCart(trx, cartId))
  if (cart.status === 'completed' && !closed) {
    const order = (await findOrderOfCart(trx, cartId))!
    return cart.payment_id === paymentId ? { type: 'existing', order } : { type: 'orphaned', order }
  }
  if (!closed && (places || cart.status !== 'completing' || cart.payment_id !== paymentId)) {
    return { type: 'orphaned' }
  }
  const payment = await recordAuthorization(trx, paymentId, answer, deps.outbox, places ? { orderId } : {})
  if (answer.status !== 'declined' && payment.status === 'canceled') {
    // Voided while the answer was on its way (payment_intent.canceled, or the recovery job giving
    // up a checkout that looked stalled): an order on it could never be paid, and its
    // payment.canceled event, emitted before the order existed, would cancel nothing. Nor can a
    // 3-D Secure step resume it: the cart would wait on a payment that is gone.
    if (cart.reservation_id) await releaseHold(trx, cart.reservation_id, ctx)
    await reopen(trx, cartId, { order_id: null })
    return { type: 'voided' }
  }
  if (answer.status === 'declined') {
    if (cart.reservation_id) await releaseHold(trx, cart.reservation_id, ctx)
    await reopen(trx, cartId)
    return { type: 'declined' }
  }
  if (answer.status === 'requires_action') {
    // The shopper must act (3-D Secure): their next complete call resumes from here at once. Only
    // this caller's lease: a take-over's (this answer came after the lease ran out) is still at work.
    await releaseLease(trx, cartId, lease)
    return { type: 'payment_action_required', cart: cartView(cart), payment }
  }
  const totals = cart.totals as unknown as CartTotals
  let reservationId = cart.reservation_id
  const order = await placeOrder(
    trx,
    deps.outbox,
    {
      cart,
      totals,
      id: orderId,
      paymentId,
      paymentStatus: payment.status,
      reservationId,
      status: payment.status === 'captured' ? 'paid' : 'pending',
      actor,
    },
    async (orderId) => {
      if (!reservationId || !(await holdReservation(trx, reservationId, orderId))) {
        // The hold lapsed while the payment took its time: reserve again, or fail the whole phase.
        const fresh = await reserve(
          trx,
          {
            lines: cart.lines.map((l) => ({ variant_id: l.variant_id, quantity: l.quantity })),
            reference: orderId,
            country: cart.shipping_address?.country_code ?? null,
          },
          ctx,
        )
        reservationId = fresh.id
        await trx
          .updateTable('orders')
          .set({ reservation_id: reservationId })
          .where('id', '=', orderId)
          .execute()
      }
      await sale!.provider.commit(trx, orderId, sale!.input, sale!.result)
    },
  )
  return { type: 'placed', order: { ...order, reservation_id: reservationId }, payment }
}

/** Marks a completing cart completed with its order; undefined when it is not that checkout's. */
async function closeCart(
  trx: Tx,
  cartId: string,
  paymentId: string,
  orderId: string,
): Promise<CartRow | undefined> {
  const row = await trx
    .updateTable('carts')
    .set({ status: 'completed', order_id: orderId, checkout_lease_until: null, updated_at: sql<Date>`now()` })
    .where('id', '=', cartId)
    .where('status', '=', 'completing')
    .where('payment_id', '=', paymentId)
    .returningAll()
    .executeTakeFirst()
  return row as unknown as CartRow | undefined
}

async function lockCart(trx: Tx, cartId: string): Promise<CartRow> {
  return (await trx
    .selectFrom('carts')
    .selectAll()
    .where('id', '=', cartId)
    .forUpdate()
    .executeTakeFirstOrThrow()) as unknown as CartRow
}

/** Releases a checkout's stock hold; one that already lapsed (the shopper took long) is no error. */
async function releaseHold(trx: Tx, reservationId: string, ctx: ReturnType<typeof inventoryContext>) {
  await releaseReservation(trx, reservationId, ctx).catch((error: unknown) => {
    if (!(error instanceof ProblemError) || error.code !== 'reservation_not_active') throw error
  })
}

/** Opens a completing cart for changes again; `also` clears what the phase set before (its order). */
async function reopen(trx: Tx, cartId: string, also: { order_id?: null } = {}): Promise<void> {
  await trx
    .updateTable('carts')
    .set({
      ...also,
      status: 'active',
      payment_id: null,
      reservation_id: null,
      checkout: null,
      checkout_lease_until: null,
      version: sql<number>`version + 1`,
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', cartId)
    .execute()
}

interface TaxSale {
  provider: TaxProvider
  input: TaxInput
  result: TaxResult
}

/**
 * The sale the order will record with the tax provider (OSS threshold, nexus report, an external
 * service), worked out before the placing transaction so that none of it runs while rows are locked.
 */
async function prepareTaxSale(deps: CommerceDeps, cart: CartRow): Promise<TaxSale> {
  const totals = cart.totals as unknown as CartTotals
  const provider = await deps.taxes.get(totals.date_of_supply)
  const address = taxAddress(cart)!
  const input = {
    currency: cart.currency_code,
    prices_include_tax: cart.prices_include_tax,
    date_of_supply: totals.date_of_supply,
    customer: {
      address: { country: address.country_code, region: address.region, postal_code: address.postal_code },
      ...(cart.vat_id ? { vat_id: cart.vat_id } : {}),
      is_business: cart.is_business,
    },
    lines: cart.lines.map((l) => ({
      id: l.id,
      unit_amount: l.unit_amount,
      quantity: l.quantity,
      tax_category: l.tax_category,
    })),
  }
  const result = await provider.calculate(input)
  // The sale counts what the order charged, not a recomputation.
  result.totals.tax = totals.tax_total
  result.totals.net = totals.total - totals.tax_total
  return { provider, input, result }
}

/**
 * Captures a just-placed order's payment and marks it paid. The order stands whatever happens
 * here: a processor that does not answer leaves it authorised for the recovery job to capture.
 */
async function capturePlaced(
  deps: CommerceDeps,
  order: OrderView,
  payment: PaymentView,
  actor: string,
): Promise<OrderView> {
  let paid = false
  try {
    await capturePayment(deps, order.payment_id!, {
      actor,
      current: payment,
      // Recorded with the capture, in one transaction: never a captured payment on a pending order.
      onCaptured: async (trx, payment) => {
        paid = await recordOrderCaptured(trx, deps.outbox, {
          orderId: order.id,
          actor,
          reason: 'payment captured',
          paymentStatus: payment.status,
          event: { payment_id: payment.id, amount: payment.captured_amount },
        })
      },
    })
  } catch (error) {
    // The order is placed and its answer must say so; the recovery job captures it later.
    deps.runtime.logger.warn({ err: error, orderId: order.id }, 'capture after checkout failed')
    return order
  }
  if (paid) return { ...order, status: 'paid', payment_status: 'captured' }
  // Staff canceled it while the processor captured: the money goes back.
  await refundCaptureOfCanceled(deps, order.id, actor).catch((error: unknown) =>
    deps.runtime.logger.warn({ err: error, orderId: order.id }, 'refund of a canceled order failed'),
  )
  return (await findOrder(deps.db, order.id))!
}

/**
 * Gives up a checkout whose order could not be placed after the processor authorised it (the stock
 * went). Decided under the cart's row lock: a take-over of the same checkout may have placed the
 * order meanwhile (the stock came back), and that order keeps its payment. Otherwise the cart is
 * opened again in the same transaction, so no take-over can place an order on this payment after
 * it, and only then is the payment voided (the hold it releases had lapsed already: that is why
 * the stock went). The placing transaction that would have recorded the charge rolled back, and a
 * first authorisation is named only by the answer: it is recorded first, so that cancelPayment
 * voids it at the processor rather than only here. An answer that says captured (a capture made
 * in the processor's dashboard) is refunded instead. A processor out of reach gets the void or the
 * refund later from the void job; the shopper, told the stock went, has the cart back now.
 *
 * Returns the order a take-over placed on this payment. A cart that moved on otherwise (the
 * recovery job gave the checkout up, perhaps before the processor named the charge, or the
 * shopper paid with another payment) gets nothing from this answer, which is given back.
 */
async function giveUpAuthorized(
  deps: CommerceDeps,
  cart: CartRow,
  payment: PaymentView,
  answer: AuthorizeResult,
  actor: string,
): Promise<OrderView | undefined> {
  await pausepoint('checkout.give_up')
  const ctx = inventoryContext(deps, actor)
  const gaveUp = await withTransaction(deps.db, async (trx) => {
    const current = await lockCart(trx, cart.id)
    if (current.status === 'completed' && current.payment_id === payment.id)
      return { order: await findOrderOfCart(trx, cart.id) }
    if (current.status !== 'completing' || current.payment_id !== payment.id) {
      // Moved on without this payment: the give-back below, with its backstop queued here.
      if (holdsMoney(answer))
        await queueVoid(trx, deps.runtime.jobs, payment.id, answer.provider_ref, GIVE_BACK_BACKSTOP_SECONDS)
      return false
    }
    // The recovery job giving the checkout up cancels the payment before it reopens the cart: one
    // canceled in between, before the processor named the charge, voided nothing there.
    let canceled = false
    if (answer.status === 'authorized')
      canceled = (await recordAuthorization(trx, payment.id, answer)).status === 'canceled'
    else if (answer.status === 'captured') await recordUnplacedCapture(trx, deps.outbox, payment.id, answer)
    if (current.reservation_id) await releaseHold(trx, current.reservation_id, ctx)
    await reopen(trx, cart.id)
    // Once the cart is open again the recovery job no longer sees this payment: the void job,
    // committed with the give-up, is what gives the money back if this node dies before the void
    // below. It runs after that void has normally been made, and repeats it under its key; the
    // charge is named on a canceled row for it.
    await queueVoid(trx, deps.runtime.jobs, payment.id, answer.provider_ref, GIVE_BACK_BACKSTOP_SECONDS)
    return !canceled
  })
  await ctx.publish()
  if (typeof gaveUp === 'object') return gaveUp.order
  if (!gaveUp) {
    // Moved on, or canceled here only: the charge the answer names is given back by that name.
    await giveBack(deps, payment, answer, actor)
    return undefined
  }
  try {
    if (answer.status === 'captured') await refundUnplaced(deps, payment.id, actor)
    else await cancelPayment(deps, payment.id, actor)
  } catch (error) {
    if (!outOfReach(error)) throw error
    // Now rather than when the backstop comes due: the shopper's card carries the hold till then.
    await voidLater(deps, deps.runtime.jobs, payment.id)
  }
}

/** Whether the cart, locked by the caller, still holds `lease` (LEASE_MICROS). */
async function holdsLease(trx: Tx, cartId: string, lease: string): Promise<boolean> {
  const row = await trx
    .selectFrom('carts')
    .select('id')
    .where('id', '=', cartId)
    .where(LEASE_MICROS, '=', lease)
    .executeTakeFirst()
  return row !== undefined
}

/** How long the void job queued with a give-up waits before making sure the money went back. */
const GIVE_BACK_BACKSTOP_SECONDS = 60

/**
 * Gives up a checkout for the recovery job (the shopper left at 3-D Secure, the processor stayed
 * away): under the cart's row lock, and only while the cart still waits on the payment it was
 * found with, the payment is marked canceled, the stock released and the cart reopened, in one
 * transaction. Decided before anything is voided: a take-over of the same checkout may record its
 * answer meanwhile, and then the order it places keeps the payment (nothing here changes); one
 * that records its answer after this gets no order and gives its answer back itself (orphaned).
 * The charge the payment names (a 3-D Secure one) is then voided at the processor; the void job,
 * queued with the decision, makes or repeats that void if this node dies or the processor is away,
 * and asks the processor for a charge it made though every answer was lost (findCharge).
 * False, with nothing given up, when the cart or its payment moved on since the job read it, or
 * the cart no longer holds `lease` (the one the job took when it claimed the cart, LEASE_MICROS):
 * a take-over is at work on it. A payment answered meanwhile (a webhook) leaves the checkout to be
 * resumed, and the job's lease is handed back if the cart still holds it. A caller that names no
 * lease holds none, and hands none back.
 */
export async function abandonCheckout(
  deps: CommerceDeps,
  cart: CartRow,
  actor: string,
  lease?: string,
): Promise<boolean> {
  const ctx = inventoryContext(deps, actor)
  const gaveUp = await withTransaction(deps.db, async (trx) => {
    const current = await lockCart(trx, cart.id)
    // Reopened, completed or checked out again: whoever did it set or cleared the lease already.
    if (current.status !== 'completing' || current.payment_id !== cart.payment_id) return undefined
    // Taken over since the job claimed it (the job's lease ran out while it worked through its
    // batch): the shopper is back at it, and the take-over's own answer decides.
    if (lease !== undefined && !(await holdsLease(trx, cart.id, lease))) return undefined
    const payment = cart.payment_id
      ? await cancelUnanswered(trx, deps.outbox, cart.payment_id, actor)
      : undefined
    if (cart.payment_id && !payment) {
      // Answered since the job looked: the shopper's retry (or the next pass) resumes the checkout,
      // at once rather than when the job's lease runs out.
      if (lease !== undefined) await releaseLease(trx, cart.id, lease)
      return undefined
    }
    if (current.reservation_id) await releaseHold(trx, current.reservation_id, ctx)
    await reopen(trx, cart.id)
    // Also for a payment no answer named: the job asks the processor for a charge made all the same.
    if (payment) await queueVoid(trx, deps.runtime.jobs, payment.id, null, GIVE_BACK_BACKSTOP_SECONDS)
    return { payment }
  })
  await ctx.publish()
  if (!gaveUp) return false
  const canceled = gaveUp.payment
  if (!canceled?.provider_ref) return true
  try {
    await voidAtProcessor(providerOf(deps.providers, canceled.provider), canceled.id, canceled.provider_ref)
  } catch (error) {
    if (!outOfReach(error)) throw error
    await voidLater(deps, deps.runtime.jobs, canceled.id)
  }
  return true
}
