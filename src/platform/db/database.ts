/**
 * The database: Kysely over embedded PGlite (no DATABASE_URL) or a `pg` pool on PostgreSQL.
 * Both run the same SQL and the same migrations; only the connection differs.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { PGlite, type PGliteOptions, types as pgliteTypes } from '@electric-sql/pglite'
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm'
import { Kysely, PGliteDialect, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import type { Logger } from 'pino'
import type { DB } from './schema.ts'
import { keepStatementsPrepared } from './statements.ts'

export type DatabaseKind = 'pglite' | 'postgres'

export interface Database {
  readonly kind: DatabaseKind
  /** The postgres:// URL, when kind is postgres. */
  readonly url: string | undefined
  readonly db: Kysely<DB>
  /** The embedded instance, when kind is pglite: pg-boss shares it through its PGlite adapter. */
  readonly pglite: PGlite | undefined
  /** The pool, when kind is postgres: exposed for pool metrics. */
  readonly pool: pg.Pool | undefined
  /** Runs `select 1`; rejects when the database cannot answer. */
  ping(): Promise<void>
  close(): Promise<void>
}

export interface DatabaseOptions {
  /** postgres:// URL; undefined for embedded PGlite. */
  url: string | undefined
  /** Directory for PGlite's files; undefined keeps an embedded database in memory (tests). */
  dataDir: string | undefined
  poolMax?: number
  /** Statements each PostgreSQL connection keeps prepared; 0 prepares none. */
  statementCache?: number
  logger?: Logger
  /** Where an in-memory PGlite starts from, instead of an empty cluster (tests: see EmbeddedStart). */
  embeddedStart?: EmbeddedStart | undefined
}

/**
 * A start for an in-memory PGlite: a dumped data directory (skipping initdb, and the migrations
 * when it was migrated) and the compiled WebAssembly module (skipping its compilation). Tests start
 * a great many databases, and each costs seconds without one.
 */
export interface EmbeddedStart {
  dataDir: Blob
  wasmModule: NonNullable<PGliteOptions['pgliteWasmModule']>
}

// int8 (count(*), sums) arrives as a string from pg; money and counts here fit in a JS number.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10))

const TIMESTAMPTZ = pg.types.builtins.TIMESTAMPTZ
const serializeTimestamptz = pgliteTypes.serializers[TIMESTAMPTZ]!

/**
 * A Date as PostgreSQL reads it, for PGlite's timestamptz parameters. PGlite sends toISOString(),
 * whose years before 1 are signed six-digit years (`-000043-03-15T…Z`) that PostgreSQL refuses; it
 * writes them `0044-03-15 … BC` (year 0 being 1 BC), as pg does.
 */
function timestamptzInput(value: unknown): string {
  if (!(value instanceof Date) || Number.isNaN(value.getTime()) || value.getUTCFullYear() > 0)
    return serializeTimestamptz(value)
  const iso = value.toISOString()
  const year = String(1 - value.getUTCFullYear()).padStart(4, '0')
  return `${year}${iso.slice(iso.indexOf('-', 1), -1)}+00 BC`
}

/**
 * How PGlite reads and writes timestamptz. Its own parser is `new Date(text)`, which reads the years
 * 0001 to 0099 by the legacy two-digit rules (`0001-06-01 00:00:00+00` becomes 2001-01-06) and BC
 * years as an invalid date; pg's parser (postgres-date) reads both right, so both databases give
 * every module the same instant.
 */
const pgliteTimestamps = {
  parsers: { [TIMESTAMPTZ]: pg.types.getTypeParser(TIMESTAMPTZ) },
  serializers: { [TIMESTAMPTZ]: timestamptzInput },
}

const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  '57P01',
  '57P03',
])

/**
 * True for errors that mean the database (or another server) could not be reached, as opposed to a
 * statement that failed: shutting down, refusing connections, or a connection lost mid-way.
 */
export function isConnectionError(error: unknown): boolean {
  const e = (error ?? {}) as { code?: unknown; message?: unknown; errors?: unknown; cause?: unknown }
  if (typeof e.code === 'string' && (CONNECTION_ERRORS.has(e.code) || e.code.startsWith('08'))) return true
  if (e.cause && e.cause !== error && isConnectionError(e.cause)) return true
  // Node reports a refused dual-stack connect as an AggregateError of per-address errors.
  if (Array.isArray(e.errors) && e.errors.some(isConnectionError)) return true
  return /Connection terminated|timeout exceeded when trying to connect|CONNECTION_REFUSED|connection refused/i.test(
    String(e.message ?? ''),
  )
}

/** Opens the database the options name. Does not migrate: see migrateToLatest. */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url)
    return openPostgres(options.url, options.poolMax ?? 10, options.statementCache ?? 250, options.logger)
  return openPglite(options.dataDir, options.embeddedStart)
}

async function openPglite(dataDir: string | undefined, start: EmbeddedStart | undefined): Promise<Database> {
  let path: string | undefined
  if (dataDir) {
    path = join(dataDir, 'pglite')
    mkdirSync(path, { recursive: true })
  }
  // pg_trgm gives catalog search its typo tolerance; PGlite ships it as a loadable contrib module.
  const from = start && !path ? { loadDataDir: start.dataDir, pgliteWasmModule: start.wasmModule } : {}
  const pglite = await PGlite.create(path, { extensions: { pg_trgm }, ...pgliteTimestamps, ...from })
  // PGlite is one connection. Kysely's PGlite adapter declares that (supportsMultipleConnections is
  // false), so Kysely serialises every query and transaction through one mutex: nothing can slip a
  // statement into another caller's open transaction (test/database.test.ts proves it). pg-boss
  // reaches PGlite directly and queues behind PGlite's own transaction lock.
  const db = new Kysely<DB>({ dialect: new PGliteDialect({ pglite }) })
  return {
    kind: 'pglite',
    url: undefined,
    db,
    pglite,
    pool: undefined,
    async ping() {
      await sql`select 1`.execute(db)
    },
    async close() {
      await db.destroy()
    },
  }
}

function openPostgres(
  url: string,
  max: number,
  statementCache: number,
  logger: Logger | undefined,
): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // Renews connections now and then, and with them the statements each keeps prepared.
    maxLifetimeSeconds: 1_800,
    application_name: 'shopwright',
  })
  // An idle client that loses its server emits here; without a listener the process would crash.
  pool.on('error', (error) => logger?.warn({ err: error }, 'database connection lost'))
  // The pool stops listening to a client while it is checked out (inside a transaction, say); a
  // socket that dies then would emit an unheard 'error' and end the process. The statement in flight
  // rejects on its own, so this listener only keeps the process alive.
  pool.on('connect', (client) => {
    client.on('error', (error) => logger?.warn({ err: error }, 'database connection lost while in use'))
    keepStatementsPrepared(client, statementCache)
  })
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) })
  return {
    kind: 'postgres',
    url,
    db,
    pglite: undefined,
    pool,
    async ping() {
      await sql`select 1`.execute(db)
    },
    async close() {
      await db.destroy()
    },
  }
}
