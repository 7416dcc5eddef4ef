/**
 * Stored responses of idempotent requests keep their exact bytes: jsonb reorders object keys, so a
 * replay built from it would differ from the first answer, and a client comparing the two (or a
 * signature over the body) would see a different response to the same request.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys add column response_text text`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys drop column response_text`.execute(db)
}
