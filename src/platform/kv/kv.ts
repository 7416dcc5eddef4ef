/**
 * A small key-value store with counters and pub/sub: Redis when several nodes must share state (rate
 * limits, cache invalidation, fan-out), an in-process map when a single node runs alone. Both
 * implementations pass one conformance suite, so callers never branch on which one they got.
 */

export interface Kv {
  readonly kind: 'memory' | 'redis'
  get(key: string): Promise<string | null>
  /** ttlMs optional; no ttl = no expiry */
  set(key: string, value: string, ttlMs?: number): Promise<void>
  delete(key: string): Promise<void>
  /** Atomically increments by 1 (or `by`) and returns the new value; when the key is created by this call its expiry is set to ttlMs (fixed window: later increments don't extend it). */
  increment(key: string, ttlMs: number, by?: number): Promise<number>
  publish(channel: string, message: string): Promise<void>
  /** Returns an unsubscribe function. Messages published by any node (same Redis) reach every subscriber, including on the publishing node. */
  subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>>
  ping(): Promise<void>
  close(): Promise<void>
}

/**
 * Validates a TTL and rounds it up to whole milliseconds, the unit Redis accepts; shared so both
 * stores reject the same inputs instead of one silently treating 0 as "forever".
 */
export function normalizeTtlMs(ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0)
    throw new RangeError(`ttlMs must be a positive number, got ${ttlMs}`)
  return Math.ceil(ttlMs)
}

/** INCRBY takes a 64-bit integer; beyond the safe range a JS number would lie about the result. */
export function assertIncrement(by: number): void {
  if (!Number.isSafeInteger(by)) throw new RangeError(`increment must be a safe integer, got ${by}`)
}
