/**
 * Admin routes for bulk product files: `POST /admin/products/import` (CSV, JSON or NDJSON as the raw
 * body, validated at once, written by a job), the import resources with their progress and report,
 * and `GET /admin/products/export` streaming the catalog in the layout the importer reads.
 */
import { createHash } from 'node:crypto'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { problem } from '../../platform/http/errors.ts'
import { runIdempotent } from '../../platform/http/idempotency.ts'
import { decodeCursor, encodeCursor } from '../../platform/http/pagination.ts'
import { errorResponses, ListOf, ListQuery } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { exportStream } from './export.ts'
import {
  getImport,
  type ImportFormat,
  listImports,
  MAX_REPORTED_ERRORS,
  stageImport,
  validateImport,
} from './import.ts'
import { ProductStatus } from './schemas.ts'

/**
 * Large enough for 100,000 products of ten variants as NDJSON (about 320 MB; CSV takes half), and
 * below V8's longest string (about 536 million characters), which the file is decoded into.
 */
const MAX_UPLOAD_BYTES = 500 * 1024 * 1024

/**
 * An uploaded file as the route receives it. Its only enumerable fields are a digest and a size:
 * the idempotency layer fingerprints a body through its JSON form, which for the raw bytes would
 * walk hundreds of megabytes one index at a time.
 */
class Upload {
  readonly sha256: string
  readonly bytes: number
  readonly #content: Buffer
  constructor(content: Buffer) {
    this.#content = content
    this.bytes = content.length
    this.sha256 = createHash('sha256').update(content).digest('hex')
  }
  get content(): Buffer {
    return this.#content
  }
}

const FILE_TYPES: Record<string, ImportFormat | undefined> = {
  'text/csv': 'csv',
  'application/json': 'json',
  'application/x-ndjson': 'ndjson',
  'application/ndjson': 'ndjson',
  'text/plain': undefined,
}

const Format = Type.Union([Type.Literal('csv'), Type.Literal('json'), Type.Literal('ndjson')])
const Mode = Type.Union([Type.Literal('all_or_nothing'), Type.Literal('per_row')], {
  description:
    '`all_or_nothing` (default): any bad row refuses the file (422) and a failure while writing rolls ' +
    'everything back. `per_row`: bad products are skipped and listed in the report.',
})
const ImportStatus = Type.Union([
  Type.Literal('queued'),
  Type.Literal('running'),
  Type.Literal('succeeded'),
  Type.Literal('failed'),
])

const ImportErrorSchema = Type.Object({
  row: Type.Integer({ description: 'CSV: the data row (1 is the row under the header); JSON: the position' }),
  path: Type.String({ description: 'CSV: the column; JSON: a JSON pointer into the document' }),
  message: Type.String(),
})

const importSummaryFields = {
  id: Type.String({ description: 'imp_…' }),
  status: ImportStatus,
  format: Format,
  mode: Mode,
  total_rows: Type.Integer({ description: 'Products in the file (a CSV product spans one row per variant)' }),
  processed_rows: Type.Integer(),
  created_count: Type.Integer(),
  updated_count: Type.Integer(),
  failed_count: Type.Integer(),
  error_count: Type.Integer({
    description: `Every problem found; errors lists the first ${MAX_REPORTED_ERRORS}`,
  }),
  progress: Type.Number({ minimum: 0, maximum: 1 }),
  created_by: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
  started_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  finished_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
}

const ImportSummary = Type.Object(importSummaryFields)
const ProductImport = Type.Object(
  { ...importSummaryFields, errors: Type.Array(ImportErrorSchema) },
  { $id: 'ProductImport' },
)

const ImportReport = Type.Object({
  dry_run: Type.Literal(true),
  format: Format,
  mode: Mode,
  total_rows: Type.Integer(),
  valid_rows: Type.Integer(),
  failed_count: Type.Integer(),
  error_count: Type.Integer(),
  errors: Type.Array(ImportErrorSchema),
})

/** The problem document of a refused file: its errors carry the row as well as the column. */
const ImportProblem = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  code: Type.String(),
  detail: Type.Optional(Type.String()),
  errors: Type.Optional(
    Type.Array(
      Type.Object({ row: Type.Optional(Type.Integer()), path: Type.String(), message: Type.String() }),
    ),
  ),
})

const ImportQuery = Type.Object(
  {
    format: Type.Optional(Format),
    mode: Type.Optional(Mode),
    dry_run: Type.Optional(Type.Boolean({ description: 'Validate and report; store nothing' })),
  },
  { additionalProperties: false },
)

const ImportListQuery = Type.Object(
  { ...ListQuery.properties, status: Type.Optional(ImportStatus) },
  { additionalProperties: false },
)

/**
 * The file, documented under each media type the route reads. Fastify validates a body against the
 * schema of its media type, and the parser above hands the handler an Upload rather than text, so
 * these schemas constrain nothing (a `type` would refuse every file): they say what each type
 * carries, and the importer checks the file itself. Other types the parser takes (`text/plain` with
 * `?format=`, `application/ndjson`) match none of them and are read the same way.
 */
const ImportBody = {
  content: {
    'text/csv': {
      schema: Type.Unknown({ description: 'CSV with a header row, one row per variant' }),
    },
    'application/json': {
      schema: Type.Unknown({
        description:
          'An array of product documents (each the body of POST /admin/products), or `{"products": [...]}`',
      }),
    },
    'application/x-ndjson': {
      schema: Type.Unknown({ description: 'One product document per line' }),
    },
  },
}

const ExportQuery = Type.Object(
  { format: Type.Optional(Format), status: Type.Optional(ProductStatus) },
  { additionalProperties: false },
)

const utf8 = new TextDecoder('utf-8', { fatal: true })

function formatOf(request: FastifyRequest, asked: ImportFormat | undefined): ImportFormat {
  if (asked) return asked
  const type = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
  const format = FILE_TYPES[type]
  if (format) return format
  throw problem('validation_failed', 'Name the file format with ?format=csv|json|ndjson', {
    errors: [{ path: 'query.format', message: 'is required for this content type' }],
  })
}

export const catalogImportRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = runtime.database
  const security = [{ bearer: [] }]
  app.addSchema(ProductImport)

  // Scoped to this plugin: here a body is a file, taken as raw bytes and parsed by the importer.
  app.removeContentTypeParser(['application/json', 'text/plain'])
  app.addContentTypeParser(
    Object.keys(FILE_TYPES),
    { parseAs: 'buffer', bodyLimit: MAX_UPLOAD_BYTES },
    (_request, body, done) => done(null, new Upload(body as Buffer)),
  )

  app.post(
    '/admin/products/import',
    {
      bodyLimit: MAX_UPLOAD_BYTES,
      config: { permission: 'products:write', idempotency: 'optional', rawBody: true },
      schema: {
        tags: ['catalog'],
        summary: 'Import products from a CSV, JSON or NDJSON file',
        description:
          'The body is the file (`text/csv`, `application/json` or `application/x-ndjson`). JSON is an ' +
          'array of product documents (the body of POST /admin/products) or `{"products": [...]}`; NDJSON ' +
          'one document per line; CSV one row per variant (columns: handle, title, subtitle, description, ' +
          'status, collection_id, category_ids, tax_category, tags, attributes, media, media_alt, metadata, ' +
          'optionN_name/optionN_value, sku, variant_title, barcode, weight_g, length_mm, width_mm, height_mm, ' +
          'manage_inventory, requires_shipping, variant_metadata, price_<CUR>, compare_at_<CUR>). Products are upserted by ' +
          'handle and variants by SKU. The file is validated at once; the write runs as a job whose ' +
          'progress GET /admin/products/imports/{id} shows.',
        security,
        querystring: ImportQuery,
        body: ImportBody,
        response: {
          200: ImportReport,
          202: Type.Ref('ProductImport'),
          422: ImportProblem,
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const upload = request.body
      if (!(upload instanceof Upload))
        throw problem('validation_failed', 'Send the file as the request body', {
          errors: [{ path: 'body', message: 'is required' }],
        })
      const format = formatOf(request, request.query.format)
      const mode = request.query.mode ?? 'all_or_nothing'
      let text: string
      try {
        text = utf8.decode(upload.content)
      } catch {
        throw problem('invalid_encoding')
      }
      const validated = await validateImport(db, format, mode, text)
      if (mode === 'all_or_nothing' && validated.errors.length > 0)
        throw problem(
          'import_invalid',
          `${validated.errors.length} problem(s) in ${validated.failedCount} of ${validated.totalRows} ` +
            'products; nothing was imported',
          { errors: validated.errors.slice(0, MAX_REPORTED_ERRORS) },
        )
      if (request.query.dry_run)
        return {
          dry_run: true as const,
          format,
          mode,
          total_rows: validated.totalRows,
          valid_rows: validated.valid.length,
          failed_count: validated.failedCount,
          error_count: validated.errors.length,
          errors: validated.errors.slice(0, MAX_REPORTED_ERRORS),
        }
      reply.code(202)
      const created = await runIdempotent(db, request, reply, (trx) =>
        stageImport(trx, runtime.jobs, validated, request.principal?.id ?? null),
      )
      reply.header('location', `/admin/products/imports/${created.id}`)
      return created
    },
  )

  app.get(
    '/admin/products/imports',
    {
      config: { permission: 'products:read' },
      schema: {
        tags: ['catalog'],
        summary: 'List product imports, newest first',
        security,
        querystring: ImportListQuery,
        response: { 200: ListOf(ImportSummary), ...errorResponses },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 20
      const beforeId = request.query.cursor
        ? String(decodeCursor(request.query.cursor, ['string'])[0])
        : undefined
      const rows = await listImports(db, { limit, beforeId, status: request.query.status })
      const data = rows.slice(0, limit)
      const last = data[data.length - 1]
      return { data, next_cursor: rows.length > limit && last ? encodeCursor([last.id]) : null }
    },
  )

  app.get(
    '/admin/products/imports/:id',
    {
      config: { permission: 'products:read' },
      schema: {
        tags: ['catalog'],
        summary: 'A product import: status, counts, progress and its report',
        security,
        params: Type.Object({ id: Type.String({ pattern: '^imp_[0-9a-z]{26}$' }) }),
        response: { 200: Type.Ref('ProductImport'), ...errorResponses },
      },
    },
    async (request) => {
      const found = await getImport(runtime, request.params.id)
      if (!found) throw problem('not_found', `No import ${request.params.id}`)
      return found
    },
  )

  app.get(
    '/admin/products/export',
    {
      config: { permission: 'products:read' },
      schema: {
        tags: ['catalog'],
        summary: 'Export every product as CSV, JSON or NDJSON, in the layout the importer reads',
        security,
        querystring: ExportQuery,
        response: {
          // One media type per format, as the route sends them: a bare schema would be documented
          // as application/json, and generated clients would parse a CSV file as JSON.
          200: {
            description: 'The file, streamed, in the media type `format` names',
            content: {
              'text/csv': { schema: Type.String() },
              'application/json': { schema: Type.String() },
              'application/x-ndjson': { schema: Type.String() },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const format = request.query.format ?? 'csv'
      const type = { csv: 'text/csv', json: 'application/json', ndjson: 'application/x-ndjson' }[format]
      const day = new Date().toISOString().slice(0, 10)
      reply
        .type(`${type}; charset=utf-8`)
        .header('content-disposition', `attachment; filename="products-${day}.${format}"`)
        .header('cache-control', 'no-store')
      return reply.send(exportStream(db, { format, status: request.query.status }))
    },
  )
}
