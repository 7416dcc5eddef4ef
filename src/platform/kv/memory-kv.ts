/**
 * The single-node Kv: a Map in this process. It mirrors Redis semantics closely enough (lazy expiry,
 * integer-only counters, asynchronous pub/sub delivery) that code tested against it behaves the same
 * when a deployment switches to Redis.
 */
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import { assertIncrement, type Kv, normalizeTtlMs } from './kv.ts'

interface Entry {
  value: string
  /** performance.now() deadline; undefined never expires. */
  expiresAt: number | undefined
}

type Handler = (message: string) => void

export interface MemoryKvOptions {
  /** How often expired keys that nobody reads again are dropped; reads check expiry themselves. */
  sweepIntervalMs?: number
  /** Receives errors thrown by subscribers. */
  logger?: Logger
}

// Same shape as Redis's reply, so error handling written against one store fits the other.
const NOT_AN_INTEGER = 'ERR value is not an integer or out of range'
const INTEGER = /^-?(0|[1-9]\d*)$/

export class MemoryKv implements Kv {
  readonly kind = 'memory' as const
  readonly #entries = new Map<string, Entry>()
  readonly #channels = new Map<string, Set<Handler>>()
  readonly #sweeper: NodeJS.Timeout
  readonly #logger: Logger | undefined
  #closed = false

  constructor(options: MemoryKvOptions = {}) {
    this.#logger = options.logger
    this.#sweeper = setInterval(() => this.#sweep(), options.sweepIntervalMs ?? 30_000)
    // A cache must never be what keeps the process alive at shutdown.
    this.#sweeper.unref()
  }

  async get(key: string): Promise<string | null> {
    this.#assertOpen()
    return this.#live(key)?.value ?? null
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    this.#assertOpen()
    // Like Redis SET, a write without a TTL clears any previous expiry.
    const expiresAt = ttlMs === undefined ? undefined : now() + normalizeTtlMs(ttlMs)
    this.#entries.set(key, { value, expiresAt })
  }

  async delete(key: string): Promise<void> {
    this.#assertOpen()
    this.#entries.delete(key)
  }

  async increment(key: string, ttlMs: number, by = 1): Promise<number> {
    this.#assertOpen()
    const ttl = normalizeTtlMs(ttlMs)
    assertIncrement(by)
    // Synchronous from here on: no await between read and write, so concurrent calls cannot interleave.
    const entry = this.#live(key)
    if (!entry) {
      this.#entries.set(key, { value: String(by), expiresAt: now() + ttl })
      return by
    }
    if (!INTEGER.test(entry.value)) throw new Error(NOT_AN_INTEGER)
    const next = Number(entry.value) + by
    if (!Number.isSafeInteger(next)) throw new Error(NOT_AN_INTEGER)
    entry.value = String(next)
    return next
  }

  async publish(channel: string, message: string): Promise<void> {
    this.#assertOpen()
    const handlers = this.#channels.get(channel)
    if (!handlers || handlers.size === 0) return
    // Redis delivers to whoever is subscribed when the message is published, and never inside the
    // publisher's call stack; snapshot now, deliver on a later turn.
    const recipients = [...handlers]
    setImmediate(() => {
      for (const handler of recipients) {
        // Unsubscribing between publish and delivery stops delivery, as it does on Redis.
        if (!this.#channels.get(channel)?.has(handler)) continue
        try {
          handler(message)
        } catch (err) {
          // One faulty subscriber must not starve the others or crash the process.
          this.#logger?.error({ err, channel }, 'kv subscriber threw')
        }
      }
    })
  }

  async subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>> {
    this.#assertOpen()
    // Wrapped so subscribing the same function twice yields two independent subscriptions.
    const subscription: Handler = (message) => handler(message)
    let handlers = this.#channels.get(channel)
    if (!handlers) {
      handlers = new Set()
      this.#channels.set(channel, handlers)
    }
    handlers.add(subscription)
    return async () => {
      const current = this.#channels.get(channel)
      if (!current) return
      current.delete(subscription)
      if (current.size === 0) this.#channels.delete(channel)
    }
  }

  async ping(): Promise<void> {
    this.#assertOpen()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#sweeper)
    this.#entries.clear()
    this.#channels.clear()
  }

  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key)
    if (!entry) return undefined
    if (entry.expiresAt !== undefined && entry.expiresAt <= now()) {
      this.#entries.delete(key)
      return undefined
    }
    return entry
  }

  #sweep(): void {
    const at = now()
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= at) this.#entries.delete(key)
    }
  }

  #assertOpen(): void {
    // Fail loudly, as a closed Redis connection does, rather than quietly serving an empty store.
    if (this.#closed) throw new Error('Kv is closed')
  }
}

// Monotonic: a wall-clock jump (NTP, DST on a misconfigured host) must not expire or revive keys.
function now(): number {
  return performance.now()
}
