/**
 * The shared Kv: Redis, so every node sees the same counters, cache entries and pub/sub traffic.
 *
 * A connection in subscriber mode cannot run ordinary commands, so pub/sub gets its own connection,
 * opened only once something subscribes. Keys and channels carry a prefix so several deployments (or
 * parallel test runs) can share one Redis without colliding.
 */
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { assertIncrement, type Kv, normalizeTtlMs } from './kv.ts'

export interface RedisKvOptions {
  /** Prepended to every key and channel; default 'sw:'. */
  keyPrefix?: string
  logger?: Logger
}

type Handler = (message: string) => void

interface Channel {
  handlers: Set<Handler>
  /** Settles when Redis has confirmed SUBSCRIBE; later subscribers to the channel wait on it too. */
  ready: Promise<unknown>
}

// EXISTS and INCRBY in one script: a separate PEXPIRE could be lost if the client died between the two
// calls, leaving a counter (a rate-limit window, say) that never resets.
const INCREMENT_SCRIPT = `
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
`
// Namespaced so it cannot clash with commands other libraries define on the shared client.
const INCREMENT_COMMAND = 'shopwrightKvIncrement'

type IncrementingRedis = Redis & {
  [INCREMENT_COMMAND](key: string, by: number, ttlMs: number): Promise<number>
}

export class RedisKv implements Kv {
  readonly kind = 'redis' as const
  /**
   * The command connection, exposed for libraries that want a Redis of their own (the
   * @fastify/rate-limit store). Its commands are not prefixed: such libraries namespace their keys.
   */
  readonly client: Redis
  readonly keyPrefix: string
  readonly #logger: Logger | undefined
  readonly #channels = new Map<string, Channel>()
  #subscriber: Redis | undefined
  #closed = false

  constructor(url: string, options: RedisKvOptions = {}) {
    this.keyPrefix = options.keyPrefix ?? 'sw:'
    this.#logger = options.logger
    this.client = new Redis(url, {
      lazyConnect: false,
      // Fail a command after two reconnect attempts instead of holding requests while Redis is down.
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
    })
    this.#watch(this.client, 'command')
    this.client.defineCommand(INCREMENT_COMMAND, { lua: INCREMENT_SCRIPT, numberOfKeys: 1 })
  }

  async get(key: string): Promise<string | null> {
    return this.client.get(this.#key(key))
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    if (ttlMs === undefined) await this.client.set(this.#key(key), value)
    else await this.client.set(this.#key(key), value, 'PX', normalizeTtlMs(ttlMs))
  }

  async delete(key: string): Promise<void> {
    await this.client.del(this.#key(key))
  }

  async increment(key: string, ttlMs: number, by = 1): Promise<number> {
    const ttl = normalizeTtlMs(ttlMs)
    assertIncrement(by)
    return (this.client as IncrementingRedis)[INCREMENT_COMMAND](this.#key(key), by, ttl)
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.client.publish(this.#key(channel), message)
  }

  async subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>> {
    if (this.#closed) throw new Error('Kv is closed')
    const name = this.#key(channel)
    const subscriber = this.#subscriberConnection()
    let entry = this.#channels.get(name)
    if (!entry) {
      const created: Channel = { handlers: new Set(), ready: subscriber.subscribe(name) }
      // A failed SUBSCRIBE must not stick: the next subscribe() should try again.
      created.ready.catch(() => {
        if (this.#channels.get(name) === created) this.#channels.delete(name)
      })
      this.#channels.set(name, created)
      entry = created
    }
    const current = entry
    // Wrapped so subscribing the same function twice yields two independent subscriptions.
    const subscription: Handler = (message) => handler(message)
    current.handlers.add(subscription)
    try {
      await current.ready
    } catch (err) {
      current.handlers.delete(subscription)
      throw err
    }
    return async () => {
      if (!current.handlers.delete(subscription)) return
      if (current.handlers.size > 0 || this.#channels.get(name) !== current) return
      this.#channels.delete(name)
      // Commands on one connection run in order, so a subscribe() racing this one is sent after it.
      if (!this.#closed) await subscriber.unsubscribe(name)
    }
  }

  async ping(): Promise<void> {
    await this.client.ping()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#channels.clear()
    await Promise.all([quit(this.client), this.#subscriber ? quit(this.#subscriber) : undefined])
  }

  #key(key: string): string {
    return this.keyPrefix + key
  }

  #subscriberConnection(): Redis {
    if (this.#subscriber) return this.#subscriber
    const subscriber = this.client.duplicate()
    this.#watch(subscriber, 'subscriber')
    subscriber.on('message', (channel: string, message: string) => {
      const entry = this.#channels.get(channel)
      if (!entry) return
      for (const handler of [...entry.handlers]) {
        try {
          handler(message)
        } catch (err) {
          // A throw here would unwind into ioredis's reply parser; contain it to this subscriber.
          this.#logger?.error({ err, channel }, 'kv subscriber threw')
        }
      }
    })
    this.#subscriber = subscriber
    return subscriber
  }

  #watch(connection: Redis, role: 'command' | 'subscriber'): void {
    // Without a listener ioredis reports every failed reconnect on stderr; route them to the log instead.
    // ioredis reconnects by itself, and ping() is what health checks use to notice an outage.
    connection.on('error', (err: Error) => {
      this.#logger?.warn({ err, role }, 'redis connection error')
    })
  }
}

async function quit(connection: Redis): Promise<void> {
  if (connection.status === 'end') return
  try {
    await connection.quit()
  } catch {
    // Redis unreachable: nothing to say goodbye to, just drop the socket and stop reconnecting.
    connection.disconnect()
  }
}
