/**
 * Every background job this node knows, in one place: the platform's and each module's. A worker
 * process and an API node with in-process workers define the same set.
 */
import { purgeExpiredIdempotencyKeys } from './platform/http/idempotency.ts'
import type { Runtime } from './platform/runtime.ts'

let defined = new WeakSet<Runtime>()

/** Defines the job queues and handlers on runtime.jobs (once per runtime). */
export function registerJobs(runtime: Runtime): void {
  if (defined.has(runtime)) return
  defined.add(runtime)
  runtime.outbox.defineDelivery(runtime.database, runtime.nats, runtime.logger)
  runtime.jobs.define(
    'idempotency.purge',
    () => purgeExpiredIdempotencyKeys(runtime.database.db).then(() => {}),
    {
      cron: '17 * * * *',
      retryLimit: 1,
    },
  )
}

/** For tests that build many runtimes. */
export function resetJobRegistry(): void {
  defined = new WeakSet<Runtime>()
}
