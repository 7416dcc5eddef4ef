/** The shape of the versioned tax data file (rates.ts): what a jurisdiction, rate and source are. */

/** Where a rate comes from: the publishing authority by name and the page that states it. */
export interface Source {
  name: string
  url: string
}

/**
 * The kinds of rate a jurisdiction may have. `zero` and `exempt` are 0% by definition and need no
 * rate rows; they differ in law (zero-rated supplies keep the right to deduct input tax).
 */
export const RATE_KINDS = [
  'standard',
  'reduced',
  'second_reduced',
  'super_reduced',
  'parking',
  'zero',
  'exempt',
] as const
export type RateKind = (typeof RATE_KINDS)[number]

export interface RateEntry {
  kind: RateKind
  /** Percent as a decimal string ("9.975"): parsed to parts per million exactly, never via a float. */
  percent: string
  /** First day of supply the rate applies to (YYYY-MM-DD). */
  from: string
  /** First day it no longer applies (exclusive), when it has been replaced. */
  to?: string
  label?: string
  /** When the rate has its own source (a change announced separately). */
  source?: Source
}

export interface JurisdictionEntry {
  /** ISO 3166-1 alpha-2 for a country (`DE`), ISO 3166-2 for a subdivision (`CA-QC`). */
  code: string
  name: string
  /** The tax's name on an invoice line: VAT, GST, HST, QST, PST, Sales tax, … */
  tax_name: string
  /** Countries sharing one tax area (the EU) trade inside it; anything leaving it is an export. */
  tax_area: string
  /** Per-line rounding or once per rate per invoice. */
  rounding: 'line' | 'invoice'
  /** A subdivision tax that replaces the national one (Canada's HST replaces GST). */
  replaces_parent?: boolean
  /** Collected only where the store is registered (US nexus, Canadian PST and QST). */
  requires_registration?: boolean
  /** False where no tax of this level exists (no US federal sales tax, no PST in Alberta). */
  levies_tax?: boolean
  /** US economic nexus: annual sales into the state, in whole dollars, that oblige registration. */
  nexus_threshold_usd?: number
  source: Source
  rates: RateEntry[]
  /** Which rate kind a product category takes here, where it differs from the default. */
  categories?: Record<string, RateKind>
}

export interface CategoryEntry {
  code: string
  name: string
  /** The rate kind where a jurisdiction says nothing about this category. */
  default_kind: RateKind
}

export interface TaxDataFile {
  /** Bumped on every change of the data; the loader applies a version once. */
  version: string
  categories: CategoryEntry[]
  jurisdictions: JurisdictionEntry[]
}
