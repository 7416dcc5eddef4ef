/**
 * Staff helpers for tests: accounts made straight through createStaff, sign-in, TOTP enrolment and
 * step-up over HTTP, with codes computed the way an authenticator app does.
 *
 * A TOTP code works once per 30 s step (replay protection) and the server accepts the steps one either
 * side of its own. So a staff member gets at most three codes in one step: the previous one, the
 * current one and the next. `nextTotp` hands out a step newer than the last one used, and waits for the
 * clock only when all three are spent; give each test its own staff member to keep that from happening.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { LightMyRequestResponse } from 'fastify'
import { createStaff } from '../../src/modules/identity/staff.ts'
import { currentStep, totpCode } from '../../src/modules/identity/totp.ts'
import type { TestNode } from './app.ts'

const STEP_MS = 30_000

/** `Authorization: Bearer …` for a token. */
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** A staff member's TOTP state as their authenticator app (and we) know it. */
export interface Mfa {
  secret: string
  /** The newest step whose code was spent (the server refuses it and anything older). */
  lastStep: number
  recoveryCodes: string[]
}

export interface StaffMember {
  id: string
  email: string
  password: string
  roleId: string
}

export interface StaffSession extends StaffMember {
  accessToken: string
  refreshToken: string
  mfa: Mfa
}

/** A password long and random enough to pass the strength check. */
export const strongPassword = () => `pw-${randomBytes(12).toString('base64url')}`

/** A unique email (unique across runs too: Redis-backed throttles outlive a test database). */
export const uniqueEmail = (label = 'staff') => `${label}-${randomBytes(6).toString('hex')}@example.test`

/** Creates a staff member with the role directly in the database, as the create-admin CLI does. */
export async function createStaffMember(
  node: TestNode,
  roleId: string,
  options: { email?: string; password?: string; name?: string } = {},
): Promise<StaffMember> {
  const email = options.email ?? uniqueEmail(roleId.replace(/^role_/, ''))
  const password = options.password ?? strongPassword()
  const staff = await createStaff(node.runtime.database.db, {
    email,
    password,
    roleId,
    name: options.name ?? roleId,
  })
  return { id: staff.id, email, password, roleId }
}

/** POST /admin/auth/sign-in; returns the raw response (tokens, or an MFA challenge). */
export function signInStaff(
  node: TestNode,
  email: string,
  password: string,
  extra: { device_token?: string; headers?: Record<string, string> } = {},
): Promise<LightMyRequestResponse> {
  const { headers, ...rest } = extra
  return node.app.inject({
    method: 'POST',
    url: '/admin/auth/sign-in',
    headers,
    payload: { email, password, ...rest },
  })
}

/**
 * A code for a step newer than `mfa.lastStep` that the server accepts now, and marks that step spent.
 * The previous step is used only well inside the current one, so that crossing into the next step
 * between computing and checking cannot put it out of the window.
 */
export async function nextTotp(mfa: Mfa): Promise<string> {
  for (;;) {
    const now = currentStep()
    const msLeftInStep = STEP_MS - (Date.now() % STEP_MS)
    const step = Math.max(msLeftInStep > 5_000 ? now - 1 : now, mfa.lastStep + 1)
    if (step <= now + 1) {
      mfa.lastStep = step
      return totpCode(mfa.secret, step)
    }
    // All three accepted steps are spent: wait until the step before the one we want begins.
    await sleep((step - 1) * STEP_MS - Date.now() + 50)
  }
}

/** Enrols TOTP for the signed-in staff member: start, confirm with a first code; expects success. */
export async function enrolMfa(node: TestNode, accessToken: string): Promise<Mfa> {
  const start = await node.app.inject({
    method: 'POST',
    url: '/admin/me/mfa/totp',
    headers: bearer(accessToken),
  })
  if (start.statusCode !== 200) throw new Error(`MFA enrolment start: ${start.statusCode} ${start.body}`)
  const mfa: Mfa = { secret: start.json().secret, lastStep: -1, recoveryCodes: [] }
  const confirm = await node.app.inject({
    method: 'POST',
    url: '/admin/me/mfa/totp/confirm',
    headers: bearer(accessToken),
    payload: { code: await nextTotp(mfa) },
  })
  if (confirm.statusCode !== 200)
    throw new Error(`MFA enrolment confirm: ${confirm.statusCode} ${confirm.body}`)
  mfa.recoveryCodes = confirm.json().recovery_codes
  return mfa
}

/** POST /admin/auth/step-up with a fresh code; returns the raw response (204 on success). */
export async function stepUp(node: TestNode, accessToken: string, mfa: Mfa): Promise<LightMyRequestResponse> {
  return node.app.inject({
    method: 'POST',
    url: '/admin/auth/step-up',
    headers: bearer(accessToken),
    payload: { code: await nextTotp(mfa) },
  })
}

/** Signs in a member who has no MFA yet (so no challenge) and enrols; the session is MFA-fresh. */
export async function signInAndEnrol(node: TestNode, member: StaffMember): Promise<StaffSession> {
  const res = await signInStaff(node, member.email, member.password)
  const body = res.json()
  if (res.statusCode !== 200 || body.status !== 'signed_in')
    throw new Error(`sign-in of ${member.email}: ${res.statusCode} ${res.body}`)
  const mfa = await enrolMfa(node, body.access_token)
  return { ...member, accessToken: body.access_token, refreshToken: body.refresh_token, mfa }
}

/** A new staff member with the role, signed in with MFA enrolled and verified on this session. */
export async function newStaffSession(node: TestNode, roleId: string): Promise<StaffSession> {
  return signInAndEnrol(node, await createStaffMember(node, roleId))
}

/** Full sign-in of an enrolled member: password, then a TOTP code; returns the /admin/auth/mfa response. */
export async function signInWithTotp(
  node: TestNode,
  member: { email: string; password: string },
  mfa: Mfa,
): Promise<LightMyRequestResponse> {
  const first = await signInStaff(node, member.email, member.password)
  const challenge = first.json()
  if (first.statusCode !== 200 || challenge.status !== 'mfa_required')
    throw new Error(`expected an MFA challenge: ${first.statusCode} ${first.body}`)
  return node.app.inject({
    method: 'POST',
    url: '/admin/auth/mfa',
    payload: { challenge_token: challenge.challenge_token, code: await nextTotp(mfa) },
  })
}
