/**
 * The audit log: who did what to which record, from where. Every admin write and every read of
 * personal data (routes that declare `config.audit`) is recorded; the table refuses updates and
 * deletes at the database level, and the API offers no way to change it.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import type { Tx } from '../../platform/db/transaction.ts'
import { appendRouteHook } from '../../platform/http/route-hooks.ts'
import { newId } from '../../platform/ids.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Records reads of this route in the audit log under this resource type (personal data). */
    audit?: string
  }
}

export interface AuditEntry {
  actorType: string
  actorId: string
  action: string
  resourceType: string
  resourceId?: string | null
  status?: number | null
  details?: Record<string, unknown>
}

/** Appends one entry, taking IP, user agent and request id from the request when given. */
export async function recordAudit(
  db: Kysely<DB> | Tx,
  entry: AuditEntry,
  request?: FastifyRequest,
): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({
      id: newId('aud'),
      actor_type: entry.actorType,
      actor_id: entry.actorId,
      action: entry.action,
      resource_type: entry.resourceType,
      resource_id: entry.resourceId ?? null,
      status: entry.status ?? null,
      ip: request?.ip ?? null,
      user_agent: request?.headers['user-agent']?.slice(0, 512) ?? null,
      request_id: request?.id ?? null,
      details: JSON.stringify(entry.details ?? {}),
    })
    .execute()
}

/**
 * The query of an audited read, as the caller sent it, for the entry's details: empty when there
 * is none. U+0000, which jsonb refuses, is replaced: a refused request is recorded too.
 */
function readDetails(query: unknown): Record<string, unknown> {
  if (!query || typeof query !== 'object' || Object.keys(query).length === 0) return {}
  return JSON.parse(JSON.stringify({ query }).replaceAll('\\u0000', '\\ufffd'))
}

/** `/admin/products/:id` → `products`; the resource an admin route acts on. */
function resourceOf(url: string): string {
  const parts = url.split('/').filter((p) => p && !p.startsWith(':'))
  return parts[1] ?? 'admin'
}

/**
 * Records every authenticated admin write and every audited read, after the response is sent. The
 * hook is attached only to the routes it concerns (admin routes), so other requests pay nothing.
 */
export function registerAuditHook(app: FastifyInstance, db: Kysely<DB>): void {
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith('/admin')) return
    const audited = route.config?.audit
    const record = async (request: FastifyRequest, reply: FastifyReply) => {
      const principal = request.principal
      if (!principal) return
      if ((request.method === 'GET' || request.method === 'HEAD') && !audited) return
      const params = request.params as Record<string, string> | undefined
      try {
        await recordAudit(
          db,
          {
            actorType: principal.kind,
            actorId: principal.id,
            action: `${request.method} ${route.url}`,
            resourceType: audited ?? resourceOf(route.url),
            // The id is the caller's claim, straight from the path: PostgreSQL refuses U+0000 in
            // text, and the attempt must be recorded all the same.
            resourceId: params?.id?.replaceAll('\u0000', '\ufffd') ?? null,
            status: reply.statusCode,
            // Whose data a read looked for (`?email=`, `?q=`): the path alone does not say.
            ...(audited && request.method === 'GET' ? { details: readDetails(request.query) } : {}),
          },
          request,
        )
      } catch (err) {
        request.log.error({ err }, 'audit log write failed')
      }
    }
    appendRouteHook(route, 'onResponse', record)
  })
}
