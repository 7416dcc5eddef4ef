/** Variant lookups other modules use (inventory, carts): by id or SKU, without reaching into tables. */
import type { Queryable } from '../../platform/db/transaction.ts'

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
