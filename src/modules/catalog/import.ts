/**
 * Bulk product import. A file (CSV, JSON array or NDJSON) is parsed and validated while the request
 * waits, which produces the report: every bad row with its field (a CSV column, or a JSON pointer
 * into the document). The valid documents are then staged in `catalog_import_batches`, in the
 * transaction that creates the import and enqueues its job, so any worker node can run it.
 *
 * The job (`catalog.import`) writes the staged documents in batches with the set-based engine of
 * bulk.ts, upserting by handle and SKU. `all_or_nothing` runs every batch in one transaction: any
 * failure rolls everything back and fails the import with its report. `per_row` commits batch by
 * batch, deleting each batch's staged rows and updating the counts in the same transaction, so a
 * run that dies resumes where it stopped; a batch that fails at write time is retried one document
 * at a time, each in a savepoint, so only the bad documents are skipped. One `catalog.imported`
 * event per import, never one per product.
 *
 * Progress lives in the KV store while a job runs: on PGlite (one connection) a long all-or-nothing
 * transaction holds the only connection, so neither the job nor a reader could touch the import
 * row until it ends.
 */

import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import { promisify } from 'node:util'
import { constants, gunzip as gunzipCallback, gzip as gzipCallback } from 'node:zlib'
import { Ajv, type ErrorObject } from 'ajv'
import addFormatsModule from 'ajv-formats'
import { type Selectable, sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { withTransaction } from '../../platform/db/transaction.ts'
import { type FieldError, ProblemError, problem } from '../../platform/http/errors.ts'
import { jsonDocumentFault } from '../../platform/http/json-body.ts'
import { newId } from '../../platform/ids.ts'
import type { Jobs } from '../../platform/jobs/jobs.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { BulkDocumentError, bulkUpsertProducts, checkDocuments, type ProductDocument } from './bulk.ts'
import { catalogCacheOf } from './cache.ts'
import { csvCellOf, parseProductCsv } from './product-csv.ts'
import { translateWriteError } from './products.ts'
import { ImportProduct } from './schemas.ts'
import type { CatalogImportsTable, ImportError, ProductOption } from './tables.ts'

export type ImportFormat = 'csv' | 'json' | 'ndjson'
export type ImportMode = 'all_or_nothing' | 'per_row'
export type { ImportError }

export const IMPORT_JOB = 'catalog.import'
/** Errors kept on an import (and in a 422); error_count counts them all. */
export const MAX_REPORTED_ERRORS = 1000
/**
 * Documents per batch: big enough that a batch costs a handful of statements per 1000 products,
 * small enough to keep each statement's JSON a few megabytes. Tests lower it to watch progress.
 */
export const importTuning = { batchSize: 1000 }
/**
 * How long a job may run before pg-boss considers it lost. An import still `running` after this
 * long belongs to a dead worker, so a redelivered job may take it over.
 */
const RUN_EXPIRY_SECONDS = 4 * 3600
const PROGRESS_TTL_MS = 24 * 3600_000
const gzip = promisify(gzipCallback)
const gunzip = promisify(gunzipCallback)

// ajv-formats is CommonJS with a default export; under NodeNext it arrives as the module object.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv
/**
 * The product API's schema with every field but the handle optional and nullable where empty is a
 * value (ImportProduct): a file obeys the rules a request does, and an upsert changes only the
 * fields it gives.
 */
const validateDocument = addFormats(new Ajv({ allErrors: true, strict: false, coerceTypes: false })).compile(
  ImportProduct,
)

/** A document as read from the file, before validation. */
interface Candidate {
  /** The row the report names: the first CSV data row, the JSON position or the NDJSON line. */
  row: number
  /** CSV: the data row of each variant. */
  sourceRows: number[]
  document: unknown
  /** CSV: the options whose values are read off the rows (the file does not list them). */
  valuesFromRows?: string[]
  /** CSV: the currencies the file has price columns for (PriceScope); JSON states prices whole. */
  priceCurrencies?: string[]
  errors: ImportError[]
}

/** A valid document waiting in the staging table. */
export interface StagedDocument {
  row: number
  sourceRows: number[]
  document: ProductDocument
  /** The currencies its variants' `prices` state (CSV's price columns); undefined: all (JSON). */
  priceCurrencies?: string[]
}

/** The outcome of parsing and validating a file: what can be imported and the report. */
export interface ValidatedImport {
  format: ImportFormat
  mode: ImportMode
  /** Products in the file (a CSV product spans one row per variant), plus unreadable rows. */
  totalRows: number
  valid: StagedDocument[]
  /** Sorted by row; every problem found (the stored report keeps the first MAX_REPORTED_ERRORS). */
  errors: ImportError[]
  /** Products (or unreadable rows) that will not be imported. */
  failedCount: number
}

/** An import as the API shows it. */
export interface ImportView {
  id: string
  status: 'queued' | 'running' | 'succeeded' | 'failed'
  format: ImportFormat
  mode: ImportMode
  total_rows: number
  processed_rows: number
  created_count: number
  updated_count: number
  failed_count: number
  error_count: number
  errors: ImportError[]
  progress: number
  created_by: string | null
  created_at: string
  started_at: string | null
  finished_at: string | null
}

// ---------------------------------------------------------------------------------------------
// Paths

function pointer(segments: readonly string[]): string {
  return segments.map((s) => `/${s.replace(/~/g, '~0').replace(/\//g, '~1')}`).join('')
}

/** `[3].variants[2].prices[0].amount` (the rules' paths) → `['variants', '2', 'prices', '0', 'amount']`. */
function segmentsOf(path: string): string[] {
  const rest = path.replace(/^(body|\[\d+\])/, '')
  return [...rest.matchAll(/\.([^.[\]]+)|\[([^\]]*)\]/g)].map((m) => m[1] ?? m[2] ?? '')
}

/** Where a problem at `segments` of a document lies in the file: row and column or JSON pointer. */
function locate(
  format: ImportFormat,
  source: { row: number; sourceRows: readonly number[]; document: unknown },
  segments: readonly string[],
): { row: number; path: string } {
  if (format === 'csv')
    return csvCellOf(source.document as Partial<ProductDocument>, source.row, source.sourceRows, segments)
  return { row: source.row, path: pointer(segments) || '/' }
}

/** Ajv's errors, one per field: a union's alternatives would otherwise each report the same cell. */
function schemaErrors(format: ImportFormat, candidate: Candidate, errors: readonly ErrorObject[]) {
  const byPath = new Map<string, ImportError & { weak: boolean }>()
  for (const e of errors) {
    const segments = e.instancePath
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    const extra = (e.params.missingProperty ?? e.params.additionalProperty) as string | undefined
    if (extra !== undefined) segments.push(extra)
    const message =
      e.keyword === 'additionalProperties'
        ? 'is not a known field'
        : e.keyword === 'required'
          ? 'is required'
          : (e.message ?? 'is invalid')
    const at = locate(format, candidate, segments)
    const key = `${at.row}\u0000${at.path}`
    // `anyOf` and "must be null" only say that no alternative matched; the others say why.
    const weak = e.keyword === 'anyOf' || (e.keyword === 'type' && e.params.type === 'null')
    const seen = byPath.get(key)
    if (!seen || (seen.weak && !weak)) byPath.set(key, { ...at, message, weak })
  }
  const found = [...byPath.values()]
  // A nullable field's "must be null" says nothing when what is wrong lies inside the field.
  const within = (e: ImportError & { weak: boolean }) =>
    e.weak && found.some((other) => other.row === e.row && other.path.startsWith(`${e.path}/`))
  return found.filter((e) => !within(e)).map(({ weak: _, ...error }) => error)
}

// ---------------------------------------------------------------------------------------------
// Parsing

function parseJsonFile(text: string): Candidate[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw problem('malformed_json', `The file is not valid JSON: ${(error as Error).message}`, {
      errors: [{ path: 'body', message: 'is not valid JSON' }],
    })
  }
  const wrapper =
    value && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined
  const list = Array.isArray(value) ? value : Array.isArray(wrapper?.products) ? wrapper.products : undefined
  // Refused rather than ignored, as a document's unknown fields are: `{"products": [...], "mode":
  // "per_row"}` would otherwise run in the mode the query names while its sender meant another.
  const unknown = Object.keys(wrapper ?? {}).filter((key) => key !== 'products')
  if (!list || unknown.length > 0) {
    const keys = unknown.map((key) => JSON.stringify(key)).join(', ')
    throw problem(
      'validation_failed',
      list
        ? `A JSON import's wrapper holds only "products"; ${keys} ${unknown.length === 1 ? 'is' : 'are'} ` +
            'not known (the mode and dry run are query parameters)'
        : 'A JSON import is an array of products or {"products": [...]}',
      {
        errors: [
          ...(list
            ? []
            : [{ path: 'body', message: 'must be an array of products or an object with products' }]),
          ...unknown.map((key) => ({ path: `body.${key}`, message: 'is not a known field' })),
        ],
      },
    )
  }
  return list.map((document, i) => ({ row: i + 1, sourceRows: [], document, errors: [] }))
}

function parseNdjsonFile(text: string): { candidates: Candidate[]; rowErrors: ImportError[] } {
  const candidates: Candidate[] = []
  const rowErrors: ImportError[] = []
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return
    try {
      candidates.push({ row: i + 1, sourceRows: [], document: JSON.parse(line), errors: [] })
    } catch (error) {
      rowErrors.push({ row: i + 1, path: '/', message: `is not valid JSON: ${(error as Error).message}` })
    }
  })
  return { candidates, rowErrors }
}

function parseFile(
  format: ImportFormat,
  text: string,
): { candidates: Candidate[]; rowErrors: ImportError[] } {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  if (format === 'json') return { candidates: parseJsonFile(body), rowErrors: [] }
  if (format === 'ndjson') return parseNdjsonFile(body)
  const file = parseProductCsv(body)
  return {
    candidates: file.products.map((p) => ({
      row: p.row,
      sourceRows: p.variantRows,
      document: p.document,
      valuesFromRows: p.valuesFromRows,
      priceCurrencies: p.priceCurrencies,
      errors: p.errors,
    })),
    rowErrors: file.rowErrors,
  }
}

/**
 * A CSV's option set is read off its rows unless the file lists an option's values, and an upsert
 * may name only some of a stored product's variants, so rows alone would reorder the stored values
 * and drop those the rows do not name (a kept variant's, or one no variant uses yet). For an option
 * read off the rows, the stored values therefore stay, in their order, and the rows' new values
 * follow; only a listed option may remove or reorder values, and it is taken as given, as a JSON
 * document's. Done before validation, so that a dry run judges the very document the job will write.
 */
async function keepStoredOptionValues(db: Queryable, candidates: readonly Candidate[]): Promise<void> {
  const docs = candidates.flatMap((c) =>
    c.errors.length === 0 && c.valuesFromRows?.length
      ? [{ doc: c.document as ProductDocument, fromRows: new Set(c.valuesFromRows) }]
      : [],
  )
  // One batch at a time, on one connection: a re-imported catalog names a hundred thousand handles.
  for (const batch of chunks(docs, importTuning.batchSize)) {
    const { rows } = await sql<{ handle: string; options: ProductOption[] }>`
      select handle, options from products where handle = any(${batch.map((d) => d.doc.handle)})`.execute(db)
    const storedOf = new Map(rows.map((r) => [r.handle, r.options]))
    for (const { doc, fromRows } of batch) {
      const stored = storedOf.get(doc.handle) ?? []
      for (const option of doc.options ?? []) {
        if (!fromRows.has(option.name)) continue
        const values = stored.find((o) => o.name === option.name)?.values ?? []
        option.values = [...values, ...option.values.filter((v) => !values.includes(v))]
      }
    }
  }
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/**
 * Parses and validates a file: the schema, handles and SKUs repeated anywhere in the file, the
 * product rules, SKUs owned by other products, unknown categories and collections. Throws a
 * problem when the file as a whole cannot be read (malformed JSON, an unusable CSV header).
 */
export async function validateImport(
  db: Queryable,
  format: ImportFormat,
  mode: ImportMode,
  text: string,
): Promise<ValidatedImport> {
  const { candidates, rowErrors } = parseFile(format, text)
  for (const candidate of candidates) {
    // What no JSON body may hold either: nesting too deep for the writes, text PostgreSQL refuses.
    // Found before any handle is looked up, or the lookup would fail the whole file for one row.
    const fault = candidate.errors.length === 0 ? jsonDocumentFault(candidate.document) : undefined
    if (fault) candidate.errors.push({ ...locate(format, candidate, fault.segments), message: fault.message })
  }
  // A JSON document states its option set whole; only CSV derives it from the rows present.
  if (format === 'csv') await keepStoredOptionValues(db, candidates)
  const passed: Candidate[] = []
  for (const candidate of candidates) {
    if (candidate.errors.length === 0 && !validateDocument(candidate.document))
      candidate.errors.push(...schemaErrors(format, candidate, validateDocument.errors ?? []))
    if (candidate.errors.length === 0) passed.push(candidate)
  }
  // Across the whole file, since the batches below only see a thousand documents at a time.
  const handles = new Map<string, number>()
  const skus = new Map<string, number>()
  for (const candidate of passed) {
    const doc = candidate.document as ProductDocument
    const first = handles.get(doc.handle)
    if (first !== undefined)
      candidate.errors.push({
        ...locate(format, candidate, ['handle']),
        message: `repeats the handle of row ${first}`,
      })
    else handles.set(doc.handle, candidate.row)
    doc.variants?.forEach((variant, i) => {
      const owner = skus.get(variant.sku)
      if (owner !== undefined && owner !== candidate.row)
        candidate.errors.push({
          ...locate(format, candidate, ['variants', String(i), 'sku']),
          message: `repeats SKU ${variant.sku} of row ${owner}`,
        })
      else skus.set(variant.sku, candidate.row)
    })
  }
  const unique = passed.filter((c) => c.errors.length === 0)
  const pending = chunks(unique, importTuning.batchSize)
  // A few batches in flight: on PostgreSQL their lookups run on several connections while this
  // thread checks the next batch's rules (PGlite simply queues them).
  const checkNext = async (): Promise<void> => {
    for (let batch = pending.shift(); batch; batch = pending.shift()) {
      const problems = await checkDocuments(
        db,
        batch.map((c) => c.document as ProductDocument),
        (i) => `[${i}]`,
      )
      for (const e of problems) {
        const candidate = batch[e.index] as Candidate
        candidate.errors.push({ ...locate(format, candidate, segmentsOf(e.path)), message: e.message })
      }
      await yieldToEventLoop()
    }
  }
  await Promise.all([checkNext(), checkNext(), checkNext()])
  const errors = [...rowErrors, ...candidates.flatMap((c) => c.errors)].sort((a, b) => a.row - b.row)
  const badRows = new Set(rowErrors.map((e) => e.row)).size
  const failed = candidates.filter((c) => c.errors.length > 0).length
  return {
    format,
    mode,
    totalRows: candidates.length + badRows,
    valid: candidates
      .filter((c) => c.errors.length === 0)
      .map((c) => ({
        row: c.row,
        sourceRows: c.sourceRows,
        document: c.document as ProductDocument,
        ...(c.priceCurrencies ? { priceCurrencies: c.priceCurrencies } : {}),
      })),
    errors,
    failedCount: failed + badRows,
  }
}

// ---------------------------------------------------------------------------------------------
// Staging and reading

function iso(value: Date | string | null): string | null {
  if (value === null) return null
  return typeof value === 'string' ? new Date(value).toISOString() : value.toISOString()
}

function importView(row: Selectable<CatalogImportsTable>): ImportView {
  return {
    id: row.id,
    status: row.status,
    format: row.format,
    mode: row.mode,
    total_rows: row.total_rows,
    processed_rows: row.processed_rows,
    created_count: row.created_count,
    updated_count: row.updated_count,
    failed_count: row.failed_count,
    error_count: row.error_count,
    errors: row.errors,
    progress: row.total_rows === 0 ? 1 : Math.min(1, row.processed_rows / row.total_rows),
    created_by: row.created_by,
    created_at: iso(row.created_at) as string,
    started_at: iso(row.started_at),
    finished_at: iso(row.finished_at),
  }
}

/**
 * Creates the import, stages its valid documents and enqueues its job, all in the caller's
 * transaction: the job exists if and only if the documents it reads do.
 */
export async function stageImport(
  trx: Tx,
  jobs: Jobs,
  validated: ValidatedImport,
  createdBy: string | null,
): Promise<ImportView> {
  const id = newId('imp')
  const row = await trx
    .insertInto('catalog_imports')
    .values({
      id,
      format: validated.format,
      mode: validated.mode,
      total_rows: validated.totalRows,
      // Rows refused by validation are done with: they count as processed (and failed) from the start.
      processed_rows: validated.failedCount,
      failed_count: validated.failedCount,
      error_count: validated.errors.length,
      errors: JSON.stringify(validated.errors.slice(0, MAX_REPORTED_ERRORS)),
      created_by: createdBy,
    })
    .returningAll()
    .executeTakeFirstOrThrow()
  // Compressed on libuv's threads, all at once: JSON of this shape shrinks about tenfold, and the
  // database then writes (and logs) a tenth of the bytes.
  const batches = await Promise.all(
    chunks(validated.valid, importTuning.batchSize).map(async (batch, i) => ({
      import_id: id,
      batch_no: i + 1,
      documents: await gzip(
        JSON.stringify(
          batch.map((d) => ({
            row: d.row,
            source_rows: d.sourceRows,
            document: d.document,
            price_currencies: d.priceCurrencies,
          })),
        ),
        { level: constants.Z_BEST_SPEED },
      ),
    })),
  )
  // A few batches per statement.
  for (const group of chunks(batches, 10))
    await trx.insertInto('catalog_import_batches').values(group).execute()
  await jobs.enqueue(trx, IMPORT_JOB, { import_id: id }, { expireInSeconds: RUN_EXPIRY_SECONDS })
  return importView(row)
}

const progressKey = (id: string) => `catalog:import:${id}`

/** An import with its live progress while its job runs; undefined when unknown. */
export async function getImport(runtime: Runtime, id: string): Promise<ImportView | undefined> {
  // The KV snapshot first: during an all-or-nothing run on PGlite the database is busy until it ends.
  const live = await runtime.kv.get(progressKey(id)).catch(() => null)
  if (live) return JSON.parse(live) as ImportView
  const row = await runtime.database.db
    .selectFrom('catalog_imports')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirst()
  return row ? importView(row) : undefined
}

/** Imports newest first, without their error lists; limit + 1 rows tell whether a page follows. */
export async function listImports(
  db: Queryable,
  options: { limit: number; beforeId?: string; status?: ImportView['status'] },
): Promise<Array<Omit<ImportView, 'errors'>>> {
  let query = db
    .selectFrom('catalog_imports')
    .select([
      'id',
      'status',
      'format',
      'mode',
      'total_rows',
      'processed_rows',
      'created_count',
      'updated_count',
      'failed_count',
      'error_count',
      'created_by',
      'created_at',
      'started_at',
      'finished_at',
    ])
    .orderBy('id', 'desc')
    .limit(options.limit + 1)
  if (options.beforeId) query = query.where('id', '<', options.beforeId)
  if (options.status) query = query.where('status', '=', options.status)
  const rows = await query.execute()
  return rows.map((row) => {
    const { errors: _, ...view } = importView({ ...row, errors: [] })
    return view
  })
}

// ---------------------------------------------------------------------------------------------
// The job

/** A staged document as the job reads it. */
interface StagedRow {
  row: number
  source_rows: number[]
  document: ProductDocument
  /** StagedDocument.priceCurrencies; absent for JSON (and for rows staged before it existed). */
  price_currencies?: string[]
}

interface Counts {
  processed: number
  created: number
  updated: number
  failed: number
  errorCount: number
  errors: ImportError[]
}

interface BatchOutcome {
  created: number
  updated: number
  failed: number
  errors: ImportError[]
}

/** A batch's problems stop an all-or-nothing import; the transaction rolls back. */
class ImportRejected extends Error {
  override name = 'ImportRejected'
  readonly errors: ImportError[]
  constructor(errors: ImportError[]) {
    super(`${errors.length} problem(s)`)
    this.errors = errors
  }
}

/**
 * The client-facing problems of a failed write, or undefined when the failure is not the data's
 * (a lost connection, a bug): those must fail the job so that it is retried.
 */
function writeProblems(error: unknown): FieldError[] | undefined {
  if (error instanceof BulkDocumentError) return error.errors
  const translated = translateWriteError(error, '[0]')
  if (translated instanceof ProblemError)
    return translated.errors ?? [{ path: '[0]', message: translated.detail ?? translated.message }]
  const code = (error as { code?: unknown } | null)?.code
  // SQLSTATE classes 22 (data exception) and 23 (integrity violation): the document's fault.
  if (typeof code === 'string' && /^2[23]/.test(code))
    return [{ path: '[0]', message: `cannot be written: ${(error as Error).message}` }]
  return undefined
}

/** Runs work in a savepoint; a data failure rolls back to it and comes back as problems. */
async function inSavepoint<T>(
  trx: Tx,
  work: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; problems: FieldError[] }> {
  await sql`savepoint catalog_import`.execute(trx)
  try {
    const value = await work()
    await sql`release savepoint catalog_import`.execute(trx)
    return { ok: true, value }
  } catch (error) {
    const problems = writeProblems(error)
    if (!problems) throw error
    await sql`rollback to savepoint catalog_import`.execute(trx)
    return { ok: false, problems }
  }
}

/**
 * Writes one batch in the caller's transaction. Its documents passed every rule when the file was
 * validated, and documents never change once staged, so only what the database holds can have
 * changed since: a SKU taken meanwhile, a category deleted. The constraints (and, for a tax
 * category, bulkUpsertProducts' own check) catch those, so the batch is written at once, and only
 * if that fails is it written again one document at a time, each in a savepoint, to find the
 * documents at fault.
 */
async function writeBatch(trx: Tx, format: ImportFormat, rows: readonly StagedRow[]): Promise<BatchOutcome> {
  const outcome: BatchOutcome = { created: 0, updated: 0, failed: 0, errors: [] }
  if (rows.length === 0) return outcome
  const whole = await inSavepoint(trx, () =>
    bulkUpsertProducts(
      trx,
      rows.map((r) => r.document),
      rows.map((r) => r.price_currencies),
    ),
  )
  if (whole.ok) {
    outcome.created += whole.value.created
    outcome.updated += whole.value.updated
    return outcome
  }
  for (const row of rows) {
    const one = await inSavepoint(trx, async () => {
      // The precise reasons (whose SKU, which category) before the constraints' terser ones.
      const problems = await checkDocuments(trx, [row.document], (i) => `[${i}]`)
      if (problems.length > 0) throw new BulkDocumentError(problems)
      return bulkUpsertProducts(trx, [row.document], [row.price_currencies])
    })
    if (one.ok) {
      outcome.created += one.value.created
      outcome.updated += one.value.updated
    } else {
      outcome.failed++
      outcome.errors.push(
        ...one.problems.map((p) => ({
          ...locate(
            format,
            { row: row.row, sourceRows: row.source_rows, document: row.document },
            segmentsOf(p.path),
          ),
          message: p.message,
        })),
      )
    }
  }
  return outcome
}

function advance(counts: Counts, rows: number, outcome: BatchOutcome): Counts {
  return {
    processed: counts.processed + rows,
    created: counts.created + outcome.created,
    updated: counts.updated + outcome.updated,
    failed: counts.failed + outcome.failed,
    errorCount: counts.errorCount + outcome.errors.length,
    errors: [...counts.errors, ...outcome.errors.slice(0, MAX_REPORTED_ERRORS - counts.errors.length)],
  }
}

function countColumns(counts: Counts) {
  return {
    processed_rows: counts.processed,
    created_count: counts.created,
    updated_count: counts.updated,
    failed_count: counts.failed,
    error_count: counts.errorCount,
    errors: JSON.stringify(counts.errors),
  }
}

/** The first staged batch after `afterBatch`, or undefined when none is left. */
async function readBatch(
  db: Queryable,
  importId: string,
  afterBatch: number,
): Promise<{ batchNo: number; rows: StagedRow[] } | undefined> {
  const batch = await db
    .selectFrom('catalog_import_batches')
    .select(['batch_no', 'documents'])
    .where('import_id', '=', importId)
    .where('batch_no', '>', afterBatch)
    .orderBy('batch_no')
    .limit(1)
    .executeTakeFirst()
  if (!batch) return undefined
  return { batchNo: batch.batch_no, rows: JSON.parse((await gunzip(batch.documents)).toString('utf8')) }
}

interface Run {
  claimed: Selectable<CatalogImportsTable>
  counts: Counts
}

/**
 * Publishes the run's counts for readers. Callers then yield to the event loop: PGlite answers
 * queries without ever leaving the microtask queue, so a loop of batches would otherwise keep the
 * node from serving any request (a progress poll included) until the import ends.
 */
async function publishProgress(runtime: Runtime, run: Run): Promise<void> {
  const view = importView({ ...run.claimed, ...countColumns(run.counts), errors: run.counts.errors })
  try {
    await runtime.kv.set(progressKey(run.claimed.id), JSON.stringify(view), PROGRESS_TTL_MS)
  } catch (error) {
    // Progress is a courtesy; the import itself must not fail because the KV store is down.
    runtime.logger.warn({ err: error, importId: run.claimed.id }, 'import progress not published')
  }
}

function importedEvent(run: Run) {
  return {
    import_id: run.claimed.id,
    format: run.claimed.format,
    mode: run.claimed.mode,
    total_rows: run.claimed.total_rows,
    created_count: run.counts.created,
    updated_count: run.counts.updated,
    failed_count: run.counts.failed,
  }
}

async function runAllOrNothing(runtime: Runtime, run: Run): Promise<void> {
  const { db } = runtime.database
  const { id } = run.claimed
  const start = run.counts
  try {
    // Only trx inside: on PGlite a statement on db would wait for this transaction forever.
    run.counts = await withTransaction(db, async (trx) => {
      run.counts = start
      let after = 0
      for (;;) {
        const batch = await readBatch(trx, id, after)
        if (!batch) break
        const outcome = await writeBatch(trx, run.claimed.format, batch.rows)
        if (outcome.failed > 0) throw new ImportRejected(outcome.errors)
        run.counts = advance(run.counts, batch.rows.length, outcome)
        after = batch.batchNo
        await publishProgress(runtime, run)
        await yieldToEventLoop()
      }
      await runtime.outbox.emit(trx, 'catalog.imported', importedEvent(run), id)
      await trx.deleteFrom('catalog_import_batches').where('import_id', '=', id).execute()
      await trx
        .updateTable('catalog_imports')
        .set({ ...countColumns(run.counts), status: 'succeeded', finished_at: sql<Date>`now()` })
        .where('id', '=', id)
        .execute()
      return run.counts
    })
  } catch (error) {
    if (!(error instanceof ImportRejected)) throw error
    const errors = [...start.errors, ...error.errors].slice(0, MAX_REPORTED_ERRORS)
    await withTransaction(db, async (trx) => {
      await trx.deleteFrom('catalog_import_batches').where('import_id', '=', id).execute()
      await trx
        .updateTable('catalog_imports')
        .set({
          status: 'failed',
          // Nothing was written: every product of the file failed to import.
          processed_rows: run.claimed.total_rows,
          created_count: 0,
          updated_count: 0,
          failed_count: run.claimed.total_rows,
          error_count: start.errorCount + error.errors.length,
          errors: JSON.stringify(errors),
          finished_at: sql<Date>`now()`,
        })
        .where('id', '=', id)
        .execute()
    })
    return
  }
  await catalogCacheOf(runtime).invalidate()
}

async function runPerRow(runtime: Runtime, run: Run): Promise<void> {
  const { db } = runtime.database
  const { id } = run.claimed
  const cache = catalogCacheOf(runtime)
  for (;;) {
    // Committed batches leave the staging table, so the next one is always the first left.
    const batch = await readBatch(db, id, 0)
    if (!batch) break
    run.counts = await withTransaction(db, async (trx) => {
      const outcome = await writeBatch(trx, run.claimed.format, batch.rows)
      const counts = advance(run.counts, batch.rows.length, outcome)
      await trx
        .deleteFrom('catalog_import_batches')
        .where('import_id', '=', id)
        .where('batch_no', '=', batch.batchNo)
        .execute()
      await trx.updateTable('catalog_imports').set(countColumns(counts)).where('id', '=', id).execute()
      return counts
    })
    await cache.invalidate()
    await publishProgress(runtime, run)
    await yieldToEventLoop()
  }
  await withTransaction(db, async (trx) => {
    await runtime.outbox.emit(trx, 'catalog.imported', importedEvent(run), id)
    await trx
      .updateTable('catalog_imports')
      .set({ status: 'succeeded', finished_at: sql<Date>`now()` })
      .where('id', '=', id)
      .execute()
  })
}

/**
 * The job body: claims a queued import (so a second delivery of the same job does nothing), writes
 * its staged documents and records the outcome. A failure that is not the data's (the database
 * going away) puts the import back in the queue and rethrows, so pg-boss retries the job.
 */
export async function runImport(runtime: Runtime, importId: string): Promise<void> {
  const { db } = runtime.database
  const claimed = await db
    .updateTable('catalog_imports')
    .set({ status: 'running', started_at: sql<Date>`now()` })
    .where('id', '=', importId)
    .where((eb) =>
      eb.or([
        eb('status', '=', 'queued'),
        eb.and([
          eb('status', '=', 'running'),
          eb('started_at', '<', sql<Date>`now() - make_interval(secs => ${RUN_EXPIRY_SECONDS})`),
        ]),
      ]),
    )
    .returningAll()
    .executeTakeFirst()
  if (!claimed) return
  const run: Run = {
    claimed,
    counts: {
      processed: claimed.processed_rows,
      created: claimed.created_count,
      updated: claimed.updated_count,
      failed: claimed.failed_count,
      errorCount: claimed.error_count,
      errors: claimed.errors,
    },
  }
  await publishProgress(runtime, run)
  try {
    if (claimed.mode === 'all_or_nothing') await runAllOrNothing(runtime, run)
    else await runPerRow(runtime, run)
  } catch (error) {
    await db
      .updateTable('catalog_imports')
      .set({ status: 'queued' })
      .where('id', '=', importId)
      .where('status', '=', 'running')
      .execute()
      .catch((e: unknown) => runtime.logger.error({ err: e, importId }, 'import could not be requeued'))
    throw error
  } finally {
    await runtime.kv.delete(progressKey(importId)).catch(() => {})
  }
}

/** Defines the `catalog.import` job on the runtime's queue. */
export function defineImportJob(runtime: Runtime): void {
  // One import at a time per node: each already uses the database as fast as it can take it.
  runtime.jobs.define<{ import_id: string }>(IMPORT_JOB, ({ import_id }) => runImport(runtime, import_id), {
    concurrency: 1,
  })
}
