/**
 * Progressive lockout against password guessing, shared through the key-value store (Redis when
 * configured, so it holds across nodes). Failures are counted per account and client IP: after a
 * few free attempts each further failure doubles a wait, capped at 15 minutes, so a victim is never
 * locked out for good and an attacker elsewhere cannot lock them out from the victim's own network.
 * A looser per-account ceiling stops guessing spread over many IPs.
 */
import type { Kv } from '../../platform/kv/index.ts'

const FREE_ATTEMPTS = 5
const BASE_LOCK_MS = 2_000
const MAX_LOCK_MS = 15 * 60_000
const WINDOW_MS = 60 * 60_000
const ACCOUNT_CEILING = 50

export class LoginThrottle {
  readonly #kv: Kv
  readonly #scope: string

  constructor(kv: Kv, scope: string) {
    this.#kv = kv
    this.#scope = scope
  }

  #keys(account: string, ip: string) {
    const a = account.toLowerCase()
    return {
      pairFails: `throttle:${this.#scope}:fails:${a}|${ip}`,
      pairLock: `throttle:${this.#scope}:lock:${a}|${ip}`,
      accountFails: `throttle:${this.#scope}:fails:${a}`,
    }
  }

  /** Milliseconds to wait before this account may be tried again from this IP; 0 when free. */
  async retryAfterMs(account: string, ip: string): Promise<number> {
    const keys = this.#keys(account, ip)
    const [lockedUntil, accountFails] = await Promise.all([
      this.#kv.get(keys.pairLock),
      this.#kv.get(keys.accountFails),
    ])
    if (Number(accountFails ?? 0) >= ACCOUNT_CEILING) return MAX_LOCK_MS
    return Math.max(0, Number(lockedUntil ?? 0) - Date.now())
  }

  /** Counts a failed attempt and starts the next lock when free attempts are used up. */
  async fail(account: string, ip: string): Promise<void> {
    const keys = this.#keys(account, ip)
    const [fails] = await Promise.all([
      this.#kv.increment(keys.pairFails, WINDOW_MS),
      this.#kv.increment(keys.accountFails, WINDOW_MS),
    ])
    if (fails <= FREE_ATTEMPTS) return
    const lockMs = Math.min(BASE_LOCK_MS * 2 ** (fails - FREE_ATTEMPTS - 1), MAX_LOCK_MS)
    await this.#kv.set(keys.pairLock, String(Date.now() + lockMs), lockMs)
  }

  /** Clears the counters after a successful sign-in or a password reset. */
  async clear(account: string, ip?: string): Promise<void> {
    const keys = this.#keys(account, ip ?? '')
    await Promise.all([
      this.#kv.delete(keys.accountFails),
      ...(ip ? [this.#kv.delete(keys.pairFails), this.#kv.delete(keys.pairLock)] : []),
    ])
  }
}
