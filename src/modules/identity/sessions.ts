/**
 * Sessions are refresh-token families. Each refresh rotates the token: the old row is marked
 * rotated and a new one joins the family. Presenting a rotated token again means it was stolen
 * (or replayed), so the whole family is revoked. Sign-out and password changes revoke families.
 */

import type { Kysely } from 'kysely'
import { sql } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import { type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { newId } from '../../platform/ids.ts'
import type { SubjectType } from './tables.ts'
import { randomToken, tokenHash } from './tokens.ts'

export const REFRESH_TOKEN_TTL_DAYS = 30

export interface SessionMeta {
  ip?: string | null
  userAgent?: string | null
  deviceId?: string | null
  mfaVerified?: boolean
}

export interface IssuedSession {
  sessionId: string
  familyId: string
  subjectId: string
  refreshToken: string
}

/** Starts a new session family and returns its first refresh token (shown to the client once). */
export async function createSession(
  db: Kysely<DB> | Tx,
  subjectType: SubjectType,
  subjectId: string,
  meta: SessionMeta = {},
  familyId = newId('sfam'),
  mfaVerifiedAt: Date | null = meta.mfaVerified ? new Date() : null,
): Promise<IssuedSession> {
  const sessionId = newId('sess')
  const refreshToken = randomToken('rt')
  await db
    .insertInto('sessions')
    .values({
      id: sessionId,
      subject_type: subjectType,
      subject_id: subjectId,
      family_id: familyId,
      token_hash: tokenHash(refreshToken),
      device_id: meta.deviceId ?? null,
      mfa_verified_at: mfaVerifiedAt,
      expires_at: sql<Date>`now() + make_interval(days => ${REFRESH_TOKEN_TTL_DAYS})` as never,
      ip: meta.ip ?? null,
      user_agent: meta.userAgent?.slice(0, 512) ?? null,
    })
    .execute()
  return { sessionId, familyId, subjectId, refreshToken }
}

export type RotateResult =
  | { ok: true; session: IssuedSession; subjectType: SubjectType }
  | { ok: false; reason: 'invalid' | 'reused' }

/**
 * Exchanges a refresh token for a new one in the same family; a reused token revokes the family.
 * The subject type is part of the lookup, so a staff token sent to the customer endpoint (or the
 * reverse) is simply unknown there and cannot be spent.
 */
export async function rotateSession(
  db: Kysely<DB>,
  subjectType: SubjectType,
  refreshToken: string,
  meta: SessionMeta,
): Promise<RotateResult> {
  return withTransaction(db, async (trx) => {
    const row = await trx
      .selectFrom('sessions')
      .selectAll()
      .where('token_hash', '=', tokenHash(refreshToken))
      .where('subject_type', '=', subjectType)
      .forUpdate()
      .executeTakeFirst()
    if (!row || row.revoked_at || row.expires_at.getTime() <= Date.now())
      return { ok: false, reason: 'invalid' }
    if (row.rotated_at) {
      await revokeFamily(trx, row.family_id)
      return { ok: false, reason: 'reused' }
    }
    await trx
      .updateTable('sessions')
      .set({ rotated_at: sql<Date>`now()` as never })
      .where('id', '=', row.id)
      .execute()
    const session = await createSession(
      trx,
      row.subject_type,
      row.subject_id,
      { ip: meta.ip, userAgent: meta.userAgent, deviceId: row.device_id },
      row.family_id,
      row.mfa_verified_at,
    )
    return { ok: true, session, subjectType: row.subject_type }
  })
}

/** Revokes every session of a family (all rotations of one sign-in). */
export async function revokeFamily(db: Kysely<DB> | Tx, familyId: string): Promise<void> {
  await db
    .updateTable('sessions')
    .set({ revoked_at: sql<Date>`now()` as never })
    .where('family_id', '=', familyId)
    .where('revoked_at', 'is', null)
    .execute()
}

/** Revokes the family the given session belongs to (sign-out). */
export async function revokeSessionFamilyOf(db: Kysely<DB> | Tx, sessionId: string): Promise<void> {
  await db
    .updateTable('sessions')
    .set({ revoked_at: sql<Date>`now()` as never })
    .where('family_id', '=', db.selectFrom('sessions').select('family_id').where('id', '=', sessionId))
    .where('revoked_at', 'is', null)
    .execute()
}

/** Revokes every session of a customer or staff member (password change, disabling an account). */
export async function revokeAllSessions(
  db: Kysely<DB> | Tx,
  subjectType: SubjectType,
  subjectId: string,
): Promise<void> {
  await db
    .updateTable('sessions')
    .set({ revoked_at: sql<Date>`now()` as never })
    .where('subject_type', '=', subjectType)
    .where('subject_id', '=', subjectId)
    .where('revoked_at', 'is', null)
    .execute()
}

/** Records a fresh MFA verification on a session (sign-in with TOTP, or step-up). */
export async function markMfaVerified(db: Kysely<DB> | Tx, sessionId: string): Promise<void> {
  await db
    .updateTable('sessions')
    .set({ mfa_verified_at: sql<Date>`now()` as never })
    .where('id', '=', sessionId)
    .execute()
}
