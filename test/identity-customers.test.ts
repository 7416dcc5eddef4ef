/**
 * Customer identity end to end, and the attacks it must resist: account enumeration through
 * sign-up, sign-in (an unconfirmed account is refused like a wrong password, so signing up with a
 * known email and then signing in tells nothing), resending the verification email and password
 * reset (whose requests do the same work for every address, leaving the lookup to a job);
 * confirming an account someone else signed up under one's address (pre-account hijack); weak
 * passwords and mass assignment; forged, expired, tampered and cross-audience access tokens;
 * refresh-token replay; sessions and one-time tokens that must end on sign-out, password change and
 * reset; other customers' addresses (IDOR); and password guessing (per IP and account lockout,
 * per-IP rate limit, also through email confirmation). Emails are read from the dev outbox the mail
 * job writes, so every token used here travelled the way a customer's would (on the nodes without
 * workers, from the email's job).
 */
import { hkdfSync, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { SignJWT } from 'jose'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { onCustomerSignIn } from '../src/modules/identity/customers.ts'
import { passwordProblem } from '../src/modules/identity/passwords.ts'
import { TokenSigner } from '../src/modules/identity/tokens.ts'
import { SEND_EMAIL_JOB } from '../src/modules/notifications/mail.ts'
import type { DatabaseKind } from '../src/platform/db/database.ts'
import { startTestNode, type TestNode } from './support/app.ts'
import {
  accountEmailJobs,
  confirmEmail,
  queuedEmails,
  settleAccountEmails,
  signUpConfirmed,
} from './support/customers.ts'
import { describeEachDatabase } from './support/database.ts'

const PASSWORD = 'Plum-Ladder-Orbit-42'
const OTHER_PASSWORD = 'Quartz-Meadow-Violin-7'
const WRONG = 'Not-The-Password-99'

// One run's emails and client IPs are its own: on Postgres the node shares Redis (rate limits,
// lockouts) with earlier runs and other test files.
const run = randomBytes(4).toString('hex')
let sequence = 0
const uniqueEmail = (label: string) => `${label}-${run}-${++sequence}@example.com`
const uniqueIp = () => `10.${randomBytes(1)[0]}.${randomBytes(1)[0]}.${1 + (randomBytes(1)[0]! % 254)}`

/** Env for a test node: permissive limits unless a test is about them; Redis on the Postgres runs. */
function nodeEnv(kind: DatabaseKind, env: Record<string, string> = {}) {
  return {
    AUTH_RATE_LIMIT_PER_MINUTE: '100000',
    RATE_LIMIT_PER_MINUTE: '100000',
    ...(kind === 'postgres' && process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
    ...env,
  }
}

interface Mail {
  to: string
  template: string
  text: string
  data: Record<string, string>
}

async function outbox(node: TestNode): Promise<Mail[]> {
  let text: string
  try {
    text = await readFile(join(node.runtime.config.dataDir, 'mail', 'outbox.jsonl'), 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Mail)
}

/** Waits until `count` emails of a template have reached an address; returns them, oldest first. */
async function waitForMail(node: TestNode, to: string, template: string, count = 1): Promise<Mail[]> {
  const deadline = Date.now() + 15_000
  for (;;) {
    const found = (await outbox(node)).filter((m) => m.to === to && m.template === template)
    if (found.length >= count) return found
    if (Date.now() > deadline) throw new Error(`no ${template} email to ${to} within 15 s`)
    await sleep(50)
  }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

interface Tokens {
  access_token: string
  refresh_token: string
  token_type: string
  expires_in: number
  customer: { id: string; email: string; email_verified: boolean }
}

/** Base64url JSON segments of a JWT, to forge and tamper with tokens by hand. */
const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')
const jwtPayload = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>

/** The access-token key, derived exactly as TokenSigner derives it. */
const realKey = (appSecret: string) =>
  new Uint8Array(hkdfSync('sha256', appSecret, 'shopwright', 'access-token', 32))

function signToken(
  key: Uint8Array,
  claims: { sub: string; sid: string; typ: string },
  options: { aud?: string; iat?: number; exp?: number } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ typ: claims.typ, sid: claims.sid })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.sub)
    .setIssuer('shopwright')
    .setAudience(options.aud ?? 'shopwright:store')
    .setIssuedAt(options.iat ?? now)
    .setExpirationTime(options.exp ?? now + 900)
    .sign(key)
}

describeEachDatabase('customer identity', (kind) => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode(kind, { work: true, env: nodeEnv(kind) })
  })
  afterAll(() => node?.close())

  const post = (url: string, payload: object, extra: { token?: string; ip?: string } = {}) =>
    node.app.inject({
      method: 'POST',
      url,
      payload,
      headers: extra.token ? bearer(extra.token) : {},
      ...(extra.ip ? { remoteAddress: extra.ip } : {}),
    })
  const signUp = (email: string, password = PASSWORD, extra: object = {}) =>
    post('/store/auth/sign-up', { email, password, ...extra })
  const signIn = (email: string, password = PASSWORD, ip?: string) =>
    post('/store/auth/sign-in', { email, password }, { ip })
  const refresh = (refreshToken: string) => post('/store/auth/refresh', { refresh_token: refreshToken })
  const me = (token: string | undefined) =>
    node.app.inject({ url: '/store/me', headers: token === undefined ? {} : bearer(token) })
  const accountsWith = async (email: string) =>
    (
      await node.runtime.database.db
        .selectFrom('customers')
        .select('id')
        .where('email', 'ilike', email)
        .execute()
    ).length

  const resend = (email: string, ip?: string) => post('/store/auth/resend-verification', { email }, { ip })

  /** Confirms the email with the token of the newest verification email it received and the password. */
  async function confirm(email: string, password = PASSWORD, count = 1): Promise<void> {
    const mail = (await waitForMail(node, email, 'verify_email', count)).at(-1)!
    const res = await post(
      '/store/auth/verify-email',
      { token: mail.data.token, password },
      { ip: uniqueIp() },
    )
    expect(res.statusCode, res.body).toBe(200)
  }

  /** Status, content type and body: everything a client could tell two answers apart by. */
  const answer = (res: { statusCode: number; headers: Record<string, unknown>; payload: string }) =>
    `${res.statusCode} ${res.headers['content-type']} ${res.payload}`

  /** A new account, its email confirmed, signed in once. */
  async function customer(label: string, password = PASSWORD): Promise<Tokens & { email: string }> {
    const email = uniqueEmail(label)
    expect((await signUp(email, password)).statusCode).toBe(202)
    await confirm(email, password)
    const res = await signIn(email, password)
    expect(res.statusCode).toBe(200)
    return { ...(res.json() as Tokens), email }
  }

  describe('sign-up', () => {
    it('answers 202 pending_verification for new and existing emails alike, and tells each owner by email', async () => {
      const email = uniqueEmail('signup')
      const fresh = await signUp(email, PASSWORD, { first_name: 'Ada' })
      expect(fresh.statusCode).toBe(202)
      expect(fresh.json()).toEqual({ status: 'pending_verification' })

      const again = await signUp(email, OTHER_PASSWORD)
      const shouted = await signUp(email.toUpperCase(), OTHER_PASSWORD)
      for (const res of [again, shouted]) {
        expect(res.statusCode).toBe(fresh.statusCode)
        expect(res.payload).toBe(fresh.payload)
        expect(res.headers['content-type']).toBe(fresh.headers['content-type'])
      }

      const [verify] = await waitForMail(node, email, 'verify_email')
      expect(verify!.data.token).toMatch(/^ev_/)
      await waitForMail(node, email, 'account_exists')
      await waitForMail(node, email.toUpperCase(), 'account_exists')
      // One account, still with the first password; the owner got one verification email, not three.
      expect(await accountsWith(email)).toBe(1)
      expect(
        (await outbox(node)).filter((m) => m.to === email && m.template === 'verify_email'),
      ).toHaveLength(1)
      await confirm(email)
      expect((await signIn(email, OTHER_PASSWORD)).statusCode).toBe(401)
      expect((await signIn(email, PASSWORD)).statusCode).toBe(200)
    })

    it('refuses short and common passwords with 400 weak_password naming body.password', async () => {
      expect(passwordProblem('password123')).toMatch(/common/)
      const existing = await customer('weak-existing')
      for (const password of ['Sh0rt!x', 'password123', 'PASSWORD123', '12345678']) {
        const email = uniqueEmail('weak')
        const res = await signUp(email, password)
        expect(res.statusCode, password).toBe(400)
        const body = res.json()
        expect(body.code).toBe('weak_password')
        expect(body.errors).toEqual([{ path: 'body.password', message: expect.any(String) }])
        expect(await accountsWith(email)).toBe(0)
        // The same refusal for an email that has an account: nothing to learn from it.
        const known = await signUp(existing.email, password)
        expect(known.statusCode).toBe(400)
        expect(known.payload).toBe(res.payload)
      }
    })

    it.each([
      ['email_verified', true],
      ['role', 'admin'],
      ['permissions', ['*']],
      ['email_verified_at', '2020-01-01T00:00:00Z'],
      ['id', 'cus_chosen'],
    ])('refuses mass assignment of %s and creates no account', async (field, value) => {
      const email = uniqueEmail('mass')
      const res = await signUp(email, PASSWORD, { [field]: value })
      expect(res.statusCode).toBe(400)
      expect(res.json().code).toBe('validation_failed')
      expect(res.json().errors).toContainEqual({ path: `body.${field}`, message: 'is not a known field' })
      expect(await accountsWith(email)).toBe(0)
    })
  })

  describe('email verification', () => {
    it('verifies with the emailed token and the password once, signing in; a used or random token is refused', async () => {
      const email = uniqueEmail('verify')
      expect((await signUp(email)).statusCode).toBe(202)
      const [mail] = await waitForMail(node, email, 'verify_email')
      const before = await signIn(email, PASSWORD, uniqueIp())
      expect(before.statusCode).toBe(401)
      expect(before.json().code).toBe('invalid_credentials')

      const ok = await post('/store/auth/verify-email', { token: mail!.data.token, password: PASSWORD })
      expect(ok.statusCode, ok.body).toBe(200)
      // Signed in, as sign-in would: the same answer, and the session works.
      const verified = ok.json() as Tokens
      expect(Object.keys(verified).sort()).toEqual(
        ['access_token', 'customer', 'expires_in', 'refresh_token', 'token_type'].sort(),
      )
      expect(verified.customer).toMatchObject({ email, email_verified: true })
      expect((await me(verified.access_token)).statusCode).toBe(200)
      expect((await refresh(verified.refresh_token)).statusCode).toBe(200)
      const signedIn = await signIn(email, PASSWORD, uniqueIp())
      expect(signedIn.statusCode).toBe(200)
      const session = signedIn.json() as Tokens
      expect(session.customer.email_verified).toBe(true)
      const profile = await me(session.access_token)
      expect(profile.statusCode).toBe(200)
      expect(profile.json()).toMatchObject({ email, email_verified: true })

      const reused = await post('/store/auth/verify-email', { token: mail!.data.token, password: PASSWORD })
      expect(reused.statusCode).toBe(401)
      expect(reused.json().code).toBe('invalid_token')
      const random = await post('/store/auth/verify-email', {
        token: `ev_${randomBytes(32).toString('base64url')}`,
        password: PASSWORD,
      })
      expect(random.statusCode).toBe(401)
      expect(random.json().code).toBe('invalid_token')
    })

    const verify = (token: string, password: string, ip = uniqueIp()) =>
      post('/store/auth/verify-email', { token, password }, { ip })
    const randomToken = () => `ev_${randomBytes(32).toString('base64url')}`

    it('refuses a wrong password exactly like an invalid token, and leaves the token to its owner', async () => {
      const email = uniqueEmail('verify-wrong')
      expect((await signUp(email)).statusCode).toBe(202)
      const [mail] = await waitForMail(node, email, 'verify_email')

      const wrong = await verify(mail!.data.token!, WRONG)
      const invalid = await verify(randomToken(), WRONG)
      expect(wrong.statusCode).toBe(401)
      expect(wrong.json().code).toBe('invalid_token')
      expect(answer(wrong)).toBe(answer(invalid))
      expect((await signIn(email, PASSWORD, uniqueIp())).statusCode).toBe(401)

      const ok = await verify(mail!.data.token!, PASSWORD)
      expect(ok.statusCode, ok.body).toBe(200)
      expect(ok.json().customer).toMatchObject({ email, email_verified: true })
    })

    it('does not let the owner of an address confirm an account someone else signed up under it', async () => {
      const address = uniqueEmail('pre-account')
      const ATTACKER = 'Attacker-Chosen-Pass-31'
      expect((await signUp(address, ATTACKER)).statusCode).toBe(202)
      // The owner's own sign-up finds the address taken and tells them so by email.
      expect((await signUp(address, PASSWORD)).statusCode).toBe(202)
      await waitForMail(node, address, 'account_exists')
      expect((await resend(address, uniqueIp())).statusCode).toBe(202)
      const mails = await waitForMail(node, address, 'verify_email', 2)
      for (const mail of mails) {
        expect(mail.text).toContain(
          'If you did not sign up, ignore this email; to use this address, reset your password.',
        )
        // The owner confirms with the code from the attacker's sign-up or a resent one: refused.
        const res = await verify(mail.data.token!, PASSWORD)
        expect(res.statusCode).toBe(401)
        expect(res.json().code).toBe('invalid_token')
      }
      // So the account stays unconfirmed, and the attacker's password signs nothing in.
      expect((await signIn(address, ATTACKER, uniqueIp())).statusCode).toBe(401)

      // The owner takes the address over with a reset: their password, the email confirmed.
      expect((await post('/store/auth/password-reset', { email: address })).statusCode).toBe(202)
      const [reset] = await waitForMail(node, address, 'reset_password')
      const set = await post('/store/auth/password-reset/confirm', {
        token: reset!.data.token,
        password: PASSWORD,
      })
      expect(set.statusCode).toBe(204)
      const owner = await signIn(address, PASSWORD, uniqueIp())
      expect(owner.statusCode).toBe(200)
      expect(owner.json().customer.email_verified).toBe(true)
      expect((await signIn(address, ATTACKER, uniqueIp())).statusCode).toBe(401)
    })

    it('counts wrong passwords as failed sign-ins on the account, and only once the token is valid', async () => {
      const email = uniqueEmail('verify-guess')
      expect((await signUp(email)).statusCode).toBe(202)
      const [mail] = await waitForMail(node, email, 'verify_email')
      const ip = uniqueIp()
      // Without a valid token no password is checked, so nothing is counted.
      for (let i = 0; i < 7; i++) expect((await verify(randomToken(), WRONG, ip)).statusCode).toBe(401)

      const codes: number[] = []
      for (let i = 0; i < 7; i++) codes.push((await verify(mail!.data.token!, WRONG, ip)).statusCode)
      expect(codes).toEqual([401, 401, 401, 401, 401, 429, 429])
      const locked = await verify(mail!.data.token!, PASSWORD, ip)
      expect(locked.statusCode).toBe(429)
      expect(locked.json().code).toBe('too_many_attempts')
      // One count with sign-in's: the locked IP cannot sign in either.
      expect((await signIn(email, PASSWORD, ip)).statusCode).toBe(429)
      // Another IP (the owner's) is not locked out, and the token was not used up.
      expect((await verify(mail!.data.token!, PASSWORD)).statusCode).toBe(200)
    })
  })

  describe('resending the verification email', () => {
    it('answers alike for unknown, confirmed and unconfirmed emails, and mails only the unconfirmed one', async () => {
      const { email: confirmed } = await customer('resend-confirmed')
      const unconfirmed = uniqueEmail('resend-unconfirmed')
      expect((await signUp(unconfirmed)).statusCode).toBe(202)
      const unknown = uniqueEmail('resend-unknown')
      const verifyEmails = async (to: string) =>
        (await outbox(node)).filter((m) => m.to === to && m.template === 'verify_email')

      const answers = [
        await resend(unknown, uniqueIp()),
        await resend(confirmed, uniqueIp()),
        await resend(unconfirmed, uniqueIp()),
      ]
      expect(answers[0]!.statusCode).toBe(202)
      expect(answers[0]!.json()).toEqual({ status: 'sent_if_unverified' })
      for (const res of answers) expect(answer(res)).toBe(answer(answers[0]!))

      // The unconfirmed account gets a second verification email; its new token confirms it.
      await confirm(unconfirmed, PASSWORD, 2)
      const [first, second] = await verifyEmails(unconfirmed)
      expect(second!.data.token).not.toBe(first!.data.token)
      expect((await signIn(unconfirmed, PASSWORD, uniqueIp())).statusCode).toBe(200)
      // Nothing more was queued for the others: read from the queue, so no email can be on its way.
      expect(await queuedEmails(node, unknown, 'verify_email')).toEqual([])
      expect(await queuedEmails(node, confirmed, 'verify_email')).toHaveLength(1)
      expect(await queuedEmails(node, unconfirmed, 'verify_email')).toHaveLength(2)
    })

    it('limits resends per address, the same for unknown addresses', async () => {
      const unconfirmed = uniqueEmail('resend-flood')
      expect((await signUp(unconfirmed)).statusCode).toBe(202)
      for (const email of [unconfirmed, uniqueEmail('resend-flood-unknown')]) {
        const ip = uniqueIp()
        const codes: number[] = []
        for (let i = 0; i < 7; i++) codes.push((await resend(email, ip)).statusCode)
        expect(codes).toEqual([202, 202, 202, 202, 202, 429, 429])
      }
    })

    it('validates the body', async () => {
      for (const payload of [{}, { email: 'not-an-email' }, { email: uniqueEmail('x'), extra: 1 }]) {
        const res = await post('/store/auth/resend-verification', payload)
        expect(res.statusCode, JSON.stringify(payload)).toBe(400)
        expect(res.json().code).toBe('validation_failed')
      }
    })
  })

  it('runs the sign-in hooks (where a guest cart is merged) with the customer id', async () => {
    const seen: string[] = []
    onCustomerSignIn(node.runtime, async (customerId) => {
      seen.push(customerId)
    })
    const signedIn = await customer('hook')
    const { id } = (await me(signedIn.access_token)).json()
    expect(seen).toContain(id)
  })

  describe('sign-in', () => {
    it('answers a wrong password and an unknown email with byte-identical 401 invalid_credentials', async () => {
      const { email } = await customer('creds')
      const wrong = await signIn(email, WRONG, uniqueIp())
      const unknown = await signIn(uniqueEmail('nobody'), WRONG, uniqueIp())
      expect(wrong.statusCode).toBe(401)
      expect(unknown.statusCode).toBe(401)
      expect(wrong.json().code).toBe('invalid_credentials')
      expect(unknown.payload).toBe(wrong.payload)
      expect(unknown.headers['content-type']).toBe(wrong.headers['content-type'])
    })

    it('refuses an unconfirmed account with its right password byte-identically to a wrong password', async () => {
      const { email: confirmed } = await customer('unconfirmed-control')
      const email = uniqueEmail('unconfirmed')
      expect((await signUp(email)).statusCode).toBe(202)
      const unconfirmed = await signIn(email, PASSWORD, uniqueIp())
      const wrong = await signIn(confirmed, WRONG, uniqueIp())
      const unknown = await signIn(uniqueEmail('nobody'), WRONG, uniqueIp())
      expect(unconfirmed.statusCode).toBe(401)
      expect(unconfirmed.json().code).toBe('invalid_credentials')
      expect(answer(unconfirmed)).toBe(answer(wrong))
      expect(answer(unknown)).toBe(answer(wrong))
      // One text for every refusal, naming the unconfirmed case so that a new customer is not lost.
      expect(wrong.json().detail).toMatch(/confirm its email/)
    })

    it('counts an unconfirmed sign-in as a failure, and signs in once the email is confirmed', async () => {
      const email = uniqueEmail('unconfirmed-lock')
      expect((await signUp(email)).statusCode).toBe(202)
      const ip = uniqueIp()
      const codes: number[] = []
      for (let i = 0; i < 7; i++) codes.push((await signIn(email, PASSWORD, ip)).statusCode)
      // As for a wrong password: five free attempts, then the wait.
      expect(codes).toEqual([401, 401, 401, 401, 401, 429, 429])

      await confirm(email)
      const res = await signIn(email, PASSWORD, uniqueIp())
      expect(res.statusCode).toBe(200)
      expect(res.json().customer).toMatchObject({ email, email_verified: true })
    })

    it('tells nothing when an attacker signs up a known email with a password of their own and signs in', async () => {
      const victim = await customer('victim')
      const ATTACKER = 'Attacker-Chosen-Pass-31'
      const fresh = uniqueEmail('fresh')
      const known = await signUp(victim.email, ATTACKER)
      const unknown = await signUp(fresh, ATTACKER)
      expect(answer(known)).toBe(answer(unknown))

      const onKnown = await signIn(victim.email, ATTACKER, uniqueIp())
      const onNew = await signIn(fresh, ATTACKER, uniqueIp())
      expect(onNew.statusCode).toBe(401)
      expect(onNew.json().code).toBe('invalid_credentials')
      expect(answer(onKnown)).toBe(answer(onNew))
      // The victim's account is untouched.
      expect((await signIn(victim.email, PASSWORD, uniqueIp())).statusCode).toBe(200)
    })

    it('returns tokens and the customer, never the password hash; the email is case-insensitive', async () => {
      const email = uniqueEmail('tokens')
      await signUp(email, PASSWORD, { first_name: 'Grace', last_name: 'Hopper' })
      await confirm(email)
      const res = await signIn(email.toUpperCase())
      expect(res.statusCode).toBe(200)
      expect(res.payload).not.toContain('password_hash')
      expect(res.payload).not.toContain('$argon2')
      const body = res.json()
      expect(body).toEqual({
        access_token: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/),
        token_type: 'Bearer',
        expires_in: 900,
        refresh_token: expect.stringMatching(/^rt_/),
        customer: {
          id: expect.stringMatching(/^cus_/),
          email,
          first_name: 'Grace',
          last_name: 'Hopper',
          email_verified: true,
          created_at: expect.any(String),
        },
      })
      const profile = await me(body.access_token)
      expect(profile.json()).toEqual(body.customer)
      expect(profile.payload).not.toContain('$argon2')
    })
  })

  describe('access tokens on /store/me', () => {
    let alice: Tokens
    let bob: Tokens
    beforeAll(async () => {
      alice = await customer('alice')
      bob = await customer('bob')
    })

    const refused = async (token: string | undefined) => {
      const res = await me(token)
      expect(res.statusCode).toBe(401)
      expect(res.json().code).toBe('unauthenticated')
      expect(res.headers['www-authenticate']).toBe('Bearer')
    }

    it('accepts the real token, and one signed with the real key and the same claims (control)', async () => {
      expect((await me(alice.access_token)).json().id).toBe(alice.customer.id)
      const claims = jwtPayload(alice.access_token)
      const own = await signToken(realKey(node.runtime.config.appSecret), {
        sub: alice.customer.id,
        sid: claims.sid as string,
        typ: 'customer',
      })
      expect((await me(own)).json().id).toBe(alice.customer.id)
    })

    it('refuses a missing or malformed token', async () => {
      await refused(undefined)
      await refused('garbage')
      await refused('')
    })

    it('refuses alg none', async () => {
      const [, payload] = alice.access_token.split('.')
      await refused(`${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`)
      await refused(`${b64({ alg: 'None', typ: 'JWT' })}.${payload}.`)
    })

    it('refuses a token signed with another key', async () => {
      const claims = jwtPayload(alice.access_token)
      const forged = await signToken(randomBytes(32), {
        sub: alice.customer.id,
        sid: claims.sid as string,
        typ: 'customer',
      })
      await refused(forged)
    })

    it('refuses an expired token signed with the real key', async () => {
      const claims = jwtPayload(alice.access_token)
      const now = Math.floor(Date.now() / 1000)
      const expired = await signToken(
        realKey(node.runtime.config.appSecret),
        { sub: alice.customer.id, sid: claims.sid as string, typ: 'customer' },
        { iat: now - 3600, exp: now - 60 },
      )
      await refused(expired)
    })

    it('refuses staff-audience tokens on a customer route', async () => {
      const sid = jwtPayload(alice.access_token).sid as string
      const signer = new TokenSigner(node.runtime.config.appSecret)
      await refused(await signer.signAccess({ sub: alice.customer.id, typ: 'staff', sid }))
      // Customer claims addressed to the admin audience are no better.
      await refused(
        await signToken(
          realKey(node.runtime.config.appSecret),
          { sub: alice.customer.id, sid, typ: 'customer' },
          { aud: 'shopwright:admin' },
        ),
      )
    })

    it("refuses a tampered payload, and a validly signed token pairing Alice's session with Bob's id", async () => {
      const [header, payload, signature] = alice.access_token.split('.')
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString())
      await refused(`${header}.${b64({ ...claims, sub: bob.customer.id })}.${signature}`)
      const crossed = await signToken(realKey(node.runtime.config.appSecret), {
        sub: bob.customer.id,
        sid: claims.sid,
        typ: 'customer',
      })
      await refused(crossed)
      expect((await me(alice.access_token)).json().id).toBe(alice.customer.id)
    })
  })

  describe('refresh tokens', () => {
    it('rotates, and a replayed refresh token revokes the whole family but not other sign-ins', async () => {
      const first = await customer('rotate')
      const otherDevice = (await signIn(first.email)).json() as Tokens

      const r1 = await refresh(first.refresh_token)
      expect(r1.statusCode).toBe(200)
      const second = r1.json()
      expect(second).toEqual({
        access_token: expect.any(String),
        token_type: 'Bearer',
        expires_in: 900,
        refresh_token: expect.stringMatching(/^rt_/),
      })
      expect(second.refresh_token).not.toBe(first.refresh_token)
      expect((await me(second.access_token)).statusCode).toBe(200)
      const third = (await refresh(second.refresh_token)).json()
      expect((await me(third.access_token)).statusCode).toBe(200)

      const replayed = await refresh(first.refresh_token)
      expect(replayed.statusCode).toBe(401)
      expect(replayed.json().code).toBe('invalid_token')
      // The thief's replay ends the family: the newest tokens die with it.
      expect((await refresh(third.refresh_token)).statusCode).toBe(401)
      for (const token of [third.access_token, second.access_token, first.access_token])
        expect((await me(token)).statusCode).toBe(401)
      // A separate sign-in is another family and keeps working.
      expect((await me(otherDevice.access_token)).statusCode).toBe(200)
      expect((await refresh(otherDevice.refresh_token)).statusCode).toBe(200)
    })

    it('refuses a tampered, random or access token as a refresh token, without harming the real one', async () => {
      const session = await customer('tamper-rt')
      const rt = session.refresh_token
      const flipped = `${rt.slice(0, -1)}${rt.endsWith('A') ? 'B' : 'A'}`
      for (const token of [
        flipped,
        `rt_${randomBytes(32).toString('base64url')}`,
        session.access_token.slice(0, 200),
      ]) {
        const res = await refresh(token)
        expect(res.statusCode).toBe(401)
        expect(res.json().code).toBe('invalid_token')
      }
      expect((await refresh(rt)).statusCode).toBe(200)
    })
  })

  describe('sign-out', () => {
    it('ends the session at once: its access and refresh tokens stop working; other sessions go on', async () => {
      const session = await customer('signout')
      const other = (await signIn(session.email)).json() as Tokens
      const out = await post('/store/auth/sign-out', {}, { token: session.access_token })
      expect(out.statusCode).toBe(204)
      expect((await me(session.access_token)).statusCode).toBe(401)
      const res = await refresh(session.refresh_token)
      expect(res.statusCode).toBe(401)
      expect(res.json().code).toBe('invalid_token')
      expect((await post('/store/auth/sign-out', {}, { token: session.access_token })).statusCode).toBe(401)
      expect((await me(other.access_token)).statusCode).toBe(200)
    })
  })

  describe('password change', () => {
    it('checks the current password, then ends every other session and issues new tokens', async () => {
      const current = await customer('change')
      const other = (await signIn(current.email)).json() as Tokens
      const change = (body: object, token = current.access_token) =>
        post('/store/me/password', body, { token })

      const wrong = await change({ current_password: WRONG, new_password: OTHER_PASSWORD })
      expect(wrong.statusCode).toBe(401)
      expect(wrong.json().code).toBe('invalid_credentials')
      expect(wrong.json().errors).toEqual([{ path: 'body.current_password', message: expect.any(String) }])
      const weak = await change({ current_password: PASSWORD, new_password: 'password123' })
      expect(weak.statusCode).toBe(400)
      expect(weak.json().code).toBe('weak_password')
      expect(weak.json().errors[0].path).toBe('body.new_password')
      // Neither refusal changed anything.
      expect((await me(other.access_token)).statusCode).toBe(200)

      const ok = await change({ current_password: PASSWORD, new_password: OTHER_PASSWORD })
      expect(ok.statusCode).toBe(200)
      const renewed = ok.json()
      expect(renewed).toMatchObject({
        token_type: 'Bearer',
        expires_in: 900,
        refresh_token: expect.stringMatching(/^rt_/),
      })

      expect((await me(other.access_token)).statusCode).toBe(401)
      expect((await refresh(other.refresh_token)).statusCode).toBe(401)
      expect((await me(current.access_token)).statusCode).toBe(401)
      expect((await refresh(current.refresh_token)).statusCode).toBe(401)
      expect((await me(renewed.access_token)).statusCode).toBe(200)
      expect((await refresh(renewed.refresh_token)).statusCode).toBe(200)

      expect((await signIn(current.email, PASSWORD)).statusCode).toBe(401)
      expect((await signIn(current.email, OTHER_PASSWORD)).statusCode).toBe(200)
    })

    it('voids reset tokens mailed before the change', async () => {
      const session = await customer('change-voids')
      expect((await post('/store/auth/password-reset', { email: session.email })).statusCode).toBe(202)
      const [mail] = await waitForMail(node, session.email, 'reset_password')
      const changed = await post(
        '/store/me/password',
        { current_password: PASSWORD, new_password: OTHER_PASSWORD },
        { token: session.access_token },
      )
      expect(changed.statusCode).toBe(200)

      const reset = await post('/store/auth/password-reset/confirm', {
        token: mail!.data.token,
        password: 'Third-Strong-Pass-55',
      })
      expect(reset.statusCode).toBe(401)
      expect(reset.json().code).toBe('invalid_token')
      expect((await signIn(session.email, OTHER_PASSWORD, uniqueIp())).statusCode).toBe(200)
    })
  })

  describe('password reset', () => {
    const requestReset = (email: string) => post('/store/auth/password-reset', { email })
    const confirm = (token: string, password: string) =>
      post('/store/auth/password-reset/confirm', { token, password })

    it('limits reset emails per address, the same for unknown addresses', async () => {
      for (const email of [(await customer('reset-flood')).email, uniqueEmail('reset-flood-unknown')]) {
        const ip = uniqueIp()
        const codes: number[] = []
        for (let i = 0; i < 7; i++)
          codes.push((await post('/store/auth/password-reset', { email }, { ip })).statusCode)
        expect(codes).toEqual([202, 202, 202, 202, 202, 429, 429])
      }
    })

    it('answers the same for unknown and known emails, and mails a token only to the known one', async () => {
      const known = await customer('reset-known')
      const unknownEmail = uniqueEmail('reset-unknown')
      const a = await requestReset(unknownEmail)
      const b = await requestReset(known.email)
      expect(a.statusCode).toBe(202)
      expect(b.statusCode).toBe(202)
      expect(b.payload).toBe(a.payload)
      const [mail] = await waitForMail(node, known.email, 'reset_password')
      expect(mail!.data.token).toMatch(/^pr_/)
      expect((await outbox(node)).filter((m) => m.to === unknownEmail)).toEqual([])
    })

    it('sets the new password with the token once, ends every session, and verifies the email', async () => {
      const session = await customer('reset')
      expect((await requestReset(session.email)).statusCode).toBe(202)
      const [mail] = await waitForMail(node, session.email, 'reset_password')
      const token = mail!.data.token!

      const weak = await confirm(token, 'short')
      expect(weak.statusCode).toBe(400)
      expect(weak.json().code).toBe('weak_password')
      expect(weak.json().errors[0].path).toBe('body.password')
      expect((await me(session.access_token)).statusCode).toBe(200)

      // A refused weak password did not use the token up.
      expect((await confirm(token, OTHER_PASSWORD)).statusCode).toBe(204)
      expect((await me(session.access_token)).statusCode).toBe(401)
      expect((await refresh(session.refresh_token)).statusCode).toBe(401)
      expect((await signIn(session.email, PASSWORD)).statusCode).toBe(401)
      const after = await signIn(session.email, OTHER_PASSWORD)
      expect(after.statusCode).toBe(200)
      expect(after.json().customer.email_verified).toBe(true)

      const again = await confirm(token, 'Another-Strong-Pass-1')
      expect(again.statusCode).toBe(401)
      expect(again.json().code).toBe('invalid_token')
      expect((await signIn(session.email, OTHER_PASSWORD)).statusCode).toBe(200)
    })

    it("voids the account's other reset tokens and its verification tokens once a reset sets a password", async () => {
      const email = uniqueEmail('reset-voids')
      expect((await signUp(email)).statusCode).toBe(202)
      const [verify] = await waitForMail(node, email, 'verify_email')
      expect((await requestReset(email)).statusCode).toBe(202)
      expect((await requestReset(email.toUpperCase())).statusCode).toBe(202)
      const [first, second] = await waitForMail(node, email, 'reset_password', 2)

      expect((await confirm(first!.data.token!, OTHER_PASSWORD)).statusCode).toBe(204)
      const other = await confirm(second!.data.token!, 'Third-Strong-Pass-55')
      expect(other.statusCode).toBe(401)
      expect(other.json().code).toBe('invalid_token')
      // Nor does the verification token work, even with the password the reset set.
      const verified = await post('/store/auth/verify-email', {
        token: verify!.data.token,
        password: OTHER_PASSWORD,
      })
      expect(verified.statusCode).toBe(401)
      expect(verified.json().code).toBe('invalid_token')
      expect((await signIn(email, OTHER_PASSWORD, uniqueIp())).statusCode).toBe(200)
    })

    it('refuses a verification token as a reset token, and lets racing confirms use a token once', async () => {
      const email = uniqueEmail('reset-race')
      await signUp(email)
      const [verify] = await waitForMail(node, email, 'verify_email')
      expect((await confirm(verify!.data.token!, OTHER_PASSWORD)).statusCode).toBe(401)

      await requestReset(email)
      const [mail] = await waitForMail(node, email, 'reset_password')
      const passwords = Array.from({ length: 5 }, (_, i) => `Racing-Password-${i}-${run}`)
      const codes = (await Promise.all(passwords.map((p) => confirm(mail!.data.token!, p)))).map(
        (r) => r.statusCode,
      )
      expect(codes.filter((c) => c === 204)).toHaveLength(1)
      expect(codes.filter((c) => c === 401)).toHaveLength(4)
      const winner = passwords[codes.indexOf(204)]!
      // Never confirmed through its verification email, the account signs in: the reset email proved it.
      const after = await signIn(email, winner)
      expect(after.statusCode).toBe(200)
      expect(after.json().customer.email_verified).toBe(true)
    })
  })

  describe('addresses', () => {
    const address = {
      first_name: 'Ada',
      last_name: 'Lovelace',
      line1: '12 Analytical Row',
      city: 'London',
      postal_code: 'N1 9GU',
      country: 'GB',
    }
    const addresses = (token: string) =>
      node.app.inject({ url: '/store/me/addresses', headers: bearer(token) })
    const patch = (token: string, id: string, payload: object) =>
      node.app.inject({ method: 'PATCH', url: `/store/me/addresses/${id}`, headers: bearer(token), payload })
    const remove = (token: string, id: string) =>
      node.app.inject({ method: 'DELETE', url: `/store/me/addresses/${id}`, headers: bearer(token) })

    it("hides one customer's addresses from another: 404, never 403, and nothing changes", async () => {
      const a = await customer('addr-a')
      const b = await customer('addr-b')
      const created = await post('/store/me/addresses', address, { token: a.access_token })
      expect(created.statusCode).toBe(201)
      const own = created.json()
      expect(own).toMatchObject({ ...address, id: expect.stringMatching(/^addr_/), line2: '', label: '' })
      expect(own).not.toHaveProperty('customer_id')

      const hijack = await patch(b.access_token, own.id, { line1: '1 Thief Lane' })
      expect(hijack.statusCode).toBe(404)
      expect(hijack.json().code).toBe('not_found')
      const missing = await patch(b.access_token, 'addr_doesnotexist', { line1: '1 Thief Lane' })
      expect(missing.statusCode).toBe(404)
      const gone = await remove(b.access_token, own.id)
      expect(gone.statusCode).toBe(404)
      expect(gone.json().code).toBe('not_found')

      expect((await addresses(b.access_token)).json()).toEqual({ data: [] })
      expect((await addresses(a.access_token)).json()).toEqual({ data: [own] })

      const updated = await patch(a.access_token, own.id, { line1: '13 Analytical Row', label: 'Home' })
      expect(updated.statusCode).toBe(200)
      expect(updated.json()).toEqual({ ...own, line1: '13 Analytical Row', label: 'Home' })
      expect((await remove(a.access_token, own.id)).statusCode).toBe(204)
      expect((await addresses(a.access_token)).json()).toEqual({ data: [] })
      expect((await remove(a.access_token, own.id)).statusCode).toBe(404)
    })

    it('validates addresses: a two-letter uppercase country, no unknown fields, no reassignment', async () => {
      const a = await customer('addr-valid')
      const b = await customer('addr-other')
      for (const country of ['gb', 'GBR', 'G1', '']) {
        const res = await post('/store/me/addresses', { ...address, country }, { token: a.access_token })
        expect(res.statusCode, country).toBe(400)
        expect(res.json().code).toBe('validation_failed')
        expect(res.json().errors.map((e: { path: string }) => e.path)).toContain('body.country')
      }
      const smuggled = await post(
        '/store/me/addresses',
        { ...address, customer_id: b.customer.id },
        { token: a.access_token },
      )
      expect(smuggled.statusCode).toBe(400)
      expect(smuggled.json().errors).toContainEqual({
        path: 'body.customer_id',
        message: 'is not a known field',
      })
      expect((await addresses(b.access_token)).json()).toEqual({ data: [] })
      expect((await addresses(a.access_token)).json()).toEqual({ data: [] })

      const own = (await post('/store/me/addresses', address, { token: a.access_token })).json()
      for (const body of [{ customer_id: b.customer.id }, { id: 'addr_chosen' }, {}, { country: 'de' }]) {
        const res = await patch(a.access_token, own.id, body)
        expect(res.statusCode, JSON.stringify(body)).toBe(400)
        expect(res.json().code).toBe('validation_failed')
      }
      expect((await addresses(a.access_token)).json()).toEqual({ data: [own] })
      expect((await addresses(b.access_token)).json()).toEqual({ data: [] })
      expect((await node.app.inject({ url: '/store/me/addresses' })).statusCode).toBe(401)
    })
  })

  describe('admin API', () => {
    it('refuses customer tokens with 403 and no token with 401', async () => {
      const session = await customer('admin-probe')
      const list = await node.app.inject({ url: '/admin/products', headers: bearer(session.access_token) })
      expect(list.statusCode).toBe(403)
      expect(list.json().code).toBe('forbidden')
      const create = await node.app.inject({
        method: 'POST',
        url: '/admin/products',
        headers: bearer(session.access_token),
        payload: { handle: `cust-${run}`, title: 'Nope' },
      })
      expect(create.statusCode).toBe(403)
      const none = await node.app.inject({ url: '/admin/products' })
      expect(none.statusCode).toBe(401)
      expect(none.json().code).toBe('unauthenticated')
      const products = await node.runtime.database.db
        .selectFrom('products')
        .select('id')
        .where('handle', '=', `cust-${run}`)
        .execute()
      expect(products).toEqual([])
    })
  })

  describe('password guessing', () => {
    /** Wrong passwords from one IP, one after another, until the first 429; returns the 401s before it. */
    async function failUntilLocked(email: string, ip: string) {
      for (let failures = 0; failures < 20; failures++) {
        const res = await signIn(email, WRONG, ip)
        if (res.statusCode === 429) return { failures, locked: res }
        expect(res.statusCode).toBe(401)
        expect(res.json().code).toBe('invalid_credentials')
      }
      throw new Error('never throttled after 20 wrong passwords')
    }

    it('locks an account for an IP after the free attempts, refuses even the right password, and stays up', async () => {
      const { email } = await customer('brute')
      const attacker = uniqueIp()
      const { failures, locked } = await failUntilLocked(email, attacker)
      // Five free attempts; the sixth is refused and starts the first wait.
      expect(failures).toBe(5)
      expect(locked.json().code).toBe('too_many_attempts')
      const retryAfter = Number(locked.headers['retry-after'])
      expect(Number.isInteger(retryAfter)).toBe(true)
      expect(retryAfter).toBeGreaterThanOrEqual(1)
      expect(retryAfter).toBeLessThanOrEqual(900)

      const right = await signIn(email, PASSWORD, attacker)
      expect(right.statusCode).toBe(429)
      expect(right.json().code).toBe('too_many_attempts')
      // Spelling the email differently does not make it another account to the lock.
      expect((await signIn(email.toUpperCase(), WRONG, attacker)).statusCode).toBe(429)

      // The run goes on: every further guess is refused before any password is checked, so the
      // failure count does not move and the node keeps answering.
      const failsKey = `throttle:customer:fails:${email.toLowerCase()}|${attacker}`
      const countedBefore = await node.runtime.kv.get(failsKey)
      const started = Date.now()
      const codes: number[] = []
      for (let batch = 0; batch < 6; batch++) {
        const [live, ...responses] = await Promise.all([
          node.app.inject({ url: '/livez', remoteAddress: attacker }),
          ...Array.from({ length: 50 }, () => signIn(email, WRONG, attacker)),
        ])
        expect(live!.statusCode).toBe(200)
        for (const res of responses) {
          codes.push(res.statusCode)
          expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(900)
        }
      }
      const elapsed = Date.now() - started
      expect(elapsed, 'the lock (2 s) must outlast the run for this test to mean anything').toBeLessThan(
        retryAfter * 1000,
      )
      expect(codes.filter((c) => c !== 429)).toEqual([])
      expect(await node.runtime.kv.get(failsKey)).toBe(countedBefore)
      expect((await node.app.inject({ url: '/livez' })).statusCode).toBe(200)

      // Another IP (the real customer at home) is not locked out by the attacker's failures.
      const elsewhere = uniqueIp()
      expect((await signIn(email, WRONG, elsewhere)).statusCode).toBe(401)
      expect((await signIn(email, PASSWORD, elsewhere)).statusCode).toBe(200)
    })

    it('checks at most the free attempts when guesses arrive all at once', async () => {
      const { email } = await customer('burst')
      const attacker = uniqueIp()
      const responses = await Promise.all(Array.from({ length: 60 }, () => signIn(email, WRONG, attacker)))
      const checked = responses.filter((r) => r.statusCode === 401).length
      const refused = responses.filter((r) => r.statusCode === 429).length
      expect(checked + refused).toBe(60)
      // A burst must not buy more password checks than the same guesses sent one by one (five).
      expect(checked).toBe(5)
    })

    it('stops guessing spread over many IPs at 50 failures an hour, then locks every IP until a reset', async () => {
      const { email } = await customer('ceiling')
      let failures = 0
      while (failures < 50) {
        const ip = uniqueIp()
        for (let n = 0; n < 5 && failures < 50; n++, failures++) {
          expect((await signIn(email, WRONG, ip)).statusCode).toBe(401)
        }
      }
      for (const password of [WRONG, PASSWORD]) {
        const res = await signIn(email, password, uniqueIp())
        expect(res.statusCode).toBe(429)
        expect(res.json().code).toBe('too_many_attempts')
        expect(Number(res.headers['retry-after'])).toBe(900)
      }

      await post('/store/auth/password-reset', { email })
      const [mail] = await waitForMail(node, email, 'reset_password')
      expect(
        (
          await post('/store/auth/password-reset/confirm', {
            token: mail!.data.token,
            password: OTHER_PASSWORD,
          })
        ).statusCode,
      ).toBe(204)
      expect((await signIn(email, OTHER_PASSWORD, uniqueIp())).statusCode).toBe(200)
    })

    it('lifts the lockout of the locked IP with a password reset', async () => {
      const { email } = await customer('reset-lock')
      await post('/store/auth/password-reset', { email })
      const [mail] = await waitForMail(node, email, 'reset_password')
      const victimIp = uniqueIp()
      const { locked } = await failUntilLocked(email, victimIp)
      const lockedAt = Date.now()
      const lockMs = Number(locked.headers['retry-after']) * 1000

      const reset = await post('/store/auth/password-reset/confirm', {
        token: mail!.data.token,
        password: OTHER_PASSWORD,
      })
      expect(reset.statusCode).toBe(204)
      const res = await signIn(email, OTHER_PASSWORD, victimIp)
      expect(Date.now() - lockedAt, 'the lock must not have expired on its own').toBeLessThan(lockMs - 200)
      expect(res.json().code).not.toBe('too_many_attempts')
      expect(res.statusCode).toBe(200)
    })
  })

  it.runIf(kind === 'postgres')(
    'answers concurrent sign-ups of one new email alike, creating one account',
    async () => {
      // A second node on the same database, as behind a load balancer, with its pool still cold:
      // requests waiting for connections line up, as a double-clicked form or a retrying client do.
      const second = await startTestNode(kind, { database: node.database, env: nodeEnv(kind) })
      try {
        for (let round = 0; round < 3; round++) {
          const email = uniqueEmail('race')
          const responses = await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              (i % 2 ? node : second).app.inject({
                method: 'POST',
                url: '/store/auth/sign-up',
                payload: { email, password: PASSWORD },
                // Distinct clients, so the per-address sign-up limit does not answer before the race.
                remoteAddress: uniqueIp(),
              }),
            ),
          )
          const bodies = new Set(responses.map((r) => `${r.statusCode} ${r.payload}`))
          expect([...bodies]).toEqual([`202 ${JSON.stringify({ status: 'pending_verification' })}`])
          expect(await accountsWith(email)).toBe(1)
        }
      } finally {
        await second.close()
      }
    },
  )
})

describeEachDatabase('customer identity: emails asked for by address alone', (kind) => {
  // No workers: what a request wrote is all there is until the test runs the queued jobs.
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode(kind, { env: nodeEnv(kind) })
  })
  afterAll(() => node?.close())

  const post = (url: string, payload: object) =>
    node.app.inject({ method: 'POST', url, payload, remoteAddress: uniqueIp() })
  const answer = (res: { statusCode: number; headers: Record<string, unknown>; payload: string }) =>
    `${res.statusCode} ${res.headers['content-type']} ${res.payload}`

  /** What a request could write besides its job, whoever the address belongs to: tokens and emails. */
  async function written(): Promise<{ tokens: number; emails: number }> {
    const { rows } = await sql<{ tokens: number; emails: number }>`
      select (select count(*)::int from one_time_tokens) as tokens,
             (select count(*)::int from pgboss.job where name = ${SEND_EMAIL_JOB}) as emails
    `.execute(node.runtime.database.db)
    return rows[0]!
  }

  it.each([
    ['/store/auth/password-reset', 'reset_password', { confirmed: 1, unconfirmed: 1 }],
    // Both accounts got one verification email at sign-up.
    ['/store/auth/resend-verification', 'verify_email', { confirmed: 1, unconfirmed: 2 }],
  ] as const)(
    '%s queues one sealed job for any address and writes nothing else; its run mails only the accounts it is for',
    async (url, purpose, expected) => {
      const confirmed = uniqueEmail('by-address-confirmed')
      await signUpConfirmed(node, confirmed, PASSWORD, uniqueIp())
      const unconfirmed = uniqueEmail('by-address-unconfirmed')
      expect((await post('/store/auth/sign-up', { email: unconfirmed, password: PASSWORD })).statusCode).toBe(
        202,
      )
      const unknown = uniqueEmail('by-address-unknown')
      await settleAccountEmails(node)
      const before = await written()

      const answers = []
      for (const email of [unknown, confirmed, unconfirmed]) answers.push(await post(url, { email }))
      for (const res of answers) {
        expect(res.statusCode).toBe(202)
        expect(answer(res)).toBe(answer(answers[0]!))
      }
      // The same work for each address: one job carrying it as typed, sealed, and no token or email.
      for (const email of [unknown, confirmed, unconfirmed]) {
        const jobs = await accountEmailJobs(node, email)
        expect(jobs.map((job) => job.payload)).toEqual([{ purpose, email }])
        expect(Object.keys(jobs[0]!.stored).sort()).toEqual(['purpose', 'sealed'])
      }
      expect(await written()).toEqual(before)

      // Run, the jobs mail the accounts alone (queuedEmails runs them first).
      expect(await queuedEmails(node, unknown, purpose)).toEqual([])
      expect(await queuedEmails(node, confirmed, purpose)).toHaveLength(expected.confirmed)
      expect(await queuedEmails(node, unconfirmed, purpose)).toHaveLength(expected.unconfirmed)
    },
  )
})

describeEachDatabase('customer identity: per-IP auth rate limit', (kind) => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode(kind, { env: nodeEnv(kind, { AUTH_RATE_LIMIT_PER_MINUTE: '3' }) })
  })
  afterAll(() => node?.close())

  it('refuses the fourth sign-in from one IP within a minute with 429 rate_limited; other IPs go on', async () => {
    const email = uniqueEmail('ratelimit')
    const signUp = await node.app.inject({
      method: 'POST',
      url: '/store/auth/sign-up',
      payload: { email, password: PASSWORD },
      remoteAddress: uniqueIp(),
    })
    expect(signUp.statusCode).toBe(202)
    await confirmEmail(node, email, PASSWORD, uniqueIp())
    const signIn = (ip: string) =>
      node.app.inject({
        method: 'POST',
        url: '/store/auth/sign-in',
        payload: { email, password: PASSWORD },
        remoteAddress: ip,
      })
    const ip = uniqueIp()
    for (let i = 0; i < 3; i++) expect((await signIn(ip)).statusCode).toBe(200)
    const limited = await signIn(ip)
    expect(limited.statusCode).toBe(429)
    expect(limited.json().code).toBe('rate_limited')
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0)
    expect((await signIn(uniqueIp())).statusCode).toBe(200)
  })

  it('refuses the fourth verification resend from one IP within a minute, for any addresses', async () => {
    const ip = uniqueIp()
    const resend = () =>
      node.app.inject({
        method: 'POST',
        url: '/store/auth/resend-verification',
        payload: { email: uniqueEmail('resend-rate') },
        remoteAddress: ip,
      })
    for (let i = 0; i < 3; i++) expect((await resend()).statusCode).toBe(202)
    const limited = await resend()
    expect(limited.statusCode).toBe(429)
    expect(limited.json().code).toBe('rate_limited')
  })
})
