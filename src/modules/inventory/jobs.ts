/** The inventory module's background job: releasing reservations whose checkout lapsed. */
import type { Runtime } from '../../platform/runtime.ts'
import { inventoryContext } from './context.ts'
import { expireReservations } from './reservations.ts'

export const EXPIRE_RESERVATIONS_JOB = 'inventory.expire-reservations'

/** Expires due reservations once; what the job runs, exported for tests and the CLI. */
export async function runReservationExpiry(runtime: Runtime): Promise<number> {
  const ctx = inventoryContext(runtime, 'system:reservation-expiry')
  const expired = await expireReservations(runtime.database.db, ctx)
  await ctx.publish()
  if (expired) runtime.logger.info({ expired }, 'expired reservations released')
  return expired
}

/** Defines the expiry job, scheduled every minute (pg-boss cron's finest grain). */
export function defineInventoryJobs(runtime: Runtime): void {
  runtime.jobs.define(EXPIRE_RESERVATIONS_JOB, () => runReservationExpiry(runtime).then(() => {}), {
    cron: '* * * * *',
    retryLimit: 1,
    concurrency: 1,
  })
}
