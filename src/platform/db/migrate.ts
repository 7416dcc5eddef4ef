/** Applies the migration set with Kysely's Migrator (which locks, so concurrent nodes are safe). */
import type { Kysely } from 'kysely'
import { type MigrationResult, Migrator } from 'kysely/migration'
import { migrations } from './migrations/index.ts'
import type { DB } from './schema.ts'

/** Brings the schema to the latest migration; returns the names applied in this call. */
export async function migrateToLatest(db: Kysely<DB>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
  })
  const { error, results } = await migrator.migrateToLatest()
  if (error) {
    const failed = results?.find((r: MigrationResult) => r.status === 'Error')
    throw new Error(`migration ${failed?.migrationName ?? '(unknown)'} failed: ${(error as Error).message}`, {
      cause: error,
    })
  }
  return (results ?? [])
    .filter((r: MigrationResult) => r.status === 'Success')
    .map((r: MigrationResult) => r.migrationName)
}
