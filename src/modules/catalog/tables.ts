/** Row types of the tables the catalog module owns. */
import type { ColumnType, Generated } from 'kysely'

export type ProductStatus = 'draft' | 'published' | 'archived'

export interface ProductsTable {
  id: string
  handle: string
  title: string
  description: Generated<string>
  status: Generated<ProductStatus>
  metadata: ColumnType<Record<string, unknown>, string | undefined, string>
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface CatalogTables {
  products: ProductsTable
}
