/**
 * The live view: every committed level change is announced on the KV channel `inventory.levels`
 * (Redis pub/sub when configured, so all nodes hear every node's changes). Each node keeps one
 * subscription for all its Server-Sent Events clients, gathers the announced keys for a moment,
 * reads those levels once and pushes them to the clients. Announcing keys rather than values keeps
 * a retried or rolled-back attempt from showing numbers that never committed.
 */
import type { Kysely } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import type { Kv } from '../../platform/kv/kv.ts'
import { type LevelView, levelsByKeys } from './levels.ts'

export const LEVELS_CHANNEL = 'inventory.levels'
/** How long announced keys gather before one read serves them all. */
const FLUSH_MS = 50
const HEARTBEAT_MS = 15_000

/** Announces the touched `variant|location` keys. A lost announcement only delays a dashboard. */
export async function publishLevelChanges(kv: Kv, touched: Set<string>): Promise<void> {
  if (touched.size === 0) return
  try {
    await kv.publish(LEVELS_CHANNEL, JSON.stringify([...touched]))
  } catch {
    // The change is committed; the stream is best effort and dashboards re-read on reconnect.
  }
}

export interface StreamClient {
  /** Only levels of this variant or location, when set. */
  variantId?: string | undefined
  locationId?: string | undefined
  send(event: string, data: unknown): void
}

/** One node's fan-out from the KV channel to its SSE clients. */
export class LevelStream {
  readonly #kv: Kv
  readonly #db: Kysely<DB>
  readonly #clients = new Set<StreamClient>()
  readonly #pending = new Set<string>()
  #unsubscribe: Promise<() => Promise<void>> | undefined
  #timer: NodeJS.Timeout | undefined
  #heartbeat: NodeJS.Timeout | undefined

  constructor(kv: Kv, db: Kysely<DB>) {
    this.#kv = kv
    this.#db = db
  }

  /** Adds a client; resolves once the node is subscribed, so no change after this is missed. */
  async add(client: StreamClient): Promise<void> {
    this.#clients.add(client)
    this.#unsubscribe ??= this.#kv.subscribe(LEVELS_CHANNEL, (message) => this.#announced(message))
    this.#heartbeat ??= setInterval(() => {
      for (const c of this.#clients) c.send('heartbeat', { at: new Date().toISOString() })
    }, HEARTBEAT_MS).unref()
    await this.#unsubscribe
  }

  /** Removes a client; the last one out drops the subscription. */
  async remove(client: StreamClient): Promise<void> {
    this.#clients.delete(client)
    if (this.#clients.size > 0) return
    clearInterval(this.#heartbeat)
    this.#heartbeat = undefined
    const unsubscribe = this.#unsubscribe
    this.#unsubscribe = undefined
    if (unsubscribe) await (await unsubscribe.catch(() => async () => {}))().catch(() => {})
  }

  get size(): number {
    return this.#clients.size
  }

  #announced(message: string): void {
    let keys: unknown
    try {
      keys = JSON.parse(message)
    } catch {
      return
    }
    if (!Array.isArray(keys)) return
    for (const key of keys) if (typeof key === 'string') this.#pending.add(key)
    this.#timer ??= setTimeout(() => void this.#flush(), FLUSH_MS)
  }

  async #flush(): Promise<void> {
    this.#timer = undefined
    const keys = [...this.#pending].map((k) => {
      const [variant_id = '', location_id = ''] = k.split('|')
      return { variant_id, location_id }
    })
    this.#pending.clear()
    if (keys.length === 0 || this.#clients.size === 0) return
    let levels: LevelView[]
    try {
      levels = await levelsByKeys(this.#db, keys)
    } catch {
      return
    }
    for (const level of levels) {
      for (const client of this.#clients) {
        if (client.variantId && client.variantId !== level.variant_id) continue
        if (client.locationId && client.locationId !== level.location_id) continue
        client.send('level', level)
      }
    }
  }
}
