/** Catalog routes: the storefront read path (`/store/products`) and product admin (`/admin/products`). */

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { runIdempotent } from '../../platform/http/idempotency.ts'
import { errorResponses, ListOf, ListQuery } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { CreateProduct, Product, ProductIdParams, ProductRefParams, UpdateProduct } from './schemas.ts'
import { createProduct, deleteProduct, findProduct, listProducts, updateProduct } from './service.ts'

const AdminListQuery = Type.Object(
  {
    ...ListQuery.properties,
    status: Type.Optional(
      Type.Union([Type.Literal('draft'), Type.Literal('published'), Type.Literal('archived')]),
    ),
  },
  { additionalProperties: false },
)

export const catalogRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database
  app.addSchema(Product)

  app.get(
    '/store/products',
    {
      schema: {
        tags: ['store'],
        summary: 'List published products, newest first',
        querystring: ListQuery,
        response: { 200: ListOf(Type.Ref('Product')), ...errorResponses },
      },
    },
    async (request) =>
      listProducts(db, {
        limit: request.query.limit ?? 20,
        cursor: request.query.cursor,
        status: 'published',
      }),
  )

  app.get(
    '/store/products/:ref',
    {
      schema: {
        tags: ['store'],
        summary: 'A published product by id or handle',
        params: ProductRefParams,
        response: { 200: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request) => {
      const product = await findProduct(db, request.params.ref, { status: 'published' })
      if (!product) throw problem('not_found', `No product ${request.params.ref}`)
      return product
    },
  )

  app.get(
    '/admin/products',
    {
      config: { permission: 'products:read' },
      schema: {
        tags: ['catalog'],
        summary: 'List products in every status',
        security: [{ bearer: [] }],
        querystring: AdminListQuery,
        response: { 200: ListOf(Type.Ref('Product')), ...errorResponses },
      },
    },
    async (request) =>
      listProducts(db, {
        limit: request.query.limit ?? 20,
        cursor: request.query.cursor,
        status: request.query.status,
      }),
  )

  app.get(
    '/admin/products/:id',
    {
      config: { permission: 'products:read' },
      schema: {
        tags: ['catalog'],
        summary: 'A product by id',
        security: [{ bearer: [] }],
        params: ProductIdParams,
        response: { 200: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request) => {
      const product = await findProduct(db, request.params.id)
      if (!product) throw problem('not_found', `No product ${request.params.id}`)
      return product
    },
  )

  app.post(
    '/admin/products',
    {
      config: { permission: 'products:write', idempotency: 'optional' },
      schema: {
        tags: ['catalog'],
        summary: 'Create a product',
        description: 'Send an `Idempotency-Key` to make retries safe: a repeat replays the first response.',
        security: [{ bearer: [] }],
        body: CreateProduct,
        response: { 201: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(201)
      return runIdempotent(db, request, reply, (trx) => createProduct(trx, runtime.outbox, request.body))
    },
  )

  app.patch(
    '/admin/products/:id',
    {
      config: { permission: 'products:write' },
      schema: {
        tags: ['catalog'],
        summary: 'Update a product',
        security: [{ bearer: [] }],
        params: ProductIdParams,
        body: UpdateProduct,
        response: { 200: Type.Ref('Product'), ...errorResponses },
      },
    },
    async (request) => {
      const product = await withTransaction(db, (trx) =>
        updateProduct(trx, runtime.outbox, request.params.id, request.body),
      )
      if (!product) throw problem('not_found', `No product ${request.params.id}`)
      return product
    },
  )

  app.delete(
    '/admin/products/:id',
    {
      config: { permission: 'products:delete' },
      schema: {
        tags: ['catalog'],
        summary: 'Delete a product',
        security: [{ bearer: [] }],
        params: ProductIdParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const deleted = await withTransaction(db, (trx) =>
        deleteProduct(trx, runtime.outbox, request.params.id),
      )
      if (!deleted) throw problem('not_found', `No product ${request.params.id}`)
      reply.code(204)
      return null
    },
  )
}
