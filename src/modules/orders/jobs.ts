/**
 * Background jobs of checkout, carts and orders: the recovery job that finishes or rolls back
 * checkouts their request abandoned (a node died, a shopper left at 3-D Secure) and captures orders
 * whose capture did not happen, the expiry of abandoned carts, the settle job that returns the
 * money of a canceled order whatever its cancel's request left undone, the resumption of staff
 * refunds whose request stopped after asking for the money, and the expiry of orders whose manual
 * payment (bank transfer, cash on delivery) never came.
 */
import { sql } from 'kysely'
import { pausepoint } from '../../platform/failpoints.ts'
import { ProblemError } from '../../platform/http/errors.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { expireCarts } from '../carts/carts.ts'
import type { CartRow } from '../carts/load.ts'
import { findPayment } from '../payments/service.ts'
import { captureOrder } from './admin-orders.ts'
import { cancelOrder, SETTLE_CANCELED_JOB, settleCanceledOrder } from './cancel.ts'
import { abandonCheckout, finish, LEASE_MICROS, paymentMethodOf, releaseLease } from './checkout.ts'
import { type CommerceDeps, commerceDeps } from './deps.ts'
import { followPaymentEvents } from './payment-events.ts'
import { resumeUnansweredRefunds } from './refunds.ts'
import { CAPTURE_FROM } from './state.ts'

export const RECOVER_CHECKOUTS_JOB = 'checkout.recover'
export const EXPIRE_CARTS_JOB = 'carts.expire'
export const RESUME_REFUNDS_JOB = 'orders.resume-refunds'
export const EXPIRE_UNPAID_JOB = 'orders.expire-unpaid'
export { SETTLE_CANCELED_JOB }

const ACTOR = 'system:checkout-recovery'
const SETTLE_ACTOR = 'system:cancel-settlement'
const EXPIRY_ACTOR = 'system:payment-expiry'
/**
 * Backoff reaches an hour after about ten runs; 180 runs then wait about a week for a pending
 * refund (staff's, whose processor is down) to resolve. One that runs out is dead-lettered, for
 * staff to see and replay.
 */
const SETTLE_RETRIES = 180
/**
 * A checkout still unfinished this long after it began is given up: the shopper left at 3-D
 * Secure, or the processor has not answered all that time.
 */
const GIVE_UP_MINUTES = 30

export interface RecoveryReport {
  resumed: number
  /** Resumed into an outcome that ends the checkout without an order, the cart open again. */
  settled: number
  abandoned: number
  captured: number
  failed: number
}

/**
 * What a resumed checkout answers when it ends without an order and has nothing left to retry: a
 * decline or a payment canceled meanwhile (402), the stock gone (409, given up), or another request
 * that finished or gave up the checkout first (409).
 */
const SETTLED_OUTCOMES = ['payment_required', 'insufficient_stock', 'checkout_in_progress']

/**
 * True while the cart still waits on the payment the job found it with. A checkout that lost its
 * stock answers insufficient_stock even when its give-up could not be written (the database failed
 * it): that checkout is not settled, and the next pass gives it up again.
 */
async function stillCompleting(deps: CommerceDeps, cart: CartRow): Promise<boolean> {
  const current = await deps.db
    .selectFrom('carts')
    .select(['status', 'payment_id'])
    .where('id', '=', cart.id)
    .executeTakeFirst()
  return current?.status === 'completing' && current.payment_id === cart.payment_id
}

/**
 * One pass of recovery. Each checkout is taken with the same lease a request takes, so the job and
 * a shopper's retry never work on one cart at once.
 */
export async function recoverCheckouts(
  deps: CommerceDeps,
  options: { batchSize?: number; captureAfterSeconds?: number } = {},
): Promise<RecoveryReport> {
  const report: RecoveryReport = { resumed: 0, settled: 0, abandoned: 0, captured: 0, failed: 0 }
  const lease = deps.runtime.config.checkoutLeaseSeconds
  // Each claim carries its lease (checkout.ts, LEASE_MICROS): only that one may be given back.
  const { rows: stalled } = await sql<CartRow & { lease: string }>`
    update carts set checkout_lease_until = now() + make_interval(secs => ${lease})
    where id in (
      select id from carts
      where status = 'completing' and (checkout_lease_until is null or checkout_lease_until <= now())
      order by updated_at limit ${options.batchSize ?? 50}
      for update skip locked)
    returning *, ${LEASE_MICROS} as lease`.execute(deps.db)
  // Working through a batch can outlast the leases it claimed: a test stages a take-over here.
  await pausepoint('checkout.recovery_claimed')
  for (const { lease: claimed, ...cart } of stalled) {
    try {
      const payment = cart.payment_id ? await findPayment(deps.db, cart.payment_id) : undefined
      const waitedTooLong = Date.now() - new Date(cart.updated_at).getTime() > GIVE_UP_MINUTES * 60_000
      const unanswered = payment?.status === 'requires_action' || payment?.status === 'pending'
      if (!payment || (unanswered && waitedTooLong)) {
        // Moved on since it was read (answered, or taken over): the next pass sees it as it is.
        if (await abandonCheckout(deps, cart, ACTOR, claimed)) report.abandoned++
      } else if (payment.status === 'requires_action') {
        // Still the shopper's turn: hand the cart back to them, unless the job's lease ran out while
        // it worked through the batch and the shopper's retry has taken the checkout over since.
        await releaseLease(deps.db, cart.id, claimed)
      } else {
        await finish(
          deps,
          { cart, payment, paymentMethod: await paymentMethodOf(deps.db, payment.id), lease: claimed },
          ACTOR,
        )
        report.resumed++
      }
    } catch (error) {
      if (
        error instanceof ProblemError &&
        SETTLED_OUTCOMES.includes(error.code) &&
        !(error.code === 'insufficient_stock' && (await stillCompleting(deps, cart).catch(() => true)))
      ) {
        report.settled++
        continue
      }
      report.failed++
      deps.runtime.logger.warn({ err: error, cartId: cart.id }, 'checkout recovery failed; will retry')
    }
  }
  if (deps.runtime.config.paymentCapture === 'automatic') {
    const pending = await deps.db
      .selectFrom('orders')
      .innerJoin('payments', 'payments.id', 'orders.payment_id')
      .select('orders.id')
      // Pending orders whose capture did not finish, and orders staff moved on (to processing or
      // even fulfilled) while their authorisation still waited to be captured.
      .where((eb) =>
        eb.or([
          eb.and([
            eb('orders.status', '=', 'pending'),
            eb('payments.status', 'in', ['authorized', 'captured']),
          ]),
          eb.and([eb('orders.status', 'in', CAPTURE_FROM), eb('payments.status', '=', 'authorized')]),
        ]),
      )
      // Authorisations lapse after about a week at the processors: older ones are left to staff
      // rather than failed every minute, and the oldest capturable come first.
      .where('orders.placed_at', '>', sql<Date>`now() - interval '8 days'`)
      .orderBy('orders.placed_at')
      // Young orders are left to the request that placed them, which captures right after.
      .where(
        'orders.placed_at',
        '<=',
        sql<Date>`now() - make_interval(secs => ${options.captureAfterSeconds ?? 30})`,
      )
      .limit(options.batchSize ?? 50)
      .execute()
    for (const { id } of pending) {
      try {
        await captureOrder(deps, id, ACTOR)
        report.captured++
      } catch (error) {
        report.failed++
        deps.runtime.logger.warn({ err: error, orderId: id }, 'capture in recovery failed; will retry')
      }
    }
  }
  return report
}

/** Thrown by the settle job while a refund of the order's payment is pending: it runs again later. */
export class RefundStillPending extends Error {
  override name = 'RefundStillPending'
}

/**
 * One run of the settle job: returns a canceled order's money (cancel.ts, settleCanceledOrder),
 * and throws RefundStillPending while a refund of its payment is pending, so that the queue runs
 * it again with backoff until that refund has succeeded or failed (and what a failed one held is
 * refunded too), or while another writer held the payment's row when this run went to record a
 * capture the processor reported. A refund the processor refused is left to staff, with the note the
 * refusal wrote.
 */
export async function settleCanceled(deps: CommerceDeps, orderId: string): Promise<void> {
  const outcome = await settleCanceledOrder(deps, orderId, SETTLE_ACTOR)
  if (outcome === 'waiting') {
    throw new RefundStillPending(`A refund of canceled order ${orderId}'s payment is still pending`)
  }
  if (outcome === 'refused') {
    deps.runtime.logger.warn(
      { orderId },
      'refund of a canceled order refused by the processor; left to staff',
    )
  }
}

export interface ExpiryReport {
  canceled: number
  /** Paid, being paid or moved on by staff meanwhile: left as they are. */
  kept: number
  failed: number
}

/**
 * One pass of the expiry of unpaid orders: up to `batchSize` orders (oldest first) still pending
 * with a manual payment awaiting the money (bank transfer, cash on delivery that staff have not
 * moved on) placed MANUAL_PAYMENT_TTL_HOURS ago or more are canceled as staff would cancel them
 * (cancel.ts): stock released, tax sale voided, payment canceled, `order.canceled` with the reason,
 * and the move recorded with this job as its actor. Each is decided under the order's lock and its
 * payment's (onlyUnpaid), so a payment confirmed meanwhile wins: its capture under way is passed
 * over, and the order stays to be marked paid.
 */
export async function expireUnpaidOrders(
  deps: CommerceDeps,
  options: { batchSize?: number } = {},
): Promise<ExpiryReport> {
  const report: ExpiryReport = { canceled: 0, kept: 0, failed: 0 }
  const hours = deps.runtime.config.manualPaymentTtlHours
  const due = await deps.db
    .selectFrom('orders')
    .select('id')
    .where('status', '=', 'pending')
    .where('payment_status', '=', 'awaiting_transfer')
    .where('placed_at', '<=', sql<Date>`now() - make_interval(hours => ${hours})`)
    .orderBy('placed_at')
    .limit(options.batchSize ?? 200)
    .execute()
  for (const { id } of due) {
    try {
      await cancelOrder(deps, id, {
        actor: EXPIRY_ACTOR,
        reason: `payment not received within ${hours} hours`,
        onlyFrom: ['pending'],
        onlyUnpaid: true,
      })
      report.canceled++
    } catch (error) {
      if (error instanceof ProblemError && error.code === 'invalid_order_transition') {
        report.kept++
        continue
      }
      report.failed++
      deps.runtime.logger.warn({ err: error, orderId: id }, 'expiry of an unpaid order failed; will retry')
    }
  }
  return report
}

/**
 * Defines the recovery job (every minute), the cart expiry job (hourly), the refund resumption
 * (every five minutes), the expiry of unpaid orders (every ten minutes) and the settle job of
 * canceled orders, and has orders follow their payments' events.
 */
export function defineCheckoutJobs(runtime: Runtime): void {
  followPaymentEvents(runtime)
  runtime.jobs.define(
    RECOVER_CHECKOUTS_JOB,
    async () => {
      const report = await recoverCheckouts(commerceDeps(runtime))
      if (report.resumed + report.settled + report.abandoned + report.captured + report.failed > 0)
        runtime.logger.info(report, 'checkout recovery pass')
    },
    { cron: '* * * * *', retryLimit: 1, concurrency: 1 },
  )
  runtime.jobs.define(
    EXPIRE_CARTS_JOB,
    async () => {
      const expired = await expireCarts(runtime.database.db, runtime.config.cartTtlHours)
      if (expired) runtime.logger.info({ expired }, 'abandoned carts expired')
    },
    { cron: '23 * * * *', retryLimit: 1, concurrency: 1 },
  )
  runtime.jobs.define(
    RESUME_REFUNDS_JOB,
    async () => {
      const report = await resumeUnansweredRefunds(commerceDeps(runtime))
      if (report.booked + report.waiting + report.refused > 0)
        runtime.logger.info(report, 'unanswered refunds resumed')
    },
    { cron: '*/5 * * * *', retryLimit: 1, concurrency: 1 },
  )
  runtime.jobs.define(
    EXPIRE_UNPAID_JOB,
    async () => {
      const report = await expireUnpaidOrders(commerceDeps(runtime))
      if (report.canceled + report.failed > 0) runtime.logger.info(report, 'unpaid orders expired')
    },
    { cron: '*/10 * * * *', retryLimit: 1, concurrency: 1 },
  )
  runtime.jobs.define<{ order_id: string }>(
    SETTLE_CANCELED_JOB,
    ({ order_id }) => settleCanceled(commerceDeps(runtime), order_id),
    { retryLimit: SETTLE_RETRIES },
  )
}
