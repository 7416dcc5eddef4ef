import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createKv, type Kv, MemoryKv, RedisKv } from './index.ts'

const redisUrl = process.env.REDIS_URL

/** Polls until `check` holds; timing-based tests wait exactly as long as they need, no longer. */
async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Collects messages delivered to a subscription. */
function collector(): { messages: string[]; handler: (message: string) => void } {
  const messages: string[] = []
  return { messages, handler: (message) => messages.push(message) }
}

/** The contract every Kv must meet; written once so both stores are held to the same behaviour. */
function kvConformance(name: string, open: () => Kv, cleanUp?: (kv: Kv) => Promise<void>): void {
  describe(`Kv conformance: ${name}`, () => {
    let kv: Kv

    beforeAll(async () => {
      kv = open()
      await kv.ping()
    })

    afterAll(async () => {
      await cleanUp?.(kv)
      await kv.close()
    })

    it('returns null for a missing key', async () => {
      expect(await kv.get('missing')).toBeNull()
    })

    it('sets, overwrites and deletes', async () => {
      await kv.set('k', 'one')
      expect(await kv.get('k')).toBe('one')
      await kv.set('k', 'two')
      expect(await kv.get('k')).toBe('two')
      await kv.delete('k')
      expect(await kv.get('k')).toBeNull()
      await kv.delete('k') // deleting a missing key is not an error
    })

    it('expires a key after its ttl, not before', async () => {
      const start = performance.now()
      await kv.set('ttl', 'v', 80)
      expect(await kv.get('ttl')).toBe('v')
      await waitFor(async () => (await kv.get('ttl')) === null)
      expect(performance.now() - start).toBeGreaterThanOrEqual(75)
    })

    it('keeps a key set without ttl, and a plain set clears an earlier ttl', async () => {
      await kv.set('forever', 'v')
      await kv.set('was-ttl', 'first', 50)
      await kv.set('was-ttl', 'second')
      // Relative check: once a 50 ms key has gone, the others have outlived a 50 ms ttl too.
      await kv.set('marker', 'm', 50)
      await waitFor(async () => (await kv.get('marker')) === null)
      expect(await kv.get('forever')).toBe('v')
      expect(await kv.get('was-ttl')).toBe('second')
    })

    it('rejects a non-positive ttl', async () => {
      await expect(kv.set('bad-ttl', 'v', 0)).rejects.toThrow(RangeError)
      await expect(kv.increment('bad-ttl', -1)).rejects.toThrow(RangeError)
    })

    it('increments from 1, by a step, and expires the counter after its ttl', async () => {
      expect(await kv.increment('counter', 200)).toBe(1)
      expect(await kv.increment('counter', 200)).toBe(2)
      expect(await kv.increment('counter', 200)).toBe(3)
      expect(await kv.get('counter')).toBe('3')
      expect(await kv.increment('counter', 200, 5)).toBe(8)
      await waitFor(async () => (await kv.get('counter')) === null)
      expect(await kv.increment('counter', 200)).toBe(1)
      expect(await kv.increment('stepped', 200, 10)).toBe(10)
    })

    it('uses a fixed window: later increments do not extend the expiry', async () => {
      // Incrementing every ~10 ms would keep a sliding window alive forever; a fixed one resets to 1.
      const start = performance.now()
      expect(await kv.increment('window', 80)).toBe(1)
      let value = 1
      await waitFor(async () => {
        value = await kv.increment('window', 80)
        return value === 1
      })
      expect(performance.now() - start).toBeGreaterThanOrEqual(75)
    })

    it('does not add an expiry when incrementing a key that already exists without one', async () => {
      await kv.set('persistent-counter', '10')
      expect(await kv.increment('persistent-counter', 50)).toBe(11)
      await kv.set('marker2', 'm', 50)
      await waitFor(async () => (await kv.get('marker2')) === null)
      expect(await kv.get('persistent-counter')).toBe('11')
    })

    it('rejects incrementing a value that is not an integer', async () => {
      await kv.set('text', 'abc')
      await expect(kv.increment('text', 1_000)).rejects.toThrow(/not an integer/)
      await kv.set('decimal', '1.5')
      await expect(kv.increment('decimal', 1_000)).rejects.toThrow(/not an integer/)
      expect(await kv.get('text')).toBe('abc')
    })

    it('gives concurrent increments distinct consecutive results', async () => {
      const results = await Promise.all(Array.from({ length: 200 }, () => kv.increment('concurrent', 10_000)))
      expect(results.sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1))
      expect(await kv.get('concurrent')).toBe('200')
    })

    it('delivers a published message to every subscriber, until they unsubscribe', async () => {
      const a = collector()
      const b = collector()
      const unsubscribeA = await kv.subscribe('news', a.handler)
      const unsubscribeB = await kv.subscribe('news', b.handler)

      await kv.publish('news', 'first')
      await waitFor(() => a.messages.length === 1 && b.messages.length === 1)
      expect(a.messages).toEqual(['first'])
      expect(b.messages).toEqual(['first'])

      await unsubscribeA()
      await unsubscribeA() // idempotent
      await kv.publish('news', 'second')
      // Both subscriptions are served by the same dispatch, so once b has it, a would have too.
      await waitFor(() => b.messages.length === 2)
      expect(b.messages).toEqual(['first', 'second'])
      expect(a.messages).toEqual(['first'])

      await unsubscribeB()
      const c = collector()
      const unsubscribeC = await kv.subscribe('news', c.handler)
      await kv.publish('news', 'third')
      await waitFor(() => c.messages.length === 1)
      expect(b.messages).toEqual(['first', 'second'])
      await unsubscribeC()
    })

    it('keeps channels apart and tolerates publishing with no subscribers', async () => {
      await kv.publish('nobody-listens', 'x')
      const other = collector()
      const mine = collector()
      const unsubscribeOther = await kv.subscribe('other', other.handler)
      const unsubscribeMine = await kv.subscribe('mine', mine.handler)
      await kv.publish('mine', 'hello')
      await kv.publish('other', 'marker')
      await waitFor(() => other.messages.length === 1)
      expect(other.messages).toEqual(['marker'])
      expect(mine.messages).toEqual(['hello'])
      await unsubscribeOther()
      await unsubscribeMine()
    })

    it('keeps delivering to other subscribers when one throws', async () => {
      const good = collector()
      const unsubscribeBad = await kv.subscribe('faulty', () => {
        throw new Error('subscriber bug')
      })
      const unsubscribeGood = await kv.subscribe('faulty', good.handler)
      await kv.publish('faulty', 'still delivered')
      await waitFor(() => good.messages.length === 1)
      await unsubscribeBad()
      await unsubscribeGood()
    })
  })
}

kvConformance('memory', () => new MemoryKv())

function uniquePrefix(): string {
  return `sw-test:${randomBytes(6).toString('hex')}:`
}

/** Removes what a test run left under its prefix, so runs do not accumulate keys in a shared Redis. */
async function purge(kv: RedisKv): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await kv.client.scan(cursor, 'MATCH', `${kv.keyPrefix}*`, 'COUNT', 500)
    if (keys.length > 0) await kv.client.unlink(...keys)
    cursor = next
  } while (cursor !== '0')
}

describe.runIf(redisUrl)('RedisKv', () => {
  kvConformance(
    'redis',
    () => new RedisKv(redisUrl!, { keyPrefix: uniquePrefix() }),
    (kv) => purge(kv as RedisKv),
  )

  describe('across nodes', () => {
    const prefix = uniquePrefix()
    let nodeA: RedisKv
    let nodeB: RedisKv

    beforeAll(() => {
      nodeA = new RedisKv(redisUrl!, { keyPrefix: prefix })
      nodeB = new RedisKv(redisUrl!, { keyPrefix: prefix })
    })

    afterAll(async () => {
      await purge(nodeA)
      await Promise.all([nodeA.close(), nodeB.close()])
    })

    it('delivers a message published on one node to subscribers on both', async () => {
      const onA = collector()
      const onB = collector()
      const unsubscribeA = await nodeA.subscribe('orders', onA.handler)
      const unsubscribeB = await nodeB.subscribe('orders', onB.handler)
      await nodeA.publish('orders', 'placed')
      await waitFor(() => onA.messages.length === 1 && onB.messages.length === 1)
      expect(onB.messages).toEqual(['placed'])
      await unsubscribeA()
      await unsubscribeB()
    })

    it('shares keys and counters between nodes', async () => {
      await nodeA.set('shared', 'from-a')
      expect(await nodeB.get('shared')).toBe('from-a')
      expect(await nodeA.increment('hits', 1_000)).toBe(1)
      expect(await nodeB.increment('hits', 1_000)).toBe(2)
    })

    it('isolates stores with different prefixes', async () => {
      const stranger = new RedisKv(redisUrl!, { keyPrefix: uniquePrefix() })
      try {
        await nodeA.set('private', 'v')
        expect(await stranger.get('private')).toBeNull()
        const heard = collector()
        const unsubscribe = await stranger.subscribe('orders', heard.handler)
        const own = collector()
        const unsubscribeOwn = await nodeA.subscribe('orders', own.handler)
        await nodeA.publish('orders', 'not for strangers')
        await stranger.publish('orders', 'for strangers')
        await waitFor(() => heard.messages.length === 1 && own.messages.length === 1)
        expect(heard.messages).toEqual(['for strangers'])
        expect(own.messages).toEqual(['not for strangers'])
        await unsubscribe()
        await unsubscribeOwn()
      } finally {
        await purge(stranger)
        await stranger.close()
      }
    })

    it('writes keys under the prefix, leaving the exposed client unprefixed', async () => {
      await nodeA.set('raw', 'v')
      expect(await nodeA.client.get(`${prefix}raw`)).toBe('v')
      expect(await nodeA.client.pttl(`${prefix}raw`)).toBe(-1)
      await nodeA.increment('raw-counter', 5_000)
      const ttl = await nodeA.client.pttl(`${prefix}raw-counter`)
      expect(ttl).toBeGreaterThan(0)
      expect(ttl).toBeLessThanOrEqual(5_000)
    })
  })
})

describe('createKv', () => {
  it('picks the in-process store without a Redis URL', async () => {
    const kv = createKv({})
    expect(kv.kind).toBe('memory')
    expect(kv).toBeInstanceOf(MemoryKv)
    await kv.close()
    await expect(kv.get('x')).rejects.toThrow(/closed/)
  })

  it.runIf(redisUrl)('picks Redis with a Redis URL', async () => {
    const kv = createKv({ redisUrl: redisUrl!, keyPrefix: uniquePrefix() })
    try {
      expect(kv.kind).toBe('redis')
      expect(kv).toBeInstanceOf(RedisKv)
      await kv.ping()
    } finally {
      await kv.close()
    }
  })
})
