/**
 * What each module contributes to a node's start-up, in one place: reference data to put in place
 * after migrations, and every background job (the platform's and each module's). A worker process
 * and an API node with in-process workers define the same set.
 */
import { defineImportJob } from './modules/catalog/import.ts'
import { followSales } from './modules/catalog/sales.ts'
import { defineCustomerJobs } from './modules/identity/customers.ts'
import { ensureBuiltInRoles } from './modules/identity/staff.ts'
import { defineInventoryJobs } from './modules/inventory/jobs.ts'
import { defineMailJob, FileMailTransport } from './modules/notifications/mail.ts'
import { defineCheckoutJobs } from './modules/orders/jobs.ts'
import { definePaymentJobs } from './modules/payments/jobs.ts'
import { defineTaxJobs } from './modules/tax/jobs.ts'
import { ensureTaxReferenceData } from './modules/tax/reference-data.ts'
import { purgeExpiredIdempotencyKeys } from './platform/http/idempotency.ts'
import type { Runtime } from './platform/runtime.ts'

const defined = new WeakSet<Runtime>()

/** Defines the job queues and handlers on runtime.jobs (once per runtime). */
export function registerJobs(runtime: Runtime): void {
  if (defined.has(runtime)) return
  defined.add(runtime)
  runtime.outbox.defineDelivery(
    runtime.database,
    runtime.nats,
    runtime.logger,
    runtime.config.eventRetryLimit,
  )
  runtime.jobs.define(
    'idempotency.purge',
    () => purgeExpiredIdempotencyKeys(runtime.database.db).then(() => {}),
    {
      cron: '17 * * * *',
      retryLimit: 1,
    },
  )
  defineMailJob(runtime.jobs, new FileMailTransport(runtime.config.dataDir, runtime.logger))
  defineCustomerJobs(runtime)
  defineImportJob(runtime)
  followSales(runtime)
  defineInventoryJobs(runtime)
  defineCheckoutJobs(runtime)
  definePaymentJobs(runtime)
  defineTaxJobs(runtime)
}

/** Puts module reference data in place after migrations (built-in roles). Safe to run on every start. */
export async function prepareModules(runtime: Runtime): Promise<void> {
  await ensureBuiltInRoles(runtime.database.db)
  await ensureTaxReferenceData(runtime.database.db)
}
