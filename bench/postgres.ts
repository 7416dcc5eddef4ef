/**
 * A throwaway PostgreSQL database per benchmark run, so the first start really is a cold start on
 * an empty schema and nothing is left behind on the server afterwards.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { BenchError } from './processes.ts'

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1'])

export interface BenchDatabase {
  name: string
  url: string
  drop(): Promise<void>
}

/** Refuses anything but a loopback server: the harness creates and drops databases on it. */
export function checkLocal(url: string): URL {
  const parsed = new URL(url)
  if (!['postgres:', 'postgresql:'].includes(parsed.protocol)) {
    throw new BenchError(`BENCH_DATABASE_URL must be a postgres:// URL, got ${parsed.protocol}`)
  }
  if (!LOOPBACK.has(parsed.hostname)) {
    throw new BenchError(
      `BENCH_DATABASE_URL must point at 127.0.0.1 (the same machine), got ${parsed.hostname}`,
    )
  }
  return parsed
}

async function admin<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** Creates `sw_bench_<random>` on the server `serverUrl` names and returns its URL. */
export async function createBenchDatabase(serverUrl: string): Promise<BenchDatabase> {
  const server = checkLocal(serverUrl)
  const name = `sw_bench_${randomBytes(6).toString('hex')}`
  await admin(serverUrl, (client) => client.query(`create database ${name}`))
  const url = new URL(server)
  url.pathname = `/${name}`
  return {
    name,
    url: url.toString(),
    async drop() {
      // FORCE ends connections a killed child may have left open (PostgreSQL 13+).
      await admin(serverUrl, (client) => client.query(`drop database if exists ${name} with (force)`))
    },
  }
}
