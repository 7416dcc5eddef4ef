/**
 * The tax module's background job: commits and voids for an external tax service, enqueued in the
 * transaction that places or cancels the order and sent once it has committed. A service that is
 * down is retried with backoff (the order is placed meanwhile); one that never answers leaves the
 * job in the dead-letter queue, where staff see and replay it.
 *
 * The call's body (lines, the buyer's address) waits in `tax_service_calls` and is deleted once the
 * service has it; the job carries only where to send it and the row's id, so the queue's history
 * (kept for weeks, dead letters included) holds no personal data.
 */
import { sql } from 'kysely'
import type { Queryable } from '../../platform/db/transaction.ts'
import { newId } from '../../platform/ids.ts'
import { DEAD_LETTER_RETENTION_SECONDS } from '../../platform/jobs/jobs.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { postToTaxService, type TaxServiceCall, type TaxServiceCalls } from './providers.ts'
import { isSaleVoided } from './sales.ts'

export const TAX_SERVICE_CALL_JOB = 'tax.service-call'
export const TAX_SERVICE_CALLS_PURGE_JOB = 'tax.service-calls.purge'

/**
 * Deletes the bodies of calls that can no longer be sent: their job exhausted its retries and has
 * outlived the dead-letter queue's retention (so it can no longer be replayed), plus a day.
 */
export async function purgeUnsendableTaxCalls(db: Queryable): Promise<number> {
  const result = await db
    .deleteFrom('tax_service_calls')
    .where(
      'created_at',
      '<',
      sql<Date>`now() - make_interval(secs => ${DEAD_LETTER_RETENTION_SECONDS + 24 * 3600})`,
    )
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}

/** What the job carries. */
interface QueuedCall extends Omit<TaxServiceCall, 'body'> {
  call_id: string
  reference: string
}

/** Defines the job that sends queued service calls, and the daily purge of unsendable ones. */
export function defineTaxJobs(runtime: Runtime): void {
  const { db } = runtime.database
  runtime.jobs.define(TAX_SERVICE_CALLS_PURGE_JOB, () => purgeUnsendableTaxCalls(db).then(() => {}), {
    cron: '41 3 * * *',
    retryLimit: 1,
  })
  runtime.jobs.define<QueuedCall | TaxServiceCall>(TAX_SERVICE_CALL_JOB, async (job) => {
    // Jobs queued before the bodies moved to their table (migration 0018) carry their body.
    const legacy = 'body' in job
    const body = legacy
      ? job.body
      : (
          await db
            .selectFrom('tax_service_calls')
            .select('body')
            .where('id', '=', job.call_id)
            .executeTakeFirst()
        )?.body
    // Sent by an earlier run whose completion was not recorded: the service has it.
    if (!body) return
    const reference = legacy ? job.body.reference : job.reference
    // The calls of one reference may run out of order (retries, two workers). A commit that
    // arrives after its order was canceled here is not sent: the service would book a sale that
    // no longer exists, and its void may already have gone (a void of an unknown reference is the
    // service's no-op).
    if (job.path !== 'commit' || !(await isSaleVoided(db, reference))) {
      await postToTaxService({
        url: job.url,
        timeoutMs: job.timeoutMs,
        path: job.path,
        body: { ...body, reference },
      })
    }
    if (!legacy) await db.deleteFrom('tax_service_calls').where('id', '=', job.call_id).execute()
  })
}

/** Service calls queued on this runtime's job queue, in the caller's transaction. */
export function taxServiceCalls(runtime: Runtime): TaxServiceCalls {
  return {
    async send(trx, { body, ...call }) {
      const id = newId('txc')
      await trx
        .insertInto('tax_service_calls')
        .values({ id, reference: body.reference, path: call.path, body: JSON.stringify(body) })
        .execute()
      const queued: QueuedCall = { ...call, call_id: id, reference: body.reference }
      await runtime.jobs.enqueue(trx, TAX_SERVICE_CALL_JOB, queued)
    },
  }
}
