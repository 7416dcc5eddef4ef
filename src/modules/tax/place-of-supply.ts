/**
 * Place of supply: which jurisdiction's tax a supply bears, or why it bears none. The rules are the
 * EU's for distance sales (the EUR 10,000 One-Stop-Shop threshold), electronically supplied
 * services and B2B reverse charge; exports outside the store's tax area are zero-rated; US sales
 * tax applies only where the store has nexus; Canadian PST/QST only where it is registered.
 */

import { EU_MEMBER_STATES, isCountryCode } from '../../platform/countries.ts'
import { problem } from '../../platform/http/errors.ts'
import type { Jurisdiction, TaxData } from './tax-data.ts'
import { checkVatId } from './vat-id.ts'

/** EUR 10,000 in cents: Article 59c of Directive 2006/112/EC. */
export const OSS_THRESHOLD_EUR_CENTS = 1_000_000

export const REVERSE_CHARGE_NOTE =
  'Reverse charge: VAT to be accounted for by the recipient, Article 196 Council Directive 2006/112/EC'
export const INTRA_EU_GOODS_NOTE =
  'Intra-Community supply of goods exempt from VAT, Article 138 Council Directive 2006/112/EC'
export const EU_EXPORT_NOTE = 'Export outside the EU: zero-rated, Article 146 Council Directive 2006/112/EC'

export interface Address {
  country: string
  /** ISO 3166-2 subdivision part (`QC`, `CA`): needed where taxes differ by state or province. */
  region?: string
  postal_code?: string
}

export interface StoreTaxContext {
  /** Where the store is established and ships from. */
  origin: Address
  /** Jurisdiction codes where the store is registered to collect tax (`GB`, `CA-QC`, `US-NY`). */
  registrations: readonly string[]
  /** Charge destination VAT on EU distance sales even below the threshold. */
  oss_opt_in: boolean
  /** Recorded EU cross-border B2C sales in EUR cents, this calendar year and last. */
  eu_distance_sales_eur: { current_year: number; previous_year: number }
  /**
   * How many recorded EU cross-border B2C sales, this year and last, were priced in another
   * currency and have no value in EUR (none when absent): the store cannot show they kept it below
   * the threshold, so while there are any, distance sales are taxed at destination.
   */
  eu_distance_sales_unvalued?: { current_year: number; previous_year: number }
}

export interface Customer {
  address: Address
  vat_id?: string
  /** Buying as a business. With a valid VAT id in another EU state, EU supplies are reverse-charged. */
  is_business?: boolean
}

export type SupplyTreatment = 'taxable' | 'reverse_charge' | 'export' | 'no_nexus' | 'no_tax'

export interface Supply {
  treatment: SupplyTreatment
  /** The country whose rules decide: the taxing one, or the customer's for a zero treatment. */
  country: string
  /** Which jurisdiction a zero line is attributed to. */
  attributed_to: string
  /** Jurisdictions whose taxes apply, country first (empty unless taxable). */
  jurisdictions: Jurisdiction[]
  /** One sentence on why. */
  reason: string
  /** Legal wording that must appear on the invoice. */
  notes: string[]
  /** Taxes not charged and why (a PST province where the store is not registered). */
  skipped: string[]
}

/** Validated customer facts shared by every supply in a calculation. */
export interface CustomerFacts {
  country: string
  region: string | undefined
  postal_code: string | undefined
  /** Set when the customer gave a VAT id that passed its checks. */
  vat_id: string | undefined
  is_business: boolean
}

const VAT_ID_COUNTRIES = new Set([...EU_MEMBER_STATES, 'GB', 'NO', 'CH'])

/** Checks the customer's country, region and VAT id; throws the 4xx problem for bad ones. */
export function checkCustomer(data: TaxData, customer: Customer): CustomerFacts {
  const { country } = customer.address
  if (!isCountryCode(country)) {
    throw problem('unknown_country', `${country} is not an ISO 3166-1 alpha-2 country code`, {
      errors: [{ path: 'body.customer.address.country', message: 'is not a known country code' }],
    })
  }
  const region = customer.address.region
  const subdivisions = data.subdivisions.get(country)
  if (region !== undefined && subdivisions && !subdivisions.has(`${country}-${region}`)) {
    throw problem('unknown_region', `${region} is not a region of ${country} with tax data`, {
      errors: [{ path: 'body.customer.address.region', message: `is not a known region of ${country}` }],
    })
  }
  let vatId: string | undefined
  if (customer.vat_id !== undefined && VAT_ID_COUNTRIES.has(country)) {
    const check = checkVatId(customer.vat_id, country)
    if (!check.valid) {
      throw problem('invalid_vat_id', `The VAT id ${check.normalized} ${check.reason}`, {
        errors: [{ path: 'body.customer.vat_id', message: check.reason ?? 'is invalid' }],
      })
    }
    vatId = check.normalized
  }
  return {
    country,
    region,
    postal_code: customer.address.postal_code,
    vat_id: vatId,
    is_business: customer.is_business ?? false,
  }
}

function areaOf(data: TaxData, country: string): string {
  return data.jurisdictions.get(country)?.tax_area ?? country
}

function isRegistered(store: StoreTaxContext, code: string): boolean {
  if (store.registrations.includes(code)) return true
  // Being established in a state or province is physical presence: the store must collect there.
  const origin = store.origin.region ? `${store.origin.country}-${store.origin.region}` : undefined
  return origin === code
}

function eur(cents: number): string {
  return `EUR ${(cents / 100).toFixed(2)}`
}

/**
 * The taxes of `country` for a customer there: the national tax, then the state or provincial one
 * (which replaces it for Canada's HST), each only where the store must collect it.
 */
function destinationSupply(
  data: TaxData,
  store: StoreTaxContext,
  customer: CustomerFacts,
  country: string,
  reason: string,
): Supply {
  const national = data.jurisdictions.get(country)
  const supply: Supply = {
    treatment: 'taxable',
    country,
    attributed_to: country,
    jurisdictions: [],
    reason,
    notes: [],
    skipped: [],
  }
  if (!national) throw new Error(`no tax data for ${country}`)
  const subdivisions = data.subdivisions.get(country)
  let sub: Jurisdiction | undefined
  if (subdivisions && country === customer.country) {
    if (customer.region === undefined) {
      throw problem('unknown_region', `Tax in ${country} depends on the state or province: send the region`, {
        errors: [{ path: 'body.customer.address.region', message: `is required for ${country}` }],
      })
    }
    sub = data.jurisdictions.get(`${country}-${customer.region}`)
  } else if (subdivisions && store.origin.region) {
    sub = data.jurisdictions.get(`${country}-${store.origin.region}`)
  }
  if (sub) supply.attributed_to = sub.code
  if (sub?.requires_registration && sub.levies_tax && !isRegistered(store, sub.code)) {
    if (!national.levies_tax) {
      // US: no nexus in the state, so no sales tax at all.
      return {
        ...supply,
        treatment: 'no_nexus',
        reason: `${reason}; the store has no nexus in ${sub.name} (${sub.code}), so it collects no ${sub.tax_name.toLowerCase()}`,
      }
    }
    supply.skipped.push(
      `${sub.tax_name} of ${sub.name} not charged: the store is not registered in ${sub.code}`,
    )
    sub = undefined
  }
  if (sub?.replaces_parent) supply.jurisdictions.push(sub)
  else {
    if (national.levies_tax) supply.jurisdictions.push(national)
    if (sub?.levies_tax) supply.jurisdictions.push(sub)
  }
  if (supply.jurisdictions.length === 0) {
    return {
      ...supply,
      treatment: 'no_tax',
      reason: `${reason}; ${sub?.name ?? national.name} levies no such tax`,
    }
  }
  return supply
}

/**
 * Decides the place of supply for the goods (digital = false) or the electronically supplied
 * services (digital = true) of one cart. `cartEurCents` is the cart's value when priced in EUR, so
 * that the sale which crosses the OSS threshold is itself taxed at destination; null when it is
 * priced in another currency, whose value in EUR is unknown here.
 */
export function placeOfSupply(
  data: TaxData,
  store: StoreTaxContext,
  customer: CustomerFacts,
  digital: boolean,
  cartEurCents: number | null = 0,
): Supply {
  const origin = store.origin.country
  const dest = customer.country
  const what = digital ? 'Digital services' : 'Goods'
  const sameArea = data.jurisdictions.has(dest) && areaOf(data, dest) === areaOf(data, origin)

  if (sameArea && dest === origin)
    return destinationSupply(data, store, customer, dest, `${what}: domestic supply in ${dest}`)

  if (sameArea && EU_MEMBER_STATES.has(origin)) {
    if (customer.is_business && customer.vat_id) {
      return {
        treatment: 'reverse_charge',
        country: dest,
        attributed_to: dest,
        jurisdictions: [],
        reason: `${what}: B2B supply to ${customer.vat_id}, a valid VAT id in ${dest}, from ${origin}`,
        notes: digital ? [REVERSE_CHARGE_NOTE] : [REVERSE_CHARGE_NOTE, INTRA_EU_GOODS_NOTE],
        skipped: [],
      }
    }
    if (digital) {
      return destinationSupply(data, store, customer, dest, `${what}: taxed where the customer is (${dest})`)
    }
    const { current_year, previous_year } = store.eu_distance_sales_eur
    const withCart =
      cartEurCents === null ? 'this cart not in EUR' : `with this cart ${eur(current_year + cartEurCents)}`
    const sales = `EU distance sales ${eur(current_year)} this year (${withCart}), ${eur(previous_year)} last year, threshold ${eur(OSS_THRESHOLD_EUR_CENTS)}`
    if (store.oss_opt_in) {
      return destinationSupply(
        data,
        store,
        customer,
        dest,
        `${what}: distance sale taxed in ${dest}: the store opted in to destination taxation (OSS)`,
      )
    }
    if (
      previous_year > OSS_THRESHOLD_EUR_CENTS ||
      current_year + (cartEurCents ?? 0) > OSS_THRESHOLD_EUR_CENTS
    ) {
      return destinationSupply(
        data,
        store,
        customer,
        dest,
        `${what}: distance sale taxed in ${dest}: ${sales}, passed`,
      )
    }
    // A sale in another currency has no value in EUR until a return converts it at the rate of
    // the period's end; below the threshold is then unproven, and destination VAT is the safe side.
    const unvalued = store.eu_distance_sales_unvalued
    const unvaluedCount = (unvalued?.current_year ?? 0) + (unvalued?.previous_year ?? 0)
    if (cartEurCents === null || unvaluedCount > 0) {
      const unknown =
        cartEurCents === null
          ? 'this cart is priced in another currency'
          : `${unvaluedCount} recorded sale${unvaluedCount === 1 ? ' is' : 's are'} priced in another currency`
      return destinationSupply(
        data,
        store,
        customer,
        dest,
        `${what}: distance sale taxed in ${dest}: ${sales}; ${unknown}, with no value in EUR to show the threshold is not passed`,
      )
    }
    return destinationSupply(
      data,
      store,
      customer,
      origin,
      `${what}: distance sale taxed in ${origin} (origin): ${sales}, not passed`,
    )
  }

  if (data.jurisdictions.has(dest)) {
    const national = data.jurisdictions.get(dest)!
    // A country without national tax (the US) is entered through its states' registrations.
    const registered = national.levies_tax
      ? isRegistered(store, dest)
      : store.registrations.some((r) => r.startsWith(`${dest}-`))
    if (registered || sameArea) {
      return destinationSupply(
        data,
        store,
        customer,
        dest,
        `${what}: taxed in ${dest}, where the store is registered`,
      )
    }
  }
  const leavingEu = EU_MEMBER_STATES.has(origin)
  return {
    treatment: 'export',
    country: dest,
    attributed_to: dest,
    jurisdictions: [],
    reason: `${what}: the customer in ${dest} is outside the store's tax area (${areaOf(data, origin)}) and the store is not registered there`,
    notes:
      leavingEu && !digital
        ? [EU_EXPORT_NOTE]
        : [`Outside the scope of ${areaOf(data, origin)} tax: supplied to a customer in ${dest}`],
    skipped: [],
  }
}
