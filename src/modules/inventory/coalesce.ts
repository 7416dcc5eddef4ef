/**
 * Coalesces single-line reservations of the same variant made on this node at the same time.
 *
 * A hot SKU is bound by its level row: every reservation locks it, writes its rows and commits
 * before the next can go. Here the first reservation of a variant goes at once; those that arrive
 * while it runs wait for it and then go together as one call of inventory_reserve_batch (one lock,
 * one level update, one insert per table for all of them). Each request is still granted or declined
 * on its own by the same rule as the single-line path, under the row lock in PostgreSQL, so nodes
 * that coalesce separately stay correct against each other. If the batch statement fails, every
 * request in it is declined and its caller takes the locking path on its own, unless the
 * connection was lost (the commit may have happened): then every caller gets that error.
 */
import { type Kysely, sql } from 'kysely'
import { isConnectionError } from '../../platform/db/database.ts'
import type { DB } from '../../platform/db/schema.ts'
import { newId } from '../../platform/ids.ts'
import type { InventoryContext } from './context.ts'
import { type FastReservation, keyOf } from './locks.ts'

/** Where a coalesced reservation was made, or undefined when it was declined. */
export type Granted = { location_id: string; created_at: Date } | undefined

interface Waiting {
  r: FastReservation
  ctx: InventoryContext
  done: (granted: Granted) => void
  fail: (error: unknown) => void
}

/** Larger batches would only lengthen the one statement that holds the row. */
const MAX_BATCH = 256

const queuesByDb = new WeakMap<Kysely<DB>, Map<string, Waiting[]>>()

/**
 * Reserves `r` (one line, no caller transaction), sharing the statement with the other
 * reservations of the same variant, country and strategy that are waiting on this node.
 */
export function reserveCoalesced(
  db: Kysely<DB>,
  ctx: InventoryContext,
  r: FastReservation,
): Promise<Granted> {
  let queues = queuesByDb.get(db)
  if (!queues) {
    queues = new Map()
    queuesByDb.set(db, queues)
  }
  const key = `${r.variantId}|${r.countryCode ?? ''}|${r.strategy}`
  return new Promise<Granted>((done, fail) => {
    const waiting = queues.get(key)
    if (waiting) {
      waiting.push({ r, ctx, done, fail })
      return
    }
    const queue: Waiting[] = []
    queues.set(key, queue)
    void drain(db, queues, key, queue, [{ r, ctx, done, fail }])
  })
}

async function drain(
  db: Kysely<DB>,
  queues: Map<string, Waiting[]>,
  key: string,
  queue: Waiting[],
  first: Waiting[],
): Promise<void> {
  let batch = first
  while (batch.length > 0) {
    await runBatch(db, batch)
    batch = queue.splice(0, MAX_BATCH)
  }
  queues.delete(key)
}

async function runBatch(db: Kysely<DB>, batch: Waiting[]): Promise<void> {
  const head = batch[0]!.r
  const granted = new Map<number, { location_id: string; created_at: Date }>()
  try {
    const { rows } = await sql<{ idx: number; location_id: string; created_at: Date }>`
      select * from inventory_reserve_batch(${head.variantId}, ${head.countryCode}::text, ${head.strategy},
        ${batch.map((w) => w.r.reservationId)}::text[], ${batch.map((w) => w.r.lineId)}::text[],
        ${batch.map(() => newId('mov'))}::text[], ${batch.map((w) => w.r.reference)}::text[],
        ${batch.map((w) => w.r.expiresAt)}::timestamptz[], ${batch.map((w) => w.ctx.actor)}::text[],
        ${batch.map((w) => w.r.quantity)}::bigint[])`.execute(db)
    for (const row of rows) granted.set(row.idx - 1, row)
  } catch (error) {
    // A lost connection may have lost the commit or not: the callers must not reserve again.
    if (isConnectionError(error)) {
      for (const w of batch) w.fail(error)
      return
    }
    // Otherwise nothing was written: each caller retries alone on the locking path, which
    // reports its own error.
  }
  batch.forEach((w, i) => {
    const row = granted.get(i)
    if (row) w.ctx.touched.add(keyOf({ variant_id: head.variantId, location_id: row.location_id }))
    w.done(row ? { location_id: row.location_id, created_at: row.created_at } : undefined)
  })
}
