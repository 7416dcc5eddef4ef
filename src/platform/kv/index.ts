/**
 * Picks the Kv for the deployment: Redis once REDIS_URL is configured (several nodes must agree on
 * counters and see each other's messages), otherwise the in-process store for a single node.
 */
import type { Logger } from 'pino'
import type { Kv } from './kv.ts'
import { MemoryKv } from './memory-kv.ts'
import { RedisKv } from './redis-kv.ts'

export type { Kv } from './kv.ts'
export { MemoryKv, type MemoryKvOptions } from './memory-kv.ts'
export { RedisKv, type RedisKvOptions } from './redis-kv.ts'

export interface KvOptions {
  /** redis:// URL; undefined selects the in-process store. */
  redisUrl?: string
  /** Prefix for Redis keys and channels; default 'sw:'. Ignored by the in-process store. */
  keyPrefix?: string
  logger?: Logger
}

export function createKv(options: KvOptions): Kv {
  if (options.redisUrl) {
    return new RedisKv(options.redisUrl, { keyPrefix: options.keyPrefix, logger: options.logger })
  }
  return new MemoryKv({ logger: options.logger })
}
