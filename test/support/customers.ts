/**
 * Customer accounts for tests, made the way a shopper makes one: sign up, then confirm the email
 * with the token the verification email carries and the password (an unconfirmed account cannot
 * sign in). The token is read from that email's job in the queue and opened with the node's
 * APP_SECRET, as the mail worker opens it: a job stays in the queue's table once sent, so this works
 * alike on nodes that run workers and on nodes that do not (whose emails never reach the dev outbox).
 *
 * Emails asked for by address alone (a reset, a new verification email) are made by a job of their
 * own (ACCOUNT_EMAIL_JOB) before the email's job exists: reading the queued emails first waits for
 * those jobs to have run, and runs them here on a node without workers.
 */
import { sql } from 'kysely'
import {
  ACCOUNT_EMAIL_JOB,
  type AccountEmailJob,
  sendAccountEmail,
} from '../../src/modules/identity/customers.ts'
import { type MailMessage, SEND_EMAIL_JOB } from '../../src/modules/notifications/mail.ts'
import { SecretBox } from '../../src/platform/secret-box.ts'
import type { TestNode } from './app.ts'

const PAGE = 1000

/** A queued job's payload as its handler gets it: the queue seals its secret fields (jobs.ts, #box). */
function opened<T>(node: TestNode, queue: string, data: Record<string, unknown>): T {
  const { sealed, ...open } = data
  if (typeof sealed !== 'string') return data as T
  const box = new SecretBox(node.runtime.config.appSecret, `job-payload:${queue}`)
  return { ...open, ...(JSON.parse(box.open(sealed)) as object) } as T
}

/** Every job of a queue (whatever its state), oldest first, as stored and as its handler reads it. */
async function jobsOf<T>(
  node: TestNode,
  queue: string,
  data?: object,
): Promise<Array<{ stored: Record<string, unknown>; payload: T }>> {
  const found: Array<{ stored: Record<string, unknown>; payload: T }> = []
  let after: string | undefined
  for (;;) {
    const page = await node.runtime.jobs.boss.findJobs<Record<string, unknown>>(queue, {
      ...(data ? { data } : {}),
      limit: PAGE,
      ...(after ? { after } : {}),
    })
    for (const job of page) found.push({ stored: job.data, payload: opened<T>(node, queue, job.data) })
    if (page.length < PAGE) return found
    after = page.at(-1)!.id
  }
}

/** The account-email jobs queued for an address as typed (run or not yet), oldest first. */
export async function accountEmailJobs(
  node: TestNode,
  email: string,
): Promise<Array<{ stored: Record<string, unknown>; payload: AccountEmailJob }>> {
  return (await jobsOf<AccountEmailJob>(node, ACCOUNT_EMAIL_JOB)).filter((job) => job.payload.email === email)
}

/**
 * Waits until every account-email job queued so far has run, so that the emails they make are in
 * the queue; runs waiting ones here (on a node without workers nothing else would). A job that
 * fails is left to its retries, and the wait ends in an error naming the queue.
 */
export async function settleAccountEmails(node: TestNode, timeoutMs = 15_000): Promise<void> {
  const { boss } = node.runtime.jobs
  const deadline = Date.now() + timeoutMs
  for (;;) {
    for (const job of await boss.fetch<Record<string, unknown>>(ACCOUNT_EMAIL_JOB, { batchSize: 20 })) {
      try {
        await sendAccountEmail(node.runtime, opened<AccountEmailJob>(node, ACCOUNT_EMAIL_JOB, job.data))
        await boss.complete(ACCOUNT_EMAIL_JOB, job.id)
      } catch (error) {
        await boss.fail(ACCOUNT_EMAIL_JOB, job.id, { message: String(error) })
      }
    }
    const { rows } = await sql<{ pending: number }>`
      select count(*)::int as pending from pgboss.job
      where name = ${ACCOUNT_EMAIL_JOB} and state in ('created', 'retry', 'active')
    `.execute(node.runtime.database.db)
    if (rows[0]!.pending === 0) return
    if (Date.now() > deadline)
      throw new Error(`${ACCOUNT_EMAIL_JOB} jobs still pending after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** The emails of a template queued for an address (sent or not yet), oldest first, as their worker reads them. */
export async function queuedEmails(node: TestNode, to: string, template: string): Promise<MailMessage[]> {
  await settleAccountEmails(node)
  return (await jobsOf<MailMessage>(node, SEND_EMAIL_JOB, { template }))
    .map((job) => job.payload)
    .filter((message) => message.to === to)
}

/**
 * Confirms an account's email with the token of the newest verification email sent to it and the
 * account's password; answers what verify-email answered (the customer, signed in).
 */
export async function confirmEmail(
  node: TestNode,
  email: string,
  password: string,
  remoteAddress?: string,
): Promise<{ access_token: string; refresh_token: string; customer: { id: string } }> {
  const mail = (await queuedEmails(node, email, 'verify_email')).at(-1)
  if (!mail) throw new Error(`no verification email was queued for ${email}`)
  const res = await node.app.inject({
    method: 'POST',
    url: '/store/auth/verify-email',
    payload: { token: mail.data.token, password },
    ...(remoteAddress ? { remoteAddress } : {}),
  })
  if (res.statusCode !== 200) throw new Error(`verify-email: ${res.statusCode} ${res.body}`)
  return res.json()
}

/** Signs up a new account and confirms its email, so that it can sign in. */
export async function signUpConfirmed(
  node: TestNode,
  email: string,
  password: string,
  remoteAddress?: string,
): Promise<void> {
  const res = await node.app.inject({
    method: 'POST',
    url: '/store/auth/sign-up',
    payload: { email, password },
    ...(remoteAddress ? { remoteAddress } : {}),
  })
  if (res.statusCode !== 202) throw new Error(`sign-up: ${res.statusCode} ${res.body}`)
  await confirmEmail(node, email, password, remoteAddress)
}
