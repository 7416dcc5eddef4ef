/**
 * Who is calling, and may they? Every `/admin` route declares in its route options the permission
 * it needs (`config: { permission: 'products:write' }`), or `public` (sign-in) or `staff` (any staff
 * member: their own profile). A route that declares nothing cannot be registered: default deny,
 * checked at boot. Store routes that act for a customer declare `auth: 'customer'`.
 *
 * Credentials arrive as `Authorization: Bearer …` and are turned into a Principal by resolvers
 * (the identity module's: staff and customer access tokens, API keys), tried in order. The
 * bootstrap ADMIN_TOKEN, when configured, resolves to a principal with every permission. A caller
 * is anonymous (a guest, on the store) only without an Authorization header: one whose header
 * resolves to nothing is refused with 401, never served as if it had sent none (refusesDeadCredential).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { problem } from './errors.ts'

/** How recently MFA must have been verified for a step-up route. */
export const STEP_UP_WINDOW_MS = 5 * 60 * 1000

export interface Principal {
  kind: 'staff' | 'customer' | 'api_key' | 'bootstrap_token'
  id: string
  /** The session behind an access token; null for API keys and the bootstrap token. */
  sessionId: string | null
  /** Permissions as `<resource>:<action>`; `*` grants all. */
  permissions: ReadonlySet<string>
  /** When MFA was last verified on this session. */
  mfaVerifiedAt: Date | null
  /** Staff whose role requires MFA but who have not enrolled or verified it on this session. */
  mfaPending: boolean
}

/** Turns a bearer token into a principal, or null when the token is not one of its kind or invalid. */
export type PrincipalResolver = (token: string, request: FastifyRequest) => Promise<Principal | null>

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What an `/admin` route requires: a permission `<resource>:<action>`, `staff`, or `public`. */
    permission?: string
    /** Dangerous action: requires MFA verified within the last five minutes. */
    stepUp?: boolean
    /** Reachable by staff who still have to set up or pass MFA (enrolment, sign-out). */
    allowMfaPending?: boolean
    /** A store route that acts for the signed-in customer. */
    auth?: 'customer'
  }
  interface FastifyRequest {
    principal: Principal | null
  }
}

/**
 * The signed-in customer's id, for routes declared `auth: 'customer'`. Store services take it and
 * put it in the WHERE clause of every query on the customer's records, so another customer's id
 * finds nothing and answers 404, exactly as an id that does not exist.
 */
export function customerIdOf(request: FastifyRequest): string {
  const principal = request.principal
  if (principal?.kind !== 'customer') {
    throw problem('unauthenticated', 'Sign in as a customer and send the access token', {
      headers: { 'www-authenticate': 'Bearer' },
    })
  }
  return principal.id
}

/** True when the principal holds the permission. */
export function can(principal: Principal, permission: string): boolean {
  return principal.permissions.has('*') || principal.permissions.has(permission)
}

/**
 * The guard's checks for a requirement that depends on the record a route acts on (cancelling a
 * paid order refunds it, so it needs what refunds need): 403 without the permission, 403
 * step_up_required without a fresh MFA confirmation when asked for.
 */
export function requirePermission(
  principal: Principal | null,
  permission: string,
  options: { stepUp?: boolean; why?: string } = {},
): void {
  if (!principal) throw problem('unauthenticated', undefined, { headers: { 'www-authenticate': 'Bearer' } })
  if (!can(principal, permission)) throw problem('forbidden', options.why ?? `Requires ${permission}`)
  if (options.stepUp) requireStepUp(principal)
}

/** 403 step_up_required unless MFA was confirmed within the window (the bootstrap token is exempt). */
function requireStepUp(principal: Principal): void {
  if (principal.kind === 'bootstrap_token') return
  const fresh = principal.mfaVerifiedAt && Date.now() - principal.mfaVerifiedAt.getTime() < STEP_UP_WINDOW_MS
  if (!fresh) throw problem('step_up_required', 'Confirm with a fresh MFA code at /admin/auth/step-up first')
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/** The resolver for the bootstrap ADMIN_TOKEN. */
export function bootstrapTokenResolver(adminToken: string): PrincipalResolver {
  const expected = digest(adminToken)
  return async (token) =>
    timingSafeEqual(digest(token), expected)
      ? {
          kind: 'bootstrap_token',
          id: 'bootstrap-admin',
          sessionId: null,
          permissions: new Set(['*']),
          mfaVerifiedAt: null,
          mfaPending: false,
        }
      : null
}

/**
 * Whether a store route refuses (401) an Authorization header that names no principal, rather than
 * serving the caller as a guest. Store routes answer for whoever the credential names, so a dead one
 * (expired, revoked, forged) taken for a guest would hide the shopper's own cart (404), and make
 * their new cart and order guest ones, cut off from the account: the client must refresh it or
 * drop it. Exempt are the `/store/auth/*` routes, which trade a password, a refresh token or an
 * emailed token for credentials and read no principal: a client that still sends its expired access
 * token there must be able to refresh or sign in (sign-out is customer-only, so refused anyway).
 * Admin routes refuse it through their own checks; routes outside the API (health, metrics, the
 * API reference, webhooks) serve everyone alike.
 */
function refusesDeadCredential(url: string | undefined): boolean {
  return url?.startsWith('/store/') === true && !url.startsWith('/store/auth/')
}

/** Resolves `request.principal` and enforces each route's declared requirements. */
export function registerAuth(app: FastifyInstance, options: { resolvers: PrincipalResolver[] }): void {
  app.decorateRequest('principal', null)

  // Default deny, checked at boot: an admin route without a requirement stops the app from starting.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/admin') && !route.config?.permission) {
      throw new Error(`${route.method} ${route.url} declares no permission (config.permission)`)
    }
  })

  const guard = async (request: FastifyRequest) => {
    const header = request.headers.authorization
    // The scheme is case-insensitive (RFC 9110 §11.1).
    if (header !== undefined && header.slice(0, 7).toLowerCase() === 'bearer ') {
      const token = header.slice(7).trim()
      for (const resolve of options.resolvers) {
        request.principal = await resolve(token, request)
        if (request.principal) break
      }
    }
    const config = request.routeOptions.config
    if (header !== undefined && !request.principal && refusesDeadCredential(request.routeOptions.url)) {
      throw problem(
        'unauthenticated',
        'The credential sent is expired, revoked or not valid: refresh the access token or sign in ' +
          'again. Only a request without an Authorization header is served as a guest',
        { headers: { 'www-authenticate': 'Bearer' } },
      )
    }
    if (config.auth === 'customer' && request.principal?.kind !== 'customer') {
      throw problem('unauthenticated', 'Sign in as a customer and send the access token', {
        headers: { 'www-authenticate': 'Bearer' },
      })
    }
    if (!request.routeOptions.url?.startsWith('/admin')) return
    const permission = config.permission
    if (!permission) throw problem('forbidden', 'This route declares no permission, so nobody may call it')
    if (permission === 'public') return
    const principal = request.principal
    if (!principal) {
      throw problem('unauthenticated', 'Send a staff credential as Authorization: Bearer <token>', {
        headers: { 'www-authenticate': 'Bearer' },
      })
    }
    if (principal.kind === 'customer')
      throw problem('forbidden', 'Customer credentials cannot use the admin API')
    if (principal.mfaPending && !config.allowMfaPending) {
      throw problem(
        'mfa_required',
        'Your role requires MFA: enrol at /admin/me/mfa or sign in with your code',
      )
    }
    if (permission !== 'staff' && !can(principal, permission))
      throw problem('forbidden', `Requires ${permission}`)
    if (config.stepUp) requireStepUp(principal)
  }

  // Most storefront traffic is anonymous reads of public routes: those skip the guard without
  // allocating a promise.
  app.addHook('onRequest', (request, _reply, done) => {
    if (
      request.headers.authorization === undefined &&
      request.routeOptions.config.auth === undefined &&
      !request.routeOptions.url?.startsWith('/admin')
    ) {
      done()
      return
    }
    guard(request).then(() => done(), done)
  })
}
