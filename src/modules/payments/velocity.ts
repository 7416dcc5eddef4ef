/**
 * Card-testing defence. Fraudsters check stolen card numbers by paying small orders with many cards
 * from one cart, IP or account (or one card from many places). Failed payments are counted per IP,
 * per card fingerprint, per account and per cart in fixed one-hour windows on the key-value store
 * (Redis when configured, so the count holds across nodes). When any of IP, card or account reaches
 * the limit, further attempts from it are refused until its window ends; a cart that reaches it is
 * locked for 15 minutes. Only failures count, so honest shoppers who pay on the first try never
 * come near the limit.
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

export class PaymentVelocity {
  readonly #kv: Kv
  readonly #limit: number

  constructor(kv: Kv, limitPerHour: number) {
    this.#kv = kv
    this.#limit = limitPerHour
  }

  /** Current-window counter keys of the attempt's IP, card and account (those it has). */
  #counterKeys(attempt: PaymentAttempt, window: number): string[] {
    const keys = [`payvel:${window}:ip:${attempt.ip}`]
    if (attempt.fingerprint) keys.push(`payvel:${window}:card:${attempt.fingerprint}`)
    if (attempt.account) keys.push(`payvel:${window}:account:${attempt.account.trim().toLowerCase()}`)
    return keys
  }

  /**
   * Throws 429 `payment_attempts_exceeded` with Retry-After when the cart is locked or its IP, card
   * or account has reached the limit of failures this hour. Call before asking the processor.
   */
  async check(attempt: PaymentAttempt): Promise<void> {
    const now = Date.now()
    const lockedUntil = Number((await this.#kv.get(cartLockKey(attempt.cart_id))) ?? 0)
    if (lockedUntil > now) throw refused(lockedUntil - now, 'This cart had too many failed payments')
    const window = Math.floor(now / WINDOW_MS)
    const counts = await Promise.all(this.#counterKeys(attempt, window).map((key) => this.#kv.get(key)))
    if (counts.some((count) => Number(count ?? 0) >= this.#limit)) {
      throw refused((window + 1) * WINDOW_MS - now, 'Too many failed payments in the last hour')
    }
  }

  /** Counts a declined payment against the IP, card, account and cart; locks the cart at the limit. */
  async recordFailure(attempt: PaymentAttempt): Promise<void> {
    const window = Math.floor(Date.now() / WINDOW_MS)
    const keys = [...this.#counterKeys(attempt, window), `payvel:${window}:cart:${attempt.cart_id}`]
    const counts = await Promise.all(keys.map((key) => this.#kv.increment(key, COUNTER_TTL_MS)))
    if (counts.at(-1)! >= this.#limit) {
      await this.#kv.set(cartLockKey(attempt.cart_id), String(Date.now() + CART_LOCK_MS), CART_LOCK_MS)
    }
  }
}

function cartLockKey(cartId: string): string {
  return `payvel:lock:cart:${cartId}`
}

function refused(waitMs: number, detail: string) {
  return problem('payment_attempts_exceeded', detail, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))) },
  })
}
