/**
 * Variants that need no parcel (downloads, gift codes): carts of only such variants check out
 * without a shipping option or address.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table product_variants add column requires_shipping boolean not null default true`.execute(
    db,
  )
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table product_variants drop column requires_shipping`.execute(db)
}
