/** Row types of the tables the catalog module owns. */
import type { ColumnType, Generated } from 'kysely'

export type ProductStatus = 'draft' | 'published' | 'archived'

type Json<T> = ColumnType<T, string | undefined, string>
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
/** bigint columns arrive as numbers (the int8 parser in database.ts); amounts fit in 2^53. */
type Amount = ColumnType<number, number, number>

export interface ProductOption {
  name: string
  values: string[]
}

export interface MediaItem {
  url: string
  alt: string
}

export interface ProductsTable {
  id: string
  handle: string
  title: string
  subtitle: Generated<string>
  description: Generated<string>
  status: Generated<ProductStatus>
  collection_id: string | null
  tax_category: Generated<string>
  options: Json<ProductOption[]>
  tags: ColumnType<string[], string[] | undefined, string[]>
  attributes: Json<Record<string, string>>
  media: Json<MediaItem[]>
  sales_count: Generated<number>
  metadata: Json<Record<string, unknown>>
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface ProductSearchTable {
  product_id: string
  status: ProductStatus
  currencies: string[]
  search: string
}

export interface ProductVariantsTable {
  id: string
  product_id: string
  sku: string
  title: string
  options: Json<Record<string, string>>
  barcode: string | null
  weight_g: number | null
  length_mm: number | null
  width_mm: number | null
  height_mm: number | null
  position: Generated<number>
  manage_inventory: Generated<boolean>
  requires_shipping: Generated<boolean>
  metadata: Json<Record<string, unknown>>
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface VariantPricesTable {
  variant_id: string
  currency_code: string
  amount: Amount
  compare_at_amount: Amount | null
}

export interface ProductPricesTable {
  product_id: string
  currency_code: string
  min_amount: Amount
  min_compare_at_amount: Amount | null
  max_amount: Amount
}

export interface PriceListProductPricesTable {
  price_list_id: string
  product_id: string
  currency_code: string
  min_amount: Amount
  /** The higher of the base and compare-at prices of the variant min_amount is for. */
  base_amount: Amount | null
}

export interface RegionsTable {
  id: string
  name: string
  currency_code: string
  prices_include_tax: boolean
  metadata: Json<Record<string, unknown>>
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface RegionCountriesTable {
  country_code: string
  region_id: string
}

export interface CategoriesTable {
  id: string
  parent_id: string | null
  handle: string
  name: string
  description: Generated<string>
  position: Generated<number>
  path: string
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface CollectionsTable {
  id: string
  handle: string
  title: string
  description: Generated<string>
  metadata: Json<Record<string, unknown>>
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface ProductCategoriesTable {
  product_id: string
  category_id: string
}

export interface PriceListsTable {
  id: string
  name: string
  description: Generated<string>
  status: Generated<'active' | 'draft'>
  customer_group_id: string | null
  starts_at: Timestamp | null
  ends_at: Timestamp | null
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface PriceListPricesTable {
  price_list_id: string
  variant_id: string
  currency_code: string
  amount: Amount
}

/** One problem of an import's report: the file's row (1-based), the field or column, and why. */
export interface ImportError {
  row: number
  path: string
  message: string
}

export interface CatalogImportsTable {
  id: string
  format: 'csv' | 'json' | 'ndjson'
  mode: 'all_or_nothing' | 'per_row'
  status: Generated<'queued' | 'running' | 'succeeded' | 'failed'>
  total_rows: Generated<number>
  processed_rows: Generated<number>
  created_count: Generated<number>
  updated_count: Generated<number>
  failed_count: Generated<number>
  error_count: Generated<number>
  errors: Json<ImportError[]>
  created_by: string | null
  created_at: Generated<Date>
  started_at: Timestamp | null
  finished_at: Timestamp | null
}

export interface CatalogImportBatchesTable {
  import_id: string
  batch_no: number
  /** gzip of a JSON array of `{ row, source_rows, document, price_currencies? }` (StagedRow, import.ts). */
  documents: Buffer
}

/** Orders already added to products' sales counts, and cancellations already taken back out (see sales.ts). */
export interface ProductSalesCountedTable {
  /** An order id, or `<order id>:canceled` once its cancellation has been seen. */
  order_id: string
  counted_at: Generated<Date>
}

export interface CatalogTables {
  products: ProductsTable
  product_search: ProductSearchTable
  product_variants: ProductVariantsTable
  variant_prices: VariantPricesTable
  product_prices: ProductPricesTable
  regions: RegionsTable
  region_countries: RegionCountriesTable
  categories: CategoriesTable
  collections: CollectionsTable
  product_categories: ProductCategoriesTable
  price_lists: PriceListsTable
  price_list_prices: PriceListPricesTable
  price_list_product_prices: PriceListProductPricesTable
  catalog_imports: CatalogImportsTable
  catalog_import_batches: CatalogImportBatchesTable
  product_sales_counted: ProductSalesCountedTable
}
