/**
 * Back-office routes for what surrounds products: categories, collections, regions, price lists
 * and customer groups. Every write commits in one transaction with its outbox event and then
 * invalidates the storefront cache, since each of these changes what shoppers see or pay.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { runIdempotent } from '../../platform/http/idempotency.ts'
import { decodeCursor } from '../../platform/http/pagination.ts'
import { errorResponses, ListOf } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import {
  addCustomersToGroup,
  createCustomerGroup,
  deleteCustomerGroup,
  getCustomerGroup,
  listCustomerGroups,
  removeCustomerFromGroup,
  updateCustomerGroup,
} from '../identity/customer-groups.ts'
import { catalogCacheOf } from './cache.ts'
import {
  createPriceList,
  deletePriceList,
  getPriceList,
  listPriceListIds,
  loadPriceLists,
  updatePriceList,
} from './price-lists.ts'
import { createRegion, deleteRegion, getRegion, listRegions, updateRegion } from './regions.ts'
import {
  Category,
  Collection,
  CreateCategory,
  CreateCollection,
  CreateCustomerGroup,
  CreatePriceList,
  CreateRegion,
  CustomerGroup,
  GroupCustomerParams,
  GroupCustomers,
  IdParams,
  PriceList,
  PriceListQuery,
  Region,
  UpdateCategory,
  UpdateCollection,
  UpdateCustomerGroup,
  UpdatePriceList,
  UpdateRegion,
} from './schemas.ts'
import {
  createCategory,
  createCollection,
  deleteCategory,
  deleteCollection,
  getCategory,
  getCollection,
  listCategories,
  listCollections,
  updateCategory,
  updateCollection,
} from './taxonomy.ts'

const CategoryParams = IdParams('cat')
const CollectionParams = IdParams('col')
const RegionParams = IdParams('reg')
const PriceListParams = IdParams('plist')
const GroupParams = IdParams('cgrp')

/** Registers the routes; the schemas they reference are added here, in this plugin's scope. */
export const catalogAdminTaxonomyRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (
  plain,
  { runtime },
) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database
  const cache = catalogCacheOf(runtime)
  for (const schema of [Category, Collection, Region, PriceList, CustomerGroup]) app.addSchema(schema)
  const security = [{ bearer: [] }]
  const read = { permission: 'products:read' }
  const write = { permission: 'products:write' }
  const remove = { permission: 'products:delete' }
  const create = { permission: 'products:write', idempotency: 'optional' as const }

  /**
   * Runs a write in a transaction, then (committed) drops the storefront's cached answers. A
   * not-found thrown inside rolls back and skips the invalidation.
   */
  async function change<T>(work: (trx: Tx) => Promise<T>): Promise<T> {
    const result = await withTransaction(db, work)
    await cache.invalidate()
    return result
  }

  const found = <T>(value: T | undefined, what: string, id: string): T => {
    if (value === undefined) throw problem('not_found', `No ${what} ${id}`)
    return value
  }
  const deleted = (done: boolean, what: string, id: string): void => {
    if (!done) throw problem('not_found', `No ${what} ${id}`)
  }

  // Categories.
  {
    const tags = ['catalog: categories']
    app.get(
      '/admin/categories',
      {
        config: read,
        schema: {
          tags,
          summary: 'Every category, flat, in display order (position, then name)',
          security,
          response: { 200: Type.Object({ data: Type.Array(Type.Ref('Category')) }), ...errorResponses },
        },
      },
      async () => ({ data: await listCategories(db) }),
    )
    app.get(
      '/admin/categories/:id',
      {
        config: read,
        schema: {
          tags,
          summary: 'A category',
          security,
          params: CategoryParams,
          response: { 200: Type.Ref('Category'), ...errorResponses },
        },
      },
      async (request) => found(await getCategory(db, request.params.id), 'category', request.params.id),
    )
    app.post(
      '/admin/categories',
      {
        config: create,
        schema: {
          tags,
          summary: 'Create a category, at the root or under `parent_id`',
          security,
          body: CreateCategory,
          response: { 201: Type.Ref('Category'), ...errorResponses },
        },
      },
      async (request, reply) => {
        reply.code(201)
        const category = await runIdempotent(db, request, reply, (trx) =>
          createCategory(trx, runtime.outbox, request.body),
        )
        await cache.invalidate()
        return category
      },
    )
    app.patch(
      '/admin/categories/:id',
      {
        config: write,
        schema: {
          tags,
          summary: 'Update a category; a new `parent_id` moves it with its subcategories',
          description:
            'Moving a category under itself or one of its descendants is refused with 409 `conflict`.',
          security,
          params: CategoryParams,
          body: UpdateCategory,
          response: { 200: Type.Ref('Category'), ...errorResponses },
        },
      },
      async (request) =>
        change(async (trx) =>
          found(
            await updateCategory(trx, runtime.outbox, request.params.id, request.body),
            'category',
            request.params.id,
          ),
        ),
    )
    app.delete(
      '/admin/categories/:id',
      {
        config: remove,
        schema: {
          tags,
          summary: 'Delete a category without subcategories; its products lose it',
          security,
          params: CategoryParams,
          response: { 204: Type.Null(), ...errorResponses },
        },
      },
      async (request, reply) => {
        await change(async (trx) =>
          deleted(
            await deleteCategory(trx, runtime.outbox, request.params.id),
            'category',
            request.params.id,
          ),
        )
        reply.code(204)
        return null
      },
    )
  }

  // Collections.
  {
    const tags = ['catalog: collections']
    app.get(
      '/admin/collections',
      {
        config: read,
        schema: {
          tags,
          summary: 'Every collection, by title',
          security,
          response: { 200: Type.Object({ data: Type.Array(Type.Ref('Collection')) }), ...errorResponses },
        },
      },
      async () => ({ data: await listCollections(db) }),
    )
    app.get(
      '/admin/collections/:id',
      {
        config: read,
        schema: {
          tags,
          summary: 'A collection',
          security,
          params: CollectionParams,
          response: { 200: Type.Ref('Collection'), ...errorResponses },
        },
      },
      async (request) => found(await getCollection(db, request.params.id), 'collection', request.params.id),
    )
    app.post(
      '/admin/collections',
      {
        config: create,
        schema: {
          tags,
          summary: 'Create a collection',
          security,
          body: CreateCollection,
          response: { 201: Type.Ref('Collection'), ...errorResponses },
        },
      },
      async (request, reply) => {
        reply.code(201)
        const collection = await runIdempotent(db, request, reply, (trx) =>
          createCollection(trx, runtime.outbox, request.body),
        )
        await cache.invalidate()
        return collection
      },
    )
    app.patch(
      '/admin/collections/:id',
      {
        config: write,
        schema: {
          tags,
          summary: 'Update a collection',
          security,
          params: CollectionParams,
          body: UpdateCollection,
          response: { 200: Type.Ref('Collection'), ...errorResponses },
        },
      },
      async (request) =>
        change(async (trx) =>
          found(
            await updateCollection(trx, runtime.outbox, request.params.id, request.body),
            'collection',
            request.params.id,
          ),
        ),
    )
    app.delete(
      '/admin/collections/:id',
      {
        config: remove,
        schema: {
          tags,
          summary: 'Delete a collection; its products stay, in no collection',
          security,
          params: CollectionParams,
          response: { 204: Type.Null(), ...errorResponses },
        },
      },
      async (request, reply) => {
        await change(async (trx) =>
          deleted(
            await deleteCollection(trx, runtime.outbox, request.params.id),
            'collection',
            request.params.id,
          ),
        )
        reply.code(204)
        return null
      },
    )
  }

  // Regions.
  {
    const tags = ['catalog: regions']
    app.get(
      '/admin/regions',
      {
        config: read,
        schema: {
          tags,
          summary: 'Every region with its countries',
          security,
          response: { 200: Type.Object({ data: Type.Array(Type.Ref('Region')) }), ...errorResponses },
        },
      },
      async () => ({ data: await listRegions(db) }),
    )
    app.get(
      '/admin/regions/:id',
      {
        config: read,
        schema: {
          tags,
          summary: 'A region',
          security,
          params: RegionParams,
          response: { 200: Type.Ref('Region'), ...errorResponses },
        },
      },
      async (request) => found(await getRegion(db, request.params.id), 'region', request.params.id),
    )
    app.post(
      '/admin/regions',
      {
        config: create,
        schema: {
          tags,
          summary: 'Create a region: countries, one currency, prices with or without tax',
          description:
            'A country belongs to at most one region; one held by another region is a 409 `conflict`.',
          security,
          body: CreateRegion,
          response: { 201: Type.Ref('Region'), ...errorResponses },
        },
      },
      async (request, reply) => {
        reply.code(201)
        const region = await runIdempotent(db, request, reply, (trx) =>
          createRegion(trx, runtime.outbox, request.body),
        )
        await cache.invalidate()
        return region
      },
    )
    app.patch(
      '/admin/regions/:id',
      {
        config: write,
        schema: {
          tags,
          summary: 'Update a region; `countries` replaces its countries',
          security,
          params: RegionParams,
          body: UpdateRegion,
          response: { 200: Type.Ref('Region'), ...errorResponses },
        },
      },
      async (request) =>
        change(async (trx) =>
          found(
            await updateRegion(trx, runtime.outbox, request.params.id, request.body),
            'region',
            request.params.id,
          ),
        ),
    )
    app.delete(
      '/admin/regions/:id',
      {
        config: remove,
        schema: {
          tags,
          summary: 'Delete a region',
          security,
          params: RegionParams,
          response: { 204: Type.Null(), ...errorResponses },
        },
      },
      async (request, reply) => {
        await change(async (trx) =>
          deleted(await deleteRegion(trx, runtime.outbox, request.params.id), 'region', request.params.id),
        )
        reply.code(204)
        return null
      },
    )
  }

  // Price lists.
  {
    const tags = ['catalog: price lists']
    app.get(
      '/admin/price-lists',
      {
        config: read,
        schema: {
          tags,
          summary: 'List price lists with their prices, newest first',
          security,
          querystring: PriceListQuery,
          response: { 200: ListOf(Type.Ref('PriceList')), ...errorResponses },
        },
      },
      async (request) => {
        const limit = request.query.limit ?? 20
        const afterId = request.query.cursor
          ? String(decodeCursor(request.query.cursor, ['string'])[0])
          : undefined
        const ids = await listPriceListIds(db, { limit, afterId, status: request.query.status })
        const page = ids.slice(0, limit)
        const last = page[page.length - 1]
        return {
          data: await loadPriceLists(db, page),
          next_cursor:
            ids.length > limit && last ? Buffer.from(JSON.stringify([last])).toString('base64url') : null,
        }
      },
    )
    app.get(
      '/admin/price-lists/:id',
      {
        config: read,
        schema: {
          tags,
          summary: 'A price list with its prices',
          security,
          params: PriceListParams,
          response: { 200: Type.Ref('PriceList'), ...errorResponses },
        },
      },
      async (request) => found(await getPriceList(db, request.params.id), 'price list', request.params.id),
    )
    app.post(
      '/admin/price-lists',
      {
        config: create,
        schema: {
          tags,
          summary: 'Create a price list: sale or customer-group prices, optionally between two moments',
          description:
            'A shopper pays the lowest of the base price and every active list that applies to them now; when ' +
            'a list wins, the base price is shown as the compare-at price.',
          security,
          body: CreatePriceList,
          response: { 201: Type.Ref('PriceList'), ...errorResponses },
        },
      },
      async (request, reply) => {
        reply.code(201)
        const list = await runIdempotent(db, request, reply, (trx) =>
          createPriceList(trx, runtime.outbox, request.body),
        )
        await cache.invalidate()
        return list
      },
    )
    app.patch(
      '/admin/price-lists/:id',
      {
        config: write,
        schema: {
          tags,
          summary: 'Update a price list; `prices` replaces all its prices',
          security,
          params: PriceListParams,
          body: UpdatePriceList,
          response: { 200: Type.Ref('PriceList'), ...errorResponses },
        },
      },
      async (request) =>
        change(async (trx) =>
          found(
            await updatePriceList(trx, runtime.outbox, request.params.id, request.body),
            'price list',
            request.params.id,
          ),
        ),
    )
    app.delete(
      '/admin/price-lists/:id',
      {
        config: remove,
        schema: {
          tags,
          summary: 'Delete a price list with its prices',
          security,
          params: PriceListParams,
          response: { 204: Type.Null(), ...errorResponses },
        },
      },
      async (request, reply) => {
        await change(async (trx) =>
          deleted(
            await deletePriceList(trx, runtime.outbox, request.params.id),
            'price list',
            request.params.id,
          ),
        )
        reply.code(204)
        return null
      },
    )
  }

  // Customer groups: membership decides which price lists apply, so changes invalidate the cache too.
  {
    const tags = ['admin: customer groups']
    app.get(
      '/admin/customer-groups',
      {
        config: { permission: 'customers:read' },
        schema: {
          tags,
          summary: 'Every customer group with its members’ ids',
          security,
          response: { 200: Type.Object({ data: Type.Array(Type.Ref('CustomerGroup')) }), ...errorResponses },
        },
      },
      async () => ({ data: await listCustomerGroups(db) }),
    )
    app.get(
      '/admin/customer-groups/:id',
      {
        config: { permission: 'customers:read' },
        schema: {
          tags,
          summary: 'A customer group',
          security,
          params: GroupParams,
          response: { 200: Type.Ref('CustomerGroup'), ...errorResponses },
        },
      },
      async (request) =>
        found(await getCustomerGroup(db, request.params.id), 'customer group', request.params.id),
    )
    app.post(
      '/admin/customer-groups',
      {
        config: { permission: 'customers:write', idempotency: 'optional' },
        schema: {
          tags,
          summary: 'Create a customer group',
          security,
          body: CreateCustomerGroup,
          response: { 201: Type.Ref('CustomerGroup'), ...errorResponses },
        },
      },
      async (request, reply) => {
        reply.code(201)
        const group = await runIdempotent(db, request, reply, (trx) =>
          createCustomerGroup(trx, runtime.outbox, request.body),
        )
        await cache.invalidate()
        return group
      },
    )
    app.patch(
      '/admin/customer-groups/:id',
      {
        config: { permission: 'customers:write' },
        schema: {
          tags,
          summary: 'Rename or describe a customer group',
          security,
          params: GroupParams,
          body: UpdateCustomerGroup,
          response: { 200: Type.Ref('CustomerGroup'), ...errorResponses },
        },
      },
      async (request) =>
        change(async (trx) =>
          found(
            await updateCustomerGroup(trx, runtime.outbox, request.params.id, request.body),
            'customer group',
            request.params.id,
          ),
        ),
    )
    app.delete(
      '/admin/customer-groups/:id',
      {
        config: { permission: 'customers:delete' },
        schema: {
          tags,
          summary: 'Delete a customer group; price lists that targeted it then apply to nobody',
          security,
          params: GroupParams,
          response: { 204: Type.Null(), ...errorResponses },
        },
      },
      async (request, reply) => {
        await change(async (trx) =>
          deleted(
            await deleteCustomerGroup(trx, runtime.outbox, request.params.id),
            'customer group',
            request.params.id,
          ),
        )
        reply.code(204)
        return null
      },
    )
    app.post(
      '/admin/customer-groups/:id/customers',
      {
        config: { permission: 'customers:write', idempotency: 'optional' },
        schema: {
          tags,
          summary: 'Add customers to a group (those already in it are left as they are)',
          security,
          params: GroupParams,
          body: GroupCustomers,
          response: { 200: Type.Ref('CustomerGroup'), ...errorResponses },
        },
      },
      async (request, reply) => {
        // Not found is thrown inside the work, so that is what an idempotent replay answers too.
        const group = await runIdempotent(db, request, reply, async (trx) =>
          found(
            await addCustomersToGroup(trx, runtime.outbox, request.params.id, request.body.customer_ids),
            'customer group',
            request.params.id,
          ),
        )
        await cache.invalidate()
        return group
      },
    )
    app.delete(
      '/admin/customer-groups/:id/customers/:customerId',
      {
        config: { permission: 'customers:write' },
        schema: {
          tags,
          summary: 'Remove a customer from a group',
          security,
          params: GroupCustomerParams,
          response: { 200: Type.Ref('CustomerGroup'), ...errorResponses },
        },
      },
      async (request) =>
        change(async (trx) =>
          found(
            await removeCustomerFromGroup(trx, runtime.outbox, request.params.id, request.params.customerId),
            'member',
            `${request.params.customerId} in customer group ${request.params.id}`,
          ),
        ),
    )
  }
}
