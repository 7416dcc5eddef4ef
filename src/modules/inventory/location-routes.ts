/** Admin routes for stock locations. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { runIdempotent } from '../../platform/http/idempotency.ts'
import { errorResponses, ListOf, ListQuery } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { bumpCatalogVersion } from '../catalog/cache.ts'
import { createLocation, deleteLocation, findLocation, listLocations, updateLocation } from './locations.ts'
import { CreateLocation, LocationParams, UpdateLocation } from './schemas.ts'

const tags = ['inventory']
const security = [{ bearer: [] }]

export const locationRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database

  app.get(
    '/admin/inventory/locations',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags,
        security,
        summary: 'List stock locations in allocation order',
        querystring: ListQuery,
        response: { 200: ListOf(Type.Ref('InventoryLocation')), ...errorResponses },
      },
    },
    async (request) => listLocations(db, { limit: request.query.limit ?? 20, cursor: request.query.cursor }),
  )

  app.post(
    '/admin/inventory/locations',
    {
      config: { permission: 'inventory:write', idempotency: 'optional' },
      schema: {
        tags,
        security,
        summary: 'Create a stock location',
        body: CreateLocation,
        response: { 201: Type.Ref('InventoryLocation'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(201)
      return runIdempotent(db, request, reply, (trx) => createLocation(trx, request.body))
    },
  )

  app.get(
    '/admin/inventory/locations/:id',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags,
        security,
        summary: 'A stock location',
        params: LocationParams,
        response: { 200: Type.Ref('InventoryLocation'), ...errorResponses },
      },
    },
    async (request) => {
      const location = await findLocation(db, request.params.id)
      if (!location) throw problem('not_found', `No location ${request.params.id}`)
      return location
    },
  )

  app.patch(
    '/admin/inventory/locations/:id',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags,
        security,
        summary: 'Update a stock location',
        params: LocationParams,
        body: UpdateLocation,
        response: { 200: Type.Ref('InventoryLocation'), ...errorResponses },
      },
    },
    async (request) => {
      const location = await withTransaction(db, (trx) =>
        updateLocation(trx, request.params.id, request.body),
      )
      if (!location) throw problem('not_found', `No location ${request.params.id}`)
      // Stock at a location counts only while it is active: cached pages' availability follows it.
      if (request.body.active !== undefined) await bumpCatalogVersion(runtime.kv).catch(() => {})
      return location
    },
  )

  app.delete(
    '/admin/inventory/locations/:id',
    {
      config: { permission: 'inventory:delete' },
      schema: {
        tags,
        security,
        summary: 'Delete an empty stock location',
        params: LocationParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const deleted = await withTransaction(db, (trx) => deleteLocation(trx, request.params.id))
      if (!deleted) throw problem('not_found', `No location ${request.params.id}`)
      reply.code(204)
      return null
    },
  )
}
