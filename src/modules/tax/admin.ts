/**
 * Admin edits of the tax data: jurisdictions, effective-dated rates, categories and the rules
 * mapping categories to rate kinds. Rate writes lock their jurisdiction row first (lockJurisdiction)
 * so that two admins cannot create overlapping periods at the same time.
 */
import { sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { decodeCursor, toPage } from '../../platform/http/pagination.ts'
import { newId } from '../../platform/ids.ts'
import { countShippingOptionsInTaxCategory } from '../carts/shipping.ts'
import { countProductsInTaxCategory } from '../catalog/products.ts'
import type { RateKind } from './data/types.ts'
import { percentToPpm, ppmToPercent } from './rounding.ts'
import { jurisdictionOf, RATE_COLUMNS } from './service.ts'

export interface RateView {
  id: string
  jurisdiction: string
  kind: RateKind
  rate: string
  rate_ppm: number
  label: string
  valid_from: string
  valid_to: string | null
  postal_prefix: string | null
  source_name: string
  source_url: string
  origin: 'data' | 'admin'
}

function rateView(row: {
  id: string
  jurisdiction: string
  kind: RateKind
  rate_ppm: number
  label: string
  valid_from: string
  valid_to: string | null
  postal_prefix: string
  source_name: string
  source_url: string
  origin: 'data' | 'admin'
}): RateView {
  return { ...row, rate: ppmToPercent(row.rate_ppm), postal_prefix: row.postal_prefix || null }
}

/** Lists jurisdictions by code, optionally of one country. */
export async function listJurisdictions(
  db: Queryable,
  options: { limit: number; cursor?: string; country?: string },
) {
  let query = db
    .selectFrom('tax_jurisdictions')
    .selectAll()
    .orderBy('code')
    .limit(options.limit + 1)
  if (options.country) query = query.where('country', '=', options.country)
  if (options.cursor) query = query.where('code', '>', String(decodeCursor(options.cursor, ['string'])[0]))
  const rows = (await query.execute()).map((r) => ({
    ...jurisdictionOf(r),
    updated_at: r.updated_at.toISOString(),
  }))
  return toPage(rows, options.limit, (r) => [r.code])
}

/** A jurisdiction with its rates and category rules; undefined when unknown. */
export async function getJurisdiction(db: Queryable, code: string) {
  const row = await db.selectFrom('tax_jurisdictions').selectAll().where('code', '=', code).executeTakeFirst()
  if (!row) return undefined
  const [rates, rules] = await Promise.all([
    db
      .selectFrom('tax_rates')
      .select(RATE_COLUMNS)
      .where('jurisdiction', '=', code)
      .where('deleted_at', 'is', null)
      .orderBy('kind')
      .orderBy('valid_from')
      .execute(),
    db
      .selectFrom('tax_category_rules')
      .select(['category', 'rate_kind'])
      .where('jurisdiction', '=', code)
      .orderBy('category')
      .execute(),
  ])
  return {
    ...jurisdictionOf(row),
    updated_at: row.updated_at.toISOString(),
    rates: rates.map(rateView),
    category_rules: rules,
  }
}

/** Changes how a jurisdiction rounds, its nexus threshold or its source; marks it admin-managed. */
export async function updateJurisdiction(
  trx: Tx,
  code: string,
  patch: {
    rounding?: 'line' | 'invoice'
    nexus_threshold_usd?: number | null
    source_name?: string
    source_url?: string
  },
) {
  const row = await trx
    .updateTable('tax_jurisdictions')
    .set({ ...patch, origin: 'admin', updated_at: sql<Date>`now()` })
    .where('code', '=', code)
    .returning('code')
    .executeTakeFirst()
  return row ? getJurisdiction(trx, code) : undefined
}

/** Takes the jurisdiction's row lock; throws not_found (at `path`) when it does not exist. */
async function lockJurisdiction(trx: Tx, code: string, path: string): Promise<void> {
  const row = await trx
    .selectFrom('tax_jurisdictions')
    .select('code')
    .where('code', '=', code)
    .forUpdate()
    .executeTakeFirst()
  if (!row) {
    throw problem('unknown_country', `No tax jurisdiction ${code}`, {
      errors: [{ path, message: 'is not a known tax jurisdiction' }],
    })
  }
}

export interface RateInput {
  jurisdiction: string
  kind: Exclude<RateKind, 'zero' | 'exempt'>
  rate: string
  label: string
  valid_from: string
  valid_to?: string | null
  postal_prefix?: string | null
  source_name: string
  source_url: string
  /** Close the rate of the same kind in force on valid_from (open-ended, earlier) at valid_from. */
  supersede?: boolean
}

function ppmOf(rate: string): number {
  const ppm = percentToPpm(rate)
  if (ppm === undefined) {
    throw problem('validation_failed', 'rate must be a percent with at most 4 decimals, 0 to 100', {
      errors: [{ path: 'body.rate', message: 'must be a percent such as "19" or "9.975"' }],
    })
  }
  return ppm
}

function checkPeriod(from: string, to: string | null | undefined): void {
  if (to && to <= from) {
    throw problem('validation_failed', 'valid_to must be after valid_from', {
      errors: [{ path: 'body.valid_to', message: 'must be after valid_from' }],
    })
  }
}

/** Throws tax_rate_overlap when another live rate of the kind and place covers part of the period. */
async function assertNoOverlap(
  trx: Tx,
  rate: {
    jurisdiction: string
    kind: string
    postal_prefix: string
    valid_from: string
    valid_to: string | null
  },
  exceptId?: string,
): Promise<void> {
  let query = trx
    .selectFrom('tax_rates')
    .select(['id', sql<string>`valid_from::text`.as('valid_from')])
    .where('jurisdiction', '=', rate.jurisdiction)
    .where('kind', '=', rate.kind as RateKind)
    .where('postal_prefix', '=', rate.postal_prefix)
    .where('deleted_at', 'is', null)
    .where((eb) => eb.or([eb('valid_to', 'is', null), eb('valid_to', '>', rate.valid_from)]))
  if (rate.valid_to) query = query.where('valid_from', '<', rate.valid_to)
  if (exceptId) query = query.where('id', '!=', exceptId)
  const clash = await query.executeTakeFirst()
  if (clash) {
    throw problem(
      'tax_rate_overlap',
      `Rate ${clash.id} (from ${clash.valid_from}) covers part of this period`,
      {
        errors: [{ path: 'body.valid_from', message: `overlaps rate ${clash.id}` }],
      },
    )
  }
}

/** Creates a rate after checking its period against the others of its kind. */
export async function createRate(trx: Tx, input: RateInput): Promise<RateView> {
  await lockJurisdiction(trx, input.jurisdiction, 'body.jurisdiction')
  const ppm = ppmOf(input.rate)
  checkPeriod(input.valid_from, input.valid_to)
  const postal = input.postal_prefix ?? ''
  if (input.supersede) {
    await trx
      .updateTable('tax_rates')
      .set({ valid_to: input.valid_from, origin: 'admin', updated_at: sql<Date>`now()` })
      .where('jurisdiction', '=', input.jurisdiction)
      .where('kind', '=', input.kind)
      .where('postal_prefix', '=', postal)
      .where('deleted_at', 'is', null)
      .where('valid_to', 'is', null)
      .where('valid_from', '<', input.valid_from)
      .execute()
  }
  const row = { ...input, valid_to: input.valid_to ?? null, postal_prefix: postal }
  await assertNoOverlap(trx, row)
  const created = await trx
    .insertInto('tax_rates')
    .values({
      id: newId('txr'),
      jurisdiction: input.jurisdiction,
      kind: input.kind,
      rate_ppm: ppm,
      label: input.label,
      valid_from: input.valid_from,
      valid_to: row.valid_to,
      postal_prefix: postal,
      source_name: input.source_name,
      source_url: input.source_url,
      origin: 'admin',
      deleted_at: null,
    })
    .returning(RATE_COLUMNS)
    .executeTakeFirstOrThrow()
  return rateView(created)
}

/** A live rate by id. */
export async function getRate(db: Queryable, id: string): Promise<RateView | undefined> {
  const row = await db
    .selectFrom('tax_rates')
    .select(RATE_COLUMNS)
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirst()
  return row && rateView(row)
}

/** Lists live rates, filtered by jurisdiction, kind, or the date they apply on. */
export async function listRates(
  db: Queryable,
  options: { limit: number; cursor?: string; jurisdiction?: string; kind?: RateKind; on?: string },
) {
  let query = db
    .selectFrom('tax_rates')
    .select(RATE_COLUMNS)
    .where('deleted_at', 'is', null)
    .orderBy('id')
    .limit(options.limit + 1)
  if (options.jurisdiction) query = query.where('jurisdiction', '=', options.jurisdiction)
  if (options.kind) query = query.where('kind', '=', options.kind)
  if (options.on) {
    const on = options.on
    query = query
      .where('valid_from', '<=', on)
      .where((eb) => eb.or([eb('valid_to', 'is', null), eb('valid_to', '>', on)]))
  }
  if (options.cursor) query = query.where('id', '>', String(decodeCursor(options.cursor, ['string'])[0]))
  const rows = await query.execute()
  return toPage(rows.map(rateView), options.limit, (r) => [r.id])
}

/** Changes a rate; the new period is checked against the others. Undefined when unknown. */
export async function updateRate(
  trx: Tx,
  id: string,
  patch: Partial<
    Pick<RateInput, 'rate' | 'label' | 'valid_from' | 'valid_to' | 'source_name' | 'source_url'>
  >,
): Promise<RateView | undefined> {
  const current = await getRate(trx, id)
  if (!current) return undefined
  await lockJurisdiction(trx, current.jurisdiction, 'body.jurisdiction')
  const next = { ...current, ...patch, postal_prefix: current.postal_prefix ?? '' }
  checkPeriod(next.valid_from, next.valid_to)
  await assertNoOverlap(trx, { ...next, valid_to: next.valid_to ?? null }, id)
  const row = await trx
    .updateTable('tax_rates')
    .set({
      ...(patch.rate !== undefined ? { rate_ppm: ppmOf(patch.rate) } : {}),
      ...(patch.label !== undefined ? { label: patch.label } : {}),
      ...(patch.valid_from !== undefined ? { valid_from: patch.valid_from } : {}),
      ...(patch.valid_to !== undefined ? { valid_to: patch.valid_to } : {}),
      ...(patch.source_name !== undefined ? { source_name: patch.source_name } : {}),
      ...(patch.source_url !== undefined ? { source_url: patch.source_url } : {}),
      origin: 'admin',
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .returning(RATE_COLUMNS)
    .executeTakeFirstOrThrow()
  return rateView(row)
}

/** Deletes a rate (kept hidden, so a data update does not bring it back). False when unknown. */
export async function deleteRate(trx: Tx, id: string): Promise<boolean> {
  const row = await trx
    .updateTable('tax_rates')
    .set({ deleted_at: sql<Date>`now()`, origin: 'admin' })
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .returning('id')
    .executeTakeFirst()
  return row !== undefined
}

/** All categories (a short list: no paging). */
export async function listCategories(db: Queryable) {
  const rows = await db
    .selectFrom('tax_categories')
    .select(['code', 'name', 'default_kind', 'built_in'])
    .orderBy('code')
    .execute()
  return { data: rows, next_cursor: null }
}

/** Creates or renames a category; a built-in one keeps its default kind. */
export async function putCategory(trx: Tx, code: string, input: { name: string; default_kind: RateKind }) {
  const existing = await trx
    .selectFrom('tax_categories')
    .select('built_in')
    .where('code', '=', code)
    .executeTakeFirst()
  // A built-in category keeps its default kind: the shipped rules rely on it.
  if (existing?.built_in) {
    const row = await trx
      .updateTable('tax_categories')
      .set({ name: input.name })
      .where('code', '=', code)
      .returning(['code', 'name', 'default_kind', 'built_in'])
      .executeTakeFirstOrThrow()
    return row
  }
  return trx
    .insertInto('tax_categories')
    .values({ code, name: input.name, default_kind: input.default_kind })
    .onConflict((oc) => oc.column('code').doUpdateSet({ name: input.name, default_kind: input.default_kind }))
    .returning(['code', 'name', 'default_kind', 'built_in'])
    .executeTakeFirstOrThrow()
}

/**
 * Deletes a category the store added (with its rules); built-in ones stay, and so does one that
 * products or shipping options name: a cart holding such a product, or shipped with such an
 * option, could not be taxed. The row is locked for update before its users are counted: a
 * product or shipping option write naming the category key-share locks it (lockTaxCategories),
 * so one under way is waited for and counted, and one that comes after finds the category gone.
 */
export async function deleteCategory(trx: Tx, code: string): Promise<boolean> {
  const row = await trx
    .selectFrom('tax_categories')
    .select('built_in')
    .where('code', '=', code)
    .forUpdate()
    .executeTakeFirst()
  if (!row) return false
  if (row.built_in) throw problem('tax_category_built_in', `${code} is a built-in tax category`)
  const products = await countProductsInTaxCategory(trx, code)
  const options = await countShippingOptionsInTaxCategory(trx, code)
  if (products + options > 0) {
    const users = [
      ...(products > 0 ? [`${products} ${products === 1 ? 'product' : 'products'}`] : []),
      ...(options > 0 ? [`${options} ${options === 1 ? 'shipping option' : 'shipping options'}`] : []),
    ]
    throw problem(
      'tax_category_in_use',
      `${users.join(' and ')} ${products + options === 1 ? 'uses' : 'use'} tax category ${code}; ` +
        'move them to another category first',
    )
  }
  await trx.deleteFrom('tax_categories').where('code', '=', code).execute()
  return true
}

/** Sets which rate kind a category takes in a jurisdiction. */
export async function putCategoryRule(trx: Tx, jurisdiction: string, category: string, rateKind: RateKind) {
  await lockJurisdiction(trx, jurisdiction, 'params.jurisdiction')
  const known = await trx
    .selectFrom('tax_categories')
    .select('code')
    .where('code', '=', category)
    .executeTakeFirst()
  if (!known) {
    throw problem('unknown_tax_category', `No tax category ${category}`, {
      errors: [{ path: 'params.category', message: 'is not a known tax category' }],
    })
  }
  await trx
    .insertInto('tax_category_rules')
    .values({ jurisdiction, category, rate_kind: rateKind, origin: 'admin' })
    .onConflict((oc) =>
      oc.columns(['jurisdiction', 'category']).doUpdateSet({ rate_kind: rateKind, origin: 'admin' }),
    )
    .execute()
  return { jurisdiction, category, rate_kind: rateKind }
}

/** Removes a rule (the category's default applies again). False when there was none. */
export async function deleteCategoryRule(trx: Tx, jurisdiction: string, category: string): Promise<boolean> {
  const row = await trx
    .deleteFrom('tax_category_rules')
    .where('jurisdiction', '=', jurisdiction)
    .where('category', '=', category)
    .returning('category')
    .executeTakeFirst()
  return row !== undefined
}
