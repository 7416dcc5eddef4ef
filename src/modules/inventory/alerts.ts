/**
 * Stock alerts: `inventory.low_stock` when a level's available quantity falls to or below its
 * threshold, `inventory.back_in_stock` when its sellable quantity rises above zero. Both fire on the
 * crossing only (the change that moved the level across the line), computed from the level before
 * and after one locked update, so a run of sales below the threshold raises one event, not many.
 */
import type { Tx } from '../../platform/db/transaction.ts'
import type { InventoryContext } from './context.ts'

export interface LevelSnapshot {
  variant_id: string
  location_id: string
  on_hand: number
  reserved: number
  safety_stock: number
  low_stock_threshold: number | null
}

export interface Crossing {
  type: 'inventory.low_stock' | 'inventory.back_in_stock'
  level: LevelSnapshot
}

/** The alerts a change from `before` to `after` (the same level) raises. */
export function crossings(before: LevelSnapshot, after: LevelSnapshot): Crossing[] {
  const found: Crossing[] = []
  const threshold = after.low_stock_threshold
  const availableBefore = before.on_hand - before.reserved
  const availableAfter = after.on_hand - after.reserved
  if (threshold !== null && availableBefore > threshold && availableAfter <= threshold) {
    found.push({ type: 'inventory.low_stock', level: after })
  }
  if (sellable(before) <= 0 && sellable(after) > 0)
    found.push({ type: 'inventory.back_in_stock', level: after })
  return found
}

/** Units that may still be sold from a level without backorder. */
export function sellable(level: Pick<LevelSnapshot, 'on_hand' | 'reserved' | 'safety_stock'>): number {
  return level.on_hand - level.reserved - level.safety_stock
}

/** Emits each crossing through the outbox, in the caller's transaction. */
export async function emitCrossings(trx: Tx, ctx: InventoryContext, found: Crossing[]): Promise<void> {
  for (const { type, level } of found) {
    if (type === 'inventory.back_in_stock') ctx.availabilityChanged = true
    await ctx.outbox.emit(
      trx,
      type,
      {
        variant_id: level.variant_id,
        location_id: level.location_id,
        on_hand: level.on_hand,
        reserved: level.reserved,
        available: level.on_hand - level.reserved,
        low_stock_threshold: level.low_stock_threshold,
      },
      level.variant_id,
    )
  }
}
