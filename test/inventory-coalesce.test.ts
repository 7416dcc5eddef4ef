/**
 * Coalesced single-line reservations (coalesce.ts and inventory_reserve_batch) on each database:
 * reservations of one variant that arrive together are granted one by one in arrival order by the
 * same rule as a lone reservation (first location in priority order that covers the line), those
 * the batch declines fall back to the locking path with its own answer, a batch never crosses a
 * low-stock threshold without its alert, and the ledger stays balanced.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { inventoryContext } from '../src/modules/inventory/context.ts'
import { configureLevel } from '../src/modules/inventory/levels.ts'
import { type ReservationView, reserveNow } from '../src/modules/inventory/reservations.ts'
import { receiveStock } from '../src/modules/inventory/stock.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { ProblemError } from '../src/platform/http/errors.ts'
import { startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'
import { createTestLocation, createVariants, expectLedgerBalanced, levelOf } from './support/inventory.ts'

describeEachDatabase('coalesced reservations', (kind) => {
  let node: TestNode
  let first: string
  let second: string

  const db = () => node.runtime.database.db
  const ctx = () => inventoryContext(node.runtime, 'test:coalesce')
  const receive = (variant_id: string, location_id: string, quantity: number) =>
    withTransaction(db(), (trx) =>
      receiveStock(trx, ctx(), { location_id, lines: [{ variant_id, quantity, path: 'lines.0' }] }),
    )
  /** Starts every reservation in the same tick, so all but the first wait and go as one batch. */
  const reserveTogether = (variant_id: string, quantities: number[]) =>
    Promise.all(
      quantities.map((quantity, i) =>
        reserveNow(db(), { reference: `cart_${i}`, lines: [{ variant_id, quantity }] }, ctx()).then(
          (r: ReservationView) => r.lines.map((l) => l.location_id),
          (error: unknown) => (error instanceof ProblemError ? error.code : Promise.reject(error)),
        ),
      ),
    )

  beforeAll(async () => {
    node = await startTestNode(kind)
    first = await createTestLocation(db(), { code: 'first', priority: 1 })
    second = await createTestLocation(db(), { code: 'second', priority: 2 })
  })
  afterAll(() => node.close())

  it('grants each reservation in arrival order at the first location that covers it', async () => {
    const [v] = await createVariants(db(), 1)
    await receive(v!.id, first, 3)
    await receive(v!.id, second, 10)
    // 2 → first (1 left); then together: 2 → second (8 left), 1 → first (0 left), 20 → nowhere,
    // 1 → second (7 left). The 20 is declined by the batch and refused by the locking path.
    const results = await reserveTogether(v!.id, [2, 2, 1, 20, 1])
    expect(results).toEqual([[first], [second], [first], 'insufficient_stock', [second]])
    expect(await levelOf(db(), v!.id, first)).toMatchObject({ on_hand: 3, reserved: 3 })
    expect(await levelOf(db(), v!.id, second)).toMatchObject({ on_hand: 10, reserved: 3 })
    await expectLedgerBalanced(db())
  })

  it('sells exactly the stock there is to many shoppers at once', async () => {
    const [v] = await createVariants(db(), 1)
    await receive(v!.id, first, 25)
    const results = await reserveTogether(v!.id, Array(60).fill(1))
    expect(results.filter((r) => Array.isArray(r))).toHaveLength(25)
    expect(results.filter((r) => r === 'insufficient_stock')).toHaveLength(35)
    expect(await levelOf(db(), v!.id, first)).toMatchObject({ on_hand: 25, reserved: 25 })
    const reservations = await db()
      .selectFrom('inventory_reservation_lines as l')
      .innerJoin('inventory_reservations as r', 'r.id', 'l.reservation_id')
      .select(['r.id', 'r.created_at'])
      .where('l.variant_id', '=', v!.id)
      .execute()
    expect(new Set(reservations.map((r) => r.id)).size).toBe(25)
    // The first went alone and the rest together, in one transaction (one now()): coalesced.
    expect(new Set(reservations.map((r) => r.created_at.getTime())).size).toBe(2)
    await expectLedgerBalanced(db())
  })

  it('raises the low-stock alert once when a batch reaches the threshold', async () => {
    const [v] = await createVariants(db(), 1)
    await receive(v!.id, first, 8)
    await withTransaction(db(), (trx) =>
      configureLevel(trx, ctx(), { variant_id: v!.id, location_id: first }, { low_stock_threshold: 5 }),
    )
    // 8 → 7 alone; then 7 → 6 in the batch; the next two would reach 5 and go by the locking path.
    const results = await reserveTogether(v!.id, [1, 1, 1, 1])
    expect(results).toEqual([[first], [first], [first], [first]])
    expect(await levelOf(db(), v!.id, first)).toMatchObject({ on_hand: 8, reserved: 4 })
    const lows = await db()
      .selectFrom('events')
      .select('payload')
      .where('type', '=', 'inventory.low_stock')
      .where('subject_id', '=', v!.id)
      .execute()
    expect(lows).toHaveLength(1)
    expect(lows[0]!.payload).toMatchObject({ location_id: first, available: 5 })
    await expectLedgerBalanced(db())
  })

  it('holds nothing for a variant the catalog does not track', async () => {
    const [v] = await createVariants(db(), 1, { manageInventory: false })
    const results = await reserveTogether(v!.id, [1, 1, 1])
    for (const r of results) expect(r).toEqual([])
    const level = await db()
      .selectFrom('inventory_levels')
      .selectAll()
      .where('variant_id', '=', v!.id)
      .execute()
    expect(level).toEqual([])
  })
})
