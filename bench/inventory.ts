/**
 * Inventory reservation benchmark on real PostgreSQL, each figure beside its ceiling measured in
 * the same run on the same pool:
 *
 *   ceiling    a single-row conditional UPDATE (`reserved = reserved + 1 where … >= 1`), autocommit,
 *              from 100 concurrent clients: the most one hot row can take on this machine.
 *   hot-sku    reserveNow() of 1 unit of one SKU from 100 concurrent clients: the whole service call
 *              (conditional update, reservation, line and movement rows). Reservations of one SKU
 *              that arrive together on a node share one statement (coalesce.ts).
 *   hot-sku-4-nodes  the same from 4 pools of a quarter of the size each, as 4 nodes would: each
 *              coalesces on its own, so the 4 contend for the row lock as separate nodes do.
 *   spread     reserveNow() of 1 unit of a random one of 10,000 SKUs from 100 concurrent clients.
 *
 * Run: BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx node bench/inventory.ts
 * It creates a scratch database sw_bench_<random>, drops it at the end, prints a table and writes
 * bench/results/inventory-<date>.json. BENCH_DURATION (seconds, default 10) and
 * BENCH_POOL (connections, default 20) tune it.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { sql } from 'kysely'
import { loadConfig } from '../src/config.ts'
import { inventoryContext } from '../src/modules/inventory/context.ts'
import { createLocation } from '../src/modules/inventory/locations.ts'
import { driftReport } from '../src/modules/inventory/movements.ts'
import { reserveNow } from '../src/modules/inventory/reservations.ts'
import { receiveStock } from '../src/modules/inventory/stock.ts'
import { type Database, openDatabase } from '../src/platform/db/database.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { newId } from '../src/platform/ids.ts'
import { createLogger } from '../src/platform/observability/logger.ts'
import { createRuntime, type Runtime, startRuntime, stopRuntime } from '../src/platform/runtime.ts'
import { createBenchDatabase } from './postgres.ts'
import { type CpuScope, type CpuSnapshot, cpuSnapshot, cpuUse } from './processes.ts'

const CLIENTS = 100
const SKUS = 10_000
const NODES = 4
const WARMUP_S = 2
const HOT_TARGET_RATIO = 0.7
const SPREAD_TARGET_RPS = 2_000

function positive(name: string, fallback: number): number {
  const raw = process.env[name]?.trim()
  if (!raw) return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name}=${raw}: expected a whole number ≥ 1`)
  return value
}

interface Measurement {
  scenario: string
  ops_per_second: number
  /** CPU this process and the scratch database's backends spent per operation: robust to noise. */
  cpu_us_per_op: number | null
  /** Of cpu_us_per_op, what PostgreSQL spent. */
  db_cpu_us_per_op: number | null
  /** Cores other processes on the machine kept busy meanwhile. */
  other_cpu_cores: number | null
  p50_ms: number
  p99_ms: number
  operations: number
  failures: number
}

/** Runs `op` from CLIENTS concurrent loops for the duration (after a warm-up) and times each call. */
async function measure(
  scope: CpuScope,
  scenario: string,
  seconds: number,
  op: (client: number) => Promise<unknown>,
): Promise<Measurement> {
  const latencies: number[] = []
  const before = new Promise<CpuSnapshot | undefined>((done) =>
    setTimeout(() => done(cpuSnapshot(scope)), WARMUP_S * 1000),
  )
  let failures = 0
  const warmEnd = performance.now() + WARMUP_S * 1000
  const end = warmEnd + seconds * 1000
  let measuring = false
  const loops = Array.from({ length: CLIENTS }, async (_, client) => {
    for (;;) {
      const start = performance.now()
      if (start >= end) return
      try {
        await op(client)
        if (measuring && start >= warmEnd) latencies.push(performance.now() - start)
      } catch (error) {
        failures++
        if (failures <= 3) console.error(`bench: ${scenario} failed: ${(error as Error).message}`)
      }
      measuring ||= performance.now() >= warmEnd
    }
  })
  await Promise.all(loops)
  const cpu = cpuUse(await before, await cpuSnapshot(scope))
  latencies.sort((a, b) => a - b)
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0
  return {
    scenario,
    ops_per_second: Math.round(latencies.length / seconds),
    cpu_us_per_op:
      cpu && latencies.length
        ? Math.round(((cpu.targetSeconds + cpu.databaseSeconds) / latencies.length) * 1e6)
        : null,
    db_cpu_us_per_op:
      cpu && latencies.length ? Math.round((cpu.databaseSeconds / latencies.length) * 1e6) : null,
    other_cpu_cores: cpu?.otherCores ?? null,
    p50_ms: Math.round(at(0.5) * 10) / 10,
    p99_ms: Math.round(at(0.99) * 10) / 10,
    operations: latencies.length,
    failures,
  }
}

async function setUp(runtime: Runtime) {
  const { db } = runtime.database
  const ctx = inventoryContext(runtime, 'system:bench')
  const location = await withTransaction(db, (trx) =>
    createLocation(trx, { code: 'bench', name: 'Bench warehouse', address: { country_code: 'DE' } }),
  )
  const productId = newId('prod')
  await db
    .insertInto('products')
    .values({ id: productId, handle: 'bench-inventory', title: 'Bench' })
    .execute()
  const variants = Array.from({ length: SKUS + 1 }, () => newId('var'))
  for (let i = 0; i < variants.length; i += 1000) {
    await db
      .insertInto('product_variants')
      .values(
        variants.slice(i, i + 1000).map((id, j) => ({
          id,
          product_id: productId,
          sku: `BENCH-${i + j}`,
          title: `Bench ${i + j}`,
          options: JSON.stringify({ n: i + j }),
        })),
      )
      .execute()
    await withTransaction(db, (trx) =>
      receiveStock(trx, ctx, {
        location_id: location.id,
        lines: variants.slice(i, i + 1000).map((variant_id, j) => ({
          variant_id,
          quantity: i + j === 0 ? 100_000_000 : 1_000_000,
          path: `lines.${j}`,
        })),
      }),
    )
  }
  await sql`create table bench_ceiling (like inventory_levels including defaults including constraints)`.execute(
    db,
  )
  await sql`insert into bench_ceiling (variant_id, location_id, on_hand) values ('hot', 'here', 100000000)`.execute(
    db,
  )
  // Only the tables set up here: analysing the still-empty reservation and ledger tables would
  // record them as empty, and the foreign-key checks that every reservation runs would then plan
  // sequential scans over tables that grow by thousands of rows a second (autovacuum re-analyses
  // a live store's tables as they grow; a ten-second run would never see it).
  await sql`analyze products, product_variants, stock_locations, inventory_levels, bench_ceiling`.execute(db)
  return { hot: variants[0]!, spread: variants.slice(1) }
}

async function main() {
  const serverUrl = process.env.BENCH_DATABASE_URL
  if (!serverUrl)
    throw new Error('set BENCH_DATABASE_URL=postgres://… (a local server; a scratch database is made on it)')
  const seconds = positive('BENCH_DURATION', 10)
  const pool = positive('BENCH_POOL', 20)
  const scratch = await createBenchDatabase(serverUrl)
  const config = loadConfig({
    NODE_ENV: 'production',
    DATABASE_URL: scratch.url,
    DATABASE_POOL_MAX: String(pool),
    APP_SECRET: 'bench-secret-0123456789abcdef0123456789',
    LOG_LEVEL: 'warn',
    RUN_WORKERS: 'false',
    DATA_DIR: join(resolve(import.meta.dirname, '..'), 'data', 'bench-inventory'),
  })
  const runtime = await createRuntime(config, createLogger(config.logLevel))
  try {
    await startRuntime(runtime, { work: false })
    const { db } = runtime.database
    console.error(`bench: setting up ${SKUS.toLocaleString('en-US')} SKUs on ${scratch.name}`)
    const { hot, spread } = await setUp(runtime)
    const expires = () => new Date(Date.now() + 15 * 60_000)
    const reserveOne = (variant_id: string, client: number, on = db) => {
      const ctx = inventoryContext(runtime, 'system:bench')
      return reserveNow(
        on,
        { lines: [{ variant_id, quantity: 1 }], reference: `cart_${client}`, expires_at: expires() },
        ctx,
      ).then(() => ctx.publish())
    }

    console.error(`bench: ceiling (single-row conditional UPDATE), ${seconds} s`)
    const scope = { targetPid: process.pid, database: scratch.name }
    const ceiling = await measure(scope, 'ceiling', seconds, () =>
      sql`update bench_ceiling set reserved = reserved + 1
          where variant_id = 'hot' and location_id = 'here' and on_hand - reserved - safety_stock >= 1
          returning reserved`.execute(db),
    )
    console.error(`bench: hot SKU reservations, ${seconds} s`)
    const hotSku = await measure(scope, 'hot-sku', seconds, (client) => reserveOne(hot, client))
    console.error(`bench: hot SKU reservations from ${NODES} nodes, ${seconds} s`)
    const nodes: Database[] = []
    for (let i = 0; i < NODES; i++)
      nodes.push(
        await openDatabase({ url: scratch.url, dataDir: undefined, poolMax: Math.ceil(pool / NODES) }),
      )
    const hotNodes = await measure(scope, 'hot-sku-4-nodes', seconds, (client) =>
      reserveOne(hot, client, nodes[client % NODES]!.db),
    ).finally(() => Promise.all(nodes.map((n) => n.close())))
    console.error(`bench: reservations over ${SKUS} SKUs, ${seconds} s`)
    const spreadSkus = await measure(scope, 'spread-10k-skus', seconds, (client) =>
      reserveOne(spread[Math.floor(Math.random() * spread.length)]!, client),
    )

    const drift = await driftReport(db)
    const ratio = Math.round((hotSku.ops_per_second / ceiling.ops_per_second) * 1000) / 1000
    const nodesRatio = Math.round((hotNodes.ops_per_second / ceiling.ops_per_second) * 1000) / 1000
    const rows = [
      [
        'scenario',
        'ops/s',
        'p50 ms',
        'p99 ms',
        'failures',
        'cpu us/op (db)',
        'other cpu',
        'target',
        'result',
      ],
      ['ceiling: 1-row conditional UPDATE', ...figures(ceiling), '', ''],
      [
        'reserve, one hot SKU',
        ...figures(hotSku),
        `>= ${HOT_TARGET_RATIO} x ceiling`,
        `${ratio} x ${ratio >= HOT_TARGET_RATIO ? 'ok' : 'below'}`,
      ],
      [
        `reserve, one hot SKU, ${NODES} nodes`,
        ...figures(hotNodes),
        `>= ${HOT_TARGET_RATIO} x ceiling`,
        `${nodesRatio} x ${nodesRatio >= HOT_TARGET_RATIO ? 'ok' : 'below'}`,
      ],
      [
        `reserve, ${SKUS.toLocaleString('en-US')} SKUs`,
        ...figures(spreadSkus),
        `>= ${SPREAD_TARGET_RPS}/s`,
        spreadSkus.ops_per_second >= SPREAD_TARGET_RPS ? 'ok' : 'below',
      ],
    ]
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
    for (const [n, row] of rows.entries()) {
      console.log(
        row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '),
      )
      if (n === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '))
    }
    console.log(`ledger: ${drift.checked} levels checked, ${drift.drift.length} drifting`)

    const date = new Date().toISOString()
    const result = {
      kind: 'inventory-benchmark',
      date,
      database: 'postgres',
      clients: CLIENTS,
      pool,
      duration_s: seconds,
      ceiling,
      hot_sku: { ...hotSku, ratio_to_ceiling: ratio, target_ratio: HOT_TARGET_RATIO },
      hot_sku_nodes: {
        ...hotNodes,
        nodes: NODES,
        ratio_to_ceiling: nodesRatio,
        target_ratio: HOT_TARGET_RATIO,
      },
      spread: { ...spreadSkus, skus: SKUS, target_ops_per_second: SPREAD_TARGET_RPS },
      ledger_drift: drift.drift.length,
      node_version: process.version,
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model.trim() ?? 'unknown',
    }
    const dir = join(resolve(import.meta.dirname), 'results')
    mkdirSync(dir, { recursive: true })
    const file = join(dir, `inventory-${date.slice(0, 10)}.json`)
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`)
    console.error(`bench: wrote ${file}`)
  } finally {
    await stopRuntime(runtime)
    await scratch.drop()
  }
}

function figures(m: Measurement): string[] {
  return [
    m.ops_per_second.toLocaleString('en-US'),
    String(m.p50_ms),
    String(m.p99_ms),
    String(m.failures),
    `${m.cpu_us_per_op ?? '?'} (${m.db_cpu_us_per_op ?? '?'})`,
    String(m.other_cpu_cores ?? '?'),
  ]
}

main().catch((error: unknown) => {
  console.error(`bench: ${(error as Error).stack ?? error}`)
  process.exit(1)
})
