/**
 * Staff accounts: sign-in with password and TOTP, trusted devices, MFA enrolment and step-up,
 * staff management and custom roles. Staff are a separate table from customers: a customer
 * credential can never become a staff one.
 */
import type { FastifyRequest } from 'fastify'
import { type Kysely, sql } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import { type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { type Principal, STEP_UP_WINDOW_MS } from '../../platform/http/auth.ts'
import { problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { signerOf, throttleOf, totpBoxOf } from './context.ts'
import { hashPassword, needsRehash, passwordProblem, verifyDecoy, verifyPassword } from './passwords.ts'
import { areKnownPermissions, BUILT_IN_ROLES } from './permissions.ts'
import { createSession, markMfaVerified, revokeAllSessions, rotateSession } from './sessions.ts'
import { countAttempt } from './throttle.ts'
import { ACCESS_TOKEN_TTL_SECONDS, randomToken, tokenHash } from './tokens.ts'
import {
  generateRecoveryCodes,
  generateTotpSecret,
  hashRecoveryCode,
  otpauthUri,
  verifyTotp,
} from './totp.ts'

export interface StaffView {
  id: string
  email: string
  name: string
  role: { id: string; name: string; permissions: string[] }
  mfa_enabled: boolean
  disabled: boolean
  created_at: string
}

const DEVICE_TRUST_DAYS = 30

/** Creates or refreshes the built-in roles (run at every start, so code changes reach them). */
export async function ensureBuiltInRoles(db: Kysely<DB>): Promise<void> {
  for (const role of BUILT_IN_ROLES) {
    await db
      .insertInto('roles')
      .values({ ...role, built_in: true })
      .onConflict((oc) =>
        oc
          .column('id')
          .doUpdateSet({ permissions: role.permissions, description: role.description, built_in: true }),
      )
      .execute()
  }
}

function staffQuery(db: Kysely<DB> | Tx) {
  return db
    .selectFrom('staff_users')
    .innerJoin('roles', 'roles.id', 'staff_users.role_id')
    .leftJoin('staff_mfa', 'staff_mfa.staff_id', 'staff_users.id')
    .select([
      'staff_users.id',
      'staff_users.email',
      'staff_users.name',
      'staff_users.disabled_at',
      'staff_users.created_at',
      'roles.id as role_id',
      'roles.name as role_name',
      'roles.permissions',
      'staff_mfa.confirmed_at',
    ])
}

type StaffRow = Awaited<ReturnType<ReturnType<typeof staffQuery>['executeTakeFirstOrThrow']>>

function toStaffView(row: StaffRow): StaffView {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    role: { id: row.role_id, name: row.role_name, permissions: row.permissions },
    mfa_enabled: row.confirmed_at !== null,
    disabled: row.disabled_at !== null,
    created_at: row.created_at.toISOString(),
  }
}

async function staffView(db: Kysely<DB> | Tx, id: string): Promise<StaffView | undefined> {
  const row = await staffQuery(db).where('staff_users.id', '=', id).executeTakeFirst()
  return row && toStaffView(row)
}

/**
 * Creates a staff account; a taken email is `email_taken` (staff lists are not secret to
 * staff:manage). An actor must hold every permission of the role; only trusted callers (the
 * create-admin CLI, the demo seed) leave it out.
 */
export async function createStaff(
  db: Kysely<DB>,
  input: { email: string; name?: string; password: string; roleId: string },
  actor?: Principal,
): Promise<StaffView> {
  const why = passwordProblem(input.password)
  if (why)
    throw problem('weak_password', `The password ${why}`, {
      errors: [{ path: 'body.password', message: why }],
    })
  const passwordHash = await hashPassword(input.password)
  return withTransaction(db, async (trx) => {
    const role = await roleToGrant(trx, input.roleId)
    if (actor) requireHolds(actor, role.permissions, GRANT)
    const taken = await trx
      .selectFrom('staff_users')
      .select('id')
      .where(sql`lower(email)`, '=', input.email.toLowerCase())
      .executeTakeFirst()
    if (taken)
      throw problem('email_taken', undefined, {
        errors: [{ path: 'body.email', message: 'is already in use' }],
      })
    const id = newId('stf')
    // Two creations for one new email can race past the check above; the unique index settles it,
    // and the loser answers as the check would have.
    const inserted = await trx
      .insertInto('staff_users')
      .values({
        id,
        email: input.email,
        name: input.name ?? '',
        password_hash: passwordHash,
        role_id: input.roleId,
      })
      .onConflict((oc) => oc.expression(sql`lower(email)`).doNothing())
      .returning('id')
      .executeTakeFirst()
    if (!inserted)
      throw problem('email_taken', undefined, {
        errors: [{ path: 'body.email', message: 'is already in use' }],
      })
    return (await staffView(trx, id))!
  })
}

/** A staff member's profile. */
export async function getStaff(db: Kysely<DB>, id: string): Promise<StaffView> {
  const view = await staffView(db, id)
  if (!view) throw problem('not_found', `No staff member ${id}`)
  return view
}

/** Every staff member, oldest first. */
export async function listStaff(db: Kysely<DB>): Promise<StaffView[]> {
  const rows = await staffQuery(db).orderBy('staff_users.id').limit(1000).execute()
  return rows.map(toStaffView)
}

const GRANT = 'You cannot grant a role with permissions you do not hold'
const MANAGE = 'You cannot manage a staff member whose role holds permissions you do not'

/**
 * Nobody grants, or takes away, what they do not hold: without this, `staff:manage` alone could
 * make anyone an owner or lock the owner out. 403 forbidden names the missing permissions.
 */
function requireHolds(actor: Principal, permissions: readonly string[], why: string): void {
  if (actor.permissions.has('*')) return
  const beyond = permissions.filter((p) => !actor.permissions.has(p))
  if (beyond.length) throw problem('forbidden', `${why}: ${beyond.join(', ')}`)
}

async function roleToGrant(trx: Tx, roleId: string): Promise<{ permissions: string[] }> {
  const role = await trx.selectFrom('roles').select('permissions').where('id', '=', roleId).executeTakeFirst()
  if (!role)
    throw problem('validation_failed', 'No such role', {
      errors: [{ path: 'body.role_id', message: 'unknown role' }],
    })
  return role
}

/** Locks the member an actor acts on for the change; 404 or 403 when they may not. */
async function memberToManage(trx: Tx, actor: Principal, id: string): Promise<void> {
  const member = await trx
    .selectFrom('staff_users')
    .innerJoin('roles', 'roles.id', 'staff_users.role_id')
    .select('roles.permissions')
    .where('staff_users.id', '=', id)
    .forUpdate('staff_users')
    .executeTakeFirst()
  if (!member) throw problem('not_found', `No staff member ${id}`)
  requireHolds(actor, member.permissions, MANAGE)
}

const OWNER_ROLE = 'role_owner'

/**
 * Enabled owners, locked in id order so that owners disabling each other at once take turns (and
 * cannot deadlock): the second then sees the first's change and is refused as the last owner.
 */
async function lockEnabledOwners(trx: Tx): Promise<string[]> {
  const rows = await trx
    .selectFrom('staff_users')
    .select('id')
    .where('role_id', '=', OWNER_ROLE)
    .where('disabled_at', 'is', null)
    .orderBy('id')
    .forUpdate()
    .execute()
  return rows.map((r) => r.id)
}

/**
 * Changes role, name or disabled state; disabling or a role change ends every session of theirs.
 * The actor must hold every permission of the member's role and of a new one, and the store keeps
 * at least one enabled owner.
 */
export async function updateStaff(
  db: Kysely<DB>,
  actor: Principal,
  id: string,
  input: { name?: string; role_id?: string; disabled?: boolean },
): Promise<StaffView> {
  if (actor.kind === 'staff' && actor.id === id && (input.disabled || input.role_id)) {
    throw problem('conflict', 'Staff cannot change their own role or disable themselves')
  }
  const demotes = input.disabled === true || (input.role_id !== undefined && input.role_id !== OWNER_ROLE)
  return withTransaction(db, async (trx) => {
    // Owners are locked before the member so every change takes its locks in the same order.
    const owners = demotes ? await lockEnabledOwners(trx) : []
    await memberToManage(trx, actor, id)
    if (input.role_id) requireHolds(actor, (await roleToGrant(trx, input.role_id)).permissions, GRANT)
    if (demotes && owners.includes(id) && owners.length === 1)
      throw problem('conflict', 'This is the last enabled owner; make another owner first')
    await trx
      .updateTable('staff_users')
      .set({
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.role_id ? { role_id: input.role_id } : {}),
        ...(input.disabled !== undefined ? { disabled_at: input.disabled ? new Date() : null } : {}),
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', id)
      .execute()
    if (input.disabled || input.role_id) await revokeAllSessions(trx, 'staff', id)
    return (await staffView(trx, id))!
  })
}

interface SignedIn {
  status: 'signed_in'
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  refresh_token: string
  device_token: string | null
  staff: StaffView
}
interface MfaChallenge {
  status: 'mfa_required'
  challenge_token: string
}

async function issueStaffTokens(
  runtime: Runtime,
  staffId: string,
  request: FastifyRequest,
  options: { mfa: 'fresh' | 'trusted_device' | 'none'; deviceId: string | null; newDeviceToken: boolean },
): Promise<SignedIn> {
  const { db } = runtime.database
  // A trusted device stands in for the code at sign-in, but it is not a fresh confirmation: it
  // counts as verified long enough ago that dangerous actions still ask for a step-up.
  const mfaVerifiedAt =
    options.mfa === 'fresh'
      ? new Date()
      : options.mfa === 'trusted_device'
        ? new Date(Date.now() - STEP_UP_WINDOW_MS - 1000)
        : null
  const session = await createSession(
    db,
    'staff',
    staffId,
    { ip: request.ip, userAgent: request.headers['user-agent'] ?? null, deviceId: options.deviceId },
    undefined,
    mfaVerifiedAt,
  )
  let deviceToken: string | null = null
  if (options.newDeviceToken) {
    deviceToken = randomToken('dv')
    await db
      .insertInto('staff_devices')
      .values({ staff_id: staffId, device_hash: tokenHash(deviceToken) })
      .onConflict((oc) => oc.columns(['staff_id', 'device_hash']).doNothing())
      .execute()
  }
  return {
    status: 'signed_in',
    access_token: await signerOf(runtime).signAccess({ sub: staffId, typ: 'staff', sid: session.sessionId }),
    token_type: 'Bearer',
    expires_in: ACCESS_TOKEN_TTL_SECONDS,
    refresh_token: session.refreshToken,
    device_token: deviceToken,
    staff: (await staffView(db, staffId))!,
  }
}

/**
 * Password step of a staff sign-in. With MFA enrolled, a trusted device (a device token from an
 * earlier MFA sign-in, used within the last 30 days) signs in at once; any other device gets a challenge to
 * answer with a TOTP or recovery code.
 */
export async function signInStaff(
  runtime: Runtime,
  input: { email: string; password: string; device_token?: string },
  request: FastifyRequest,
): Promise<SignedIn | MfaChallenge> {
  const throttle = throttleOf(runtime, 'staff')
  await countAttempt(throttle, input.email, request.ip)
  const { db } = runtime.database
  const row = await db
    .selectFrom('staff_users')
    .leftJoin('staff_mfa', 'staff_mfa.staff_id', 'staff_users.id')
    .select([
      'staff_users.id',
      'staff_users.password_hash',
      'staff_users.disabled_at',
      'staff_mfa.confirmed_at',
    ])
    .where(sql`lower(staff_users.email)`, '=', input.email.trim().toLowerCase())
    .executeTakeFirst()
  const ok = row ? await verifyPassword(row.password_hash, input.password) : await verifyDecoy(input.password)
  if (!row || !ok || row.disabled_at) throw problem('invalid_credentials')
  await throttle.succeeded(input.email, request.ip)
  if (needsRehash(row.password_hash)) {
    await db
      .updateTable('staff_users')
      .set({ password_hash: await hashPassword(input.password) })
      .where('id', '=', row.id)
      .execute()
  }
  if (!row.confirmed_at) {
    return issueStaffTokens(runtime, row.id, request, {
      mfa: 'none',
      deviceId: null,
      newDeviceToken: false,
    })
  }
  if (input.device_token) {
    const hash = tokenHash(input.device_token)
    const trusted = await db
      .updateTable('staff_devices')
      .set({ last_seen_at: sql<Date>`now()` as never })
      .where('staff_id', '=', row.id)
      .where('device_hash', '=', hash)
      .where('last_seen_at', '>', sql<Date>`now() - make_interval(days => ${DEVICE_TRUST_DAYS})`)
      .returning('device_hash')
      .executeTakeFirst()
    if (trusted)
      return issueStaffTokens(runtime, row.id, request, {
        mfa: 'trusted_device',
        deviceId: hash,
        newDeviceToken: false,
      })
  }
  return { status: 'mfa_required', challenge_token: await signerOf(runtime).signMfaChallenge(row.id, null) }
}

/**
 * Checks a TOTP code (refusing any step already used: no replays) or a recovery code (each works
 * once). The conditional updates make concurrent uses of one code succeed at most once.
 */
async function verifySecondFactor(runtime: Runtime, staffId: string, code: string): Promise<boolean> {
  const { db } = runtime.database
  const mfa = await db.selectFrom('staff_mfa').selectAll().where('staff_id', '=', staffId).executeTakeFirst()
  if (!mfa?.confirmed_at) return false
  const normalized = code.replace(/[\s-]/g, '')
  if (/^\d{6}$/.test(normalized)) {
    const secret = totpBoxOf(runtime).open(mfa.totp_secret)
    const step = verifyTotp(secret, normalized, { lastUsedStep: Number(mfa.last_used_step) })
    if (step === null) return false
    const used = await db
      .updateTable('staff_mfa')
      .set({ last_used_step: step })
      .where('staff_id', '=', staffId)
      .where('last_used_step', '<', step)
      .returning('staff_id')
      .executeTakeFirst()
    return used !== undefined
  }
  const hash = hashRecoveryCode(code)
  const used = await db
    .updateTable('staff_mfa')
    .set({ recovery_codes: sql<string[]>`array_remove(recovery_codes, ${hash})` })
    .where('staff_id', '=', staffId)
    .where(sql<boolean>`${hash} = any(recovery_codes)`)
    .returning('staff_id')
    .executeTakeFirst()
  return used !== undefined
}

/** Second step of a sign-in: the challenge token plus a code gives a session and a device token. */
export async function completeStaffMfa(
  runtime: Runtime,
  challengeToken: string,
  code: string,
  request: FastifyRequest,
): Promise<SignedIn> {
  const challenge = await signerOf(runtime).verifyMfaChallenge(challengeToken)
  if (!challenge) throw problem('invalid_token', 'The sign-in challenge expired; sign in again')
  const throttle = throttleOf(runtime, 'staff')
  await countAttempt(throttle, `mfa:${challenge.staffId}`, request.ip)
  if (!(await verifySecondFactor(runtime, challenge.staffId, code))) throw problem('invalid_mfa_code')
  await throttle.succeeded(`mfa:${challenge.staffId}`, request.ip)
  return issueStaffTokens(runtime, challenge.staffId, request, {
    mfa: 'fresh',
    deviceId: null,
    newDeviceToken: true,
  })
}

/** Step-up: a fresh code marks this session MFA-verified for the next five minutes of dangerous actions. */
export async function stepUp(
  runtime: Runtime,
  principal: Principal,
  code: string,
  request: FastifyRequest,
): Promise<void> {
  if (principal.kind !== 'staff' || !principal.sessionId)
    throw problem('forbidden', 'Only staff sessions can step up')
  const throttle = throttleOf(runtime, 'staff')
  const key = `mfa:${principal.id}`
  await countAttempt(throttle, key, request.ip)
  if (!(await verifySecondFactor(runtime, principal.id, code))) throw problem('invalid_mfa_code')
  await throttle.succeeded(key, request.ip)
  await markMfaVerified(runtime.database.db, principal.sessionId)
}

/** Starts TOTP enrolment: a new secret (kept encrypted) to add to an authenticator app. */
export async function beginTotpEnrolment(runtime: Runtime, principal: Principal) {
  if (principal.kind !== 'staff') throw problem('forbidden', 'Only staff accounts enrol MFA')
  const { db } = runtime.database
  const existing = await db
    .selectFrom('staff_mfa')
    .select('confirmed_at')
    .where('staff_id', '=', principal.id)
    .executeTakeFirst()
  if (existing?.confirmed_at) throw problem('conflict', 'MFA is already enabled')
  const staff = await getStaff(db, principal.id)
  const secret = generateTotpSecret()
  const sealed = totpBoxOf(runtime).seal(secret)
  await db
    .insertInto('staff_mfa')
    .values({ staff_id: principal.id, totp_secret: sealed, recovery_codes: [] })
    .onConflict((oc) => oc.column('staff_id').doUpdateSet({ totp_secret: sealed, last_used_step: 0 }))
    .execute()
  return { secret, otpauth_uri: otpauthUri({ secret, accountName: staff.email, issuer: 'Shopwright' }) }
}

/** Confirms enrolment with a first code; returns the recovery codes, shown this once. */
export async function confirmTotpEnrolment(runtime: Runtime, principal: Principal, code: string) {
  if (principal.kind !== 'staff' || !principal.sessionId)
    throw problem('forbidden', 'Only staff accounts enrol MFA')
  const { db } = runtime.database
  const mfa = await db
    .selectFrom('staff_mfa')
    .selectAll()
    .where('staff_id', '=', principal.id)
    .executeTakeFirst()
  if (!mfa) throw problem('conflict', 'Start enrolment first')
  if (mfa.confirmed_at) throw problem('conflict', 'MFA is already enabled')
  const step = verifyTotp(totpBoxOf(runtime).open(mfa.totp_secret), code, {
    lastUsedStep: Number(mfa.last_used_step),
  })
  if (step === null) throw problem('invalid_mfa_code')
  const recoveryCodes = generateRecoveryCodes()
  await withTransaction(db, async (trx) => {
    await trx
      .updateTable('staff_mfa')
      .set({
        confirmed_at: sql<Date>`now()` as never,
        last_used_step: step,
        recovery_codes: recoveryCodes.map(hashRecoveryCode),
      })
      .where('staff_id', '=', principal.id)
      .execute()
    await markMfaVerified(trx, principal.sessionId!)
  })
  return { recovery_codes: recoveryCodes }
}

/** Exchanges a staff refresh token for new tokens; a reused one revokes the family. */
export async function refreshStaff(runtime: Runtime, refreshToken: string, request: FastifyRequest) {
  const result = await rotateSession(runtime.database.db, 'staff', refreshToken, {
    ip: request.ip,
    userAgent: request.headers['user-agent'] ?? null,
  })
  if (!result.ok) throw problem('invalid_token')
  const { session } = result
  return {
    access_token: await signerOf(runtime).signAccess({
      sub: session.subjectId,
      typ: 'staff',
      sid: session.sessionId,
    }),
    token_type: 'Bearer' as const,
    expires_in: ACCESS_TOKEN_TTL_SECONDS,
    refresh_token: session.refreshToken,
  }
}

/**
 * Clears a staff member's MFA (a lost authenticator): their TOTP secret, recovery codes and trusted
 * devices go, every session ends, and their next sign-in starts enrolment again. Nobody resets
 * their own, so one compromised account cannot remove its own second factor.
 */
export async function resetStaffMfa(db: Kysely<DB>, actor: Principal, id: string): Promise<StaffView> {
  if (actor.kind === 'staff' && actor.id === id) {
    throw problem('conflict', 'Staff cannot reset their own MFA; ask another staff manager')
  }
  return withTransaction(db, async (trx) => {
    await memberToManage(trx, actor, id)
    await trx.deleteFrom('staff_mfa').where('staff_id', '=', id).execute()
    await trx.deleteFrom('staff_devices').where('staff_id', '=', id).execute()
    await revokeAllSessions(trx, 'staff', id)
    return (await staffView(trx, id))!
  })
}

export interface RoleView {
  id: string
  name: string
  description: string
  permissions: string[]
  built_in: boolean
}

/** Every role, built-in first. */
export async function listRoles(db: Kysely<DB>): Promise<RoleView[]> {
  return db
    .selectFrom('roles')
    .select(['id', 'name', 'description', 'permissions', 'built_in'])
    .orderBy('built_in', 'desc')
    .orderBy('id')
    .execute()
}

/**
 * Refuses unknown permissions, and permissions the actor does not hold: whoever may edit roles must
 * not be able to grant themselves (through their own role) more than they have.
 */
function checkPermissions(permissions: string[], actor: Principal): void {
  if (!areKnownPermissions(permissions)) {
    const unknown = permissions.filter((p) => !areKnownPermissions([p]))
    throw problem('validation_failed', `Unknown permissions: ${unknown.join(', ')}`, {
      errors: [{ path: 'body.permissions', message: `unknown: ${unknown.join(', ')}` }],
    })
  }
  requireHolds(actor, permissions, 'You cannot grant permissions you do not hold')
}

function roleNameTaken(error: unknown) {
  if ((error as { code?: string }).code !== '23505') return error
  return problem('conflict', 'A role with this name exists', {
    errors: [{ path: 'body.name', message: 'is taken' }],
  })
}

/** Creates a custom role from known permissions the actor holds. */
export async function createRole(
  db: Kysely<DB>,
  actor: Principal,
  input: { name: string; description?: string; permissions: string[] },
): Promise<RoleView> {
  checkPermissions(input.permissions, actor)
  try {
    return await db
      .insertInto('roles')
      .values({
        id: newId('role'),
        name: input.name,
        description: input.description ?? '',
        permissions: input.permissions,
      })
      .returning(['id', 'name', 'description', 'permissions', 'built_in'])
      .executeTakeFirstOrThrow()
  } catch (error) {
    throw roleNameTaken(error)
  }
}

/** Changes a custom role; built-in roles are fixed. */
export async function updateRole(
  db: Kysely<DB>,
  actor: Principal,
  id: string,
  input: { name?: string; description?: string; permissions?: string[] },
): Promise<RoleView> {
  if (input.permissions) checkPermissions(input.permissions, actor)
  try {
    return await withTransaction(db, async (trx) => {
      // Locked while checked: another editor's change cannot slip in between check and write.
      const role = await trx
        .selectFrom('roles')
        .select(['built_in', 'permissions'])
        .where('id', '=', id)
        .forUpdate()
        .executeTakeFirst()
      if (!role) throw problem('not_found', `No role ${id}`)
      if (role.built_in) throw problem('built_in_role')
      // As for members: stripping a stronger role's permissions would lock its holders out.
      requireHolds(actor, role.permissions, 'You cannot change a role with permissions you do not hold')
      return trx
        .updateTable('roles')
        .set(input)
        .where('id', '=', id)
        .returning(['id', 'name', 'description', 'permissions', 'built_in'])
        .executeTakeFirstOrThrow()
    })
  } catch (error) {
    throw roleNameTaken(error)
  }
}

/** Deletes a custom role that nobody holds. */
export async function deleteRole(db: Kysely<DB>, id: string): Promise<void> {
  const role = await db.selectFrom('roles').select('built_in').where('id', '=', id).executeTakeFirst()
  if (!role) throw problem('not_found', `No role ${id}`)
  if (role.built_in) throw problem('built_in_role')
  const holder = await db.selectFrom('staff_users').select('id').where('role_id', '=', id).executeTakeFirst()
  if (holder) throw problem('role_in_use')
  await db.deleteFrom('roles').where('id', '=', id).execute()
}
