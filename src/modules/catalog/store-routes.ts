/**
 * Storefront catalog routes: product list and page, live availability, categories tree,
 * collections and regions.
 * Responses come from the catalog cache, carry a strong ETag and a Cache-Control a CDN can honour
 * (public for anonymous shoppers; private when a signed-in customer may see group prices), and a
 * matching If-None-Match gets 304 with no body.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { markEdgeCacheable, matchesEtag } from '../../platform/http/edge-cache.ts'
import { problem } from '../../platform/http/errors.ts'
import { errorResponses } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { customerGroupIdsOf } from '../identity/customer-groups.ts'
import { variantAvailability } from '../inventory/availability.ts'
import { type CachedResponse, catalogCacheOf, sharedCaching } from './cache.ts'
import { nextPriceChange } from './price-lists.ts'
import { listRegions } from './regions.ts'
import {
  CategoryNode,
  Collection,
  ProductRefParams,
  Region,
  ShopperPrice,
  StoreListQuery,
  StoreProduct,
  StoreProductAvailability,
  StoreProductAvailabilityQuery,
  StoreProductList,
  StoreProductQuery,
  StoreProductSummary,
  StoreVariant,
} from './schemas.ts'
import { parseSearch } from './search.ts'
import { getStoreProduct, listStoreProducts, publishedVariantIds } from './storefront.ts'
import { categoryTree, listCollections } from './taxonomy.ts'

function parseAttributes(pairs: readonly string[] | undefined): Map<string, string[]> | undefined {
  if (!pairs?.length) return undefined
  const map = new Map<string, string[]>()
  for (const pair of pairs) {
    const colon = pair.indexOf(':')
    const key = pair.slice(0, colon)
    const values = map.get(key) ?? []
    values.push(pair.slice(colon + 1))
    map.set(key, values)
  }
  return map
}

export const catalogStoreRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database
  const cache = catalogCacheOf(runtime)
  const maxAge = runtime.config.catalogHttpMaxAgeSeconds
  for (const schema of [ShopperPrice, StoreProductSummary, StoreVariant, StoreProduct, Region, Collection])
    app.addSchema(schema)

  /**
   * Optional: anyone may read the catalog; a customer's access token adds their groups' prices (a
   * token that does not resolve is refused, never read as a guest's).
   */
  const shopperSecurity: Array<Record<string, string[]>> = [{}, { bearer: [] }]

  /** Group prices make a signed-in customer's view personal; anonymous views are shareable. */
  async function shopper(request: FastifyRequest) {
    const principal = request.principal
    if (principal?.kind !== 'customer') return { groups: [] as string[], personal: false }
    return { groups: await customerGroupIdsOf(db, principal.id), personal: true }
  }

  function send(request: FastifyRequest, reply: FastifyReply, cached: CachedResponse, personal: boolean) {
    const { version, expiresAt, changesAt } = cached
    const shared = sharedCaching(maxAge, Date.now(), changesAt, expiresAt)
    if (!personal && version !== undefined && shared.replayUntil !== undefined)
      markEdgeCacheable(request, { isCurrent: () => cache.isCurrent(version), expiresAt: shared.replayUntil })
    reply.header('etag', cached.etag)
    // Added to CORS's `Vary: Origin`, never in its place: a CDN must keep answers apart by both.
    const vary = reply.getHeader('vary')
    reply.header('vary', vary ? `${vary}, Authorization` : 'Authorization')
    reply.header('cache-control', personal ? 'private, no-cache' : shared.cacheControl)
    if (matchesEtag(request.headers['if-none-match'], cached.etag)) {
      reply.code(304)
      return reply.send()
    }
    reply.type('application/json; charset=utf-8')
    return reply.send(cached.body)
  }

  app.get(
    '/store/products',
    {
      config: { edgeCache: true },
      schema: {
        tags: ['store'],
        security: shopperSecurity,
        summary: 'List published products',
        description:
          'Filters combine with AND; `tag` and `attribute` repeat (`?tag=a&tag=b`). With `region_id` each ' +
          "product carries its lowest price in the region's currency, for the shopper and the moment, and " +
          'products without a price there are left out. Price sorts and filters use base prices.',
        querystring: StoreListQuery,
        response: { 200: StoreProductList, 304: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const query = request.query
      if (query.price_min !== undefined && query.price_max !== undefined && query.price_min > query.price_max)
        throw problem('validation_failed', 'price_min is above price_max', {
          errors: [{ path: 'query.price_min', message: 'must not exceed price_max' }],
        })
      const search = query.q === undefined ? undefined : parseSearch(query.q)
      const { groups, personal } = await shopper(request)
      const key = `list:${groups.join(',')}:${request.url.slice(request.url.indexOf('?') + 1)}`
      const cached = await cache.getOrRender(
        key,
        () =>
          listStoreProducts(db, {
            limit: query.limit ?? 20,
            cursor: query.cursor,
            regionId: query.region_id,
            search,
            categoryId: query.category_id,
            collectionId: query.collection_id,
            tags: query.tag,
            attributes: parseAttributes(query.attribute),
            priceMin: query.price_min,
            priceMax: query.price_max,
            inStock: query.in_stock,
            sort: query.sort,
            facets: query.facets,
            customerGroupIds: groups,
            at: new Date(),
          }),
        // Without a region nothing is priced, so no price list can change the answer.
        query.region_id === undefined ? undefined : () => nextPriceChange(db),
      )
      return send(request, reply, cached, personal)
    },
  )

  app.get(
    '/store/products/:ref',
    {
      config: { edgeCache: true },
      schema: {
        tags: ['store'],
        security: shopperSecurity,
        summary: 'A published product by id or handle, with variants, options and prices',
        params: ProductRefParams,
        querystring: StoreProductQuery,
        response: { 200: Type.Ref('StoreProduct'), 304: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { ref } = request.params
      const { groups, personal } = await shopper(request)
      const key = `product:${groups.join(',')}:${ref}:${request.query.region_id ?? ''}`
      const cached = await cache.getOrRender(
        key,
        async () =>
          (await getStoreProduct(db, ref, {
            regionId: request.query.region_id,
            customerGroupIds: groups,
            at: new Date(),
          })) ?? null,
        request.query.region_id === undefined ? undefined : () => nextPriceChange(db),
      )
      if (cached.empty) throw problem('not_found', `No product ${ref}`)
      return send(request, reply, cached, personal)
    },
  )

  app.get(
    '/store/products/:ref/availability',
    {
      schema: {
        tags: ['store'],
        summary: "Live availability of a product's variants",
        description:
          'Read from stock on every request and never cached, so product pages can stay cached. Units left are given only when the store publishes them (STOREFRONT_STOCK_COUNTS=true); otherwise `available` is null.',
        params: ProductRefParams,
        querystring: StoreProductAvailabilityQuery,
        response: { 200: StoreProductAvailability, ...errorResponses },
      },
    },
    async (request, reply) => {
      const { ref } = request.params
      const product = await publishedVariantIds(db, ref)
      if (!product) throw problem('not_found', `No product ${ref}`)
      const availability = await variantAvailability(db, product.variantIds, {
        country: request.query.country ?? null,
        exactCounts: runtime.config.storefrontStockCounts,
      })
      reply.header('cache-control', 'no-store')
      return {
        product_id: product.productId,
        variants: product.variantIds.map((id) => ({ variant_id: id, ...availability.get(id)! })),
      }
    },
  )

  app.get(
    '/store/categories',
    {
      config: { edgeCache: true },
      schema: {
        tags: ['store'],
        summary: 'The category tree',
        response: {
          200: Type.Object({ data: Type.Array(CategoryNode) }),
          304: Type.Null(),
          ...errorResponses,
        },
      },
    },
    async (request, reply) =>
      send(
        request,
        reply,
        await cache.getOrRender('categories', async () => ({ data: await categoryTree(db) })),
        false,
      ),
  )

  app.get(
    '/store/collections',
    {
      config: { edgeCache: true },
      schema: {
        tags: ['store'],
        summary: 'Every collection',
        response: {
          200: Type.Object({ data: Type.Array(Type.Ref('Collection')) }),
          304: Type.Null(),
          ...errorResponses,
        },
      },
    },
    async (request, reply) =>
      send(
        request,
        reply,
        await cache.getOrRender('collections', async () => ({ data: await listCollections(db) })),
        false,
      ),
  )

  app.get(
    '/store/regions',
    {
      config: { edgeCache: true },
      schema: {
        tags: ['store'],
        summary: 'Regions: the countries served, their currency and whether prices include tax',
        response: {
          200: Type.Object({ data: Type.Array(Type.Ref('Region')) }),
          304: Type.Null(),
          ...errorResponses,
        },
      },
    },
    async (request, reply) =>
      send(
        request,
        reply,
        await cache.getOrRender('regions', async () => ({ data: await listRegions(db) })),
        false,
      ),
  )
}
