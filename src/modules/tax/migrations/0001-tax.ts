/** Tax: jurisdictions, effective-dated rates, categories and rules, store settings, committed sales. */
import { type Kysely, sql } from 'kysely'

const ORIGIN = sql`origin in ('data', 'admin')`
const KINDS = sql`in ('standard', 'reduced', 'second_reduced', 'super_reduced', 'parking', 'zero', 'exempt')`

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('tax_jurisdictions')
    .addColumn('code', 'text', (c) => c.primaryKey())
    .addColumn('country', 'text', (c) => c.notNull())
    .addColumn('subdivision', 'text')
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('tax_name', 'text', (c) => c.notNull())
    .addColumn('tax_area', 'text', (c) => c.notNull())
    .addColumn('rounding', 'text', (c) => c.notNull().check(sql`rounding in ('line', 'invoice')`))
    .addColumn('replaces_parent', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('requires_registration', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('levies_tax', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('nexus_threshold_usd', 'bigint')
    .addColumn('source_name', 'text', (c) => c.notNull())
    .addColumn('source_url', 'text', (c) => c.notNull())
    .addColumn('origin', 'text', (c) => c.notNull().defaultTo('data').check(ORIGIN))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  await db.schema
    .createTable('tax_rates')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('jurisdiction', 'text', (c) => c.notNull().references('tax_jurisdictions.code'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind ${KINDS}`))
    .addColumn('rate_ppm', 'integer', (c) => c.notNull().check(sql`rate_ppm between 0 and 1000000`))
    .addColumn('label', 'text', (c) => c.notNull())
    .addColumn('valid_from', 'date', (c) => c.notNull())
    .addColumn('valid_to', 'date')
    .addColumn('postal_prefix', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('source_name', 'text', (c) => c.notNull())
    .addColumn('source_url', 'text', (c) => c.notNull())
    .addColumn('origin', 'text', (c) => c.notNull().defaultTo('admin').check(ORIGIN))
    .addColumn('deleted_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('tax_rates_period', sql`valid_to is null or valid_to > valid_from`)
    .execute()
  await db.schema.createIndex('tax_rates_lookup').on('tax_rates').columns(['jurisdiction', 'kind']).execute()

  await db.schema
    .createTable('tax_categories')
    .addColumn('code', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('default_kind', 'text', (c) => c.notNull().check(sql`default_kind ${KINDS}`))
    .addColumn('built_in', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  await db.schema
    .createTable('tax_category_rules')
    .addColumn('jurisdiction', 'text', (c) => c.notNull().references('tax_jurisdictions.code'))
    .addColumn('category', 'text', (c) => c.notNull().references('tax_categories.code').onDelete('cascade'))
    .addColumn('rate_kind', 'text', (c) => c.notNull().check(sql`rate_kind ${KINDS}`))
    .addColumn('origin', 'text', (c) => c.notNull().defaultTo('admin').check(ORIGIN))
    .addPrimaryKeyConstraint('tax_category_rules_pk', ['jurisdiction', 'category'])
    .execute()

  await db.schema
    .createTable('tax_settings')
    .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
    .addColumn('origin_country', 'text')
    .addColumn('origin_region', 'text')
    .addColumn('oss_opt_in', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('provider', 'text', (c) =>
      c.notNull().defaultTo('builtin').check(sql`provider in ('builtin', 'external')`),
    )
    .addColumn('provider_url', 'text')
    .addColumn('provider_timeout_ms', 'integer', (c) => c.notNull().defaultTo(2000))
    .addColumn('data_version', 'text')
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  await db.schema
    .createTable('tax_registrations')
    .addColumn('jurisdiction', 'text', (c) => c.primaryKey().references('tax_jurisdictions.code'))
    .addColumn('number', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  await db.schema
    .createTable('tax_sales')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('reference', 'text', (c) => c.notNull().unique())
    .addColumn('date_of_supply', 'date', (c) => c.notNull())
    .addColumn('origin_country', 'text', (c) => c.notNull())
    .addColumn('country', 'text', (c) => c.notNull())
    .addColumn('region', 'text')
    .addColumn('currency', 'text', (c) => c.notNull())
    .addColumn('net_amount', 'bigint', (c) => c.notNull().check(sql`net_amount >= 0`))
    .addColumn('tax_amount', 'bigint', (c) => c.notNull().check(sql`tax_amount >= 0`))
    .addColumn('eur_amount', 'bigint')
    .addColumn('eu_distance_sale', 'boolean', (c) => c.notNull())
    .addColumn('b2b', 'boolean', (c) => c.notNull())
    .addColumn('voided_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  // The OSS threshold sums a calendar year of EU distance sales; the nexus report a year per state.
  await db.schema
    .createIndex('tax_sales_by_date')
    .on('tax_sales')
    .columns(['date_of_supply', 'country'])
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'tax_sales',
    'tax_registrations',
    'tax_settings',
    'tax_category_rules',
    'tax_categories',
    'tax_rates',
    'tax_jurisdictions',
  ]) {
    await db.schema.dropTable(table).execute()
  }
}
