/**
 * Regions: a set of countries sold to in one currency, with prices shown including tax or not. A
 * country belongs to at most one region (region_countries' primary key), so the region for a
 * shipping address has exactly one answer.
 */
import { sql } from 'kysely'
import type { Static } from 'typebox'
import { isCountryCode } from '../../platform/countries.ts'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { type FieldError, problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import { isCurrency } from '../../platform/money.ts'
import type { CreateRegion, UpdateRegion } from './schemas.ts'

export interface RegionView {
  id: string
  name: string
  currency: string
  prices_include_tax: boolean
  countries: string[]
  metadata: Record<string, unknown>
  created_at: string
  updated_at: string
}

async function loadRegions(db: Queryable, id?: string): Promise<RegionView[]> {
  let query = db
    .selectFrom('regions')
    .select([
      'id',
      'name',
      'currency_code',
      'prices_include_tax',
      'metadata',
      'created_at',
      'updated_at',
      sql<string[]>`array(select rc.country_code from region_countries rc
        where rc.region_id = regions.id order by rc.country_code)`.as('countries'),
    ])
    .orderBy('name')
    .orderBy('id')
  if (id !== undefined) query = query.where('id', '=', id)
  const rows = await query.execute()
  return rows.map(({ currency_code, ...r }) => ({
    ...r,
    currency: currency_code,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
  }))
}

/** Every region by name, each with its countries sorted. */
export async function listRegions(db: Queryable): Promise<RegionView[]> {
  return loadRegions(db)
}

/** One region, or undefined. */
export async function getRegion(db: Queryable, id: string): Promise<RegionView | undefined> {
  const [region] = await loadRegions(db, id)
  return region
}

function checkRegionInput(input: { currency?: string; countries?: readonly string[] }): FieldError[] {
  const errors: FieldError[] = []
  if (input.currency !== undefined && !isCurrency(input.currency))
    errors.push({ path: 'body.currency', message: `${input.currency} is not a supported currency` })
  input.countries?.forEach((code, i) => {
    if (!isCountryCode(code))
      errors.push({ path: `body.countries[${i}]`, message: `${code} is not an ISO 3166-1 country code` })
  })
  return errors
}

function invalid(errors: FieldError[]) {
  return problem('validation_failed', `${errors[0]?.path} ${errors[0]?.message}`, { errors })
}

/**
 * Gives the countries to the region. A country another region holds is a 409 `conflict` naming it.
 * `on conflict do nothing` waits for a concurrent writer of the same country and then reports it
 * as taken, so two regions racing for one country cannot both get it, and no statement fails
 * inside the transaction.
 */
async function assignCountries(trx: Tx, regionId: string, countries: readonly string[]): Promise<void> {
  const inserted = await trx
    .insertInto('region_countries')
    .values(countries.map((country_code) => ({ country_code, region_id: regionId })))
    .onConflict((oc) => oc.column('country_code').doNothing())
    .returning('country_code')
    .execute()
  if (inserted.length === countries.length) return
  const got = new Set(inserted.map((r) => r.country_code))
  const taken = countries.map((code, i) => ({ code, i })).filter(({ code }) => !got.has(code))
  const owners = await trx
    .selectFrom('region_countries')
    .innerJoin('regions', 'regions.id', 'region_countries.region_id')
    .select(['region_countries.country_code', 'regions.name'])
    .where(
      'region_countries.country_code',
      'in',
      taken.map((t) => t.code),
    )
    .execute()
  const ownerOf = new Map(owners.map((o) => [o.country_code, o.name]))
  const names = taken.map(({ code }) => `${code} (${ownerOf.get(code) ?? 'another region'})`)
  throw problem('conflict', `Already in another region: ${names.join(', ')}`, {
    errors: taken.map(({ code, i }) => ({
      path: `body.countries[${i}]`,
      message: `${code} belongs to region ${ownerOf.get(code) ?? 'another region'}`,
    })),
  })
}

/** Creates a region with its countries and emits `region.created`. */
export async function createRegion(
  trx: Tx,
  outbox: Outbox,
  input: Static<typeof CreateRegion>,
): Promise<RegionView> {
  const errors = checkRegionInput(input)
  if (errors.length > 0) throw invalid(errors)
  const id = newId('reg')
  await trx
    .insertInto('regions')
    .values({
      id,
      name: input.name,
      currency_code: input.currency,
      prices_include_tax: input.prices_include_tax,
      metadata: JSON.stringify(input.metadata ?? {}),
    })
    .execute()
  await assignCountries(trx, id, input.countries)
  const region = (await getRegion(trx, id))!
  await outbox.emit(trx, 'region.created', { region }, id)
  return region
}

/**
 * Updates a region; `countries`, when given, replaces its countries. Emits `region.updated`;
 * undefined when the region is unknown.
 */
export async function updateRegion(
  trx: Tx,
  outbox: Outbox,
  id: string,
  input: Static<typeof UpdateRegion>,
): Promise<RegionView | undefined> {
  const errors = checkRegionInput(input)
  if (errors.length > 0) throw invalid(errors)
  const row = await trx
    .updateTable('regions')
    .set({
      ...(input.name !== undefined ? { name: input.name } : {}),
      ...(input.currency !== undefined ? { currency_code: input.currency } : {}),
      ...(input.prices_include_tax !== undefined ? { prices_include_tax: input.prices_include_tax } : {}),
      ...(input.metadata !== undefined ? { metadata: JSON.stringify(input.metadata) } : {}),
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .returning('id')
    .executeTakeFirst()
  if (!row) return undefined
  if (input.countries) {
    await trx.deleteFrom('region_countries').where('region_id', '=', id).execute()
    await assignCountries(trx, id, input.countries)
  }
  const region = (await getRegion(trx, id))!
  await outbox.emit(trx, 'region.updated', { region, changed: Object.keys(input) }, id)
  return region
}

/**
 * Deletes a region with its country list and emits `region.deleted`; a 409 while carts (kept after
 * checkout, as the record of what was bought where) still name it.
 */
export async function deleteRegion(trx: Tx, outbox: Outbox, id: string): Promise<boolean> {
  const deleted = await trx
    .deleteFrom('regions')
    .where('id', '=', id)
    .returning('id')
    .executeTakeFirst()
    .catch((error: unknown) => {
      // 23503 on PostgreSQL 15; 23001 (restrict_violation) where ON DELETE RESTRICT reports its own.
      const code = (error as { code?: string }).code
      if (code !== '23503' && code !== '23001') throw error
      throw problem('conflict', 'Carts were made in this region, so it cannot be deleted')
    })
  if (!deleted) return false
  await outbox.emit(trx, 'region.deleted', { id }, id)
  return true
}
