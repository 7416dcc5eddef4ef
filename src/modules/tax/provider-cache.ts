/**
 * The tax provider for hot paths (every cart change): the rates, categories and store settings
 * change rarely but take five queries to load, so each node keeps them for a few seconds. An
 * admin's rate change reaches carts within that time; orders keep the tax they were placed with.
 */
import type { Logger } from 'pino'
import type { Queryable } from '../../platform/db/transaction.ts'
import type { TaxProvider, TaxServiceCalls } from './providers.ts'
import { taxProviderFor } from './service.ts'

const TTL_MS = 5_000

interface Entry {
  at: number
  provider: Promise<TaxProvider>
}

/** A per-node cache of tax providers by date of supply. */
export class TaxProviderCache {
  readonly #entries = new Map<string, Entry>()
  readonly #db: Queryable
  readonly #logger: Logger | undefined
  readonly #calls: TaxServiceCalls | undefined

  /** `calls`: how an external service's commits and voids are sent (see ExternalProviderOptions). */
  constructor(db: Queryable, logger?: Logger, calls?: TaxServiceCalls) {
    this.#db = db
    this.#logger = logger
    this.#calls = calls
  }

  /** The store's provider for this date of supply, loaded at most every few seconds. */
  get(dateOfSupply: string): Promise<TaxProvider> {
    const now = Date.now()
    const hit = this.#entries.get(dateOfSupply)
    if (hit && now - hit.at < TTL_MS) return hit.provider
    const provider = taxProviderFor(this.#db, dateOfSupply, this.#logger, this.#calls)
    // A failed load (no origin country yet, database away) is not kept.
    provider.catch(() => this.#entries.delete(dateOfSupply))
    if (this.#entries.size > 8) this.#entries.clear()
    this.#entries.set(dateOfSupply, { at: now, provider })
    return provider
  }
}
