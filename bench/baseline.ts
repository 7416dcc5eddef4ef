/**
 * The baseline the harness compares Shopwright against: bare Fastify 5 with no plugins, no logger
 * and no schemas, run as its own process on the same host. It answers
 *   GET /hello     → {"status":"ok"}, the floor for /livez;
 *   GET /products  → the storefront list query (the SQL listProducts sends), the floor for
 *                    /store/products.
 *
 * Environment: PORT, HOST, and either BASELINE_DATABASE_URL (PostgreSQL: the very database the
 * server uses, through a pg.Pool of the server's default size) or BASELINE_ROWS_FILE (PGlite).
 *
 * With PGlite the baseline cannot open the server's data directory: PGlite is single-process and
 * the server holds it. So it opens its own in-memory PGlite, applies Shopwright's migrations (same
 * tables and indexes) and inserts the exact product rows the harness read from the server. The
 * query then runs on an identical table, only in another process.
 */
import { readFileSync } from 'node:fs'
import Fastify from 'fastify'

/** What Kysely compiles listProducts(db, { limit: 20, status: 'published' }) to. */
const LIST_SQL =
  'select "id", "handle", "title", "description", "status", "metadata", "created_at", "updated_at" ' +
  'from "products" where "status" = $1 order by "id" desc limit $2'
const LIMIT = 20
// One row more than the page, as listProducts fetches to learn whether a next page exists.
const LIST_PARAMS = ['published', LIMIT + 1]
/** The server's DATABASE_POOL_MAX default. */
const POOL_MAX = 10

interface ProductRow {
  id: string
  handle: string
  title: string
  description: string
  status: string
  metadata: Record<string, unknown>
  created_at: string | Date
  updated_at: string | Date
}

type ListQuery = () => Promise<ProductRow[]>

async function postgresQuery(url: string): Promise<ListQuery> {
  const { default: pg } = await import('pg')
  const pool = new pg.Pool({ connectionString: url, max: POOL_MAX })
  pool.on('error', () => {})
  return async () => (await pool.query<ProductRow>(LIST_SQL, LIST_PARAMS)).rows
}

async function pgliteQuery(rowsFile: string): Promise<ListQuery> {
  // Imported only here, so the PostgreSQL baseline loads nothing of Shopwright's.
  const { openDatabase } = await import('../src/platform/db/database.ts')
  const { migrateToLatest } = await import('../src/platform/db/migrate.ts')
  const database = await openDatabase({ url: undefined, dataDir: undefined })
  await migrateToLatest(database.db)
  const pglite = database.pglite!
  const rows = JSON.parse(readFileSync(rowsFile, 'utf8')) as ProductRow[]
  for (const row of rows) {
    await pglite.query(
      'insert into products (id, handle, title, description, status, metadata, created_at, updated_at) ' +
        'values ($1, $2, $3, $4, $5, $6, $7, $8)',
      [
        row.id,
        row.handle,
        row.title,
        row.description,
        row.status,
        JSON.stringify(row.metadata),
        row.created_at,
        row.updated_at,
      ],
    )
  }
  // Kysely's PGlite driver sends queries this way; the bare baseline skips only Kysely itself.
  return async () => (await pglite.query<ProductRow>(LIST_SQL, LIST_PARAMS, { rowMode: 'object' })).rows
}

const databaseUrl = process.env.BASELINE_DATABASE_URL
const rowsFile = process.env.BASELINE_ROWS_FILE
if (!databaseUrl && !rowsFile) {
  console.error('baseline: set BASELINE_DATABASE_URL or BASELINE_ROWS_FILE')
  process.exit(1)
}
const list = databaseUrl ? await postgresQuery(databaseUrl) : await pgliteQuery(rowsFile!)

const app = Fastify()
app.get('/hello', async () => ({ status: 'ok' }))
app.get('/products', async () => {
  const rows = await list()
  const data = rows.slice(0, LIMIT)
  // The same envelope as the storefront, so both send about the same number of bytes.
  return { data, next_cursor: rows.length > LIMIT ? (data.at(-1)?.id ?? null) : null }
})

process.once('SIGTERM', () => {
  app.close().finally(() => process.exit(0))
})

await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 3001) })
