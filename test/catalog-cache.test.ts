/**
 * The catalog cache's version reads, on the in-process store and on Redis: concurrent requests
 * share reads, yet a version bumped before a request began is always seen by that request.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { bumpCatalogVersion, CatalogCache, sharedCaching } from '../src/modules/catalog/cache.ts'
import { type Kv, MemoryKv, RedisKv } from '../src/platform/kv/index.ts'

const OPTIONS = { enabled: true, ttlMs: 60_000, maxEntries: 100 }

/**
 * Counts the store's reads, and can hold the answer of the next one back for a while (the read
 * itself goes out at once), as a slow network would; the store itself is unchanged.
 */
function counted(kv: Kv): {
  kv: Kv
  reads: () => number
  holdNextAnswer: (ms: number) => void
  failNextRead: () => void
} {
  let reads = 0
  let hold = 0
  let fail = false
  const get = kv.get.bind(kv)
  kv.get = async (key: string) => {
    reads++
    const ms = hold
    const failing = fail
    hold = 0
    fail = false
    const value = await get(key)
    if (ms) await new Promise((resolve) => setTimeout(resolve, ms))
    if (failing) throw new Error('connection lost')
    return value
  }
  return {
    kv,
    reads: () => reads,
    holdNextAnswer: (ms) => {
      hold = ms
    },
    failNextRead: () => {
      fail = true
    },
  }
}

const stores: Array<[string, () => Kv]> = [['memory', () => new MemoryKv()]]
if (process.env.REDIS_URL) {
  const url = process.env.REDIS_URL
  stores.push(['redis', () => new RedisKv(url, { keyPrefix: `sw-test-${randomBytes(4).toString('hex')}:` })])
}

describe.each(stores)('catalog cache versions (%s)', (_name, open) => {
  const opened: Kv[] = []
  afterAll(async () => {
    for (const kv of opened) await kv.close()
  })

  it('shares one read among requests that arrive while one is in flight', async () => {
    const { kv, reads } = counted(open())
    opened.push(kv)
    const cache = new CatalogCache(kv, OPTIONS)
    await bumpCatalogVersion(kv)
    const first = await cache.getOrRender('k', async () => ({ n: 1 }))
    const version = first.version as string
    const before = reads()
    const answers = await Promise.all(Array.from({ length: 50 }, () => cache.isCurrent(version)))
    expect(answers.every(Boolean)).toBe(true)
    // One read was already in flight when the others arrived; they share the one after it.
    expect(reads() - before).toBeLessThanOrEqual(2)
  })

  it('sees a bump made before the request began, even while an older read is in flight', async () => {
    const { kv, holdNextAnswer } = counted(open())
    opened.push(kv)
    const cache = new CatalogCache(kv, OPTIONS)
    const other = new CatalogCache(kv, OPTIONS) // another node, on the same store
    const version = (await cache.getOrRender('k', async () => ({ n: 1 }))).version as string
    for (let round = 0; round < 5; round++) {
      holdNextAnswer(100)
      const early = cache.isCurrent(version) // read before the bump, answered after it
      await other.invalidate() // the other node's write, bumped and acknowledged
      // Begun after the bump: must not ride on the early read.
      expect(await cache.isCurrent(version)).toBe(false)
      await early
      const next = (await cache.getOrRender(`k${round}`, async () => ({ n: round }))).version as string
      expect(next).not.toBe(version)
      expect(await cache.isCurrent(next)).toBe(true)
    }
  })

  it('fails the requests that shared a failed read, and reads afresh for the next ones', async () => {
    const { kv, holdNextAnswer, failNextRead } = counted(open())
    opened.push(kv)
    const cache = new CatalogCache(kv, OPTIONS)
    const version = (await cache.getOrRender('k', async () => ({ n: 1 }))).version as string
    holdNextAnswer(50)
    failNextRead()
    const inFlight = cache.isCurrent(version) // its read fails
    const queued = [cache.isCurrent(version), cache.isCurrent(version)] // the next read, which succeeds
    await expect(inFlight).rejects.toThrow('connection lost')
    expect(await Promise.all(queued)).toEqual([true, true])
    expect(await cache.isCurrent(version)).toBe(true)
  })
})

describe('when prices next change', () => {
  it('is read once per catalog version, again once that moment has come, and each second with the cache off', async () => {
    const kv = new MemoryKv()
    let reads = 0
    let next = Date.now() + 60_000
    const changes = async () => {
      reads++
      return next
    }
    const cache = new CatalogCache(kv, OPTIONS)
    const answers = await Promise.all(
      Array.from({ length: 5 }, (_, i) => cache.getOrRender(`k${i}`, async () => ({ i }), changes)),
    )
    expect(answers.map((a) => a.changesAt)).toEqual(Array(5).fill(next))
    expect(reads).toBe(1)
    // A price-list write bumps the version: the next answer reads afresh.
    next = Date.now() + 30_000
    await bumpCatalogVersion(kv)
    expect((await cache.getOrRender('k9', async () => ({}), changes)).changesAt).toBe(next)
    expect(reads).toBe(2)
    // The moment passing is a change of its own.
    next = Date.now() + 5
    await bumpCatalogVersion(kv)
    await cache.getOrRender('k10', async () => ({}), changes)
    await new Promise((resolve) => setTimeout(resolve, 20))
    next = Date.now() + 90_000
    expect((await cache.getOrRender('k11', async () => ({}), changes)).changesAt).toBe(next)
    expect(reads).toBe(4)

    // A bump lost to a KV outage: the moment is read again once an entry's lifetime has passed.
    const short = new CatalogCache(kv, { ...OPTIONS, ttlMs: 50 })
    reads = 0
    await short.getOrRender('s1', async () => ({}), changes)
    await short.getOrRender('s2', async () => ({}), changes)
    expect(reads).toBe(1)
    await new Promise((resolve) => setTimeout(resolve, 60))
    await short.getOrRender('s3', async () => ({}), changes)
    expect(reads).toBe(2)

    const off = new CatalogCache(kv, { ...OPTIONS, enabled: false })
    reads = 0
    await Promise.all([1, 2, 3].map((i) => off.getOrRender(`k${i}`, async () => ({ i }), changes)))
    expect(reads).toBe(1)
    await new Promise((resolve) => setTimeout(resolve, 1_050))
    await off.getOrRender('k4', async () => ({}), changes)
    expect(reads).toBe(2)
  })
})

describe('shared caching of catalog answers', () => {
  const windowOf = (header: string) => header.match(/\d+/g)?.map(Number) as [number, number]

  it('keeps the whole window when no price change is due', () => {
    expect(sharedCaching(30, 0, undefined, 60_000)).toEqual({
      cacheControl: 'public, max-age=30, stale-while-revalidate=60',
      replayUntil: 60_000,
    })
    expect(sharedCaching(30, 0, 3_600_000, 60_000)).toEqual({
      cacheControl: 'public, max-age=30, stale-while-revalidate=60',
      replayUntil: 60_000,
    })
  })

  it('ends every replay and what a CDN keeps from it by the next price-list start or end', () => {
    for (const left of [0, 999, 1_000, 5_500, 20_000, 45_000, 89_000, 90_000, 179_999, 180_000, 600_000]) {
      const now = 1_000_000
      const changesAt = now + left
      const { cacheControl, replayUntil } = sharedCaching(30, now, changesAt, now + 60_000)
      const [maxAge, stale] = windowOf(cacheControl)
      expect(maxAge).toBeLessThanOrEqual(30)
      expect(replayUntil).toBeGreaterThanOrEqual(now)
      expect((replayUntil as number) + (maxAge + stale) * 1000).toBeLessThanOrEqual(changesAt)
      if (left >= 180_000) expect([maxAge, stale]).toEqual([30, 60])
    }
  })
})
