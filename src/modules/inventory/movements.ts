/**
 * The movements ledger, read side: history with filters, and the drift report that checks every
 * level against the sum of its movements and against its active reservations.
 */
import { sql } from 'kysely'
import type { Queryable } from '../../platform/db/transaction.ts'
import { decodeCursor, toPage } from '../../platform/http/pagination.ts'
import type { MovementKind } from './tables.ts'

export interface MovementView {
  id: string
  operation_id: string
  variant_id: string
  location_id: string
  kind: MovementKind
  on_hand_delta: number
  reserved_delta: number
  reason: string | null
  reference: string | null
  reservation_id: string | null
  actor: string
  created_at: string
}

export interface MovementFilters {
  variantId?: string | undefined
  locationId?: string | undefined
  kind?: MovementKind | undefined
  reference?: string | undefined
  reservationId?: string | undefined
  since?: string | undefined
  until?: string | undefined
}

/** Lists movements newest first (ids sort by time), filtered. */
export async function listMovements(
  db: Queryable,
  options: MovementFilters & { limit: number; cursor?: string | undefined },
): Promise<{ data: MovementView[]; next_cursor: string | null }> {
  let query = db
    .selectFrom('inventory_movements')
    .selectAll()
    .orderBy('id', 'desc')
    .limit(options.limit + 1)
  if (options.variantId) query = query.where('variant_id', '=', options.variantId)
  if (options.locationId) query = query.where('location_id', '=', options.locationId)
  if (options.kind) query = query.where('kind', '=', options.kind)
  if (options.reference) query = query.where('reference', '=', options.reference)
  if (options.reservationId) query = query.where('reservation_id', '=', options.reservationId)
  if (options.since) query = query.where('created_at', '>=', new Date(options.since))
  if (options.until) query = query.where('created_at', '<', new Date(options.until))
  if (options.cursor) {
    const [lastId] = decodeCursor(options.cursor, ['string'])
    query = query.where('id', '<', String(lastId))
  }
  const rows = await query.execute()
  return toPage(
    rows.map((r) => ({ ...r, created_at: r.created_at.toISOString() })),
    options.limit,
    (m) => [m.id],
  )
}

export interface DriftRow {
  variant_id: string
  location_id: string
  on_hand: number
  reserved: number
  ledger_on_hand: number
  ledger_reserved: number
  /** Units held by active reservation lines at this level. */
  reservations_reserved: number
}

/**
 * Levels that disagree with their ledger (on_hand or reserved ≠ the sum of their movements) or
 * with their active reservations. Empty when the books balance.
 */
export async function driftReport(db: Queryable): Promise<{ checked: number; drift: DriftRow[] }> {
  const { rows } = await sql<DriftRow & { checked: number }>`
    with ledger as (
      select variant_id, location_id, sum(on_hand_delta) as on_hand, sum(reserved_delta) as reserved
      from inventory_movements group by variant_id, location_id
    ),
    held as (
      select l.variant_id, l.location_id, sum(l.quantity) as reserved
      from inventory_reservation_lines l
      join inventory_reservations r on r.id = l.reservation_id and r.status = 'active'
      group by l.variant_id, l.location_id
    ),
    compared as (
      select v.variant_id, v.location_id, v.on_hand, v.reserved,
        coalesce(m.on_hand, 0)::bigint as ledger_on_hand,
        coalesce(m.reserved, 0)::bigint as ledger_reserved,
        coalesce(h.reserved, 0)::bigint as reservations_reserved
      from inventory_levels v
      left join ledger m using (variant_id, location_id)
      left join held h using (variant_id, location_id)
    )
    select *, (select count(*) from inventory_levels) as checked from compared
    where on_hand <> ledger_on_hand or reserved <> ledger_reserved or reserved <> reservations_reserved
    order by variant_id, location_id`.execute(db)
  const checked =
    rows[0]?.checked ??
    Number(
      (
        await db
          .selectFrom('inventory_levels')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    )
  return { checked, drift: rows.map(({ checked: _, ...row }) => row) }
}
