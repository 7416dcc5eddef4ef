/**
 * The storefront's name sort folds case (`lower(title)`), so its index does too; the plain one
 * served only that sort.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index products_status_title_folded on products (status, lower(title), title, id)`.execute(
    db,
  )
  await sql`drop index products_status_title`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`create index products_status_title on products (status, title, id)`.execute(db)
  await sql`drop index products_status_title_folded`.execute(db)
}
