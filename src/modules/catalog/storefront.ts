/**
 * The storefront read model: published products listed with filters, sorts, search, facets and the
 * price a shopper in a region sees, and one product's page. Each answer is one SQL statement (facets
 * aside), because the list is most of a store's traffic and a round trip is most of its cost.
 */
import { createHash } from 'node:crypto'
import { type RawBuilder, sql } from 'kysely'
import { PREPARE_MARK, UNPREPARED_MARK } from '../../platform/db/statements.ts'
import type { Queryable } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { type CursorKey, decodeCursor, encodeCursor } from '../../platform/http/pagination.ts'
import { inStockSql } from '../inventory/availability.ts'
import {
  activeListSql,
  numberOrNull,
  type PricingContext,
  type ShopperPrice,
  shopperPrice,
} from './pricing.ts'
import { STORE_LIST_TAG_LENGTH } from './schemas.ts'
import { type SearchTerms, searchCondition, searchRank, trigramAvailable } from './search.ts'

export type StoreSort = 'newest' | 'price_asc' | 'price_desc' | 'name' | 'best_selling' | 'relevance'

export interface StoreListInput {
  limit: number
  cursor?: string
  regionId?: string
  search?: SearchTerms
  categoryId?: string
  collectionId?: string
  tags?: string[]
  /** key → accepted values (any of them). */
  attributes?: Map<string, string[]>
  priceMin?: number
  priceMax?: number
  inStock?: boolean
  sort?: StoreSort
  facets?: boolean
  customerGroupIds: readonly string[]
  at: Date
}

export interface StoreProductSummary {
  id: string
  handle: string
  title: string
  subtitle: string
  thumbnail: { url: string; alt: string } | null
  tags: string[]
  price: ShopperPrice | null
  created_at: string
}

export interface FacetCount {
  value: string
  count: number
}

export interface Facets {
  categories: FacetCount[]
  tags: FacetCount[]
  attributes: Record<string, FacetCount[]>
  collections: FacetCount[]
}

export interface StoreProductList {
  data: StoreProductSummary[]
  next_cursor: string | null
  facets?: Facets
}

/** Relevance pages by offset (ranks are floats, a poor keyset); this caps how deep one can go. */
const MAX_SEARCH_OFFSET = 10_000

/** The plain list and the product page have one fixed text each: worth keeping prepared. */
const prepared = sql.raw(PREPARE_MARK)
/** Filtered lists, searches and facets: the best plan depends on the values (see hasFilters). */
const unprepared = sql.raw(UNPREPARED_MARK)

interface Region {
  currency: string
  includesTax: boolean
}

/** The region's currency and tax display; a 400 naming the field when there is no such region. */
export async function findRegionForShopper(db: Queryable, regionId: string): Promise<Region> {
  const row = await db
    .selectFrom('regions')
    .select(['currency_code', 'prices_include_tax'])
    .where('id', '=', regionId)
    .executeTakeFirst()
  if (!row) throw unknownRegion()
  return { currency: row.currency_code, includesTax: row.prices_include_tax }
}

function unknownRegion() {
  return problem('validation_failed', 'No such region', {
    errors: [{ path: 'query.region_id', message: 'no such region' }],
  })
}

function needsRegion(field: string) {
  return problem('validation_failed', `${field} needs region_id, which decides the currency`, {
    errors: [{ path: `query.${field}`, message: 'needs region_id' }],
  })
}

/** The filter part of the list, shared by the page query and the facet queries. */
function filterConditions(
  input: StoreListInput,
  currency: RawBuilder<string> | undefined,
  pricesJoined = false,
): RawBuilder<boolean>[] {
  const where: RawBuilder<boolean>[] = [sql<boolean>`p.status = 'published'`]
  // A product without a price in the region's currency cannot be bought there: leave it out.
  if (pricesJoined) where.push(sql<boolean>`pp.product_id is not null`)
  else if (currency)
    where.push(
      sql<boolean>`exists (select 1 from product_prices pp0 where pp0.product_id = p.id and pp0.currency_code = ${currency})`,
    )
  if (input.search) where.push(searchCondition(input.search))
  if (input.categoryId)
    where.push(sql<boolean>`exists (
      select 1 from product_categories pc
      where pc.product_id = p.id and pc.category_id in (
        select c.id from categories c, categories root
        where root.id = ${input.categoryId} and (c.id = root.id or c.path like root.path || '/%')))`)
  if (input.collectionId) where.push(sql<boolean>`p.collection_id = ${input.collectionId}`)
  if (input.tags?.length) where.push(sql<boolean>`p.tags @> ${input.tags}::text[]`)
  for (const [key, values] of input.attributes ?? []) {
    const anyOf = values.map(
      (value) => sql<boolean>`p.attributes @> ${JSON.stringify({ [key]: value })}::jsonb`,
    )
    where.push(sql<boolean>`(${sql.join(anyOf, sql` or `)})`)
  }
  if (input.priceMin !== undefined || input.priceMax !== undefined) {
    where.push(sql<boolean>`exists (
      select 1 from product_prices pr where pr.product_id = p.id and pr.currency_code = ${currency}
        and pr.min_amount >= ${input.priceMin ?? 0} and pr.min_amount <= ${input.priceMax ?? Number.MAX_SAFE_INTEGER})`)
  }
  if (input.inStock)
    // Read model across modules: the inventory module decides what "in stock" means.
    where.push(
      sql<boolean>`exists (select 1 from product_variants iv where iv.product_id = p.id and ${inStockSql('iv')})`,
    )
  return where
}

/** The products of the list: joined with the search read model when words are searched. */
function productsFrom(input: StoreListInput): RawBuilder<unknown> {
  return input.search?.mode === 'words'
    ? sql`products p join product_search s on s.product_id = p.id`
    : sql`products p`
}

/**
 * Relevance when the search is the only filter: products whose title holds the words first, then
 * those matching elsewhere, newest first within each tier. Each tier walks the newest products and
 * stops after `take` matches, so a broad word ("hoodie" in 5% of 100,000 products) costs a few
 * index pages instead of ranking every match; the second tier is read only when the first runs
 * out, because the planner cannot tell how few "matches, but not in the title" there are. Not
 * prepared: the planner needs the words to choose between walking the primary key (common words)
 * and the text index (rare ones). Returns the ids in order.
 */
async function titleFirstIds(
  db: Queryable,
  terms: SearchTerms,
  currency: string | undefined,
  take: number,
): Promise<string[]> {
  const priced = currency ? sql`and s.currencies @> array[${currency}]::text[]` : sql``
  const inTitle = await sql<{ product_id: string }>`
    ${unprepared} select s.product_id from product_search s
    where s.status = 'published' and s.search @@ to_tsquery('english', ${terms.titleTsquery}) ${priced}
    order by s.product_id desc limit ${sql.lit(take)}`.execute(db)
  const ids = inTitle.rows.map((r) => r.product_id)
  if (ids.length >= take) return ids
  const elsewhere = await sql<{ product_id: string }>`
    ${unprepared} select s.product_id from product_search s
    where s.status = 'published' and s.search @@ to_tsquery('english', ${terms.tsquery})
      and not s.search @@ to_tsquery('english', ${terms.titleTsquery}) ${priced}
    order by s.product_id desc limit ${sql.lit(take - ids.length)}`.execute(db)
  return ids.concat(elsewhere.rows.map((r) => r.product_id))
}

/**
 * True when the list has any filter. Only the plain list keeps a prepared generic plan: with a
 * filter or another sort the best plan depends on the values (a big category or a small one),
 * and generic plans were five times slower there.
 */
function hasFilters(input: StoreListInput): boolean {
  return (
    input.search !== undefined ||
    Boolean(input.categoryId || input.collectionId || input.tags?.length || input.attributes?.size) ||
    input.priceMin !== undefined ||
    input.priceMax !== undefined ||
    Boolean(input.inStock)
  )
}

/** True when the search is the only filter, so ranking can run on the narrow table alone. */
function searchOnly(input: StoreListInput): boolean {
  return (
    input.search?.mode === 'words' &&
    !input.categoryId &&
    !input.collectionId &&
    !input.tags?.length &&
    !input.attributes?.size &&
    input.priceMin === undefined &&
    input.priceMax === undefined &&
    !input.inStock
  )
}

interface Ordering {
  orderBy: RawBuilder<unknown>
  /** Columns the sort's key needs beyond the row's own (with a leading comma), or nothing. */
  keyColumns?: RawBuilder<unknown>
  after: RawBuilder<boolean> | null
  offset: number
  keyOf: (row: ListRow, index: number) => CursorKey
  shape: Array<'string' | 'number'>
}

/**
 * A cursor is its sort's name, its list's tag and then the sort key of the last row served. Several
 * sorts share a key's shape (an amount or a count, then an id), and every filter shares each sort's,
 * so without the two a cursor of another sort, filter or region would be read as this list's key and
 * silently skip or repeat products (a price of another currency, an offset into other matches).
 */
function cursorKey(
  cursor: string,
  sort: StoreSort,
  input: StoreListInput,
  shape: Array<'string' | 'number'>,
) {
  const [name, list, ...key] = decodeCursor(cursor, ['string', 'string', ...shape])
  if (name !== sort)
    throw problem('invalid_cursor', 'The cursor belongs to another sort', {
      errors: [{ path: 'query.cursor', message: 'not a cursor from this sort' }],
    })
  if (list !== listTag(input))
    throw problem('invalid_cursor', 'The cursor belongs to another filter or region', {
      errors: [{ path: 'query.cursor', message: 'not a cursor from this list: start again without it' }],
    })
  return key
}

/**
 * What a list's cursors are bound to: its region and filters, in a canonical order (tags and
 * attribute values are sets). Not the shopper's customer groups, which change on sign-in while a
 * shopper pages, nor the search mode, which a relevance cursor carries itself.
 */
function listTag(input: StoreListInput): string {
  const attributes = [...(input.attributes ?? [])]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([key, values]) => [key, [...values].sort()])
  const filters = [
    input.regionId ?? null,
    input.search?.text ?? null,
    input.categoryId ?? null,
    input.collectionId ?? null,
    [...(input.tags ?? [])].sort(),
    attributes,
    input.priceMin ?? null,
    input.priceMax ?? null,
    input.inStock === true,
  ]
  return createHash('sha256')
    .update(JSON.stringify(filters))
    .digest('base64url')
    .slice(0, STORE_LIST_TAG_LENGTH)
}

function ordering(sort: StoreSort, input: StoreListInput, priced: boolean): Ordering {
  const key = (shape: Array<'string' | 'number'>) =>
    input.cursor ? cursorKey(input.cursor, sort, input, shape) : null
  switch (sort) {
    case 'relevance': {
      if (!input.search)
        throw problem('validation_failed', 'sort=relevance needs q', {
          errors: [{ path: 'query.sort', message: 'needs q' }],
        })
      const [offset = 0] = (key(['number', 'string']) ?? []) as number[]
      if (!Number.isInteger(offset) || offset < 0 || offset > MAX_SEARCH_OFFSET)
        throw problem('invalid_cursor', 'The cursor does not belong to this list', {
          errors: [{ path: 'query.cursor', message: 'not a cursor from this list' }],
        })
      return {
        orderBy: sql`${searchRank(input.search)} desc, p.id desc`,
        after: null,
        offset,
        keyOf: (_row, index) => [offset + index + 1, input.search?.mode ?? 'words'],
        shape: ['number', 'string'],
      }
    }
    case 'name': {
      // Alphabetical whatever the case ("apple" beside "Apple", not after "Zebra"), as the database
      // folds it: the key carries the folded title it read, so pages meet exactly where they stop.
      const k = key(['string', 'string', 'string'])
      return {
        orderBy: sql`lower(p.title), p.title, p.id`,
        keyColumns: sql`, lower(p.title) as title_key`,
        after: k ? sql<boolean>`(lower(p.title), p.title, p.id) > (${k[0]}, ${k[1]}, ${k[2]})` : null,
        offset: 0,
        keyOf: (row) => [row.title_key ?? row.title, row.title, row.id],
        shape: ['string', 'string', 'string'],
      }
    }
    case 'price_asc':
    case 'price_desc': {
      if (!priced) throw needsRegion('sort')
      const k = key(['number', 'string'])
      const dir = sort === 'price_asc' ? sql`asc` : sql`desc`
      const cmp = sort === 'price_asc' ? sql`>` : sql`<`
      return {
        orderBy: sql`pp.min_amount ${dir}, p.id ${dir}`,
        after: k ? sql<boolean>`(pp.min_amount, p.id) ${cmp} (${k[0]}::bigint, ${k[1]})` : null,
        offset: 0,
        keyOf: (row) => [Number(row.base_amount), row.id],
        shape: ['number', 'string'],
      }
    }
    case 'best_selling': {
      const k = key(['number', 'string'])
      return {
        orderBy: sql`p.sales_count desc, p.id desc`,
        after: k ? sql<boolean>`(p.sales_count, p.id) < (${k[0]}::bigint, ${k[1]})` : null,
        offset: 0,
        keyOf: (row) => [row.sales_count, row.id],
        shape: ['number', 'string'],
      }
    }
    default: {
      const k = key(['string'])
      return {
        orderBy: sql`p.id desc`,
        after: k ? sql<boolean>`p.id < ${k[0]}` : null,
        offset: 0,
        keyOf: (row) => [row.id],
        shape: ['string'],
      }
    }
  }
}

interface ListRow {
  id: string
  handle: string
  title: string
  subtitle: string
  thumbnail: { url: string; alt: string } | null
  tags: string[]
  created_at: Date
  sales_count: number
  base_amount: number | string | null
  base_compare_at: number | string | null
  list_amount: number | string | null
  list_base_amount: number | string | null
  price_list_id: string | null
  currency: string | null
  includes_tax: boolean | null
  /** The folded title, read for the name sort's key only. */
  title_key?: string
}

/** A page of published products for the storefront, priced for the region when one is given. */
export async function listStoreProducts(db: Queryable, input: StoreListInput): Promise<StoreProductList> {
  if (!input.regionId && (input.priceMin !== undefined || input.priceMax !== undefined))
    throw needsRegion(input.priceMin !== undefined ? 'price_min' : 'price_max')
  const relevance = input.search && (input.sort ?? 'relevance') === 'relevance'
  if (relevance && input.search && input.cursor) {
    // A relevance cursor carries the search mode its first page settled on.
    const [, mode] = cursorKey(input.cursor, 'relevance', input, ['number', 'string'])
    if (mode !== 'words' && mode !== 'trigram' && mode !== 'substring')
      throw problem('invalid_cursor', 'The cursor does not belong to this list', {
        errors: [{ path: 'query.cursor', message: 'not a cursor from this list' }],
      })
    input = { ...input, search: { ...input.search, mode } }
  } else if (relevance && input.search) {
    // Typo tolerance: when the words find nothing, search again by similarity (or substring).
    const exact = await listPage(db, input)
    if (exact.data.length > 0) return withFacets(db, input, exact)
    const mode = (await trigramAvailable(db)) ? 'trigram' : 'substring'
    return pageWithFacets(db, { ...input, search: { ...input.search, mode } })
  }
  return pageWithFacets(db, input)
}

/** A page and its facets, counted with the same matching (a typo search's looser thresholds too). */
function pageWithFacets(db: Queryable, input: StoreListInput): Promise<StoreProductList> {
  const both = async (q: Queryable) => withFacets(q, input, await listPage(q, input))
  return input.search?.mode === 'trigram' ? withTypoThresholds(db, both) : both(db)
}

/**
 * Runs a trigram search with thresholds loose enough for one typo in a short word ("hoddie" is 0.4
 * word-similar to "hoodie"; pg_trgm's default wants 0.6), set for this transaction only.
 */
async function withTypoThresholds<T>(db: Queryable, run: (q: Queryable) => Promise<T>): Promise<T> {
  if (!('transaction' in db)) return run(db)
  return db.transaction().execute(async (trx) => {
    await sql`select set_config('pg_trgm.similarity_threshold', '0.25', true),
      set_config('pg_trgm.word_similarity_threshold', '0.4', true)`.execute(trx)
    return run(trx)
  })
}

async function withFacets(
  db: Queryable,
  input: StoreListInput,
  page: StoreProductList,
): Promise<StoreProductList> {
  if (!input.facets) return page
  const region = input.regionId ? await findRegionForShopper(db, input.regionId) : undefined
  return { ...page, facets: await facetCounts(db, input, region && sql<string>`${region.currency}`) }
}

async function listPage(db: Queryable, input: StoreListInput): Promise<StoreProductList> {
  // The region is read in the same statement (CTE r): one round trip per page.
  const currency = input.regionId ? sql<string>`(select currency_code from r)` : undefined
  const sort = input.sort ?? (input.search ? 'relevance' : 'newest')
  const order = ordering(sort, input, currency !== undefined)
  const where = filterConditions(input, currency, currency !== undefined)
  if (order.after) where.push(order.after)
  const activeList = activeListSql({ customerGroupIds: input.customerGroupIds, at: input.at })
  const priceJoin = currency
    ? sql`
      left join product_prices pp on pp.product_id = p.id and pp.currency_code = ${currency}
      left join lateral (
        select lp.min_amount, lp.base_amount, lp.price_list_id
        from price_list_product_prices lp join price_lists pl on pl.id = lp.price_list_id
        where lp.product_id = p.id and lp.currency_code = ${currency} and ${activeList}
        order by lp.min_amount, lp.price_list_id limit 1
      ) best on true`
    : sql``
  const priceColumns = currency
    ? sql`pp.min_amount as base_amount, pp.min_compare_at_amount as base_compare_at,
          best.min_amount as list_amount, best.base_amount as list_base_amount, best.price_list_id,
          (select currency_code from r) as currency, (select prices_include_tax from r) as includes_tax`
    : sql`null as base_amount, null as base_compare_at, null as list_amount, null as list_base_amount,
          null as price_list_id, null as currency, null as includes_tax`
  const region = sql`with r as (select currency_code, prices_include_tax from regions where id = ${input.regionId ?? null})`
  // Tags as JSON: JSON.parse is native, where pg's text[] parser walks the literal in JavaScript.
  const columns = sql`p.id, p.handle, p.title, p.subtitle, p.media -> 0 as thumbnail, to_json(p.tags) as tags,
    p.created_at, p.sales_count`
  const fastSearch = sort === 'relevance' && input.search !== undefined && searchOnly(input)
  let pageIds: string[] | undefined
  if (fastSearch && input.search) {
    // The planner must see the currency itself to estimate how many matches are priced in it.
    const searchCurrency = input.regionId
      ? (await findRegionForShopper(db, input.regionId)).currency
      : undefined
    const ids = await titleFirstIds(db, input.search, searchCurrency, input.limit + 1 + order.offset)
    pageIds = ids.slice(order.offset)
  }
  const { rows } =
    pageIds !== undefined
      ? pageIds.length === 0
        ? { rows: [] as ListRow[] }
        : await sql<ListRow>`
          ${region}
          select ${columns}, ${priceColumns}
          from products p ${priceJoin}
          where p.id = any(${pageIds}::text[])
          order by array_position(${pageIds}::text[], p.id)`.execute(db)
      : await sql<ListRow>`
          ${sort === 'newest' && !hasFilters(input) ? prepared : unprepared} ${region}
          select ${columns}, ${priceColumns} ${order.keyColumns ?? sql``}
          from ${productsFrom(input)} ${priceJoin}
          where ${sql.join(where, sql` and `)}
          order by ${order.orderBy}
          limit ${sql.lit(input.limit + 1)} offset ${sql.lit(order.offset)}`.execute(db)
  // No rows may mean no such region: tell the shopper which (a 400), not an empty page.
  if (rows.length === 0 && input.regionId) await findRegionForShopper(db, input.regionId)
  const page = rows.slice(0, input.limit)
  const last = page[page.length - 1]
  const key = rows.length > input.limit && last ? order.keyOf(last, page.length - 1) : null
  // Relevance pages end where offsets stop being accepted, rather than with a cursor that is refused.
  const nextKey = sort === 'relevance' && key && (key[0] as number) > MAX_SEARCH_OFFSET ? null : key
  return {
    data: page.map((row) => ({
      id: row.id,
      handle: row.handle,
      title: row.title,
      subtitle: row.subtitle,
      thumbnail: row.thumbnail,
      tags: row.tags,
      price: row.currency
        ? priceOf(
            {
              currency: row.currency,
              includesTax: row.includes_tax === true,
              customerGroupIds: input.customerGroupIds,
              at: input.at,
            },
            row,
          )
        : null,
      created_at: row.created_at.toISOString(),
    })),
    next_cursor: nextKey ? encodeCursor([sort, listTag(input), ...nextKey]) : null,
  }
}

/**
 * The "from" price of a list row. The product's base row and its best list row may come from two
 * different variants, so each is priced alone: a sale shows the saving against its own variant's
 * prices (the read model's list_base_amount), never the compare-at of the cheapest base variant.
 */
function priceOf(context: PricingContext, row: ListRow): ShopperPrice | null {
  const base =
    row.base_amount === null
      ? null
      : { amount: Number(row.base_amount), compare_at_amount: numberOrNull(row.base_compare_at) }
  if (row.list_amount !== null && row.price_list_id !== null) {
    const list = {
      amount: Number(row.list_amount),
      price_list_id: row.price_list_id,
      base_amount: numberOrNull(row.list_base_amount),
    }
    if (!base || list.amount < base.amount) return shopperPrice(context, null, list)
  }
  return shopperPrice(context, base, null)
}

/** Counts per category, tag, collection and attribute value among the products the filter matches. */
async function facetCounts(
  db: Queryable,
  input: StoreListInput,
  currency: RawBuilder<string> | undefined,
): Promise<Facets> {
  const where = sql.join(filterConditions(input, currency), sql` and `)
  const [categories, tags, collections, attributes] = await Promise.all([
    // A category counts what its filter lists: products in it or any descendant, each once. A
    // category's path holds its ancestors' ids and its own, so each assignment counts towards all.
    sql<{ value: string; count: number }>`
      ${unprepared} select anc.id as value, count(distinct p.id)::int as count
      from ${productsFrom(input)} join product_categories pc on pc.product_id = p.id
        join categories c on c.id = pc.category_id
        cross join unnest(string_to_array(c.path, '/')) as anc(id)
      where ${where} group by 1 order by 2 desc, 1 limit 100`.execute(db),
    sql<{ value: string; count: number }>`
      ${unprepared} select t as value, count(*)::int as count from ${productsFrom(input)} cross join unnest(p.tags) t
      where ${where} group by 1 order by 2 desc, 1 limit 100`.execute(db),
    sql<{ value: string; count: number }>`
      ${unprepared} select p.collection_id as value, count(*)::int as count from ${productsFrom(input)}
      where ${where} and p.collection_id is not null group by 1 order by 2 desc, 1 limit 100`.execute(db),
    sql<{ key: string; value: string; count: number }>`
      ${unprepared} select a.key, a.value, count(*)::int as count from ${productsFrom(input)}
        cross join jsonb_each_text(p.attributes) a
      where ${where} group by 1, 2 order by 1, 3 desc, 2 limit 1000`.execute(db),
  ])
  const byKey: Record<string, FacetCount[]> = {}
  for (const row of attributes.rows) {
    const counts = byKey[row.key] ?? []
    counts.push({ value: row.value, count: row.count })
    byKey[row.key] = counts
  }
  return { categories: categories.rows, tags: tags.rows, collections: collections.rows, attributes: byKey }
}

export interface StoreVariant {
  id: string
  /** Whether it can be bought now; exact counts stay private to the back office. */
  in_stock: boolean
  sku: string
  title: string
  options: Record<string, string>
  weight_g: number | null
  price: ShopperPrice | null
}

export interface StoreProduct {
  id: string
  handle: string
  title: string
  subtitle: string
  description: string
  collection: { id: string; handle: string; title: string } | null
  category_ids: string[]
  tax_category: string
  options: Array<{ name: string; values: string[] }>
  tags: string[]
  attributes: Record<string, string>
  media: Array<{ url: string; alt: string }>
  variants: StoreVariant[]
  created_at: string
  updated_at: string
}

/**
 * One variant as the product page's statement sends it: an array, not an object, because naming
 * every field of every variant in JSON was about a sixth of the statement's cost.
 */
type DetailVariantRow = [
  id: string,
  sku: string,
  title: string,
  options: Record<string, string>,
  weight_g: number | null,
  in_stock: boolean,
  amount: number | null,
  compare_at_amount: number | null,
  list_amount: number | null,
  price_list_id: string | null,
]

/** A published product by id or handle, variants priced for the region; undefined when none. */
export async function getStoreProduct(
  db: Queryable,
  ref: string,
  options: { regionId?: string; customerGroupIds: readonly string[]; at: Date },
): Promise<StoreProduct | undefined> {
  const context: PricingContext = {
    currency: '',
    includesTax: false,
    customerGroupIds: options.customerGroupIds,
    at: options.at,
  }
  const { rows } = await sql<
    Omit<StoreProduct, 'variants' | 'created_at' | 'updated_at'> & {
      variants: DetailVariantRow[]
      created_at: Date
      updated_at: Date
      currency: string | null
      includes_tax: boolean | null
      region_found: boolean
    }
  >`
    ${prepared} with r as (select currency_code, prices_include_tax from regions where id = ${options.regionId ?? null})
    select p.id, p.handle, p.title, p.subtitle, p.description, p.tax_category, p.options, p.tags, p.attributes,
      p.media, p.created_at, p.updated_at,
      (select json_build_object('id', c.id, 'handle', c.handle, 'title', c.title)
         from collections c where c.id = p.collection_id) as collection,
      array(select pc.category_id from product_categories pc where pc.product_id = p.id order by 1) as category_ids,
      (select coalesce(json_agg(json_build_array(
          v.id, v.sku, v.title, v.options, v.weight_g, ${inStockSql('v')},
          vp.amount, vp.compare_at_amount, best.amount, best.price_list_id) order by v.position, v.id), '[]')
        from product_variants v
        left join variant_prices vp on vp.variant_id = v.id and vp.currency_code = (select currency_code from r)
        left join lateral (
          select plp.amount, plp.price_list_id
          from price_list_prices plp join price_lists pl on pl.id = plp.price_list_id
          where plp.variant_id = v.id and plp.currency_code = (select currency_code from r)
            and ${activeListSql(context)}
          order by plp.amount, plp.price_list_id limit 1
        ) best on true
        where v.product_id = p.id) as variants,
      (select currency_code from r) as currency,
      (select prices_include_tax from r) as includes_tax,
      exists (select 1 from r) as region_found
    from products p
    where ${sql.ref(ref.startsWith('prod_') ? 'p.id' : 'p.handle')} = ${ref} and p.status = 'published'`.execute(
    db,
  )
  const row = rows[0]
  if (!row) {
    if (options.regionId) await findRegionForShopper(db, options.regionId)
    return undefined
  }
  if (options.regionId && !row.region_found) throw unknownRegion()
  const priced: PricingContext | undefined = row.currency
    ? { ...context, currency: row.currency, includesTax: row.includes_tax === true }
    : undefined
  const { currency: _c, includes_tax: _i, region_found: _r, ...product } = row
  return {
    ...product,
    variants: row.variants.map(
      ([
        id,
        sku,
        title,
        options,
        weight_g,
        in_stock,
        amount,
        compare_at_amount,
        list_amount,
        price_list_id,
      ]) => ({
        id,
        sku,
        title,
        options,
        weight_g,
        in_stock,
        price: priced
          ? shopperPrice(
              priced,
              amount === null
                ? null
                : { amount: Number(amount), compare_at_amount: numberOrNull(compare_at_amount) },
              list_amount === null || price_list_id === null
                ? null
                : { amount: Number(list_amount), price_list_id, base_amount: numberOrNull(amount) },
            )
          : null,
      }),
    ),
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  }
}

/** The variant ids of a published product by id or handle, in display order; undefined when none. */
export async function publishedVariantIds(
  db: Queryable,
  ref: string,
): Promise<{ productId: string; variantIds: string[] } | undefined> {
  const product = await db
    .selectFrom('products')
    .select('id')
    .where(ref.startsWith('prod_') ? 'id' : 'handle', '=', ref)
    .where('status', '=', 'published')
    .executeTakeFirst()
  if (!product) return undefined
  const variants = await db
    .selectFrom('product_variants')
    .select('id')
    .where('product_id', '=', product.id)
    .orderBy('position')
    .orderBy('id')
    .execute()
  return { productId: product.id, variantIds: variants.map((v) => v.id) }
}
