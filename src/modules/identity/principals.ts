/**
 * Principal resolvers for the auth guard: API keys (`sk_…`) and access tokens. Every access token
 * is checked against its session on each request (zero trust: a revoked session or a disabled
 * account stops working at once, not when the token expires), and staff permissions come from
 * their role as it is now. An API key's come from its scope cut down to its creator's role as it
 * is now (api-keys.ts).
 */
import type { Principal, PrincipalResolver } from '../../platform/http/auth.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { resolveApiKey } from './api-keys.ts'
import { signerOf } from './context.ts'
import { needsMfa } from './permissions.ts'

/** The resolvers the identity module contributes, in the order they are tried. */
export function identityResolvers(runtime: Runtime): PrincipalResolver[] {
  const db = runtime.database.db
  const signer = signerOf(runtime)
  const requireMfa = runtime.config.staffMfaRequired

  const apiKey: PrincipalResolver = (token) =>
    token.startsWith('sk_') ? resolveApiKey(db, token) : Promise.resolve(null)

  const accessToken: PrincipalResolver = async (token) => {
    const claims = await signer.verifyAccess(token)
    if (!claims) return null
    if (claims.typ === 'customer') {
      const row = await db
        .selectFrom('sessions')
        .innerJoin('customers', 'customers.id', 'sessions.subject_id')
        .select(['sessions.id'])
        .where('sessions.id', '=', claims.sid)
        .where('sessions.subject_type', '=', 'customer')
        .where('sessions.subject_id', '=', claims.sub)
        .where('sessions.revoked_at', 'is', null)
        .where('sessions.expires_at', '>', new Date())
        .executeTakeFirst()
      if (!row) return null
      return {
        kind: 'customer',
        id: claims.sub,
        sessionId: claims.sid,
        permissions: new Set<string>(),
        mfaVerifiedAt: null,
        mfaPending: false,
      } satisfies Principal
    }
    const row = await db
      .selectFrom('sessions')
      .innerJoin('staff_users', 'staff_users.id', 'sessions.subject_id')
      .innerJoin('roles', 'roles.id', 'staff_users.role_id')
      .leftJoin('staff_mfa', 'staff_mfa.staff_id', 'staff_users.id')
      .select(['sessions.mfa_verified_at', 'roles.permissions', 'staff_mfa.confirmed_at as mfa_confirmed_at'])
      .where('sessions.id', '=', claims.sid)
      .where('sessions.subject_type', '=', 'staff')
      .where('sessions.subject_id', '=', claims.sub)
      .where('sessions.revoked_at', 'is', null)
      .where('sessions.expires_at', '>', new Date())
      .where('staff_users.disabled_at', 'is', null)
      .executeTakeFirst()
    if (!row) return null
    const verified = row.mfa_confirmed_at !== null && row.mfa_verified_at !== null
    return {
      kind: 'staff',
      id: claims.sub,
      sessionId: claims.sid,
      permissions: new Set(row.permissions),
      mfaVerifiedAt: row.mfa_verified_at,
      mfaPending: requireMfa && needsMfa(row.permissions) && !verified,
    } satisfies Principal
  }

  return [apiKey, accessToken]
}
