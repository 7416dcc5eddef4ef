/**
 * Inventory under concurrency, on real PostgreSQL with two nodes (each its own pool) sharing one
 * database: a flash sale through both nodes' HTTP servers never oversells; random concurrent
 * interleavings of every stock operation keep available ≥ 0 (or within the backorder limit) and
 * the ledger balanced; two +5 adjustments end at +10; two workers expire each reservation once.
 */
import fc from 'fast-check'
import { sql } from 'kysely'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type InventoryContext, inventoryContext } from '../src/modules/inventory/context.ts'
import { runReservationExpiry } from '../src/modules/inventory/jobs.ts'
import { setPolicy } from '../src/modules/inventory/policies.ts'
import {
  commitReservation,
  expireReservations,
  releaseReservation,
  reserve,
  reserveNow,
} from '../src/modules/inventory/reservations.ts'
import { adjustStock, receiveStock, transferStock } from '../src/modules/inventory/stock.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { ProblemError } from '../src/platform/http/errors.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { createTestDatabase, describePostgres, type TestDatabase } from './support/database.ts'
import { createTestLocation, createVariants, expectLedgerBalanced, levelOf } from './support/inventory.ts'

describePostgres('postgres: inventory under concurrency', () => {
  let database: TestDatabase
  let nodes: TestNode[]
  let urls: string[]
  let locations: string[]

  const db = () => nodes[0]!.runtime.database.db
  const ctxOf = (node: TestNode): InventoryContext => inventoryContext(node.runtime, 'test:concurrency')

  beforeAll(async () => {
    database = await createTestDatabase('postgres')
    const env = { RATE_LIMIT_PER_MINUTE: '1000000', DATABASE_POOL_MAX: '10' }
    // One after the other: the first migrates, the second finds the schema in place.
    nodes = [
      await startTestNode('postgres', { database, env }),
      await startTestNode('postgres', { database, env }),
    ]
    urls = []
    for (const node of nodes) urls.push(await node.app.listen({ port: 0, host: '127.0.0.1' }))
    locations = [
      await createTestLocation(db(), { code: 'north', priority: 1 }),
      await createTestLocation(db(), { code: 'south', priority: 2 }),
    ]
  })
  afterAll(async () => {
    for (const node of nodes ?? []) await node.close()
    await database?.drop()
  })

  it('flash sale: 500 attempts at 1 unit through two servers against 50 available sell exactly 50', async () => {
    const [v] = await createVariants(db(), 1)
    await withTransaction(db(), (trx) =>
      receiveStock(trx, ctxOf(nodes[0]!), {
        location_id: locations[0]!,
        lines: [{ variant_id: v!.id, quantity: 50, path: 'lines.0' }],
      }),
    )
    const attempt = async (i: number) => {
      const res = await fetch(`${urls[i % urls.length]}/admin/inventory/reservations`, {
        method: 'POST',
        headers: { ...adminAuth, 'content-type': 'application/json' },
        body: JSON.stringify({ reference: `cart_${i}`, lines: [{ sku: v!.sku, quantity: 1 }] }),
      })
      const body = (await res.json()) as { code?: string }
      return { status: res.status, code: body.code }
    }
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => attempt(i)))
    const statuses = new Map<string, number>()
    for (const r of results)
      statuses.set(`${r.status} ${r.code ?? ''}`, (statuses.get(`${r.status} ${r.code ?? ''}`) ?? 0) + 1)
    expect(statuses).toEqual(
      new Map([
        ['201 ', 50],
        ['409 insufficient_stock', 450],
      ]),
    )
    expect(await levelOf(db(), v!.id, locations[0]!)).toMatchObject({ on_hand: 50, reserved: 50 })
    const active = await db()
      .selectFrom('inventory_reservations')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('reference', 'like', 'cart_%')
      .where('status', '=', 'active')
      .executeTakeFirstOrThrow()
    expect(Number(active.n)).toBe(50)
    await expectLedgerBalanced(db())

    // Two workers expire them at once: each reservation is released exactly once.
    await db()
      .updateTable('inventory_reservations')
      .set({ expires_at: sql<Date>`now() - interval '1 second'` })
      .where('status', '=', 'active')
      .execute()
    const expired = await Promise.all([
      expireReservations(nodes[0]!.runtime.database.db, ctxOf(nodes[0]!), { batchSize: 7 }),
      expireReservations(nodes[1]!.runtime.database.db, ctxOf(nodes[1]!), { batchSize: 7 }),
      runReservationExpiry(nodes[0]!.runtime),
      runReservationExpiry(nodes[1]!.runtime),
    ])
    expect(expired.reduce((a, b) => a + b, 0)).toBe(50)
    const releases = await db()
      .selectFrom('inventory_movements')
      .select(['reservation_id'])
      .where('variant_id', '=', v!.id)
      .where('kind', '=', 'release')
      .execute()
    expect(releases).toHaveLength(50)
    expect(new Set(releases.map((r) => r.reservation_id)).size).toBe(50)
    expect(await levelOf(db(), v!.id, locations[0]!)).toMatchObject({ on_hand: 50, reserved: 0 })
    await expectLedgerBalanced(db())
  })

  it('two concurrent +5 adjustments end at +10, every time', async () => {
    const [v] = await createVariants(db(), 1)
    for (let round = 1; round <= 10; round++) {
      const results = await Promise.all(
        urls.map((url) =>
          fetch(`${url}/admin/inventory/adjustments`, {
            method: 'POST',
            headers: { ...adminAuth, 'content-type': 'application/json' },
            body: JSON.stringify({ sku: v!.sku, location_id: locations[1], delta: 5, reason: 'found' }),
          }),
        ),
      )
      expect(results.map((r) => r.status)).toEqual([201, 201])
      expect((await levelOf(db(), v!.id, locations[1]!)).on_hand).toBe(10 * round)
    }
    await expectLedgerBalanced(db())
  })

  it('random concurrent interleavings keep available ≥ 0 (or within the backorder limit) and the ledger balanced', async () => {
    const BACKORDER_LIMIT = 3
    const location = fc.constantFrom(0, 1)
    const variant = fc.constantFrom(0, 1)
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('receive' as const),
        v: variant,
        l: location,
        n: fc.integer({ min: 1, max: 5 }),
      }),
      fc.record({
        kind: fc.constant('reserve' as const),
        lines: fc.array(fc.record({ v: variant, n: fc.integer({ min: 1, max: 4 }) }), {
          minLength: 1,
          maxLength: 3,
        }),
        strategy: fc.constantFrom('priority' as const, 'nearest' as const, 'fewest_splits' as const),
        // reserveNow: the caller has no transaction, so a single line may take the one-statement path.
        now: fc.boolean(),
      }),
      fc.record({ kind: fc.constant('release' as const), k: fc.nat() }),
      fc.record({ kind: fc.constant('commit' as const), k: fc.nat() }),
      fc.record({
        kind: fc.constant('transfer' as const),
        v: variant,
        from: location,
        n: fc.integer({ min: 1, max: 4 }),
      }),
      fc.record({
        kind: fc.constant('adjust' as const),
        v: variant,
        l: location,
        delta: fc.integer({ min: -4, max: 5 }).filter((d) => d !== 0),
      }),
    )
    // Four clients, two on each node, each running its own sequence one operation at a time.
    const clients = fc.array(fc.array(op, { maxLength: 10 }), { minLength: 4, maxLength: 4 })

    await fc.assert(
      fc.asyncProperty(clients, async (sequences) => {
        const vs = await createVariants(db(), 2)
        const ids = vs.map((v) => v.id)
        await withTransaction(db(), (trx) =>
          setPolicy(trx, ids[1]!, { allow_backorder: true, backorder_limit: BACKORDER_LIMIT }),
        )
        await withTransaction(db(), (trx) =>
          receiveStock(trx, ctxOf(nodes[0]!), {
            location_id: locations[0]!,
            lines: ids.map((id, i) => ({ variant_id: id, quantity: 3, path: `lines.${i}` })),
          }),
        )
        const reservations: string[] = []
        const violations: string[] = []
        const check = async () => {
          const levels = await db()
            .selectFrom('inventory_levels')
            .selectAll()
            .where('variant_id', 'in', ids)
            .execute()
          for (const l of levels) {
            if (l.variant_id === ids[0] && l.on_hand - l.reserved < 0)
              violations.push(`available < 0: ${JSON.stringify(l)}`)
          }
          const promised = levels
            .filter((l) => l.variant_id === ids[1])
            .reduce((sum, l) => sum + Math.max(0, l.reserved - l.on_hand), 0)
          if (promised > BACKORDER_LIMIT) violations.push(`backordered ${promised} > ${BACKORDER_LIMIT}`)
        }
        let running = true
        const sampler = (async () => {
          while (running) await check()
        })()

        const run = async (node: TestNode, o: (typeof sequences)[number][number]) => {
          const { db: nodeDb } = node.runtime.database
          const ctx = ctxOf(node)
          if (o.kind === 'reserve' && o.now) {
            const input = {
              reference: 'prop',
              strategy: o.strategy,
              lines: o.lines.map((l) => ({ variant_id: ids[l.v]!, quantity: l.n })),
            }
            reservations.push((await reserveNow(nodeDb, input, ctx)).id)
            return
          }
          // Recorded only once committed: withTransaction may retry the body after a deadlock.
          const made = await withTransaction(nodeDb, async (trx) => {
            switch (o.kind) {
              case 'receive':
                return receiveStock(trx, ctx, {
                  location_id: locations[o.l]!,
                  lines: [{ variant_id: ids[o.v]!, quantity: o.n, path: 'lines.0' }],
                })
              case 'reserve':
                return reserve(
                  trx,
                  {
                    reference: 'prop',
                    strategy: o.strategy,
                    country: 'DE',
                    lines: o.lines.map((l) => ({ variant_id: ids[l.v]!, quantity: l.n })),
                  },
                  ctx,
                )
              case 'release':
              case 'commit': {
                const id = reservations[o.k % Math.max(1, reservations.length)]
                if (!id) return
                return o.kind === 'release'
                  ? releaseReservation(trx, id, ctx)
                  : commitReservation(trx, id, ctx)
              }
              case 'transfer':
                return transferStock(trx, ctx, {
                  variant_id: ids[o.v]!,
                  from_location_id: locations[o.from]!,
                  to_location_id: locations[1 - o.from]!,
                  quantity: o.n,
                })
              case 'adjust':
                return adjustStock(trx, ctx, {
                  variant_id: ids[o.v]!,
                  location_id: locations[o.l]!,
                  delta: o.delta,
                  reason: 'test',
                })
            }
          })
          if (o.kind === 'reserve' && made && 'id' in made && 'lines' in made) reservations.push(made.id)
        }
        const expected = new Set(['insufficient_stock', 'reservation_not_active'])
        try {
          await Promise.all(
            sequences.map(async (sequence, c) => {
              for (const o of sequence) {
                try {
                  await run(nodes[c % 2]!, o)
                } catch (error) {
                  if (!(error instanceof ProblemError && expected.has(error.code))) throw error
                }
              }
            }),
          )
        } finally {
          running = false
          await sampler
        }
        await check()
        expect(violations).toEqual([])
        await expectLedgerBalanced(db())
      }),
      { numRuns: 25 },
    )
  })
})
