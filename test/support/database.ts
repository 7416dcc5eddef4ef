/**
 * Test databases: every database test runs on embedded PGlite and, when TEST_DATABASE_URL is set,
 * on PostgreSQL too, each in a fresh database of its own so that test files never see each other.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { describe } from 'vitest'
import { type Database, type DatabaseKind, openDatabase } from '../../src/platform/db/database.ts'

export const DATABASE_KINDS: DatabaseKind[] = process.env.TEST_DATABASE_URL
  ? ['pglite', 'postgres']
  : ['pglite']

export interface TestDatabase {
  kind: DatabaseKind
  /** The postgres:// URL of the fresh database, when kind is postgres. */
  url: string | undefined
  /** Opens a (further) connection to this database, as another node would. */
  open(): Promise<Database>
  /** Drops the fresh database (postgres); the caller closes what it opened first. */
  drop(): Promise<void>
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** A fresh, empty database of the given kind. PGlite ones live in memory and vanish on close. */
export async function createTestDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  if (kind === 'pglite') {
    return {
      kind,
      url: undefined,
      open: () => openDatabase({ url: undefined, dataDir: undefined }),
      drop: async () => {},
    }
  }
  const name = `sw_test_${randomBytes(6).toString('hex')}`
  await admin((c) => c.query(`create database ${name}`))
  const url = new URL(process.env.TEST_DATABASE_URL!)
  url.pathname = `/${name}`
  return {
    kind,
    url: url.toString(),
    open: () => openDatabase({ url: url.toString(), dataDir: undefined, poolMax: 20 }),
    drop: () => admin((c) => c.query(`drop database if exists ${name} with (force)`)).then(() => {}),
  }
}

/** Runs the suite once per database kind: `describeEachDatabase('idempotency', (kind) => …)`. */
export function describeEachDatabase(name: string, suite: (kind: DatabaseKind) => void): void {
  for (const kind of DATABASE_KINDS) describe(`${kind}: ${name}`, () => suite(kind))
}

/** Runs the suite only on PostgreSQL (concurrency tests: PGlite serialises everything). */
export const describePostgres = describe.runIf(Boolean(process.env.TEST_DATABASE_URL))
