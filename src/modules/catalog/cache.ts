/**
 * The storefront's response cache. Rendered responses live in each node's memory, tagged with the
 * catalog version they were built from; the version itself lives in the KV store (Redis across
 * nodes). Every catalog write bumps the version after it commits, so the next read on any node sees
 * a version its entries do not carry and rebuilds: one small KV read per request buys cross-node
 * freshness without shipping response bodies through Redis.
 */
import { hash } from 'node:crypto'
import type { Logger } from 'pino'
import type { Kv } from '../../platform/kv/kv.ts'
import { Lru } from '../../platform/lru.ts'
import type { Runtime } from '../../platform/runtime.ts'

const VERSION_KEY = 'catalog:version'
/** The version key outlives any entry by far; if it ever expired, it would restart below them. */
const VERSION_TTL_MS = 30 * 24 * 3600_000

/**
 * Marks every node's cached catalog responses stale, for writers outside the catalog whose changes
 * show in them (stock coming back, say). Call after the change commits.
 */
export async function bumpCatalogVersion(kv: Kv): Promise<void> {
  await kv.increment(VERSION_KEY, VERSION_TTL_MS)
}

export interface CachedResponse {
  /** UTF-8 bytes, encoded once: encoding a 9 KB string on every send was a fifth of a hit's cost. */
  body: Buffer
  /** True when the rendered value was null (nothing found). */
  empty: boolean
  etag: string
  /** The catalog version it was built from, when the cache is on and the version was readable. */
  version?: string
  /** Epoch ms after which it is built again, with version. */
  expiresAt?: number
  /** When the answer stops being true on its own (the next price-list start or end), epoch ms. */
  changesAt?: number
}

interface Entry extends CachedResponse {
  version: string
  expiresAt: number
}

export interface CatalogCacheOptions {
  /** Most entries kept per node; the least recently used go first. */
  maxEntries: number
  /** An entry is rebuilt after this long even if no write was seen (a lost bump heals). */
  ttlMs: number
  enabled: boolean
}

/** A strong ETag over the body: equal bodies, equal tags, whichever node rendered them. */
export function etagOf(body: string | Buffer): string {
  return `"${hash('sha1', body, 'base64url')}"`
}

export class CatalogCache {
  readonly #kv: Kv
  readonly #entries: Lru<Entry>
  readonly #options: CatalogCacheOptions
  readonly #logger: Logger | undefined
  readonly #invalidated: Array<() => void> = []
  /** The last read of when prices next change, shared by every request (see #changesAt). */
  #changes: { version: string | undefined; readAt: number; at: Promise<number | undefined> } | undefined

  constructor(kv: Kv, options: CatalogCacheOptions, logger?: Logger) {
    this.#kv = kv
    this.#options = options
    this.#entries = new Lru(options.maxEntries)
    this.#logger = logger
  }

  /**
   * When prices next change on their own, read once per catalog version and again once that moment
   * has come (every price-list write bumps the version, so a new start or end is seen at once),
   * and at least once per entry lifetime, so a version bump lost to a KV outage heals as entries
   * do. With the cache off there is no version to go by: read at most once a second, which can
   * only leave a `max-age` a second too long when a price list is written to start at once.
   */
  #changesAt(
    version: string | undefined,
    read: () => Promise<number | undefined>,
  ): Promise<number | undefined> {
    const now = Date.now()
    const last = this.#changes
    // Kept no longer than an entry (a lost version bump heals as entries do), a second uncached.
    const keep = version === undefined ? 1000 : this.#options.ttlMs
    if (last && last.version === version && now - last.readAt < keep) {
      return last.at.then((at) => (at !== undefined && at <= now ? this.#readChanges(version, read) : at))
    }
    return this.#readChanges(version, read)
  }

  #readChanges(version: string | undefined, read: () => Promise<number | undefined>) {
    const at = read()
    const entry = { version, readAt: Date.now(), at }
    this.#changes = entry
    // A failed read is not kept: the next request reads again.
    at.catch(() => {
      if (this.#changes === entry) this.#changes = undefined
    })
    return at
  }

  get enabled(): boolean {
    return this.#options.enabled
  }

  /**
   * The cached response for key, or one rendered now (and kept). When the KV store cannot be read
   * the response is rendered without the cache: slower, never stale.
   */
  async getOrRender(
    key: string,
    render: () => Promise<unknown>,
    /**
     * When the rendered answer stops being true on its own (a price list starting), epoch ms. A
     * store-wide moment: read once per catalog version (see #changesAt), not per answer.
     */
    validUntil?: () => Promise<number | undefined>,
  ): Promise<CachedResponse> {
    // Uncached answers still say when they change: HTTP caches downstream must not outlive it.
    const uncached = async () => {
      const [value, changesAt] = await Promise.all([
        render(),
        validUntil && this.#changesAt(undefined, validUntil),
      ])
      return { ...rendered(value), changesAt }
    }
    if (!this.#options.enabled) return uncached()
    let version: string
    try {
      version = await this.#version()
    } catch (error) {
      this.#logger?.warn({ err: error }, 'catalog cache version unreadable; serving uncached')
      return uncached()
    }
    const hit = this.#entries.get(key)
    const now = Date.now()
    if (hit && hit.version === version && hit.expiresAt > now) {
      this.#entries.touch(key, hit)
      return hit
    }
    const [value, until] = await Promise.all([render(), validUntil && this.#changesAt(version, validUntil)])
    const response = rendered(value)
    const expiresAt = Math.min(now + this.#options.ttlMs, until ?? Number.POSITIVE_INFINITY)
    const entry = { ...response, version, expiresAt, changesAt: until }
    this.#entries.set(key, entry)
    return entry
  }

  /** Calls listener on every invalidate(), for copies of responses kept elsewhere (the edge cache). */
  onInvalidate(listener: () => void): void {
    this.#invalidated.push(listener)
  }

  /** True while no catalog write has been seen since a response of `version` was built. */
  async isCurrent(version: string): Promise<boolean> {
    return (await this.#version()) === version
  }

  /** The read in flight, which may have been sent before its latest joiner arrived: never joined. */
  #reading: Promise<string> | undefined
  /** The read that starts when #reading ends, shared by everyone who arrives meanwhile. */
  #queued: Promise<string> | undefined

  /**
   * The catalog version, read from the KV store by a read sent after the call began, so that a
   * write committed (and bumped) before it is always seen. Concurrent callers share reads: under
   * load a node sends about one read per round trip instead of one per request.
   */
  #version(): Promise<string> {
    if (!this.#reading) return this.#startRead()
    this.#queued ??= this.#reading.then(
      () => this.#startQueued(),
      () => this.#startQueued(),
    )
    return this.#queued
  }

  #startQueued(): Promise<string> {
    this.#queued = undefined
    return this.#startRead()
  }

  #startRead(): Promise<string> {
    const read = this.#kv.get(VERSION_KEY).then((value) => value ?? '0')
    this.#reading = read
    const done = () => {
      if (this.#reading === read) this.#reading = undefined
    }
    read.then(done, done)
    return read
  }

  /**
   * Marks every cached catalog response stale on every node. Call after the write commits: called
   * before, a concurrent read could cache the old data under the new version.
   */
  async invalidate(): Promise<void> {
    this.#entries.clear()
    for (const listener of this.#invalidated) listener()
    try {
      await bumpCatalogVersion(this.#kv)
    } catch (error) {
      // The entries on other nodes heal within ttlMs; the write itself has committed.
      this.#logger?.error({ err: error }, 'catalog cache invalidation failed')
    }
  }
}

/**
 * The Cache-Control of an answer anyone may share, and until when this node's edge cache may
 * replay it. A CDN keeps an answer for max-age from when it gets it, then serves it stale for up to
 * stale-while-revalidate more, and a replay repeats the header as first sent: so replays plus both
 * windows must end by the answer's next change (a price list starting or ending), or the CDN shows
 * the old price after it. Near a change the time left is split: half for replays, half for the CDN.
 */
export function sharedCaching(
  maxAgeSeconds: number,
  now: number,
  changesAt: number | undefined,
  expiresAt: number | undefined,
): { cacheControl: string; replayUntil: number | undefined } {
  let maxAge = maxAgeSeconds
  let stale = 2 * maxAgeSeconds
  let replayUntil = expiresAt
  if (changesAt !== undefined) {
    const left = Math.max(0, Math.floor((changesAt - now) / 1000))
    const downstream = Math.min(maxAge + stale, Math.floor(left / 2))
    maxAge = Math.min(maxAge, downstream)
    stale = Math.min(stale, downstream - maxAge)
    replayUntil = Math.min(expiresAt ?? Number.POSITIVE_INFINITY, changesAt - downstream * 1000)
  }
  return { cacheControl: `public, max-age=${maxAge}, stale-while-revalidate=${stale}`, replayUntil }
}

function rendered(value: unknown): CachedResponse {
  const body = Buffer.from(JSON.stringify(value))
  return { body, etag: etagOf(body), empty: value === null }
}

const caches = new WeakMap<Runtime, CatalogCache>()

/** The runtime's catalog cache: one per node, shared by its routes and jobs. */
export function catalogCacheOf(runtime: Runtime): CatalogCache {
  let cache = caches.get(runtime)
  if (!cache) {
    cache = new CatalogCache(
      runtime.kv,
      {
        enabled: runtime.config.catalogCache,
        ttlMs: runtime.config.catalogCacheTtlMs,
        maxEntries: runtime.config.catalogCacheMaxEntries,
      },
      runtime.logger,
    )
    caches.set(runtime, cache)
  }
  return cache
}
