/**
 * Email out through the job queue: a message is enqueued in the transaction that makes it
 * necessary (a sign-up, a reset request) and sent by a worker, with retries. The built-in
 * transport writes each message as a JSON line to DATA_DIR/mail/outbox.jsonl and to the log, for
 * development and tests; a real provider plugs in behind MailTransport.
 */
import { appendFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Tx } from '../../platform/db/transaction.ts'
import type { Jobs } from '../../platform/jobs/jobs.ts'

export const SEND_EMAIL_JOB = 'notifications.email'

export interface MailMessage {
  to: string
  template: string
  subject: string
  text: string
  /** Values a real template would render, e.g. a link token. */
  data: Record<string, string>
}

export interface MailTransport {
  send(message: MailMessage): Promise<void>
}

/** Appends messages to a JSON-lines file and logs them (without their secret data). */
export class FileMailTransport implements MailTransport {
  readonly file: string
  readonly #logger: Logger

  constructor(dataDir: string, logger: Logger) {
    this.file = join(dataDir, 'mail', 'outbox.jsonl')
    this.#logger = logger
  }

  async send(message: MailMessage): Promise<void> {
    await mkdir(join(this.file, '..'), { recursive: true })
    await appendFile(this.file, `${JSON.stringify({ ...message, sent_at: new Date().toISOString() })}\n`)
    this.#logger.info(
      { to: message.to, template: message.template, file: this.file },
      'email written to the dev outbox',
    )
  }
}

/** Enqueues an email in the caller's transaction; all but its template is sealed in the queue. */
export async function sendEmail(trx: Tx, jobs: Jobs, message: MailMessage): Promise<void> {
  await jobs.enqueue(trx, SEND_EMAIL_JOB, message)
}

/**
 * All of a message but its template is secret in the queue: the text and data carry one-time
 * tokens (a password reset, an email verification: whoever reads one takes the account over), and
 * the recipient (and any subject naming them) is a customer's personal data, which `jobs:read`, an
 * operations permission without MFA, does not grant. The template says what failed.
 */
const SECRET_FIELDS = ['to', 'subject', 'text', 'data'] as const

/** Defines the job that hands queued emails to the transport. */
export function defineMailJob(jobs: Jobs, transport: MailTransport): void {
  jobs.define<MailMessage>(SEND_EMAIL_JOB, (message) => transport.send(message), {
    secret: SECRET_FIELDS,
  })
}
