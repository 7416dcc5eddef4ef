/**
 * Reservations: stock held for a cart or an order until it is committed (sold, on fulfilment),
 * released (cancelled) or expires. The checkout calls `reserve`, `commitReservation` and
 * `releaseReservation` inside its own transaction; a refusal is a ProblemError, which rolls that
 * transaction back with nothing written.
 */
import { type Kysely, sql } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import { type Queryable, type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { decodeCursor, toPage } from '../../platform/http/pagination.ts'
import { newId } from '../../platform/ids.ts'
import { findVariantsById } from '../catalog/variants.ts'
import { sellable } from './alerts.ts'
import { allocate, type Candidate, type LineRequest, orderCandidates, type Strategy } from './allocation.ts'
import { reserveCoalesced } from './coalesce.ts'
import type { InventoryContext } from './context.ts'
import {
  applyLevelChanges,
  ensureLevels,
  type FastReservation,
  keyOf,
  type LevelChange,
  lockLevels,
  lockVariantLevels,
  reserveIfAvailable,
} from './locks.ts'
import { oversellLimit, policiesOf } from './policies.ts'
import type { ReservationStatus } from './tables.ts'

export interface ReserveInput {
  lines: Array<{ variant_id: string; quantity: number }>
  /** The cart or order this stock is held for. */
  reference: string
  /** When an unpaid hold lapses; null holds until committed or released. */
  expires_at?: Date | string | null | undefined
  /** ISO 3166 alpha-2 shipping country: only locations shipping there are used. */
  country?: string | null | undefined
  strategy?: Strategy | undefined
}

export interface ReservationLineView {
  id: string
  variant_id: string
  location_id: string
  quantity: number
  backordered: number
}

export interface ReservationView {
  id: string
  reference: string
  status: ReservationStatus
  expires_at: string | null
  country_code: string | null
  strategy: string
  created_by: string
  created_at: string
  updated_at: string
  lines: ReservationLineView[]
}

const MAX_QUANTITY = 1_000_000

/**
 * Reserves every line or nothing: an order that cannot be filled throws `insufficient_stock`
 * listing each short line (`lines.<i>.quantity`). Lines of the same variant are checked against
 * the same stock as one. Variants the catalog does not track are accepted without a hold.
 */
export async function reserve(
  trx: Tx,
  input: ReserveInput,
  ctx: InventoryContext,
  options: { skipFastPath?: boolean } = {},
): Promise<ReservationView> {
  const combined = combineLines(input)
  const id = newId('res')
  const strategy = input.strategy ?? 'priority'
  const country = input.country ?? null
  const expiresAt = input.expires_at ? new Date(input.expires_at) : null

  const single = combined.size === 1 && !options.skipFastPath ? fastInput(id, input, combined) : undefined
  if (single) {
    const level = await reserveIfAvailable(trx, ctx, single)
    if (level) return fastView(single, level, ctx)
  }

  const variants = await findVariantsById(trx, [...combined.keys()])
  const known = new Map(variants.map((v) => [v.id, v]))
  const unknown = [...combined].filter(([v]) => !known.has(v))
  if (unknown.length) {
    throw problem('unknown_variant', 'Some lines name variants that do not exist', {
      errors: unknown.map(([, { index }]) => ({
        path: `lines.${index}.variant_id`,
        message: 'no such variant',
      })),
    })
  }
  const tracked = [...combined.keys()].filter((v) => known.get(v)!.manage_inventory)
  const policies = await policiesOf(trx, tracked)
  const locations = await eligibleLocations(trx, country)
  await ensureBackorderLevels(trx, tracked, policies, locations, strategy, country)

  const locked = await lockVariantLevels(trx, tracked)
  const candidates = new Map<string, Candidate[]>(tracked.map((v) => [v, []]))
  const backordered = new Map<string, number>()
  for (const row of locked) {
    const promised = Math.max(0, row.reserved - Math.max(0, row.on_hand - row.safety_stock))
    backordered.set(row.variant_id, (backordered.get(row.variant_id) ?? 0) + promised)
    const location = locations.get(row.location_id)
    if (location) candidates.get(row.variant_id)!.push({ ...location, sellable: Math.max(0, sellable(row)) })
  }
  const requests: LineRequest[] = tracked.map((v) => ({
    variant_id: v,
    quantity: combined.get(v)!.quantity,
    oversell: Math.max(0, oversellLimit(policies.get(v)!) - (backordered.get(v) ?? 0)),
  }))
  const { allocations, shortfalls } = allocate(strategy, country, requests, candidates)
  if (shortfalls.length) {
    throw problem('insufficient_stock', 'Not enough stock for some lines; nothing was reserved', {
      errors: shortfalls.map((s) => ({
        path: `lines.${combined.get(s.variant_id)!.index}.quantity`,
        message: `only ${s.available} of ${s.requested} can be reserved`,
      })),
    })
  }

  const header = await trx
    .insertInto('inventory_reservations')
    .values({
      id,
      reference: input.reference,
      expires_at: expiresAt,
      country_code: country,
      strategy,
      created_by: ctx.actor,
    })
    .returning(['created_at', 'updated_at'])
    .executeTakeFirstOrThrow()
  const lines = allocations.map((a) => ({ id: newId('resl'), reservation_id: id, ...a }))
  if (lines.length) await trx.insertInto('inventory_reservation_lines').values(lines).execute()
  await applyLevelChanges(
    trx,
    ctx,
    allocations.map((a) => ({
      variant_id: a.variant_id,
      location_id: a.location_id,
      kind: 'reservation',
      on_hand_delta: 0,
      reserved_delta: a.quantity,
      reference: input.reference,
      reservation_id: id,
    })),
    id,
  )
  return {
    id,
    reference: input.reference,
    status: 'active',
    expires_at: expiresAt?.toISOString() ?? null,
    country_code: country,
    strategy,
    created_by: ctx.actor,
    created_at: header.created_at.toISOString(),
    updated_at: header.updated_at.toISOString(),
    lines: lines.map(({ reservation_id: _, ...line }) => line),
  }
}

type Combined = Map<string, { quantity: number; index: number }>

/** Sums lines of the same variant (checked against the same stock), remembering the first index. */
function combineLines(input: ReserveInput): Combined {
  const combined: Combined = new Map()
  input.lines.forEach((line, index) => {
    if (!Number.isSafeInteger(line.quantity) || line.quantity < 1 || line.quantity > MAX_QUANTITY) {
      throw problem('validation_failed', 'Quantities are whole numbers from 1 to 1,000,000', {
        errors: [{ path: `lines.${index}.quantity`, message: 'must be a whole number from 1 to 1000000' }],
      })
    }
    const entry = combined.get(line.variant_id)
    if (entry) entry.quantity += line.quantity
    else combined.set(line.variant_id, { quantity: line.quantity, index })
  })
  if (combined.size === 0) {
    throw problem('validation_failed', 'A reservation needs at least one line', {
      errors: [{ path: 'lines', message: 'must not be empty' }],
    })
  }
  return combined
}

function fastInput(id: string, input: ReserveInput, combined: Combined): FastReservation {
  const [variantId, { quantity }] = [...combined][0]!
  return {
    reservationId: id,
    lineId: newId('resl'),
    reference: input.reference,
    expiresAt: input.expires_at ? new Date(input.expires_at) : null,
    countryCode: input.country ?? null,
    strategy: input.strategy ?? 'priority',
    variantId,
    quantity,
  }
}

function fastView(
  r: FastReservation,
  level: { location_id: string; created_at: Date },
  ctx: InventoryContext,
): ReservationView {
  const at = level.created_at.toISOString()
  return {
    id: r.reservationId,
    reference: r.reference,
    status: 'active',
    expires_at: r.expiresAt?.toISOString() ?? null,
    country_code: r.countryCode,
    strategy: r.strategy,
    created_by: ctx.actor,
    created_at: at,
    updated_at: at,
    lines: [
      {
        id: r.lineId,
        variant_id: r.variantId,
        location_id: level.location_id,
        quantity: r.quantity,
        backordered: 0,
      },
    ],
  }
}

/**
 * reserve() for a caller with no transaction of its own (the admin route; a checkout that
 * reserves before it opens one): a single line that one location can fill is reserved in one
 * autocommitted statement, shared with the other reservations of the same variant waiting on this
 * node (coalesce.ts), which keeps a hot SKU's row locked for the shortest time; anything else runs
 * reserve() in a transaction of its own.
 */
export async function reserveNow(
  db: Kysely<DB>,
  input: ReserveInput,
  ctx: InventoryContext,
): Promise<ReservationView> {
  const combined = combineLines(input)
  if (combined.size === 1) {
    const single = fastInput(newId('res'), input, combined)
    const level = await reserveCoalesced(db, ctx, single)
    if (level) return fastView(single, level, ctx)
  }
  return withTransaction(db, (trx) => reserve(trx, input, ctx, { skipFastPath: combined.size === 1 }))
}

type EligibleLocation = Omit<Candidate, 'sellable'>

/** Active locations that ship to the country (all active ones when no country is given). */
async function eligibleLocations(trx: Tx, country: string | null): Promise<Map<string, EligibleLocation>> {
  let query = trx
    .selectFrom('stock_locations')
    .select(['id', 'priority', 'country_code'])
    .where('active', '=', true)
  if (country !== null) {
    query = query.where((eb) =>
      eb.or([eb(sql`cardinality(ships_to)`, '=', 0), eb(sql`${country}::text`, '=', sql`any (ships_to)`)]),
    )
  }
  const rows = await query.execute()
  return new Map(
    rows.map((r) => [r.id, { location_id: r.id, priority: r.priority, country_code: r.country_code }]),
  )
}

/**
 * A variant that may be backordered or preordered needs a level to hold the promise even before
 * any stock arrived: create one at its first eligible location when it has none there.
 */
async function ensureBackorderLevels(
  trx: Tx,
  tracked: string[],
  policies: Map<string, { allow_backorder: boolean; preorder: boolean }>,
  locations: Map<string, EligibleLocation>,
  strategy: Strategy,
  country: string | null,
): Promise<void> {
  const overselling = tracked.filter((v) => policies.get(v)!.allow_backorder || policies.get(v)!.preorder)
  if (overselling.length === 0 || locations.size === 0) return
  const existing = await trx
    .selectFrom('inventory_levels')
    .select(['variant_id', 'location_id'])
    .where('variant_id', 'in', overselling)
    .where('location_id', 'in', [...locations.keys()])
    .execute()
  const covered = new Set(existing.map((r) => r.variant_id))
  const first = orderCandidates(
    [...locations.values()].map((l) => ({ ...l, sellable: 0 })),
    strategy,
    country,
  )[0]!
  await ensureLevels(
    trx,
    overselling
      .filter((v) => !covered.has(v))
      .map((v) => ({ variant_id: v, location_id: first.location_id })),
  )
}

/** Moves an active reservation to `status`, or throws not_found / reservation_not_active. */
async function close(trx: Tx, id: string, status: ReservationStatus) {
  const row = await trx
    .updateTable('inventory_reservations')
    .set({ status, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('status', '=', 'active')
    .returning(['id', 'reference'])
    .executeTakeFirst()
  if (row) return row
  const existing = await trx
    .selectFrom('inventory_reservations')
    .select('status')
    .where('id', '=', id)
    .executeTakeFirst()
  if (!existing) throw problem('not_found', `No reservation ${id}`)
  throw problem('reservation_not_active', `Reservation ${id} is already ${existing.status}`)
}

async function linesOf(trx: Queryable, ids: string[]) {
  if (ids.length === 0) return []
  return trx
    .selectFrom('inventory_reservation_lines')
    .select(['id', 'reservation_id', 'variant_id', 'location_id', 'quantity', 'backordered'])
    .where('reservation_id', 'in', ids)
    .orderBy('id')
    .execute()
}

/**
 * Converts a reservation into a sale (on fulfilment): on_hand and reserved both go down. A line
 * still backordered whose stock has not arrived is `insufficient_stock`.
 */
export async function commitReservation(
  trx: Tx,
  id: string,
  ctx: InventoryContext,
): Promise<ReservationView> {
  const reservation = await close(trx, id, 'committed')
  const lines = await linesOf(trx, [id])
  const locked = await lockLevels(trx, lines)
  const needed = new Map<string, number>()
  for (const line of lines) needed.set(keyOf(line), (needed.get(keyOf(line)) ?? 0) + line.quantity)
  const short = lines.filter((line) => (locked.get(keyOf(line))?.on_hand ?? 0) < needed.get(keyOf(line))!)
  if (short.length) {
    throw problem('insufficient_stock', 'Backordered stock has not arrived yet', {
      errors: short.map((l) => ({
        path: `lines.${lines.indexOf(l)}.quantity`,
        message: 'not enough on hand to ship',
      })),
    })
  }
  await applyLevelChanges(
    trx,
    ctx,
    lines.map((l) => ({
      variant_id: l.variant_id,
      location_id: l.location_id,
      kind: 'sale',
      on_hand_delta: -l.quantity,
      reserved_delta: -l.quantity,
      reference: reservation.reference,
      reservation_id: id,
    })),
    newId('op'),
  )
  return (await findReservation(trx, id))!
}

/**
 * Keeps an active reservation until it is committed or released, under a new reference: an order
 * was placed against it, so it must no longer lapse. False when it is no longer active (it expired
 * or was released before the order could be placed).
 */
export async function holdReservation(trx: Tx, id: string, reference: string): Promise<boolean> {
  const row = await trx
    .updateTable('inventory_reservations')
    .set({ expires_at: null, reference, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('status', '=', 'active')
    .returning('id')
    .executeTakeFirst()
  return row !== undefined
}

/** Releases a reservation (cancelled cart or order): its stock becomes available again. */
export async function releaseReservation(
  trx: Tx,
  id: string,
  ctx: InventoryContext,
): Promise<ReservationView> {
  const reservation = await close(trx, id, 'released')
  await releaseLines(trx, ctx, await linesOf(trx, [id]), new Map([[id, reservation.reference]]), 'released')
  return (await findReservation(trx, id))!
}

async function releaseLines(
  trx: Tx,
  ctx: InventoryContext,
  lines: Array<{ reservation_id: string; variant_id: string; location_id: string; quantity: number }>,
  references: Map<string, string>,
  reason: string,
): Promise<void> {
  await lockLevels(trx, lines)
  const changes: LevelChange[] = lines.map((l) => ({
    variant_id: l.variant_id,
    location_id: l.location_id,
    kind: 'release',
    on_hand_delta: 0,
    reserved_delta: -l.quantity,
    reason,
    reference: references.get(l.reservation_id) ?? null,
    reservation_id: l.reservation_id,
  }))
  await applyLevelChanges(trx, ctx, changes)
}

/**
 * Expires due reservations in batches and returns how many it expired. Each is claimed with
 * `FOR UPDATE SKIP LOCKED` and flipped from active in the same statement, so two workers running
 * this at once split the work and never release the same reservation twice.
 */
export async function expireReservations(
  db: Kysely<DB>,
  ctx: InventoryContext,
  options: { batchSize?: number } = {},
): Promise<number> {
  const batchSize = options.batchSize ?? 200
  let total = 0
  for (;;) {
    const expired = await withTransaction(db, async (trx) => {
      const { rows } = await sql<{ id: string; reference: string }>`
        update inventory_reservations r
        set status = 'expired', updated_at = now()
        from (
          select id from inventory_reservations
          where status = 'active' and expires_at <= now()
          order by expires_at
          limit ${batchSize}
          for update skip locked
        ) due
        where r.id = due.id
        returning r.id, r.reference`.execute(trx)
      const references = new Map(rows.map((r) => [r.id, r.reference]))
      await releaseLines(trx, ctx, await linesOf(trx, [...references.keys()]), references, 'expired')
      return rows.length
    })
    total += expired
    if (expired < batchSize) return total
  }
}

/** A reservation with its lines; undefined when unknown. */
export async function findReservation(db: Queryable, id: string): Promise<ReservationView | undefined> {
  const row = await db
    .selectFrom('inventory_reservations')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirst()
  if (!row) return undefined
  return (await withLines(db, [row]))[0]
}

type ReservationRow = {
  id: string
  reference: string
  status: ReservationStatus
  expires_at: Date | null
  country_code: string | null
  strategy: string
  created_by: string
  created_at: Date
  updated_at: Date
}

async function withLines(db: Queryable, rows: ReservationRow[]): Promise<ReservationView[]> {
  const lines = await linesOf(
    db,
    rows.map((r) => r.id),
  )
  return rows.map((r) => ({
    id: r.id,
    reference: r.reference,
    status: r.status,
    expires_at: r.expires_at ? new Date(r.expires_at).toISOString() : null,
    country_code: r.country_code,
    strategy: r.strategy,
    created_by: r.created_by,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
    lines: lines.filter((l) => l.reservation_id === r.id).map(({ reservation_id: _, ...line }) => line),
  }))
}

/** Lists reservations newest first, by status, reference or variant. */
export async function listReservations(
  db: Queryable,
  options: {
    limit: number
    cursor?: string
    status?: ReservationStatus
    reference?: string
    variantId?: string
  },
): Promise<{ data: ReservationView[]; next_cursor: string | null }> {
  let query = db
    .selectFrom('inventory_reservations')
    .selectAll()
    .orderBy('id', 'desc')
    .limit(options.limit + 1)
  if (options.status) query = query.where('status', '=', options.status)
  if (options.reference) query = query.where('reference', '=', options.reference)
  if (options.variantId) {
    const variantId = options.variantId
    query = query.where('id', 'in', (eb) =>
      eb
        .selectFrom('inventory_reservation_lines')
        .select('reservation_id')
        .where('variant_id', '=', variantId),
    )
  }
  if (options.cursor) {
    const [lastId] = decodeCursor(options.cursor, ['string'])
    query = query.where('id', '<', String(lastId))
  }
  const rows = await query.execute()
  const page = toPage(rows, options.limit, (r) => [r.id])
  return { data: await withLines(db, page.data), next_cursor: page.next_cursor }
}
