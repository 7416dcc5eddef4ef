/**
 * Guests' Idempotency-Keys are scoped to the resource path (see anonymousScope in
 * src/platform/http/idempotency.ts); keys stored before were all under `anonymous`. They are given
 * the scope of the path they were stored with, so a guest's retry that spans the upgrade replays
 * its answer instead of running again.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    update idempotency_keys
    set principal = 'anonymous:' || encode(sha256(convert_to(
      regexp_replace(split_part(path, '?', 1), '(.)/+$', '\\1'), 'UTF8')), 'hex')
    where principal = 'anonymous'`.execute(db)
}

/** The scoped keys stay: the old code would only treat them as another caller's. */
export async function down(): Promise<void> {}
