/** Row types of the tables the tax module owns. */
import type { ColumnType, Generated } from 'kysely'
import type { RateKind } from './data/types.ts'

/** Dates of supply are `date` columns, read back as YYYY-MM-DD text (never through a time zone). */
type DateText = ColumnType<string, string, string>
type Origin = 'data' | 'admin'

export interface TaxJurisdictionsTable {
  code: string
  country: string
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
  /** 'admin' once edited through the API: a data update no longer overwrites it. */
  origin: Generated<Origin>
  updated_at: Generated<Date>
}

export interface TaxRatesTable {
  id: string
  jurisdiction: string
  kind: RateKind
  rate_ppm: number
  label: string
  valid_from: DateText
  valid_to: ColumnType<string | null, string | null | undefined, string | null>
  postal_prefix: Generated<string>
  source_name: string
  source_url: string
  origin: Generated<Origin>
  /** Deleted rates are kept (and hidden) so that a data update does not bring them back. */
  deleted_at: Date | null
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface TaxCategoriesTable {
  code: string
  name: string
  default_kind: RateKind
  built_in: Generated<boolean>
  created_at: Generated<Date>
}

export interface TaxCategoryRulesTable {
  jurisdiction: string
  category: string
  rate_kind: RateKind
  origin: Generated<Origin>
}

export interface TaxSettingsTable {
  /** Always 1: the store's one settings row. */
  id: number
  origin_country: string | null
  origin_region: string | null
  oss_opt_in: Generated<boolean>
  provider: Generated<'builtin' | 'external'>
  provider_url: string | null
  provider_timeout_ms: Generated<number>
  data_version: string | null
  updated_at: Generated<Date>
}

export interface TaxRegistrationsTable {
  jurisdiction: string
  number: string | null
  created_at: Generated<Date>
}

/** Committed sales: the OSS threshold and the US economic-nexus report are computed from these. */
export interface TaxSalesTable {
  id: string
  reference: string
  date_of_supply: DateText
  origin_country: string
  country: string
  region: string | null
  currency: string
  net_amount: number
  tax_amount: number
  /** The net amount in EUR cents, for EU cross-border sales (the OSS threshold is in euros). */
  eur_amount: number | null
  eu_distance_sale: boolean
  b2b: boolean
  voided_at: Date | null
  created_at: Generated<Date>
}

/** A commit or void waiting for the external tax service; deleted once sent. */
export interface TaxServiceCallsTable {
  id: string
  reference: string
  path: 'commit' | 'void'
  body: ColumnType<Record<string, unknown>, string, never>
  created_at: Generated<Date>
}

export interface TaxTables {
  tax_jurisdictions: TaxJurisdictionsTable
  tax_rates: TaxRatesTable
  tax_categories: TaxCategoriesTable
  tax_category_rules: TaxCategoryRulesTable
  tax_settings: TaxSettingsTable
  tax_registrations: TaxRegistrationsTable
  tax_sales: TaxSalesTable
  tax_service_calls: TaxServiceCallsTable
}
