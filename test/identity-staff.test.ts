/**
 * Staff identity end to end: MFA enforcement for roles that reach personal or financial data, TOTP
 * sign-in with replay protection, recovery codes and trusted devices, step-up before dangerous
 * actions, API keys, staff and role management, the append-only audit log, and responses that
 * never carry a hash or a secret.
 *
 * Time is simulated only by moving `sessions.mfa_verified_at` (or `api_keys.expires_at`) back in the
 * database, and by signing an already expired challenge with the node's own key.
 */
import { hkdfSync, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { LightMyRequestResponse } from 'fastify'
import { SignJWT } from 'jose'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRole } from '../src/modules/identity/staff.ts'
import { currentStep, totpCode } from '../src/modules/identity/totp.ts'
import type { Principal } from '../src/platform/http/auth.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'
import {
  bearer,
  createStaffMember,
  type Mfa,
  newStaffSession,
  nextTotp,
  type StaffSession,
  signInStaff,
  signInWithTotp,
  stepUp,
  strongPassword,
  uniqueEmail,
} from './support/staff.ts'

const ENV = { AUTH_RATE_LIMIT_PER_MINUTE: '100000', RATE_LIMIT_PER_MINUTE: '100000' }
const MISSING_ID = 'zzz_00000000000000000000000000'
const FORBIDDEN_IN_RESPONSES = ['password_hash', 'totp_secret', 'token_hash', 'secret_hash', '$argon2']
const API_KEY_PATTERN = /^sk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE'

/** A 6-digit code that is not the code of any step the server could accept now. */
function wrongCode(mfa: Mfa): string {
  const now = currentStep()
  const valid = new Set([-2, -1, 0, 1, 2].map((d) => totpCode(mfa.secret, now + d)))
  for (let n = 123456; ; n++) {
    const code = String(n).padStart(6, '0')
    if (!valid.has(code)) return code
  }
}

function expectProblem(res: LightMyRequestResponse, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status)
  expect(res.json().code).toBe(code)
}

function expectNoSecrets(res: LightMyRequestResponse) {
  for (const word of FORBIDDEN_IN_RESPONSES) expect(res.body, `${word} in ${res.body}`).not.toContain(word)
}

/** Stands in for an owner when the test sets up roles directly through the service. */
const rootActor: Principal = {
  kind: 'bootstrap_token',
  id: 'test-setup',
  sessionId: null,
  permissions: new Set(['*']),
  mfaVerifiedAt: null,
  mfaPending: false,
}

describeEachDatabase('staff identity', (kind) => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode(kind, { env: ENV })
  })
  afterAll(() => node?.close())

  const db = () => node.runtime.database.db
  const call = (
    method: Method,
    url: string,
    token?: string,
    payload?: object,
    headers: Record<string, string> = {},
  ) =>
    node.app.inject({
      method,
      url,
      headers: { ...(token ? bearer(token) : {}), ...headers },
      ...(payload !== undefined ? { payload } : {}),
    })
  const adminRoutes = () =>
    node.app.routeTable.filter(
      (r) => r.url.startsWith('/admin') && r.method !== 'HEAD' && r.config.permission !== 'public',
    )
  /** Makes every session of a staff member's MFA verification ten minutes old. */
  const ageMfa = (staffId: string) =>
    db()
      .updateTable('sessions')
      .set({ mfa_verified_at: new Date(Date.now() - 10 * 60_000) })
      .where('subject_type', '=', 'staff')
      .where('subject_id', '=', staffId)
      .execute()
  const handle = () => `h-${randomBytes(5).toString('hex')}`
  const createProduct = (token: string, headers: Record<string, string> = {}) =>
    call('POST', '/admin/products', token, { handle: handle(), title: 'Mug' }, headers)

  describe('MFA enforcement', () => {
    it('holds a role with sensitive permissions to MFA until it enrols; /admin/me and enrolment stay open', async () => {
      const member = await createStaffMember(node, 'role_support')
      const signIn = await signInStaff(node, member.email, member.password)
      expect(signIn.statusCode).toBe(200)
      const body = signIn.json()
      expect(body.status).toBe('signed_in')
      expect(body.access_token).toEqual(expect.any(String))
      expect(body.refresh_token).toEqual(expect.any(String))
      expect(body.staff).toMatchObject({ id: member.id, mfa_enabled: false, role: { id: 'role_support' } })
      const token: string = body.access_token

      // The only routes open to a session pending MFA are about the session itself.
      const open = adminRoutes()
        .filter((r) => r.config.allowMfaPending)
        .map((r) => `${r.method} ${r.url}`)
        .sort()
      expect(open).toEqual([
        'GET /admin/me',
        'POST /admin/auth/sign-out',
        'POST /admin/auth/step-up',
        'POST /admin/me/mfa/totp',
        'POST /admin/me/mfa/totp/confirm',
      ])
      for (const route of adminRoutes().filter((r) => !r.config.allowMfaPending)) {
        const url = route.url.replace(/:\w+/g, MISSING_ID)
        const method = route.method as Method
        const res = await call(method, url, token, method === 'POST' || method === 'PATCH' ? {} : undefined)
        expect(res.statusCode, `${route.method} ${route.url}`).toBe(403)
        expect(res.json().code, `${route.method} ${route.url}`).toBe('mfa_required')
      }
      const me = await call('GET', '/admin/me', token)
      expect(me.statusCode).toBe(200)
      expect(me.json()).toMatchObject({ id: member.id, email: member.email, mfa_enabled: false })

      // Enrolment: a wrong first code is refused and leaves MFA off.
      const start = await call('POST', '/admin/me/mfa/totp', token)
      expect(start.statusCode).toBe(200)
      const { secret, otpauth_uri } = start.json()
      expect(secret).toMatch(/^[A-Z2-7]{32}$/)
      expect(otpauth_uri).toContain(`secret=${secret}`)
      const mfa: Mfa = { secret, lastStep: -1, recoveryCodes: [] }
      expectProblem(
        await call('POST', '/admin/me/mfa/totp/confirm', token, { code: wrongCode(mfa) }),
        401,
        'invalid_mfa_code',
      )
      expect((await call('GET', '/admin/customers', token)).json().code).toBe('mfa_required')

      const confirm = await call('POST', '/admin/me/mfa/totp/confirm', token, { code: await nextTotp(mfa) })
      expect(confirm.statusCode).toBe(200)
      const codes: string[] = confirm.json().recovery_codes
      expect(codes).toHaveLength(10)
      expect(new Set(codes).size).toBe(10)
      for (const code of codes) expect(code).toMatch(/^[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}$/)

      // The same session now works, within the role's permissions.
      expect((await call('GET', '/admin/customers', token)).statusCode).toBe(200)
      expect((await call('GET', '/admin/products', token)).statusCode).toBe(200)
      expectProblem(await createProduct(token), 403, 'forbidden')
      expect((await call('GET', '/admin/me', token)).json().mfa_enabled).toBe(true)
      // Enrolling twice is refused.
      expectProblem(await call('POST', '/admin/me/mfa/totp', token), 409, 'conflict')
    })

    it('does not force MFA on a role without sensitive permissions', async () => {
      const member = await createStaffMember(node, 'role_catalog_manager')
      const token = (await signInStaff(node, member.email, member.password)).json().access_token
      expect((await call('GET', '/admin/products', token)).statusCode).toBe(200)
      expect((await createProduct(token)).statusCode).toBe(201)
      // Outside the role it is a plain permission refusal, not an MFA demand.
      expectProblem(await call('GET', '/admin/customers', token), 403, 'forbidden')
    })

    it('does not force MFA on anyone when STAFF_MFA_REQUIRED=false', async () => {
      const relaxed = await startTestNode(kind, { env: { ...ENV, STAFF_MFA_REQUIRED: 'false' } })
      try {
        const member = await createStaffMember(relaxed, 'role_support')
        const token = (await signInStaff(relaxed, member.email, member.password)).json().access_token
        const res = await relaxed.app.inject({
          method: 'GET',
          url: '/admin/customers',
          headers: bearer(token),
        })
        expect(res.statusCode).toBe(200)
      } finally {
        await relaxed.close()
      }
    })
  })

  describe('MFA sign-in', () => {
    let member: StaffSession
    let deviceToken: string
    beforeAll(async () => {
      member = await newStaffSession(node, 'role_support')
    })

    const challenge = async () => {
      const res = await signInStaff(node, member.email, member.password)
      expect(res.statusCode).toBe(200)
      return res.json().challenge_token as string
    }
    const answer = (challengeToken: string, code: string) =>
      call('POST', '/admin/auth/mfa', undefined, { challenge_token: challengeToken, code })

    it('asks for a code instead of issuing tokens, and a valid code gives tokens and a device token', async () => {
      const first = await signInStaff(node, member.email, member.password)
      expect(first.statusCode).toBe(200)
      const body = first.json()
      expect(body).toEqual({ status: 'mfa_required', challenge_token: expect.any(String) })

      const code = await nextTotp(member.mfa)
      const done = await answer(body.challenge_token, code)
      expect(done.statusCode, done.body).toBe(200)
      const tokens = done.json()
      expect(tokens).toMatchObject({
        status: 'signed_in',
        token_type: 'Bearer',
        access_token: expect.any(String),
        refresh_token: expect.any(String),
        device_token: expect.any(String),
        staff: { id: member.id, mfa_enabled: true },
      })
      deviceToken = tokens.device_token
      expect((await call('GET', '/admin/customers', tokens.access_token)).statusCode).toBe(200)

      // The same code again, even with a new challenge, is a replay.
      expectProblem(await answer(await challenge(), code), 401, 'invalid_mfa_code')
    })

    it('refuses a wrong code and a garbage, forged, expired or misdirected challenge', async () => {
      const token = await challenge()
      expectProblem(await answer(token, wrongCode(member.mfa)), 401, 'invalid_mfa_code')
      expectProblem(await answer('garbage', '123456'), 401, 'invalid_token')
      expectProblem(await answer(`${token.slice(0, -4)}AAAA`, '123456'), 401, 'invalid_token')

      // A challenge for this staff member signed with the node's own key, but expired.
      const key = new Uint8Array(
        hkdfSync('sha256', node.runtime.config.appSecret, 'shopwright', 'access-token', 32),
      )
      const now = Math.floor(Date.now() / 1000)
      const expired = await new SignJWT({ dev: null })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(member.id)
        .setIssuer('shopwright')
        .setAudience('shopwright:mfa')
        .setIssuedAt(now - 600)
        .setExpirationTime(now - 300)
        .sign(key)
      expectProblem(await answer(expired, await nextTotp(member.mfa)), 401, 'invalid_token')
      // An access token is not a challenge.
      expectProblem(await answer(member.accessToken, '123456'), 401, 'invalid_token')
    })

    it('accepts each recovery code exactly once, however it is typed', async () => {
      const [first, second] = member.mfa.recoveryCodes as [string, string]
      const done = await answer(await challenge(), first)
      expect(done.statusCode, done.body).toBe(200)
      expect(done.json().access_token).toEqual(expect.any(String))
      expectProblem(await answer(await challenge(), first), 401, 'invalid_mfa_code')
      const typed = second.toUpperCase().replace(/-/g, ' ')
      expect((await answer(await challenge(), typed)).statusCode).toBe(200)
      expectProblem(await answer(await challenge(), second), 401, 'invalid_mfa_code')
    })

    it('skips the code on a trusted device and asks again on any other', async () => {
      const trusted = await signInStaff(node, member.email, member.password, { device_token: deviceToken })
      expect(trusted.statusCode).toBe(200)
      const body = trusted.json()
      expect(body.status).toBe('signed_in')
      expect(body.device_token).toBeNull()
      expect((await call('GET', '/admin/customers', body.access_token)).statusCode).toBe(200)

      expect((await signInStaff(node, member.email, member.password)).json().status).toBe('mfa_required')
      const unknownDevice = await signInStaff(node, member.email, member.password, {
        device_token: `dv_${randomBytes(32).toString('base64url')}`,
      })
      expect(unknownDevice.json().status).toBe('mfa_required')
      // A device token belongs to one staff member.
      const other = await newStaffSession(node, 'role_support')
      const borrowed = await signInStaff(node, other.email, other.password, { device_token: deviceToken })
      expect(borrowed.json().status).toBe('mfa_required')
      // The wrong password with a trusted device token is still the wrong password.
      expectProblem(
        await signInStaff(node, member.email, `${member.password}x`, { device_token: deviceToken }),
        401,
        'invalid_credentials',
      )
      // Trust lapses after 30 days without use.
      await db()
        .updateTable('staff_devices')
        .set({ last_seen_at: new Date(Date.now() - 31 * 24 * 3_600_000) })
        .where('staff_id', '=', member.id)
        .execute()
      const lapsed = await signInStaff(node, member.email, member.password, { device_token: deviceToken })
      expect(lapsed.json().status).toBe('mfa_required')
    })
  })

  describe('step-up', () => {
    it('refuses dangerous actions without a fresh MFA, and allows them after a step-up', async () => {
      const owner = await newStaffSession(node, 'role_owner')
      const target = await createStaffMember(node, 'role_analyst')
      const role = await createRole(db(), rootActor, {
        name: `stepup-${handle()}`,
        permissions: ['products:read'],
      })
      const doomed = await createRole(db(), rootActor, {
        name: `doomed-${handle()}`,
        permissions: ['products:read'],
      })
      const dangerous: Array<[Method, string, object | undefined]> = [
        ['POST', '/admin/api-keys', { name: 'sync', permissions: ['products:read'] }],
        [
          'POST',
          '/admin/staff',
          { email: uniqueEmail(), password: strongPassword(), role_id: 'role_analyst' },
        ],
        ['PATCH', `/admin/staff/${target.id}`, { role_id: 'role_catalog_manager' }],
        ['POST', '/admin/roles', { name: `new-${handle()}`, permissions: ['orders:read'] }],
        ['PATCH', `/admin/roles/${role.id}`, { permissions: ['products:read', 'products:write'] }],
        ['DELETE', `/admin/roles/${doomed.id}`, undefined],
        ['POST', `/admin/staff/${target.id}/mfa/reset`, undefined],
      ]
      // Every route flagged as dangerous is in the list above.
      const flagged = adminRoutes()
        .filter((r) => r.config.stepUp)
        .map((r) => `${r.method} ${r.url}`)
        .sort()
      expect(flagged).toEqual(
        [
          'POST /admin/api-keys',
          'POST /admin/staff',
          'PATCH /admin/staff/:id',
          'POST /admin/roles',
          'PATCH /admin/roles/:id',
          'DELETE /admin/roles/:id',
          'POST /admin/staff/:id/mfa/reset',
          'POST /admin/orders/:id/refunds',
        ].sort(),
      )

      await ageMfa(owner.id)
      for (const [method, url, payload] of dangerous) {
        expectProblem(await call(method, url, owner.accessToken, payload), 403, 'step_up_required')
      }
      // Nothing happened.
      expect(
        await db().selectFrom('api_keys').select('id').where('created_by', '=', owner.id).execute(),
      ).toEqual([])
      const still = await db()
        .selectFrom('staff_users')
        .select('role_id')
        .where('id', '=', target.id)
        .executeTakeFirst()
      expect(still?.role_id).toBe('role_analyst')
      expect(
        await db().selectFrom('roles').select('id').where('id', '=', doomed.id).executeTakeFirst(),
      ).toBeDefined()
      // Non-dangerous work goes on meanwhile.
      expect((await call('GET', '/admin/staff', owner.accessToken)).statusCode).toBe(200)

      // A wrong code does not step up.
      expectProblem(
        await call('POST', '/admin/auth/step-up', owner.accessToken, { code: wrongCode(owner.mfa) }),
        401,
        'invalid_mfa_code',
      )
      const [keyMethod, keyUrl, keyBody] = dangerous[0]!
      expectProblem(await call(keyMethod, keyUrl, owner.accessToken, keyBody), 403, 'step_up_required')

      const up = await stepUp(node, owner.accessToken, owner.mfa)
      expect(up.statusCode, up.body).toBe(204)
      const expected = [201, 201, 200, 201, 200, 204, 200]
      for (const [i, [method, url, payload]] of dangerous.entries()) {
        const res = await call(method, url, owner.accessToken, payload)
        expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(expected[i])
      }
    })

    it('counts a TOTP sign-in as fresh, and refuses a step-up without MFA enrolled', async () => {
      const owner = await newStaffSession(node, 'role_owner')
      const signedIn = await signInWithTotp(node, owner, owner.mfa)
      expect(signedIn.statusCode).toBe(200)
      const res = await call('POST', '/admin/api-keys', signedIn.json().access_token, {
        name: 'fresh',
        permissions: ['products:read'],
      })
      expect(res.statusCode, res.body).toBe(201)

      const unenrolled = await createStaffMember(node, 'role_catalog_manager')
      const token = (await signInStaff(node, unenrolled.email, unenrolled.password)).json().access_token
      expectProblem(
        await call('POST', '/admin/auth/step-up', token, { code: '123456' }),
        401,
        'invalid_mfa_code',
      )
    })

    // A trusted device replaces the code at sign-in, but must not open the step-up window.
    it('does not count a trusted-device sign-in, where no code was entered, as a fresh MFA', async () => {
      const owner = await newStaffSession(node, 'role_owner')
      const signedIn = await signInWithTotp(node, owner, owner.mfa)
      const deviceToken = signedIn.json().device_token
      await ageMfa(owner.id)
      const viaDevice = await signInStaff(node, owner.email, owner.password, { device_token: deviceToken })
      expect(viaDevice.json().status).toBe('signed_in')
      const token = viaDevice.json().access_token
      // Ordinary work needs no code on a trusted device...
      expect((await call('GET', '/admin/customers', token)).statusCode).toBe(200)
      // ...but a dangerous action still needs a fresh code (docs/api.md: "need a fresh code through
      // POST /admin/auth/step-up within the last 5 minutes").
      expectProblem(
        await call('POST', '/admin/api-keys', token, { name: 'device', permissions: ['products:read'] }),
        403,
        'step_up_required',
      )
    })
  })

  describe('API keys', () => {
    let owner: StaffSession
    beforeAll(async () => {
      owner = await newStaffSession(node, 'role_owner')
    })
    const createKey = (permissions: string[], extra: object = {}, token = owner.accessToken) =>
      call('POST', '/admin/api-keys', token, { name: `key-${handle()}`, permissions, ...extra })

    it('shows the secret once, works within its permissions, and records its last use', async () => {
      const created = await createKey(['products:read'])
      expect(created.statusCode, created.body).toBe(201)
      const { key, secret } = created.json()
      expect(secret).toMatch(API_KEY_PATTERN)
      expect(secret.startsWith(`sk_${key.prefix}_`)).toBe(true)
      expect(key).toMatchObject({ permissions: ['products:read'], created_by: owner.id, last_used_at: null })
      expect(Object.keys(key).sort()).toEqual(
        [
          'created_at',
          'created_by',
          'expires_at',
          'id',
          'last_used_at',
          'name',
          'permissions',
          'prefix',
          'revoked_at',
        ].sort(),
      )

      const list = await call('GET', '/admin/api-keys', owner.accessToken)
      expect(list.statusCode).toBe(200)
      expect(list.body).not.toContain('secret')
      expect(list.body).not.toContain('secret_hash')
      // The secret part follows the fixed-length prefix; it may itself contain underscores.
      expect(list.body).not.toContain(secret.slice('sk_'.length + 12 + 1))
      expect(list.json().data.map((k: { id: string }) => k.id)).toContain(key.id)

      expect((await call('GET', '/admin/products', secret)).statusCode).toBe(200)
      expectProblem(await createProduct(secret), 403, 'forbidden')
      expectProblem(await call('GET', '/admin/customers', secret), 403, 'forbidden')
      expectProblem(await call('GET', '/admin/me', secret), 403, 'forbidden')

      const listed = (await call('GET', '/admin/api-keys', owner.accessToken))
        .json()
        .data.find((k: { id: string }) => k.id === key.id)
      expect(listed.last_used_at).not.toBeNull()
      expect(Date.now() - Date.parse(listed.last_used_at)).toBeLessThan(60_000)
    })

    it('cannot be stronger than its creator, or name unknown permissions', async () => {
      const admin = await newStaffSession(node, 'role_admin')
      expectProblem(
        await createKey(['products:read', 'staff:manage'], {}, admin.accessToken),
        403,
        'forbidden',
      )
      expect((await createKey(['products:read'], {}, admin.accessToken)).statusCode).toBe(201)
      expectProblem(await createKey(['products:fly']), 400, 'validation_failed')
      expectProblem(await createKey(['not a permission']), 400, 'validation_failed')
      expectProblem(
        await createKey(['products:read'], { expires_at: new Date(Date.now() - 1000).toISOString() }),
        400,
        'validation_failed',
      )
    })

    it('stops working at once when revoked or expired; a made-up key is refused', async () => {
      const revoked = (await createKey(['products:read'])).json()
      expect((await call('GET', '/admin/products', revoked.secret)).statusCode).toBe(200)
      const del = await call('DELETE', `/admin/api-keys/${revoked.key.id}`, owner.accessToken)
      expect(del.statusCode).toBe(200)
      expect(del.json().revoked_at).not.toBeNull()
      expectProblem(await call('GET', '/admin/products', revoked.secret), 401, 'unauthenticated')
      expectProblem(
        await call('DELETE', `/admin/api-keys/${MISSING_ID}`, owner.accessToken),
        404,
        'not_found',
      )

      const expiring = (
        await createKey(['products:read'], { expires_at: new Date(Date.now() + 3_600_000).toISOString() })
      ).json()
      expect((await call('GET', '/admin/products', expiring.secret)).statusCode).toBe(200)
      await db()
        .updateTable('api_keys')
        .set({ expires_at: new Date(Date.now() - 1000) })
        .where('id', '=', expiring.key.id)
        .execute()
      expectProblem(await call('GET', '/admin/products', expiring.secret), 401, 'unauthenticated')

      const live = (await createKey(['products:read'])).json()
      const [, prefix] = live.secret.split('_')
      const forged = [
        `sk_${prefix}_${randomBytes(32).toString('base64url')}`, // real prefix, wrong secret
        `sk_aaaaaaaaaaaa_${randomBytes(32).toString('base64url')}`,
        'sk_garbage',
        `${live.secret}x`,
      ]
      for (const token of forged) {
        expectProblem(await call('GET', '/admin/products', token), 401, 'unauthenticated')
      }
      expect((await call('GET', '/admin/products', live.secret)).statusCode).toBe(200)
    })

    it('holds no more than its creator holds now: demoting narrows it, disabling stops it', async () => {
      const creator = await newStaffSession(node, 'role_admin')
      const { key, secret } = (
        await createKey(['customers:read', 'products:read', 'api_keys:read'], {}, creator.accessToken)
      ).json()
      const status = async (url: string) => (await call('GET', url, secret)).statusCode
      expect(await status('/admin/customers')).toBe(200)
      const patchCreator = (body: object) =>
        call('PATCH', `/admin/staff/${creator.id}`, owner.accessToken, body)

      expect((await patchCreator({ role_id: 'role_catalog_manager' })).statusCode).toBe(200)
      expectProblem(await call('GET', '/admin/customers', secret), 403, 'forbidden')
      expectProblem(await call('GET', '/admin/api-keys', secret), 403, 'forbidden')
      expect(await status('/admin/products')).toBe(200)

      expect((await patchCreator({ role_id: 'role_admin' })).statusCode).toBe(200)
      expect(await status('/admin/customers')).toBe(200)

      expect((await patchCreator({ disabled: true })).statusCode).toBe(200)
      expectProblem(await call('GET', '/admin/products', secret), 401, 'unauthenticated')
      // The key itself is untouched: its scope shows as created, and re-enabling the creator revives it.
      const listed = (await call('GET', '/admin/api-keys', owner.accessToken))
        .json()
        .data.find((k: { id: string }) => k.id === key.id)
      expect(listed).toMatchObject({
        permissions: ['customers:read', 'products:read', 'api_keys:read'],
        revoked_at: null,
      })
      expect((await patchCreator({ disabled: false })).statusCode).toBe(200)
      expect(await status('/admin/customers')).toBe(200)
    })

    it('follows edits of the creator’s custom role, and a bootstrap token’s key keeps its scope', async () => {
      const role = await createRole(db(), rootActor, {
        name: `integrator-${handle()}`,
        permissions: ['api_keys:write', 'customers:read', 'products:read'],
      })
      const creator = await newStaffSession(node, role.id)
      const { secret } = (await createKey(['customers:read'], {}, creator.accessToken)).json()
      expect((await call('GET', '/admin/customers', secret)).statusCode).toBe(200)
      await call('PATCH', `/admin/roles/${role.id}`, owner.accessToken, {
        permissions: ['api_keys:write', 'products:read'],
      })
      expectProblem(await call('GET', '/admin/customers', secret), 403, 'forbidden')

      const bootstrapKey = await call(
        'POST',
        '/admin/api-keys',
        undefined,
        { name: `boot-${handle()}`, permissions: ['customers:read'] },
        adminAuth,
      )
      expect(bootstrapKey.statusCode, bootstrapKey.body).toBe(201)
      expect((await call('GET', '/admin/customers', bootstrapKey.json().secret)).statusCode).toBe(200)
    })

    it('cannot create API keys or step up itself, since a key cannot do MFA', async () => {
      const strong = (await createKey(['api_keys:write', 'api_keys:read', 'products:read'])).json()
      expectProblem(await createKey(['products:read'], {}, strong.secret), 403, 'step_up_required')
      expectProblem(
        await call('POST', '/admin/auth/step-up', strong.secret, { code: '123456' }),
        403,
        'forbidden',
      )
      const weak = (await createKey(['products:read'])).json()
      expectProblem(await createKey(['products:read'], {}, weak.secret), 403, 'forbidden')
    })
  })

  describe('staff management', () => {
    let owner: StaffSession
    beforeAll(async () => {
      owner = await newStaffSession(node, 'role_owner')
    })
    const patchStaff = (id: string, body: object) =>
      call('PATCH', `/admin/staff/${id}`, owner.accessToken, body)

    it('disabling a member ends their sessions at once and blocks sign-in until re-enabled', async () => {
      const member = await createStaffMember(node, 'role_catalog_manager')
      const tokens = (await signInStaff(node, member.email, member.password)).json()
      expect((await call('GET', '/admin/me', tokens.access_token)).statusCode).toBe(200)

      const res = await patchStaff(member.id, { disabled: true })
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json().disabled).toBe(true)
      expectProblem(await call('GET', '/admin/me', tokens.access_token), 401, 'unauthenticated')
      expectProblem(
        await call('POST', '/admin/auth/refresh', undefined, { refresh_token: tokens.refresh_token }),
        401,
        'invalid_token',
      )
      expectProblem(await signInStaff(node, member.email, member.password), 401, 'invalid_credentials')

      expect((await patchStaff(member.id, { disabled: false })).json().disabled).toBe(false)
      expect((await signInStaff(node, member.email, member.password)).json().status).toBe('signed_in')
    })

    it('resets a member’s lost MFA: sessions end, and the next sign-in must enrol again', async () => {
      const member = await newStaffSession(node, 'role_support')
      expect((await call('GET', '/admin/customers', member.accessToken)).statusCode).toBe(200)
      const res = await call('POST', `/admin/staff/${member.id}/mfa/reset`, owner.accessToken)
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json().mfa_enabled).toBe(false)
      expectProblem(await call('GET', '/admin/me', member.accessToken), 401, 'unauthenticated')
      const again = await signInStaff(node, member.email, member.password)
      expect(again.json().status).toBe('signed_in')
      expectProblem(await call('GET', '/admin/customers', again.json().access_token), 403, 'mfa_required')
      expectProblem(
        await call('POST', `/admin/staff/${owner.id}/mfa/reset`, owner.accessToken),
        409,
        'conflict',
      )
    })

    it('changing a member’s role ends their sessions; the new sign-in carries the new role', async () => {
      const member = await createStaffMember(node, 'role_catalog_manager')
      const token = (await signInStaff(node, member.email, member.password)).json().access_token
      expect((await createProduct(token)).statusCode).toBe(201)

      const res = await patchStaff(member.id, { role_id: 'role_analyst' })
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json().role.id).toBe('role_analyst')
      expectProblem(await call('GET', '/admin/me', token), 401, 'unauthenticated')
      const fresh = (await signInStaff(node, member.email, member.password)).json()
      expect(fresh.staff.role.id).toBe('role_analyst')
      expect(fresh.staff.role.permissions).not.toContain('products:write')
      // A rename alone does not end the session.
      expect((await patchStaff(member.id, { name: 'Renamed' })).json().name).toBe('Renamed')
      expect((await call('GET', '/admin/me', fresh.access_token)).json().name).toBe('Renamed')
    })

    it('does not let staff disable themselves or change their own role', async () => {
      expectProblem(await patchStaff(owner.id, { disabled: true }), 409, 'conflict')
      expectProblem(await patchStaff(owner.id, { role_id: 'role_admin' }), 409, 'conflict')
      expect((await call('GET', '/admin/me', owner.accessToken)).json()).toMatchObject({
        disabled: false,
        role: { id: 'role_owner' },
      })
    })

    it('creates staff, refusing weak passwords, taken emails, unknown roles and unknown fields', async () => {
      const email = uniqueEmail('new')
      const create = (body: object) => call('POST', '/admin/staff', owner.accessToken, body)
      const password = strongPassword()
      const created = await create({ email, name: 'New', password, role_id: 'role_analyst' })
      expect(created.statusCode, created.body).toBe(201)
      expect(created.json()).toMatchObject({ email, name: 'New', mfa_enabled: false, disabled: false })
      expect(created.json().role.id).toBe('role_analyst')
      expect((await signInStaff(node, email, password)).statusCode).toBe(200)

      expectProblem(
        await create({ email: uniqueEmail(), password: 'short', role_id: 'role_analyst' }),
        400,
        'weak_password',
      )
      expectProblem(
        await create({ email: uniqueEmail(), password: 'password123', role_id: 'role_analyst' }),
        400,
        'weak_password',
      )
      expectProblem(
        await create({ email: email.toUpperCase(), password: strongPassword(), role_id: 'role_analyst' }),
        409,
        'email_taken',
      )
      expectProblem(
        await create({ email: uniqueEmail(), password: strongPassword(), role_id: 'role_nope' }),
        400,
        'validation_failed',
      )
      expectProblem(
        await create({
          email: uniqueEmail(),
          password: strongPassword(),
          role_id: 'role_analyst',
          disabled_at: null,
        }),
        400,
        'validation_failed',
      )
      expectProblem(await patchStaff(created.json().id, { role_id: 'role_nope' }), 400, 'validation_failed')
      expectProblem(await patchStaff(MISSING_ID, { name: 'x' }), 404, 'not_found')
    })

    it('answers 409 email_taken to the losers of creations racing for one email', async () => {
      // Found by the bad-input fuzz test on PostgreSQL: both passed the check for a taken email, and
      // the unique index refused the second insert with a 500.
      for (let round = 0; round < 3; round++) {
        const email = uniqueEmail('race')
        const answers = await Promise.all(
          Array.from({ length: 4 }, () =>
            call(
              'POST',
              '/admin/staff',
              undefined,
              { email, password: strongPassword(), role_id: 'role_analyst' },
              adminAuth,
            ),
          ),
        )
        expect(answers.map((a) => a.statusCode).sort()).toEqual([201, 409, 409, 409])
        for (const a of answers.filter((a) => a.statusCode === 409)) expect(a.json().code).toBe('email_taken')
      }
    })
  })

  describe('staff managers stay within their own role', () => {
    let manager: StaffSession
    let managerRoleId: string
    let weakRoleId: string
    beforeAll(async () => {
      managerRoleId = (
        await createRole(db(), rootActor, {
          name: `hr-${handle()}`,
          permissions: ['staff:manage', 'staff:read', 'products:read'],
        })
      ).id
      weakRoleId = (
        await createRole(db(), rootActor, { name: `viewer-${handle()}`, permissions: ['products:read'] })
      ).id
      manager = await newStaffSession(node, managerRoleId)
    })
    const asManager = (method: Method, url: string, body?: object) =>
      call(method, url, manager.accessToken, body)
    const createAs = (roleId: string) =>
      asManager('POST', '/admin/staff', {
        email: uniqueEmail('hire'),
        password: strongPassword(),
        role_id: roleId,
      })
    const stored = (id: string) =>
      db()
        .selectFrom('staff_users')
        .select(['role_id', 'disabled_at'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow()

    it('creates staff only with a role whose permissions the manager holds', async () => {
      for (const roleId of ['role_owner', 'role_admin', 'role_analyst']) {
        const res = await createAs(roleId)
        expectProblem(res, 403, 'forbidden')
        expect(res.json().detail).toContain('You cannot grant a role with permissions you do not hold')
      }
      expect((await createAs(weakRoleId)).statusCode).toBe(201)
      expect((await createAs(managerRoleId)).statusCode).toBe(201)
      const byBootstrap = await call(
        'POST',
        '/admin/staff',
        undefined,
        { email: uniqueEmail('owner'), password: strongPassword(), role_id: 'role_owner' },
        adminAuth,
      )
      expect(byBootstrap.statusCode, byBootstrap.body).toBe(201)
    })

    it('cannot promote anyone to a role beyond their own', async () => {
      const member = await createStaffMember(node, weakRoleId)
      for (const roleId of ['role_owner', 'role_catalog_manager']) {
        expectProblem(
          await asManager('PATCH', `/admin/staff/${member.id}`, { role_id: roleId }),
          403,
          'forbidden',
        )
      }
      expect((await stored(member.id)).role_id).toBe(weakRoleId)
      const promoted = await asManager('PATCH', `/admin/staff/${member.id}`, { role_id: managerRoleId })
      expect(promoted.statusCode, promoted.body).toBe(200)
      expect(promoted.json().role.id).toBe(managerRoleId)
    })

    it('cannot disable, re-enable, rename, change or reset the MFA of a member whose role exceeds theirs', async () => {
      const owner = await newStaffSession(node, 'role_owner')
      for (const body of [{ disabled: true }, { name: 'Ex-owner' }, { role_id: weakRoleId }]) {
        const res = await asManager('PATCH', `/admin/staff/${owner.id}`, body)
        expectProblem(res, 403, 'forbidden')
        expect(res.json().detail).toContain('whose role holds permissions you do not')
      }
      expectProblem(await asManager('POST', `/admin/staff/${owner.id}/mfa/reset`), 403, 'forbidden')
      expect(await stored(owner.id)).toEqual({ role_id: 'role_owner', disabled_at: null })
      const me = await call('GET', '/admin/me', owner.accessToken)
      expect(me.json()).toMatchObject({ mfa_enabled: true, disabled: false, name: 'role_owner' })

      const disabledAdmin = await createStaffMember(node, 'role_admin')
      await db()
        .updateTable('staff_users')
        .set({ disabled_at: new Date() })
        .where('id', '=', disabledAdmin.id)
        .execute()
      expectProblem(
        await asManager('PATCH', `/admin/staff/${disabledAdmin.id}`, { disabled: false }),
        403,
        'forbidden',
      )
      expect((await stored(disabledAdmin.id)).disabled_at).not.toBeNull()
    })

    it('cannot edit a custom role that holds permissions they lack', async () => {
      const editorRole = (
        await createRole(db(), rootActor, {
          name: `role-editor-${handle()}`,
          permissions: ['roles:read', 'roles:write', 'products:read'],
        })
      ).id
      const editor = await newStaffSession(node, editorRole)
      const finance = (
        await createRole(db(), rootActor, {
          name: `finance-${handle()}`,
          permissions: ['orders:read', 'orders:refund', 'products:read'],
        })
      ).id
      for (const body of [{ permissions: ['products:read'] }, { name: `renamed-${handle()}` }]) {
        const res = await call('PATCH', `/admin/roles/${finance}`, editor.accessToken, body)
        expectProblem(res, 403, 'forbidden')
        expect(res.json().detail).toContain('You cannot change a role with permissions you do not hold')
      }
      const kept = await db()
        .selectFrom('roles')
        .select('permissions')
        .where('id', '=', finance)
        .executeTakeFirstOrThrow()
      expect(kept.permissions).toEqual(['orders:read', 'orders:refund', 'products:read'])
      const within = await call('PATCH', `/admin/roles/${weakRoleId}`, editor.accessToken, {
        description: 'Catalog viewers',
      })
      expect(within.statusCode, within.body).toBe(200)
    })

    it('still manages members within their role: disable, re-enable, reset MFA', async () => {
      const member = await newStaffSession(node, weakRoleId)
      expect(
        (await asManager('PATCH', `/admin/staff/${member.id}`, { disabled: true })).json().disabled,
      ).toBe(true)
      expect(
        (await asManager('PATCH', `/admin/staff/${member.id}`, { disabled: false })).json().disabled,
      ).toBe(false)
      const reset = await asManager('POST', `/admin/staff/${member.id}/mfa/reset`)
      expect(reset.statusCode, reset.body).toBe(200)
      expect(reset.json().mfa_enabled).toBe(false)
    })
  })

  describe('the last owner', () => {
    let fresh: TestNode
    beforeAll(async () => {
      fresh = await startTestNode(kind, { env: ENV })
    })
    afterAll(() => fresh?.close())
    const patch = (id: string, body: object, headers: Record<string, string> = adminAuth) =>
      fresh.app.inject({ method: 'PATCH', url: `/admin/staff/${id}`, headers, payload: body })
    const enabledOwners = async () =>
      (
        await fresh.runtime.database.db
          .selectFrom('staff_users')
          .select('id')
          .where('role_id', '=', 'role_owner')
          .where('disabled_at', 'is', null)
          .execute()
      ).map((r) => r.id)

    it('cannot be disabled or given another role, even by the bootstrap token', async () => {
      const first = await createStaffMember(fresh, 'role_owner')
      expect(await enabledOwners()).toEqual([first.id])
      expectProblem(await patch(first.id, { disabled: true }), 409, 'conflict')
      expectProblem(await patch(first.id, { role_id: 'role_admin' }), 409, 'conflict')
      expect((await patch(first.id, { name: 'Still here' })).statusCode).toBe(200)

      const second = await createStaffMember(fresh, 'role_owner')
      expect((await patch(first.id, { disabled: true })).statusCode).toBe(200)
      expectProblem(await patch(second.id, { disabled: true }), 409, 'conflict')
      expect((await patch(first.id, { disabled: false })).statusCode).toBe(200)
      expect((await patch(second.id, { role_id: 'role_admin' })).statusCode).toBe(200)
      expect(await enabledOwners()).toEqual([first.id])
    })

    it('survives two owners disabling each other at once', async () => {
      const [a, b] = [await newStaffSession(fresh, 'role_owner'), await newStaffSession(fresh, 'role_owner')]
      // Leave only these two enabled owners.
      await fresh.runtime.database.db
        .updateTable('staff_users')
        .set({ role_id: 'role_admin' })
        .where('role_id', '=', 'role_owner')
        .where('id', 'not in', [a.id, b.id])
        .execute()
      const answers = await Promise.all([
        patch(b.id, { disabled: true }, bearer(a.accessToken)),
        patch(a.id, { disabled: true }, bearer(b.accessToken)),
      ])
      expect(answers.map((r) => r.statusCode)).toContain(200)
      expect((await enabledOwners()).length).toBe(1)
    })
  })

  describe('roles', () => {
    let owner: StaffSession
    beforeAll(async () => {
      owner = await newStaffSession(node, 'role_owner')
    })
    const roles = (method: Method, url: string, body?: object) => call(method, url, owner.accessToken, body)

    it('creates, changes and deletes a custom role; holders get the new permissions at once', async () => {
      const name = `packers-${handle()}`
      const created = await roles('POST', '/admin/roles', {
        name,
        description: 'Pack',
        permissions: ['products:read'],
      })
      expect(created.statusCode, created.body).toBe(201)
      const role = created.json()
      expect(role).toMatchObject({
        name,
        description: 'Pack',
        permissions: ['products:read'],
        built_in: false,
      })

      const list = (await roles('GET', '/admin/roles')).json()
      expect(list.data.map((r: { id: string }) => r.id)).toContain(role.id)
      expect(list.permissions).toContain('products:write')

      const holder = await createStaffMember(node, role.id)
      const token = (await signInStaff(node, holder.email, holder.password)).json().access_token
      expectProblem(await createProduct(token), 403, 'forbidden')
      const changed = await roles('PATCH', `/admin/roles/${role.id}`, {
        permissions: ['products:read', 'products:write'],
      })
      expect(changed.statusCode, changed.body).toBe(200)
      expect(changed.json().permissions).toEqual(['products:read', 'products:write'])
      expect((await createProduct(token)).statusCode).toBe(201)

      expectProblem(await roles('DELETE', `/admin/roles/${role.id}`), 409, 'role_in_use')
      await db()
        .updateTable('staff_users')
        .set({ role_id: 'role_analyst' })
        .where('id', '=', holder.id)
        .execute()
      expect((await roles('DELETE', `/admin/roles/${role.id}`)).statusCode).toBe(204)
      const after = (await roles('GET', '/admin/roles')).json()
      expect(after.data.map((r: { id: string }) => r.id)).not.toContain(role.id)
      expectProblem(await roles('DELETE', `/admin/roles/${role.id}`), 404, 'not_found')
    })

    it('refuses unknown permissions, taken names and mass assignment', async () => {
      expectProblem(
        await roles('POST', '/admin/roles', { name: `bad-${handle()}`, permissions: ['products:fly'] }),
        400,
        'validation_failed',
      )
      const name = `taken-${handle()}`
      const role = (await roles('POST', '/admin/roles', { name, permissions: [] })).json()
      expectProblem(await roles('POST', '/admin/roles', { name, permissions: [] }), 409, 'conflict')
      expectProblem(
        await roles('POST', '/admin/roles', { name: `sneaky-${handle()}`, permissions: [], built_in: true }),
        400,
        'validation_failed',
      )
      expectProblem(
        await roles('POST', '/admin/roles', {
          id: 'role_owner',
          name: `sneaky-${handle()}`,
          permissions: [],
        }),
        400,
        'validation_failed',
      )
      expectProblem(
        await roles('PATCH', `/admin/roles/${role.id}`, { built_in: true }),
        400,
        'validation_failed',
      )
      expectProblem(
        await roles('PATCH', `/admin/roles/${role.id}`, { permissions: ['staff:fly'] }),
        400,
        'validation_failed',
      )
      const stored = await db().selectFrom('roles').selectAll().where('id', '=', role.id).executeTakeFirst()
      expect(stored).toMatchObject({ built_in: false, permissions: [] })
    })

    it('answers 409 when a custom role is renamed to a taken name', async () => {
      const a = (await roles('POST', '/admin/roles', { name: `a-${handle()}`, permissions: [] })).json()
      const b = (await roles('POST', '/admin/roles', { name: `b-${handle()}`, permissions: [] })).json()
      expectProblem(await roles('PATCH', `/admin/roles/${b.id}`, { name: a.name }), 409, 'conflict')
    })

    it('refuses to let a role editor grant permissions they do not hold', async () => {
      const editorRole = await createRole(db(), rootActor, {
        name: `editor-${handle()}`,
        permissions: ['roles:read', 'roles:write', 'products:read'],
      })
      const editor = await newStaffSession(node, editorRole.id)
      const res = await node.app.inject({
        method: 'PATCH',
        url: `/admin/roles/${editorRole.id}`,
        headers: bearer(editor.accessToken),
        payload: { permissions: ['roles:read', 'roles:write', 'products:read', 'staff:manage'] },
      })
      expectProblem(res, 403, 'forbidden')
      const created = await node.app.inject({
        method: 'POST',
        url: '/admin/roles',
        headers: bearer(editor.accessToken),
        payload: { name: `sneaky-${handle()}`, permissions: ['audit_log:read'] },
      })
      expectProblem(created, 403, 'forbidden')
      const stored = await db()
        .selectFrom('roles')
        .select('permissions')
        .where('id', '=', editorRole.id)
        .executeTakeFirst()
      expect(stored?.permissions).toEqual(['roles:read', 'roles:write', 'products:read'])
    })

    it('keeps built-in roles fixed', async () => {
      expectProblem(
        await roles('PATCH', '/admin/roles/role_admin', { permissions: ['products:read'] }),
        409,
        'built_in_role',
      )
      expectProblem(
        await roles('PATCH', '/admin/roles/role_analyst', { name: 'renamed' }),
        409,
        'built_in_role',
      )
      expectProblem(await roles('DELETE', '/admin/roles/role_owner'), 409, 'built_in_role')
      expectProblem(await roles('DELETE', '/admin/roles/role_support'), 409, 'built_in_role')
      const admin = await db()
        .selectFrom('roles')
        .select('permissions')
        .where('id', '=', 'role_admin')
        .executeTakeFirst()
      expect(admin?.permissions).toContain('orders:refund')
    })
  })

  describe('audit log', () => {
    let owner: StaffSession
    beforeAll(async () => {
      owner = await newStaffSession(node, 'role_owner')
    })

    interface Entry {
      id: string
      actor_type: string
      actor_id: string
      action: string
      resource_type: string
      resource_id: string | null
      status: number | null
      ip: string | null
      user_agent: string | null
      request_id: string | null
      at: string
    }
    const audit = async (query: Record<string, string>) => {
      const res = await call('GET', `/admin/audit-log?${new URLSearchParams(query)}`, owner.accessToken)
      expect(res.statusCode, res.body).toBe(200)
      return res.json() as { data: Entry[]; next_cursor: string | null }
    }
    /** The audit hook writes after the response is sent: poll briefly. */
    const waitFor = async (query: Record<string, string>, count = 1): Promise<Entry[]> => {
      for (let i = 0; ; i++) {
        const { data } = await audit({ ...query, limit: '100' })
        if (data.length >= count || i >= 60) return data
        await sleep(50)
      }
    }
    const requestId = () => `req-${randomBytes(8).toString('hex')}`

    it('records each admin write with actor, action, resource, status, IP, user agent and request id', async () => {
      const id = requestId()
      const created = await createProduct(owner.accessToken, {
        'user-agent': 'audit-test/1.0',
        'x-request-id': id,
      })
      expect(created.statusCode).toBe(201)
      const [entry] = await waitFor({ actor_id: owner.id, action: 'POST /admin/products' })
      expect(entry).toMatchObject({
        actor_type: 'staff',
        actor_id: owner.id,
        action: 'POST /admin/products',
        resource_type: 'products',
        status: 201,
        ip: '127.0.0.1',
        user_agent: 'audit-test/1.0',
        request_id: id,
      })

      const member = await createStaffMember(node, 'role_analyst')
      const patchId = requestId()
      const patched = await call(
        'PATCH',
        `/admin/staff/${member.id}`,
        owner.accessToken,
        { name: 'Audited' },
        {
          'x-request-id': patchId,
        },
      )
      expect(patched.statusCode).toBe(200)
      const [staffEntry] = await waitFor({ actor_id: owner.id, resource_type: 'staff' })
      expect(staffEntry).toMatchObject({
        action: 'PATCH /admin/staff/:id',
        resource_type: 'staff',
        resource_id: member.id,
        status: 200,
        request_id: patchId,
      })
    })

    it('records an attempt on a resource id holding U+0000, which PostgreSQL cannot store', async () => {
      // Found by the bad-input fuzz test: the entry's write failed, so the attempt went unrecorded.
      const id = requestId()
      const res = await call('GET', '/admin/customers/a%00b', owner.accessToken, undefined, {
        'x-request-id': id,
      })
      expect(res.statusCode).toBe(400)
      let entry: Entry | undefined
      for (let i = 0; i < 60 && !entry; i++) {
        entry = (await audit({ actor_id: owner.id, limit: '100' })).data.find((e) => e.request_id === id)
        if (!entry) await sleep(50)
      }
      expect(entry).toMatchObject({
        action: 'GET /admin/customers/:id',
        resource_id: 'a\ufffdb',
        status: 400,
      })
    })

    it('records reads of personal data but not plain catalog reads', async () => {
      const email = uniqueEmail('shopper')
      const signUp = await call('POST', '/store/auth/sign-up', undefined, {
        email,
        password: strongPassword(),
      })
      expect(signUp.statusCode).toBe(202)
      const customer = await db()
        .selectFrom('customers')
        .select('id')
        .where('email', '=', email)
        .executeTakeFirstOrThrow()

      const readId = requestId()
      const read = await call('GET', `/admin/customers/${customer.id}`, owner.accessToken, undefined, {
        'x-request-id': readId,
      })
      expect(read.statusCode).toBe(200)
      // By its resource: the owner's other customer attempts (the U+0000 one above) are logged too.
      const [entry] = await waitFor({
        actor_id: owner.id,
        resource_type: 'customer',
        resource_id: customer.id,
      })
      expect(entry).toMatchObject({
        action: 'GET /admin/customers/:id',
        resource_type: 'customer',
        resource_id: customer.id,
        status: 200,
        request_id: readId,
      })

      const catalogId = requestId()
      expect(
        (await call('GET', '/admin/products', owner.accessToken, undefined, { 'x-request-id': catalogId }))
          .statusCode,
      ).toBe(200)
      // A write after it, once recorded, shows the hook has run for the read too.
      const markerId = requestId()
      await createProduct(owner.accessToken, { 'x-request-id': markerId })
      const mine = await waitFor({ actor_id: owner.id })
      await sleep(100)
      const again = (await audit({ actor_id: owner.id, limit: '100' })).data
      expect(mine.length).toBeGreaterThan(0)
      expect(again.map((e) => e.request_id)).toContain(markerId)
      expect(again.map((e) => e.request_id)).not.toContain(catalogId)
      expect(again.filter((e) => e.action === 'GET /admin/products')).toEqual([])
    })

    it('does not record HEAD requests, which are reads, as writes', async () => {
      const headId = requestId()
      const head = await node.app.inject({
        method: 'HEAD',
        url: '/admin/products',
        headers: { ...bearer(owner.accessToken), 'x-request-id': headId },
      })
      expect(head.statusCode).toBe(200)
      const markerId = requestId()
      await createProduct(owner.accessToken, { 'x-request-id': markerId })
      await waitFor({ actor_id: owner.id, action: 'POST /admin/products' })
      await sleep(100)
      const entries = (await audit({ actor_id: owner.id, limit: '100' })).data
      expect(entries.map((e) => e.request_id)).toContain(markerId)
      expect(entries.filter((e) => e.request_id === headId)).toEqual([])
    })

    it('filters by actor, resource type, action and time, and pages with a cursor', async () => {
      const actor = await newStaffSession(node, 'role_owner')
      // Enrolment itself is audited (POST /admin/me/...); count from here on by action.
      for (let i = 0; i < 5; i++) expect((await createProduct(actor.accessToken)).statusCode).toBe(201)
      const member = await createStaffMember(node, 'role_analyst')
      expect(
        (await call('PATCH', `/admin/staff/${member.id}`, actor.accessToken, { name: 'Paged' })).statusCode,
      ).toBe(200)

      const all = await waitFor({ actor_id: actor.id }, 8)
      expect(all.every((e) => e.actor_id === actor.id)).toBe(true)
      const ids = all.map((e) => e.id)
      expect(ids).toEqual([...ids].sort().reverse())

      const products = await waitFor({ actor_id: actor.id, resource_type: 'products' }, 5)
      expect(products).toHaveLength(5)
      expect(
        products.every((e) => e.action === 'POST /admin/products' && e.resource_type === 'products'),
      ).toBe(true)
      const patches = (await audit({ actor_id: actor.id, action: 'PATCH /admin/staff/:id' })).data
      expect(patches).toHaveLength(1)
      expect(patches[0]?.resource_id).toBe(member.id)
      // Another actor's filter does not see these.
      expect((await audit({ actor_id: owner.id })).data.some((e) => e.actor_id === actor.id)).toBe(false)

      // Time: `from` is inclusive, `to` exclusive.
      const oldestFirst = [...products].reverse()
      const third = oldestFirst[2]!
      const fromThird = (await audit({ actor_id: actor.id, resource_type: 'products', from: third.at })).data
      expect(fromThird.map((e) => e.id)).toContain(third.id)
      expect(fromThird.map((e) => e.id)).not.toContain(oldestFirst[0]!.id)
      const beforeThird = (await audit({ actor_id: actor.id, resource_type: 'products', to: third.at })).data
      expect(beforeThird.map((e) => e.id)).not.toContain(third.id)
      expect(beforeThird.map((e) => e.id)).toContain(oldestFirst[0]!.id)
      const future = new Date(Date.now() + 3_600_000).toISOString()
      expect((await audit({ actor_id: actor.id, from: future })).data).toEqual([])

      // Pages of 2 add up to the whole list, in order, without repeats.
      const paged: string[] = []
      let cursor: string | null = null
      let pages = 0
      do {
        const page: { data: Entry[]; next_cursor: string | null } = await audit({
          actor_id: actor.id,
          limit: '2',
          ...(cursor ? { cursor } : {}),
        })
        expect(page.data.length).toBeLessThanOrEqual(2)
        paged.push(...page.data.map((e) => e.id))
        cursor = page.next_cursor
        pages++
      } while (cursor && pages < 50)
      expect(paged).toEqual(ids)
      expect(pages).toBe(Math.ceil(ids.length / 2))
      expectProblem(
        await call('GET', '/admin/audit-log?cursor=nope', owner.accessToken),
        400,
        'invalid_cursor',
      )
      // Found by the bad-input fuzz test: a leap second is RFC 3339 but no JavaScript Date (500).
      for (const bound of ['from', 'to']) {
        const refused = await call('GET', `/admin/audit-log?${bound}=2016-12-31T23:59:60Z`, owner.accessToken)
        expectProblem(refused, 400, 'validation_failed')
        expect(refused.json().errors[0].path).toBe(`query.${bound}`)
      }
    })

    it('cannot be changed through the API or in the database', async () => {
      const writes = node.app.routeTable.filter(
        (r) => r.url.startsWith('/admin/audit-log') && !['GET', 'HEAD'].includes(r.method),
      )
      expect(writes).toEqual([])
      for (const method of ['PUT', 'PATCH', 'DELETE'] as const) {
        const res = await node.app.inject({
          method,
          url: '/admin/audit-log',
          headers: bearer(owner.accessToken),
        })
        expect([404, 405]).toContain(res.statusCode)
      }

      await createProduct(owner.accessToken)
      await waitFor({ actor_id: owner.id })
      const before = await db().selectFrom('audit_log').selectAll().orderBy('id').execute()
      expect(before.length).toBeGreaterThan(0)
      await expect(sql`update audit_log set action = 'x'`.execute(db())).rejects.toThrow(/append-only/)
      await expect(sql`delete from audit_log`.execute(db())).rejects.toThrow(/append-only/)
      await expect(sql`truncate audit_log`.execute(db())).rejects.toThrow(/append-only/)
      await expect(db().deleteFrom('audit_log').where('actor_id', '=', owner.id).execute()).rejects.toThrow(
        /append-only/,
      )
      const after = await db().selectFrom('audit_log').selectAll().orderBy('id').execute()
      expect(after.slice(0, before.length)).toEqual(before)
    })
  })

  describe('responses never carry hashes or secrets', () => {
    it('holds for sign-in, MFA, me, staff, roles and API keys', async () => {
      const seen: LightMyRequestResponse[] = []
      const keep = (res: LightMyRequestResponse) => {
        seen.push(res)
        return res
      }
      const member = await createStaffMember(node, 'role_owner')
      const first = keep(await signInStaff(node, member.email, member.password))
      const token = first.json().access_token
      keep(await call('GET', '/admin/me', token))
      const start = keep(await call('POST', '/admin/me/mfa/totp', token))
      const mfa: Mfa = { secret: start.json().secret, lastStep: -1, recoveryCodes: [] }
      keep(await call('POST', '/admin/me/mfa/totp/confirm', token, { code: await nextTotp(mfa) }))
      keep(await call('GET', '/admin/me', token))
      const challenge = keep(await signInStaff(node, member.email, member.password))
      const done = keep(
        await call('POST', '/admin/auth/mfa', undefined, {
          challenge_token: challenge.json().challenge_token,
          code: await nextTotp(mfa),
        }),
      )
      keep(await signInStaff(node, member.email, member.password, { device_token: done.json().device_token }))
      keep(await call('POST', '/admin/auth/refresh', undefined, { refresh_token: done.json().refresh_token }))
      const fresh = done.json().access_token
      keep(await call('GET', '/admin/staff', fresh))
      const created = keep(
        await call('POST', '/admin/staff', fresh, {
          email: uniqueEmail(),
          password: strongPassword(),
          role_id: 'role_analyst',
        }),
      )
      keep(await call('PATCH', `/admin/staff/${created.json().id}`, fresh, { name: 'Checked' }))
      keep(await call('GET', '/admin/roles', fresh))
      const role = keep(await call('POST', '/admin/roles', fresh, { name: `r-${handle()}`, permissions: [] }))
      keep(await call('PATCH', `/admin/roles/${role.json().id}`, fresh, { description: 'x' }))
      const key = keep(
        await call('POST', '/admin/api-keys', fresh, { name: 'k', permissions: ['products:read'] }),
      )
      keep(await call('GET', '/admin/api-keys', fresh))
      keep(await call('DELETE', `/admin/api-keys/${key.json().key.id}`, fresh))
      keep(await call('GET', '/admin/audit-log', fresh))

      for (const res of seen) {
        expect(res.statusCode, res.body).toBeLessThan(300)
        expectNoSecrets(res)
      }
      expect(Object.keys(first.json().staff).sort()).toEqual(
        ['created_at', 'disabled', 'email', 'id', 'mfa_enabled', 'name', 'role'].sort(),
      )
    })
  })
})
