/**
 * Who is calling, and may they? Every `/admin` route declares the permission it needs in its route
 * options (`config: { permission: 'products:write' }`); a route that declares none is refused to
 * everyone (default deny), and a test walks the route table to keep it so.
 *
 * Until staff accounts and API keys arrive (identity module), the only admin credential is the
 * bootstrap ADMIN_TOKEN, which holds every permission.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { problem } from './errors.ts'

export interface Principal {
  kind: 'bootstrap_token'
  id: string
  /** Permissions as `<resource>:<action>`; `*` grants all. */
  permissions: ReadonlySet<string>
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The permission an `/admin` route requires, as `<resource>:<action>`. */
    permission?: string
  }
  interface FastifyRequest {
    principal: Principal | null
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/** True when the principal holds the permission. */
export function can(principal: Principal, permission: string): boolean {
  return principal.permissions.has('*') || principal.permissions.has(permission)
}

/** Resolves `request.principal` from the Authorization header and enforces route permissions. */
export function registerAuth(app: FastifyInstance, options: { adminToken: string | undefined }): void {
  const adminDigest = options.adminToken ? digest(options.adminToken) : undefined
  app.decorateRequest('principal', null)

  // Default deny, checked at boot: an admin route without a permission stops the app from starting.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/admin') && !route.config?.permission) {
      throw new Error(`${route.method} ${route.url} declares no permission (config.permission)`)
    }
  })

  const resolve = (request: FastifyRequest): Principal | null => {
    const header = request.headers.authorization
    if (!header?.startsWith('Bearer ')) return null
    const token = header.slice(7).trim()
    if (adminDigest && timingSafeEqual(digest(token), adminDigest)) {
      return { kind: 'bootstrap_token', id: 'bootstrap-admin', permissions: new Set(['*']) }
    }
    return null
  }

  app.addHook('onRequest', async (request) => {
    request.principal = resolve(request)
    const url = request.routeOptions.url
    if (!url?.startsWith('/admin')) return
    const permission = request.routeOptions.config.permission
    if (!permission) throw problem('forbidden', 'This route declares no permission, so nobody may call it')
    if (!request.principal) {
      throw problem('unauthenticated', 'Send a staff credential as Authorization: Bearer <token>', {
        headers: { 'www-authenticate': 'Bearer' },
      })
    }
    if (!can(request.principal, permission)) throw problem('forbidden', `Requires ${permission}`)
  })
}
