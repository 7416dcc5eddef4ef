/**
 * Set-based product writes for imports and large seeds: a batch of product documents is
 * upserted by handle (variants by SKU) in a handful of statements, whatever its size, so 100,000
 * products import in the time the database needs to write them rather than in 1.5 million round
 * trips. The rules are those of products.ts: documents are checked with validateProductInput first.
 */
import { type RawBuilder, sql } from 'kysely'
import type { Static } from 'typebox'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import type { FieldError } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import { lockTaxCategories } from '../tax/service.ts'
import {
  defaultVariantTitle,
  parkedOptions,
  refreshReadModels,
  strandedVariantErrors,
  unparkVariantOptions,
  validateProductInput,
  variantOptionFaults,
  variantOptionMessage,
} from './products.ts'
import type { ImportProduct } from './schemas.ts'
import type { ProductOption } from './tables.ts'

/**
 * A product to upsert. A field left out keeps what the stored product has (a new product gets the
 * default); `null` clears a field that may be empty (see ImportProduct).
 */
export type ProductDocument = Static<typeof ImportProduct>

/** A problem with one document of a batch: its index in the batch and the field. */
export interface DocumentError extends FieldError {
  index: number
}

/**
 * The currencies a document's variant prices state. Undefined (a JSON or NDJSON document, a seed):
 * all of them, so a variant's `prices` replace its stored prices and a price without
 * `compare_at_amount` has none. A list (a CSV's `price_<CUR>` columns): those currencies alone, so a
 * stored price in another currency is kept whole, one in a listed currency that the variant's
 * `prices` leave out (a blank cell) is removed, and a price without `compare_at_amount` (no
 * `compare_at_<CUR>` column) keeps the stored compare-at. A variant without `prices` keeps them all.
 */
export type PriceScope = readonly string[] | undefined

export interface BulkResult {
  created: number
  updated: number
  productIds: string[]
}

/** A field's value to store: left out stays left out (kept), null becomes the empty value. */
function cleared<T>(value: T | null | undefined, empty: T): T | undefined {
  return value === null ? empty : value
}

/** Variant fields stored as null when empty: given as null, they are cleared. */
const NULLABLE_VARIANT_FIELDS = ['barcode', 'weight_g', 'length_mm', 'width_mm', 'height_mm'] as const

/** defaultVariantTitle in SQL: the variant's values in the order of the product's options, or its SKU. */
function titleOf(
  productOptions: RawBuilder<unknown>,
  variantOptions: RawBuilder<unknown>,
  sku: RawBuilder<unknown>,
): RawBuilder<string> {
  return sql<string>`coalesce((select string_agg(${variantOptions} ->> (o.option ->> 'name'), ' / ' order by o.n)
    from jsonb_array_elements(${productOptions}) with ordinality as o(option, n)), ${sku})`
}

/**
 * What a document that leaves fields out cannot do, which depends on whether its product is stored:
 * a new product needs a title, and without an option set (the stored one is kept) a new variant of
 * a stored product with options cannot name its values. Looked up only for such documents.
 * `sameOptions` holds, by document, what the rules said of variants without options in a document
 * without an option set ("another variant has the same options"): true of a product without
 * options (new, or stored without), but a stored product's variants keep their own values then.
 */
async function partialDocumentErrors(
  db: Queryable,
  docs: readonly ProductDocument[],
  storedSkus: ReadonlySet<string>,
  pathOf: (index: number) => string,
  sameOptions: ReadonlyMap<number, readonly DocumentError[]>,
): Promise<DocumentError[]> {
  const newVariants = (doc: ProductDocument) =>
    doc.options === undefined
      ? (doc.variants ?? []).flatMap((v, k) => (storedSkus.has(v.sku) ? [] : [k]))
      : []
  const partial = docs.flatMap((doc, index) =>
    doc.title === undefined || newVariants(doc).length > 0 || sameOptions.has(index) ? [{ doc, index }] : [],
  )
  if (partial.length === 0) return []
  const { rows } = await sql<{ handle: string; options: ProductOption[] }>`
    select handle, options from products where handle = any(${partial.map((p) => p.doc.handle)})`.execute(db)
  const stored = new Map(rows.map((r) => [r.handle, r.options]))
  const errors: DocumentError[] = []
  for (const { doc, index } of partial) {
    const options = stored.get(doc.handle)
    if (!options || options.length === 0) errors.push(...(sameOptions.get(index) ?? []))
    if (!options) {
      if (doc.title === undefined)
        errors.push({ index, path: `${pathOf(index)}.title`, message: 'is required for a new product' })
      continue
    }
    if (options.length === 0) continue
    const names = options.map((o) => o.name).join(', ')
    for (const k of newVariants(doc))
      errors.push({
        index,
        path: `${pathOf(index)}.variants[${k}].options`,
        message: `needs ${names}: a new variant names the values of the product's options`,
      })
  }
  return errors
}

/**
 * The documents' tax categories that do not exist, as errors: in the caller's transaction the
 * ones that do stay key-share locked until it ends (lockTaxCategories), so none is deleted under a
 * write that names it.
 */
async function unknownTaxCategories(
  db: Queryable,
  docs: readonly ProductDocument[],
  pathOf: (index: number) => string,
): Promise<DocumentError[]> {
  const known = await lockTaxCategories(
    db,
    docs.flatMap((d) => (d.tax_category === undefined ? [] : [d.tax_category])),
  )
  return docs.flatMap((doc, index) =>
    doc.tax_category === undefined || known.has(doc.tax_category)
      ? []
      : [{ index, path: `${pathOf(index)}.tax_category`, message: `no tax category ${doc.tax_category}` }],
  )
}

/**
 * Everything that would make a batch fail, found before writing: document rules, handles or SKUs
 * repeated within the batch, SKUs owned by a product outside it, unknown categories, collections
 * or tax categories, and stored variants an upsert would keep that no longer fit, so that a dry run
 * reports what the write would refuse.
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
  // Faults of variants that keep their stored values, which partialDocumentErrors sorts out.
  const sameOptions = new Map<number, DocumentError[]>()
  docs.forEach((doc, index) => {
    const unsure =
      doc.options === undefined
        ? new Set(
            variantOptionFaults([], doc.variants ?? []).flatMap((f) =>
              f.kind === 'same_options' && doc.variants?.[f.variant]?.options === undefined
                ? [`${pathOf(index)}.variants.${f.variant}.options ${variantOptionMessage(f)}`]
                : [],
            ),
          )
        : new Set<string>()
    // The rules read option sets, SKUs and prices, which a document never sets to null.
    for (const e of validateProductInput(doc as Parameters<typeof validateProductInput>[0], pathOf(index))) {
      if (unsure.has(`${e.path} ${e.message}`))
        sameOptions.set(index, [...(sameOptions.get(index) ?? []), { ...e, index }])
      else errors.push({ ...e, index })
    }
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
  const storedSkus = new Set<string>()
  if (skus.size > 0) {
    const { rows } = await sql<{ sku: string; handle: string }>`
      select v.sku, p.handle from product_variants v join products p on p.id = v.product_id
      where v.sku = any(${[...skus.keys()]})`.execute(db)
    for (const row of rows) {
      storedSkus.add(row.sku)
      const owner = skus.get(row.sku)
      if (owner !== undefined && docs[owner.index]?.handle !== row.handle)
        errors.push({
          index: owner.index,
          path: `${pathOf(owner.index)}.variants[${owner.variant}].sku`,
          message: `SKU ${row.sku} belongs to product ${row.handle}`,
        })
    }
  }
  errors.push(...(await partialDocumentErrors(db, docs, storedSkus, pathOf, sameOptions)))
  const categoryIds = new Set(docs.flatMap((d) => d.category_ids ?? []))
  const collectionIds = new Set(docs.flatMap((d) => (d.collection_id ? [d.collection_id] : [])))
  const [categories, collections, kept, taxCategories] = await Promise.all([
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
    unknownTaxCategories(db, docs, pathOf),
  ])
  errors.push(...taxCategories)
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
 * Upserts checked documents in the caller's transaction: a product found by handle has the fields
 * the document gives replaced and keeps the others (`null` clears); a new one gets the defaults.
 * Variants are upserted by SKU the same way (placed by placeNamedVariants and placeNewVariants) and
 * variants the document does not name are kept. A document without an option set keeps the stored
 * one and its variants keep their options. A variant given no title keeps the stored one unless it
 * was made of the variant's option values and these (or the product's option order) change: it is
 * then made again, as it is for a `null` title. Prices go by currency as `priceScopes` (one
 * PriceScope per document, none: all replace) say. Removing a base price that a price list uses is
 * allowed, as `PATCH /admin/variants/:id` allows it: the list price stays stored and counts for
 * nothing until the base price is back (shopperPrice). Emits no events: the caller emits one
 * for the whole import. A tax category deleted since the documents were checked throws
 * BulkDocumentError before any write; a kept variant that does not fit a new option set throws it
 * after the writes, so the caller must roll back (its transaction or a savepoint) for the batch to
 * be all or nothing.
 */
export async function bulkUpsertProducts(
  trx: Tx,
  docs: readonly ProductDocument[],
  priceScopes: readonly PriceScope[] = [],
): Promise<BulkResult> {
  if (docs.length === 0) return { created: 0, updated: 0, productIds: [] }
  const unknown = await unknownTaxCategories(trx, docs, (i) => `[${i}]`)
  if (unknown.length > 0) throw new BulkDocumentError(unknown)
  // Each field is left out (keep), or the value to store: null has been turned into the empty
  // value, but for the collection, which is stored as null and so says it is given apart.
  const rows = docs.map((d) => ({
    id: newId('prod'),
    handle: d.handle,
    title: d.title,
    subtitle: cleared(d.subtitle, ''),
    description: cleared(d.description, ''),
    status: d.status,
    collection_given: d.collection_id !== undefined,
    collection_id: d.collection_id ?? null,
    tax_category: d.tax_category,
    options: d.options,
    tags: cleared(d.tags, []),
    attributes: cleared(d.attributes, {}),
    media: cleared(d.media, []),
    metadata: cleared(d.metadata, {}),
  }))
  const columns = sql`id text, handle text, title text, subtitle text, description text, status text,
    collection_given boolean, collection_id text, tax_category text, options jsonb, tags jsonb, attributes jsonb,
    media jsonb, metadata jsonb`
  // `o` is the product as it was before this statement: the option sets that change are returned,
  // for the variant titles made of them.
  const updated = await sql<{ id: string; handle: string; old_options: ProductOption[] | null }>`
    update products p set title = coalesce(x.title, p.title), subtitle = coalesce(x.subtitle, p.subtitle),
      description = coalesce(x.description, p.description), status = coalesce(x.status, p.status),
      collection_id = case when x.collection_given then x.collection_id else p.collection_id end,
      tax_category = coalesce(x.tax_category, p.tax_category), options = coalesce(x.options, p.options),
      tags = case when x.tags is null then p.tags else array(select jsonb_array_elements_text(x.tags)) end,
      attributes = coalesce(x.attributes, p.attributes), media = coalesce(x.media, p.media),
      metadata = coalesce(x.metadata, p.metadata), updated_at = now()
    from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(${columns})
      join products o on o.handle = x.handle
    where p.id = o.id
    returning p.id, p.handle, case when p.options <> o.options then o.options end as old_options`.execute(trx)
  const existing = new Map(updated.rows.map((r) => [r.handle, r.id]))
  const reordered = updated.rows.flatMap((r) => (r.old_options ? [{ id: r.id, options: r.old_options }] : []))
  const fresh = rows.filter((r) => !existing.has(r.handle))
  if (fresh.length > 0) {
    await sql`
      insert into products (id, handle, title, subtitle, description, status, collection_id, tax_category,
        options, tags, attributes, media, metadata)
      select x.id, x.handle, x.title, coalesce(x.subtitle, ''), coalesce(x.description, ''),
        coalesce(x.status, 'draft'), x.collection_id, coalesce(x.tax_category, 'standard'),
        coalesce(x.options, '[]'), array(select jsonb_array_elements_text(coalesce(x.tags, '[]'))),
        coalesce(x.attributes, '{}'), coalesce(x.media, '[]'), coalesce(x.metadata, '{}')
      from jsonb_to_recordset(${JSON.stringify(fresh)}::jsonb) as x(${columns})`.execute(trx)
  }
  const productIdOf = (handle: string, fallback: string) => existing.get(handle) ?? fallback
  const productIds = rows.map((r) => productIdOf(r.handle, r.id))

  const withCategories = docs.flatMap((d, i) =>
    d.category_ids !== undefined ? [{ doc: d, id: productIds[i] as string }] : [],
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
    (d.variants ?? []).map((v, position) => {
      // Without the product's option set, the stored one stays and so do its variants' options.
      const options = v.options ?? (d.options === undefined ? undefined : {})
      // The title made of the variant's values, when the document says what they are.
      const generated =
        d.options === undefined ? undefined : defaultVariantTitle(d.options, { ...v, options })
      return {
        id: newId('var'),
        product_id: productIds[i] as string,
        sku: v.sku,
        position,
        prices: v.prices,
        priceScope: priceScopes[i],
        title: v.title,
        generated,
        options,
        barcode: v.barcode,
        weight_g: v.weight_g,
        length_mm: v.length_mm,
        width_mm: v.width_mm,
        height_mm: v.height_mm,
        manage_inventory: v.manage_inventory,
        requires_shipping: v.requires_shipping,
        metadata: cleared(v.metadata, {}),
      }
    }),
  )
  const variantIdBySku = new Map<string, string>()
  if (existing.size > 0 && variants.length > 0) {
    // Only variants of products that already existed can be updates.
    const existingIds = new Set(existing.values())
    const candidates = variants.filter((v) => existingIds.has(v.product_id))
    if (candidates.length > 0) {
      // The fields each variant gives, as in the product rows above; the nullable ones say so apart.
      const patches = candidates.map((v) => ({
        sku: v.sku,
        product_id: v.product_id,
        title: v.title ?? (v.title === null ? v.generated : undefined),
        remake_title: v.title === null && v.generated === undefined,
        generated: v.title === undefined ? v.generated : undefined,
        options: v.options,
        ...Object.fromEntries(
          NULLABLE_VARIANT_FIELDS.flatMap((f) =>
            v[f] === undefined ? [] : [[f, v[f]] as const, [`${f}_given`, true] as const],
          ),
        ),
        manage_inventory: v.manage_inventory,
        requires_shipping: v.requires_shipping,
        metadata: v.metadata,
      }))
      const given = (f: (typeof NULLABLE_VARIANT_FIELDS)[number]) =>
        sql`${sql.ref(f)} = case when ${sql.ref(`x.${f}_given`)} then ${sql.ref(`x.${f}`)} else ${sql.ref(`v.${f}`)} end`
      // Variants whose options change are parked (see parkedOptions) and given their options after,
      // so that stored variants may trade options; a re-import that changes none pays nothing more.
      // After the update, only a parked variant's options differ from the document's.
      // Positions are placed after (placeNamedVariants), from the stored ones this returns.
      // A title left out is kept, unless it is the one made of the values and those change (the
      // variant's, or the order of the product's options: `o` holds the order before this import).
      const changed = await sql<{ id: string; sku: string; position: number; parked: boolean }>`
        update product_variants v set title = case
            when x.title is not null then x.title
            when x.remake_title then ${titleOf(sql`p.options`, sql`v.options`, sql`v.sku`)}
            when x.generated is null or (o.options is null and v.options = x.options) then v.title
            when v.title = ${titleOf(sql`coalesce(o.options, p.options)`, sql`v.options`, sql`v.sku`)}
              then x.generated
            else v.title end,
          options = case when x.options is null or v.options = x.options then v.options
            else ${parkedOptions(sql.ref<string>('v.id'))} end,
          ${sql.join(NULLABLE_VARIANT_FIELDS.map(given))},
          manage_inventory = coalesce(x.manage_inventory, v.manage_inventory),
          requires_shipping = coalesce(x.requires_shipping, v.requires_shipping),
          metadata = coalesce(x.metadata, v.metadata), updated_at = now()
        from jsonb_to_recordset(${JSON.stringify(patches)}::jsonb) as x(
          sku text, product_id text, title text, remake_title boolean, generated text, options jsonb,
          barcode text, barcode_given boolean, weight_g int, weight_g_given boolean, length_mm int,
          length_mm_given boolean, width_mm int, width_mm_given boolean, height_mm int, height_mm_given boolean,
          manage_inventory boolean, requires_shipping boolean, metadata jsonb)
          join products p on p.id = x.product_id
          left join jsonb_to_recordset(${JSON.stringify(reordered)}::jsonb) as o(id text, options jsonb)
            on o.id = x.product_id
        where v.sku = x.sku and v.product_id = x.product_id
        returning v.id, v.sku, v.position, coalesce(v.options <> x.options, false) as parked`.execute(trx)
      for (const row of changed.rows) variantIdBySku.set(row.sku, row.id)
      await placeNamedVariants(trx, candidates, changed.rows)
      const parked = new Set(changed.rows.flatMap((r) => (r.parked ? [r.sku] : [])))
      await unparkVariantOptions(
        trx,
        candidates.flatMap((v) =>
          parked.has(v.sku) && v.options
            ? [{ id: variantIdBySku.get(v.sku) as string, options: v.options }]
            : [],
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
    // A new variant gets the defaults for what its document leaves out.
    const column = <T>(pick: (v: (typeof newVariants)[number]) => T) => newVariants.map(pick)
    await sql`
      insert into product_variants (id, product_id, sku, title, options, barcode, weight_g, length_mm, width_mm,
        height_mm, position, manage_inventory, requires_shipping, metadata)
      select x.id, x.product_id, x.sku, x.title, x.options::jsonb, x.barcode, x.weight_g, x.length_mm, x.width_mm,
        x.height_mm, x.position, x.manage_inventory, x.requires_shipping, x.metadata::jsonb
      from unnest(${column((v) => v.id)}::text[], ${column((v) => v.product_id)}::text[],
        ${column((v) => v.sku)}::text[], ${column((v) => v.title ?? v.generated ?? v.sku)}::text[],
        ${column((v) => JSON.stringify(v.options ?? {}))}::text[], ${column((v) => v.barcode ?? null)}::text[],
        ${column((v) => v.weight_g ?? null)}::int[], ${column((v) => v.length_mm ?? null)}::int[],
        ${column((v) => v.width_mm ?? null)}::int[], ${column((v) => v.height_mm ?? null)}::int[],
        ${column((v) => v.position)}::int[], ${column((v) => v.manage_inventory ?? true)}::boolean[],
        ${column((v) => v.requires_shipping ?? true)}::boolean[],
        ${column((v) => JSON.stringify(v.metadata ?? {}))}::text[]) as x(
        id, product_id, sku, title, options, barcode, weight_g, length_mm, width_mm, height_mm, position,
        manage_inventory, requires_shipping, metadata)`.execute(trx)
  }

  const priced = variants.filter((v) => v.prices !== undefined)
  if (priced.length > 0) {
    const replaced = new Set(updatedVariantIds)
    // A stored variant's prices its document takes away: those in its scope (every currency
    // without one) in a currency its `prices` do not give. The given ones are upserted below.
    const stale = { ids: [] as string[], scopes: [] as Array<string | null>, kept: [] as string[] }
    for (const v of priced) {
      const id = variantIdBySku.get(v.sku) as string
      if (!replaced.has(id)) continue
      stale.ids.push(id)
      // Array literals: currencies are three capital letters (the header's and checkPrices' rule).
      stale.scopes.push(v.priceScope ? `{${v.priceScope.join(',')}}` : null)
      stale.kept.push(`{${(v.prices ?? []).map((p) => p.currency).join(',')}}`)
    }
    if (stale.ids.length > 0)
      await sql`
        delete from variant_prices vp
        using unnest(${stale.ids}::text[], ${stale.scopes}::text[], ${stale.kept}::text[]) as x(id, scope, kept)
        where vp.variant_id = x.id and (x.scope is null or vp.currency_code = any(x.scope::text[]))
          and vp.currency_code <> all(x.kept::text[])`.execute(trx)
    // New variants' prices are inserted; a stored variant's are upserted, and a price left without
    // a compare-at (a scoped document) keeps the stored one, read before the statement writes.
    const columns = () => ({
      ids: [] as string[],
      currencies: [] as string[],
      amounts: [] as number[],
      compareAt: [] as Array<number | null>,
    })
    const fresh = columns()
    const upserts = { ...columns(), given: [] as boolean[] }
    for (const v of priced) {
      const id = variantIdBySku.get(v.sku) as string
      const stored = replaced.has(id)
      const into = stored ? upserts : fresh
      for (const p of v.prices ?? []) {
        into.ids.push(id)
        into.currencies.push(p.currency)
        into.amounts.push(p.amount)
        into.compareAt.push(p.compare_at_amount ?? null)
        if (stored) upserts.given.push(v.priceScope === undefined || p.compare_at_amount !== undefined)
      }
    }
    if (fresh.ids.length > 0)
      await sql`
        insert into variant_prices (variant_id, currency_code, amount, compare_at_amount)
        select * from unnest(${fresh.ids}::text[], ${fresh.currencies}::text[], ${fresh.amounts}::bigint[],
          ${fresh.compareAt}::bigint[])`.execute(trx)
    if (upserts.ids.length > 0)
      await sql`
        insert into variant_prices (variant_id, currency_code, amount, compare_at_amount)
        select x.id, x.currency, x.amount, case when x.given then x.compare_at else (
            select s.compare_at_amount from variant_prices s where s.variant_id = x.id and s.currency_code = x.currency)
          end
        from unnest(${upserts.ids}::text[], ${upserts.currencies}::text[], ${upserts.amounts}::bigint[],
          ${upserts.compareAt}::bigint[], ${upserts.given}::boolean[]) as x(id, currency, amount, compare_at, given)
        on conflict (variant_id, currency_code) do update
          set amount = excluded.amount, compare_at_amount = excluded.compare_at_amount`.execute(trx)
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
    search.titles.push(doc.title ?? '')
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
  kept: ReadonlyArray<{ sku: string; options: Record<string, string>; product_options: ProductOption[] }>,
  pathOf: (index: number) => string,
): DocumentError[] {
  if (kept.length === 0) return []
  // Without an option set, the stored one and the stored variants' options stay: only a product
  // without options could see a new variant repeat a kept one's (none), as below.
  if (doc.options === undefined && (kept[0]?.product_options.length ?? 0) > 0) return []
  const named = doc.variants ?? []
  // Named variants first, so that a kept one repeating a named one's options is the one reported;
  // the named ones' own faults are validateProductInput's to report.
  return strandedVariantErrors(
    doc.options ?? [],
    [...named, ...kept],
    `${pathOf(index)}.options`,
    (sku) => `kept variant ${sku} (not in the import): `,
    named.length,
  ).map((e) => ({ ...e, index }))
}

/**
 * The stored variants each document would keep, by the document's index: those of the product with
 * its handle that it does not name. Only those, since a catalog re-imported whole names them all.
 */
async function keptVariantsOf(
  db: Queryable,
  docs: readonly ProductDocument[],
  include: (doc: ProductDocument) => boolean = () => true,
): Promise<
  Map<number, Array<{ sku: string; options: Record<string, string>; product_options: ProductOption[] }>>
> {
  const file = docs.flatMap((doc, i) =>
    include(doc) ? [{ i, handle: doc.handle, skus: (doc.variants ?? []).map((v) => v.sku) }] : [],
  )
  if (file.length === 0) return new Map()
  const { rows } = await sql<{
    i: number
    sku: string
    options: Record<string, string>
    product_options: ProductOption[]
  }>`
    select x.i, v.sku, v.options, p.options as product_options
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
