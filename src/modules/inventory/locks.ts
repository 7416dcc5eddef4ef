/**
 * Every statement that locks stock rows or changes them conditionally lives here, so the
 * concurrency story can be audited in one file:
 *
 * - Rows are locked in (variant_id, location_id) order by every multi-row writer, so two writers
 *   never wait on each other in a cycle (withTransaction retries the rare deadlock anyway).
 * - A single-line reservation takes no lock up front: one conditional UPDATE re-checks the stock
 *   on the current row version under its row lock (READ COMMITTED re-evaluates the WHERE after a
 *   wait), and writes its reservation and ledger rows in the same statement, so the hot row is
 *   held only for that statement and the commit.
 * - Each level change appends its movement in the same transaction, so a level always equals the
 *   sum of its movements.
 */
import { sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { newId } from '../../platform/ids.ts'
import { holdVariants } from '../catalog/variants.ts'
import { crossings, emitCrossings, type LevelSnapshot } from './alerts.ts'
import type { InventoryContext } from './context.ts'
import type { MovementKind } from './tables.ts'
import { unknownVariants } from './variants.ts'

export interface LevelKey {
  variant_id: string
  location_id: string
}

export interface LockedLevel extends LevelSnapshot {}

/** A change to one level and the movement that records it. */
export interface LevelChange extends LevelKey {
  kind: MovementKind
  on_hand_delta: number
  reserved_delta: number
  reason?: string | null
  reference?: string | null
  reservation_id?: string | null
}

/** `variant_id|location_id`: a level's key as one string, for maps and the stream. */
export const keyOf = (k: LevelKey) => `${k.variant_id}|${k.location_id}`

function sortKeys<T extends LevelKey>(keys: T[]): T[] {
  return [...keys].sort((a, b) =>
    a.variant_id === b.variant_id
      ? a.location_id < b.location_id
        ? -1
        : a.location_id > b.location_id
          ? 1
          : 0
      : a.variant_id < b.variant_id
        ? -1
        : 1,
  )
}

function uniqueKeys(keys: LevelKey[]): LevelKey[] {
  const seen = new Map<string, LevelKey>()
  for (const k of keys) seen.set(keyOf(k), { variant_id: k.variant_id, location_id: k.location_id })
  return sortKeys([...seen.values()])
}

const levelColumns = [
  'variant_id',
  'location_id',
  'on_hand',
  'reserved',
  'safety_stock',
  'low_stock_threshold',
] as const

/**
 * Creates missing level rows at zero (in key order, so concurrent creators cannot deadlock) for
 * the variants that still exist, which stay key-share locked until commit. Callers resolve
 * variants before their transaction, so one may have been deleted since: its level is not created
 * (lockLevels then leaves it out, and the caller answers as for an unknown variant) rather than
 * the insert breaking the foreign key, and the lock keeps the others, and so their levels (which
 * cascade), from going before the write.
 */
export async function ensureLevels(trx: Tx, keys: LevelKey[]): Promise<void> {
  const unique = uniqueKeys(keys)
  if (unique.length === 0) return
  const held = await holdVariants(trx, [...new Set(unique.map((k) => k.variant_id))])
  const creatable = unique.filter((k) => held.has(k.variant_id))
  if (creatable.length === 0) return
  await trx
    .insertInto('inventory_levels')
    .values(creatable)
    .onConflict((oc) => oc.columns(['variant_id', 'location_id']).doNothing())
    .execute()
}

/**
 * Locks the given levels in key order and returns their current values. A level that does not
 * exist (its variant was deleted: see ensureLevels) is absent from the map.
 */
export async function lockLevels(trx: Tx, keys: LevelKey[]): Promise<Map<string, LockedLevel>> {
  const unique = uniqueKeys(keys)
  const locked = new Map<string, LockedLevel>()
  if (unique.length === 0) return locked
  const rows = await trx
    .selectFrom('inventory_levels')
    .select(levelColumns)
    .where((eb) =>
      eb.or(
        unique.map((k) =>
          eb.and([eb('variant_id', '=', k.variant_id), eb('location_id', '=', k.location_id)]),
        ),
      ),
    )
    .orderBy('variant_id')
    .orderBy('location_id')
    .forUpdate()
    .execute()
  for (const row of rows) locked.set(keyOf(row), row)
  return locked
}

/**
 * ensureLevels then lockLevels, for staff writes that name each key's variant at `variant_path`
 * (`body.lines.0.sku`), whose locations requireLocations has checked and so locked. A level
 * missing after both belongs to a variant deleted since the route resolved it: the write is
 * refused with unknown_variant, the answer it gets when the delete comes first, so every level
 * returned is there.
 */
export async function ensureAndLockLevels(
  trx: Tx,
  keys: Array<LevelKey & { variant_path: string }>,
): Promise<Map<string, LockedLevel>> {
  await ensureLevels(trx, keys)
  const locked = await lockLevels(trx, keys)
  const gone = keys.filter((k) => !locked.has(keyOf(k)))
  if (gone.length) throw unknownVariants(gone.map((k) => k.variant_path))
  return locked
}

/** Locks every level of these variants, in key order; the allocation reads them all. */
export async function lockVariantLevels(trx: Tx, variantIds: string[]): Promise<LockedLevel[]> {
  if (variantIds.length === 0) return []
  return trx
    .selectFrom('inventory_levels')
    .select(levelColumns)
    .where('variant_id', 'in', variantIds)
    .orderBy('variant_id')
    .orderBy('location_id')
    .forUpdate()
    .execute()
}

/**
 * Applies changes to levels the caller has locked (or that need no check, such as receipts), in
 * one UPDATE, appends one movement per change, and raises alerts for the levels that crossed a
 * line. Returns the levels after the change.
 */
export async function applyLevelChanges(
  trx: Tx,
  ctx: InventoryContext,
  changes: LevelChange[],
  operationId = newId('op'),
): Promise<Map<string, LockedLevel>> {
  const after = new Map<string, LockedLevel>()
  if (changes.length === 0) return after
  const totals = new Map<string, LevelKey & { on_hand: number; reserved: number }>()
  for (const c of changes) {
    const total = totals.get(keyOf(c)) ?? {
      variant_id: c.variant_id,
      location_id: c.location_id,
      on_hand: 0,
      reserved: 0,
    }
    total.on_hand += c.on_hand_delta
    total.reserved += c.reserved_delta
    totals.set(keyOf(c), total)
  }
  const deltas = sortKeys([...totals.values()])
  const { rows } = await sql<LockedLevel>`
    update inventory_levels l
    set on_hand = l.on_hand + d.on_hand, reserved = l.reserved + d.reserved, updated_at = now()
    from (values ${sql.join(
      deltas.map(
        (d) =>
          sql`(${d.variant_id}::text, ${d.location_id}::text, ${d.on_hand}::bigint, ${d.reserved}::bigint)`,
      ),
    )}) as d (variant_id, location_id, on_hand, reserved)
    where l.variant_id = d.variant_id and l.location_id = d.location_id
    returning l.variant_id, l.location_id, l.on_hand, l.reserved, l.safety_stock, l.low_stock_threshold`.execute(
    trx,
  )
  if (rows.length !== deltas.length) throw new Error('applyLevelChanges: a level to change does not exist')
  await trx
    .insertInto('inventory_movements')
    .values(
      changes.map((c) => ({
        id: newId('mov'),
        operation_id: operationId,
        variant_id: c.variant_id,
        location_id: c.location_id,
        kind: c.kind,
        on_hand_delta: c.on_hand_delta,
        reserved_delta: c.reserved_delta,
        reason: c.reason ?? null,
        reference: c.reference ?? null,
        reservation_id: c.reservation_id ?? null,
        actor: ctx.actor,
      })),
    )
    .execute()
  const found = []
  for (const row of rows) {
    const total = totals.get(keyOf(row))!
    const before = { ...row, on_hand: row.on_hand - total.on_hand, reserved: row.reserved - total.reserved }
    found.push(...crossings(before, row))
    after.set(keyOf(row), row)
    ctx.touched.add(keyOf(row))
  }
  await emitCrossings(trx, ctx, found)
  return after
}

export interface FastReservation {
  reservationId: string
  lineId: string
  reference: string
  expiresAt: Date | null
  countryCode: string | null
  strategy: string
  variantId: string
  quantity: number
}

/**
 * The single-line fast path: picks the first location (by the strategy's order) whose sellable
 * stock covers the quantity, reserves there with a conditional UPDATE, and writes the reservation,
 * its line and the movement in the same statement. Returns the level after the change, or
 * undefined when no location could fill the line whole (the caller then takes the locking path).
 *
 * Only variants the catalog marks manage_inventory qualify: this reads that flag straight from the
 * catalog's table (a read model), since a round trip through the catalog service would double
 * the statements on the hottest path.
 */
export async function reserveIfAvailable(
  trx: Tx,
  ctx: InventoryContext,
  r: FastReservation,
): Promise<(LockedLevel & { created_at: Date }) | undefined> {
  const row = await fastReservation(trx, ctx, r)
  if (!row) return undefined
  const { created_at: _, ...after } = row
  await emitCrossings(trx, ctx, crossings({ ...after, reserved: after.reserved - r.quantity }, after))
  return row
}

async function fastReservation(
  db: Queryable,
  ctx: InventoryContext,
  r: FastReservation,
): Promise<(LockedLevel & { created_at: Date }) | undefined> {
  // The statement itself is the function inventory_reserve_one (migration 0001): pick the
  // location, conditional UPDATE, then the reservation, line and movement rows.
  const { rows } = await sql<LockedLevel & { created_at: Date }>`
    select * from inventory_reserve_one(${r.reservationId}, ${r.lineId}, ${newId('mov')}, ${r.reference},
      ${r.expiresAt}::timestamptz, ${r.countryCode}::text, ${r.strategy}, ${ctx.actor}, ${r.variantId},
      ${r.quantity}::bigint, true)`.execute(db)
  const row = rows[0]
  if (!row) return undefined
  ctx.touched.add(keyOf({ variant_id: r.variantId, location_id: row.location_id }))
  return { ...row, variant_id: r.variantId }
}
