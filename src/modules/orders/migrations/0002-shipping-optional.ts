/** An order of goods that are not shipped (downloads, gift codes) has no shipping address. */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table orders alter column shipping_address drop not null`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table orders alter column shipping_address set not null`.execute(db)
}
