/** Admin routes that read stock: levels, movement history, the drift report and the live stream. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { problem } from '../../platform/http/errors.ts'
import { errorResponses, ListOf } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { listLevels } from './levels.ts'
import { driftReport, listMovements } from './movements.ts'
import { DriftReport, LevelQuery, MovementQuery, StreamQuery } from './schemas.ts'
import { LevelStream } from './stream.ts'
import { resolveVariants } from './variants.ts'

const tags = ['inventory']
const security = [{ bearer: [] }]

export const reportRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database
  const variantOf = async (q: { sku?: string | undefined; variant_id?: string | undefined }) =>
    q.sku !== undefined || q.variant_id !== undefined
      ? (await resolveVariants(db, [q], ['query']))[0]!.id
      : undefined

  app.get(
    '/admin/inventory/levels',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags,
        security,
        summary: 'List stock levels by variant and location',
        querystring: LevelQuery,
        response: { 200: ListOf(Type.Ref('InventoryLevel')), ...errorResponses },
      },
    },
    async (request) => {
      const q = request.query
      return listLevels(db, {
        limit: q.limit ?? 20,
        cursor: q.cursor,
        variantId: await variantOf(q),
        locationId: q.location_id,
        lowStock: q.low_stock,
      })
    },
  )

  app.get(
    '/admin/inventory/movements',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags,
        security,
        summary: 'Movement history, newest first',
        querystring: MovementQuery,
        response: { 200: ListOf(Type.Ref('InventoryMovement')), ...errorResponses },
      },
    },
    async (request) => {
      const q = request.query
      return listMovements(db, {
        limit: q.limit ?? 20,
        cursor: q.cursor,
        variantId: await variantOf(q),
        locationId: q.location_id,
        kind: q.kind as never,
        reference: q.reference,
        reservationId: q.reservation_id,
        since: q.since,
        until: q.until,
      })
    },
  )

  app.get(
    '/admin/inventory/drift',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags,
        security,
        summary: 'Levels that disagree with the sum of their movements or with their reservations',
        response: { 200: DriftReport, ...errorResponses },
      },
    },
    async () => driftReport(db),
  )

  const stream = new LevelStream(runtime.kv, db)
  const open = new Set<import('node:http').ServerResponse>()
  // Streams never finish on their own; end them so that closing the app does not wait on them.
  app.addHook('preClose', (done) => {
    for (const response of open) response.end()
    done()
  })

  app.get(
    '/admin/inventory/stream',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags,
        security,
        summary: 'Live level changes as Server-Sent Events (event `level`)',
        description:
          'Send `Accept: text/event-stream`. Each `level` event carries an InventoryLevel after a ' +
          'committed change on any node; `heartbeat` events keep idle connections open.',
        querystring: StreamQuery,
      },
    },
    async (request, reply) => {
      if (!String(request.headers.accept ?? '').includes('text/event-stream')) {
        throw problem(
          'not_acceptable',
          'This route streams Server-Sent Events: send Accept: text/event-stream',
        )
      }
      reply.hijack()
      const response = reply.raw
      response.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': request.id,
      })
      const client = {
        variantId: request.query.variant_id,
        locationId: request.query.location_id,
        send(event: string, data: unknown) {
          response.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
        },
      }
      open.add(response)
      request.raw.once('close', () => {
        open.delete(response)
        void stream.remove(client)
      })
      await stream.add(client)
      client.send('ready', { node_subscribed: true })
    },
  )
}
