/**
 * Background jobs of the payments module: the void of an authorisation that no order will capture,
 * when the processor could not take it at once. Left alone it would hold the shopper's money until
 * it lapses (about a week for cards), beside the second authorisation their retry makes.
 */
import { type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { type Jobs, UnretryableJobError } from '../../platform/jobs/jobs.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { type PaymentDeps, paymentDeps } from './common.ts'
import { PaymentGiveBackRefused } from './provider.ts'
import { nameCharge, voidUnplaced } from './service.ts'

export const VOID_PAYMENT_JOB = 'payments.void'
const ACTOR = 'system:payment-voids'
/**
 * Backoff reaches an hour after about ten runs; 180 runs then cover about a week, by when the
 * processor has let the authorisation lapse anyway. A job that runs out is dead-lettered, for staff,
 * and so at once is one the processor refuses for good (PaymentGiveBackRefused).
 */
const VOID_RETRIES = 180

/** Defines the void job; its runs retry with the queue's exponential backoff. */
export function definePaymentJobs(runtime: Runtime): void {
  const deps = paymentDeps(runtime)
  runtime.jobs.define<{ payment_id: string }>(
    VOID_PAYMENT_JOB,
    ({ payment_id }) =>
      voidUnplaced(deps, payment_id, ACTOR).catch((error: unknown) => {
        if (error instanceof PaymentGiveBackRefused)
          throw new UnretryableJobError(error.message, { cause: error })
        throw error
      }),
    { retryLimit: VOID_RETRIES },
  )
}

/**
 * Queues the void of a payment that will get no order, whose void at the processor failed. The
 * charge the processor's answer named (`providerRef`, for a caller holding an answer its row does
 * not record) is recorded on a row canceled before the processor named it, so that the job (and
 * the processor's webhooks) find it there.
 */
export async function voidLater(
  deps: PaymentDeps,
  jobs: Jobs,
  paymentId: string,
  providerRef?: string,
): Promise<void> {
  await withTransaction(deps.db, (trx) => queueVoid(trx, jobs, paymentId, providerRef))
}

/**
 * voidLater inside the caller's transaction: the job exists if and only if what makes the payment
 * orderless commits, so a node that dies right after still gives the money back. `startAfter`
 * (seconds) makes it a backstop for a void the caller is about to make itself.
 */
export async function queueVoid(
  trx: Tx,
  jobs: Jobs,
  paymentId: string,
  providerRef?: string | null,
  startAfter?: number,
): Promise<void> {
  if (providerRef) await nameCharge(trx, paymentId, providerRef)
  await jobs.enqueue(trx, VOID_PAYMENT_JOB, { payment_id: paymentId }, startAfter ? { startAfter } : {})
}
