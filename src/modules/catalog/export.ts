/**
 * Bulk product export in the layouts the importer reads (CSV, JSON array, NDJSON), so that an
 * export imported again changes nothing. Products are paged by id and written as they are loaded:
 * a 100,000-product catalog streams through a few hundred products of memory.
 *
 * Pages are read one after another outside a transaction, so a catalog edited during a long
 * export may show each product as of a slightly different moment; each product is whole.
 */
import { Readable } from 'node:stream'
import { sql } from 'kysely'
import type { Queryable } from '../../platform/db/transaction.ts'
import type { ProductDocument } from './bulk.ts'
import { csvHeader, csvHeaderLine, productCsvWriter } from './product-csv.ts'
import { loadProducts, type ProductView } from './products.ts'
import type { ProductStatus } from './tables.ts'

export type ExportFormat = 'csv' | 'json' | 'ndjson'

export interface ExportOptions {
  format: ExportFormat
  status?: ProductStatus
  /** Products loaded per page. */
  pageSize?: number
}

/** A product as an import document: what the importer needs to recreate it, no ids or timestamps. */
export function documentOf(product: ProductView): ProductDocument {
  return {
    handle: product.handle,
    title: product.title,
    subtitle: product.subtitle,
    description: product.description,
    status: product.status,
    collection_id: product.collection_id,
    category_ids: product.category_ids,
    tax_category: product.tax_category,
    options: product.options,
    tags: product.tags,
    attributes: product.attributes,
    media: product.media,
    metadata: product.metadata,
    variants: product.variants.map((v) => ({
      sku: v.sku,
      title: v.title,
      options: v.options,
      barcode: v.barcode,
      weight_g: v.weight_g,
      length_mm: v.length_mm,
      width_mm: v.width_mm,
      height_mm: v.height_mm,
      manage_inventory: v.manage_inventory,
      requires_shipping: v.requires_shipping,
      prices: v.prices.map((p) => ({
        currency: p.currency,
        amount: p.amount,
        compare_at_amount: p.compare_at_amount,
      })),
      metadata: v.metadata,
    })),
  }
}

async function* productPages(db: Queryable, options: ExportOptions): AsyncGenerator<ProductView[]> {
  const pageSize = options.pageSize ?? 500
  let after = ''
  for (;;) {
    let query = db.selectFrom('products').select('id').where('id', '>', after).orderBy('id').limit(pageSize)
    if (options.status) query = query.where('status', '=', options.status)
    const ids = (await query.execute()).map((r) => r.id)
    const last = ids[ids.length - 1]
    if (!last) return
    yield await loadProducts(db, ids)
    if (ids.length < pageSize) return
    after = last
  }
}

/** The CSV columns an export needs: a price pair per stored currency, enough option columns. */
async function exportHeader(db: Queryable, status: ProductStatus | undefined): Promise<string[]> {
  const filter = status ? sql`where p.status = ${status}` : sql``
  const [currencies, options] = await Promise.all([
    sql<{ currency_code: string }>`
      select distinct vp.currency_code from variant_prices vp
      join product_variants v on v.id = vp.variant_id join products p on p.id = v.product_id
      ${filter} order by 1`.execute(db),
    sql<{
      n: number
    }>`select coalesce(max(jsonb_array_length(p.options)), 0)::int as n from products p ${filter}`.execute(
      db,
    ),
  ])
  return csvHeader(
    currencies.rows.map((r) => r.currency_code),
    options.rows[0]?.n ?? 0,
  )
}

/** The export file, chunk by chunk. */
export async function* exportProducts(db: Queryable, options: ExportOptions): AsyncGenerator<string> {
  if (options.format === 'csv') {
    const header = await exportHeader(db, options.status)
    const write = productCsvWriter(header)
    yield csvHeaderLine(header)
    for await (const page of productPages(db, options)) yield page.map((p) => write(documentOf(p))).join('')
    return
  }
  if (options.format === 'ndjson') {
    for await (const page of productPages(db, options))
      yield page.map((p) => `${JSON.stringify(documentOf(p))}\n`).join('')
    return
  }
  let first = true
  yield '['
  for await (const page of productPages(db, options)) {
    if (page.length === 0) continue
    yield `${first ? '\n' : ',\n'}${page.map((p) => JSON.stringify(documentOf(p))).join(',\n')}`
    first = false
  }
  yield first ? ']\n' : '\n]\n'
}

/** The export as a readable stream, for `reply.send`. */
export function exportStream(db: Queryable, options: ExportOptions): Readable {
  return Readable.from(exportProducts(db, options), { objectMode: false })
}
