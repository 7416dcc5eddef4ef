/** Admin routes that change stock: receipts, adjustments, returns, transfers, counts, settings. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { errorResponses } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { importCounts } from './csv-import.ts'
import { runWrite, variantByRef, variantNotFound } from './http.ts'
import { configureLevel } from './levels.ts'
import { policiesOf, setPolicy } from './policies.ts'
import {
  Adjustment,
  ConfigureLevel,
  Counts,
  CountsImportQuery,
  MovementResult,
  Receipt,
  Return,
  Transfer,
  UpdatePolicy,
  VariantParams,
} from './schemas.ts'
import { adjustStock, countStock, receiveStock, returnStock, transferStock } from './stock.ts'
import { resolveVariants, variantPath } from './variants.ts'

const tags = ['inventory']
const security = [{ bearer: [] }]
const write = { permission: 'inventory:write', idempotency: 'optional' } as const
const created = { 201: MovementResult, ...errorResponses }

export const stockRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database

  app.post(
    '/admin/inventory/receipts',
    {
      config: write,
      schema: {
        tags,
        security,
        summary: 'Record goods received at a location',
        body: Receipt,
        response: created,
      },
    },
    async (request, reply) => {
      const { body } = request
      const paths = body.lines.map((_, i) => `body.lines.${i}`)
      const variants = await resolveVariants(db, body.lines, paths)
      reply.code(201)
      return runWrite(
        runtime,
        request,
        (trx, ctx) =>
          receiveStock(trx, ctx, {
            location_id: body.location_id,
            reference: body.reference ?? null,
            lines: body.lines.map((l, i) => ({
              variant_id: variants[i]!.id,
              quantity: l.quantity,
              path: `${paths[i]}.quantity`,
              variant_path: variantPath(l, paths[i]!),
            })),
          }),
        reply,
      )
    },
  )

  app.post(
    '/admin/inventory/adjustments',
    {
      config: write,
      schema: {
        tags,
        security,
        summary: 'Adjust on-hand stock by a signed quantity, with a reason',
        body: Adjustment,
        response: created,
      },
    },
    async (request, reply) => {
      const { body } = request
      const [variant] = await resolveVariants(db, [body], ['body'])
      reply.code(201)
      return runWrite(
        runtime,
        request,
        (trx, ctx) =>
          adjustStock(trx, ctx, {
            variant_id: variant!.id,
            location_id: body.location_id,
            delta: body.delta,
            reason: body.reason,
            reference: body.reference ?? null,
            variant_path: variantPath(body, 'body'),
          }),
        reply,
      )
    },
  )

  app.post(
    '/admin/inventory/returns',
    {
      config: write,
      schema: {
        tags,
        security,
        summary: 'Put returned goods back into stock',
        body: Return,
        response: created,
      },
    },
    async (request, reply) => {
      const { body } = request
      const [variant] = await resolveVariants(db, [body], ['body'])
      reply.code(201)
      return runWrite(
        runtime,
        request,
        (trx, ctx) =>
          returnStock(trx, ctx, {
            variant_id: variant!.id,
            location_id: body.location_id,
            quantity: body.quantity,
            reason: body.reason ?? null,
            reference: body.reference ?? null,
            variant_path: variantPath(body, 'body'),
          }),
        reply,
      )
    },
  )

  app.post(
    '/admin/inventory/transfers',
    {
      config: write,
      schema: {
        tags,
        security,
        summary: 'Move stock between two locations',
        body: Transfer,
        response: created,
      },
    },
    async (request, reply) => {
      const { body } = request
      const [variant] = await resolveVariants(db, [body], ['body'])
      reply.code(201)
      return runWrite(
        runtime,
        request,
        (trx, ctx) =>
          transferStock(trx, ctx, {
            variant_id: variant!.id,
            from_location_id: body.from_location_id,
            to_location_id: body.to_location_id,
            quantity: body.quantity,
            reference: body.reference ?? null,
            variant_path: variantPath(body, 'body'),
          }),
        reply,
      )
    },
  )

  app.post(
    '/admin/inventory/counts',
    {
      config: write,
      schema: {
        tags,
        security,
        summary: 'Record cycle counts: each level becomes the counted quantity',
        body: Counts,
        response: created,
      },
    },
    async (request, reply) => {
      const { body } = request
      const paths = body.counts.map((_, i) => `body.counts.${i}`)
      const variants = await resolveVariants(db, body.counts, paths)
      reply.code(201)
      return runWrite(
        runtime,
        request,
        (trx, ctx) =>
          countStock(trx, ctx, {
            reference: body.reference ?? null,
            counts: body.counts.map((c, i) => ({
              variant_id: variants[i]!.id,
              location_id: c.location_id,
              counted: c.counted,
              path: paths[i]!,
              variant_path: variantPath(c, paths[i]!),
            })),
          }),
        reply,
      )
    },
  )

  await app.register(async (csv) => {
    // CSV bodies are accepted on this route alone (plugin scope), as text up to the body limit.
    csv.addContentTypeParser('text/csv', { parseAs: 'string' }, (_request, body, done) => done(null, body))
    csv.withTypeProvider<TypeBoxTypeProvider>().post(
      '/admin/inventory/counts/import',
      {
        config: write,
        schema: {
          tags,
          security,
          summary: 'Import cycle counts from CSV (location,sku,counted)',
          description:
            'Send `Content-Type: text/csv` with a header row `location,sku,counted` (`variant_id` may ' +
            'replace `sku`; a location by id or code). Any bad row refuses the whole file.',
          querystring: CountsImportQuery,
          body: Type.String({ minLength: 1 }),
          response: {
            201: Type.Object({ ...MovementResult.properties, rows: Type.Integer() }),
            ...errorResponses,
          },
        },
      },
      async (request, reply) => {
        reply.code(201)
        return runWrite(
          runtime,
          request,
          (trx, ctx) => importCounts(trx, ctx, request.body, request.query.reference ?? null),
          reply,
        )
      },
    )
  })

  app.put(
    '/admin/inventory/levels',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags,
        security,
        summary: "Set a level's safety stock and low-stock threshold",
        body: ConfigureLevel,
        response: { 200: Type.Ref('InventoryLevel'), ...errorResponses },
      },
    },
    async (request) => {
      const { body } = request
      const [variant] = await resolveVariants(db, [body], ['body'])
      return runWrite(runtime, request, (trx, ctx) =>
        configureLevel(
          trx,
          ctx,
          { variant_id: variant!.id, location_id: body.location_id, variant_path: variantPath(body, 'body') },
          { safety_stock: body.safety_stock, low_stock_threshold: body.low_stock_threshold },
        ),
      )
    },
  )

  app.get(
    '/admin/inventory/variants/:ref/policy',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags,
        security,
        summary: "A variant's backorder and preorder policy",
        params: VariantParams,
        response: { 200: Type.Ref('InventoryPolicy'), ...errorResponses },
      },
    },
    async (request) => {
      const variant = await variantByRef(runtime, request.params.ref)
      return (await policiesOf(db, [variant.id])).get(variant.id)!
    },
  )

  app.put(
    '/admin/inventory/variants/:ref/policy',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags,
        security,
        summary: "Set a variant's backorder and preorder policy",
        description: "Whether a variant is tracked at all is the catalog's `manage_inventory`.",
        params: VariantParams,
        body: UpdatePolicy,
        response: { 200: Type.Ref('InventoryPolicy'), ...errorResponses },
      },
    },
    async (request) => {
      const variant = await variantByRef(runtime, request.params.ref)
      const policy = await runWrite(runtime, request, (trx, ctx) => {
        // Backorder or preorder room makes a sold-out variant buyable: cached pages must say so.
        ctx.availabilityChanged = true
        return setPolicy(trx, variant.id, request.body)
      })
      // Deleted since it was looked up: the answer the request gets when the delete comes first.
      if (!policy) throw variantNotFound(request.params.ref)
      return policy
    },
  )
}
