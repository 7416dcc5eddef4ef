/**
 * The live view: `/admin/inventory/stream` pushes committed level changes as Server-Sent Events,
 * on the node that made them and, through Redis pub/sub, on every other node; a client that does
 * not accept event streams gets 406. Storefront availability and the in-stock SQL filter agree.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { inStockSql, variantAvailability } from '../src/modules/inventory/availability.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { createTestDatabase, describeEachDatabase, type TestDatabase } from './support/database.ts'
import { createTestLocation, createVariants } from './support/inventory.ts'

/** Opens the stream and returns a reader of its events (`{ event, data }`). */
async function openStream(baseUrl: string, query = '') {
  const controller = new AbortController()
  const res = await fetch(`${baseUrl}/admin/inventory/stream${query}`, {
    headers: { ...adminAuth, accept: 'text/event-stream' },
    signal: controller.signal,
  })
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toContain('text/event-stream')
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  const next = async (): Promise<{ event: string; data: Record<string, unknown> }> => {
    for (;;) {
      const end = buffer.indexOf('\n\n')
      if (end >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const event = /^event: (.*)$/m.exec(block)?.[1]
        const data = /^data: (.*)$/m.exec(block)?.[1]
        if (event && data) return { event, data: JSON.parse(data) }
        continue
      }
      const { value, done } = await reader.read()
      if (done) throw new Error('stream ended')
      buffer += value
    }
  }
  /** The next `level` event matching the predicate. */
  const level = async (match: (data: Record<string, unknown>) => boolean) => {
    for (;;) {
      const e = await next()
      if (e.event === 'level' && match(e.data)) return e.data
    }
  }
  expect((await next()).event).toBe('ready')
  return { next, level, close: () => controller.abort() }
}

describeEachDatabase('inventory stream and availability', (kind) => {
  let node: TestNode
  let url: string

  beforeAll(async () => {
    node = await startTestNode(kind)
    url = await node.app.listen({ port: 0, host: '127.0.0.1' })
  })
  afterAll(() => node.close())

  it('answers 406 to a client that does not accept event streams', async () => {
    const res = await node.app.inject({ url: '/admin/inventory/stream', headers: adminAuth })
    expect(res.statusCode).toBe(406)
    expect(res.json().code).toBe('not_acceptable')
  })

  it('pushes a committed change to a connected dashboard', async () => {
    const db = node.runtime.database.db
    const [v, other] = await createVariants(db, 2)
    const location = await createTestLocation(db)
    const stream = await openStream(url, `?variant_id=${v!.id}`)
    try {
      for (const variant of [other!, v!]) {
        const res = await node.app.inject({
          method: 'POST',
          url: '/admin/inventory/receipts',
          headers: adminAuth,
          payload: { location_id: location, lines: [{ sku: variant.sku, quantity: 4 }] },
        })
        expect(res.statusCode).toBe(201)
      }
      // The filter drops the other variant's change: the first level event is this one's.
      const level = await stream.level(() => true)
      expect(level).toMatchObject({ variant_id: v!.id, location_id: location, on_hand: 4, available: 4 })
    } finally {
      stream.close()
    }
  })

  it('reports availability per variant and filters in-stock variants in SQL', async () => {
    const db = node.runtime.database.db
    const [stocked, empty, backorder, reserved] = await createVariants(db, 4)
    const [untracked] = await createVariants(db, 1, { manageInventory: false })
    const location = await createTestLocation(db, { ships_to: ['DE'] })
    const post = (url: string, payload: object, method: 'POST' | 'PUT' = 'POST') =>
      node.app.inject({ method, url, headers: adminAuth, payload })
    await post('/admin/inventory/receipts', {
      location_id: location,
      lines: [
        { sku: stocked!.sku, quantity: 5 },
        { sku: reserved!.sku, quantity: 2 },
      ],
    })
    await post('/admin/inventory/reservations', {
      reference: 'c',
      lines: [{ sku: reserved!.sku, quantity: 2 }],
    })
    await post(
      `/admin/inventory/variants/${backorder!.sku}/policy`,
      { allow_backorder: true, backorder_limit: 4 },
      'PUT',
    )
    const ids = [stocked!.id, empty!.id, backorder!.id, reserved!.id, untracked!.id, 'var_unknown']
    const availability = await variantAvailability(db, ids)
    expect(Object.fromEntries([...availability].map(([id, a]) => [id, [a.in_stock, a.available]]))).toEqual({
      [stocked!.id]: [true, 5],
      [empty!.id]: [false, 0],
      [backorder!.id]: [true, 4],
      [reserved!.id]: [false, 0],
      [untracked!.id]: [true, null],
      var_unknown: [false, 0],
    })
    const hidden = await variantAvailability(db, [stocked!.id], { exactCounts: false })
    expect(hidden.get(stocked!.id)).toMatchObject({ in_stock: true, available: null })
    const france = await variantAvailability(db, [stocked!.id], { country: 'FR' })
    expect(france.get(stocked!.id)).toMatchObject({ in_stock: false, available: 0 })

    const inStock = await db
      .selectFrom('product_variants')
      .select('id')
      .where('id', 'in', ids.slice(0, 5))
      .where(inStockSql('product_variants'))
      .execute()
    expect(new Set(inStock.map((r) => r.id))).toEqual(new Set([stocked!.id, backorder!.id, untracked!.id]))
  })
})

describe.runIf(Boolean(process.env.TEST_DATABASE_URL && process.env.REDIS_URL))(
  'postgres + redis: inventory stream across nodes',
  () => {
    let database: TestDatabase
    let nodes: TestNode[]

    beforeAll(async () => {
      database = await createTestDatabase('postgres')
      const env = { REDIS_URL: process.env.REDIS_URL }
      nodes = [
        await startTestNode('postgres', { database, env }),
        await startTestNode('postgres', { database, env }),
      ]
    })
    afterAll(async () => {
      for (const node of nodes ?? []) await node.close()
      await database?.drop()
    })

    it('pushes a change made on one node to a dashboard connected to another', async () => {
      const db = nodes[0]!.runtime.database.db
      const [v] = await createVariants(db, 1)
      const location = await createTestLocation(db)
      const url = await nodes[0]!.app.listen({ port: 0, host: '127.0.0.1' })
      const stream = await openStream(url, `?location_id=${location}`)
      try {
        const res = await nodes[1]!.app.inject({
          method: 'POST',
          url: '/admin/inventory/adjustments',
          headers: adminAuth,
          payload: { sku: v!.sku, location_id: location, delta: 3, reason: 'found' },
        })
        expect(res.statusCode).toBe(201)
        expect(await stream.level((d) => d.variant_id === v!.id)).toMatchObject({ on_hand: 3 })
      } finally {
        stream.close()
      }
    })
  },
)
