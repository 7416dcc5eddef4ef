/**
 * A cart's lines and totals are rewritten on every change, and compressing them with PostgreSQL's
 * default (pglz) cost about as much CPU as the rest of the write. lz4 compresses them in a fraction
 * of that time. Servers built without lz4 (PGlite among them) keep pglz: the statement is refused
 * with feature_not_supported, which is caught.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    do $$ begin
      alter table carts alter column lines set compression lz4, alter column totals set compression lz4;
    exception when feature_not_supported then null;
    end $$`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table carts alter column lines set compression default, alter column totals set compression default`.execute(
    db,
  )
}
