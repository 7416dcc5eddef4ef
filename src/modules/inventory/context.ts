/**
 * What inventory writes need besides the transaction: who acts, the outbox for alerts, and the set
 * of levels touched, published to live dashboards once the caller's transaction has committed.
 */
import type { Outbox } from '../../platform/events/outbox.ts'
import type { Kv } from '../../platform/kv/kv.ts'
import { bumpCatalogVersion } from '../catalog/cache.ts'
import { publishLevelChanges } from './stream.ts'

export interface InventoryContext {
  readonly outbox: Outbox
  /** `<principal kind>:<id>` of whoever asked, or `system:<job>`. */
  readonly actor: string
  /** `variant_id|location_id` keys changed, including by attempts that rolled back (harmless). */
  readonly touched: Set<string>
  /** Set when a level came back in stock: storefront caches must drop their "sold out". */
  availabilityChanged: boolean
  /** Announces the touched levels to every node's stream; call after commit. Never throws. */
  publish(): Promise<void>
}

/** A context for one unit of work; call `publish()` after the transaction commits. */
export function inventoryContext(deps: { outbox: Outbox; kv: Kv }, actor: string): InventoryContext {
  const touched = new Set<string>()
  const ctx: InventoryContext = {
    outbox: deps.outbox,
    actor,
    touched,
    availabilityChanged: false,
    async publish() {
      await publishLevelChanges(deps.kv, touched)
      if (!ctx.availabilityChanged) return
      // Cached product pages show per-variant availability; a product back in stock must show so.
      await bumpCatalogVersion(deps.kv).catch(() => {})
    },
  }
  return ctx
}
