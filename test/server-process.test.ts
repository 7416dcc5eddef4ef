/**
 * The node as an operator sees it: it starts before its database and becomes ready on its own,
 * drops out of readiness when the database goes and comes back with it, drains on SIGTERM, and
 * keeps its embedded data across restarts.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'
import { createLogger } from '../src/platform/observability/logger.ts'
import { createRuntime, startRuntime, stopRuntime } from '../src/platform/runtime.ts'
import { adminAuth, startTestNode, testConfig } from './support/app.ts'
import { createTestDatabase, describePostgres } from './support/database.ts'
import { eventually } from './support/eventually.ts'

/** A TCP forwarder to Postgres that can be switched off and on, to play a database outage. */
class Outage {
  server: Server | undefined
  sockets = new Set<Socket>()
  readonly port: number
  readonly target: { host: string; port: number }
  constructor(port: number, target: { host: string; port: number }) {
    this.port = port
    this.target = target
  }

  async up(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = tcpConnect(this.target.port, this.target.host)
      for (const s of [client, upstream]) {
        this.sockets.add(s)
        s.on('close', () => this.sockets.delete(s))
        s.on('error', () => s.destroy())
      }
      client.pipe(upstream).pipe(client)
    })
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve))
  }

  async down(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
    this.server = undefined
  }
}

type ProductList = { data: Array<{ id: string }> }

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describePostgres('postgres: a node and its database', () => {
  it('starts while the database is down, answers 503 (never 500), and becomes ready when it returns', async () => {
    const testDb = await createTestDatabase('postgres')
    const target = new URL(testDb.url!)
    const outage = new Outage(await freePort(), { host: target.hostname, port: Number(target.port || 5432) })
    const viaProxy = new URL(testDb.url!)
    viaProxy.port = String(outage.port)
    const config = testConfig({ DATABASE_URL: viaProxy.toString() })
    const runtime = await createRuntime(config, createLogger('silent'))
    const app = await buildApp(runtime)
    await app.ready()
    const starting = startRuntime(runtime, { work: true })
    try {
      const early = await app.inject('/readyz')
      expect(early.statusCode).toBe(503)
      expect(early.json()).toMatchObject({ status: 'starting', checks: { database: { status: 'down' } } })
      const read = await app.inject('/store/products')
      expect(read.statusCode).toBe(503)
      expect(read.json().code).toBe('unavailable')
      expect((await app.inject('/livez')).statusCode).toBe(200)

      await outage.up()
      await starting
      await eventually(async () => ((await app.inject('/readyz')).statusCode === 200 ? true : undefined))
      expect((await app.inject('/store/products')).statusCode).toBe(200)

      // The database goes away after start-up: readiness drops, then recovers with it.
      await outage.down()
      await eventually(async () => ((await app.inject('/readyz')).statusCode === 503 ? true : undefined))
      // A page already cached keeps being served; anything that needs the database is a 503.
      expect((await app.inject('/store/products')).statusCode).toBe(200)
      const during = await app.inject('/store/products?sort=name')
      expect(during.statusCode).toBe(503)
      await outage.up()
      await eventually(async () => ((await app.inject('/readyz')).statusCode === 200 ? true : undefined))
      expect((await app.inject('/store/products')).statusCode).toBe(200)
    } finally {
      await app.close()
      await stopRuntime(runtime)
      await outage.down()
      await testDb.drop()
    }
  })
})

describePostgres('postgres: separate worker processes', () => {
  it('delivers events enqueued by an API node that runs no workers', async () => {
    const testDb = await createTestDatabase('postgres')
    const api = await startTestNode('postgres', { database: testDb })
    const worker = spawn(process.execPath, ['src/cli/index.ts', 'worker'], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: testDb.url,
        LOG_LEVEL: 'warn',
        DATA_DIR: mkdtempSync(join(tmpdir(), 'sw-worker-')),
      },
      stdio: 'ignore',
    })
    try {
      const res = await api.app.inject({
        method: 'POST',
        url: '/admin/products',
        headers: adminAuth,
        payload: { handle: 'worker-mug', title: 'Worker Mug' },
      })
      expect(res.statusCode).toBe(201)
      const { db } = api.runtime.database
      await eventually(async () => {
        const row = await db
          .selectFrom('events')
          .select('published_at')
          .where('subject_id', '=', res.json().id)
          .executeTakeFirst()
        return row?.published_at ?? undefined
      })
      const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)))
      worker.kill('SIGTERM')
      expect(await exited).toBe(0)
    } finally {
      worker.kill('SIGKILL')
      await api.close()
      await testDb.drop()
    }
  }, 60_000)
})

describe('the server process', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'sw-process-'))
  let child: ChildProcess | undefined
  afterAll(() => {
    child?.kill('SIGKILL')
  })

  async function start(port: number): Promise<{ proc: ChildProcess; output: () => string }> {
    let output = ''
    const proc = spawn(process.execPath, ['src/main.ts'], {
      env: {
        PATH: process.env.PATH,
        DATA_DIR: dataDir,
        PORT: String(port),
        LOG_LEVEL: 'info',
        APP_SECRET: 'process-test-secret-0123456789abcdef',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    proc.stdout!.on('data', (d) => {
      output += d
    })
    proc.stderr!.on('data', (d) => {
      output += d
    })
    child = proc
    await eventually(async () => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`)
      return res.status === 200 ? true : undefined
    }, 60_000)
    return { proc, output: () => output }
  }

  async function stop(proc: ChildProcess): Promise<number | null> {
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
    proc.kill('SIGTERM')
    return exited
  }

  it('seeds the demo store on first run, drains on SIGTERM, and keeps its data across a restart', async () => {
    const port = await freePort()
    const first = await start(port)
    const list = (await (
      await fetch(`http://127.0.0.1:${port}/store/products?limit=100`)
    ).json()) as ProductList
    // The demo catalog is 24 generated products, a few of them drafts the storefront does not list.
    expect(list.data.length).toBeGreaterThan(20)
    expect(list.data.length).toBeLessThanOrEqual(24)
    expect(first.output()).toContain('seeded the demo store')
    expect(await stop(first.proc)).toBe(0)
    expect(first.output()).toContain('draining')

    const second = await start(port)
    const again = (await (
      await fetch(`http://127.0.0.1:${port}/store/products?limit=100`)
    ).json()) as ProductList
    expect(again.data.map((p) => p.id)).toEqual(list.data.map((p) => p.id))
    expect(second.output()).not.toContain('seeded the demo store')
    expect(await stop(second.proc)).toBe(0)
  }, 120_000)
})
