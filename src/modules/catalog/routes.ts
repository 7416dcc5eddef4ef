/** Product admin routes (`/admin/products`, `/admin/variants`): create, read, update, archive, delete. */

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { runIdempotent } from '../../platform/http/idempotency.ts'
import { decodeCursor } from '../../platform/http/pagination.ts'
import { errorResponses, ListOf, ListQuery } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { catalogCacheOf } from './cache.ts'
import {
  addVariant,
  createProduct,
  deleteProduct,
  deleteVariant,
  getProduct,
  listProductIds,
  loadProducts,
  updateProduct,
  updateVariant,
} from './products.ts'
import {
  CreateProduct,
  Product,
  ProductIdParams,
  ProductStatus,
  UpdateProduct,
  UpdateVariant,
  Variant,
  VariantIdParams,
  VariantInput,
} from './schemas.ts'

const AdminListQuery = Type.Object(
  { ...ListQuery.properties, status: Type.Optional(ProductStatus) },
  { additionalProperties: false },
)

export const catalogRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database
  const cache = catalogCacheOf(runtime)
  app.addSchema(Variant)
  app.addSchema(Product)
  const security = [{ bearer: [] }]

  const notFound = (id: string) => problem('not_found', `No product ${id}`)

  app.get(
    '/admin/products',
    {
      config: { permission: 'products:read' },
      schema: {
        tags: ['catalog'],
        summary: 'List products in every status, newest first',
        security,
        querystring: AdminListQuery,
        response: { 200: ListOf(Type.Ref('Product')), ...errorResponses },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 20
      const afterId = request.query.cursor
        ? String(decodeCursor(request.query.cursor, ['string'])[0])
        : undefined
      const ids = await listProductIds(db, { limit, afterId, status: request.query.status })
      const page = ids.slice(0, limit)
      const last = page[page.length - 1]
      return {
        data: await loadProducts(db, page),
        next_cursor:
          ids.length > limit && last ? Buffer.from(JSON.stringify([last])).toString('base64url') : null,
      }
    },
  )

  app.get(
    '/admin/products/:id',
    {
      config: { permission: 'products:read' },
      schema: {
        tags: ['catalog'],
        summary: 'A product by id, with variants and every price',
        security,
        params: ProductIdParams,
        response: { 200: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request) =>
      (await getProduct(db, request.params.id)) ?? Promise.reject(notFound(request.params.id)),
  )

  app.post(
    '/admin/products',
    {
      config: { permission: 'products:write', idempotency: 'optional' },
      schema: {
        tags: ['catalog'],
        summary: 'Create a product with its variants and prices',
        description:
          'Each variant names a value for every product option (`options: {"Size": "M"}`); prices are ' +
          'integer minor units per currency. Send an `Idempotency-Key` to make retries safe.',
        security,
        body: CreateProduct,
        response: { 201: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(201)
      const product = await runIdempotent(db, request, reply, (trx) =>
        createProduct(trx, runtime.outbox, request.body),
      )
      await cache.invalidate()
      return product
    },
  )

  app.patch(
    '/admin/products/:id',
    {
      config: { permission: 'products:write' },
      schema: {
        tags: ['catalog'],
        summary: 'Update a product; archive it with `{"status": "archived"}`',
        security,
        params: ProductIdParams,
        body: UpdateProduct,
        response: { 200: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request) => {
      const product = await withTransaction(db, (trx) =>
        updateProduct(trx, runtime.outbox, request.params.id, request.body),
      )
      if (!product) throw notFound(request.params.id)
      await cache.invalidate()
      return product
    },
  )

  app.post(
    '/admin/products/:id/archive',
    {
      config: { permission: 'products:write' },
      schema: {
        tags: ['catalog'],
        summary: 'Archive a product: off the storefront, kept for orders and reports',
        security,
        params: ProductIdParams,
        response: { 200: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request) => {
      const product = await withTransaction(db, (trx) =>
        updateProduct(trx, runtime.outbox, request.params.id, { status: 'archived' }),
      )
      if (!product) throw notFound(request.params.id)
      await cache.invalidate()
      return product
    },
  )

  app.delete(
    '/admin/products/:id',
    {
      config: { permission: 'products:delete' },
      schema: {
        tags: ['catalog'],
        summary: 'Delete a product with its variants and prices',
        security,
        params: ProductIdParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const deleted = await withTransaction(db, (trx) =>
        deleteProduct(trx, runtime.outbox, request.params.id),
      )
      if (!deleted) throw notFound(request.params.id)
      await cache.invalidate()
      reply.code(204)
      return null
    },
  )

  app.post(
    '/admin/products/:id/variants',
    {
      config: { permission: 'products:write' },
      schema: {
        tags: ['catalog'],
        summary: 'Add a variant to a product',
        security,
        params: ProductIdParams,
        body: VariantInput,
        response: { 201: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request, reply) => {
      const product = await withTransaction(db, (trx) =>
        addVariant(trx, runtime.outbox, request.params.id, request.body),
      )
      if (!product) throw notFound(request.params.id)
      await cache.invalidate()
      reply.code(201)
      return product
    },
  )

  app.patch(
    '/admin/variants/:id',
    {
      config: { permission: 'products:write' },
      schema: {
        tags: ['catalog'],
        summary: 'Update a variant; `prices` replaces all its prices',
        security,
        params: VariantIdParams,
        body: UpdateVariant,
        response: { 200: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request) => {
      const product = await withTransaction(db, (trx) =>
        updateVariant(trx, runtime.outbox, request.params.id, request.body),
      )
      if (!product) throw problem('not_found', `No variant ${request.params.id}`)
      await cache.invalidate()
      return product
    },
  )

  app.delete(
    '/admin/variants/:id',
    {
      config: { permission: 'products:delete' },
      schema: {
        tags: ['catalog'],
        summary: 'Delete a variant',
        security,
        params: VariantIdParams,
        response: { 200: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request) => {
      const product = await withTransaction(db, (trx) =>
        deleteVariant(trx, runtime.outbox, request.params.id),
      )
      if (!product) throw problem('not_found', `No variant ${request.params.id}`)
      await cache.invalidate()
      return product
    },
  )
}
