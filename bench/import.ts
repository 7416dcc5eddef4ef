/**
 * Import benchmark: `BENCH_DATABASE_URL=postgres://… npx node bench/import.ts [count]` creates a
 * scratch database, migrates it, seeds the taxonomy, builds a file of `count` generated products
 * (default 100,000; 3 to 20 variants each, prices in EUR, GBP and USD) and times the whole import
 * through the service functions the route and the job use: parse + validate, stage (the request's
 * transaction), then the job body. Target: 100,000 products in under 2 minutes on PostgreSQL.
 *
 * Environment:
 *   BENCH_DATABASE_URL   postgres://… of a local server (sw_bench_<random> is created and dropped);
 *                        unset: embedded PGlite in memory.
 *   BENCH_IMPORT_FORMAT  csv (default) or ndjson.
 *   BENCH_IMPORT_MODE    all_or_nothing (default) or per_row.
 *   BENCH_IMPORT_TWICE   1: then imports the same file again, an upsert of every product and
 *                        variant (a catalog re-imported from its own export), and times that too.
 * Results go to bench/results/import-<date>.json, one entry per format, mode and database.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { loadConfig } from '../src/config.ts'
import {
  type ImportFormat,
  type ImportMode,
  runImport,
  stageImport,
  validateImport,
} from '../src/modules/catalog/import.ts'
import { csvHeader, csvHeaderLine, productCsvWriter } from '../src/modules/catalog/product-csv.ts'
import { generatedProduct, seedTaxonomy } from '../src/modules/catalog/seed.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import { createLogger } from '../src/platform/observability/logger.ts'
import { createRuntime, type Runtime, startRuntime, stopRuntime } from '../src/platform/runtime.ts'
import { type BenchDatabase, createBenchDatabase } from './postgres.ts'

const RESULTS_DIR = resolve(import.meta.dirname, 'results')
const TARGET_SECONDS = 120

const count = Number(process.argv[2] ?? 100_000)
const format = (process.env.BENCH_IMPORT_FORMAT ?? 'csv') as ImportFormat
const mode = (process.env.BENCH_IMPORT_MODE ?? 'all_or_nothing') as ImportMode
const twice = process.env.BENCH_IMPORT_TWICE === '1'
if (!Number.isInteger(count) || count < 1)
  throw new Error(`count must be a positive integer, got ${process.argv[2]}`)
if (!['csv', 'ndjson'].includes(format)) throw new Error('BENCH_IMPORT_FORMAT must be csv or ndjson')
if (!['all_or_nothing', 'per_row'].includes(mode))
  throw new Error('BENCH_IMPORT_MODE must be all_or_nothing or per_row')

const seconds = (from: number) => Math.round((performance.now() - from) / 10) / 100

async function main(): Promise<void> {
  const serverUrl = process.env.BENCH_DATABASE_URL
  const database: BenchDatabase | undefined = serverUrl ? await createBenchDatabase(serverUrl) : undefined
  const dataDir = mkdtempSync(join(tmpdir(), 'sw-bench-import-'))
  const config = loadConfig({
    NODE_ENV: 'development',
    DATA_DIR: dataDir,
    DATABASE_URL: database?.url,
    LOG_LEVEL: 'warn',
    RUN_WORKERS: 'false',
  })
  const runtime = await createRuntime(config, createLogger(config.logLevel), { inMemoryDatabase: true })
  try {
    await startRuntime(runtime, { work: false })
    const taxonomy = await seedTaxonomy(runtime)

    const started = performance.now()
    const parts: string[] = []
    let variants = 0
    if (format === 'csv') {
      const header = csvHeader(['EUR', 'GBP', 'USD'], 2)
      const write = productCsvWriter(header)
      parts.push(csvHeaderLine(header))
      for (let n = 1; n <= count; n++) {
        const doc = generatedProduct(n, taxonomy)
        variants += doc.variants?.length ?? 0
        parts.push(write(doc))
      }
    } else {
      for (let n = 1; n <= count; n++) {
        const doc = generatedProduct(n, taxonomy)
        variants += doc.variants?.length ?? 0
        parts.push(`${JSON.stringify(doc)}\n`)
      }
    }
    const file = parts.join('')
    parts.length = 0
    const megabytes = Math.round(Buffer.byteLength(file) / 1e5) / 10
    console.log(
      `file: ${count} products, ${variants} variants, ${megabytes} MB ${format} (built in ${seconds(started)} s)`,
    )

    const first = await timedImport(runtime, file, 'created')
    const again = twice ? await timedImport(runtime, file, 'updated') : undefined
    const { validateSeconds, stageSeconds, jobSeconds, totalSeconds } = first
    const rate = Math.round(count / totalSeconds)
    const databaseKind = runtime.database.kind
    console.table([
      { step: 'parse + validate', seconds: validateSeconds },
      { step: 'stage (request transaction)', seconds: stageSeconds },
      { step: 'job (write)', seconds: jobSeconds },
      { step: 'total', seconds: totalSeconds },
      ...(again
        ? [
            { step: 're-import: parse + validate', seconds: again.validateSeconds },
            { step: 're-import: stage', seconds: again.stageSeconds },
            { step: 're-import: job (write)', seconds: again.jobSeconds },
            { step: 're-import: total', seconds: again.totalSeconds },
          ]
        : []),
    ])
    console.log(
      `${count} products (${variants} variants) imported from ${format}, ${mode}, on ${databaseKind}: ` +
        `${totalSeconds} s, ${rate} products/s — target ${TARGET_SECONDS} s for 100,000: ` +
        `${count >= 100_000 ? (totalSeconds < TARGET_SECONDS ? 'met' : 'MISSED') : 'n/a (smaller run)'}`,
    )

    const entry = {
      format,
      mode,
      database: databaseKind,
      date: new Date().toISOString(),
      products: count,
      variants,
      file_mb: megabytes,
      validate_s: validateSeconds,
      stage_s: stageSeconds,
      job_s: jobSeconds,
      total_s: totalSeconds,
      products_per_s: rate,
      ...(again
        ? {
            reimport: {
              validate_s: again.validateSeconds,
              stage_s: again.stageSeconds,
              job_s: again.jobSeconds,
              total_s: again.totalSeconds,
            },
          }
        : {}),
      target_s_for_100k: TARGET_SECONDS,
      node: process.version,
    }
    mkdirSync(RESULTS_DIR, { recursive: true })
    const path = join(RESULTS_DIR, `import-${entry.date.slice(0, 10)}.json`)
    // One file per day: one entry per format, mode and database, the latest run of each.
    const previous = existsSync(path)
      ? (JSON.parse(readFileSync(path, 'utf8')) as { runs?: (typeof entry)[] })
      : {}
    const runs = (previous.runs ?? []).filter(
      (r) => !(r.format === format && r.mode === mode && r.database === databaseKind),
    )
    writeFileSync(path, `${JSON.stringify({ bench: 'catalog import', runs: [...runs, entry] }, null, 2)}\n`)
    console.log(`wrote ${path}`)
  } finally {
    await stopRuntime(runtime)
    await database?.drop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

/** Validates, stages and runs one import of the file; every product must come out `outcome`. */
async function timedImport(runtime: Runtime, file: string, outcome: 'created' | 'updated') {
  const { db } = runtime.database
  const total = performance.now()
  let started = performance.now()
  const validated = await validateImport(db, format, mode, file)
  const validateSeconds = seconds(started)
  if (validated.errors.length > 0)
    throw new Error(`the generated file has errors: ${JSON.stringify(validated.errors.slice(0, 5))}`)
  started = performance.now()
  const staged = await withTransaction(db, (trx) => stageImport(trx, runtime.jobs, validated, null))
  const stageSeconds = seconds(started)
  started = performance.now()
  await runImport(runtime, staged.id)
  const jobSeconds = seconds(started)
  const totalSeconds = seconds(total)
  const result = await db
    .selectFrom('catalog_imports')
    .selectAll()
    .where('id', '=', staged.id)
    .executeTakeFirstOrThrow()
  const counted = outcome === 'created' ? result.created_count : result.updated_count
  if (result.status !== 'succeeded' || counted !== count)
    throw new Error(
      `import ended ${result.status} with ${counted} ${outcome}: ${JSON.stringify(result.errors.slice(0, 5))}`,
    )
  return { validateSeconds, stageSeconds, jobSeconds, totalSeconds }
}

await main()
