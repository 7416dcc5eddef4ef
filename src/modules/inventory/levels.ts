/** Reading stock levels and changing their settings (safety stock, low-stock threshold). */
import type { Kysely } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { decodeCursor, toPage } from '../../platform/http/pagination.ts'
import { findVariantsById } from '../catalog/variants.ts'
import { crossings, emitCrossings, sellable } from './alerts.ts'
import type { InventoryContext } from './context.ts'
import { requireLocations } from './locations.ts'
import { ensureAndLockLevels, keyOf, type LevelKey } from './locks.ts'

export interface LevelView {
  variant_id: string
  sku: string | null
  location_id: string
  on_hand: number
  reserved: number
  /** on_hand − reserved; negative only while backordered units wait for stock. */
  available: number
  safety_stock: number
  /** What may still be sold without backorder: available − safety stock. */
  sellable: number
  low_stock_threshold: number | null
  low_stock: boolean
  updated_at: string
}

interface LevelRow {
  variant_id: string
  location_id: string
  on_hand: number
  reserved: number
  safety_stock: number
  low_stock_threshold: number | null
  updated_at: Date
}

const columns = [
  'variant_id',
  'location_id',
  'on_hand',
  'reserved',
  'safety_stock',
  'low_stock_threshold',
  'updated_at',
] as const

async function views(db: Queryable, rows: LevelRow[]): Promise<LevelView[]> {
  const variants = await findVariantsById(db, [...new Set(rows.map((r) => r.variant_id))])
  const skus = new Map(variants.map((v) => [v.id, v.sku]))
  return rows.map((r) => ({
    variant_id: r.variant_id,
    sku: skus.get(r.variant_id) ?? null,
    location_id: r.location_id,
    on_hand: r.on_hand,
    reserved: r.reserved,
    available: r.on_hand - r.reserved,
    safety_stock: r.safety_stock,
    sellable: sellable(r),
    low_stock_threshold: r.low_stock_threshold,
    low_stock: r.low_stock_threshold !== null && r.on_hand - r.reserved <= r.low_stock_threshold,
    updated_at: r.updated_at.toISOString(),
  }))
}

/** The levels with these keys, as views; missing ones are absent. */
export async function levelsByKeys(db: Kysely<DB> | Tx, keys: LevelKey[]): Promise<LevelView[]> {
  if (keys.length === 0) return []
  const rows = await db
    .selectFrom('inventory_levels')
    .select(columns)
    .where((eb) =>
      eb.or(
        keys.map((k) => eb.and([eb('variant_id', '=', k.variant_id), eb('location_id', '=', k.location_id)])),
      ),
    )
    .orderBy('variant_id')
    .orderBy('location_id')
    .execute()
  return views(db, rows)
}

/** Lists levels by (variant, location), optionally for one variant or location, or low ones only. */
export async function listLevels(
  db: Queryable,
  options: { limit: number; cursor?: string; variantId?: string; locationId?: string; lowStock?: boolean },
): Promise<{ data: LevelView[]; next_cursor: string | null }> {
  let query = db
    .selectFrom('inventory_levels')
    .select(columns)
    .orderBy('variant_id')
    .orderBy('location_id')
    .limit(options.limit + 1)
  if (options.variantId) query = query.where('variant_id', '=', options.variantId)
  if (options.locationId) query = query.where('location_id', '=', options.locationId)
  if (options.lowStock) {
    query = query
      .where('low_stock_threshold', 'is not', null)
      .where((eb) => eb('low_stock_threshold', '>=', eb(eb.ref('on_hand'), '-', eb.ref('reserved'))))
  }
  if (options.cursor) {
    const [variantId, locationId] = decodeCursor(options.cursor, ['string', 'string']) as [string, string]
    query = query.where((eb) =>
      eb.or([
        eb('variant_id', '>', variantId),
        eb.and([eb('variant_id', '=', variantId), eb('location_id', '>', locationId)]),
      ]),
    )
  }
  const rows = await query.execute()
  const page = toPage(rows, options.limit, (r) => [r.variant_id, r.location_id])
  return { data: await views(db, page.data), next_cursor: page.next_cursor }
}

/**
 * Sets a level's safety stock and low-stock threshold (null clears it), creating the level at zero
 * when the variant has none at that location yet. `variant_path` is where the request named the
 * variant, for the unknown_variant a variant deleted meanwhile gets.
 */
export async function configureLevel(
  trx: Tx,
  ctx: InventoryContext,
  key: LevelKey & { variant_path?: string },
  settings: { safety_stock?: number | undefined; low_stock_threshold?: number | null | undefined },
): Promise<LevelView> {
  await requireLocations(trx, [key.location_id], ['body.location_id'])
  const locked = await ensureAndLockLevels(trx, [
    { ...key, variant_path: key.variant_path ?? 'body.variant_id' },
  ])
  const before = locked.get(keyOf(key))!
  const row = await trx
    .updateTable('inventory_levels')
    .set({
      ...(settings.safety_stock !== undefined ? { safety_stock: settings.safety_stock } : {}),
      ...(settings.low_stock_threshold !== undefined
        ? { low_stock_threshold: settings.low_stock_threshold }
        : {}),
      updated_at: new Date(),
    })
    .where('variant_id', '=', key.variant_id)
    .where('location_id', '=', key.location_id)
    .returning(columns)
    .executeTakeFirstOrThrow()
  // Lowering safety stock can put a level back in stock; that is a crossing like any other.
  await emitCrossings(
    trx,
    ctx,
    crossings(before, row).filter((c) => c.type === 'inventory.back_in_stock'),
  )
  ctx.touched.add(keyOf(key))
  return (await views(trx, [row]))[0]!
}
