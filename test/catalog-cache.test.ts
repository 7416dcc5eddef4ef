/**
 * The catalog cache's version reads, on the in-process store and on Redis: concurrent requests
 * share reads, yet a version bumped before a request began is always seen by that request.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { bumpCatalogVersion, CatalogCache } from '../src/modules/catalog/cache.ts'
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
