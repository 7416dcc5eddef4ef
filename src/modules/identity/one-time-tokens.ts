/** Single-use tokens for email verification and password reset, stored hashed with an expiry. */
import { type Kysely, sql } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import type { Tx } from '../../platform/db/transaction.ts'
import type { SubjectType } from './tables.ts'
import { randomToken, tokenHash } from './tokens.ts'

type Purpose = 'verify_email' | 'reset_password'

/** Issues a token; only its hash is kept. */
export async function issueOneTimeToken(
  trx: Tx,
  purpose: Purpose,
  subjectType: SubjectType,
  subjectId: string,
  ttlMinutes: number,
): Promise<string> {
  const token = randomToken(purpose === 'verify_email' ? 'ev' : 'pr')
  await trx
    .insertInto('one_time_tokens')
    .values({
      token_hash: tokenHash(token),
      purpose,
      subject_type: subjectType,
      subject_id: subjectId,
      expires_at: sql<Date>`now() + make_interval(mins => ${ttlMinutes})` as never,
    })
    .execute()
  return token
}

/**
 * The subject of a valid, unexpired, unused token, or null, without using it up: for a check that
 * must pass (a password) before the token is spent, so that failing it leaves the token to its owner.
 */
export async function peekOneTimeToken(
  db: Tx | Kysely<DB>,
  purpose: Purpose,
  token: string,
): Promise<string | null> {
  const row = await db
    .selectFrom('one_time_tokens')
    .select('subject_id')
    .where('token_hash', '=', tokenHash(token))
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirst()
  return row?.subject_id ?? null
}

/**
 * Uses a token up: returns its subject when the token is valid, unexpired and unused, else null.
 * The conditional update makes two concurrent uses of one token succeed at most once.
 */
export async function consumeOneTimeToken(trx: Tx, purpose: Purpose, token: string): Promise<string | null> {
  const row = await trx
    .updateTable('one_time_tokens')
    .set({ used_at: sql<Date>`now()` as never })
    .where('token_hash', '=', tokenHash(token))
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .returning('subject_id')
    .executeTakeFirst()
  return row?.subject_id ?? null
}

/**
 * Uses up every unused token of these purposes that a subject holds: a token mailed before the
 * password was reset or changed must not outlive that (a forwarded or shared inbox would otherwise
 * keep a way in after the owner locked it out).
 */
export async function retireOneTimeTokens(
  trx: Tx,
  subjectType: SubjectType,
  subjectId: string,
  purposes: readonly Purpose[],
): Promise<void> {
  await trx
    .updateTable('one_time_tokens')
    .set({ used_at: sql<Date>`now()` as never })
    .where('subject_type', '=', subjectType)
    .where('subject_id', '=', subjectId)
    .where('purpose', 'in', purposes)
    .where('used_at', 'is', null)
    .execute()
}
