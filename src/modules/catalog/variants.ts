/** Variant lookups other modules use (inventory, carts): by id or SKU, without reaching into tables. */
import type { Queryable, Tx } from '../../platform/db/transaction.ts'

export interface VariantRef {
  id: string
  sku: string
  product_id: string
  title: string
  manage_inventory: boolean
}

/** The variants with these SKUs; unknown SKUs are simply absent from the result. */
export async function findVariantsBySku(db: Queryable, skus: readonly string[]): Promise<VariantRef[]> {
  if (skus.length === 0) return []
  return db
    .selectFrom('product_variants')
    .select(['id', 'sku', 'product_id', 'title', 'manage_inventory'])
    .where('sku', 'in', skus)
    .execute()
}

/** The variants with these ids; unknown ids are simply absent from the result. */
export async function findVariantsById(db: Queryable, ids: readonly string[]): Promise<VariantRef[]> {
  if (ids.length === 0) return []
  return db
    .selectFrom('product_variants')
    .select(['id', 'sku', 'product_id', 'title', 'manage_inventory'])
    .where('id', 'in', ids)
    .execute()
}

/**
 * Key-share locks the variants with these ids until the caller's transaction ends and returns the
 * ids that exist. A module that writes a row referring to a variant it looked up earlier takes
 * this first: a variant deleted since is absent (the caller answers as for an unknown one, not
 * with the foreign key's error), and a delete that comes after waits for the write to commit.
 * Key-share locks block neither each other nor most updates of the variant: only its deletion and
 * a change of its SKU (a unique key) wait for them.
 */
export async function holdVariants(trx: Tx, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set()
  const rows = await trx
    .selectFrom('product_variants')
    .select('id')
    .where('id', 'in', ids)
    .orderBy('id')
    .forKeyShare()
    .execute()
  return new Set(rows.map((r) => r.id))
}
