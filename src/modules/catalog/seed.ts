/**
 * Catalog seeds. The demo store (regions EU, UK and US, a category tree, collections, a dozen
 * products with sizes and colours) gives a fresh install something to look at; the generated
 * catalog (`seed --products 100000`) gives benchmarks and load tests a realistic one: 3 to 20
 * variants per product, prices in EUR, GBP and USD, tags, attributes and media.
 */
import { sql } from 'kysely'
import { withTransaction } from '../../platform/db/transaction.ts'
import { newId } from '../../platform/ids.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { bulkUpsertProducts, type ProductDocument } from './bulk.ts'
import { catalogCacheOf } from './cache.ts'

const REGIONS = [
  {
    name: 'Europe',
    currency: 'EUR',
    inclusive: true,
    countries: ['AT', 'BE', 'DE', 'ES', 'FI', 'FR', 'IE', 'IT', 'NL', 'PT'],
  },
  { name: 'United Kingdom', currency: 'GBP', inclusive: true, countries: ['GB'] },
  { name: 'United States', currency: 'USD', inclusive: false, countries: ['US'] },
] as const

/** Top-level categories and their children; product types are drawn per child. */
const TREE: Record<string, Record<string, string[]>> = {
  Apparel: {
    'T-Shirts': ['Tee', 'Crew Neck Tee', 'Henley'],
    Hoodies: ['Hoodie', 'Zip Hoodie', 'Sweatshirt'],
    Jackets: ['Jacket', 'Parka', 'Windbreaker'],
    Trousers: ['Chinos', 'Joggers', 'Jeans'],
  },
  Footwear: {
    Sneakers: ['Sneaker', 'Runner', 'Court Shoe'],
    Boots: ['Boot', 'Chelsea Boot', 'Hiking Boot'],
    Sandals: ['Sandal', 'Slide'],
  },
  Home: {
    Kitchen: ['Mug', 'Bowl', 'Knife', 'Cutting Board'],
    Textiles: ['Blanket', 'Cushion', 'Towel'],
    Lighting: ['Lamp', 'Pendant Light'],
  },
  Outdoors: {
    Camping: ['Tent', 'Sleeping Bag', 'Camp Stove'],
    Bags: ['Backpack', 'Duffel', 'Tote'],
  },
  Accessories: {
    Hats: ['Beanie', 'Cap', 'Bucket Hat'],
    Socks: ['Socks', 'Running Socks'],
  },
}

const ADJECTIVES = [
  'Classic',
  'Everyday',
  'Heritage',
  'Lightweight',
  'Rugged',
  'Essential',
  'Premium',
  'Urban',
  'Alpine',
  'Coastal',
  'Vintage',
  'Modern',
  'Organic',
  'Recycled',
  'Compact',
  'Waxed',
  'Quilted',
]
const MATERIALS: Record<string, string[]> = {
  Apparel: ['cotton', 'wool', 'linen', 'hemp', 'polyester', 'fleece'],
  Footwear: ['leather', 'suede', 'canvas', 'mesh', 'rubber'],
  Home: ['stoneware', 'oak', 'linen', 'steel', 'bamboo', 'glass'],
  Outdoors: ['nylon', 'ripstop', 'canvas', 'polyester', 'steel'],
  Accessories: ['merino', 'cotton', 'wool', 'acrylic'],
}
const COLOURS = ['Black', 'White', 'Navy', 'Olive', 'Sand', 'Rust', 'Grey', 'Forest', 'Burgundy', 'Sky']
const SIZES = ['XS', 'S', 'M', 'L', 'XL', 'XXL']
const TAGS = [
  'new',
  'bestseller',
  'sustainable',
  'limited',
  'gift',
  'sale',
  'vegan',
  'handmade',
  'outdoor',
  'travel',
]
const FITS = ['slim', 'regular', 'relaxed', 'oversized']

/** A small deterministic generator, so two seeds of the same size make the same catalog. */
function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface Taxonomy {
  leaves: Array<{ id: string; root: string; types: string[] }>
  collections: string[]
}

/** The category tree, collections and regions of the generated catalog. */
export async function seedTaxonomy(runtime: Runtime): Promise<Taxonomy> {
  const leaves: Taxonomy['leaves'] = []
  const collections: string[] = []
  await withTransaction(runtime.database.db, async (trx) => {
    const slug = (s: string) =>
      s
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, '-')
        .replace(/^-|-$/g, '')
    let rootPosition = 0
    for (const [root, children] of Object.entries(TREE)) {
      const rootId = newId('cat')
      await trx
        .insertInto('categories')
        .values({
          id: rootId,
          parent_id: null,
          handle: slug(root),
          name: root,
          position: rootPosition++,
          path: rootId,
        })
        .execute()
      let position = 0
      for (const [child, types] of Object.entries(children)) {
        const id = newId('cat')
        await trx
          .insertInto('categories')
          .values({
            id,
            parent_id: rootId,
            handle: slug(child),
            name: child,
            position: position++,
            path: `${rootId}/${id}`,
          })
          .execute()
        leaves.push({ id, root, types })
      }
    }
    for (const [handle, title] of [
      ['spring-edit', 'The Spring Edit'],
      ['staff-picks', 'Staff Picks'],
      ['gift-guide', 'Gift Guide'],
      ['outdoor-essentials', 'Outdoor Essentials'],
    ] as const) {
      const id = newId('col')
      await trx.insertInto('collections').values({ id, handle, title, metadata: '{}' }).execute()
      collections.push(id)
    }
    for (const region of REGIONS) {
      const id = newId('reg')
      await trx
        .insertInto('regions')
        .values({
          id,
          name: region.name,
          currency_code: region.currency,
          prices_include_tax: region.inclusive,
          metadata: '{}',
        })
        .execute()
      await trx
        .insertInto('region_countries')
        .values(region.countries.map((country_code) => ({ country_code, region_id: id })))
        .execute()
    }
  })
  return { leaves, collections }
}

/** Rounds to a price that ends in 99 (or 0 for currencies without minor units). */
function charmPrice(minor: number): number {
  return Math.max(99, Math.round(minor / 100) * 100 - 1)
}

/** The n-th generated product: deterministic for (n, taxonomy). */
export function generatedProduct(n: number, taxonomy: Taxonomy): ProductDocument {
  const rand = random(n * 7919 + 17)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)] as T
  const leaf = pick(taxonomy.leaves)
  const type = pick(leaf.types)
  const adjective = pick(ADJECTIVES)
  const material = pick(MATERIALS[leaf.root] ?? ['cotton'])
  const title = `${adjective} ${material[0]?.toUpperCase()}${material.slice(1)} ${type}`
  const handle = `${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${n}`
  // 3 to 20 variants: sizes × colours chosen to land in that range.
  const sizeCount = 1 + Math.floor(rand() * SIZES.length)
  const minColours = Math.ceil(3 / sizeCount)
  const maxColours = Math.min(COLOURS.length, Math.floor(20 / sizeCount))
  const colourCount = minColours + Math.floor(rand() * (maxColours - minColours + 1))
  const start = Math.floor(rand() * SIZES.length)
  const sizes = Array.from({ length: sizeCount }, (_, i) => SIZES[(start + i) % SIZES.length] as string)
  const colourStart = Math.floor(rand() * COLOURS.length)
  const colours = Array.from(
    { length: colourCount },
    (_, i) => COLOURS[(colourStart + i) % COLOURS.length] as string,
  )
  const base = 500 + Math.floor(rand() * 195) * 100
  const variants = sizes.flatMap((size, si) =>
    colours.map((colour, ci) => {
      const eur = charmPrice(base + si * 200)
      const onSale = rand() < 0.1
      return {
        sku: `SW-${n}-${si}${ci}`,
        options: { Size: size, Colour: colour },
        weight_g: 150 + Math.floor(rand() * 1500),
        prices: [
          { currency: 'EUR', amount: eur, compare_at_amount: onSale ? charmPrice(eur * 1.25) : null },
          { currency: 'GBP', amount: charmPrice(eur * 0.86) },
          { currency: 'USD', amount: charmPrice(eur * 1.08) },
        ],
      }
    }),
  )
  const tags = TAGS.filter(() => rand() < 0.2)
  return {
    handle,
    title,
    subtitle: `${material} ${type.toLowerCase()} in ${colourCount} colours`,
    description: `${title}: made from ${material}, designed for ${pick(['city', 'trail', 'home', 'travel', 'work'])} use. ${leaf.root} you will reach for every day.`,
    status: rand() < 0.95 ? 'published' : 'draft',
    category_ids: [leaf.id],
    collection_id: rand() < 0.3 ? pick(taxonomy.collections) : null,
    tax_category: 'standard',
    options: [
      { name: 'Size', values: sizes },
      { name: 'Colour', values: colours },
    ],
    tags,
    attributes: { material, fit: pick(FITS) },
    media: [
      { url: `https://cdn.shopwright.dev/demo/${handle}/1.jpg`, alt: title },
      { url: `https://cdn.shopwright.dev/demo/${handle}/2.jpg`, alt: `${title}, detail` },
    ],
    variants,
  }
}

async function productCount(runtime: Runtime): Promise<number> {
  const { count } = await runtime.database.db
    .selectFrom('products')
    .select(sql<number>`count(*)::int`.as('count'))
    .executeTakeFirstOrThrow()
  return count
}

/**
 * Seeds the catalog unless products exist: the taxonomy and regions, then `products` generated
 * products in batches (each its own transaction, so progress survives an interruption). Returns
 * how many products it created.
 */
export async function seedCatalog(
  runtime: Runtime,
  options: { products: number; batchSize?: number; onProgress?: (done: number) => void },
): Promise<number> {
  if ((await productCount(runtime)) > 0) return 0
  const taxonomy = await seedTaxonomy(runtime)
  const batchSize = options.batchSize ?? 1000
  for (let start = 0; start < options.products; start += batchSize) {
    const docs = Array.from({ length: Math.min(batchSize, options.products - start) }, (_, i) =>
      generatedProduct(start + i + 1, taxonomy),
    )
    await withTransaction(runtime.database.db, (trx) => bulkUpsertProducts(trx, docs))
    options.onProgress?.(start + docs.length)
  }
  // Best-selling needs history; give the generated catalog some.
  await sql`update products set sales_count = (abs(hashtext(id)) % 1000)`.execute(runtime.database.db)
  // Fresh statistics, or the planner keeps the row counts of the empty tables and picks scans
  // that cost a second per page where an index costs a millisecond.
  await sql`analyze`.execute(runtime.database.db)
  await catalogCacheOf(runtime).invalidate()
  return options.products
}

/** Seeds the small demo catalog a fresh install starts with. */
export function seedDemoCatalog(runtime: Runtime): Promise<number> {
  return seedCatalog(runtime, { products: 24 })
}
