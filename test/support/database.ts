/**
 * Test databases: every database test runs on embedded PGlite and, when TEST_DATABASE_URL is set,
 * on PostgreSQL too, each in a fresh database of its own so that test files never see each other.
 * A migrated one is a copy of the template global-setup.ts made, rather than a new one migrated.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import pg from 'pg'
import { describe, inject } from 'vitest'
import {
  type Database,
  type DatabaseKind,
  type EmbeddedStart,
  openDatabase,
} from '../../src/platform/db/database.ts'

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
  /** What a node opening this (PGlite) database starts from: see RuntimeOptions.embeddedStart. */
  embeddedStart: EmbeddedStart | undefined
}

let embedded: EmbeddedStart | undefined
// The project's TypeScript libraries (ES2024, no DOM) do not declare WebAssembly; Node has it.
const wasmCompiler = (
  globalThis as unknown as {
    WebAssembly: { compile(bytes: Uint8Array): Promise<EmbeddedStart['wasmModule']> }
  }
).WebAssembly

/**
 * The migrated PGlite data directory and the compiled PGlite module, read and compiled once per
 * test file's process rather than once per database.
 */
async function embeddedStart(): Promise<EmbeddedStart> {
  if (!embedded) {
    const wasm = readFileSync(
      new URL('pglite.wasm', `file://${createRequire(import.meta.url).resolve('@electric-sql/pglite')}`),
    )
    embedded = {
      dataDir: new Blob([readFileSync(inject('pgliteTemplateFile'))]),
      wasmModule: await wasmCompiler.compile(wasm),
    }
  }
  return embedded
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

/**
 * A fresh database of the given kind: empty, or `migrated` to the latest schema. PGlite ones live in
 * memory and vanish on close.
 */
export async function createTestDatabase(
  kind: DatabaseKind,
  { migrated = false }: { migrated?: boolean } = {},
): Promise<TestDatabase> {
  if (kind === 'pglite') {
    const start = migrated ? await embeddedStart() : undefined
    return {
      kind,
      url: undefined,
      open: () => openDatabase({ url: undefined, dataDir: undefined, embeddedStart: start }),
      drop: async () => {},
      embeddedStart: start,
    }
  }
  const name = `sw_test_${randomBytes(6).toString('hex')}`
  const template = migrated ? inject('postgresTemplate') : ''
  await admin((c) => c.query(`create database ${name}${template ? ` template ${template}` : ''}`))
  const url = new URL(process.env.TEST_DATABASE_URL!)
  url.pathname = `/${name}`
  return {
    kind,
    url: url.toString(),
    open: () => openDatabase({ url: url.toString(), dataDir: undefined, poolMax: 20 }),
    drop: () => admin((c) => c.query(`drop database if exists ${name} with (force)`)).then(() => {}),
    embeddedStart: undefined,
  }
}

/** Runs the suite once per database kind: `describeEachDatabase('idempotency', (kind) => …)`. */
export function describeEachDatabase(name: string, suite: (kind: DatabaseKind) => void): void {
  for (const kind of DATABASE_KINDS) describe(`${kind}: ${name}`, () => suite(kind))
}

/** Runs the suite only on PostgreSQL (concurrency tests: PGlite serialises everything). */
export const describePostgres = describe.runIf(Boolean(process.env.TEST_DATABASE_URL))
