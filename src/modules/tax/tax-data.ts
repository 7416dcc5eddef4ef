/**
 * The tax data the engine reads: jurisdictions, effective-dated rates, categories and the
 * category-to-rate-kind rules, indexed for lookups during a calculation. Built from database rows
 * (service.ts) or straight from the data file (tests, benchmark), with the same result.
 */
import { TAX_DATA } from './data/rates.ts'
import type { RateKind, TaxDataFile } from './data/types.ts'
import { percentToPpm } from './rounding.ts'

export interface Jurisdiction {
  code: string
  /** ISO 3166-1 alpha-2 of the country the jurisdiction is or lies in. */
  country: string
  /** The subdivision part of an ISO 3166-2 code (`QC` of `CA-QC`), null for a country. */
  subdivision: string | null
  name: string
  tax_name: string
  tax_area: string
  rounding: 'line' | 'invoice'
  replaces_parent: boolean
  requires_registration: boolean
  levies_tax: boolean
  nexus_threshold_usd: number | null
  source_name: string
  source_url: string
}

export interface Rate {
  id: string
  jurisdiction: string
  kind: RateKind
  /** Parts per million: 19% is 190000, Quebec's 9.975% is 99750. */
  rate_ppm: number
  label: string
  /** First day of supply it applies to, YYYY-MM-DD. */
  valid_from: string
  /** First day it no longer applies (exclusive), or null while in force. */
  valid_to: string | null
  /** A ZIP or postal code prefix for a local rate added on top of the base rate; '' for the base rate. */
  postal_prefix: string
  source_name: string
  source_url: string
}

export interface CategoryRule {
  jurisdiction: string
  category: string
  rate_kind: RateKind
}

export interface TaxData {
  version: string
  jurisdictions: Map<string, Jurisdiction>
  /** Rates by jurisdiction code. */
  rates: Map<string, Rate[]>
  /** Category code → its default rate kind. */
  categories: Map<string, RateKind>
  /** Jurisdiction code → category → rate kind. */
  rules: Map<string, Map<string, RateKind>>
  /** Country → codes of its subdivisions that have data. */
  subdivisions: Map<string, Set<string>>
}

export interface TaxDataRows {
  version: string
  jurisdictions: Jurisdiction[]
  rates: Rate[]
  categories: Array<{ code: string; default_kind: RateKind }>
  rules: CategoryRule[]
}

/** Indexes rows for the engine. */
export function buildTaxData(rows: TaxDataRows): TaxData {
  const jurisdictions = new Map(rows.jurisdictions.map((j) => [j.code, j]))
  const rates = new Map<string, Rate[]>()
  for (const rate of rows.rates) {
    const list = rates.get(rate.jurisdiction) ?? []
    list.push(rate)
    rates.set(rate.jurisdiction, list)
  }
  // Longest postal prefix first, so the first local match is the most specific.
  for (const list of rates.values()) list.sort((a, b) => b.postal_prefix.length - a.postal_prefix.length)
  const rules = new Map<string, Map<string, RateKind>>()
  for (const rule of rows.rules) {
    const map = rules.get(rule.jurisdiction) ?? new Map<string, RateKind>()
    map.set(rule.category, rule.rate_kind)
    rules.set(rule.jurisdiction, map)
  }
  const subdivisions = new Map<string, Set<string>>()
  for (const j of rows.jurisdictions) {
    if (!j.subdivision) continue
    const set = subdivisions.get(j.country) ?? new Set<string>()
    set.add(j.code)
    subdivisions.set(j.country, set)
  }
  return {
    version: rows.version,
    jurisdictions,
    rates,
    categories: new Map(rows.categories.map((c) => [c.code, c.default_kind])),
    rules,
    subdivisions,
  }
}

/** The data file as rows, as the loader writes them to the database. */
export function rowsFromFile(file: TaxDataFile = TAX_DATA): TaxDataRows {
  const jurisdictions: Jurisdiction[] = []
  const rates: Rate[] = []
  const rules: CategoryRule[] = []
  for (const j of file.jurisdictions) {
    const [country, subdivision] = j.code.split('-') as [string, string | undefined]
    jurisdictions.push({
      code: j.code,
      country,
      subdivision: subdivision ?? null,
      name: j.name,
      tax_name: j.tax_name,
      tax_area: j.tax_area,
      rounding: j.rounding,
      replaces_parent: j.replaces_parent ?? false,
      requires_registration: j.requires_registration ?? false,
      levies_tax: j.levies_tax ?? true,
      nexus_threshold_usd: j.nexus_threshold_usd ?? null,
      source_name: j.source.name,
      source_url: j.source.url,
    })
    for (const r of j.rates) {
      const ppm = percentToPpm(r.percent)
      if (ppm === undefined) throw new Error(`tax data: bad percent ${r.percent} for ${j.code}`)
      const source = r.source ?? j.source
      rates.push({
        id: `txr_${j.code}_${r.kind}_${r.from}`.toLowerCase(),
        jurisdiction: j.code,
        kind: r.kind,
        rate_ppm: ppm,
        label: r.label ?? `${j.tax_name} ${r.percent}%`,
        valid_from: r.from,
        valid_to: r.to ?? null,
        postal_prefix: '',
        source_name: source.name,
        source_url: source.url,
      })
    }
    for (const [category, kind] of Object.entries(j.categories ?? {})) {
      rules.push({ jurisdiction: j.code, category, rate_kind: kind })
    }
  }
  return {
    version: file.version,
    jurisdictions,
    rates,
    categories: file.categories.map((c) => ({ code: c.code, default_kind: c.default_kind })),
    rules,
  }
}

/** The engine's view of the data file itself, without a database. */
export function taxDataFromFile(file: TaxDataFile = TAX_DATA): TaxData {
  return buildTaxData(rowsFromFile(file))
}
