/**
 * Committed sales, as the tax module needs them: EU cross-border B2C sales for the EUR 10,000 OSS
 * threshold, and sales per US state for the economic-nexus report. The order module records a sale
 * when an order is placed (through a provider's commit) and voids it when the order is cancelled.
 * Each sale is kept in the currency it was priced in: an OSS return converts other currencies to
 * EUR at the rate of the last day of its period (oss-return.ts), which no one knows at checkout.
 */
import { sql } from 'kysely'
import { EU_MEMBER_STATES } from '../../platform/countries.ts'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { newId } from '../../platform/ids.ts'
import { OSS_THRESHOLD_EUR_CENTS } from './place-of-supply.ts'

export interface SaleRecord {
  /** The order's id: recording the same reference twice records it once. */
  reference: string
  date_of_supply: string
  origin_country: string
  customer: { country: string; region?: string }
  b2b: boolean
  currency: string
  net_amount: number
  tax_amount: number
  /**
   * The net amount in EUR cents at the date of supply, when the caller knows it, for a sale priced
   * in another currency: it then counts toward the OSS threshold at that value. Without it the
   * sale's value in EUR is unknown until a return converts it (see euDistanceSales).
   */
  eur_amount?: number
}

/** Records a committed sale (idempotent by reference). */
export async function recordSale(
  trx: Tx,
  sale: SaleRecord,
): Promise<{ id: string; eu_distance_sale: boolean }> {
  const { country, region } = sale.customer
  const euDistance =
    EU_MEMBER_STATES.has(sale.origin_country) &&
    EU_MEMBER_STATES.has(country) &&
    sale.origin_country !== country &&
    !sale.b2b
  // A sale is recorded whatever its currency: this runs when an order is placed, after payment.
  const eur = !euDistance ? null : sale.currency === 'EUR' ? sale.net_amount : (sale.eur_amount ?? null)
  const inserted = await trx
    .insertInto('tax_sales')
    .values({
      id: newId('txs'),
      reference: sale.reference,
      date_of_supply: sale.date_of_supply,
      origin_country: sale.origin_country,
      country,
      region: region ?? null,
      currency: sale.currency,
      net_amount: sale.net_amount,
      tax_amount: sale.tax_amount,
      eur_amount: eur,
      eu_distance_sale: euDistance,
      b2b: sale.b2b,
      voided_at: null,
    })
    .onConflict((oc) => oc.column('reference').doNothing())
    .returning(['id', 'eu_distance_sale'])
    .executeTakeFirst()
  if (inserted) return inserted
  return trx
    .selectFrom('tax_sales')
    .select(['id', 'eu_distance_sale'])
    .where('reference', '=', sale.reference)
    .executeTakeFirstOrThrow()
}

/** Whether the sale recorded under this reference has been voided (false when there is none). */
export async function isSaleVoided(db: Queryable, reference: string): Promise<boolean> {
  const row = await db
    .selectFrom('tax_sales')
    .select('voided_at')
    .where('reference', '=', reference)
    .executeTakeFirst()
  return Boolean(row?.voided_at)
}

/** Voids a recorded sale (order cancelled): it no longer counts. False when there is none. */
export async function voidSale(trx: Tx, reference: string): Promise<boolean> {
  const row = await trx
    .updateTable('tax_sales')
    .set({ voided_at: sql<Date>`coalesce(voided_at, now())` })
    .where('reference', '=', reference)
    .returning('id')
    .executeTakeFirst()
  return row !== undefined
}

/** A date as YYYY-MM-DD, the year zero-padded to four digits as PostgreSQL reads it (year 100 is 0100). */
export function isoDate(year: number, month: number, day: number): string {
  const pad = (n: number, width: number) => String(n).padStart(width, '0')
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}`
}

function yearBounds(year: number): [string, string] {
  return [isoDate(year, 1, 1), isoDate(year + 1, 1, 1)]
}

/** A calendar year's EU distance sales (B2C, cross-border). */
export interface EuDistanceSales {
  /** The sales valued in EUR (priced in EUR, or recorded with their EUR value), in EUR cents. */
  eur: number
  /** How many were priced in another currency and recorded without a value in EUR. */
  unvalued: number
}

/** EU distance sales (B2C, cross-border) for a calendar year. */
export async function euDistanceSales(db: Queryable, year: number): Promise<EuDistanceSales> {
  // Dates start in year 1: a date of supply in 0001 has no previous year to read.
  if (year < 1) return { eur: 0, unvalued: 0 }
  const [from, to] = yearBounds(year)
  const row = await db
    .selectFrom('tax_sales')
    .select([
      sql<string | number | null>`sum(eur_amount)`.as('total'),
      sql<string | number>`count(*) filter (where eur_amount is null)`.as('unvalued'),
    ])
    .where('eu_distance_sale', '=', true)
    .where('voided_at', 'is', null)
    .where('date_of_supply', '>=', from)
    .where('date_of_supply', '<', to)
    .executeTakeFirst()
  return { eur: Number(row?.total ?? 0), unvalued: Number(row?.unvalued ?? 0) }
}

/**
 * Where the store stands against the OSS threshold this year and last. A sale without a value in
 * EUR may have taken the store past it, so any such sale counts as passed, as the engine takes it.
 */
export async function ossStatus(db: Queryable, year: number) {
  const [current, previous] = await Promise.all([euDistanceSales(db, year), euDistanceSales(db, year - 1)])
  return {
    year,
    threshold_eur: OSS_THRESHOLD_EUR_CENTS,
    current_year_eur: current.eur,
    previous_year_eur: previous.eur,
    unvalued_sales: { current_year: current.unvalued, previous_year: previous.unvalued },
    passed:
      current.eur > OSS_THRESHOLD_EUR_CENTS ||
      previous.eur > OSS_THRESHOLD_EUR_CENTS ||
      current.unvalued + previous.unvalued > 0,
  }
}

export interface NexusRow {
  state: string
  name: string
  registered: boolean
  levies_tax: boolean
  threshold_usd: number | null
  /** Net sales into the state in USD cents in the year. */
  sales_usd: number
  transactions: number
  status: 'registered' | 'threshold_exceeded' | 'below_threshold' | 'no_sales_tax'
}

/**
 * US sales per state for a year against each state's economic-nexus threshold. Sales priced in a
 * currency other than USD are not converted and not counted (the report says how many there were).
 */
export async function nexusReport(db: Queryable, year: number) {
  const [from, to] = yearBounds(year)
  const [states, sales, registrations, settings] = await Promise.all([
    db
      .selectFrom('tax_jurisdictions')
      .select(['code', 'name', 'levies_tax', 'nexus_threshold_usd'])
      .where('country', '=', 'US')
      .where('subdivision', 'is not', null)
      .orderBy('code')
      .execute(),
    db
      .selectFrom('tax_sales')
      .select([
        'region',
        'currency',
        sql<string | number>`sum(net_amount)`.as('total'),
        sql<string | number>`count(*)`.as('count'),
      ])
      .where('country', '=', 'US')
      .where('voided_at', 'is', null)
      .where('date_of_supply', '>=', from)
      .where('date_of_supply', '<', to)
      .groupBy(['region', 'currency'])
      .execute(),
    db.selectFrom('tax_registrations').select('jurisdiction').where('jurisdiction', 'like', 'US-%').execute(),
    db
      .selectFrom('tax_settings')
      .select(['origin_country', 'origin_region'])
      .where('id', '=', 1)
      .executeTakeFirst(),
  ])
  const registered = new Set(registrations.map((r) => r.jurisdiction))
  if (settings?.origin_country === 'US' && settings.origin_region)
    registered.add(`US-${settings.origin_region}`)
  let uncounted = 0
  const byState = new Map<string, { total: number; count: number }>()
  for (const s of sales) {
    if (s.currency !== 'USD' || !s.region) {
      uncounted += Number(s.count)
      continue
    }
    byState.set(`US-${s.region}`, { total: Number(s.total), count: Number(s.count) })
  }
  const rows: NexusRow[] = states.map((s) => {
    const threshold = s.nexus_threshold_usd === null ? null : Number(s.nexus_threshold_usd)
    const own = byState.get(s.code) ?? { total: 0, count: 0 }
    const isRegistered = registered.has(s.code)
    const status: NexusRow['status'] = !s.levies_tax
      ? 'no_sales_tax'
      : isRegistered
        ? 'registered'
        : threshold !== null && own.total >= threshold * 100
          ? 'threshold_exceeded'
          : 'below_threshold'
    return {
      state: s.code,
      name: s.name,
      registered: isRegistered,
      levies_tax: s.levies_tax,
      threshold_usd: threshold,
      sales_usd: own.total,
      transactions: own.count,
      status,
    }
  })
  return { year, states: rows, uncounted_sales: uncounted }
}
