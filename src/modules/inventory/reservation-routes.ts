/** Admin routes for reservations: list, inspect, create, commit (sale) and release. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { problem } from '../../platform/http/errors.ts'
import { errorResponses, ListOf } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { inventoryContext } from './context.ts'
import { actorOf, inBody, runWrite } from './http.ts'
import {
  commitReservation,
  findReservation,
  listReservations,
  releaseReservation,
  reserve,
  reserveNow,
} from './reservations.ts'
import { CreateReservation, ReservationParams, ReservationQuery } from './schemas.ts'
import { resolveVariants } from './variants.ts'

const tags = ['inventory']
const security = [{ bearer: [] }]
const one = { 200: Type.Ref('InventoryReservation'), ...errorResponses }

export const reservationRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database

  app.get(
    '/admin/inventory/reservations',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags,
        security,
        summary: 'List reservations, newest first',
        querystring: ReservationQuery,
        response: { 200: ListOf(Type.Ref('InventoryReservation')), ...errorResponses },
      },
    },
    async (request) => {
      const q = request.query
      const variant =
        q.sku !== undefined || q.variant_id !== undefined
          ? (await resolveVariants(db, [q], ['query']))[0]
          : undefined
      return listReservations(db, {
        limit: q.limit ?? 20,
        cursor: q.cursor,
        status: q.status,
        reference: q.reference,
        variantId: variant?.id,
      })
    },
  )

  app.get(
    '/admin/inventory/reservations/:id',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags,
        security,
        summary: 'A reservation with its lines',
        params: ReservationParams,
        response: one,
      },
    },
    async (request) => {
      const reservation = await findReservation(db, request.params.id)
      if (!reservation) throw problem('not_found', `No reservation ${request.params.id}`)
      return reservation
    },
  )

  app.post(
    '/admin/inventory/reservations',
    {
      config: { permission: 'inventory:write', idempotency: 'optional' },
      schema: {
        tags,
        security,
        summary: 'Reserve stock for a cart or order',
        description:
          'All lines or none: when stock cannot fill a line the answer is 409 `insufficient_stock` ' +
          'naming each short line. Lines of the same variant are combined.',
        body: CreateReservation,
        response: { 201: Type.Ref('InventoryReservation'), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { body } = request
      const variants = await resolveVariants(
        db,
        body.lines,
        body.lines.map((_, i) => `body.lines.${i}`),
      )
      reply.code(201)
      const input = {
        lines: body.lines.map((l, i) => ({ variant_id: variants[i]!.id, quantity: l.quantity })),
        reference: body.reference,
        expires_at: body.expires_at ?? null,
        country: body.country ?? null,
        strategy: body.strategy,
      }
      // Under an Idempotency-Key the stored response must commit with the reservation, so it
      // needs a transaction; otherwise the single-statement path keeps hot rows locked least.
      if (request.idempotency) {
        return inBody(runWrite(runtime, request, (trx, ctx) => reserve(trx, input, ctx), reply))
      }
      const ctx = inventoryContext(runtime, actorOf(request))
      const reservation = await inBody(reserveNow(db, input, ctx))
      await ctx.publish()
      return reservation
    },
  )

  app.post(
    '/admin/inventory/reservations/:id/commit',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags,
        security,
        summary: 'Convert a reservation into a sale (on fulfilment): on-hand goes down',
        params: ReservationParams,
        response: one,
      },
    },
    async (request) =>
      runWrite(runtime, request, (trx, ctx) => commitReservation(trx, request.params.id, ctx)),
  )

  app.post(
    '/admin/inventory/reservations/:id/release',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags,
        security,
        summary: 'Release a reservation (cancelled): its stock is available again',
        params: ReservationParams,
        response: one,
      },
    },
    async (request) =>
      runWrite(runtime, request, (trx, ctx) => releaseReservation(trx, request.params.id, ctx)),
  )
}
