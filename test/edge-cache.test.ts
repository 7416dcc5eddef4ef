/**
 * The edge cache over real HTTP (it sits in front of Fastify, so `inject` never meets it): public
 * catalog answers are replayed byte for byte with their own request id, answer If-None-Match with
 * 304, never outlive a catalog write (on this node or, with Redis, on another), and are never used
 * for requests with credentials, for another origin, or while the node drains.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { seedCatalog } from '../src/modules/catalog/seed.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { createTestDatabase, describeEachDatabase } from './support/database.ts'

interface Product {
  variants: { id: string; price: { amount: number } }[]
}

async function listen(node: TestNode): Promise<string> {
  return node.app.listen({ host: '127.0.0.1', port: 0 })
}

/** The node's count of answers replayed by the edge cache, read from its own /metrics. */
async function edgeHits(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith('http_edge_cache_hits_total '))
  return Number(line?.split(' ')[1])
}

async function euRegion(node: TestNode): Promise<string> {
  const region = await node.runtime.database.db
    .selectFrom('regions')
    .select('id')
    .where('currency_code', '=', 'EUR')
    .executeTakeFirstOrThrow()
  return region.id
}

async function setPrice(node: TestNode, variantId: string, amount: number): Promise<void> {
  const patch = await node.app.inject({
    method: 'PATCH',
    url: `/admin/variants/${variantId}`,
    headers: adminAuth,
    payload: { prices: [{ currency: 'EUR', amount }] },
  })
  expect(patch.statusCode, patch.body).toBe(200)
}

/** The response's headers without the ones that belong to one response. */
function lasting(res: Response): Record<string, string> {
  const headers = Object.fromEntries(res.headers)
  for (const name of ['date', 'x-request-id', 'keep-alive', 'connection']) delete headers[name]
  for (const name of Object.keys(headers)) if (name.startsWith('x-ratelimit-')) delete headers[name]
  return headers
}

describeEachDatabase('edge cache', (kind) => {
  let node: TestNode
  let base: string
  let product: string
  let variant: string

  beforeAll(async () => {
    node = await startTestNode(kind, { env: { CORS_ORIGINS: 'http://a.test,http://b.test' } })
    await seedCatalog(node.runtime, { products: 5 })
    base = await listen(node)
    const region = await euRegion(node)
    const [first] = (await node.app.inject(`/store/products?limit=1&region_id=${region}`)).json().data
    product = `${base}/store/products/${first.handle}?region_id=${region}`
    variant = (await node.app.inject(product.slice(base.length))).json().variants[0].id
  })
  afterAll(async () => {
    await node?.close()
  })

  it('replays a public answer byte for byte, with its own request id, and counts it', async () => {
    // beforeAll's inject went through Fastify and was kept too; a write makes it stale.
    await setPrice(node, variant, 7000)
    const before = await edgeHits(base)
    const first = await fetch(product)
    const firstBody = await first.text()
    expect(first.status).toBe(200)
    expect(first.headers.get('x-ratelimit-limit')).not.toBeNull()
    const second = await fetch(product, { headers: { 'x-request-id': 'trace-42' } })
    expect(second.status).toBe(200)
    expect(await second.text()).toBe(firstBody)
    expect(lasting(second)).toEqual(lasting(first))
    expect(second.headers.get('x-request-id')).toBe('trace-42')
    const third = await fetch(product)
    await third.text()
    expect(third.headers.get('x-request-id')).not.toBe(first.headers.get('x-request-id'))
    // The per-client rate-limit headers of the first answer are not replayed to others.
    expect(third.headers.get('x-ratelimit-remaining')).toBeNull()
    expect(await edgeHits(base)).toBe(before + 2)
  })

  it('answers a matching If-None-Match with 304 and no body', async () => {
    const fresh = await fetch(product)
    await fresh.text()
    const etag = fresh.headers.get('etag') as string
    const before = await edgeHits(base)
    const notModified = await fetch(product, { headers: { 'if-none-match': `W/${etag}` } })
    expect(notModified.status).toBe(304)
    expect(await edgeHits(base)).toBe(before + 1)
    expect(await notModified.text()).toBe('')
    expect(notModified.headers.get('etag')).toBe(etag)
    expect(notModified.headers.get('cache-control')).toMatch(/^public/)
  })

  it('shows a price change on the next read', async () => {
    for (const amount of [7101, 7202]) {
      await (await fetch(product)).text()
      await setPrice(node, variant, amount)
      expect(((await (await fetch(product)).json()) as Product).variants[0]?.price.amount).toBe(amount)
    }
  })

  it('keeps answers apart per allowed origin, and never answers requests with credentials', async () => {
    for (const origin of ['http://a.test', 'http://b.test', 'http://a.test', 'http://b.test']) {
      const res = await fetch(product, { headers: { origin } })
      await res.text()
      expect(res.headers.get('access-control-allow-origin')).toBe(origin)
      expect(res.headers.get('vary')).toBe('Origin, Authorization')
    }
    // A refused origin gets what a request without one gets (no CORS grant), from the same entry.
    await (await fetch(product)).text()
    const refusedBefore = await edgeHits(base)
    const refused = await fetch(product, { headers: { origin: 'http://evil.test' } })
    await refused.text()
    expect(refused.headers.get('access-control-allow-origin')).toBeNull()
    expect(await edgeHits(base)).toBe(refusedBefore + 1)
    const before = await edgeHits(base)
    const signedIn = await fetch(product, { headers: adminAuth })
    await signedIn.text()
    expect(signedIn.status).toBe(200)
    expect(await edgeHits(base)).toBe(before)
  })

  it('serves a price list from the moment it starts, without a write', async () => {
    const startsAt = new Date(Date.now() + 1_500)
    const list = await node.app.inject({
      method: 'POST',
      url: '/admin/price-lists',
      headers: adminAuth,
      payload: {
        name: 'Flash sale',
        starts_at: startsAt.toISOString(),
        prices: [{ variant_id: variant, currency: 'EUR', amount: 99 }],
      },
    })
    expect(list.statusCode, list.body).toBe(201)
    const before = ((await (await fetch(product)).json()) as Product).variants[0]?.price.amount
    expect(before).not.toBe(99)
    await (await fetch(product)).text()
    await new Promise((resolve) => setTimeout(resolve, startsAt.getTime() - Date.now() + 50))
    expect(((await (await fetch(product)).json()) as Product).variants[0]?.price.amount).toBe(99)
  })

  it('hands requests to the full pipeline while the node drains', async () => {
    await (await fetch(product)).text()
    const before = await edgeHits(base)
    node.runtime.draining = true
    try {
      const res = await fetch(product)
      await res.text()
      expect(res.status).toBe(200)
      expect(res.headers.get('connection')).toBe('close')
      expect(await edgeHits(base)).toBe(before)
    } finally {
      node.runtime.draining = false
    }
  })

  it('is off with EDGE_CACHE=false', async () => {
    const off = await startTestNode(kind, { env: { EDGE_CACHE: 'false' } })
    try {
      await seedCatalog(off.runtime, { products: 1 })
      const offBase = await listen(off)
      const url = `${offBase}/store/products?region_id=${await euRegion(off)}`
      for (let i = 0; i < 3; i++) expect((await fetch(url)).status).toBe(200)
      expect(await edgeHits(offBase)).toBe(0)
    } finally {
      await off.close()
    }
  })
})

describe.runIf(Boolean(process.env.TEST_DATABASE_URL && process.env.REDIS_URL))(
  'edge cache across nodes (PostgreSQL + Redis)',
  () => {
    it('shows a price change made on one node on the next read on another', async () => {
      const database = await createTestDatabase('postgres')
      const env = { REDIS_URL: process.env.REDIS_URL }
      const a = await startTestNode('postgres', { database, env })
      const b = await startTestNode('postgres', { database, env })
      try {
        await seedCatalog(a.runtime, { products: 3 })
        const region = await euRegion(a)
        const baseB = await listen(b)
        const [first] = (await a.app.inject(`/store/products?limit=1&region_id=${region}`)).json().data
        const url = `${baseB}/store/products/${first.handle}?region_id=${region}`
        const variantId = ((await (await fetch(url)).json()) as Product).variants[0]?.id as string
        for (const amount of [5151, 5252]) {
          await (await fetch(url)).text()
          await setPrice(a, variantId, amount)
          expect(((await (await fetch(url)).json()) as Product).variants[0]?.price.amount).toBe(amount)
        }
        expect(await edgeHits(baseB)).toBeGreaterThanOrEqual(1)
      } finally {
        await a.close()
        await b.close()
        await database.drop()
      }
    })
  },
)
