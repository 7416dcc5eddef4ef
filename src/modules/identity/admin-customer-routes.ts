/** Back-office view of customer accounts. Every read here is personal data, so each is audited. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { sql } from 'kysely'
import { Type } from 'typebox'
import { decodeCursor, toPage } from '../../platform/http/pagination.ts'
import { errorResponses, ListOf } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { customerView, getCustomer, listAddresses } from './customers.ts'
import { Address, Customer, IdParams } from './schemas.ts'

const CustomersQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    email: Type.Optional(Type.String({ maxLength: 254, description: 'Exact email, any case' })),
  },
  { additionalProperties: false },
)

export const adminCustomerRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  app.addSchema(Customer)
  app.addSchema(Address)
  const tags = ['admin: customers']
  const security = [{ bearer: [] }]
  const audited = { permission: 'customers:read', audit: 'customer' }

  app.get(
    '/admin/customers',
    {
      config: audited,
      schema: {
        tags,
        summary: 'List customers, newest first',
        security,
        querystring: CustomersQuery,
        response: { 200: ListOf(Type.Ref('Customer')), ...errorResponses },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 20
      let query = runtime.database.db
        .selectFrom('customers')
        .select(['id', 'email', 'first_name', 'last_name', 'email_verified_at', 'created_at'])
        .orderBy('id', 'desc')
        .limit(limit + 1)
      if (request.query.email) query = query.where(sql`lower(email)`, '=', request.query.email.toLowerCase())
      if (request.query.cursor)
        query = query.where('id', '<', String(decodeCursor(request.query.cursor, ['string'])[0]))
      const rows = await query.execute()
      return toPage(rows.map(customerView), limit, (c) => [c.id])
    },
  )

  app.get(
    '/admin/customers/:id',
    {
      config: audited,
      schema: {
        tags,
        summary: 'A customer',
        security,
        params: IdParams,
        response: { 200: Type.Ref('Customer'), ...errorResponses },
      },
    },
    async (request) => getCustomer(runtime, request.params.id),
  )

  app.get(
    '/admin/customers/:id/addresses',
    {
      config: audited,
      schema: {
        tags,
        summary: 'A customer’s address book',
        security,
        params: IdParams,
        response: { 200: Type.Object({ data: Type.Array(Type.Ref('Address')) }), ...errorResponses },
      },
    },
    async (request) => {
      await getCustomer(runtime, request.params.id)
      return { data: await listAddresses(runtime, request.params.id) }
    },
  )
}
