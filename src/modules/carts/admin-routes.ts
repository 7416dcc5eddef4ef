/** Admin routes for shipping options (store settings) and per-variant purchase limits (catalog). */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { sql } from 'kysely'
import { Type } from 'typebox'
import { withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { errorResponses } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { holdVariants } from '../catalog/variants.ts'
import {
  CreateShippingOption,
  PurchaseLimit,
  PurchaseLimitInput,
  PurchaseLimitParams,
  ShippingOption,
  ShippingOptionParams,
  ShippingOptionQuery,
  UpdateShippingOption,
} from './schemas.ts'
import {
  createShippingOption,
  deleteShippingOption,
  listShippingOptions,
  updateShippingOption,
} from './shipping.ts'

const security = [{ bearer: [] }]
const one = { 200: Type.Ref('ShippingOption'), ...errorResponses }

export const cartAdminRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database
  app.addSchema(ShippingOption)
  const tags = ['shipping']

  app.get(
    '/admin/shipping-options',
    {
      config: { permission: 'settings:read' },
      schema: {
        tags,
        security,
        summary: 'Shipping options, of one region or all',
        querystring: ShippingOptionQuery,
        response: { 200: Type.Object({ data: Type.Array(Type.Ref('ShippingOption')) }), ...errorResponses },
      },
    },
    async (request) => ({ data: await listShippingOptions(db, request.query.region_id) }),
  )

  app.post(
    '/admin/shipping-options',
    {
      config: { permission: 'settings:write', idempotency: 'optional' },
      schema: {
        tags,
        security,
        summary: 'Create a flat, weight-tiered or carrier-calculated shipping option',
        body: CreateShippingOption,
        response: { 201: Type.Ref('ShippingOption'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(201)
      return withTransaction(db, (trx) => createShippingOption(trx, request.body))
    },
  )

  app.patch(
    '/admin/shipping-options/:id',
    {
      config: { permission: 'settings:write' },
      schema: {
        tags,
        security,
        summary: 'Change a shipping option',
        params: ShippingOptionParams,
        body: UpdateShippingOption,
        response: one,
      },
    },
    async (request) => {
      const option = await withTransaction(db, (trx) =>
        updateShippingOption(trx, request.params.id, request.body),
      )
      if (!option) throw problem('not_found', `No shipping option ${request.params.id}`)
      return option
    },
  )

  app.delete(
    '/admin/shipping-options/:id',
    {
      config: { permission: 'settings:delete' },
      schema: {
        tags,
        security,
        summary: 'Delete a shipping option',
        params: ShippingOptionParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const deleted = await withTransaction(db, (trx) => deleteShippingOption(trx, request.params.id))
      if (!deleted) throw problem('not_found', `No shipping option ${request.params.id}`)
      reply.code(204)
      return null
    },
  )

  app.put(
    '/admin/purchase-limits/:variant_id',
    {
      config: { permission: 'products:write' },
      schema: {
        tags: ['carts'],
        security,
        summary: 'Set how many of a variant one order line and one customer may buy (null: no limit)',
        params: PurchaseLimitParams,
        body: PurchaseLimitInput,
        response: { 200: PurchaseLimit, ...errorResponses },
      },
    },
    async (request) => {
      const { variant_id } = request.params
      // The variant is held (key-share locked) in the transaction that writes its limit: a delete
      // committed before is answered 404, as serially, and one that comes after waits for it.
      const row = await withTransaction(db, async (trx) => {
        if (!(await holdVariants(trx, [variant_id])).has(variant_id)) return undefined
        return trx
          .insertInto('purchase_limits')
          .values({ variant_id, ...request.body, updated_at: sql<Date>`now()` })
          .onConflict((oc) =>
            oc.column('variant_id').doUpdateSet({ ...request.body, updated_at: sql<Date>`now()` }),
          )
          .returning(['variant_id', 'max_per_line', 'max_per_customer'])
          .executeTakeFirstOrThrow()
      })
      if (!row) throw problem('not_found', `No variant ${variant_id}`)
      return row
    },
  )
}
