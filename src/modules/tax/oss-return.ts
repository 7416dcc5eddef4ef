/**
 * The figures of an OSS return for a quarter: the store's EU distance sales per member state of
 * consumption, in EUR. A sale priced in another currency is converted at the exchange rate of the
 * quarter's last day (Article 369h(2) of Directive 2006/112/EC: the ECB's rate for that day, or of
 * its next publication), which the caller gives: the tax module keeps no exchange rates, and a
 * rate that is missing is refused with the currency named, never guessed.
 */
import { sql } from 'kysely'
import type { Queryable } from '../../platform/db/transaction.ts'
import { type FieldError, problem } from '../../platform/http/errors.ts'
import { currencyDecimals } from './currencies.ts'
import { roundHalfUp } from './rounding.ts'
import { isoDate } from './sales.ts'

export interface OssReturnInput {
  year: number
  quarter: number
  /** Units of each currency per EUR, as the ECB quotes them ("11.0485" SEK). */
  exchange_rates?: Record<string, string>
}

interface Figures {
  sales: number
  net_eur: number
  tax_eur: number
}

export interface OssCurrencyFigures extends Figures {
  currency: string
  /** In the currency's minor unit. */
  net_amount: number
  tax_amount: number
}

export interface OssCountryFigures extends Figures {
  country: string
  currencies: OssCurrencyFigures[]
}

const QUARTER_END_DAY = [31, 30, 30, 31]

/** A rate as an exact fraction; undefined unless it is a positive decimal. */
function parseRate(rate: string): { num: bigint; den: bigint } | undefined {
  const match = /^(\d{1,9})(?:\.(\d{1,6}))?$/.exec(rate)
  if (!match) return undefined
  const fraction = match[2] ?? ''
  const num = BigInt(match[1] + fraction)
  return num === 0n ? undefined : { num, den: 10n ** BigInt(fraction.length) }
}

/**
 * The quarter's EU distance sales (B2C, cross-border, not voided) by member state of consumption
 * and currency, converted to EUR cents: each (country, currency) total is converted and rounded
 * half-up once. Throws validation_failed naming every currency of the quarter without a rate.
 */
export async function ossReturn(db: Queryable, input: OssReturnInput) {
  const { year, quarter } = input
  const from = isoDate(year, quarter * 3 - 2, 1)
  const to = isoDate(year, quarter * 3, QUARTER_END_DAY[quarter - 1]!)
  const next = quarter === 4 ? isoDate(year + 1, 1, 1) : isoDate(year, quarter * 3 + 1, 1)
  const rows = await db
    .selectFrom('tax_sales')
    .select([
      'country',
      'currency',
      sql<string | number>`count(*)`.as('sales'),
      sql<string | number>`sum(net_amount)`.as('net'),
      sql<string | number>`sum(tax_amount)`.as('tax'),
    ])
    .where('eu_distance_sale', '=', true)
    .where('voided_at', 'is', null)
    .where('date_of_supply', '>=', from)
    .where('date_of_supply', '<', next)
    .groupBy(['country', 'currency'])
    .orderBy('country')
    .orderBy('currency')
    .execute()

  const given = input.exchange_rates ?? {}
  const rates = new Map<string, { num: bigint; den: bigint }>()
  const used: Record<string, string> = {}
  const errors: FieldError[] = []
  const counts = new Map<string, number>()
  for (const r of rows) counts.set(r.currency, (counts.get(r.currency) ?? 0) + Number(r.sales))
  for (const [currency, count] of counts) {
    if (currency === 'EUR') continue
    const path = `body.exchange_rates.${currency}`
    const text = given[currency]
    if (text === undefined) {
      errors.push({
        path,
        message: `is required: ${count} EU distance sale${count === 1 ? ' is' : 's are'} priced in ${currency}; give the ECB rate (${currency} per EUR) of ${to}, or of its next publication`,
      })
      continue
    }
    const rate = parseRate(text)
    if (!rate) {
      errors.push({ path, message: `must be a positive number of ${currency} per EUR` })
      continue
    }
    rates.set(currency, rate)
    used[currency] = text
  }
  if (errors.length > 0) {
    throw problem(
      'validation_failed',
      `The OSS return for ${year} Q${quarter} needs the EUR exchange rate of ${to} for ${errors.length === 1 ? 'a currency' : 'currencies'} its sales are priced in`,
      { errors },
    )
  }

  const toEur = (amount: bigint, currency: string): number => {
    const rate = rates.get(currency)
    if (!rate) return Number(amount)
    // minor units ÷ 10^decimals = units; ÷ (num / den) units per EUR = EUR; × 100 = cents
    return Number(roundHalfUp(amount * 100n * rate.den, 10n ** BigInt(currencyDecimals(currency)) * rate.num))
  }
  const countries = new Map<string, OssCountryFigures>()
  const totals: Figures = { sales: 0, net_eur: 0, tax_eur: 0 }
  for (const r of rows) {
    const net = BigInt(r.net)
    const tax = BigInt(r.tax)
    const figures: OssCurrencyFigures = {
      currency: r.currency,
      sales: Number(r.sales),
      net_amount: Number(net),
      tax_amount: Number(tax),
      net_eur: toEur(net, r.currency),
      tax_eur: toEur(tax, r.currency),
    }
    let country = countries.get(r.country)
    if (!country) {
      country = { country: r.country, sales: 0, net_eur: 0, tax_eur: 0, currencies: [] }
      countries.set(r.country, country)
    }
    country.currencies.push(figures)
    for (const target of [country, totals]) {
      target.sales += figures.sales
      target.net_eur += figures.net_eur
      target.tax_eur += figures.tax_eur
    }
  }
  return { year, quarter, from, to, exchange_rates: used, countries: [...countries.values()], totals }
}
