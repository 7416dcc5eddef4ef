/**
 * Admin order routes: the list (filters, search, cursor), the CSV export, the detail with history
 * and notes, staff notes, status moves, capture, cancel and refunds.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { requirePermission } from '../../platform/http/auth.ts'
import { problem } from '../../platform/http/errors.ts'
import { runIdempotent } from '../../platform/http/idempotency.ts'
import { errorResponses, ListOf } from '../../platform/http/schemas.ts'
import { emptyWhenMissing } from '../../platform/http/strict-input.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { inventoryContext } from '../inventory/context.ts'
import { captureOrder, exportOrdersStream, listOrders, moveOrder, orderDetail } from './admin-orders.ts'
import { cancelOrder } from './cancel.ts'
import { commerceDeps } from './deps.ts'
import { addOrderNote } from './notes.ts'
import { bookRefund, refundOrderPayment, staffRefundKey } from './refunds.ts'
import {
  AdminOrderQuery,
  CancelOrder,
  CreateNote,
  CreateRefund,
  CreateTransition,
  OrderExportQuery,
  OrderParams,
  OrderRefundResult,
  orderSchemas,
} from './schemas.ts'

const tags = ['orders']
const security = [{ bearer: [] }]
const one = { 200: Type.Ref('Order'), ...errorResponses }

/** `<kind>:<id>` of the caller, as transitions and notes record it. */
function actorOf(request: FastifyRequest): string {
  const p = request.principal
  return p ? `${p.kind}:${p.id}` : 'anonymous'
}

export const orderAdminRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  for (const schema of orderSchemas) app.addSchema(schema)
  const { db } = runtime.database
  const deps = () => commerceDeps(runtime)

  app.get(
    '/admin/orders',
    {
      // Emails and addresses of every order listed: one audit entry per page read, not per order.
      config: { permission: 'orders:read', audit: 'order' },
      schema: {
        tags,
        security,
        summary: 'List orders, newest first, with filters and search',
        description:
          '`q` finds an order by number (`1042` or `#1042`) or orders whose email starts with it; ' +
          '`email` matches exactly, ignoring case.',
        querystring: AdminOrderQuery,
        response: { 200: ListOf(Type.Ref('Order')), ...errorResponses },
      },
    },
    async (request) => {
      const { limit, cursor, ...filters } = request.query
      return listOrders(db, filters, { limit: limit ?? 20, cursor })
    },
  )

  app.get(
    '/admin/orders/export.csv',
    {
      config: { permission: 'orders:read', audit: 'order' },
      // Every customer's email in one file: a bulk export of personal data, which customers:export
      // names. Checked after the guard, so an unauthenticated call is still 401.
      onRequest: async (request) => {
        requirePermission(request.principal, 'customers:export', {
          why: 'Exporting orders exports customers’ emails: requires customers:export besides orders:read',
        })
      },
      schema: {
        tags,
        security,
        summary: 'Export the orders matching the filters as CSV, one row per order, newest first',
        description:
          'Needs `customers:export` besides `orders:read`: the file holds every customer’s email. ' +
          'Amounts appear twice: in minor units (`total`) and as a decimal in the currency’s minor ' +
          'unit (`total_decimal`).',
        querystring: OrderExportQuery,
        response: {
          // Under its own media type: @fastify/swagger documents a bare schema as application/json.
          200: {
            description: 'The CSV file, streamed',
            content: { 'text/csv': { schema: Type.String() } },
          },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const stream = await exportOrdersStream(db, request.query)
      const day = new Date().toISOString().slice(0, 10)
      reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="orders-${day}.csv"`)
        .header('cache-control', 'no-store')
      return reply.send(stream)
    },
  )

  app.get(
    '/admin/orders/:id',
    {
      config: { permission: 'orders:read', audit: 'order' },
      schema: {
        tags,
        security,
        summary: 'An order with its status history and notes',
        params: OrderParams,
        response: { 200: Type.Ref('OrderDetail'), ...errorResponses },
      },
    },
    async (request) => {
      const order = await orderDetail(db, request.params.id)
      if (!order) throw problem('not_found', `No order ${request.params.id}`)
      return order
    },
  )

  app.post(
    '/admin/orders/:id/notes',
    {
      config: { permission: 'orders:write' },
      schema: {
        tags,
        security,
        summary: 'Add a staff note to an order',
        params: OrderParams,
        body: CreateNote,
        response: { 201: Type.Ref('OrderNote'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(201)
      return addOrderNote(db, request.params.id, { author: actorOf(request), body: request.body.body })
    },
  )

  app.post(
    '/admin/orders/:id/transitions',
    {
      config: { permission: 'orders:write' },
      schema: {
        tags,
        security,
        summary: 'Move an order to processing, partially_fulfilled, fulfilled or completed',
        description:
          'Checked by the order state machine (409 `invalid_order_transition`). Canceling, refunding ' +
          'and marking paid have their own routes, which also move the money and stock, and are refused here.',
        params: OrderParams,
        body: CreateTransition,
        response: one,
      },
    },
    async (request) =>
      moveOrder(deps(), request.params.id, {
        to: request.body.to,
        reason: request.body.reason,
        actor: actorOf(request),
      }),
  )

  app.post(
    '/admin/orders/:id/capture',
    {
      config: { permission: 'orders:write', idempotency: 'optional' },
      schema: {
        tags,
        security,
        summary: 'Capture the order’s authorised payment (or confirm a manual payment arrived)',
        description:
          'A pending order becomes paid; one already processing or shipped keeps its status and records ' +
          'the payment. Capturing a captured payment changes nothing.',
        params: OrderParams,
        response: one,
      },
    },
    async (request) => captureOrder(deps(), request.params.id, actorOf(request)),
  )

  app.post(
    '/admin/orders/:id/cancel',
    {
      config: { permission: 'orders:write', idempotency: 'optional' },
      schema: {
        tags,
        security,
        summary: 'Cancel an order: release its stock, void its tax sale, void or refund its payment',
        description:
          'Only a pending, paid or processing order. When the payment processor cannot be reached ' +
          '(503 `payment_provider_unavailable`), the order is canceled but its payment is not yet ' +
          'returned: send the same request again to finish. When the processor refuses the refund ' +
          '(409 `conflict`), the order is canceled with its money still captured: refund it through ' +
          '`POST /admin/orders/{id}/refunds`.',
        params: OrderParams,
        body: CancelOrder,
        response: one,
      },
      preValidation: emptyWhenMissing,
    },
    async (request) => {
      // Cancelling an order whose money was taken refunds it: that needs what a refund needs. The
      // payment's own row says so first; the order's copy follows it through the outbox.
      const order = await runtime.database.db
        .selectFrom('orders')
        .leftJoin('payments', 'payments.id', 'orders.payment_id')
        .select(['orders.payment_status', 'payments.captured_amount'])
        .where('orders.id', '=', request.params.id)
        .executeTakeFirst()
      const taken =
        order &&
        (['captured', 'partially_refunded'].includes(order.payment_status) ||
          Number(order.captured_amount ?? 0) > 0)
      if (taken) {
        requirePermission(request.principal, 'orders:refund', {
          stepUp: true,
          why: 'Cancelling a paid order refunds it: requires orders:refund',
        })
      }
      return cancelOrder(deps(), request.params.id, { actor: actorOf(request), reason: request.body.reason })
    },
  )

  app.post(
    '/admin/orders/:id/refunds',
    {
      config: { permission: 'orders:refund', stepUp: true, idempotency: 'required' },
      schema: {
        tags,
        security,
        summary: 'Refund an order by amount, or by units of its lines (pro rata) and its shipping',
        description:
          'Needs a fresh MFA step-up and an Idempotency-Key. A refund larger than what remains is 409 ' +
          '`refund_exceeds_captured`; more units than remain on a line is `validation_failed` naming ' +
          'the line. The order becomes partially_refunded, or refunded when nothing remains. A ' +
          'canceled order whose refund failed at the processor can be refunded here too; it stays canceled.',
        params: OrderParams,
        body: CreateRefund,
        response: { 201: OrderRefundResult, ...errorResponses },
      },
    },
    async (request, reply) => {
      const claim = request.idempotency!
      const actor = actorOf(request)
      const orderId = request.params.id
      const d = deps()
      const moved = await refundOrderPayment(d, orderId, request.body, {
        actor,
        key: staffRefundKey(orderId, claim.principal, claim.key),
      })
      reply.code(201)
      const ctx = inventoryContext(d, actor)
      const result = await runIdempotent(db, request, reply, (trx) =>
        bookRefund(trx, ctx, orderId, moved, actor),
      )
      await ctx.publish()
      return result
    },
  )
}
