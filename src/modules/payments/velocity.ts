/**
 * Card-testing defence. Fraudsters check stolen card numbers by paying small orders with many cards
 * from one cart, IP or account (or one card from many places). Failed payments are counted per IP,
 * per card fingerprint, per account and per cart in fixed windows of one clock hour (UTC) on the
 * key-value store (Redis when configured, so the count holds across nodes). When any of IP, card or
 * account reaches the limit, further attempts from it are refused until its window ends; a cart
 * that reaches it is locked for 15 minutes. Only failures count, so honest shoppers who pay on the
 * first try never come near the limit. Checkout applies it to payments by card only: manual
 * payments (bank transfer, cash on delivery) never decline, so they test no card.
 *
 * Manual payments have a limit of their own (ManualOrderLimit): each of their orders holds its
 * stock unpaid for days, so it is the orders placed that are counted, not failures.
 */
import { problem } from '../../platform/http/errors.ts'
import type { Kv } from '../../platform/kv/index.ts'

const WINDOW_MS = 60 * 60_000
/**
 * The decline code of a payment refused here, after the processor authorised it, because its card
 * failed too often: unlike the processor's own declines it holds money until voided.
 */
export const VELOCITY_DECLINE = 'card_velocity_exceeded'
const CART_LOCK_MS = 15 * 60_000
/** Counters outlive their window a little so a read at the boundary still finds them. */
const COUNTER_TTL_MS = WINDOW_MS + 60_000

export interface PaymentAttempt {
  ip: string
  cart_id: string
  /** The customer id, or the guest's email. */
  account?: string | null
  /** The card's fingerprint, once the processor has told us (after the first attempt). */
  fingerprint?: string | null
}

/** One limit an attempt is over: until when, and what to tell the shopper. */
interface Refusal {
  until: number
  detail: string
}

export class PaymentVelocity {
  readonly #kv: Kv
  readonly #limit: number
  readonly #now: () => number

  /** `now`: the clock, in milliseconds since the epoch (tests set the time of day). */
  constructor(kv: Kv, limitPerHour: number, now: () => number = Date.now) {
    this.#kv = kv
    this.#limit = limitPerHour
    this.#now = now
  }

  /** Current-window counter keys of the attempt's IP, card and account (those it has). */
  #counterKeys(attempt: PaymentAttempt, window: number): string[] {
    const keys = [`payvel:${window}:ip:${attempt.ip}`]
    if (attempt.fingerprint) keys.push(`payvel:${window}:card:${attempt.fingerprint}`)
    if (attempt.account) keys.push(`payvel:${window}:account:${attempt.account.trim().toLowerCase()}`)
    return keys
  }

  /**
   * Throws 429 `payment_attempts_exceeded` when the cart is locked or its IP, card or account has
   * reached the limit of failures this clock hour. Every limit that applies is looked at, and the
   * answer names the one that lasts longest: a Retry-After of the cart's lock alone would send the
   * shopper back while the IP's window, tripped by the same failures, still refuses them. Call
   * before asking the processor.
   */
  async check(attempt: PaymentAttempt): Promise<void> {
    const now = this.#now()
    const window = Math.floor(now / WINDOW_MS)
    const [lock, ...counts] = await Promise.all([
      this.#kv.get(cartLockKey(attempt.cart_id)),
      ...this.#counterKeys(attempt, window).map((key) => this.#kv.get(key)),
    ])
    const refusals: Refusal[] = []
    const lockedUntil = Number(lock ?? 0)
    if (lockedUntil > now) {
      refusals.push({
        until: lockedUntil,
        detail: `This cart had too many failed payments; try again after ${utcTime(lockedUntil)} UTC`,
      })
    }
    if (counts.some((count) => Number(count ?? 0) >= this.#limit)) {
      const until = (window + 1) * WINDOW_MS
      refusals.push({
        until,
        detail:
          `Too many failed payments from this network, card or account in the clock hour since ` +
          `${utcTime(window * WINDOW_MS)} UTC; try again after ${utcTime(until)} UTC`,
      })
    }
    const longest = refusals.reduce<Refusal | undefined>(
      (a, b) => (a && a.until >= b.until ? a : b),
      undefined,
    )
    if (longest) throw refused(longest.until - now, longest.detail)
  }

  /** Counts a declined payment against the IP, card, account and cart; locks the cart at the limit. */
  async recordFailure(attempt: PaymentAttempt): Promise<void> {
    const now = this.#now()
    const window = Math.floor(now / WINDOW_MS)
    const keys = [...this.#counterKeys(attempt, window), `payvel:${window}:cart:${attempt.cart_id}`]
    const counts = await Promise.all(keys.map((key) => this.#kv.increment(key, COUNTER_TTL_MS)))
    if (counts.at(-1)! >= this.#limit) {
      await this.#kv.set(cartLockKey(attempt.cart_id), String(now + CART_LOCK_MS), CART_LOCK_MS)
    }
  }
}

/** `HH:MM:SS` of a moment, in UTC: the windows are clock hours of UTC. */
function utcTime(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19)
}

function cartLockKey(cartId: string): string {
  return `payvel:lock:cart:${cartId}`
}

function refused(waitMs: number, detail: string) {
  return problem('payment_attempts_exceeded', detail, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))) },
  })
}

const DAY_MS = 24 * 60 * 60_000
/** Counters outlive their day a little so a give-back at the boundary still finds them. */
const DAY_COUNTER_TTL_MS = DAY_MS + 60 * 60_000

/** A manual-payment checkout: where it comes from, and whose it is. */
export interface ManualCheckout {
  ip: string
  /** The customer id, or the guest's email. */
  account?: string | null
}

/**
 * The limit on checkouts paid manually (bank transfer, cash on delivery). None is ever declined, so
 * the failure counts above never stop them, yet each order holds its stock unpaid until the money
 * is confirmed or the order expires (MANUAL_PAYMENT_TTL_HOURS): without a limit one client could
 * take any product off sale with a few requests. Such checkouts are counted per IP and per account
 * in windows of one UTC day, on the same key-value store. A checkout counts itself before it holds
 * any stock, so that requests sent at once cannot all pass under the limit, and gives its count
 * back when it ends without holding stock (a short line, a cart changed meanwhile).
 */
export class ManualOrderLimit {
  readonly #kv: Kv
  readonly #limit: number
  readonly #now: () => number

  /** `now`: the clock, in milliseconds since the epoch (tests set the time of day). */
  constructor(kv: Kv, limitPerDay: number, now: () => number = Date.now) {
    this.#kv = kv
    this.#limit = limitPerDay
    this.#now = now
  }

  /**
   * Counts a checkout against its IP and account for the current UTC day; throws 429
   * `rate_limited` (Retry-After: the end of the day), counting nothing, when either has reached the
   * limit. Returns the give-back, for a checkout that then holds no stock.
   */
  async claim(checkout: ManualCheckout): Promise<() => Promise<void>> {
    const now = this.#now()
    const day = Math.floor(now / DAY_MS)
    const keys = [`manvel:${day}:ip:${checkout.ip}`]
    if (checkout.account) keys.push(`manvel:${day}:account:${checkout.account.trim().toLowerCase()}`)
    const counts = await Promise.all(keys.map((key) => this.#kv.increment(key, DAY_COUNTER_TTL_MS)))
    // The keys of the day claimed: a give-back after midnight still returns that day's count.
    const giveBack = async () => {
      await Promise.all(keys.map((key) => this.#kv.increment(key, DAY_COUNTER_TTL_MS, -1)))
    }
    if (counts.every((count) => count <= this.#limit)) return giveBack
    await giveBack()
    const until = (day + 1) * DAY_MS
    throw problem(
      'rate_limited',
      `Too many orders to pay by bank transfer or cash on delivery from this network or account ` +
        `today (UTC); pay by card, or try again after ${new Date(until).toISOString()}`,
      { headers: { 'retry-after': String(Math.max(1, Math.ceil((until - now) / 1000))) } },
    )
  }
}
