/**
 * The authorization matrix: every built-in role against every admin route in the route table. A role
 * holding a route's permission gets past the guard (a 400 for the empty body or a 404 for the made-up
 * id is fine: the guard let it through); a role without it gets exactly 403 `forbidden`. Each staff
 * member has MFA enrolled and a fresh step-up, so that neither `mfa_required` nor `step_up_required`
 * can hide what the permission check decides. Without credentials every route is 401; with a
 * customer's access token every route is 403.
 *
 * This runs on PGlite only: it checks the HTTP guard against the role definitions, which does not
 * depend on the database engine, and one database is enough for that. It stays well within the five
 * minutes a step-up lasts: each staff member is created and signed in once, and the tokens reused.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RouteEntry } from '../src/app.ts'
import { BUILT_IN_ROLES } from '../src/modules/identity/permissions.ts'
import { startTestNode, type TestNode } from './support/app.ts'
import { confirmEmail } from './support/customers.ts'
import {
  bearer,
  newStaffSession,
  type StaffSession,
  stepUp,
  strongPassword,
  uniqueEmail,
} from './support/staff.ts'

const MISSING_ID = 'zzz_00000000000000000000000000'

/**
 * Routes that check a second permission themselves, past the guard's: the orders export holds
 * every customer's email, a bulk export of personal data.
 */
const ALSO_REQUIRED: Record<string, string[]> = {
  'GET /admin/orders/export.csv': ['customers:export'],
}

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT'

describe('RBAC matrix: built-in roles × admin routes (PGlite)', () => {
  let node: TestNode
  let routes: RouteEntry[]
  const sessions = new Map<string, StaffSession>()

  beforeAll(async () => {
    node = await startTestNode('pglite', {
      env: { AUTH_RATE_LIMIT_PER_MINUTE: '100000', RATE_LIMIT_PER_MINUTE: '100000' },
    })
    routes = node.app.routeTable
      .filter((r) => r.url.startsWith('/admin') && r.method !== 'HEAD' && r.config.permission !== 'public')
      // Sign-out ends the session the rest of the row uses, so it goes last.
      .sort((a, b) => Number(a.url === '/admin/auth/sign-out') - Number(b.url === '/admin/auth/sign-out'))
    for (const role of BUILT_IN_ROLES) {
      const session = await newStaffSession(node, role.id)
      const up = await stepUp(node, session.accessToken, session.mfa)
      if (up.statusCode !== 204) throw new Error(`step-up for ${role.id}: ${up.statusCode} ${up.body}`)
      sessions.set(role.id, session)
    }
  })
  afterAll(() => node?.close())

  const request = (route: RouteEntry, headers: Record<string, string>) => {
    const method = route.method as Method
    return node.app.inject({
      method,
      url: route.url.replace(/:\w+/g, MISSING_ID),
      headers,
      ...(method === 'POST' || method === 'PATCH' ? { payload: {} } : {}),
    })
  }

  it('covers the admin API', () => {
    expect(routes.length).toBeGreaterThanOrEqual(20)
    // Every permission a route asks for is one a role can hold (or `staff`: any staff member).
    const known = new Set(BUILT_IN_ROLES.find((r) => r.id === 'role_owner')!.permissions)
    for (const route of routes) {
      const permission = route.config.permission!
      expect(permission === 'staff' || known.has(permission), `${route.method} ${route.url}`).toBe(true)
    }
  })

  it('stores the built-in roles as defined', async () => {
    const stored = await node.runtime.database.db
      .selectFrom('roles')
      .select(['id', 'permissions', 'built_in'])
      .where('built_in', '=', true)
      .execute()
    expect(new Map(stored.map((r) => [r.id, [...r.permissions].sort()]))).toEqual(
      new Map(BUILT_IN_ROLES.map((r) => [r.id, [...r.permissions].sort()])),
    )
  })

  for (const role of BUILT_IN_ROLES) {
    it(`${role.id}: allowed exactly where the role holds the route's permission`, async () => {
      const session = sessions.get(role.id)!
      const held = new Set(role.permissions)
      const wrong: string[] = []
      for (const route of routes) {
        const permission = route.config.permission!
        const also = ALSO_REQUIRED[`${route.method} ${route.url}`] ?? []
        const allowed = (permission === 'staff' || held.has(permission)) && also.every((p) => held.has(p))
        const res = await request(route, bearer(session.accessToken))
        const code = res.statusCode >= 400 ? res.json().code : undefined
        const ok = allowed
          ? res.statusCode !== 401 && res.statusCode !== 403 && res.statusCode < 500
          : res.statusCode === 403 && code === 'forbidden'
        if (!ok) {
          wrong.push(
            `${route.method} ${route.url} (${permission}): expected ${allowed ? 'allowed' : '403 forbidden'}, got ${res.statusCode} ${code ?? ''}`,
          )
        }
      }
      expect(wrong).toEqual([])
    })
  }

  it('answers 401 on every admin route without credentials', async () => {
    const wrong: string[] = []
    for (const route of routes) {
      const res = await request(route, {})
      if (res.statusCode !== 401 || res.json().code !== 'unauthenticated')
        wrong.push(`${route.method} ${route.url}: ${res.statusCode}`)
    }
    expect(wrong).toEqual([])
  })

  it('answers 403 on every admin route to a customer access token', async () => {
    const email = uniqueEmail('customer')
    const password = strongPassword()
    const signUp = await node.app.inject({
      method: 'POST',
      url: '/store/auth/sign-up',
      payload: { email, password },
    })
    expect(signUp.statusCode).toBe(202)
    const signIn = () =>
      node.app.inject({ method: 'POST', url: '/store/auth/sign-in', payload: { email, password } })
    // An account signs in only once its email is confirmed; its token must still be worthless on /admin.
    const unconfirmed = await signIn()
    expect(unconfirmed.statusCode).toBe(401)
    expect(unconfirmed.json().code).toBe('invalid_credentials')
    await confirmEmail(node, email, password)
    const signedIn = await signIn()
    expect(signedIn.statusCode).toBe(200)
    const headers = bearer(signedIn.json().access_token)
    expect((await node.app.inject({ method: 'GET', url: '/store/me', headers })).statusCode).toBe(200)
    const wrong: string[] = []
    for (const route of routes) {
      const res = await request(route, headers)
      if (res.statusCode !== 403 || res.json().code !== 'forbidden')
        wrong.push(`${route.method} ${route.url}: ${res.statusCode} ${res.json().code}`)
    }
    expect(wrong).toEqual([])
  })
})
