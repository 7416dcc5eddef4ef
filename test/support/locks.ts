/** Waiting for PostgreSQL sessions to queue on a row lock, for tests that stage a race with held rows. */
import { setTimeout as sleep } from 'node:timers/promises'
import { type Kysely, sql } from 'kysely'
import type { DB } from '../../src/platform/db/schema.ts'

/**
 * Resolves once at least `count` sessions of this database wait on a lock, and throws if that does
 * not happen within timeoutMs: a test staged on a transaction waiting behind a held row must not
 * go on (and perhaps pass) when nothing waits.
 */
export async function waitForLockWaits(db: Kysely<DB>, count = 1, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let waiting = 0
  for (;;) {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock'`.execute(db)
    waiting = rows[0]!.n
    if (waiting >= count) return
    if (Date.now() > deadline) break
    await sleep(20)
  }
  throw new Error(`${waiting} sessions wait on a lock after ${timeoutMs} ms; the test needs ${count}`)
}
