/**
 * Calls to an external tax service waiting to be sent. The body (lines, the buyer's address) lives
 * here, in a table the tax module owns, and is deleted once the service has it; the job that sends
 * it carries only the row's id, so the job queue's history never holds personal data.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table tax_service_calls (
      id text primary key,
      reference text not null,
      path text not null check (path in ('commit', 'void')),
      body jsonb not null,
      created_at timestamptz not null default now()
    )`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table tax_service_calls`.execute(db)
}
