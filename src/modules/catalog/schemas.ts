/** Wire schemas of the catalog API: products, variants, prices, taxonomy, regions and price lists. */
import { type TSchema, Type } from 'typebox'
import { DateTimeInput } from '../../platform/http/schemas.ts'

export const Handle = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[a-z0-9]+(?:-[a-z0-9]+)*$',
  description: 'URL slug: lowercase letters, digits and single hyphens',
})

export const ProductStatus = Type.Union([
  Type.Literal('draft'),
  Type.Literal('published'),
  Type.Literal('archived'),
])

/**
 * TypeBox turns a record's key schema into `patternProperties` alone: the key's other limits are
 * dropped, and a key that misses the pattern is not checked at all (nor is its value). So each
 * record below states `propertyNames` and `additionalProperties` itself.
 */
const MetadataKey = Type.String({ maxLength: 64 })
/** Free-form keys (any text up to 64 characters) and values. */
const Metadata = Type.Record(MetadataKey, Type.Unknown(), { maxProperties: 50, propertyNames: MetadataKey })
const Text = (max: number) => Type.String({ maxLength: max })
const NAME_MAX_LENGTH = 255
const Name = Type.String({ minLength: 1, maxLength: NAME_MAX_LENGTH })
const Id = (prefix: string) => Type.String({ pattern: `^${prefix}_[0-9a-z]{26}$` })
const Timestamp = DateTimeInput()
const CurrencyCode = Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217 code' })
const CountryCode = Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2 code' })
/** Integer minor units; 10^12 leaves room for any price and stays exact in a double. */
const Amount = Type.Integer({ minimum: 0, maximum: 1_000_000_000_000 })

export const TaxCategory = Type.String({
  pattern: '^[a-z][a-z0-9_]{0,39}$',
  description: 'Tax category code (standard, reduced, zero, books, food, digital_services, …)',
})

const OptionName = Type.String({ minLength: 1, maxLength: 64 })
const OptionValue = Type.String({ minLength: 1, maxLength: 64 })

export const ProductOption = Type.Object(
  {
    name: OptionName,
    values: Type.Array(OptionValue, { minItems: 1, maxItems: 100, uniqueItems: true }),
  },
  { additionalProperties: false },
)

/**
 * Storefronts put media URLs in `src` and `href` as they come, so only web addresses are taken: a
 * `javascript:` or `data:` URL from a hostile feed would run in the shopper's browser. The scheme is
 * case-insensitive (RFC 3986), as browsers read it.
 */
const MediaUrl = Type.String({
  format: 'uri',
  pattern: '^[Hh][Tt][Tt][Pp][Ss]?://',
  maxLength: 2048,
  description: 'An http: or https: URL',
})

export const MediaItem = Type.Object(
  {
    url: MediaUrl,
    alt: Type.String({ maxLength: 512 }),
  },
  { additionalProperties: false },
)

const Tag = Type.String({ minLength: 1, maxLength: 64, pattern: '^[^,]+$' })
// The length is in the pattern so that a key out of bounds is named as such (an unknown field).
const AttributeKey = Type.String({ pattern: '^[a-z0-9_]{1,64}$' })
const Attributes = Type.Record(AttributeKey, Type.String({ minLength: 1, maxLength: 128 }), {
  maxProperties: 50,
  additionalProperties: false,
})

export const PriceInput = Type.Object(
  {
    currency: CurrencyCode,
    amount: Amount,
    compare_at_amount: Type.Optional(Type.Union([Amount, Type.Null()])),
  },
  { additionalProperties: false },
)

const Dimension = Type.Union([Type.Integer({ minimum: 0, maximum: 10_000_000 }), Type.Null()])

const variantFields = {
  title: Type.Optional(Name),
  // Option names are as free as the product's (any text): every key's value is checked.
  options: Type.Optional(
    Type.Record(OptionName, OptionValue, {
      maxProperties: 10,
      propertyNames: OptionName,
      additionalProperties: OptionValue,
    }),
  ),
  barcode: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()])),
  weight_g: Type.Optional(Dimension),
  length_mm: Type.Optional(Dimension),
  width_mm: Type.Optional(Dimension),
  height_mm: Type.Optional(Dimension),
  manage_inventory: Type.Optional(Type.Boolean()),
  requires_shipping: Type.Optional(
    Type.Boolean({
      description: 'False for goods delivered without a parcel (downloads, gift codes); default true',
    }),
  ),
  prices: Type.Optional(Type.Array(PriceInput, { maxItems: 50 })),
  metadata: Type.Optional(Metadata),
}

export const Sku = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._/-]*$' })

export const VariantInput = Type.Object(
  { sku: Sku, ...variantFields },
  { additionalProperties: false, $id: 'VariantInput' },
)

export const UpdateVariant = Type.Object(
  { sku: Type.Optional(Sku), ...variantFields },
  { additionalProperties: false, minProperties: 1 },
)

const productFields = {
  title: Name,
  subtitle: Type.Optional(Text(255)),
  description: Type.Optional(Text(20_000)),
  status: Type.Optional(ProductStatus),
  collection_id: Type.Optional(Type.Union([Id('col'), Type.Null()])),
  category_ids: Type.Optional(Type.Array(Id('cat'), { maxItems: 50, uniqueItems: true })),
  tax_category: Type.Optional(TaxCategory),
  options: Type.Optional(Type.Array(ProductOption, { maxItems: 5 })),
  tags: Type.Optional(Type.Array(Tag, { maxItems: 50, uniqueItems: true })),
  attributes: Type.Optional(Attributes),
  media: Type.Optional(Type.Array(MediaItem, { maxItems: 50 })),
  metadata: Type.Optional(Metadata),
}

export const CreateProduct = Type.Object(
  {
    handle: Handle,
    ...productFields,
    variants: Type.Optional(Type.Array(VariantInput, { maxItems: 500 })),
  },
  { additionalProperties: false },
)

export const UpdateProduct = Type.Object(
  { handle: Type.Optional(Handle), ...productFields, title: Type.Optional(Name) },
  { additionalProperties: false, minProperties: 1 },
)

/**
 * A product as a bulk import reads it. An import upserts by handle, so a field the document leaves
 * out keeps the stored value (a new product gets the default), and `null` clears a field that may
 * be empty: text to '', lists to [], objects to {}, a variant's title to the one made of its
 * option values. The title is needed only for a new product (bulk.ts checks).
 */
const orNull = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()])

export const ImportVariant = Type.Object(
  {
    sku: Sku,
    ...variantFields,
    title: Type.Optional(orNull(Name)),
    metadata: Type.Optional(orNull(Metadata)),
  },
  { additionalProperties: false },
)

export const ImportProduct = Type.Object(
  {
    handle: Handle,
    ...productFields,
    title: Type.Optional(Name),
    subtitle: Type.Optional(orNull(Text(255))),
    description: Type.Optional(orNull(Text(20_000))),
    category_ids: Type.Optional(orNull(Type.Array(Id('cat'), { maxItems: 50, uniqueItems: true }))),
    tags: Type.Optional(orNull(Type.Array(Tag, { maxItems: 50, uniqueItems: true }))),
    attributes: Type.Optional(orNull(Attributes)),
    media: Type.Optional(orNull(Type.Array(MediaItem, { maxItems: 50 }))),
    metadata: Type.Optional(orNull(Metadata)),
    variants: Type.Optional(Type.Array(ImportVariant, { maxItems: 500 })),
  },
  { additionalProperties: false },
)

export const VariantPrice = Type.Object({
  amount: Type.Integer(),
  currency: Type.String(),
  compare_at_amount: Type.Union([Type.Integer(), Type.Null()]),
})

export const Variant = Type.Object(
  {
    id: Type.String({ description: 'var_…' }),
    sku: Type.String(),
    title: Type.String(),
    options: Type.Record(Type.String(), Type.String()),
    barcode: Type.Union([Type.String(), Type.Null()]),
    weight_g: Type.Union([Type.Integer(), Type.Null()]),
    length_mm: Type.Union([Type.Integer(), Type.Null()]),
    width_mm: Type.Union([Type.Integer(), Type.Null()]),
    height_mm: Type.Union([Type.Integer(), Type.Null()]),
    position: Type.Integer(),
    manage_inventory: Type.Boolean(),
    requires_shipping: Type.Boolean(),
    prices: Type.Array(VariantPrice),
    metadata: Type.Record(Type.String(), Type.Unknown()),
  },
  { $id: 'Variant' },
)

const productViewFields = {
  id: Type.String({ description: 'prod_…' }),
  handle: Type.String(),
  title: Type.String(),
  subtitle: Type.String(),
  description: Type.String(),
  status: ProductStatus,
  collection_id: Type.Union([Type.String(), Type.Null()]),
  category_ids: Type.Array(Type.String()),
  tax_category: Type.String(),
  options: Type.Array(Type.Object({ name: Type.String(), values: Type.Array(Type.String()) })),
  tags: Type.Array(Type.String()),
  attributes: Type.Record(Type.String(), Type.String()),
  media: Type.Array(Type.Object({ url: Type.String(), alt: Type.String() })),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  created_at: Timestamp,
  updated_at: Timestamp,
}

export const Product = Type.Object(
  { ...productViewFields, variants: Type.Array(Type.Ref('Variant')) },
  { $id: 'Product' },
)

/** The price a shopper sees: resolved for their region, customer group and the moment. */
export const ShopperPrice = Type.Object(
  {
    amount: Type.Integer(),
    currency: Type.String(),
    compare_at_amount: Type.Union([Type.Integer(), Type.Null()]),
    includes_tax: Type.Boolean(),
    price_list_id: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'ShopperPrice' },
)

const Thumbnail = Type.Union([Type.Object({ url: Type.String(), alt: Type.String() }), Type.Null()])

export const StoreProductSummary = Type.Object(
  {
    id: Type.String(),
    handle: Type.String(),
    title: Type.String(),
    subtitle: Type.String(),
    thumbnail: Thumbnail,
    tags: Type.Array(Type.String()),
    price: Type.Union([Type.Ref('ShopperPrice'), Type.Null()], {
      description: 'The lowest price among the variants ("from"); null without a region',
    }),
    created_at: Timestamp,
  },
  { $id: 'StoreProductSummary' },
)

export const StoreVariant = Type.Object(
  {
    id: Type.String(),
    sku: Type.String(),
    title: Type.String(),
    options: Type.Record(Type.String(), Type.String()),
    weight_g: Type.Union([Type.Integer(), Type.Null()]),
    in_stock: Type.Boolean({ description: 'Can be bought now (stock, or backorder or preorder room)' }),
    price: Type.Union([Type.Ref('ShopperPrice'), Type.Null()]),
  },
  { $id: 'StoreVariant' },
)

export const StoreProductAvailabilityQuery = Type.Object(
  {
    country: Type.Optional(
      Type.String({
        pattern: '^[A-Z]{2}$',
        description: 'Shipping country (ISO 3166-1 alpha-2): count only locations that ship there',
      }),
    ),
  },
  { additionalProperties: false },
)

export const StoreProductAvailability = Type.Object({
  product_id: Type.String(),
  variants: Type.Array(
    Type.Object({
      variant_id: Type.String(),
      in_stock: Type.Boolean(),
      available: Type.Union([Type.Integer(), Type.Null()], {
        description:
          'Units that can be bought now; null when unlimited (untracked, or backorder without a limit) or when the store does not publish counts (STOREFRONT_STOCK_COUNTS)',
      }),
      backorder: Type.Boolean(),
      preorder: Type.Boolean(),
    }),
  ),
})

export const StoreProduct = Type.Object(
  {
    id: Type.String(),
    handle: Type.String(),
    title: Type.String(),
    subtitle: Type.String(),
    description: Type.String(),
    collection: Type.Union([
      Type.Object({ id: Type.String(), handle: Type.String(), title: Type.String() }),
      Type.Null(),
    ]),
    category_ids: Type.Array(Type.String()),
    tax_category: Type.String(),
    options: Type.Array(Type.Object({ name: Type.String(), values: Type.Array(Type.String()) })),
    tags: Type.Array(Type.String()),
    attributes: Type.Record(Type.String(), Type.String()),
    media: Type.Array(Type.Object({ url: Type.String(), alt: Type.String() })),
    variants: Type.Array(Type.Ref('StoreVariant')),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'StoreProduct' },
)

export const FacetCount = Type.Object({ value: Type.String(), count: Type.Integer() })

export const StoreProductList = Type.Object({
  data: Type.Array(Type.Ref('StoreProductSummary')),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
  facets: Type.Optional(
    Type.Object({
      categories: Type.Array(FacetCount),
      tags: Type.Array(FacetCount),
      attributes: Type.Record(Type.String(), Type.Array(FacetCount)),
      collections: Type.Array(FacetCount),
    }),
  ),
})

export const StoreSort = Type.Union(
  [
    Type.Literal('newest'),
    Type.Literal('price_asc'),
    Type.Literal('price_desc'),
    Type.Literal('name'),
    Type.Literal('best_selling'),
    Type.Literal('relevance'),
  ],
  { description: 'Default: relevance with `q`, newest otherwise. Price sorts need `region_id`.' },
)

/** Characters of the list's tag in a store list cursor (66 bits of its filters' hash, storefront.ts). */
export const STORE_LIST_TAG_LENGTH = 11

/**
 * The longest cursor the list issues, so that every one it issues is accepted back: a name cursor
 * (`[sort, list tag, folded title, title, id]` as JSON in base64url, storefront.ts) whose title is
 * control characters, which JSON escapes as six bytes each (`\u0001`), more than any other
 * character costs. Sized with the longest sort name.
 */
const STORE_CURSOR_MAX_LENGTH = Math.ceil(
  ((JSON.stringify(['best_selling', '-'.repeat(STORE_LIST_TAG_LENGTH), '', '', `prod_${'0'.repeat(26)}`])
    .length +
    2 * 6 * NAME_MAX_LENGTH) *
    4) /
    3,
)

export const StoreListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: STORE_CURSOR_MAX_LENGTH })),
    region_id: Type.Optional(Id('reg')),
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    category_id: Type.Optional(Id('cat')),
    collection_id: Type.Optional(Id('col')),
    tag: Type.Optional(Type.Array(Tag, { maxItems: 10 })),
    attribute: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-z0-9_]+:.+$', maxLength: 200 }), {
        maxItems: 20,
        description: '`key:value`; several values of one key match any of them',
      }),
    ),
    price_min: Type.Optional(Amount),
    price_max: Type.Optional(Amount),
    in_stock: Type.Optional(Type.Boolean()),
    sort: Type.Optional(StoreSort),
    facets: Type.Optional(Type.Boolean({ description: 'Include facet counts for the current filter' })),
  },
  { additionalProperties: false },
)

export const StoreProductQuery = Type.Object(
  { region_id: Type.Optional(Id('reg')) },
  { additionalProperties: false },
)

export const ProductIdParams = Type.Object({ id: Id('prod') })
export const VariantIdParams = Type.Object({ id: Id('var') })
export const ProductRefParams = Type.Object({ ref: Type.String({ minLength: 1, maxLength: 128 }) })

export const Category = Type.Object(
  {
    id: Type.String(),
    parent_id: Type.Union([Type.String(), Type.Null()]),
    handle: Type.String(),
    name: Type.String(),
    description: Type.String(),
    position: Type.Integer(),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Category' },
)

export interface CategoryNodeShape {
  id: string
  handle: string
  name: string
  children: CategoryNodeShape[]
}

export const CategoryNode = Type.Cyclic(
  {
    CategoryNode: Type.Object({
      id: Type.String(),
      handle: Type.String(),
      name: Type.String(),
      description: Type.String(),
      children: Type.Array(Type.Ref('CategoryNode')),
    }),
  },
  'CategoryNode',
)

export const CreateCategory = Type.Object(
  {
    handle: Handle,
    name: Name,
    description: Type.Optional(Text(5_000)),
    parent_id: Type.Optional(Type.Union([Id('cat'), Type.Null()])),
    position: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
  },
  { additionalProperties: false },
)

export const UpdateCategory = Type.Object(
  {
    handle: Type.Optional(Handle),
    name: Type.Optional(Name),
    description: Type.Optional(Text(5_000)),
    parent_id: Type.Optional(Type.Union([Id('cat'), Type.Null()])),
    position: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const Collection = Type.Object(
  {
    id: Type.String(),
    handle: Type.String(),
    title: Type.String(),
    description: Type.String(),
    metadata: Type.Record(Type.String(), Type.Unknown()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Collection' },
)

export const CreateCollection = Type.Object(
  { handle: Handle, title: Name, description: Type.Optional(Text(5_000)), metadata: Type.Optional(Metadata) },
  { additionalProperties: false },
)

export const UpdateCollection = Type.Object(
  {
    handle: Type.Optional(Handle),
    title: Type.Optional(Name),
    description: Type.Optional(Text(5_000)),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const Region = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    currency: Type.String(),
    prices_include_tax: Type.Boolean(),
    countries: Type.Array(Type.String()),
    metadata: Type.Record(Type.String(), Type.Unknown()),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Region' },
)

export const CreateRegion = Type.Object(
  {
    name: Name,
    currency: CurrencyCode,
    prices_include_tax: Type.Boolean(),
    countries: Type.Array(CountryCode, { minItems: 1, maxItems: 250, uniqueItems: true }),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
)

export const UpdateRegion = Type.Object(
  {
    name: Type.Optional(Name),
    currency: Type.Optional(CurrencyCode),
    prices_include_tax: Type.Optional(Type.Boolean()),
    countries: Type.Optional(Type.Array(CountryCode, { minItems: 1, maxItems: 250, uniqueItems: true })),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const PriceListPriceInput = Type.Object(
  { variant_id: Id('var'), currency: CurrencyCode, amount: Amount },
  { additionalProperties: false },
)

export const PriceList = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    description: Type.String(),
    status: Type.Union([Type.Literal('active'), Type.Literal('draft')]),
    customer_group_id: Type.Union([Type.String(), Type.Null()]),
    starts_at: Type.Union([Timestamp, Type.Null()]),
    ends_at: Type.Union([Timestamp, Type.Null()]),
    prices: Type.Array(
      Type.Object({ variant_id: Type.String(), currency: Type.String(), amount: Type.Integer() }),
    ),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'PriceList' },
)

const priceListFields = {
  description: Type.Optional(Text(5_000)),
  status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('draft')])),
  customer_group_id: Type.Optional(Type.Union([Id('cgrp'), Type.Null()])),
  starts_at: Type.Optional(Type.Union([Timestamp, Type.Null()])),
  ends_at: Type.Optional(Type.Union([Timestamp, Type.Null()])),
  prices: Type.Optional(Type.Array(PriceListPriceInput, { maxItems: 10_000 })),
}

export const CreatePriceList = Type.Object(
  { name: Name, ...priceListFields },
  { additionalProperties: false },
)

export const UpdatePriceList = Type.Object(
  { name: Type.Optional(Name), ...priceListFields },
  { additionalProperties: false, minProperties: 1 },
)

export const CustomerGroup = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    description: Type.String(),
    customer_ids: Type.Array(Type.String()),
    created_at: Timestamp,
  },
  { $id: 'CustomerGroup' },
)

export const IdParams = (prefix: string) => Type.Object({ id: Id(prefix) })

export const CreateCustomerGroup = Type.Object(
  { name: Name, description: Type.Optional(Text(5_000)) },
  { additionalProperties: false },
)

export const UpdateCustomerGroup = Type.Object(
  { name: Type.Optional(Name), description: Type.Optional(Text(5_000)) },
  { additionalProperties: false, minProperties: 1 },
)

export const GroupCustomers = Type.Object(
  { customer_ids: Type.Array(Id('cus'), { minItems: 1, maxItems: 1_000, uniqueItems: true }) },
  { additionalProperties: false },
)

export const GroupCustomerParams = Type.Object({ id: Id('cgrp'), customerId: Id('cus') })

/** Admin list of price lists: cursor pages, optionally one status. */
export const PriceListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 2048 })),
    status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('draft')])),
  },
  { additionalProperties: false },
)
