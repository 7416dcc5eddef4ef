/**
 * What carts, checkout and orders share on a node: the payment providers, the tax provider cache
 * and the promotions seam, made once per runtime.
 */
import type { Kysely } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import type { Kv } from '../../platform/kv/kv.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { noPromotions, type PromotionEngine } from '../carts/promotions.ts'
import { type PaymentProviders, paymentProvidersOf } from '../payments/registry.ts'
import { taxServiceCalls } from '../tax/jobs.ts'
import { TaxProviderCache } from '../tax/provider-cache.ts'

export interface CommerceDeps {
  db: Kysely<DB>
  outbox: Outbox
  kv: Kv
  providers: PaymentProviders
  taxes: TaxProviderCache
  promotions: PromotionEngine
  runtime: Runtime
}

const made = new WeakMap<Runtime, CommerceDeps>()

/** The node's commerce dependencies (created on first use). */
export function commerceDeps(runtime: Runtime): CommerceDeps {
  let deps = made.get(runtime)
  if (!deps) {
    const db = runtime.database.db
    deps = {
      db,
      outbox: runtime.outbox,
      kv: runtime.kv,
      providers: paymentProvidersOf(runtime),
      taxes: new TaxProviderCache(db, runtime.logger, taxServiceCalls(runtime)),
      promotions: noPromotions,
      runtime,
    }
    made.set(runtime, deps)
  }
  return deps
}
