/**
 * Runs once before the test files: makes one migrated database of each kind for test nodes to start
 * from. Starting an embedded database runs initdb and then every migration, several seconds on this
 * machine, and the suite starts well over a hundred; a copy of a migrated one starts in a fraction
 * of that. PostgreSQL gets a template database for `CREATE DATABASE … TEMPLATE`; PGlite gets a dump
 * of its data directory in a file. Tests that need an empty database still get one
 * (createTestDatabase without `migrated`).
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { TestProject } from 'vitest/node'
import { openDatabase } from '../../src/platform/db/database.ts'
import { migrateToLatest } from '../../src/platform/db/migrate.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** A file holding the data directory of a migrated PGlite database. */
    pgliteTemplateFile: string
    /** A migrated PostgreSQL database to copy, when TEST_DATABASE_URL is set; else ''. */
    postgresTemplate: string
  }
}

async function onServer<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

async function migrated(url: string | undefined) {
  const database = await openDatabase({ url, dataDir: undefined })
  try {
    await migrateToLatest(database.db)
    // 'none': a plain tar, so that each test database only copies it, never inflates it.
    return url ? undefined : await database.pglite!.dumpDataDir('none')
  } finally {
    await database.close()
  }
}

/** Makes the templates and hands their names to the test files; the teardown removes them. */
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), 'sw-template-'))
  const file = join(dir, 'pglite.tar')
  writeFileSync(file, Buffer.from(await (await migrated(undefined))!.arrayBuffer()))
  project.provide('pgliteTemplateFile', file)

  const serverUrl = process.env.TEST_DATABASE_URL
  let template = ''
  if (serverUrl) {
    template = `sw_template_${randomBytes(6).toString('hex')}`
    await onServer(serverUrl, (c) => c.query(`create database ${template}`))
    const url = new URL(serverUrl)
    url.pathname = `/${template}`
    await migrated(url.toString())
  }
  project.provide('postgresTemplate', template)

  return async () => {
    rmSync(dir, { recursive: true, force: true })
    if (serverUrl && template) {
      await onServer(serverUrl, (c) => c.query(`drop database if exists ${template} with (force)`))
    }
  }
}
