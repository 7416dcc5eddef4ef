/**
 * Per-variant selling policy. Whether a variant is tracked at all is the catalog's
 * `manage_inventory` flag (one source of truth); this adds what happens when stock runs out:
 * backorder or preorder, up to a limit of units promised beyond sellable stock.
 */
import { sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { holdVariants } from '../catalog/variants.ts'

export interface PolicyView {
  variant_id: string
  allow_backorder: boolean
  preorder: boolean
  /** Units that may be promised beyond sellable stock across all locations; null is no limit. */
  backorder_limit: number | null
  preorder_available_at: string | null
}

export interface PolicyInput {
  allow_backorder?: boolean | undefined
  preorder?: boolean | undefined
  backorder_limit?: number | null | undefined
  preorder_available_at?: string | null | undefined
}

/** The policy of a variant with none stored: sell only what is in stock. */
export const DEFAULT_POLICY = {
  allow_backorder: false,
  preorder: false,
  backorder_limit: null,
  preorder_available_at: null,
} as const

/** How many units beyond sellable stock a policy lets a variant promise in all (0: none). */
export function oversellLimit(policy: Omit<PolicyView, 'variant_id'>): number {
  if (!policy.allow_backorder && !policy.preorder) return 0
  return policy.backorder_limit ?? Number.POSITIVE_INFINITY
}

/** The policies of these variants, the default for those without one. */
export async function policiesOf(db: Queryable, variantIds: string[]): Promise<Map<string, PolicyView>> {
  const rows = variantIds.length
    ? await db.selectFrom('inventory_policies').selectAll().where('variant_id', 'in', variantIds).execute()
    : []
  const stored = new Map(rows.map((r) => [r.variant_id, r]))
  return new Map(
    variantIds.map((id) => {
      const row = stored.get(id)
      return [
        id,
        row
          ? {
              variant_id: id,
              allow_backorder: row.allow_backorder,
              preorder: row.preorder,
              backorder_limit: row.backorder_limit,
              preorder_available_at: row.preorder_available_at
                ? new Date(row.preorder_available_at).toISOString()
                : null,
            }
          : { variant_id: id, ...DEFAULT_POLICY },
      ]
    }),
  )
}

/**
 * Creates or changes a variant's policy; fields left out keep their value. Undefined when the
 * variant does not exist: the route resolved it before this transaction, and a delete may have
 * committed since (the held variant cannot go before this commits).
 */
export async function setPolicy(
  trx: Tx,
  variantId: string,
  input: PolicyInput,
): Promise<PolicyView | undefined> {
  if (!(await holdVariants(trx, [variantId])).has(variantId)) return undefined
  const values = {
    ...(input.allow_backorder !== undefined ? { allow_backorder: input.allow_backorder } : {}),
    ...(input.preorder !== undefined ? { preorder: input.preorder } : {}),
    ...(input.backorder_limit !== undefined ? { backorder_limit: input.backorder_limit } : {}),
    ...(input.preorder_available_at !== undefined
      ? { preorder_available_at: input.preorder_available_at }
      : {}),
  }
  await trx
    .insertInto('inventory_policies')
    .values({ variant_id: variantId, ...values })
    .onConflict((oc) => oc.column('variant_id').doUpdateSet({ ...values, updated_at: sql<Date>`now()` }))
    .execute()
  return (await policiesOf(trx, [variantId])).get(variantId)!
}
