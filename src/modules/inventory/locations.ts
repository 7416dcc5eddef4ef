/** Stock locations: warehouses and stores, their address, priority and the countries they ship to. */
import { sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { type FieldError, problem } from '../../platform/http/errors.ts'
import { decodeCursor, toPage } from '../../platform/http/pagination.ts'
import { newId } from '../../platform/ids.ts'
import type { LocationAddress } from './tables.ts'

export interface LocationView {
  id: string
  code: string
  name: string
  priority: number
  address: LocationAddress
  ships_to: string[]
  active: boolean
  created_at: string
  updated_at: string
}

export interface LocationInput {
  code: string
  name: string
  priority?: number | undefined
  address: LocationAddress
  ships_to?: string[] | undefined
  active?: boolean | undefined
}

const columns = [
  'id',
  'code',
  'name',
  'priority',
  'address',
  'ships_to',
  'active',
  'created_at',
  'updated_at',
] as const

function view(row: {
  id: string
  code: string
  name: string
  priority: number
  address: LocationAddress
  ships_to: string[]
  active: boolean
  created_at: Date
  updated_at: Date
}): LocationView {
  return { ...row, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() }
}

const isUniqueViolation = (error: unknown) => (error as { code?: string } | null)?.code === '23505'

function codeTaken(code: string) {
  return problem('location_code_taken', `Another location has the code ${code}`, {
    errors: [{ path: 'body.code', message: 'is already in use' }],
  })
}

/** Creates a location. */
export async function createLocation(trx: Tx, input: LocationInput): Promise<LocationView> {
  try {
    const row = await trx
      .insertInto('stock_locations')
      .values({
        id: newId('loc'),
        code: input.code,
        name: input.name,
        priority: input.priority ?? 100,
        country_code: input.address.country_code,
        address: JSON.stringify(input.address),
        ships_to: [...new Set(input.ships_to ?? [])],
        active: input.active ?? true,
      })
      .returning(columns)
      .executeTakeFirstOrThrow()
    return view(row)
  } catch (error) {
    if (isUniqueViolation(error)) throw codeTaken(input.code)
    throw error
  }
}

/** Applies a partial update; undefined when the location is unknown. */
export async function updateLocation(
  trx: Tx,
  id: string,
  input: Partial<LocationInput>,
): Promise<LocationView | undefined> {
  try {
    const row = await trx
      .updateTable('stock_locations')
      .set({
        ...(input.code !== undefined ? { code: input.code } : {}),
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.priority !== undefined ? { priority: input.priority } : {}),
        ...(input.address !== undefined
          ? { address: JSON.stringify(input.address), country_code: input.address.country_code }
          : {}),
        ...(input.ships_to !== undefined ? { ships_to: [...new Set(input.ships_to)] } : {}),
        ...(input.active !== undefined ? { active: input.active } : {}),
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', id)
      .returning(columns)
      .executeTakeFirst()
    return row && view(row)
  } catch (error) {
    if (isUniqueViolation(error) && input.code) throw codeTaken(input.code)
    throw error
  }
}

/**
 * Deletes a location that holds nothing. One with stock or reservations is `location_in_use`
 * (deactivate it instead); its empty levels go with it. False when unknown.
 */
export async function deleteLocation(trx: Tx, id: string): Promise<boolean> {
  const location = await trx
    .selectFrom('stock_locations')
    .select('id')
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
  if (!location) return false
  const busy = await trx
    .selectFrom('inventory_levels')
    .select('variant_id')
    .where('location_id', '=', id)
    .where((eb) => eb.or([eb('on_hand', '<>', 0), eb('reserved', '<>', 0)]))
    .limit(1)
    .executeTakeFirst()
  const lines = await trx
    .selectFrom('inventory_reservation_lines')
    .select('id')
    .where('location_id', '=', id)
    .limit(1)
    .executeTakeFirst()
  if (busy || lines) {
    throw problem('location_in_use', 'The location holds stock or has reservations; deactivate it instead')
  }
  await trx.deleteFrom('inventory_levels').where('location_id', '=', id).execute()
  await trx.deleteFrom('stock_locations').where('id', '=', id).execute()
  return true
}

/** A location by id; undefined when unknown. */
export async function findLocation(db: Queryable, id: string): Promise<LocationView | undefined> {
  const row = await db.selectFrom('stock_locations').select(columns).where('id', '=', id).executeTakeFirst()
  return row && view(row)
}

/** Lists locations in the order allocation tries them: priority, then id. */
export async function listLocations(
  db: Queryable,
  options: { limit: number; cursor?: string },
): Promise<{ data: LocationView[]; next_cursor: string | null }> {
  let query = db
    .selectFrom('stock_locations')
    .select(columns)
    .orderBy('priority')
    .orderBy('id')
    .limit(options.limit + 1)
  if (options.cursor) {
    const [priority, id] = decodeCursor(options.cursor, ['number', 'string']) as [number, string]
    // Priorities are PostgreSQL integers: a number past them was not made by this list.
    if (Math.abs(priority) > 2_147_483_647)
      throw problem('invalid_cursor', 'The cursor does not belong to this list', {
        errors: [{ path: 'query.cursor', message: 'not a cursor from this list' }],
      })
    query = query.where((eb) =>
      eb.or([eb('priority', '>', priority), eb.and([eb('priority', '=', priority), eb('id', '>', id)])]),
    )
  }
  const rows = await query.execute()
  return toPage(rows.map(view), options.limit, (l) => [l.priority, l.id])
}

/**
 * Checks that every id names a location; `unknown_location` at the matching path otherwise. In a
 * transaction the locations stay key-share locked until it ends, so none can be deleted (taking
 * its empty levels with it) between this check and the writes that refer to it.
 */
export async function requireLocations(db: Queryable, ids: string[], paths: string[]): Promise<void> {
  const known = new Set(
    (
      await db
        .selectFrom('stock_locations')
        .select('id')
        .where('id', 'in', [...new Set(ids)])
        .orderBy('id')
        .forKeyShare()
        .execute()
    ).map((r) => r.id),
  )
  const errors: FieldError[] = []
  ids.forEach((id, i) => {
    if (!known.has(id)) errors.push({ path: paths[i]!, message: 'no stock location has this id' })
  })
  if (errors.length) throw problem('unknown_location', 'No stock location has this id', { errors })
}

/** Maps location codes or ids to ids; the ones that match nothing are absent. */
export async function locationIdsByRef(db: Queryable, refs: string[]): Promise<Map<string, string>> {
  const unique = [...new Set(refs)]
  if (unique.length === 0) return new Map()
  const rows = await db
    .selectFrom('stock_locations')
    .select(['id', 'code'])
    .where((eb) => eb.or([eb('id', 'in', unique), eb('code', 'in', unique)]))
    .execute()
  const map = new Map<string, string>()
  for (const row of rows) {
    map.set(row.code, row.id)
    map.set(row.id, row.id)
  }
  return map
}
