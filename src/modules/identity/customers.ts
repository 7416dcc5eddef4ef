/**
 * Customer accounts: sign-up, sign-in, token refresh, sign-out, email verification, password reset
 * and change, profile and address book. Sign-up, reset and resending the verification email answer
 * the same whether or not the email has an account, and sign-in spends the same time on unknown
 * emails, so none of them leaks who shops here. An account signs in only once its email is
 * confirmed: otherwise signing up with a known email and a password of one's choosing, then signing
 * in with it, would tell a taken email (refused) from a new one (signed in). Confirming takes the
 * account's password as well as the emailed token: the mailbox's owner must not be able to confirm
 * an account someone else signed up under their address (they take the address over with a reset).
 */
import type { FastifyRequest } from 'fastify'
import { sql } from 'kysely'
import type { Static } from 'typebox'
import { type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import type { Jobs } from '../../platform/jobs/jobs.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { sendEmail } from '../notifications/mail.ts'
import { signerOf, throttleOf } from './context.ts'
import {
  consumeOneTimeToken,
  issueOneTimeToken,
  peekOneTimeToken,
  retireOneTimeTokens,
} from './one-time-tokens.ts'
import { hashPassword, needsRehash, passwordProblem, verifyDecoy, verifyPassword } from './passwords.ts'
import type { AddressBody, SignUpBody, UpdateAddressBody } from './schemas.ts'
import { createSession, revokeAllSessions, rotateSession } from './sessions.ts'
import { countAttempt } from './throttle.ts'
import { ACCESS_TOKEN_TTL_SECONDS } from './tokens.ts'

export type CustomerSignInHook = (customerId: string, request: FastifyRequest) => Promise<void>
const signInHooks = new WeakMap<Runtime, CustomerSignInHook[]>()

/** Runs after every customer sign-in: the cart module merges the guest cart here. */
export function onCustomerSignIn(runtime: Runtime, hook: CustomerSignInHook): void {
  signInHooks.set(runtime, [...(signInHooks.get(runtime) ?? []), hook])
}

export interface CustomerView {
  id: string
  email: string
  first_name: string
  last_name: string
  email_verified: boolean
  created_at: string
}

interface CustomerRow {
  id: string
  email: string
  first_name: string
  last_name: string
  email_verified_at: Date | null
  created_at: Date
}

/** The public view of a customer row: never the password hash. */
export function customerView(row: CustomerRow): CustomerView {
  return {
    id: row.id,
    email: row.email,
    first_name: row.first_name,
    last_name: row.last_name,
    email_verified: row.email_verified_at !== null,
    created_at: row.created_at.toISOString(),
  }
}

const customerColumns = ['id', 'email', 'first_name', 'last_name', 'email_verified_at', 'created_at'] as const

/**
 * The detail of every refused customer sign-in, whatever refused it (an unknown email, a wrong
 * password, an email not confirmed yet), so that the answer says nothing about the account; it names
 * the unconfirmed case so that a customer who just signed up knows what to do.
 */
const SIGN_IN_REFUSED_DETAIL =
  'Check the email and password. A new account must confirm its email before it can sign in: use ' +
  'the code in the confirmation email, or ask for a new one.'

function requireStrongPassword(password: string, field: string): void {
  const why = passwordProblem(password)
  if (why) throw problem('weak_password', `The password ${why}`, { errors: [{ path: field, message: why }] })
}

function sessionMeta(request: FastifyRequest) {
  return { ip: request.ip, userAgent: request.headers['user-agent'] ?? null }
}

async function tokensFor(runtime: Runtime, customerId: string, sessionId: string, refreshToken: string) {
  const accessToken = await signerOf(runtime).signAccess({ sub: customerId, typ: 'customer', sid: sessionId })
  return {
    access_token: accessToken,
    token_type: 'Bearer' as const,
    expires_in: ACCESS_TOKEN_TTL_SECONDS,
    refresh_token: refreshToken,
  }
}

/** Issues a verification token and queues the email carrying it, in the caller's transaction. */
async function sendVerificationEmail(trx: Tx, jobs: Jobs, customerId: string, email: string): Promise<void> {
  const token = await issueOneTimeToken(trx, 'verify_email', 'customer', customerId, 24 * 60)
  await sendEmail(trx, jobs, {
    to: email,
    template: 'verify_email',
    subject: 'Confirm your email',
    text:
      `Confirm your email with this code, together with the password you signed up with: ${token}\n` +
      'If you did not sign up, ignore this email; to use this address, reset your password.',
    data: { token },
  })
}

function accountExistsEmail(email: string) {
  return {
    to: email,
    template: 'account_exists',
    subject: 'You already have an account',
    text: 'Someone tried to sign up with this email. If it was you, sign in or reset your password.',
    data: {},
  }
}

/** Registers an account (or, for a known email, tells its owner); the answer is the same either way. */
export async function signUp(
  runtime: Runtime,
  input: Static<typeof SignUpBody>,
  ip: string,
): Promise<{ status: string }> {
  // Each sign-up mails the address, so repeated ones are throttled per address as well as per IP.
  await countAttempt(throttleOf(runtime, 'customer'), `sign-up:${input.email}`, ip)
  requireStrongPassword(input.password, 'body.password')
  const passwordHash = await hashPassword(input.password)
  const email = input.email.trim()
  await withTransaction(runtime.database.db, async (trx) => {
    const existing = await trx
      .selectFrom('customers')
      .select('id')
      .where(sql`lower(email)`, '=', email.toLowerCase())
      .executeTakeFirst()
    if (existing) {
      await sendEmail(trx, runtime.jobs, accountExistsEmail(email))
      return
    }
    const id = newId('cus')
    // Two sign-ups for one new email can race past the check above; the unique index settles it,
    // and the loser answers like any sign-up for a taken email.
    const inserted = await trx
      .insertInto('customers')
      .values({
        id,
        email,
        password_hash: passwordHash,
        first_name: input.first_name ?? '',
        last_name: input.last_name ?? '',
      })
      .onConflict((oc) => oc.expression(sql`lower(email)`).doNothing())
      .returning('id')
      .executeTakeFirst()
    if (!inserted) {
      await sendEmail(trx, runtime.jobs, accountExistsEmail(email))
      return
    }
    await sendVerificationEmail(trx, runtime.jobs, id, email)
    await runtime.outbox.emit(trx, 'customer.created', { customer_id: id }, id)
  })
  return { status: 'pending_verification' }
}

/**
 * Signs a customer in with email and password; throttled per account and IP. An account whose email
 * is not confirmed is refused exactly as a wrong password is, after the password check (so in the
 * same time) and counted as a failure.
 */
export async function signIn(runtime: Runtime, email: string, password: string, request: FastifyRequest) {
  const throttle = throttleOf(runtime, 'customer')
  await countAttempt(throttle, email, request.ip)
  const { db } = runtime.database
  const row = await db
    .selectFrom('customers')
    .select([...customerColumns, 'password_hash'])
    .where(sql`lower(email)`, '=', email.trim().toLowerCase())
    .executeTakeFirst()
  const ok = row ? await verifyPassword(row.password_hash, password) : await verifyDecoy(password)
  if (!row || !ok || row.email_verified_at === null)
    throw problem('invalid_credentials', SIGN_IN_REFUSED_DETAIL)
  await throttle.succeeded(email, request.ip)
  return startSession(runtime, row, password, request)
}

/**
 * What follows a correct password for a confirmed account, for sign-in and for confirming the
 * email (which proves the password too): a session, the sign-in hooks, and the answer.
 */
async function startSession(
  runtime: Runtime,
  row: CustomerRow & { password_hash: string },
  password: string,
  request: FastifyRequest,
) {
  const { db } = runtime.database
  if (needsRehash(row.password_hash)) {
    const rehashed = await hashPassword(password)
    await db.updateTable('customers').set({ password_hash: rehashed }).where('id', '=', row.id).execute()
  }
  const session = await createSession(db, 'customer', row.id, sessionMeta(request))
  for (const hook of signInHooks.get(runtime) ?? []) await hook(row.id, request)
  return {
    ...(await tokensFor(runtime, row.id, session.sessionId, session.refreshToken)),
    customer: customerView(row),
  }
}

/** Exchanges a refresh token for new tokens; a reused one revokes the family and is refused. */
export async function refreshCustomer(runtime: Runtime, refreshToken: string, request: FastifyRequest) {
  const result = await rotateSession(runtime.database.db, 'customer', refreshToken, sessionMeta(request))
  if (!result.ok) {
    if (result.ok === false && result.reason === 'reused') {
      request.log.warn({ event: 'refresh_token_reuse' }, 'a rotated refresh token was reused; family revoked')
    }
    throw problem('invalid_token')
  }
  const { session } = result
  return tokensFor(runtime, session.subjectId, session.sessionId, session.refreshToken)
}

/** The signed-in customer's profile. */
export async function getCustomer(runtime: Runtime, id: string): Promise<CustomerView> {
  const row = await runtime.database.db
    .selectFrom('customers')
    .select(customerColumns)
    .where('id', '=', id)
    .executeTakeFirst()
  if (!row) throw problem('not_found', 'The account no longer exists')
  return customerView(row)
}

/** Updates the profile fields a customer may change (names; email changes need verification). */
export async function updateCustomer(
  runtime: Runtime,
  id: string,
  input: { first_name?: string; last_name?: string },
): Promise<CustomerView> {
  const row = await runtime.database.db
    .updateTable('customers')
    .set({ ...input, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .returning(customerColumns)
    .executeTakeFirst()
  if (!row) throw problem('not_found', 'The account no longer exists')
  return customerView(row)
}

/** Sends a new verification email to a signed-in customer. */
export async function requestEmailVerification(runtime: Runtime, customerId: string): Promise<void> {
  await withTransaction(runtime.database.db, async (trx) => {
    const row = await trx
      .selectFrom('customers')
      .select(['email', 'email_verified_at'])
      .where('id', '=', customerId)
      .executeTakeFirst()
    if (!row || row.email_verified_at) return
    await sendVerificationEmail(trx, runtime.jobs, customerId, row.email)
  })
}

/**
 * The queue of emails asked for by address alone (a password reset, a new verification email). The
 * request only counts the attempt and queues one job carrying the address as typed, the same for
 * every address; the worker looks the account up, issues the token and queues the email. Doing
 * that in the request took measurably longer for addresses with an account, which told who shops
 * here. The address is personal data, so it is sealed in the queue.
 */
export const ACCOUNT_EMAIL_JOB = 'identity.account-email'

export interface AccountEmailJob {
  purpose: 'reset_password' | 'verify_email'
  email: string
}

/** Defines the account-email queue (see ACCOUNT_EMAIL_JOB). */
export function defineCustomerJobs(runtime: Runtime): void {
  runtime.jobs.define<AccountEmailJob>(ACCOUNT_EMAIL_JOB, (job) => sendAccountEmail(runtime, job), {
    secret: ['email'],
  })
}

/**
 * Runs one account-email job: a reset token to an account with this address, or a new verification
 * token to one that has not confirmed it; nothing for any other address.
 */
export async function sendAccountEmail(runtime: Runtime, job: AccountEmailJob): Promise<void> {
  await withTransaction(runtime.database.db, async (trx) => {
    const row = await trx
      .selectFrom('customers')
      .select(['id', 'email', 'email_verified_at'])
      .where(sql`lower(email)`, '=', job.email.trim().toLowerCase())
      .executeTakeFirst()
    if (!row) return
    if (job.purpose === 'verify_email') {
      if (!row.email_verified_at) await sendVerificationEmail(trx, runtime.jobs, row.id, row.email)
      return
    }
    const token = await issueOneTimeToken(trx, 'reset_password', 'customer', row.id, 60)
    await sendEmail(trx, runtime.jobs, {
      to: row.email,
      template: 'reset_password',
      subject: 'Reset your password',
      text: `Reset your password with this code within an hour: ${token}`,
      data: { token },
    })
  })
}

/** The throttle key of each account email: reset and resend are counted apart. */
const ACCOUNT_EMAIL_THROTTLE: Record<AccountEmailJob['purpose'], string> = {
  reset_password: 'password-reset',
  verify_email: 'verify-resend',
}

/**
 * Queues an account email for the address: a reset token (sent if it has an account) or a new
 * verification token (sent if it has one that has not confirmed it); the caller answers the same
 * whatever the address.
 */
export async function requestAccountEmail(
  runtime: Runtime,
  purpose: AccountEmailJob['purpose'],
  email: string,
  ip: string,
): Promise<void> {
  // Each request mails the address, so it is throttled per address as well as per IP, keeping a
  // victim's inbox from being flooded; keyed on the address as typed, so unknown ones count alike.
  await countAttempt(throttleOf(runtime, 'customer'), `${ACCOUNT_EMAIL_THROTTLE[purpose]}:${email}`, ip)
  await runtime.jobs.enqueue(runtime.database.db, ACCOUNT_EMAIL_JOB, {
    purpose,
    email,
  } satisfies AccountEmailJob)
}

/**
 * Confirms the email with a valid, unused token and the account's password, and signs the customer
 * in as sign-in would. The token alone proves only the mailbox: whoever signed up under someone
 * else's address chose the password, and confirming must not hand them the account. A wrong
 * password answers exactly as an invalid token (`invalid_token`) and leaves the token unused for its
 * owner; it is checked only once the token is known valid, and counted like a sign-in attempt on the
 * account, so the endpoint is no easier a way to guess passwords than sign-in.
 */
export async function confirmEmail(
  runtime: Runtime,
  token: string,
  password: string,
  request: FastifyRequest,
) {
  const { db } = runtime.database
  const customerId = await peekOneTimeToken(db, 'verify_email', token)
  const row = customerId
    ? await db
        .selectFrom('customers')
        .select([...customerColumns, 'password_hash'])
        .where('id', '=', customerId)
        .executeTakeFirst()
    : undefined
  if (!row) {
    // The same work as a wrong password, so that the time does not tell a live token either.
    await verifyDecoy(password)
    throw problem('invalid_token')
  }
  const throttle = throttleOf(runtime, 'customer')
  await countAttempt(throttle, row.email, request.ip)
  if (!(await verifyPassword(row.password_hash, password))) throw problem('invalid_token')
  const verifiedAt = await withTransaction(db, async (trx) => {
    if (!(await consumeOneTimeToken(trx, 'verify_email', token))) throw problem('invalid_token')
    const updated = await trx
      .updateTable('customers')
      .set({ email_verified_at: sql<Date>`coalesce(email_verified_at, now())` as never })
      .where('id', '=', row.id)
      .returning('email_verified_at')
      .executeTakeFirstOrThrow()
    return updated.email_verified_at
  })
  await throttle.succeeded(row.email, request.ip)
  return startSession(runtime, { ...row, email_verified_at: verifiedAt }, password, request)
}

/**
 * Sets a new password from a reset token, signs out every session, voids the account's other
 * one-time tokens and lifts any lockout.
 */
export async function resetPassword(runtime: Runtime, token: string, password: string): Promise<void> {
  requireStrongPassword(password, 'body.password')
  const passwordHash = await hashPassword(password)
  const email = await withTransaction(runtime.database.db, async (trx) => {
    const customerId = await consumeOneTimeToken(trx, 'reset_password', token)
    if (!customerId) throw problem('invalid_token')
    const row = await trx
      .updateTable('customers')
      // Receiving the reset email proves the address too.
      .set({
        password_hash: passwordHash,
        email_verified_at: sql<Date>`coalesce(email_verified_at, now())` as never,
      })
      .where('id', '=', customerId)
      .returning('email')
      .executeTakeFirstOrThrow()
    await revokeAllSessions(trx, 'customer', customerId)
    // The other reset emails would still set a password, and a verification token is moot now.
    await retireOneTimeTokens(trx, 'customer', customerId, ['reset_password', 'verify_email'])
    return row.email
  })
  await throttleOf(runtime, 'customer').reset(email)
}

/**
 * Changes the password after checking the current one; other sessions end, this one is renewed,
 * and reset tokens mailed before are void.
 */
export async function changePassword(
  runtime: Runtime,
  customerId: string,
  current: string,
  next: string,
  request: FastifyRequest,
) {
  const { db } = runtime.database
  // A stolen access token must not become a way to guess the password, so this is throttled too.
  await countAttempt(throttleOf(runtime, 'customer'), `password-change:${customerId}`, request.ip)
  const row = await db
    .selectFrom('customers')
    .select('password_hash')
    .where('id', '=', customerId)
    .executeTakeFirstOrThrow()
  if (!(await verifyPassword(row.password_hash, current))) {
    throw problem('invalid_credentials', 'The current password is wrong', {
      errors: [{ path: 'body.current_password', message: 'is wrong' }],
    })
  }
  await throttleOf(runtime, 'customer').succeeded(`password-change:${customerId}`, request.ip)
  requireStrongPassword(next, 'body.new_password')
  const passwordHash = await hashPassword(next)
  const session = await withTransaction(db, async (trx) => {
    await trx
      .updateTable('customers')
      .set({ password_hash: passwordHash })
      .where('id', '=', customerId)
      .execute()
    await revokeAllSessions(trx, 'customer', customerId)
    // A reset email sent before the change would undo it. Verification tokens stay: confirming
    // takes the password, so they are no way in.
    await retireOneTimeTokens(trx, 'customer', customerId, ['reset_password'])
    return createSession(trx, 'customer', customerId, sessionMeta(request))
  })
  return tokensFor(runtime, customerId, session.sessionId, session.refreshToken)
}

const addressColumns = [
  'id',
  'label',
  'first_name',
  'last_name',
  'company',
  'line1',
  'line2',
  'city',
  'region',
  'postal_code',
  'country',
  'phone',
  'created_at',
] as const

type AddressRow = { created_at: Date } & Record<string, unknown>
const addressView = <T extends AddressRow>(row: T) => ({ ...row, created_at: row.created_at.toISOString() })

/** The customer's addresses, oldest first. */
export async function listAddresses(runtime: Runtime, customerId: string) {
  const rows = await runtime.database.db
    .selectFrom('customer_addresses')
    .select(addressColumns)
    .where('customer_id', '=', customerId)
    .orderBy('id')
    .execute()
  return rows.map(addressView)
}

/** Adds an address to the customer's book. */
export async function createAddress(runtime: Runtime, customerId: string, input: Static<typeof AddressBody>) {
  const row = await runtime.database.db
    .insertInto('customer_addresses')
    .values({ id: newId('addr'), customer_id: customerId, ...input })
    .returning(addressColumns)
    .executeTakeFirstOrThrow()
  return addressView(row)
}

/**
 * Changes one of the customer's own addresses. Ownership is part of the WHERE clause: another
 * customer's address id finds nothing and answers 404, exactly like an id that does not exist.
 */
export async function updateAddress(
  runtime: Runtime,
  customerId: string,
  id: string,
  input: Static<typeof UpdateAddressBody>,
) {
  const row = await runtime.database.db
    .updateTable('customer_addresses')
    .set(input)
    .where('id', '=', id)
    .where('customer_id', '=', customerId)
    .returning(addressColumns)
    .executeTakeFirst()
  if (!row) throw problem('not_found', `No address ${id}`)
  return addressView(row)
}

/** Deletes one of the customer's own addresses (404 for anyone else's). */
export async function deleteAddress(runtime: Runtime, customerId: string, id: string): Promise<void> {
  const row = await runtime.database.db
    .deleteFrom('customer_addresses')
    .where('id', '=', id)
    .where('customer_id', '=', customerId)
    .returning('id')
    .executeTakeFirst()
  if (!row) throw problem('not_found', `No address ${id}`)
}
