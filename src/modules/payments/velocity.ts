/**
 * Card-testing defence. Fraudsters check stolen card numbers by paying small orders with many cards
 * from one cart, IP or account (or one card from many places). Failed payments are counted per IP,
 * per card fingerprint, per account and per cart in fixed windows of one clock hour (UTC) on the
 * key-value store (Redis when configured, so the count holds across nodes). When any of IP, card or
 * account reaches the limit, further attempts from it are refused until its window ends; a cart
 * that reaches it is locked for 15 minutes. Only failures count, so honest shoppers who pay on the
 * first try never come near the limit. Checkout applies it to payments by card only: manual
 * payments (bank transfer, cash on delivery) never decline, so they test no card.
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
