/**
 * Tax admin API (`/admin/tax/...`): jurisdictions, effective-dated rates, categories and their
 * per-jurisdiction rules, the store's settings and registrations (US nexus included), the OSS and
 * economic-nexus reports, a VAT id check, and a preview that shows the working for a cart.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { withTransaction } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { runIdempotent } from '../../platform/http/idempotency.ts'
import { errorResponses, ListOf } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import {
  createRate,
  deleteCategory,
  deleteCategoryRule,
  deleteRate,
  getJurisdiction,
  getRate,
  listCategories,
  listJurisdictions,
  listRates,
  putCategory,
  putCategoryRule,
  updateJurisdiction,
  updateRate,
} from './admin.ts'
import { calculateTax } from './engine.ts'
import { ossReturn } from './oss-return.ts'
import type { StoreTaxContext } from './place-of-supply.ts'
import { nexusReport, ossStatus } from './sales.ts'
import {
  Category,
  CategoryParams,
  CheckVatIdBody,
  CodeParams,
  CreateRate,
  Jurisdiction,
  JurisdictionDetail,
  JurisdictionsQuery,
  OssReturn,
  OssReturnBody,
  PreviewBody,
  PutCategory,
  PutCategoryRule,
  PutRegistration,
  Rate,
  RateIdParams,
  RatesQuery,
  RuleParams,
  Settings,
  TaxResult,
  UpdateJurisdiction,
  UpdateRate,
  UpdateSettings,
  YearQuery,
} from './schemas.ts'
import {
  deleteRegistration,
  getTaxSettings,
  loadTaxData,
  putRegistration,
  storeContext,
  updateTaxSettings,
} from './service.ts'
import { checkVatId } from './vat-id.ts'

const tags = ['tax']
const security = [{ bearer: [] }]

export const taxRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database
  app.addSchema(TaxResult)
  app.addSchema(Jurisdiction)
  app.addSchema(Rate)
  const thisYear = () => new Date().getUTCFullYear()

  app.post(
    '/admin/tax/preview',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: 'Calculate tax for a hypothetical cart and show the working',
        description:
          'Uses the built-in engine over the stored rates. Without `store`, the configured settings, ' +
          'registrations and recorded EU distance sales apply; with it, a hypothetical store does.',
        body: PreviewBody,
        response: { 200: Type.Ref('TaxResult'), ...errorResponses },
      },
    },
    async (request) => {
      const { store: hypothetical, ...input } = request.body
      const data = await loadTaxData(db)
      const store: StoreTaxContext = hypothetical
        ? {
            origin: { country: hypothetical.origin_country, region: hypothetical.origin_region },
            registrations: hypothetical.registrations ?? [],
            oss_opt_in: hypothetical.oss_opt_in ?? false,
            eu_distance_sales_eur: hypothetical.eu_distance_sales_eur ?? {
              current_year: 0,
              previous_year: 0,
            },
          }
        : await storeContext(db, input.date_of_supply)
      if (!data.jurisdictions.has(store.origin.country)) {
        throw problem('unknown_country', `No tax data for the store's origin ${store.origin.country}`, {
          errors: [{ path: 'body.store.origin_country', message: 'is not a jurisdiction with tax data' }],
        })
      }
      return calculateTax(data, store, input, { explain: true })
    },
  )

  app.post(
    '/admin/tax/vat-ids/check',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: 'Check a VAT id for format and check digits (no registry lookup)',
        body: CheckVatIdBody,
        response: {
          200: Type.Object({
            valid: Type.Boolean(),
            normalized: Type.String(),
            country: Type.Union([Type.String(), Type.Null()]),
            reason: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const check = checkVatId(request.body.vat_id, request.body.country)
      return { ...check, country: check.country ?? null, reason: check.reason ?? null }
    },
  )

  app.get(
    '/admin/tax/jurisdictions',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: 'List tax jurisdictions (countries, states, provinces)',
        querystring: JurisdictionsQuery,
        response: { 200: ListOf(Type.Ref('TaxJurisdiction')), ...errorResponses },
      },
    },
    async (request) =>
      listJurisdictions(db, {
        limit: request.query.limit ?? 20,
        cursor: request.query.cursor,
        country: request.query.country,
      }),
  )

  app.get(
    '/admin/tax/jurisdictions/:code',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: 'A jurisdiction with its rates and category rules',
        params: CodeParams,
        response: { 200: JurisdictionDetail, ...errorResponses },
      },
    },
    async (request) => {
      const j = await getJurisdiction(db, request.params.code)
      if (!j) throw problem('not_found', `No tax jurisdiction ${request.params.code}`)
      return j
    },
  )

  app.patch(
    '/admin/tax/jurisdictions/:code',
    {
      config: { permission: 'tax:write' },
      schema: {
        tags,
        security,
        summary: "Change a jurisdiction's rounding, nexus threshold or source",
        params: CodeParams,
        body: UpdateJurisdiction,
        response: { 200: JurisdictionDetail, ...errorResponses },
      },
    },
    async (request) => {
      const j = await withTransaction(db, (trx) => updateJurisdiction(trx, request.params.code, request.body))
      if (!j) throw problem('not_found', `No tax jurisdiction ${request.params.code}`)
      return j
    },
  )

  app.put(
    '/admin/tax/jurisdictions/:code/categories/:category',
    {
      config: { permission: 'tax:write' },
      schema: {
        tags,
        security,
        summary: 'Set the rate kind a category takes in a jurisdiction',
        params: RuleParams,
        body: PutCategoryRule,
        response: {
          200: Type.Object({
            jurisdiction: Type.String(),
            category: Type.String(),
            rate_kind: Type.String(),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) =>
      withTransaction(db, (trx) =>
        putCategoryRule(trx, request.params.code, request.params.category, request.body.rate_kind),
      ),
  )

  app.delete(
    '/admin/tax/jurisdictions/:code/categories/:category',
    {
      config: { permission: 'tax:delete' },
      schema: {
        tags,
        security,
        summary: "Remove a category rule (the category's default kind applies again)",
        params: RuleParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { code, category } = request.params
      const deleted = await withTransaction(db, (trx) => deleteCategoryRule(trx, code, category))
      if (!deleted) throw problem('not_found', `No rule for ${category} in ${code}`)
      reply.code(204)
      return null
    },
  )

  app.get(
    '/admin/tax/rates',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: 'List rates, by jurisdiction, kind or the date they apply on',
        querystring: RatesQuery,
        response: { 200: ListOf(Type.Ref('TaxRate')), ...errorResponses },
      },
    },
    async (request) => {
      const { limit, ...filters } = request.query
      return listRates(db, { ...filters, limit: limit ?? 20 })
    },
  )

  app.post(
    '/admin/tax/rates',
    {
      config: { permission: 'tax:write', idempotency: 'optional' },
      schema: {
        tags,
        security,
        summary: 'Create an effective-dated rate',
        description:
          'Periods of one kind (and postal prefix) in a jurisdiction may not overlap. `supersede` ends ' +
          'the open-ended rate in force on `valid_from` at that date: the usual way to enter a rate change.',
        body: CreateRate,
        response: { 201: Type.Ref('TaxRate'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(201)
      return runIdempotent(db, request, reply, (trx) => createRate(trx, request.body))
    },
  )

  app.get(
    '/admin/tax/rates/:id',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: 'A rate by id',
        params: RateIdParams,
        response: { 200: Type.Ref('TaxRate'), ...errorResponses },
      },
    },
    async (request) => {
      const rate = await getRate(db, request.params.id)
      if (!rate) throw problem('not_found', `No tax rate ${request.params.id}`)
      return rate
    },
  )

  app.patch(
    '/admin/tax/rates/:id',
    {
      config: { permission: 'tax:write' },
      schema: {
        tags,
        security,
        summary: 'Change a rate',
        params: RateIdParams,
        body: UpdateRate,
        response: { 200: Type.Ref('TaxRate'), ...errorResponses },
      },
    },
    async (request) => {
      const rate = await withTransaction(db, (trx) => updateRate(trx, request.params.id, request.body))
      if (!rate) throw problem('not_found', `No tax rate ${request.params.id}`)
      return rate
    },
  )

  app.delete(
    '/admin/tax/rates/:id',
    {
      config: { permission: 'tax:delete' },
      schema: {
        tags,
        security,
        summary: 'Delete a rate',
        params: RateIdParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const deleted = await withTransaction(db, (trx) => deleteRate(trx, request.params.id))
      if (!deleted) throw problem('not_found', `No tax rate ${request.params.id}`)
      reply.code(204)
      return null
    },
  )

  app.get(
    '/admin/tax/categories',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: 'List tax categories',
        response: { 200: ListOf(Category), ...errorResponses },
      },
    },
    async () => listCategories(db),
  )

  app.put(
    '/admin/tax/categories/:code',
    {
      config: { permission: 'tax:write' },
      schema: {
        tags,
        security,
        summary: 'Create a category or rename one',
        params: CategoryParams,
        body: PutCategory,
        response: { 200: Category, ...errorResponses },
      },
    },
    async (request) => withTransaction(db, (trx) => putCategory(trx, request.params.code, request.body)),
  )

  app.delete(
    '/admin/tax/categories/:code',
    {
      config: { permission: 'tax:delete' },
      schema: {
        tags,
        security,
        summary: 'Delete a category the store added',
        params: CategoryParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const deleted = await withTransaction(db, (trx) => deleteCategory(trx, request.params.code))
      if (!deleted) throw problem('not_found', `No tax category ${request.params.code}`)
      reply.code(204)
      return null
    },
  )

  app.get(
    '/admin/tax/settings',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: "The store's tax settings and registrations",
        response: { 200: Settings, ...errorResponses },
      },
    },
    async () => getTaxSettings(db),
  )

  app.patch(
    '/admin/tax/settings',
    {
      config: { permission: 'tax:write' },
      schema: {
        tags,
        security,
        summary: 'Change the origin, OSS opt-in or provider',
        body: UpdateSettings,
        response: { 200: Settings, ...errorResponses },
      },
    },
    async (request) => withTransaction(db, (trx) => updateTaxSettings(trx, request.body)),
  )

  app.put(
    '/admin/tax/registrations/:code',
    {
      config: { permission: 'tax:write' },
      schema: {
        tags,
        security,
        summary: 'Register the store in a jurisdiction (VAT, GST, PST/QST, US nexus)',
        params: CodeParams,
        body: PutRegistration,
        response: {
          200: Type.Object({ jurisdiction: Type.String(), number: Type.Union([Type.String(), Type.Null()]) }),
          ...errorResponses,
        },
      },
    },
    async (request) =>
      withTransaction(db, (trx) => putRegistration(trx, request.params.code, request.body.number ?? null)),
  )

  app.delete(
    '/admin/tax/registrations/:code',
    {
      config: { permission: 'tax:delete' },
      schema: {
        tags,
        security,
        summary: 'Remove a registration',
        params: CodeParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const deleted = await withTransaction(db, (trx) => deleteRegistration(trx, request.params.code))
      if (!deleted) throw problem('not_found', `No registration in ${request.params.code}`)
      reply.code(204)
      return null
    },
  )

  app.get(
    '/admin/tax/nexus',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: 'US sales per state against economic-nexus thresholds',
        querystring: YearQuery,
        response: {
          200: Type.Object({
            year: Type.Integer(),
            uncounted_sales: Type.Integer(),
            states: Type.Array(
              Type.Object({
                state: Type.String(),
                name: Type.String(),
                registered: Type.Boolean(),
                levies_tax: Type.Boolean(),
                threshold_usd: Type.Union([Type.Integer(), Type.Null()]),
                sales_usd: Type.Integer({ description: 'USD cents' }),
                transactions: Type.Integer(),
                status: Type.String(),
              }),
            ),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => nexusReport(db, request.query.year ?? thisYear()),
  )

  app.get(
    '/admin/tax/oss',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: 'EU distance sales against the EUR 10,000 OSS threshold',
        querystring: YearQuery,
        response: {
          200: Type.Object({
            year: Type.Integer(),
            threshold_eur: Type.Integer({ description: 'EUR cents' }),
            current_year_eur: Type.Integer(),
            previous_year_eur: Type.Integer(),
            unvalued_sales: Type.Object(
              { current_year: Type.Integer(), previous_year: Type.Integer() },
              { description: 'sales priced in another currency, with no value in EUR until a return' },
            ),
            passed: Type.Boolean({ description: 'also true while there are unvalued sales' }),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => ossStatus(db, request.query.year ?? thisYear()),
  )

  app.post(
    '/admin/tax/oss/return',
    {
      config: { permission: 'tax:read' },
      schema: {
        tags,
        security,
        summary: "A quarter's EU distance sales per member state, in EUR, for the OSS return",
        description:
          'Sales priced in another currency are converted at the rate of the last day of the quarter ' +
          "(the ECB's, or its next publication), given in `exchange_rates`; a currency without one is " +
          '400 `validation_failed` at `body.exchange_rates.<currency>`. Nothing is stored.',
        body: OssReturnBody,
        response: { 200: OssReturn, ...errorResponses },
      },
    },
    async (request) => ossReturn(db, request.body),
  )
}
