/**
 * Set-based product writes for imports and large seeds: a batch of whole product documents is
 * upserted by handle (variants by SKU) in a handful of statements, whatever its size, so 100,000
 * products import in the time the database needs to write them rather than in 1.5 million round
 * trips. The rules are those of products.ts: documents are checked with validateProductInput first.
 */
import { sql } from 'kysely'
import type { Static } from 'typebox'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import type { FieldError } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import {
  defaultVariantTitle,
  parkedOptions,
  refreshReadModels,
  unparkVariantOptions,
  validateProductInput,
  variantOptionFaults,
  variantOptionMessage,
} from './products.ts'
import type { CreateProduct } from './schemas.ts'
import type { ProductOption } from './tables.ts'

export type ProductDocument = Static<typeof CreateProduct>

/** A problem with one document of a batch: its index in the batch and the field. */
export interface DocumentError extends FieldError {
  index: number
}

export interface BulkResult {
  created: number
  updated: number
  productIds: string[]
}

/**
 * Everything that would make a batch fail, found before writing: document rules, handles or SKUs
 * repeated within the batch, SKUs owned by a product outside it, unknown categories or collections,
 * and stored variants an upsert would keep that no longer fit, so that a dry run reports what the
 * write would refuse.
 */
export async function checkDocuments(
  db: Queryable,
  docs: readonly ProductDocument[],
  pathOf: (index: number) => string = (i) => `[${i}]`,
): Promise<DocumentError[]> {
  const errors: DocumentError[] = []
  const handles = new Map<string, number>()
  // Where each SKU was last seen: the document and the variant within it, so errors name the cell.
  const skus = new Map<string, { index: number; variant: number }>()
  docs.forEach((doc, index) => {
    for (const e of validateProductInput(doc, pathOf(index))) errors.push({ ...e, index })
    const other = handles.get(doc.handle)
    if (other !== undefined)
      errors.push({
        index,
        path: `${pathOf(index)}.handle`,
        message: `repeats the handle of ${pathOf(other)}`,
      })
    handles.set(doc.handle, index)
    doc.variants?.forEach((v, variant) => {
      const owner = skus.get(v.sku)
      if (owner !== undefined && owner.index !== index)
        errors.push({
          index,
          path: `${pathOf(index)}.variants[${variant}].sku`,
          message: `SKU ${v.sku} repeats one of ${pathOf(owner.index)}`,
        })
      skus.set(v.sku, { index, variant })
    })
  })
  if (skus.size > 0) {
    const { rows } = await sql<{ sku: string; handle: string }>`
      select v.sku, p.handle from product_variants v join products p on p.id = v.product_id
      where v.sku = any(${[...skus.keys()]})`.execute(db)
    for (const row of rows) {
      const owner = skus.get(row.sku)
      if (owner !== undefined && docs[owner.index]?.handle !== row.handle)
        errors.push({
          index: owner.index,
          path: `${pathOf(owner.index)}.variants[${owner.variant}].sku`,
          message: `SKU ${row.sku} belongs to product ${row.handle}`,
        })
    }
  }
  const categoryIds = new Set(docs.flatMap((d) => d.category_ids ?? []))
  const collectionIds = new Set(docs.flatMap((d) => (d.collection_id ? [d.collection_id] : [])))
  const [categories, collections, kept] = await Promise.all([
    categoryIds.size
      ? db
          .selectFrom('categories')
          .select('id')
          .where('id', 'in', [...categoryIds])
          .execute()
      : [],
    collectionIds.size
      ? db
          .selectFrom('collections')
          .select('id')
          .where('id', 'in', [...collectionIds])
          .execute()
      : [],
    keptVariantsOf(db, docs),
  ])
  const knownCategories = new Set(categories.map((c) => c.id))
  const knownCollections = new Set(collections.map((c) => c.id))
  docs.forEach((doc, index) => {
    for (const id of doc.category_ids ?? [])
      if (!knownCategories.has(id))
        errors.push({ index, path: `${pathOf(index)}.category_ids`, message: `no category ${id}` })
    if (doc.collection_id && !knownCollections.has(doc.collection_id))
      errors.push({
        index,
        path: `${pathOf(index)}.collection_id`,
        message: `no collection ${doc.collection_id}`,
      })
    errors.push(...keptVariantErrors(doc, index, kept.get(index) ?? [], pathOf))
  })
  return errors
}

/**
 * Upserts checked documents in the caller's transaction: a product found by handle has its fields
 * replaced (status and categories kept when the document leaves them out); variants are upserted
 * by SKU (placed by placeNamedVariants and placeNewVariants) and variants the document does not
 * name are kept. Emits no events: the caller emits one
 * for the whole import. A kept variant that does not fit a new option set throws
 * BulkDocumentError after the writes, so the caller must roll back (its transaction or a
 * savepoint) for the batch to be all or nothing.
 */
export async function bulkUpsertProducts(trx: Tx, docs: readonly ProductDocument[]): Promise<BulkResult> {
  if (docs.length === 0) return { created: 0, updated: 0, productIds: [] }
  const rows = docs.map((d) => ({
    id: newId('prod'),
    handle: d.handle,
    title: d.title,
    subtitle: d.subtitle ?? '',
    description: d.description ?? '',
    status: d.status ?? null,
    collection_id: d.collection_id ?? null,
    tax_category: d.tax_category ?? 'standard',
    options: d.options ?? [],
    tags: d.tags ?? [],
    attributes: d.attributes ?? {},
    media: d.media ?? [],
    metadata: d.metadata ?? {},
  }))
  const recordset = sql`jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(
    id text, handle text, title text, subtitle text, description text, status text, collection_id text,
    tax_category text, options jsonb, tags jsonb, attributes jsonb, media jsonb, metadata jsonb)`
  const updated = await sql<{ id: string; handle: string }>`
    update products p set title = x.title, subtitle = x.subtitle, description = x.description,
      status = coalesce(x.status, p.status), collection_id = x.collection_id, tax_category = x.tax_category,
      options = x.options, tags = array(select jsonb_array_elements_text(x.tags)), attributes = x.attributes,
      media = x.media, metadata = x.metadata, updated_at = now()
    from ${recordset}
    where p.handle = x.handle
    returning p.id, p.handle`.execute(trx)
  const existing = new Map(updated.rows.map((r) => [r.handle, r.id]))
  const fresh = rows.filter((r) => !existing.has(r.handle))
  if (fresh.length > 0) {
    await sql`
      insert into products (id, handle, title, subtitle, description, status, collection_id, tax_category,
        options, tags, attributes, media, metadata)
      select x.id, x.handle, x.title, x.subtitle, x.description, coalesce(x.status, 'draft'), x.collection_id,
        x.tax_category, x.options, array(select jsonb_array_elements_text(x.tags)), x.attributes, x.media,
        x.metadata
      from jsonb_to_recordset(${JSON.stringify(fresh)}::jsonb) as x(
        id text, handle text, title text, subtitle text, description text, status text, collection_id text,
        tax_category text, options jsonb, tags jsonb, attributes jsonb, media jsonb, metadata jsonb)`.execute(
      trx,
    )
  }
  const productIdOf = (handle: string, fallback: string) => existing.get(handle) ?? fallback
  const productIds = rows.map((r) => productIdOf(r.handle, r.id))

  const withCategories = docs.flatMap((d, i) =>
    d.category_ids ? [{ doc: d, id: productIds[i] as string }] : [],
  )
  if (withCategories.length > 0) {
    await sql`delete from product_categories where product_id = any(${withCategories.map((c) => c.id)})`.execute(
      trx,
    )
    const pairs = withCategories.flatMap(({ doc, id }) =>
      (doc.category_ids ?? []).map((category_id) => ({ product_id: id, category_id })),
    )
    if (pairs.length > 0)
      await sql`
        insert into product_categories (product_id, category_id)
        select x.product_id, x.category_id
        from jsonb_to_recordset(${JSON.stringify(pairs)}::jsonb) as x(product_id text, category_id text)`.execute(
        trx,
      )
  }

  const variants = docs.flatMap((d, i) =>
    (d.variants ?? []).map((v, position) => ({
      id: newId('var'),
      product_id: productIds[i] as string,
      sku: v.sku,
      title: v.title ?? defaultVariantTitle(d.options ?? [], v),
      options: v.options ?? {},
      barcode: v.barcode ?? null,
      weight_g: v.weight_g ?? null,
      length_mm: v.length_mm ?? null,
      width_mm: v.width_mm ?? null,
      height_mm: v.height_mm ?? null,
      position,
      manage_inventory: v.manage_inventory ?? true,
      requires_shipping: v.requires_shipping ?? true,
      metadata: v.metadata ?? {},
      prices: v.prices,
    })),
  )
  const variantIdBySku = new Map<string, string>()
  if (existing.size > 0 && variants.length > 0) {
    // Only variants of products that already existed can be updates.
    const existingIds = new Set(existing.values())
    const candidates = variants.filter((v) => existingIds.has(v.product_id))
    if (candidates.length > 0) {
      // Variants whose options change are parked (see parkedOptions) and given their options after,
      // so that stored variants may trade options; a re-import that changes none pays nothing more.
      // After the update, only a parked variant's options differ from the document's.
      // Positions are placed after (placeNamedVariants), from the stored ones this returns.
      const changed = await sql<{ id: string; sku: string; position: number; parked: boolean }>`
        update product_variants v set title = x.title,
          options = case when v.options = x.options then v.options else ${parkedOptions(sql.ref<string>('v.id'))} end,
          barcode = x.barcode, weight_g = x.weight_g, length_mm = x.length_mm, width_mm = x.width_mm,
          height_mm = x.height_mm, manage_inventory = x.manage_inventory,
          requires_shipping = x.requires_shipping, metadata = x.metadata, updated_at = now()
        from jsonb_to_recordset(${JSON.stringify(candidates)}::jsonb) as x(
          sku text, product_id text, title text, options jsonb, barcode text, weight_g int, length_mm int,
          width_mm int, height_mm int, manage_inventory boolean, requires_shipping boolean, metadata jsonb)
        where v.sku = x.sku and v.product_id = x.product_id
        returning v.id, v.sku, v.position, v.options <> x.options as parked`.execute(trx)
      for (const row of changed.rows) variantIdBySku.set(row.sku, row.id)
      await placeNamedVariants(trx, candidates, changed.rows)
      const parked = new Set(changed.rows.flatMap((r) => (r.parked ? [r.sku] : [])))
      await unparkVariantOptions(
        trx,
        candidates.flatMap((v) =>
          parked.has(v.sku) ? [{ id: variantIdBySku.get(v.sku) as string, options: v.options }] : [],
        ),
      )
    }
  }
  // Variants found above are updates: only they can have prices to replace.
  const updatedVariantIds = [...variantIdBySku.values()]
  const newVariants = variants.filter((v) => !variantIdBySku.has(v.sku))
  for (const v of newVariants) variantIdBySku.set(v.sku, v.id)
  await placeNewVariants(trx, newVariants, new Set(existing.values()))
  if (newVariants.length > 0) {
    // Parallel arrays through unnest: Postgres reads an array literal faster than it builds a
    // record from each object of a JSON document, and a batch carries tens of thousands of rows.
    const column = <T>(pick: (v: (typeof newVariants)[number]) => T) => newVariants.map(pick)
    await sql`
      insert into product_variants (id, product_id, sku, title, options, barcode, weight_g, length_mm, width_mm,
        height_mm, position, manage_inventory, requires_shipping, metadata)
      select x.id, x.product_id, x.sku, x.title, x.options::jsonb, x.barcode, x.weight_g, x.length_mm, x.width_mm,
        x.height_mm, x.position, x.manage_inventory, x.requires_shipping, x.metadata::jsonb
      from unnest(${column((v) => v.id)}::text[], ${column((v) => v.product_id)}::text[],
        ${column((v) => v.sku)}::text[], ${column((v) => v.title)}::text[],
        ${column((v) => JSON.stringify(v.options))}::text[], ${column((v) => v.barcode)}::text[],
        ${column((v) => v.weight_g)}::int[], ${column((v) => v.length_mm)}::int[],
        ${column((v) => v.width_mm)}::int[], ${column((v) => v.height_mm)}::int[],
        ${column((v) => v.position)}::int[], ${column((v) => v.manage_inventory)}::boolean[],
        ${column((v) => v.requires_shipping)}::boolean[], ${column((v) => JSON.stringify(v.metadata))}::text[]) as x(
        id, product_id, sku, title, options, barcode, weight_g, length_mm, width_mm, height_mm, position,
        manage_inventory, requires_shipping, metadata)`.execute(trx)
  }

  const priced = variants.filter((v) => v.prices !== undefined)
  if (priced.length > 0) {
    const replaced = new Set(updatedVariantIds)
    const stale = priced.flatMap((v) => {
      const id = variantIdBySku.get(v.sku) as string
      return replaced.has(id) ? [id] : []
    })
    if (stale.length > 0) await sql`delete from variant_prices where variant_id = any(${stale})`.execute(trx)
    const variantIds: string[] = []
    const currencies: string[] = []
    const amounts: number[] = []
    const compareAt: Array<number | null> = []
    for (const v of priced) {
      const id = variantIdBySku.get(v.sku) as string
      for (const p of v.prices ?? []) {
        variantIds.push(id)
        currencies.push(p.currency)
        amounts.push(p.amount)
        compareAt.push(p.compare_at_amount ?? null)
      }
    }
    if (variantIds.length > 0)
      await sql`
        insert into variant_prices (variant_id, currency_code, amount, compare_at_amount)
        select * from unnest(${variantIds}::text[], ${currencies}::text[], ${amounts}::bigint[],
          ${compareAt}::bigint[])`.execute(trx)
  }

  await analyzeIfStale(trx)
  if (existing.size > 0) await assertKeptVariantsMatch(trx, docs, existing)
  await refreshReadModels(trx, [...existing.values()])
  await writeFreshReadModels(
    trx,
    docs.flatMap((doc, i) => (existing.has(doc.handle) ? [] : [{ doc, id: productIds[i] as string }])),
  )
  return { created: fresh.length, updated: existing.size, productIds }
}

/**
 * Gives the stored variants a batch names the places they held, handed out in the documents'
 * order: a file naming every variant sets their order, and one naming a few (to change a price)
 * moves none of them past the variants it leaves out, whose places stay theirs. Places are made
 * distinct on the way, mending duplicates a file naming some variants could once leave behind.
 * Only variants whose place changes are written; a re-imported export writes none.
 */
async function placeNamedVariants(
  trx: Tx,
  named: ReadonlyArray<{ sku: string; product_id: string }>,
  stored: ReadonlyArray<{ id: string; sku: string; position: number }>,
): Promise<void> {
  const storedOf = new Map(stored.map((v) => [v.sku, v]))
  const moves: Array<{ id: string; position: number }> = []
  for (const variants of Map.groupBy(named, (v) => v.product_id).values()) {
    const found = variants.flatMap((v) => storedOf.get(v.sku) ?? [])
    const places = found.map((v) => v.position).sort((a, b) => a - b)
    for (let k = 1; k < places.length; k++)
      places[k] = Math.max(places[k] as number, (places[k - 1] as number) + 1)
    // `variants` is in the documents' order, and `found` with it.
    found.forEach((v, k) => {
      if (places[k] !== v.position) moves.push({ id: v.id, position: places[k] as number })
    })
  }
  if (moves.length === 0) return
  await sql`
    update product_variants v set position = x.position
    from unnest(${moves.map((m) => m.id)}::text[], ${moves.map((m) => m.position)}::int[]) as x(id, position)
    where v.id = x.id`.execute(trx)
}

/**
 * Numbers new variants in the documents' order after every stored variant of their product, as
 * adding one through the API does: a variant's place in the file is no place among stored ones.
 */
async function placeNewVariants(
  trx: Tx,
  fresh: Array<{ product_id: string; position: number }>,
  storedProducts: ReadonlySet<string>,
): Promise<void> {
  const added = fresh.filter((v) => storedProducts.has(v.product_id))
  if (added.length === 0) return
  const { rows } = await sql<{ product_id: string; next: number }>`
    select product_id, max(position) + 1 as next from product_variants
    where product_id = any(${[...new Set(added.map((v) => v.product_id))]}) group by product_id`.execute(trx)
  const next = new Map(rows.map((r) => [r.product_id, r.next]))
  for (const v of added) {
    const position = next.get(v.product_id) ?? 0
    v.position = position
    next.set(v.product_id, position + 1)
  }
}

/**
 * The read models of products created by this batch, from the documents in hand: the same rows
 * refreshSearch and refreshPriceReadModel (products.ts, pricing.ts) would derive, without their
 * per-product subqueries over variants and prices, which cost a third of an import's time. A new
 * product has no stored variants to account for and no price-list prices. Tests compare both.
 */
async function writeFreshReadModels(
  trx: Tx,
  created: ReadonlyArray<{ doc: ProductDocument; id: string }>,
): Promise<void> {
  if (created.length === 0) return
  const search = {
    ids: [] as string[],
    statuses: [] as string[],
    currencies: [] as string[],
    titles: [] as string[],
    middles: [] as string[],
    descriptions: [] as string[],
  }
  const prices = {
    ids: [] as string[],
    currencies: [] as string[],
    min: [] as number[],
    minCompareAt: [] as Array<number | null>,
    max: [] as number[],
  }
  for (const { doc, id } of created) {
    const variants = doc.variants ?? []
    // Per currency: the lowest price (with, among equals, the highest compare-at) and the highest.
    const best = new Map<string, { min: number; compareAt: number | null; max: number }>()
    for (const variant of variants)
      for (const price of variant.prices ?? []) {
        const compareAt = price.compare_at_amount ?? null
        const seen = best.get(price.currency)
        if (!seen) best.set(price.currency, { min: price.amount, compareAt, max: price.amount })
        else {
          if (
            price.amount < seen.min ||
            (price.amount === seen.min && compareAt !== null && (seen.compareAt ?? -1) < compareAt)
          ) {
            seen.min = price.amount
            seen.compareAt = compareAt
          }
          seen.max = Math.max(seen.max, price.amount)
        }
      }
    const codes = [...best.keys()].sort()
    for (const code of codes) {
      const b = best.get(code) as { min: number; compareAt: number | null; max: number }
      prices.ids.push(id)
      prices.currencies.push(code)
      prices.min.push(b.min)
      prices.minCompareAt.push(b.compareAt)
      prices.max.push(b.max)
    }
    search.ids.push(id)
    search.statuses.push(doc.status ?? 'draft')
    search.currencies.push(`{${codes.join(',')}}`)
    search.titles.push(doc.title)
    search.middles.push(`${doc.subtitle ?? ''} ${(doc.tags ?? []).join(' ')}`)
    search.descriptions.push(doc.description ?? '')
  }
  await sql`
    insert into product_search (product_id, status, currencies, search)
    select x.id, x.status, x.currencies::text[],
      setweight(to_tsvector('english', x.title), 'A') || setweight(to_tsvector('english', x.middle), 'B') ||
      setweight(to_tsvector('english', left(x.description, 1000)), 'C')
    from unnest(${search.ids}::text[], ${search.statuses}::text[], ${search.currencies}::text[],
      ${search.titles}::text[], ${search.middles}::text[], ${search.descriptions}::text[])
      as x(id, status, currencies, title, middle, description)`.execute(trx)
  if (prices.ids.length > 0)
    await sql`
      insert into product_prices (product_id, currency_code, min_amount, min_compare_at_amount, max_amount)
      select * from unnest(${prices.ids}::text[], ${prices.currencies}::text[], ${prices.min}::bigint[],
        ${prices.minCompareAt}::bigint[], ${prices.max}::bigint[])`.execute(trx)
}

/**
 * Refreshes the planner's statistics of the product tables once they hold more than four times
 * what the statistics describe. A bulk load outruns autovacuum (and an all-or-nothing import shows it
 * nothing until it commits), so without this the planner keeps believing the tables empty and
 * plans the read-model refresh's per-product subqueries as sequential scans: every batch then
 * reads every variant written before it, and a 100,000-product import turns quadratic. ANALYZE
 * samples a fixed number of rows, so the handful a load needs (one per fourfold growth) cost a
 * second or two.
 */
async function analyzeIfStale(trx: Tx): Promise<void> {
  const { rows } = await sql<{ stale: boolean }>`
    select coalesce(bool_or(pg_relation_size(c.oid) / current_setting('block_size')::int > 4 * c.relpages + 16), false)
      as stale
    from pg_class c
    where c.oid in ('products'::regclass, 'product_variants'::regclass, 'variant_prices'::regclass)`.execute(
    trx,
  )
  if (rows[0]?.stale) await sql`analyze products, product_variants, variant_prices`.execute(trx)
}

/**
 * Variants a document does not name are kept, so they must still fit its (possibly new) option set
 * and differ from its variants. The file has no row for a kept variant, so each misfit is reported
 * on the option set (on the option at fault when there is one), naming the kept SKU: otherwise two
 * kept variants would give the same cell the same error twice.
 */
function keptVariantErrors(
  doc: ProductDocument,
  index: number,
  kept: ReadonlyArray<{ sku: string; options: Record<string, string> }>,
  pathOf: (index: number) => string,
): DocumentError[] {
  if (kept.length === 0) return []
  const named = doc.variants ?? []
  const options: ProductOption[] = doc.options ?? []
  const errors: DocumentError[] = []
  // Named variants first, so that a kept one repeating a named one's options is the one reported;
  // the named ones' own faults are validateProductInput's to report.
  for (const fault of variantOptionFaults(options, [...named, ...kept])) {
    if (fault.kind === 'repeated_option_name' || fault.variant < named.length) continue
    const option = fault.kind === 'same_options' ? undefined : fault.option
    const k = options.findIndex((o) => o.name === option)
    // A message about a value reads after its option's name ("Size must be one of S").
    const subject = fault.kind === 'not_allowed' || fault.kind === 'unknown_option' ? `${fault.option} ` : ''
    errors.push({
      index,
      path: `${pathOf(index)}.options${k >= 0 ? `.${k}` : ''}`,
      message: `kept variant ${fault.sku} (not in the import): ${subject}${variantOptionMessage(fault)}`,
    })
  }
  return errors
}

/**
 * The stored variants each document would keep, by the document's index: those of the product with
 * its handle that it does not name. Only those, since a catalog re-imported whole names them all.
 */
async function keptVariantsOf(
  db: Queryable,
  docs: readonly ProductDocument[],
  include: (doc: ProductDocument) => boolean = () => true,
): Promise<Map<number, Array<{ sku: string; options: Record<string, string> }>>> {
  const file = docs.flatMap((doc, i) =>
    include(doc) ? [{ i, handle: doc.handle, skus: (doc.variants ?? []).map((v) => v.sku) }] : [],
  )
  if (file.length === 0) return new Map()
  const { rows } = await sql<{ i: number; sku: string; options: Record<string, string> }>`
    select x.i, v.sku, v.options
    from jsonb_to_recordset(${JSON.stringify(file)}::jsonb) as x(i int, handle text, skus jsonb)
    join products p on p.handle = x.handle
    join product_variants v on v.product_id = p.id
    where not jsonb_exists(x.skus, v.sku)
    order by x.i, v.position, v.id`.execute(db)
  return Map.groupBy(rows, (r) => r.i)
}

/** After the writes, in case variants were added since the documents were checked. */
async function assertKeptVariantsMatch(
  trx: Tx,
  docs: readonly ProductDocument[],
  existing: Map<string, string>,
): Promise<void> {
  const kept = await keptVariantsOf(trx, docs, (doc) => existing.has(doc.handle))
  const errors = docs.flatMap((doc, index) =>
    keptVariantErrors(doc, index, kept.get(index) ?? [], (i) => `[${i}]`),
  )
  if (errors.length > 0) throw new BulkDocumentError(errors)
}

/** A batch failed on rules only visible with the stored data; nothing of the batch is written. */
export class BulkDocumentError extends Error {
  override name = 'BulkDocumentError'
  readonly errors: DocumentError[]
  constructor(errors: DocumentError[]) {
    super(`${errors.length} document error(s)`)
    this.errors = errors
  }
}
