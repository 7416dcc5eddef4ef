/** Waiting for PostgreSQL sessions to queue on a row lock, for tests that stage a race with held rows. */
import { setTimeout as sleep } from 'node:timers/promises'
import { type Kysely, sql } from 'kysely'
import type { DB } from '../../src/platform/db/schema.ts'
import { type Tx, withTransaction } from '../../src/platform/db/transaction.ts'

/**
 * Resolves once at least `count` sessions of this database wait on a lock (only those running a
 * statement that starts with `statement`, when given), and throws if that does not happen within
 * timeoutMs: a test staged on a transaction waiting behind a held row must not go on (and perhaps
 * pass) when nothing waits. A session the database has just woken still reads as waiting until it
 * runs, so a stage that follows a release names the statement it waits for.
 */
export async function waitForLockWaits(
  db: Kysely<DB>,
  count = 1,
  { statement = '', timeoutMs = 10_000 }: { statement?: string; timeoutMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let waiting = 0
  for (;;) {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock'
        and starts_with(query, ${statement})`.execute(db)
    waiting = rows[0]!.n
    if (waiting >= count) return
    if (Date.now() > deadline) break
    await sleep(20)
  }
  // What every other session of the database is doing: where the staged race went instead.
  const { rows } = await sql<{ state: string; wait: string | null; query: string }>`
    select state, wait_event_type || ':' || wait_event as wait, left(query, 80) as query
    from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`.execute(db)
  const sessions = rows.map((r) => `  ${r.state} ${r.wait ?? '-'} ${r.query}`).join('\n')
  throw new Error(
    `${waiting} sessions wait on a lock after ${timeoutMs} ms; the test needs ${count}. Sessions:\n${sessions}`,
  )
}

/**
 * A transaction that does `work`, then stays open, its row locks held, until release(), which
 * commits it and resolves once it has. A `work` that throws ends it at once (release() rejects).
 */
export async function holdOpen(
  db: Kysely<DB>,
  work: (trx: Tx) => Promise<unknown>,
): Promise<{ release: () => Promise<void> }> {
  const { promise: released, resolve: release } = Promise.withResolvers<void>()
  const { promise: held, resolve: hold } = Promise.withResolvers<void>()
  const done = withTransaction(db, async (trx) => {
    await work(trx)
    hold()
    await released
  })
  await Promise.race([held, done])
  return {
    release: () => {
      release()
      return done
    },
  }
}
