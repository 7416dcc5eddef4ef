/**
 * Secrets in job payloads: an email's one-time token and recipient never reach the dead-letter list
 * (`jobs:read`), are sealed in pg-boss's tables, and are opened only for the worker that sends it;
 * a replay sends the right email, and emails queued in plain by an earlier version still go out.
 */
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { sql } from 'kysely'
import pino from 'pino'
import { afterAll, beforeAll, expect, it } from 'vitest'
import {
  defineMailJob,
  type MailMessage,
  type MailTransport,
  SEND_EMAIL_JOB,
  sendEmail,
} from '../src/modules/notifications/mail.ts'
import type { Database } from '../src/platform/db/database.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { type DeadJob, Jobs } from '../src/platform/jobs/jobs.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { createTestDatabase, describeEachDatabase, type TestDatabase } from './support/database.ts'
import { eventually } from './support/eventually.ts'

const MAIL_SECRETS = ['to', 'subject', 'text', 'data']
const PASSWORD = 'Correct-Horse-Battery-9'
const run = Math.random().toString(36).slice(2, 8)

interface Listed {
  id: string
  queue: string | null
  data: unknown
  redacted: string[]
}

describeEachDatabase('secrets of dead-lettered emails', (kind) => {
  let node: TestNode
  let opsKey: string
  const mailDir = () => join(node.runtime.config.dataDir, 'mail')

  beforeAll(async () => {
    // No retries: a failed send is dead-lettered at once.
    node = await startTestNode(kind, { work: true, env: { JOB_RETRY_LIMIT: '0' } })
    const key = await node.app.inject({
      method: 'POST',
      url: '/admin/api-keys',
      headers: adminAuth,
      payload: { name: 'ops', permissions: ['jobs:read'] },
    })
    expect(key.statusCode, key.body).toBe(201)
    opsKey = key.json().secret
  })
  afterAll(() => node.close())

  /** While it lasts, the dev transport cannot write (its directory is a file), as in an outage. */
  async function duringMailOutage<T>(fn: () => Promise<T>): Promise<T> {
    await rm(mailDir(), { recursive: true, force: true })
    await writeFile(mailDir(), '')
    try {
      return await fn()
    } finally {
      await rm(mailDir(), { force: true })
    }
  }

  /** The dead-letter list as an ops key (`jobs:read` only) sees it: its raw text, and the mail jobs. */
  async function listedMail(): Promise<{ body: string; mail: Listed[] }> {
    const res = await node.app.inject({
      url: '/admin/jobs/failed?limit=100',
      headers: { authorization: `Bearer ${opsKey}` },
    })
    expect(res.statusCode, res.body).toBe(200)
    return { body: res.body, mail: (res.json().data as Listed[]).filter((j) => j.queue === SEND_EMAIL_JOB) }
  }

  async function sent(to: string, template: string): Promise<MailMessage> {
    return eventually(async () => {
      const lines = (await readFile(join(mailDir(), 'outbox.jsonl'), 'utf8')).split('\n').filter(Boolean)
      return lines
        .map((l) => JSON.parse(l) as MailMessage)
        .find((m) => m.to === to && m.template === template)
    }, 20_000)
  }

  async function replay(id: string): Promise<void> {
    const res = await node.app.inject({
      method: 'POST',
      url: `/admin/jobs/failed/${id}/replay`,
      headers: adminAuth,
    })
    expect(res.statusCode, res.body).toBe(202)
  }

  it('lists a failed reset or verification email without its token or recipient, and a replay sends it', async () => {
    const email = `taken-${run}-${kind}@example.com`
    const listed = await duringMailOutage(async () => {
      const post = (url: string, payload: object) => node.app.inject({ method: 'POST', url, payload })
      expect((await post('/store/auth/sign-up', { email, password: PASSWORD })).statusCode).toBe(202)
      expect((await post('/store/auth/password-reset', { email })).statusCode).toBe(202)
      return eventually(async () => {
        const list = await listedMail()
        return list.mail.length >= 2 ? list : undefined
      }, 20_000)
    })

    const templates = listed.mail.map((j) => j.data)
    expect(templates).toEqual(
      expect.arrayContaining([{ template: 'verify_email' }, { template: 'reset_password' }]),
    )
    for (const job of listed.mail) expect(job.redacted).toEqual(MAIL_SECRETS)
    expect(listed.body).not.toContain(email)

    for (const job of listed.mail) await replay(job.id)
    const reset = await sent(email, 'reset_password')
    const verify = await sent(email, 'verify_email')
    const resetToken = reset.data.token ?? ''
    const verifyToken = verify.data.token ?? ''
    expect(resetToken.length).toBeGreaterThan(10)
    expect(reset.text).toContain(resetToken)
    // The tokens the customer got were never in the list, and they work.
    expect(listed.body).not.toContain(resetToken)
    expect(listed.body).not.toContain(verifyToken)
    // Nor are they, or the address, readable in the queue's tables.
    const stored = (
      await sql<{ data: string }>`select data::text as data from pgboss.job`.execute(node.runtime.database.db)
    ).rows
      .map((r) => r.data)
      .join('\n')
    for (const secret of [email, resetToken, verifyToken]) expect(stored).not.toContain(secret)
    const confirm = await node.app.inject({
      method: 'POST',
      url: '/store/auth/password-reset/confirm',
      payload: { token: resetToken, password: `${PASSWORD}-new` },
    })
    expect(confirm.statusCode, confirm.body).toBe(204)
  })

  it('sends an email queued in plain by an earlier version, and lists it redacted when it fails', async () => {
    const legacy = {
      to: `legacy-${run}-${kind}@example.com`,
      template: 'legacy_reset',
      subject: 'Reset your password',
      text: 'Reset your password with this code: pr_legacy-secret',
      data: { token: 'pr_legacy-secret' },
    }
    const failed = await duringMailOutage(async () => {
      await node.runtime.jobs.boss.send(SEND_EMAIL_JOB, legacy)
      return eventually(async () => {
        const list = await listedMail()
        const job = list.mail.find((j) => (j.data as { template?: string }).template === 'legacy_reset')
        return job ? { job, body: list.body } : undefined
      }, 20_000)
    })
    expect(failed.job.data).toEqual({ template: 'legacy_reset' })
    expect(failed.job.redacted).toEqual(MAIL_SECRETS)
    expect(failed.body).not.toContain('pr_legacy-secret')
    expect(failed.body).not.toContain(legacy.to)

    await replay(failed.job.id)
    expect(await sent(legacy.to, 'legacy_reset')).toMatchObject(legacy)
  })
})

describeEachDatabase('sealed job payloads', (kind) => {
  const APP_SECRET = 'sealed-jobs-test-secret-0123456789abcdef'
  let testDb: TestDatabase
  let database: Database
  let jobs: Jobs
  const delivered: MailMessage[] = []
  const refused = new Set<string>()
  const transport: MailTransport = {
    async send(message) {
      if (refused.has(message.to)) throw new Error('mailbox unavailable')
      delivered.push(message)
    },
  }
  const message = (to: string): MailMessage => ({
    to,
    template: 'reset_password',
    subject: 'Reset your password',
    text: `Reset your password with this code within an hour: pr_${to}`,
    data: { token: `pr_${to}` },
  })
  const deliveredTo = (to: string) => eventually(async () => delivered.find((m) => m.to === to), 20_000)
  const deadLettered = (match: (job: DeadJob) => boolean) =>
    eventually(async () => (await jobs.deadLettered(100)).find(match), 20_000)
  /** Every payload pg-boss holds, in every queue (dead letters, completed jobs), as text. */
  const storedPayloads = async () =>
    (await sql<{ data: string }>`select data::text as data from pgboss.job`.execute(database.db)).rows
      .map((r) => r.data)
      .join('\n')

  beforeAll(async () => {
    testDb = await createTestDatabase(kind)
    database = await testDb.open()
    jobs = new Jobs(database, {
      retryLimit: 0,
      retryDelaySeconds: 1,
      logger: pino({ level: 'silent' }),
      pollingIntervalSeconds: 0.5,
      appSecret: APP_SECRET,
    })
    defineMailJob(jobs, transport)
    await jobs.start({ work: true })
  })
  afterAll(async () => {
    await jobs.stop(5000)
    await database.close()
    await testDb.drop()
  })

  it('stores neither token nor recipient, sends the email as queued, and replays a dead one', async () => {
    const to = `sealed-${run}@example.com`
    await withTransaction(database.db, (trx) => sendEmail(trx, jobs, message(to)))
    expect(await deliveredTo(to)).toEqual(message(to))

    const failing = `refused-${run}@example.com`
    refused.add(failing)
    await withTransaction(database.db, (trx) => sendEmail(trx, jobs, message(failing)))
    const dead = await deadLettered((job) => job.queue === SEND_EMAIL_JOB)
    expect(dead).toMatchObject({ data: { template: 'reset_password' }, redacted: MAIL_SECRETS })

    const stored = await storedPayloads()
    for (const secret of [to, failing, `pr_${to}`, `pr_${failing}`, 'Reset your password']) {
      expect(stored).not.toContain(secret)
    }

    refused.delete(failing)
    expect(await jobs.replay(dead.id)).toBe(true)
    expect(await deliveredTo(failing)).toEqual(message(failing))
  })

  it('dead-letters at once a payload its sealed fields cannot be opened from', async () => {
    const other = new Jobs(database, {
      retryLimit: 0,
      retryDelaySeconds: 1,
      logger: pino({ level: 'silent' }),
      appSecret: `${APP_SECRET}-rotated`,
    })
    defineMailJob(other, transport)
    const to = `rotated-${run}@example.com`
    // Sealed by a node with another APP_SECRET (an API node not yet given the rotated one).
    await other.start({ work: false })
    try {
      await withTransaction(database.db, (trx) => sendEmail(trx, other, message(to)))
    } finally {
      await other.stop(1000)
    }
    const dead = await deadLettered(
      (job) => job.queue === SEND_EMAIL_JOB && JSON.stringify(job.error).includes('cannot be opened'),
    )
    expect(dead.redacted).toEqual(MAIL_SECRETS)
    expect(delivered.find((m) => m.to === to)).toBeUndefined()
  })
})
