/**
 * The baseline the harness compares Shopwright against: bare Fastify 5 with no plugins, no logger
 * and no schemas, run as its own process on the same host. It answers
 *   GET /hello            → {"status":"ok"}, the floor for /livez and for cached responses;
 *   GET /products         → one 20-row SELECT of published products, newest first: the floor
 *                           for the storefront list;
 *   GET /product?handle=  → one product row by handle: the floor for the product page;
 *   GET /search?q=        → one 20-row full-text SELECT, title matches newest first: the floor for search.
 *   GET /bytes?n=         → a JSON body of n bytes, made once: the floor for any answer of that size
 *                           (a cached product page is about 9 KB, hello-world 15 bytes).
 *
 * Environment: PORT, HOST, and either BASELINE_DATABASE_URL (PostgreSQL: the very database the
 * server uses, through a pg.Pool of the server's default size) or BASELINE_PGLITE_DIR (a copy of the
 * server's PGlite directory, made while the server was stopped: PGlite is single-process, so the
 * baseline cannot share the server's, but the copy holds the same catalog to the byte).
 */
import Fastify from 'fastify'

const LIMIT = 20
/** The server's DATABASE_POOL_MAX default. */
const POOL_MAX = 10

// One row more than the page, as the storefront fetches to learn whether a next page exists.
const LIST_SQL =
  "select id, handle, title, subtitle, media -> 0 as thumbnail, tags, created_at from products where status = 'published' " +
  `order by id desc limit ${LIMIT + 1}`
const PRODUCT_SQL =
  'select id, handle, title, subtitle, description, tax_category, options, tags, attributes, media, created_at, ' +
  "updated_at from products where handle = $1 and status = 'published'"
// The storefront's search when it is the only filter: title matches, newest first (see
// docs/decisions.md, "Search relevance"), read on the narrow search table, then the page's rows.
const SEARCH_SQL =
  'select p.id, p.handle, p.title, p.subtitle, p.media -> 0 as thumbnail, p.tags, p.created_at from products p ' +
  "where p.id in (select s.product_id from product_search s where s.status = 'published' " +
  "and s.search @@ to_tsquery('english', $1) order by s.product_id desc limit " +
  `${LIMIT + 1}) order by p.id desc`

type Query = (text: string, params: unknown[]) => Promise<Array<Record<string, unknown>>>

async function postgresQuery(url: string): Promise<Query> {
  const { default: pg } = await import('pg')
  const pool = new pg.Pool({ connectionString: url, max: POOL_MAX })
  pool.on('error', () => {})
  return async (text, params) => (await pool.query(text, params)).rows
}

async function pgliteQuery(dir: string): Promise<Query> {
  const { PGlite } = await import('@electric-sql/pglite')
  const { pg_trgm } = await import('@electric-sql/pglite/contrib/pg_trgm')
  const pglite = await PGlite.create(dir, { extensions: { pg_trgm } })
  // Kysely's PGlite driver sends queries this way; the bare baseline skips only Kysely itself.
  return async (text, params) =>
    (await pglite.query<Record<string, unknown>>(text, params, { rowMode: 'object' })).rows
}

const databaseUrl = process.env.BASELINE_DATABASE_URL
const pgliteDir = process.env.BASELINE_PGLITE_DIR
if (!databaseUrl && !pgliteDir) {
  console.error('baseline: set BASELINE_DATABASE_URL or BASELINE_PGLITE_DIR')
  process.exit(1)
}
const query = databaseUrl ? await postgresQuery(databaseUrl) : await pgliteQuery(pgliteDir!)

/** The same envelope as the storefront, so both send about the same number of bytes. */
function page(rows: Array<Record<string, unknown>>) {
  const data = rows.slice(0, LIMIT)
  return { data, next_cursor: rows.length > LIMIT ? (data.at(-1)?.id ?? null) : null }
}

const app = Fastify()
app.get('/hello', async () => ({ status: 'ok' }))
app.get('/products', async () => page(await query(LIST_SQL, [])))
app.get<{ Querystring: { handle: string } }>('/product', async (request, reply) => {
  const [row] = await query(PRODUCT_SQL, [request.query.handle])
  if (!row) return reply.code(404).send({ status: 404 })
  return row
})
app.get<{ Querystring: { q: string } }>('/search', async (request) =>
  // The storefront turns each word into a prefix term; the baseline is given the same tsquery.
  page(
    await query(SEARCH_SQL, [
      request.query.q
        .split(/\s+/)
        .map((w) => `${w}:*`)
        .join(' & '),
    ]),
  ),
)

const bodies = new Map<number, Buffer>()
app.get<{ Querystring: { n: string } }>('/bytes', async (request, reply) => {
  const n = Math.max(16, Math.min(Number(request.query.n) || 0, 1_000_000))
  let body = bodies.get(n)
  if (!body) {
    body = Buffer.from(`{"data":"${'x'.repeat(n - 11)}"}`)
    bodies.set(n, body)
  }
  reply.type('application/json; charset=utf-8')
  return body
})

process.once('SIGTERM', () => {
  app.close().finally(() => process.exit(0))
})

await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 3001) })
