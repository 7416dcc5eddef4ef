/** The signed-in customer's orders: their list, newest first, and one order. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { customerIdOf } from '../../platform/http/auth.ts'
import { problem } from '../../platform/http/errors.ts'
import { errorResponses, ListOf } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { listOrders } from './admin-orders.ts'
import { findOrder } from './orders.ts'
import { OrderParams, orderSchemas, StoreOrderQuery } from './schemas.ts'

const tags = ['orders']
const security = [{ bearer: [] }]

export const orderStoreRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  for (const schema of orderSchemas) app.addSchema(schema)
  const { db } = runtime.database

  app.get(
    '/store/orders',
    {
      config: { auth: 'customer' },
      schema: {
        tags,
        security,
        summary: 'The signed-in customer’s orders, newest first',
        querystring: StoreOrderQuery,
        response: { 200: ListOf(Type.Ref('Order')), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store')
      const customerId = customerIdOf(request)
      return listOrders(
        db,
        { customer_id: customerId },
        { limit: request.query.limit ?? 20, cursor: request.query.cursor },
      )
    },
  )

  app.get(
    '/store/orders/:id',
    {
      config: { auth: 'customer' },
      schema: {
        tags,
        security,
        summary: 'One of the signed-in customer’s orders',
        description: 'Another customer’s order answers 404, as a missing one does.',
        params: OrderParams,
        response: { 200: Type.Ref('Order'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store')
      const order = await findOrder(db, request.params.id, { customerId: customerIdOf(request) })
      if (!order) throw problem('not_found', `No order ${request.params.id}`)
      return order
    },
  )
}
