/**
 * Stock movements staff record: receipts, adjustments (with a reason), returns, transfers between
 * locations and cycle counts. Each locks the levels it changes in key order, checks against the
 * locked values, and appends its movements in the same transaction. A decrease may never take a
 * level below what is reserved there (release the reservations first). The routes resolve
 * variants and locations before the transaction: one deleted since is answered as unknown, as it
 * is when the delete comes first (ensureAndLockLevels, requireLocations).
 */
import type { Tx } from '../../platform/db/transaction.ts'
import { type FieldError, problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import type { InventoryContext } from './context.ts'
import { type LevelView, levelsByKeys } from './levels.ts'
import { requireLocations } from './locations.ts'
import { applyLevelChanges, ensureAndLockLevels, keyOf, type LevelChange, type LevelKey } from './locks.ts'

export interface MovementResult {
  operation_id: string
  levels: LevelView[]
}

/** Where a line came from in the request, for error paths. */
interface LinePaths {
  /** The field the checks report on (`body.lines.0.quantity`). */
  path: string
  /** The field that named its variant (`body.lines.0.sku`); `path` when not given. */
  variant_path?: string | undefined
}

const withVariantPath = <T extends LinePaths>(line: T) => ({
  ...line,
  variant_path: line.variant_path ?? line.path,
})

/**
 * Applies signed on-hand changes after checking, on the locked levels, that none goes below what
 * is reserved there; `insufficient_stock` names the offending lines otherwise.
 */
async function changeOnHand(
  trx: Tx,
  ctx: InventoryContext,
  lines: Array<LevelKey & LinePaths & { delta: number }>,
  movement: Pick<LevelChange, 'kind' | 'reason' | 'reference'>,
): Promise<MovementResult> {
  const locked = await ensureAndLockLevels(trx, lines.map(withVariantPath))
  const net = new Map<string, number>()
  for (const line of lines) net.set(keyOf(line), (net.get(keyOf(line)) ?? 0) + line.delta)
  const errors: FieldError[] = []
  for (const line of lines) {
    const level = locked.get(keyOf(line))!
    const after = level.on_hand + net.get(keyOf(line))!
    if (line.delta < 0 && after < level.reserved) {
      errors.push({
        path: line.path,
        message: `only ${Math.max(0, level.on_hand - level.reserved)} unreserved on hand here`,
      })
    }
  }
  if (errors.length)
    throw problem('insufficient_stock', 'Not enough unreserved stock; nothing was changed', { errors })
  const operationId = newId('op')
  const after = await applyLevelChanges(
    trx,
    ctx,
    lines
      .filter((l) => l.delta !== 0)
      .map((l) => ({
        variant_id: l.variant_id,
        location_id: l.location_id,
        on_hand_delta: l.delta,
        reserved_delta: 0,
        ...movement,
      })),
    operationId,
  )
  return { operation_id: operationId, levels: await levelsByKeys(trx, [...after.values()]) }
}

/** Records goods received at a location. */
export async function receiveStock(
  trx: Tx,
  ctx: InventoryContext,
  input: {
    location_id: string
    lines: Array<LinePaths & { variant_id: string; quantity: number }>
    reference?: string | null
  },
): Promise<MovementResult> {
  await requireLocations(trx, [input.location_id], ['body.location_id'])
  return changeOnHand(
    trx,
    ctx,
    input.lines.map((l) => ({
      variant_id: l.variant_id,
      location_id: input.location_id,
      delta: l.quantity,
      path: l.path,
      variant_path: l.variant_path,
    })),
    { kind: 'receipt', reference: input.reference ?? null },
  )
}

/** Records goods returned by a customer into a location's stock. */
export async function returnStock(
  trx: Tx,
  ctx: InventoryContext,
  input: {
    location_id: string
    variant_id: string
    quantity: number
    reference?: string | null
    reason?: string | null
    variant_path?: string
  },
): Promise<MovementResult> {
  await requireLocations(trx, [input.location_id], ['body.location_id'])
  return changeOnHand(
    trx,
    ctx,
    [
      {
        variant_id: input.variant_id,
        location_id: input.location_id,
        delta: input.quantity,
        path: 'body.quantity',
        variant_path: input.variant_path,
      },
    ],
    { kind: 'return', reference: input.reference ?? null, reason: input.reason ?? null },
  )
}

/** Adjusts on-hand stock by a signed delta, with the reason (damaged, found, …). */
export async function adjustStock(
  trx: Tx,
  ctx: InventoryContext,
  input: {
    location_id: string
    variant_id: string
    delta: number
    reason: string
    reference?: string | null
    variant_path?: string
  },
): Promise<MovementResult> {
  await requireLocations(trx, [input.location_id], ['body.location_id'])
  return changeOnHand(
    trx,
    ctx,
    [
      {
        variant_id: input.variant_id,
        location_id: input.location_id,
        delta: input.delta,
        path: 'body.delta',
        variant_path: input.variant_path,
      },
    ],
    { kind: 'adjustment', reason: input.reason, reference: input.reference ?? null },
  )
}

/** Moves stock between two locations: one transfer movement out, one in, in one transaction. */
export async function transferStock(
  trx: Tx,
  ctx: InventoryContext,
  input: {
    from_location_id: string
    to_location_id: string
    variant_id: string
    quantity: number
    reference?: string | null
    variant_path?: string
  },
): Promise<MovementResult> {
  if (input.from_location_id === input.to_location_id) {
    throw problem('validation_failed', 'A transfer needs two different locations', {
      errors: [{ path: 'body.to_location_id', message: 'must differ from from_location_id' }],
    })
  }
  await requireLocations(
    trx,
    [input.from_location_id, input.to_location_id],
    ['body.from_location_id', 'body.to_location_id'],
  )
  return changeOnHand(
    trx,
    ctx,
    [
      {
        variant_id: input.variant_id,
        location_id: input.from_location_id,
        delta: -input.quantity,
        path: 'body.quantity',
        variant_path: input.variant_path,
      },
      {
        variant_id: input.variant_id,
        location_id: input.to_location_id,
        delta: input.quantity,
        path: 'body.quantity',
        variant_path: input.variant_path,
      },
    ],
    { kind: 'transfer', reference: input.reference ?? null },
  )
}

/**
 * Records cycle counts: each level's on-hand becomes the counted figure, through a `cycle_count`
 * movement of the difference. A count is a fact about the shelf, so it is recorded even when it
 * leaves fewer units than are reserved; such a level then shows a negative available.
 */
export async function countStock(
  trx: Tx,
  ctx: InventoryContext,
  input: { counts: Array<LevelKey & LinePaths & { counted: number }>; reference?: string | null },
): Promise<MovementResult> {
  const seen = new Map<string, string>()
  const duplicates: FieldError[] = []
  for (const c of input.counts) {
    const earlier = seen.get(keyOf(c))
    if (earlier) duplicates.push({ path: c.path, message: `counts the same level as ${earlier}` })
    seen.set(keyOf(c), c.path)
  }
  if (duplicates.length)
    throw problem('validation_failed', 'A level is counted twice', { errors: duplicates })
  await requireLocations(
    trx,
    input.counts.map((c) => c.location_id),
    input.counts.map((c) => `${c.path}.location_id`),
  )
  const locked = await ensureAndLockLevels(trx, input.counts.map(withVariantPath))
  const operationId = newId('op')
  const after = await applyLevelChanges(
    trx,
    ctx,
    input.counts
      .map((c) => ({ c, delta: c.counted - locked.get(keyOf(c))!.on_hand }))
      .filter(({ delta }) => delta !== 0)
      .map(({ c, delta }) => ({
        variant_id: c.variant_id,
        location_id: c.location_id,
        kind: 'cycle_count' as const,
        on_hand_delta: delta,
        reserved_delta: 0,
        reference: input.reference ?? null,
      })),
    operationId,
  )
  const unchanged = input.counts.filter((c) => !after.has(keyOf(c))).map((c) => locked.get(keyOf(c))!)
  return { operation_id: operationId, levels: await levelsByKeys(trx, [...after.values(), ...unchanged]) }
}
