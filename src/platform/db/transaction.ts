/**
 * Transactions that survive contention: serialization failures (40001) and deadlocks (40P01) are
 * retried a bounded number of times with jittered backoff, since Postgres expects the client to
 * retry them and a retry almost always succeeds.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { type Kysely, sql, type Transaction } from 'kysely'
import type { DB } from './schema.ts'

export type Tx = Transaction<DB>
/** Either the database or an open transaction: service functions accept both. */
export type Queryable = Kysely<DB> | Tx

const RETRYABLE = new Set(['40001', '40P01'])

export interface TransactionOptions {
  isolation?: 'read committed' | 'repeatable read' | 'serializable'
  /** Attempts in all, the first included. */
  attempts?: number
}

/** True for errors Postgres asks the client to retry: serialization failure and deadlock. */
export function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && RETRYABLE.has(code)
}

/** Runs fn in a transaction, retrying the whole of it on serialization failures and deadlocks. */
export async function withTransaction<T>(
  db: Kysely<DB>,
  fn: (trx: Tx) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const attempts = options.attempts ?? 5
  for (let attempt = 1; ; attempt++) {
    try {
      let builder = db.transaction()
      if (options.isolation) builder = builder.setIsolationLevel(options.isolation)
      return await builder.execute(fn)
    } catch (error) {
      if (attempt >= attempts || !isRetryable(error)) throw error
      await sleep(Math.random() * 10 * 2 ** attempt)
    }
  }
}

/**
 * A condition that is always true and, as a side effect, lets the statement's own transaction
 * commit without waiting for its WAL to reach disk (`synchronous_commit = off`, local to that
 * transaction). Add it to the WHERE of an autocommitted write whose loss in a database crash is
 * acceptable (the last fraction of a second of them can be lost; none is ever half-applied, and a
 * later synchronous commit makes every earlier one durable). Only for data that is not money,
 * stock or order state: a cart's lines, an idempotency claim or stored answer (a forgotten one is
 * a request that died before it), the test gateway's ledger (a stand-in for the processor's).
 * Never in a transaction that writes such state: the setting covers the whole transaction.
 */
export const asynchronousCommit = sql<boolean>`set_config('synchronous_commit', 'off', true) = 'off'`
