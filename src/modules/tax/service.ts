/**
 * Tax service: the functions other modules and the routes call to read tax data and settings, and
 * to calculate with the store's own context (origin, registrations, OSS sales to date).
 */
import { sql } from 'kysely'
import type { Logger } from 'pino'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import type { StoreTaxContext } from './place-of-supply.ts'
import {
  BuiltInTaxProvider,
  ExternalTaxProvider,
  type TaxProvider,
  type TaxServiceCalls,
} from './providers.ts'
import { euDistanceSales } from './sales.ts'
import { buildTaxData, type Jurisdiction, type Rate, type TaxData } from './tax-data.ts'

export const RATE_COLUMNS = [
  'id',
  'jurisdiction',
  'kind',
  'rate_ppm',
  'label',
  sql<string>`valid_from::text`.as('valid_from'),
  sql<string | null>`valid_to::text`.as('valid_to'),
  'postal_prefix',
  'source_name',
  'source_url',
  'origin',
] as const

/** Jurisdiction rows with their numbers as numbers (int8 arrives as text from some drivers). */
export function jurisdictionOf<T extends { nexus_threshold_usd: unknown }>(row: T): T & Jurisdiction {
  return {
    ...row,
    nexus_threshold_usd: row.nexus_threshold_usd === null ? null : Number(row.nexus_threshold_usd),
  } as T & Jurisdiction
}

/** Everything the engine needs, read from the database in one go. */
export async function loadTaxData(db: Queryable): Promise<TaxData> {
  const [settings, jurisdictions, rates, categories, rules] = await Promise.all([
    db.selectFrom('tax_settings').select('data_version').where('id', '=', 1).executeTakeFirst(),
    db.selectFrom('tax_jurisdictions').selectAll().execute(),
    db.selectFrom('tax_rates').select(RATE_COLUMNS).where('deleted_at', 'is', null).execute(),
    db.selectFrom('tax_categories').select(['code', 'default_kind']).execute(),
    db.selectFrom('tax_category_rules').select(['jurisdiction', 'category', 'rate_kind']).execute(),
  ])
  return buildTaxData({
    version: settings?.data_version ?? 'none',
    jurisdictions: jurisdictions.map(jurisdictionOf),
    rates: rates as Rate[],
    categories,
    rules,
  })
}

/**
 * The codes among `codes` that name a tax category. Each is key-share locked until the caller's
 * transaction ends: a write that stores a category code (a product's, a shipping option's) checks
 * it with this in its own transaction, so deleteCategory, which locks the row for update before it
 * counts the category's users, either waits for that write and counts it, or, committed first,
 * leaves the code unknown to it. Outside a transaction the locks go with the statement: a check, as a dry run's.
 */
export async function lockTaxCategories(db: Queryable, codes: Iterable<string>): Promise<Set<string>> {
  const wanted = [...new Set(codes)].sort()
  if (wanted.length === 0) return new Set()
  const rows = await db
    .selectFrom('tax_categories')
    .select('code')
    .where('code', 'in', wanted)
    .orderBy('code')
    .forKeyShare()
    .execute()
  return new Set(rows.map((r) => r.code))
}

export interface TaxSettingsView {
  origin_country: string | null
  origin_region: string | null
  oss_opt_in: boolean
  provider: 'builtin' | 'external'
  provider_url: string | null
  provider_timeout_ms: number
  data_version: string | null
  registrations: Array<{ jurisdiction: string; number: string | null }>
}

/** The store's tax settings and registrations. */
export async function getTaxSettings(db: Queryable): Promise<TaxSettingsView> {
  const row = await db
    .selectFrom('tax_settings')
    .select([
      'origin_country',
      'origin_region',
      'oss_opt_in',
      'provider',
      'provider_url',
      'provider_timeout_ms',
      'data_version',
    ])
    .where('id', '=', 1)
    .executeTakeFirst()
  const registrations = await db
    .selectFrom('tax_registrations')
    .select(['jurisdiction', 'number'])
    .orderBy('jurisdiction')
    .execute()
  return {
    origin_country: row?.origin_country ?? null,
    origin_region: row?.origin_region ?? null,
    oss_opt_in: row?.oss_opt_in ?? false,
    provider: row?.provider ?? 'builtin',
    provider_url: row?.provider_url ?? null,
    provider_timeout_ms: row?.provider_timeout_ms ?? 2000,
    data_version: row?.data_version ?? null,
    registrations,
  }
}

export interface SettingsPatch {
  origin_country?: string
  origin_region?: string | null
  oss_opt_in?: boolean
  provider?: 'builtin' | 'external'
  provider_url?: string | null
  provider_timeout_ms?: number
}

/** Changes the settings; the origin must be a jurisdiction with data, an external provider needs a URL. */
export async function updateTaxSettings(trx: Tx, patch: SettingsPatch): Promise<TaxSettingsView> {
  const current = await getTaxSettings(trx)
  const next = { ...current, ...patch }
  if (next.origin_country) {
    const code = next.origin_region ? `${next.origin_country}-${next.origin_region}` : next.origin_country
    const known = await trx
      .selectFrom('tax_jurisdictions')
      .select('code')
      .where('code', '=', code)
      .executeTakeFirst()
    if (!known) {
      throw problem('unknown_country', `No tax jurisdiction ${code}`, {
        errors: [
          {
            path:
              next.origin_region && patch.origin_region !== undefined
                ? 'body.origin_region'
                : 'body.origin_country',
            message: 'is not a jurisdiction with tax data',
          },
        ],
      })
    }
  }
  if (next.provider === 'external' && !next.provider_url) {
    throw problem('validation_failed', 'An external provider needs provider_url', {
      errors: [{ path: 'body.provider_url', message: 'is required when provider is external' }],
    })
  }
  await trx
    .insertInto('tax_settings')
    .values({ id: 1, origin_country: null, origin_region: null, provider_url: null, data_version: null })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute()
  await trx
    .updateTable('tax_settings')
    .set({ ...patch, updated_at: sql<Date>`now()` })
    .where('id', '=', 1)
    .execute()
  return getTaxSettings(trx)
}

/** Registers the store in a jurisdiction (VAT number, US nexus, PST/QST). */
export async function putRegistration(trx: Tx, jurisdiction: string, number: string | null) {
  const known = await trx
    .selectFrom('tax_jurisdictions')
    .select('code')
    .where('code', '=', jurisdiction)
    .executeTakeFirst()
  if (!known) throw problem('not_found', `No tax jurisdiction ${jurisdiction}`)
  await trx
    .insertInto('tax_registrations')
    .values({ jurisdiction, number })
    .onConflict((oc) => oc.column('jurisdiction').doUpdateSet({ number }))
    .execute()
  return { jurisdiction, number }
}

/** Removes a registration; false when there was none. */
export async function deleteRegistration(trx: Tx, jurisdiction: string): Promise<boolean> {
  const row = await trx
    .deleteFrom('tax_registrations')
    .where('jurisdiction', '=', jurisdiction)
    .returning('jurisdiction')
    .executeTakeFirst()
  return row !== undefined
}

/**
 * The store's side of a calculation: its origin and registrations from the settings, and its EU
 * distance sales for the calendar year of the date of supply and the year before (in EUR, and how
 * many have no value in EUR).
 */
export async function storeContext(db: Queryable, dateOfSupply: string): Promise<StoreTaxContext> {
  const settings = await getTaxSettings(db)
  if (!settings.origin_country) {
    throw problem('conflict', "Set the store's origin country first (PATCH /admin/tax/settings)")
  }
  const year = Number(dateOfSupply.slice(0, 4))
  const [current, previous] = await Promise.all([euDistanceSales(db, year), euDistanceSales(db, year - 1)])
  return {
    origin: { country: settings.origin_country, region: settings.origin_region ?? undefined },
    registrations: settings.registrations.map((r) => r.jurisdiction),
    oss_opt_in: settings.oss_opt_in,
    eu_distance_sales_eur: { current_year: current.eur, previous_year: previous.eur },
    eu_distance_sales_unvalued: { current_year: current.unvalued, previous_year: previous.unvalued },
  }
}

/**
 * The store's configured provider for a date of supply: the built-in engine over the current data,
 * or the external service with the built-in engine as its fallback.
 */
export async function taxProviderFor(
  db: Queryable,
  dateOfSupply: string,
  logger?: Logger,
  calls?: TaxServiceCalls,
): Promise<TaxProvider> {
  const [data, store, settings] = await Promise.all([
    loadTaxData(db),
    storeContext(db, dateOfSupply),
    getTaxSettings(db),
  ])
  const builtin = new BuiltInTaxProvider(data, store)
  if (settings.provider !== 'external' || !settings.provider_url) return builtin
  return new ExternalTaxProvider({
    url: settings.provider_url,
    timeoutMs: settings.provider_timeout_ms,
    fallback: builtin,
    logger,
    calls,
  })
}
