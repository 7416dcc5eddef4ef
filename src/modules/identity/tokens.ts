/**
 * Access tokens: short-lived JWTs (HS256 pinned, issuer and audience checked) naming the session
 * they belong to, so revoking a session revokes its access tokens at their next use.
 */
import { createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import { jwtVerify, SignJWT } from 'jose'
import type { SubjectType } from './tables.ts'

export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60
const ISSUER = 'shopwright'
const AUDIENCE: Record<SubjectType | 'mfa_challenge', string> = {
  customer: 'shopwright:store',
  staff: 'shopwright:admin',
  mfa_challenge: 'shopwright:mfa',
}

export interface AccessClaims {
  sub: string
  typ: SubjectType
  sid: string
}

/** Signs and verifies the JWTs this node issues. */
export class TokenSigner {
  readonly #key: Uint8Array

  constructor(appSecret: string) {
    this.#key = new Uint8Array(hkdfSync('sha256', appSecret, 'shopwright', 'access-token', 32))
  }

  /** A 15-minute access token for a session. */
  signAccess(claims: AccessClaims): Promise<string> {
    return new SignJWT({ typ: claims.typ, sid: claims.sid })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(claims.sub)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE[claims.typ])
      .setIssuedAt()
      .setExpirationTime(`${ACCESS_TOKEN_TTL_SECONDS}s`)
      .sign(this.#key)
  }

  /** The claims of a valid access token, or null for anything else (expired, forged, alg none…). */
  async verifyAccess(token: string): Promise<AccessClaims | null> {
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        algorithms: ['HS256'],
        issuer: ISSUER,
        audience: [AUDIENCE.customer, AUDIENCE.staff],
      })
      const typ = payload.typ
      if ((typ !== 'customer' && typ !== 'staff') || payload.aud !== AUDIENCE[typ]) return null
      if (typeof payload.sub !== 'string' || typeof payload.sid !== 'string') return null
      return { sub: payload.sub, typ, sid: payload.sid }
    } catch {
      return null
    }
  }

  /** A 5-minute token proving the password step of a staff sign-in, to be exchanged with a TOTP code. */
  signMfaChallenge(staffId: string, deviceId: string | null): Promise<string> {
    return new SignJWT({ dev: deviceId })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(staffId)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE.mfa_challenge)
      .setIssuedAt()
      .setExpirationTime('300s')
      .sign(this.#key)
  }

  /** The staff id and device of a valid MFA challenge token, or null. */
  async verifyMfaChallenge(token: string): Promise<{ staffId: string; deviceId: string | null } | null> {
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        algorithms: ['HS256'],
        issuer: ISSUER,
        audience: AUDIENCE.mfa_challenge,
      })
      if (typeof payload.sub !== 'string') return null
      return { staffId: payload.sub, deviceId: typeof payload.dev === 'string' ? payload.dev : null }
    } catch {
      return null
    }
  }
}

/** An opaque random token with a readable prefix, e.g. `rt_…` for refresh tokens. */
export function randomToken(prefix: string, bytes = 32): string {
  return `${prefix}_${randomBytes(bytes).toString('base64url')}`
}

/** sha256 hex: how every token is stored, so a leaked table holds nothing usable. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

/** Constant-time equality of two hex digests. */
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex')
  const y = Buffer.from(b, 'hex')
  return x.length === y.length && timingSafeEqual(x, y)
}
