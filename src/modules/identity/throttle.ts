/**
 * Progressive lockout against password (and MFA code) guessing, shared through the key-value store
 * (Redis when configured, so it holds across nodes).
 *
 * Attempts are counted before the password is checked, so a burst of parallel guesses cannot slip
 * past the count. Per account and client IP, five attempts are free; each further one starts a wait
 * that doubles, capped at 15 minutes, so a victim is never locked out for good and an attacker on
 * another network cannot lock them out from their own. A looser ceiling per account stops guessing
 * spread over many IPs. A password reset starts a new generation of counters, lifting every lock.
 */
import { problem } from '../../platform/http/errors.ts'
import type { Kv } from '../../platform/kv/index.ts'

const FREE_ATTEMPTS = 5
const BASE_LOCK_MS = 2_000
const MAX_LOCK_MS = 15 * 60_000
const WINDOW_MS = 60 * 60_000
const ACCOUNT_CEILING = 50
const GENERATION_TTL_MS = 30 * 24 * 60 * 60_000

export class LoginThrottle {
  readonly #kv: Kv
  readonly #scope: string

  constructor(kv: Kv, scope: string) {
    this.#kv = kv
    this.#scope = scope
  }

  async #keys(account: string, ip: string) {
    const a = account.toLowerCase()
    const base = `throttle:${this.#scope}`
    const generation = (await this.#kv.get(`${base}:gen:${a}`)) ?? '0'
    return {
      pairAttempts: `${base}:${generation}:attempts:${a}|${ip}`,
      pairLock: `${base}:${generation}:lock:${a}|${ip}`,
      accountAttempts: `${base}:${generation}:attempts:${a}`,
    }
  }

  /**
   * Counts an attempt on this account from this IP and says how long to wait first: 0 means go
   * ahead and check the password; more means refuse now (429 with Retry-After).
   */
  async begin(account: string, ip: string): Promise<number> {
    const keys = await this.#keys(account, ip)
    const lockedUntil = Number((await this.#kv.get(keys.pairLock)) ?? 0)
    if (lockedUntil > Date.now()) return lockedUntil - Date.now()
    const [attempts, accountAttempts] = await Promise.all([
      this.#kv.increment(keys.pairAttempts, WINDOW_MS),
      this.#kv.increment(keys.accountAttempts, WINDOW_MS),
    ])
    if (accountAttempts > ACCOUNT_CEILING) return MAX_LOCK_MS
    if (attempts <= FREE_ATTEMPTS) return 0
    const lockMs = Math.min(BASE_LOCK_MS * 2 ** (attempts - FREE_ATTEMPTS - 1), MAX_LOCK_MS)
    await this.#kv.set(keys.pairLock, String(Date.now() + lockMs), lockMs)
    return lockMs
  }

  /** After a correct password: this IP starts afresh, and the attempt no longer counts against the account. */
  async succeeded(account: string, ip: string): Promise<void> {
    const keys = await this.#keys(account, ip)
    await Promise.all([
      this.#kv.delete(keys.pairAttempts),
      this.#kv.delete(keys.pairLock),
      this.#kv.increment(keys.accountAttempts, WINDOW_MS, -1),
    ])
  }

  /** Lifts every lock and count on the account, from every IP (after a password reset). */
  async reset(account: string): Promise<void> {
    await this.#kv.increment(`throttle:${this.#scope}:gen:${account.toLowerCase()}`, GENERATION_TTL_MS)
  }
}

/** Counts an attempt and throws 429 `too_many_attempts` (with Retry-After) when it must wait. */
export async function countAttempt(throttle: LoginThrottle, account: string, ip: string): Promise<void> {
  const wait = await throttle.begin(account, ip)
  if (wait > 0) {
    throw problem('too_many_attempts', undefined, {
      headers: { 'retry-after': String(Math.ceil(wait / 1000)) },
    })
  }
}
