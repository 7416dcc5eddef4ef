/**
 * The tax module's background job: commits and voids for an external tax service, enqueued in the
 * transaction that places or cancels the order and sent once it has committed. A service that is
 * down is retried with backoff (the order is placed meanwhile); one that never answers leaves the
 * job in the dead-letter queue, where staff see and replay it.
 */
import type { Runtime } from '../../platform/runtime.ts'
import { postToTaxService, type TaxServiceCall, type TaxServiceCalls } from './providers.ts'
import { isSaleVoided } from './sales.ts'

export const TAX_SERVICE_CALL_JOB = 'tax.service-call'

/** Defines the job that sends queued service calls. */
export function defineTaxJobs(runtime: Runtime): void {
  runtime.jobs.define<TaxServiceCall>(TAX_SERVICE_CALL_JOB, async (call) => {
    // The calls of one reference may run out of order (retries, two workers). A commit that
    // arrives after its order was canceled here is not sent: the service would book a sale that
    // no longer exists, and its void may already have gone (a void of an unknown reference is the
    // service's no-op).
    if (call.path === 'commit' && (await isSaleVoided(runtime.database.db, call.body.reference))) return
    await postToTaxService(call)
  })
}

/** Service calls queued on this runtime's job queue, in the caller's transaction. */
export function taxServiceCalls(runtime: Runtime): TaxServiceCalls {
  return {
    async send(trx, call) {
      await runtime.jobs.enqueue(trx, TAX_SERVICE_CALL_JOB, call)
    },
  }
}
