/**
 * Staff routes: `/admin/auth/*` (sign-in, MFA, refresh, step-up, sign-out), `/admin/me` (profile
 * and MFA enrolment), and the management of staff, roles, API keys and the audit log.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { type Static, Type } from 'typebox'
import { withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { decodeCursor, toPage } from '../../platform/http/pagination.ts'
import { errorResponses, ListOf } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { createApiKey, listApiKeys, revokeApiKey } from './api-keys.ts'
import { PERMISSIONS } from './permissions.ts'
import { IdParams, RefreshBody, Tokens } from './schemas.ts'
import { revokeSessionFamilyOf } from './sessions.ts'
import {
  beginTotpEnrolment,
  completeStaffMfa,
  confirmTotpEnrolment,
  createRole,
  createStaff,
  deleteRole,
  getStaff,
  listRoles,
  listStaff,
  refreshStaff,
  resetStaffMfa,
  signInStaff,
  stepUp,
  updateRole,
  updateStaff,
} from './staff.ts'
import {
  ApiKey,
  AuditEntry,
  AuditQuery,
  CreateApiKeyBody,
  CreateRoleBody,
  CreateStaffBody,
  MfaCodeBody,
  MfaSignInBody,
  Role,
  Staff,
  StaffSignInBody,
  StaffSignInResponse,
  UpdateRoleBody,
  UpdateStaffBody,
} from './staff-schemas.ts'

export const staffRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database
  app.addSchema(Staff)
  app.addSchema(Role)
  app.addSchema(ApiKey)
  const security = [{ bearer: [] }]
  const authLimit = { rateLimit: { max: runtime.config.authRateLimitPerMinute, timeWindow: 60_000 } }
  const auth = ['admin: auth']

  app.post(
    '/admin/auth/sign-in',
    {
      config: { permission: 'public', ...authLimit },
      schema: {
        tags: auth,
        summary: 'Staff sign-in: password, then a TOTP code unless this device is trusted',
        body: StaffSignInBody,
        response: { 200: StaffSignInResponse, ...errorResponses },
      },
    },
    async (request) => signInStaff(runtime, request.body, request),
  )

  app.post(
    '/admin/auth/mfa',
    {
      config: { permission: 'public', ...authLimit },
      schema: {
        tags: auth,
        summary: 'Finish a sign-in with the challenge token and a TOTP or recovery code',
        body: MfaSignInBody,
        response: { 200: StaffSignInResponse, ...errorResponses },
      },
    },
    async (request) => completeStaffMfa(runtime, request.body.challenge_token, request.body.code, request),
  )

  app.post(
    '/admin/auth/refresh',
    {
      config: { permission: 'public', ...authLimit },
      schema: {
        tags: auth,
        summary: 'Exchange a refresh token for new tokens',
        body: RefreshBody,
        response: { 200: Tokens, ...errorResponses },
      },
    },
    async (request) => refreshStaff(runtime, request.body.refresh_token, request),
  )

  app.post(
    '/admin/auth/step-up',
    {
      config: { permission: 'staff', allowMfaPending: true, ...authLimit },
      schema: {
        tags: auth,
        summary: 'Confirm a fresh MFA code before a dangerous action (valid five minutes)',
        security,
        body: MfaCodeBody,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      await stepUp(runtime, request.principal!, request.body.code, request)
      reply.code(204)
      return null
    },
  )

  app.post(
    '/admin/auth/sign-out',
    {
      config: { permission: 'staff', allowMfaPending: true },
      schema: {
        tags: auth,
        summary: 'End this session',
        security,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      if (request.principal!.sessionId) await revokeSessionFamilyOf(db, request.principal!.sessionId)
      reply.code(204)
      return null
    },
  )

  app.get(
    '/admin/me',
    {
      config: { permission: 'staff', allowMfaPending: true },
      schema: {
        tags: auth,
        summary: 'The signed-in staff member',
        security,
        response: { 200: Type.Ref('Staff'), ...errorResponses },
      },
    },
    async (request) => {
      if (request.principal!.kind !== 'staff') throw problem('forbidden', 'Not a staff session')
      return getStaff(db, request.principal!.id)
    },
  )

  app.post(
    '/admin/me/mfa/totp',
    {
      config: { permission: 'staff', allowMfaPending: true },
      schema: {
        tags: auth,
        summary: 'Start TOTP enrolment: returns the secret for an authenticator app',
        security,
        response: {
          200: Type.Object({ secret: Type.String(), otpauth_uri: Type.String() }),
          ...errorResponses,
        },
      },
    },
    async (request) => beginTotpEnrolment(runtime, request.principal!),
  )

  app.post(
    '/admin/me/mfa/totp/confirm',
    {
      config: { permission: 'staff', allowMfaPending: true },
      schema: {
        tags: auth,
        summary: 'Confirm TOTP enrolment with a first code; returns recovery codes, shown once',
        security,
        body: MfaCodeBody,
        response: { 200: Type.Object({ recovery_codes: Type.Array(Type.String()) }), ...errorResponses },
      },
    },
    async (request) => confirmTotpEnrolment(runtime, request.principal!, request.body.code),
  )

  const staffTags = ['admin: staff']
  app.get(
    '/admin/staff',
    {
      config: { permission: 'staff:read' },
      schema: {
        tags: staffTags,
        summary: 'List staff',
        security,
        response: { 200: Type.Object({ data: Type.Array(Type.Ref('Staff')) }), ...errorResponses },
      },
    },
    async () => ({ data: await listStaff(db) }),
  )

  app.post(
    '/admin/staff',
    {
      config: { permission: 'staff:manage', stepUp: true },
      schema: {
        tags: staffTags,
        summary: 'Create a staff account',
        security,
        body: CreateStaffBody,
        response: { 201: Type.Ref('Staff'), ...errorResponses },
      },
    },
    async (request, reply) => {
      const staff = await createStaff(
        db,
        {
          email: request.body.email,
          name: request.body.name,
          password: request.body.password,
          roleId: request.body.role_id,
        },
        request.principal!,
      )
      reply.code(201)
      return staff
    },
  )

  app.patch(
    '/admin/staff/:id',
    {
      config: { permission: 'staff:manage', stepUp: true },
      schema: {
        tags: staffTags,
        summary: 'Change a staff member’s name, role or disabled state (ends their sessions)',
        security,
        params: IdParams,
        body: UpdateStaffBody,
        response: { 200: Type.Ref('Staff'), ...errorResponses },
      },
    },
    async (request) => updateStaff(db, request.principal!, request.params.id, request.body),
  )

  app.post(
    '/admin/staff/:id/mfa/reset',
    {
      config: { permission: 'staff:manage', stepUp: true },
      schema: {
        tags: staffTags,
        summary: 'Clear a staff member’s MFA after a lost authenticator (ends their sessions)',
        security,
        params: IdParams,
        response: { 200: Type.Ref('Staff'), ...errorResponses },
      },
    },
    async (request) => resetStaffMfa(db, request.principal!, request.params.id),
  )

  const roleTags = ['admin: roles']
  app.get(
    '/admin/roles',
    {
      config: { permission: 'roles:read' },
      schema: {
        tags: roleTags,
        summary: 'List roles and the permission catalogue',
        security,
        response: {
          200: Type.Object({ data: Type.Array(Type.Ref('Role')), permissions: Type.Array(Type.String()) }),
          ...errorResponses,
        },
      },
    },
    async () => ({ data: await listRoles(db), permissions: [...PERMISSIONS] }),
  )

  app.post(
    '/admin/roles',
    {
      config: { permission: 'roles:write', stepUp: true },
      schema: {
        tags: roleTags,
        summary: 'Create a custom role',
        security,
        body: CreateRoleBody,
        response: { 201: Type.Ref('Role'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(201)
      return createRole(db, request.principal!, request.body)
    },
  )

  app.patch(
    '/admin/roles/:id',
    {
      config: { permission: 'roles:write', stepUp: true },
      schema: {
        tags: roleTags,
        summary: 'Change a custom role',
        security,
        params: IdParams,
        body: UpdateRoleBody,
        response: { 200: Type.Ref('Role'), ...errorResponses },
      },
    },
    async (request) => updateRole(db, request.principal!, request.params.id, request.body),
  )

  app.delete(
    '/admin/roles/:id',
    {
      config: { permission: 'roles:delete', stepUp: true },
      schema: {
        tags: roleTags,
        summary: 'Delete a custom role nobody holds',
        security,
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      await deleteRole(db, request.params.id)
      reply.code(204)
      return null
    },
  )

  const keyTags = ['admin: api keys']
  app.get(
    '/admin/api-keys',
    {
      config: { permission: 'api_keys:read' },
      schema: {
        tags: keyTags,
        summary: 'List API keys (never their secrets)',
        security,
        response: { 200: Type.Object({ data: Type.Array(Type.Ref('ApiKey')) }), ...errorResponses },
      },
    },
    async () => ({ data: await listApiKeys(db) }),
  )

  app.post(
    '/admin/api-keys',
    {
      config: { permission: 'api_keys:write', stepUp: true },
      schema: {
        tags: keyTags,
        summary: 'Create an API key scoped to permissions; the key is shown once',
        security,
        body: CreateApiKeyBody,
        response: { 201: Type.Object({ key: Type.Ref('ApiKey'), secret: Type.String() }), ...errorResponses },
      },
    },
    async (request, reply) => {
      const principal = request.principal!
      const wanted = request.body.permissions
      const unknown = wanted.filter((p) => !PERMISSIONS.includes(p))
      if (unknown.length) {
        throw problem('validation_failed', `Unknown permissions: ${unknown.join(', ')}`, {
          errors: [{ path: 'body.permissions', message: `unknown: ${unknown.join(', ')}` }],
        })
      }
      // Nobody can mint a key stronger than themselves.
      const beyond = wanted.filter((p) => !principal.permissions.has('*') && !principal.permissions.has(p))
      if (beyond.length) throw problem('forbidden', `You do not hold: ${beyond.join(', ')}`)
      const expiresAt = request.body.expires_at ? new Date(request.body.expires_at) : null
      if (expiresAt && expiresAt.getTime() <= Date.now()) {
        throw problem('validation_failed', 'expires_at is in the past', {
          errors: [{ path: 'body.expires_at', message: 'must be in the future' }],
        })
      }
      const created = await withTransaction(db, (trx) =>
        createApiKey(trx, {
          name: request.body.name,
          permissions: wanted,
          expiresAt,
          createdBy: principal.id,
        }),
      )
      reply.code(201)
      return created
    },
  )

  app.delete(
    '/admin/api-keys/:id',
    {
      config: { permission: 'api_keys:delete' },
      schema: {
        tags: keyTags,
        summary: 'Revoke an API key at once',
        security,
        params: IdParams,
        response: { 200: Type.Ref('ApiKey'), ...errorResponses },
      },
    },
    async (request) => {
      const key = await revokeApiKey(db, request.params.id)
      if (!key) throw problem('not_found', `No API key ${request.params.id}`)
      return key
    },
  )

  app.get(
    '/admin/audit-log',
    {
      config: { permission: 'audit_log:read' },
      schema: {
        tags: ['admin: audit log'],
        summary: 'Who did what, newest first, with filters. The log cannot be changed through the API.',
        security,
        querystring: AuditQuery,
        response: { 200: ListOf(AuditEntry), ...errorResponses },
      },
    },
    async (request) => listAudit(runtime, request.query),
  )
}

async function listAudit(runtime: Runtime, query: Static<typeof AuditQuery>) {
  const limit = query.limit ?? 50
  let q = runtime.database.db
    .selectFrom('audit_log')
    .selectAll()
    .orderBy('id', 'desc')
    .limit(limit + 1)
  if (query.actor_id) q = q.where('actor_id', '=', query.actor_id)
  if (query.resource_type) q = q.where('resource_type', '=', query.resource_type)
  if (query.resource_id) q = q.where('resource_id', '=', query.resource_id)
  if (query.action) q = q.where('action', '=', query.action)
  if (query.from) q = q.where('at', '>=', new Date(query.from))
  if (query.to) q = q.where('at', '<', new Date(query.to))
  if (query.cursor) q = q.where('id', '<', String(decodeCursor(query.cursor, ['string'])[0]))
  const rows = await q.execute()
  return toPage(
    rows.map((r) => ({ ...r, at: r.at.toISOString() })),
    limit,
    (r) => [r.id],
  )
}
