/**
 * Customer accounts for tests, made the way a shopper makes one: sign up, then confirm the email
 * with the token the verification email carries and the password (an unconfirmed account cannot
 * sign in). The token is read from that email's job in the queue and opened with the node's
 * APP_SECRET, as the mail worker opens it: a job stays in the queue's table once sent, so this works
 * alike on nodes that run workers and on nodes that do not (whose emails never reach the dev outbox).
 */
import { type MailMessage, SEND_EMAIL_JOB } from '../../src/modules/notifications/mail.ts'
import { SecretBox } from '../../src/platform/secret-box.ts'
import type { TestNode } from './app.ts'

const PAGE = 1000

/** The emails of a template queued for an address (sent or not yet), oldest first, as their worker reads them. */
export async function queuedEmails(node: TestNode, to: string, template: string): Promise<MailMessage[]> {
  // The queue seals every field but the template under a key of the queue's own (jobs.ts, #box).
  const box = new SecretBox(node.runtime.config.appSecret, `job-payload:${SEND_EMAIL_JOB}`)
  const found: MailMessage[] = []
  let after: string | undefined
  for (;;) {
    const page = await node.runtime.jobs.boss.findJobs<Record<string, unknown>>(SEND_EMAIL_JOB, {
      data: { template },
      limit: PAGE,
      ...(after ? { after } : {}),
    })
    for (const job of page) {
      const { sealed, ...open } = job.data
      const message: unknown =
        typeof sealed === 'string' ? { ...open, ...(JSON.parse(box.open(sealed)) as object) } : job.data
      if ((message as MailMessage).to === to) found.push(message as MailMessage)
    }
    if (page.length < PAGE) return found
    after = page.at(-1)!.id
  }
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
