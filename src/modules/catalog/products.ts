/**
 * Product and variant writes: create, update, upsert by handle, delete, with the rules that keep a
 * product whole (variants match the option set, SKUs are unique, prices are in known currencies)
 * and the read models the storefront list uses (search vector, lowest prices) kept in step.
 */
import { type RawBuilder, sql } from 'kysely'
import type { Static } from 'typebox'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { type FieldError, problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import { isCurrency } from '../../platform/money.ts'
import { lockTaxCategories } from '../tax/service.ts'
import { refreshPriceReadModel } from './pricing.ts'
import type { CreateProduct, UpdateProduct, UpdateVariant, VariantInput } from './schemas.ts'
import type { ProductOption } from './tables.ts'

type ProductInput = Static<typeof CreateProduct>
type VariantData = Static<typeof VariantInput>

export interface VariantView {
  id: string
  sku: string
  title: string
  options: Record<string, string>
  barcode: string | null
  weight_g: number | null
  length_mm: number | null
  width_mm: number | null
  height_mm: number | null
  position: number
  manage_inventory: boolean
  requires_shipping: boolean
  prices: Array<{ amount: number; currency: string; compare_at_amount: number | null }>
  metadata: Record<string, unknown>
}

export interface ProductView {
  id: string
  handle: string
  title: string
  subtitle: string
  description: string
  status: 'draft' | 'published' | 'archived'
  collection_id: string | null
  category_ids: string[]
  tax_category: string
  options: ProductOption[]
  tags: string[]
  attributes: Record<string, string>
  media: Array<{ url: string; alt: string }>
  metadata: Record<string, unknown>
  variants: VariantView[]
  created_at: string
  updated_at: string
}

/**
 * One way variants misfit a product's option set. `variant` indexes the list checked (with its SKU
 * when it has one), so a caller can name the variant and the option without reading a path back.
 */
export type VariantOptionFault =
  | { kind: 'repeated_option_name' }
  | { kind: 'missing'; variant: number; sku?: string; option: string }
  | { kind: 'not_allowed'; variant: number; sku?: string; option: string; value: string; allowed: string[] }
  | { kind: 'unknown_option'; variant: number; sku?: string; option: string; value: string }
  | { kind: 'same_options'; variant: number; sku?: string }

/** Every fault of the variants against the options, in the order checkVariantOptions reports them. */
export function variantOptionFaults(
  options: readonly ProductOption[],
  variants: ReadonlyArray<{ sku?: string; options?: Record<string, string> }>,
): VariantOptionFault[] {
  const faults: VariantOptionFault[] = []
  const names = new Set(options.map((o) => o.name))
  if (names.size !== options.length) faults.push({ kind: 'repeated_option_name' })
  const seen = new Set<string>()
  variants.forEach((v, variant) => {
    const given = v.options ?? {}
    const sku = v.sku === undefined ? {} : { sku: v.sku }
    for (const option of options) {
      const value = given[option.name]
      if (value === undefined) faults.push({ kind: 'missing', variant, ...sku, option: option.name })
      else if (!option.values.includes(value))
        faults.push({
          kind: 'not_allowed',
          variant,
          ...sku,
          option: option.name,
          value,
          allowed: option.values,
        })
    }
    for (const [name, value] of Object.entries(given))
      if (!names.has(name)) faults.push({ kind: 'unknown_option', variant, ...sku, option: name, value })
    const key = JSON.stringify(options.map((o) => given[o.name]))
    if (seen.has(key)) faults.push({ kind: 'same_options', variant, ...sku })
    seen.add(key)
  })
  return faults
}

/** What a fault says about the field its path names. */
export function variantOptionMessage(fault: VariantOptionFault): string {
  switch (fault.kind) {
    case 'repeated_option_name':
      return 'option names must be unique'
    case 'missing':
      return `needs ${fault.option}`
    case 'not_allowed':
      return `must be one of ${fault.allowed.join(', ')}`
    case 'unknown_option':
      return 'is not an option of the product'
    case 'same_options':
      return 'another variant has the same options'
  }
}

/**
 * A variant's title when none is given: its values in the product's option order. Every writer and
 * the exporter (which leaves such titles out) use this one, since a variant's options object holds
 * its keys in whatever order it was sent or jsonb keeps them, and a title built from that order
 * changed when a file was imported back.
 */
export function defaultVariantTitle(
  options: readonly ProductOption[],
  variant: { sku: string; options?: Record<string, string> },
): string {
  return options.flatMap((o) => variant.options?.[o.name] ?? []).join(' / ') || variant.sku
}

/** Checks that every variant names exactly the product's options with allowed values. */
export function checkVariantOptions(
  options: readonly ProductOption[],
  variants: ReadonlyArray<{ options?: Record<string, string> }>,
  pathOf: (index: number) => string,
): FieldError[] {
  return variantOptionFaults(options, variants).map((fault) => {
    const message = variantOptionMessage(fault)
    if (fault.kind === 'repeated_option_name') return { path: 'body.options', message }
    const at = `${pathOf(fault.variant)}.options`
    const named = fault.kind === 'not_allowed' || fault.kind === 'unknown_option'
    return { path: named ? `${at}.${fault.option}` : at, message }
  })
}

/**
 * The faults of stored variants that a request does not name against an option set they must still
 * fit. The request has no field for such a variant, so each fault is reported on the option set (on
 * the option at fault when there is one), and `name` says which variant the message is about. Only
 * variants from `from` on are reported: those before it are the request's own, whose faults have
 * paths of their own. A repeated option name is the set's own fault, which validateProductInput reports.
 */
export function strandedVariantErrors(
  options: readonly ProductOption[],
  variants: ReadonlyArray<{ sku?: string; options?: Record<string, string> }>,
  optionsPath: string,
  name: (sku: string | undefined) => string,
  from = 0,
): FieldError[] {
  const errors: FieldError[] = []
  for (const fault of variantOptionFaults(options, variants)) {
    if (fault.kind === 'repeated_option_name' || fault.variant < from) continue
    const k = fault.kind === 'same_options' ? -1 : options.findIndex((o) => o.name === fault.option)
    // A message about a value reads after its option's name ("Size must be one of S").
    const subject = fault.kind === 'not_allowed' || fault.kind === 'unknown_option' ? `${fault.option} ` : ''
    errors.push({
      path: k >= 0 ? `${optionsPath}.${k}` : optionsPath,
      message: `${name(fault.sku)}${subject}${variantOptionMessage(fault)}`,
    })
  }
  return errors
}

function checkPrices(
  prices: ReadonlyArray<{ currency: string; compare_at_amount?: number | null; amount: number }>,
  path: string,
): FieldError[] {
  const errors: FieldError[] = []
  const seen = new Set<string>()
  prices.forEach((price, i) => {
    if (!isCurrency(price.currency))
      errors.push({
        path: `${path}.${i}.currency`,
        message: `${price.currency} is not a supported currency`,
      })
    if (seen.has(price.currency))
      errors.push({ path: `${path}.${i}.currency`, message: 'appears twice; one price per currency' })
    seen.add(price.currency)
  })
  return errors
}

function checkSkusUnique(
  variants: ReadonlyArray<{ sku: string }>,
  pathOf: (i: number) => string,
): FieldError[] {
  const seen = new Set<string>()
  const errors: FieldError[] = []
  variants.forEach((v, i) => {
    if (seen.has(v.sku)) errors.push({ path: `${pathOf(i)}.sku`, message: 'appears twice in this product' })
    seen.add(v.sku)
  })
  return errors
}

/** All the checks a product document must pass before anything is written; [] when it is valid. */
export function validateProductInput(input: Partial<ProductInput>, prefix = 'body'): FieldError[] {
  const variants = input.variants ?? []
  const pathOf = (i: number) => `${prefix}.variants.${i}`
  return [
    ...checkVariantOptions(input.options ?? [], variants, pathOf),
    ...checkSkusUnique(variants, pathOf),
    ...variants.flatMap((v, i) => checkPrices(v.prices ?? [], `${pathOf(i)}.prices`)),
  ]
}

function invalid(errors: FieldError[]) {
  return problem(
    'validation_failed',
    errors[0]?.message ? `${errors[0].path} ${errors[0].message}` : undefined,
    {
      errors,
    },
  )
}

/**
 * The variant a write was storing when it failed: where its fields are in the request (`body` on
 * the variant routes, `body.variants.2` in a product) and its SKU, so that a constraint it breaks
 * is reported on the field the request sent.
 */
export interface VariantSite {
  path: string
  sku: string
}

/**
 * Maps the database's constraint errors to the client's mistake they stand for, in our words: the
 * database's own text (`Key (sku)=(…) already exists.`) names columns, not the request's fields.
 * Without `variant` (a set-based write of many documents), a variant's fault is reported on the
 * document's variants.
 */
export function translateWriteError(error: unknown, prefix = 'body', variant?: VariantSite): unknown {
  const e = error as { code?: string; constraint?: string } | null
  if (e?.code === '23505') {
    if (e.constraint === 'products_handle_key')
      return problem('handle_taken', 'Another product has this handle', {
        errors: [{ path: `${prefix}.handle`, message: 'is already in use' }],
      })
    if (e.constraint === 'product_variants_sku_key')
      return variant
        ? problem('sku_taken', `Another variant already uses SKU ${variant.sku}`, {
            errors: [{ path: `${variant.path}.sku`, message: `SKU ${variant.sku} is already in use` }],
          })
        : problem('sku_taken', 'Another variant already uses a SKU of this product', {
            errors: [{ path: `${prefix}.variants`, message: 'a SKU is already in use' }],
          })
    if (e.constraint === 'product_variants_options')
      return problem('validation_failed', 'Another variant of the product has the same options', {
        errors: [
          {
            path: `${variant ? variant.path : prefix}.options`,
            message: 'another variant has the same options',
          },
        ],
      })
  }
  if (e?.code === '23503') {
    if (e.constraint?.includes('collection'))
      return problem('validation_failed', 'The collection does not exist', {
        errors: [{ path: `${prefix}.collection_id`, message: 'no such collection' }],
      })
    if (e.constraint?.includes('categor'))
      return problem('validation_failed', 'A category does not exist', {
        errors: [{ path: `${prefix}.category_ids`, message: 'no such category' }],
      })
  }
  return error
}

const productColumns = [
  'id',
  'handle',
  'title',
  'subtitle',
  'description',
  'status',
  'collection_id',
  'tax_category',
  'options',
  'tags',
  'attributes',
  'media',
  'metadata',
  'created_at',
  'updated_at',
] as const

/** The admin view of products by id: every field, variants with all their prices. */
export async function loadProducts(db: Queryable, ids: readonly string[]): Promise<ProductView[]> {
  if (ids.length === 0) return []
  const [products, variants, prices, categories] = await Promise.all([
    db.selectFrom('products').select(productColumns).where('id', 'in', ids).execute(),
    db
      .selectFrom('product_variants')
      .select([
        'id',
        'product_id',
        'sku',
        'title',
        'options',
        'barcode',
        'weight_g',
        'length_mm',
        'width_mm',
        'height_mm',
        'position',
        'manage_inventory',
        'requires_shipping',
        'metadata',
      ])
      .where('product_id', 'in', ids)
      .orderBy('position')
      .orderBy('id')
      .execute(),
    db
      .selectFrom('variant_prices')
      .innerJoin('product_variants', 'product_variants.id', 'variant_prices.variant_id')
      .select([
        'variant_prices.variant_id',
        'variant_prices.currency_code',
        'variant_prices.amount',
        'variant_prices.compare_at_amount',
      ])
      .where('product_variants.product_id', 'in', ids)
      .orderBy('variant_prices.currency_code')
      .execute(),
    db
      .selectFrom('product_categories')
      .select(['product_id', 'category_id'])
      .where('product_id', 'in', ids)
      .execute(),
  ])
  const pricesByVariant = Map.groupBy(prices, (p) => p.variant_id)
  const variantsByProduct = Map.groupBy(variants, (v) => v.product_id)
  const categoriesByProduct = Map.groupBy(categories, (c) => c.product_id)
  const byId = new Map(products.map((p) => [p.id, p]))
  return ids.flatMap((id) => {
    const p = byId.get(id)
    if (!p) return []
    return [
      {
        ...p,
        category_ids: (categoriesByProduct.get(id) ?? []).map((c) => c.category_id).sort(),
        variants: (variantsByProduct.get(id) ?? []).map(({ product_id: _, ...v }) => ({
          ...v,
          prices: (pricesByVariant.get(v.id) ?? []).map((price) => ({
            amount: price.amount,
            currency: price.currency_code,
            compare_at_amount: price.compare_at_amount,
          })),
        })),
        created_at: p.created_at.toISOString(),
        updated_at: p.updated_at.toISOString(),
      },
    ]
  })
}

/** One product's admin view, by id or handle. */
export async function getProduct(db: Queryable, ref: string): Promise<ProductView | undefined> {
  const row = await db
    .selectFrom('products')
    .select('id')
    .where(ref.startsWith('prod_') ? 'id' : 'handle', '=', ref)
    .executeTakeFirst()
  if (!row) return undefined
  const [product] = await loadProducts(db, [row.id])
  return product
}

/**
 * Rebuilds the products' rows of the search read model: the weighted vector (title A; subtitle and
 * tags B; the description's first 1,000 characters C), the status and the currencies the product is
 * priced in. SKUs stay out: twenty of them per product doubled the vector, and ranking a broad
 * search reads the vector of every match.
 */
export async function refreshSearch(trx: Queryable, productIds: readonly string[]): Promise<void> {
  if (productIds.length === 0) return
  await sql`
    insert into product_search (product_id, status, currencies, search)
    select p.id, p.status,
      array(select distinct vp.currency_code from product_variants v
            join variant_prices vp on vp.variant_id = v.id where v.product_id = p.id order by 1),
      setweight(to_tsvector('english', p.title), 'A') ||
      setweight(to_tsvector('english', p.subtitle || ' ' || array_to_string(p.tags, ' ')), 'B') ||
      setweight(to_tsvector('english', left(p.description, 1000)), 'C')
    from products p
    where p.id = any(${productIds as string[]})
    on conflict (product_id) do update
      set status = excluded.status, currencies = excluded.currencies, search = excluded.search`.execute(trx)
}

async function writeVariantPrices(
  trx: Tx,
  variantId: string,
  prices: NonNullable<VariantData['prices']>,
): Promise<void> {
  await trx.deleteFrom('variant_prices').where('variant_id', '=', variantId).execute()
  if (prices.length === 0) return
  await trx
    .insertInto('variant_prices')
    .values(
      prices.map((p) => ({
        variant_id: variantId,
        currency_code: p.currency,
        amount: p.amount,
        compare_at_amount: p.compare_at_amount ?? null,
      })),
    )
    .execute()
}

async function insertVariant(
  trx: Tx,
  productId: string,
  options: readonly ProductOption[],
  variant: VariantData,
  position: number,
): Promise<string> {
  const id = newId('var')
  await trx
    .insertInto('product_variants')
    .values({
      id,
      product_id: productId,
      sku: variant.sku,
      title: variant.title ?? defaultVariantTitle(options, variant),
      options: JSON.stringify(variant.options ?? {}),
      barcode: variant.barcode ?? null,
      weight_g: variant.weight_g ?? null,
      length_mm: variant.length_mm ?? null,
      width_mm: variant.width_mm ?? null,
      height_mm: variant.height_mm ?? null,
      position,
      manage_inventory: variant.manage_inventory ?? true,
      requires_shipping: variant.requires_shipping ?? true,
      metadata: JSON.stringify(variant.metadata ?? {}),
    })
    .execute()
  await writeVariantPrices(trx, id, variant.prices ?? [])
  return id
}

/**
 * Option names are at most 64 characters (schemas.ts), so no variant's options can hold this key,
 * and options parked under it with the variant's own id collide with no other variant's.
 */
const PARKING_KEY = 'parked while variants trade options: longer than any option name may be'

/**
 * What a variant's options hold while a write gives variants new ones. The unique index on
 * (product_id, options) is checked row by row, so variants trading options (S becoming M while M
 * becomes S) would collide halfway through; parked first, then set by unparkVariantOptions, they
 * cannot, and a real duplicate still fails on the index when it is set.
 */
export function parkedOptions(variantId: RawBuilder<string>): RawBuilder<string> {
  return sql<string>`jsonb_build_object(${PARKING_KEY}::text, ${variantId})`
}

/** Gives parked variants (parkedOptions) their real options, in one statement. */
export async function unparkVariantOptions(
  trx: Tx,
  variants: ReadonlyArray<{ id: string; options: Record<string, string> }>,
): Promise<void> {
  if (variants.length === 0) return
  await sql`
    update product_variants v set options = x.options::jsonb
    from unnest(${variants.map((p) => p.id)}::text[], ${variants.map((p) => JSON.stringify(p.options))}::text[])
      as x(id, options)
    where v.id = x.id`.execute(trx)
}

function variantChanges(variant: Partial<VariantData>) {
  return {
    ...(variant.sku !== undefined ? { sku: variant.sku } : {}),
    ...(variant.title !== undefined ? { title: variant.title } : {}),
    ...(variant.options !== undefined ? { options: JSON.stringify(variant.options) } : {}),
    ...(variant.barcode !== undefined ? { barcode: variant.barcode } : {}),
    ...(variant.weight_g !== undefined ? { weight_g: variant.weight_g } : {}),
    ...(variant.length_mm !== undefined ? { length_mm: variant.length_mm } : {}),
    ...(variant.width_mm !== undefined ? { width_mm: variant.width_mm } : {}),
    ...(variant.height_mm !== undefined ? { height_mm: variant.height_mm } : {}),
    ...(variant.manage_inventory !== undefined ? { manage_inventory: variant.manage_inventory } : {}),
    ...(variant.requires_shipping !== undefined ? { requires_shipping: variant.requires_shipping } : {}),
    ...(variant.metadata !== undefined ? { metadata: JSON.stringify(variant.metadata) } : {}),
  }
}

function productChanges(input: Partial<ProductInput>) {
  return {
    ...(input.handle !== undefined ? { handle: input.handle } : {}),
    ...(input.title !== undefined ? { title: input.title } : {}),
    ...(input.subtitle !== undefined ? { subtitle: input.subtitle } : {}),
    ...(input.description !== undefined ? { description: input.description } : {}),
    ...(input.status !== undefined ? { status: input.status } : {}),
    ...(input.collection_id !== undefined ? { collection_id: input.collection_id } : {}),
    ...(input.tax_category !== undefined ? { tax_category: input.tax_category } : {}),
    ...(input.options !== undefined ? { options: JSON.stringify(input.options) } : {}),
    ...(input.tags !== undefined ? { tags: input.tags } : {}),
    ...(input.attributes !== undefined ? { attributes: JSON.stringify(input.attributes) } : {}),
    ...(input.media !== undefined ? { media: JSON.stringify(input.media) } : {}),
    ...(input.metadata !== undefined ? { metadata: JSON.stringify(input.metadata) } : {}),
  }
}

async function setCategories(trx: Tx, productId: string, categoryIds: readonly string[]): Promise<void> {
  await trx.deleteFrom('product_categories').where('product_id', '=', productId).execute()
  if (categoryIds.length === 0) return
  await trx
    .insertInto('product_categories')
    .values(categoryIds.map((category_id) => ({ product_id: productId, category_id })))
    .execute()
}

/**
 * A new option set must still fit the product's stored variants. An update names no variant, so
 * a variant that no longer fits is reported on `body.options` (strandedVariantErrors), by its SKU.
 */
async function assertStoredVariantsMatch(
  trx: Tx,
  productId: string,
  options: readonly ProductOption[],
): Promise<void> {
  const variants = await trx
    .selectFrom('product_variants')
    .select(['sku', 'options'])
    .where('product_id', '=', productId)
    .orderBy('position')
    .orderBy('id')
    .execute()
  const errors = strandedVariantErrors(options, variants, 'body.options', (sku) => `variant ${sku}: `)
  if (errors.length > 0) throw invalid(errors)
}

/**
 * Checks that a tax category a write names exists, key-share locking it until the transaction
 * ends (lockTaxCategories), so that deleting the category waits for the write and sees it.
 */
async function assertTaxCategory(trx: Tx, code: string | undefined, path: string): Promise<void> {
  if (code === undefined || (await lockTaxCategories(trx, [code])).has(code)) return
  throw problem('validation_failed', `No tax category ${code}`, {
    errors: [{ path, message: `no tax category ${code} (GET /admin/tax/categories lists them)` }],
  })
}

/** How many products name the tax category: deleting it is refused while any do. */
export async function countProductsInTaxCategory(db: Queryable, code: string): Promise<number> {
  const row = await db
    .selectFrom('products')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('tax_category', '=', code)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Rebuilds the generated titles of a product's variants for its new option order (one read, one update). */
async function retitleVariants(
  trx: Tx,
  productId: string,
  before: readonly ProductOption[],
  after: readonly ProductOption[],
): Promise<void> {
  const variants = await trx
    .selectFrom('product_variants')
    .select(['id', 'sku', 'title', 'options'])
    .where('product_id', '=', productId)
    .execute()
  const retitled = variants.flatMap((v) => {
    const title = generatedTitleAfter(before, after, v, {})
    return title === undefined ? [] : [{ id: v.id, title }]
  })
  if (retitled.length === 0) return
  await sql`
    update product_variants v set title = x.title, updated_at = now()
    from unnest(${retitled.map((v) => v.id)}::text[], ${retitled.map((v) => v.title)}::text[]) as x(id, title)
    where v.id = x.id`.execute(trx)
}

/** Writes a whole product document in the caller's transaction; the product id. No events. */
export async function insertProduct(trx: Tx, input: ProductInput, prefix = 'body'): Promise<string> {
  const errors = validateProductInput(input, prefix)
  if (errors.length > 0) throw invalid(errors)
  // The default (standard) is built in, and built-in categories are never deleted.
  await assertTaxCategory(trx, input.tax_category, `${prefix}.tax_category`)
  const id = newId('prod')
  try {
    await trx
      .insertInto('products')
      .values({
        id,
        handle: input.handle,
        title: input.title,
        subtitle: input.subtitle ?? '',
        description: input.description ?? '',
        status: input.status ?? 'draft',
        collection_id: input.collection_id ?? null,
        tax_category: input.tax_category ?? 'standard',
        options: JSON.stringify(input.options ?? []),
        tags: input.tags ?? [],
        attributes: JSON.stringify(input.attributes ?? {}),
        media: JSON.stringify(input.media ?? []),
        metadata: JSON.stringify(input.metadata ?? {}),
      })
      .execute()
    await setCategories(trx, id, input.category_ids ?? [])
  } catch (error) {
    throw translateWriteError(error, prefix)
  }
  for (const [position, variant] of (input.variants ?? []).entries()) {
    try {
      await insertVariant(trx, id, input.options ?? [], variant, position)
    } catch (error) {
      throw translateWriteError(error, prefix, { path: `${prefix}.variants.${position}`, sku: variant.sku })
    }
  }
  return id
}

/** Brings the search vector and the price read model up to date for products just written. */
export async function refreshReadModels(trx: Tx, productIds: readonly string[]): Promise<void> {
  await refreshSearch(trx, productIds)
  await refreshPriceReadModel(trx, productIds)
}

/** Creates a product with its variants and prices and emits `product.created`. */
export async function createProduct(trx: Tx, outbox: Outbox, input: ProductInput): Promise<ProductView> {
  const id = await insertProduct(trx, input)
  await refreshReadModels(trx, [id])
  const [product] = await loadProducts(trx, [id])
  if (!product) throw new Error(`product ${id} vanished inside its own transaction`)
  await outbox.emit(trx, 'product.created', { product }, id)
  return product
}

/**
 * Applies a partial update and emits `product.updated` naming the fields it changed (none changed,
 * no event: an edit that sends the stored values tells consumers nothing); undefined when the
 * product is unknown.
 */
export async function updateProduct(
  trx: Tx,
  outbox: Outbox,
  id: string,
  input: Static<typeof UpdateProduct>,
): Promise<ProductView | undefined> {
  // Read under the product's lock: what the update changes, and the option order the variants'
  // generated titles were built from.
  if (!(await lockProduct(trx, id))) return undefined
  const [before] = await loadProducts(trx, [id])
  if (!before) return undefined
  // The option set's own rules (names unique); whether the stored variants fit it is checked below.
  const errors = input.options ? validateProductInput({ options: input.options }) : []
  if (errors.length > 0) throw invalid(errors)
  await assertTaxCategory(trx, input.tax_category, 'body.tax_category')
  try {
    const row = await trx
      .updateTable('products')
      .set({ ...productChanges(input), updated_at: sql<Date>`now()` })
      .where('id', '=', id)
      .returning('id')
      .executeTakeFirst()
    if (!row) return undefined
    if (input.category_ids) await setCategories(trx, id, input.category_ids)
  } catch (error) {
    throw translateWriteError(error)
  }
  if (input.options) {
    await assertStoredVariantsMatch(trx, id, input.options)
    await retitleVariants(trx, id, before.options, input.options)
  }
  await refreshSearch(trx, [id])
  const [product] = await loadProducts(trx, [id])
  if (!product) return undefined
  // Variants too: a new option order renames their generated titles.
  const changed = [...(Object.keys(input) as Array<keyof typeof input>), 'variants' as const].filter(
    (field) => JSON.stringify(before[field]) !== JSON.stringify(product[field]),
  )
  if (changed.length > 0) await outbox.emit(trx, 'product.updated', { product, changed }, id)
  return product
}

/** Deletes a product (variants and prices go with it) and emits `product.deleted`. */
export async function deleteProduct(trx: Tx, outbox: Outbox, id: string): Promise<boolean> {
  const deleted = await trx.deleteFrom('products').where('id', '=', id).returning('id').executeTakeFirst()
  if (!deleted) return false
  await outbox.emit(trx, 'product.deleted', { id }, id)
  return true
}

async function lockProduct(trx: Tx, productId: string) {
  return trx
    .selectFrom('products')
    .select(['id', 'options'])
    .where('id', '=', productId)
    .forUpdate()
    .executeTakeFirst()
}

/** Adds a variant to a product; undefined when the product is unknown. */
export async function addVariant(
  trx: Tx,
  outbox: Outbox,
  productId: string,
  input: VariantData,
): Promise<ProductView | undefined> {
  const product = await lockProduct(trx, productId)
  if (!product) return undefined
  const errors = [
    ...checkVariantOptions(product.options, [input], () => 'body'),
    ...checkPrices(input.prices ?? [], 'body.prices'),
  ]
  if (errors.length > 0) throw invalid(errors)
  const { next } = await trx
    .selectFrom('product_variants')
    .select(sql<number>`coalesce(max(position) + 1, 0)::int`.as('next'))
    .where('product_id', '=', productId)
    .executeTakeFirstOrThrow()
  try {
    await insertVariant(trx, productId, product.options, input, next)
  } catch (error) {
    throw translateWriteError(error, 'body', { path: 'body', sku: input.sku })
  }
  return afterVariantChange(trx, outbox, productId)
}

/** Updates a variant (prices, when given, replace its prices); undefined when it is unknown. */
export async function updateVariant(
  trx: Tx,
  outbox: Outbox,
  variantId: string,
  input: Static<typeof UpdateVariant>,
): Promise<ProductView | undefined> {
  const variant = await trx
    .selectFrom('product_variants')
    .select(['product_id'])
    .where('id', '=', variantId)
    .executeTakeFirst()
  if (!variant) return undefined
  const product = await lockProduct(trx, variant.product_id)
  const stored = product && (await lockedVariant(trx, variantId))
  if (!product || !stored) return undefined
  const errors = [
    ...(input.options ? checkVariantOptions(product.options, [input], () => 'body') : []),
    ...checkPrices(input.prices ?? [], 'body.prices'),
  ]
  if (errors.length > 0) throw invalid(errors)
  try {
    const title = input.title ?? generatedTitleAfter(product.options, product.options, stored, input)
    const changes = variantChanges({ ...input, ...(title !== undefined ? { title } : {}) })
    if (Object.keys(changes).length > 0)
      await trx
        .updateTable('product_variants')
        .set({ ...changes, updated_at: sql<Date>`now()` })
        .where('id', '=', variantId)
        .execute()
    if (input.prices) await writeVariantPrices(trx, variantId, input.prices)
  } catch (error) {
    throw translateWriteError(error, 'body', { path: 'body', sku: input.sku ?? stored.sku })
  }
  return afterVariantChange(trx, outbox, variant.product_id)
}

/**
 * Deletes a variant; undefined when it is unknown. Its product is locked first, as every other
 * variant write here does (product, then variant): an edit of the variant running at the same
 * time then either finishes first or finds it gone, and the two cannot deadlock.
 */
export async function deleteVariant(
  trx: Tx,
  outbox: Outbox,
  variantId: string,
): Promise<ProductView | undefined> {
  const variant = await trx
    .selectFrom('product_variants')
    .select(['product_id'])
    .where('id', '=', variantId)
    .executeTakeFirst()
  if (!variant || !(await lockProduct(trx, variant.product_id))) return undefined
  const row = await trx
    .deleteFrom('product_variants')
    .where('id', '=', variantId)
    .returning('product_id')
    .executeTakeFirst()
  if (!row) return undefined
  return afterVariantChange(trx, outbox, row.product_id)
}

/**
 * The variant, read again once its product is locked; undefined when it is gone. It was looked up
 * before the lock, and a delete (which takes the same lock first) may have committed in between.
 * Answering then as for an unknown variant is what the request gets when the delete comes first;
 * writing on would update nothing (and answer 200) or break the prices' foreign key.
 */
async function lockedVariant(trx: Tx, variantId: string) {
  return trx
    .selectFrom('product_variants')
    .select(['sku', 'title', 'options'])
    .where('id', '=', variantId)
    .executeTakeFirst()
}

/**
 * A variant's new title when its title was generated (defaultVariantTitle) and what it is built
 * from changes: its options or SKU, or the product's option order. Undefined when the title was
 * the staff's own, or stays the same: a custom title is never rewritten, a generated one never
 * left naming options the variant no longer has.
 */
export function generatedTitleAfter(
  before: readonly ProductOption[],
  after: readonly ProductOption[],
  stored: { sku: string; title: string; options: Record<string, string> },
  change: { sku?: string; options?: Record<string, string> },
): string | undefined {
  if (stored.title !== defaultVariantTitle(before, stored)) return undefined
  const title = defaultVariantTitle(after, {
    sku: change.sku ?? stored.sku,
    options: change.options ?? stored.options,
  })
  return title === stored.title ? undefined : title
}

async function afterVariantChange(
  trx: Tx,
  outbox: Outbox,
  productId: string,
): Promise<ProductView | undefined> {
  await trx
    .updateTable('products')
    .set({ updated_at: sql<Date>`now()` })
    .where('id', '=', productId)
    .execute()
  await refreshReadModels(trx, [productId])
  const [product] = await loadProducts(trx, [productId])
  await outbox.emit(trx, 'product.updated', { product, changed: ['variants'] }, productId)
  return product
}

/** Lists products for the admin, newest first, optionally by status. */
export async function listProductIds(
  db: Queryable,
  options: { limit: number; afterId?: string; status?: 'draft' | 'published' | 'archived' },
): Promise<string[]> {
  let query = db
    .selectFrom('products')
    .select('id')
    .orderBy('id', 'desc')
    .limit(options.limit + 1)
  if (options.status) query = query.where('status', '=', options.status)
  if (options.afterId) query = query.where('id', '<', options.afterId)
  return (await query.execute()).map((r) => r.id)
}
