/**
 * Puts the shipped tax data (data/rates.ts) into the database. Runs on every start and does work
 * only when the data version changed; rows an admin edited or deleted are left as the admin left
 * them. Concurrent nodes serialise on the settings row, so the data is applied once.
 */
import type { Kysely } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import { withTransaction } from '../../platform/db/transaction.ts'
import { TAX_DATA } from './data/rates.ts'
import type { TaxDataFile } from './data/types.ts'
import { rowsFromFile } from './tax-data.ts'

/** Loads the tax data file into the database when its version is new. Returns true when it did. */
export async function ensureTaxReferenceData(db: Kysely<DB>, file: TaxDataFile = TAX_DATA): Promise<boolean> {
  const current = await db
    .selectFrom('tax_settings')
    .select('data_version')
    .where('id', '=', 1)
    .executeTakeFirst()
  if (current?.data_version === file.version) return false
  return withTransaction(db, async (trx) => {
    await trx
      .insertInto('tax_settings')
      .values({ id: 1, origin_country: null, origin_region: null, provider_url: null, data_version: null })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute()
    const locked = await trx
      .selectFrom('tax_settings')
      .select('data_version')
      .where('id', '=', 1)
      .forUpdate()
      .executeTakeFirstOrThrow()
    if (locked.data_version === file.version) return false
    const rows = rowsFromFile(file)

    const categories = file.categories.map((c) => ({
      code: c.code,
      name: c.name,
      default_kind: c.default_kind,
      built_in: true,
    }))
    await trx
      .insertInto('tax_categories')
      .values(categories)
      .onConflict((oc) =>
        oc.column('code').doUpdateSet((eb) => ({
          name: eb.ref('excluded.name'),
          default_kind: eb.ref('excluded.default_kind'),
          built_in: true,
        })),
      )
      .execute()

    await trx
      .insertInto('tax_jurisdictions')
      .values(rows.jurisdictions.map((j) => ({ ...j, origin: 'data' as const })))
      .onConflict((oc) =>
        oc
          .column('code')
          .doUpdateSet((eb) => ({
            name: eb.ref('excluded.name'),
            tax_name: eb.ref('excluded.tax_name'),
            tax_area: eb.ref('excluded.tax_area'),
            rounding: eb.ref('excluded.rounding'),
            replaces_parent: eb.ref('excluded.replaces_parent'),
            requires_registration: eb.ref('excluded.requires_registration'),
            levies_tax: eb.ref('excluded.levies_tax'),
            nexus_threshold_usd: eb.ref('excluded.nexus_threshold_usd'),
            source_name: eb.ref('excluded.source_name'),
            source_url: eb.ref('excluded.source_url'),
          }))
          .where('tax_jurisdictions.origin', '=', 'data'),
      )
      .execute()

    await trx
      .insertInto('tax_rates')
      .values(rows.rates.map((r) => ({ ...r, origin: 'data' as const, deleted_at: null })))
      .onConflict((oc) =>
        oc
          .column('id')
          .doUpdateSet((eb) => ({
            rate_ppm: eb.ref('excluded.rate_ppm'),
            label: eb.ref('excluded.label'),
            valid_to: eb.ref('excluded.valid_to'),
            source_name: eb.ref('excluded.source_name'),
            source_url: eb.ref('excluded.source_url'),
          }))
          .where('tax_rates.origin', '=', 'data')
          .where('tax_rates.deleted_at', 'is', null),
      )
      .execute()

    if (rows.rules.length) {
      await trx
        .insertInto('tax_category_rules')
        .values(rows.rules.map((r) => ({ ...r, origin: 'data' as const })))
        .onConflict((oc) =>
          oc
            .columns(['jurisdiction', 'category'])
            .doUpdateSet((eb) => ({ rate_kind: eb.ref('excluded.rate_kind') }))
            .where('tax_category_rules.origin', '=', 'data'),
        )
        .execute()
    }
    await trx.updateTable('tax_settings').set({ data_version: file.version }).where('id', '=', 1).execute()
    return true
  })
}
