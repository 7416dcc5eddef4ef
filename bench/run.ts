/**
 * `npm run bench`: starts the real server (`node src/main.ts`) as a child process, measures cold
 * start, restart and idle memory, then loads each scenario with autocannon beside a bare Fastify
 * baseline measured in the same run on the same machine (bench/baseline.ts).
 *
 * Environment:
 *   BENCH_DATABASE_URL  postgres://… of a local server: the run creates sw_bench_<random> on it and
 *                       drops it at the end. Unset: embedded PGlite in a temporary data directory.
 *   BENCH_REDIS_URL     redis://… : the server keeps its KV state (catalog version, rate limits) there,
 *                       as a node of a fleet does; results are filed as postgres+redis.
 *   BENCH_DURATION      seconds per measurement (default 10), after a 2 s warm-up.
 *   BENCH_ROUNDS        alternate server and baseline this many times and keep each side's best
 *                       round (default 1).
 *   BENCH_SCENARIOS     comma-separated subset of the scenarios (default: all).
 *   BENCH_PIN=false     leave processes unpinned (default: autocannon on CPU 0, the rest on 1…n).
 *   BENCH_LOG_LEVEL     LOG_LEVEL for the server, to see what logging costs.
 *   BENCH_CPU_PROF      a directory: the server runs with --cpu-prof and leaves its profile there.
 * The last two change the system under test, so such runs print figures but write no results.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROUTE_SCHEMAS_COMPILED } from '../src/platform/http/lazy-compile.ts'
import { type LoadResult, type LoadSettings, runLoad, stopLoad } from './load.ts'
import { createBenchDatabase } from './postgres.ts'
import {
  BenchError,
  type Child,
  type CpuScope,
  cpuSnapshot,
  cpuUse,
  freePort,
  HOST,
  logTail,
  pinLoadGenerator,
  pinProcess,
  rssMb,
  spawnNode,
  stopChild,
  waitForLogLine,
  waitForOk,
} from './processes.ts'
import {
  type DatabaseMode,
  type ScenarioResult,
  type StartupResult,
  updateDocs,
  writeResult,
} from './report.ts'

const ROOT = resolve(import.meta.dirname, '..')
const RESULTS_DIR = join(ROOT, 'bench', 'results')
const DOC_FILE = join(ROOT, 'docs', 'performance.md')

const WARMUP_S = 2
const CONNECTIONS = 50
const READY_TIMEOUT_MS = 120_000
const IDLE_PAUSE_MS = 3_000
/** Cores other processes may keep busy during a measurement before the harness warns. */
const OTHER_CPU_WARNING = 0.15
const QUIET_WAIT_MS = 30_000
interface Scenario {
  name: string
  /** `{region}`, `{handle}`, `{q}` and the answers' sizes `{list_bytes}`, `{detail_bytes}` come from the seeded catalog. */
  path: string
  baselinePath: string
  baseline: string
  /** Minimum acceptable rps / baseline_rps. */
  target: number
  /** Maximum acceptable p99 latency, where the issue sets one. */
  p99TargetMs?: number
  /** Settings for the server under test; scenarios with the same settings share one server. */
  env?: Record<string, string>
}

/** The read path without the response cache: what a cold page costs the database and the node. */
const UNCACHED = { CATALOG_CACHE: 'false' }

const SCENARIOS: Scenario[] = [
  {
    name: 'livez',
    path: '/livez',
    baselinePath: '/hello',
    baseline: 'bare Fastify hello-world',
    target: 0.85,
  },
  {
    name: 'store-products-list',
    path: '/store/products?limit=20&region_id={region}',
    baselinePath: '/products',
    baseline: 'bare Fastify + one 20-row product SELECT, same pool',
    target: 0.5,
    p99TargetMs: 25,
    env: UNCACHED,
  },
  {
    name: 'store-product-detail',
    path: '/store/products/{handle}?region_id={region}',
    baselinePath: '/product?handle={handle}',
    baseline: 'bare Fastify + one product SELECT by handle, same pool',
    target: 0.5,
    p99TargetMs: 25,
    env: UNCACHED,
  },
  {
    name: 'store-search',
    path: '/store/products?limit=20&region_id={region}&q={q}',
    baselinePath: '/search?q={q}',
    baseline: 'bare Fastify + one 20-row title-match SELECT, same pool',
    target: 0.5,
    p99TargetMs: 50,
    env: UNCACHED,
  },
  {
    name: 'store-products-list-cached',
    path: '/store/products?limit=20&region_id={region}',
    baselinePath: '/hello',
    baseline: 'bare Fastify hello-world',
    target: 0.8,
  },
  {
    name: 'store-product-detail-cached',
    path: '/store/products/{handle}?region_id={region}',
    baselinePath: '/hello',
    baseline: 'bare Fastify hello-world',
    target: 0.8,
  },
  // The same hits against bare Fastify sending a body of the same size: hello-world's 15 bytes cost
  // the kernel and the load generator far less than a 9 KB page, whoever sends it.
  {
    name: 'store-products-list-cached-same-bytes',
    path: '/store/products?limit=20&region_id={region}',
    baselinePath: '/bytes?n={list_bytes}',
    baseline: 'bare Fastify sending a body of the same size',
    target: 0.8,
  },
  {
    name: 'store-product-detail-cached-same-bytes',
    path: '/store/products/{handle}?region_id={region}',
    baselinePath: '/bytes?n={detail_bytes}',
    baseline: 'bare Fastify sending a body of the same size',
    target: 0.8,
  },
]

function productsFromEnv(): number {
  const raw = process.env.BENCH_PRODUCTS?.trim()
  if (!raw) return 100_000
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 100 || value > 1_000_000) {
    throw new BenchError(`BENCH_PRODUCTS=${raw} is invalid: expected a whole number from 100 to 1000000`)
  }
  return value
}

function durationFromEnv(): number {
  const raw = process.env.BENCH_DURATION?.trim()
  if (!raw) return 10
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1 || value > 3600) {
    throw new BenchError(`BENCH_DURATION=${raw} is invalid: expected whole seconds from 1 to 3600`)
  }
  return value
}

function roundsFromEnv(): number {
  const raw = process.env.BENCH_ROUNDS?.trim()
  if (!raw) return 1
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1 || value > 20) {
    throw new BenchError(`BENCH_ROUNDS=${raw} is invalid: expected a whole number from 1 to 20`)
  }
  return value
}

function scenariosFromEnv(): Scenario[] {
  const raw = process.env.BENCH_SCENARIOS?.trim()
  if (!raw) return SCENARIOS
  const names = raw.split(',').map((s) => s.trim())
  for (const name of names) {
    if (!SCENARIOS.some((s) => s.name === name)) {
      throw new BenchError(`BENCH_SCENARIOS names ${name}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`)
    }
  }
  return SCENARIOS.filter((s) => names.includes(s.name))
}

// Cleanup steps run last-registered first, on success, failure, interrupt and watchdog alike.
const cleanups: Array<() => Promise<unknown>> = []
let cleaning: Promise<void> | undefined

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    stopLoad()
    for (let step = cleanups.pop(); step; step = cleanups.pop()) {
      try {
        await step()
      } catch (error) {
        console.error(`bench: cleanup step failed: ${(error as Error).message}`)
      }
    }
  })()
  return cleaning
}

let aborted = false

function abort(reason: string, code: number): void {
  aborted = true
  console.error(`\nbench: ${reason}; cleaning up`)
  void cleanup().finally(() => process.exit(code))
}

process.once('SIGINT', () => abort('interrupted', 130))
process.once('SIGTERM', () => abort('terminated', 143))

function log(message: string): void {
  console.error(`bench: ${message}`)
}

async function api(
  child: Child,
  path: string,
  init: { method?: string; token?: string; body?: unknown } = {},
): Promise<unknown> {
  const response = await fetch(`${child.url}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
    signal: AbortSignal.timeout(15_000),
  })
  const text = await response.text()
  if (!response.ok)
    throw new BenchError(`${init.method ?? 'GET'} ${path} answered ${response.status}: ${text}`)
  return JSON.parse(text)
}

interface Page {
  data: Array<Record<string, unknown> & { id: string; handle: string }>
  next_cursor: string | null
}

/** Runs `shopwright seed --products n` against the server's data, as an operator would. */
async function seedCatalog(env: Record<string, string>, products: number, logFile: string): Promise<number> {
  const started = performance.now()
  const seed = spawnNode({
    name: 'seed',
    args: ['src/cli/index.ts', 'seed', '--products', String(products)],
    env,
    port: 0,
    logFile,
    cwd: ROOT,
  })
  cleanups.push(() => stopChild(seed))
  const code = await seed.exited
  if (code !== 0) throw new BenchError(`seeding ${products} products failed (${code}):\n${logTail(seed)}`)
  return Math.round((performance.now() - started) / 100) / 10
}

/**
 * Sign-in throughput is bounded by argon2id: hashes and verifications per second at the parameters
 * passwords use, one after another, which is what one core gives.
 */
async function measurePasswordHashing(seconds = 3) {
  const { hashPassword, verifyPassword } = await import('../src/modules/identity/passwords.ts')
  const rate = async (work: () => Promise<unknown>) => {
    let count = 0
    const start = performance.now()
    while (performance.now() - start < seconds * 1000) {
      await work()
      count++
    }
    return Math.round((count / (performance.now() - start)) * 1000 * 10) / 10
  }
  const phc = await hashPassword('bench password 123')
  return {
    password_hashes_per_second_per_core: await rate(() => hashPassword('bench password 123')),
    password_verifies_per_second_per_core: await rate(() => verifyPassword(phc, 'bench password 123')),
  }
}

/**
 * One benchmark per machine at a time: two runs load each other's CPUs and overwrite each other's
 * result files. A lock left by a run that died is taken over.
 */
function takeMachineLock(): void {
  const file = join(tmpdir(), 'shopwright-bench.lock')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' })
      cleanups.push(() => rm(file, { force: true }))
      return
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const holder = Number.parseInt(readFileSync(file, 'utf8'), 10)
    if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) {
      throw new BenchError(`another benchmark is running (pid ${holder}); run one at a time`)
    }
    rmSync(file, { force: true })
  }
  throw new BenchError('could not take the benchmark lock')
}

/** Signal 0 only checks that the process exists; EPERM means it exists under another user. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Waits, for at most QUIET_WAIT_MS, until other processes leave the machine alone for a second:
 * on a shared machine a test suite starting up can halve a measurement. Gives up with a note
 * rather than never measuring; the interference is then recorded in the result.
 */
async function waitForQuiet(scope: CpuScope): Promise<void> {
  const deadline = performance.now() + QUIET_WAIT_MS
  let noted = false
  while (performance.now() < deadline) {
    const before = await cpuSnapshot(scope)
    await sleep(1_000)
    const other = cpuUse(before, await cpuSnapshot(scope))?.otherCores
    if (other === undefined || other <= OTHER_CPU_WARNING) return
    if (!noted) log(`other processes are using ${other} cores; waiting up to ${QUIET_WAIT_MS / 1000} s`)
    noted = true
  }
  log('the machine did not quieten down; measuring anyway')
}

/**
 * The source the figures belong to: the commit, marked dirty when src/ or the dependencies differ
 * from it, since the numbers then describe uncommitted code.
 */
function revision(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = git('status', '--porcelain', '--', 'src', 'package.json', 'package-lock.json') !== ''
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? '+dirty' : ''}`
  } catch {
    return 'unknown'
  }
}

function machine(gitRevision: string) {
  return {
    git_revision: gitRevision,
    node_version: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model.trim() ?? 'unknown',
  }
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function printTable(results: ScenarioResult[], startup: StartupResult | undefined): void {
  const rows = [
    [
      'scenario',
      'req/s',
      'p50 ms',
      'p99 ms',
      'baseline req/s',
      'baseline p99',
      'ratio',
      'target',
      'cpu us/req',
      'other cpu',
      'result',
    ],
    ...results.map((r) => [
      r.scenario,
      fmt(r.rps),
      fmt(r.p50_ms, 1),
      fmt(r.p99_ms, 1),
      fmt(r.baseline_rps),
      fmt(r.baseline_p99_ms, 1),
      r.ratio.toFixed(3),
      `>= ${r.target_ratio}`,
      `${r.cpu_us_per_request ?? '?'} / ${r.baseline_cpu_us_per_request ?? '?'}`,
      `${r.other_cpu_cores ?? '?'} / ${r.baseline_other_cpu_cores ?? '?'}`,
      r.status === 'failed' ? `FAILED (${r.non2xx} non-2xx, ${r.errors} errors)` : r.status,
    ]),
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  const line = (row: string[]) =>
    row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')
  console.log(`\n${line(rows[0]!)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`)
  for (const row of rows.slice(1)) console.log(line(row))
  if (startup) {
    console.log(
      `\nstartup: cold start to ready ${fmt(startup.first_start_ready_ms)} ms, restart to ready ` +
        `${fmt(startup.restart_ready_ms)} ms, RSS at idle ${startup.idle_rss_mb ?? 'n/a'} MB`,
    )
  }
}

async function main(): Promise<number> {
  const durationS = durationFromEnv()
  const rounds = roundsFromEnv()
  const scenarios = scenariosFromEnv()
  const productCount = productsFromEnv()
  const serverUrl = process.env.BENCH_DATABASE_URL?.trim() || undefined
  const redisUrl = process.env.BENCH_REDIS_URL?.trim() || undefined
  if (redisUrl && !serverUrl)
    throw new BenchError('BENCH_REDIS_URL needs BENCH_DATABASE_URL: a fleet node has both')
  const mode: DatabaseMode = redisUrl ? 'postgres+redis' : serverUrl ? 'postgres' : 'pglite'
  const logLevel = process.env.BENCH_LOG_LEVEL?.trim() || undefined
  const cpuProfDir = process.env.BENCH_CPU_PROF?.trim()
    ? resolve(process.env.BENCH_CPU_PROF.trim())
    : undefined
  const exploratory = Boolean(logLevel || cpuProfDir)
  const settings: LoadSettings = { connections: CONNECTIONS, pipelining: 1, durationS }

  // Every wait below is bounded; the watchdog catches whatever was not foreseen.
  const budgetS = 300 + scenarios.length * rounds * 2 * (WARMUP_S + durationS + QUIET_WAIT_MS / 1000 + 5)
  setTimeout(() => abort(`still running after ${budgetS} s (watchdog)`, 124), budgetS * 1000).unref()

  takeMachineLock()
  const tmp = mkdtempSync(join(tmpdir(), 'sw-bench-'))
  cleanups.push(() => rm(tmp, { recursive: true, force: true }))
  const date = new Date().toISOString()
  log(`database ${mode}, ${rounds} × ${durationS} s per target and scenario, work directory ${tmp}`)

  let databaseUrl: string | undefined
  let databaseName: string | undefined
  if (serverUrl) {
    const database = await createBenchDatabase(serverUrl)
    cleanups.push(() => database.drop())
    databaseUrl = database.url
    databaseName = database.name
    log(`created database ${database.name}`)
  }

  const adminToken = randomBytes(32).toString('base64url')
  const serverEnv: Record<string, string> = {
    HOST,
    DATA_DIR: join(tmp, 'data'),
    NODE_ENV: 'production',
    APP_SECRET: randomBytes(32).toString('base64url'),
    ADMIN_TOKEN: adminToken,
    CORS_ORIGINS: 'http://localhost',
    // The limiter stays on, as in production, at the highest limit config accepts (1,000,000 a
    // minute), far above what these runs send in a minute to the routes it covers.
    RATE_LIMIT_PER_MINUTE: '1000000',
    // The catalog is seeded by the CLI between the first start and the measured restart.
    SEED_DEMO: 'false',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : { ALLOW_EMBEDDED_DATABASE: 'true' }),
    ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
    ...(logLevel ? { LOG_LEVEL: logLevel } : {}),
  }
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true })
  const nodeFlags = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []

  let runs = 0
  const startServer = async (
    label: string,
    env: Record<string, string> = {},
  ): Promise<{ server: Child; readyMs: number }> => {
    const port = await freePort()
    const server = spawnNode({
      name: label,
      args: [...nodeFlags, 'src/main.ts'],
      env: { ...serverEnv, ...env, PORT: String(port) },
      port,
      logFile: join(tmp, `server-${++runs}.log`),
      cwd: ROOT,
    })
    cleanups.push(() => stopChild(server))
    const readyMs = await waitForOk(server, '/readyz', READY_TIMEOUT_MS)
    // A node compiles its route schemas in the background after ready: measure the node it becomes.
    if (!logLevel || ['info', 'debug', 'trace'].includes(logLevel))
      await waitForLogLine(server, ROUTE_SCHEMAS_COMPILED, READY_TIMEOUT_MS)
    return { server, readyMs }
  }

  // First start on an empty database: migrations and job queue schema included.
  // Start-up is timed too, so it also waits for a quiet machine.
  await waitForQuiet({ targetPid: 0 })
  const first = await startServer('server (first start)')
  log(`first start ready in ${Math.round(first.readyMs)} ms`)
  const firstExit = await stopChild(first.server)
  if (firstExit !== 0) log(`first server exited with ${firstExit}:\n${logTail(first.server)}`)

  log(`seeding ${fmt(productCount)} products with the CLI`)
  const seedSeconds = await seedCatalog(serverEnv, productCount, join(tmp, 'seed.log'))
  log(`seeded ${fmt(productCount)} products in ${seedSeconds} s`)

  const baselineEnv: Record<string, string> = { HOST }
  if (databaseUrl) {
    baselineEnv.BASELINE_DATABASE_URL = databaseUrl
  } else {
    // PGlite is single-process: the baseline gets a byte-identical copy made while nothing runs.
    const copy = join(tmp, 'baseline-pglite')
    cpSync(join(serverEnv.DATA_DIR as string, 'pglite'), copy, { recursive: true })
    baselineEnv.BASELINE_PGLITE_DIR = copy
  }

  // The server that is measured is the restarted one: a node as it runs after any deploy.
  await waitForQuiet({ targetPid: 0 })
  // Read as the measured server loads its code: src/ may change while the run goes on.
  const measured = revision()
  let { server, readyMs: restartMs } = await startServer('server')
  log(`restart ready in ${Math.round(restartMs)} ms`)
  await sleep(IDLE_PAUSE_MS)
  const idleRss = server.process.pid ? await rssMb(server.process.pid) : null
  const startup: StartupResult = {
    scenario: 'startup',
    date,
    database: mode,
    first_start_ready_ms: Math.round(first.readyMs),
    restart_ready_ms: Math.round(restartMs),
    idle_rss_mb: idleRss,
    seed_products: productCount,
    seed_seconds: seedSeconds,
    ...machine(measured),
  }
  log(`RSS at idle ${idleRss} MB`)
  const hashing = await measurePasswordHashing()
  Object.assign(startup, hashing)
  log(
    `argon2id: ${hashing.password_hashes_per_second_per_core} hashes/s, ` +
      `${hashing.password_verifies_per_second_per_core} verifies/s on one core`,
  )

  const baselinePort = await freePort()
  const baseline = spawnNode({
    name: 'baseline',
    args: ['bench/baseline.ts'],
    env: { ...baselineEnv, PORT: String(baselinePort) },
    port: baselinePort,
    logFile: join(tmp, 'baseline.log'),
    cwd: ROOT,
  })
  cleanups.push(() => stopChild(baseline))
  await waitForOk(baseline, '/products', READY_TIMEOUT_MS)

  // What the paths need from the catalog, and a check that both sides serve the same page.
  const regions = (await api(server, '/store/regions')) as { data: Array<{ id: string; currency: string }> }
  const region = regions.data.find((r) => r.currency === 'EUR')?.id
  if (!region) throw new BenchError('the seeded catalog has no EUR region')
  const served = (await api(server, `/store/products?limit=20&region_id=${region}`)) as Page
  const bare = (await api(baseline, '/products')) as Page
  const ids = (page: Page) => page.data.map((p) => p.id).join(',')
  if (served.data.length !== 20 || ids(served) !== ids(bare)) {
    throw new BenchError(
      `server and baseline list different products (${served.data.length} vs ${bare.data.length} rows)`,
    )
  }
  const handle = served.data[0]?.handle ?? ''
  const bytes = async (path: string) =>
    (await (await fetch(`${server.url}${path}`, { signal: AbortSignal.timeout(15_000) })).arrayBuffer())
      .byteLength
  const listBytes = await bytes(`/store/products?limit=20&region_id=${region}`)
  const detailBytes = await bytes(`/store/products/${handle}?region_id=${region}`)
  const fill = (path: string) =>
    path
      .replaceAll('{region}', region)
      .replaceAll('{handle}', handle)
      .replaceAll('{q}', 'hoodie')
      .replaceAll('{list_bytes}', String(listBytes))
      .replaceAll('{detail_bytes}', String(detailBytes))

  const pinned = process.env.BENCH_PIN?.trim() === 'false' ? undefined : pinLoadGenerator()
  if (pinned) {
    for (const child of [server, baseline]) pinProcess(child.process.pid!, pinned)
    log(`pinned: autocannon on CPU 0, server and baseline on CPU ${pinned}`)
  } else {
    log('not pinned to CPUs: expect wider swings between runs')
  }

  // One target under load at a time; each gets the same warm-up before every measurement.
  const measure = async (
    scenario: Scenario,
    target: Child,
    path: string,
    who: string,
    headers?: Record<string, string>,
  ) => {
    const scope = { targetPid: target.process.pid ?? 0, database: databaseName }
    await waitForQuiet(scope)
    log(`${scenario.name}: warming up ${who} (${WARMUP_S} s)`)
    await runLoad(`${target.url}${path}`, { ...settings, headers, durationS: WARMUP_S }, scope)
    log(`${scenario.name}: measuring ${who} (${durationS} s)`)
    const result = await runLoad(`${target.url}${path}`, { ...settings, headers }, scope)
    if (target.hasExited) throw new BenchError(`${target.name} died under load:\n${logTail(target)}`)
    log(
      `${scenario.name}: ${who} ${fmt(result.rps)} req/s, p99 ${result.p99_ms} ms, ` +
        `${result.non2xx} non-2xx, ${result.errors} errors, ` +
        `CPU ${result.cpuUsPerRequest ?? '?'} µs/req (database ${result.dbCpuUsPerRequest ?? '?'})`,
    )
    if ((result.otherCpuCores ?? 0) > OTHER_CPU_WARNING) {
      log(`warning: other processes kept ${result.otherCpuCores} cores busy meanwhile; figures disturbed`)
    }
    await sleep(1_000)
    return result
  }
  // Interference from elsewhere only ever slows a run down, so the best round is the truest one.
  const best = (runs: LoadResult[]) => runs.reduce((a, b) => (b.rps > a.rps ? b : a))
  const sum = (runs: LoadResult[], key: 'errors' | 'timeouts' | 'non2xx') =>
    runs.reduce((total, run) => total + run[key], 0)

  const results: ScenarioResult[] = []
  // Scenarios that need other server settings get a server of their own, started after the others.
  let serverSettings = '{}'
  const ordered = [...scenarios].sort((a, b) =>
    JSON.stringify(a.env ?? {}).localeCompare(JSON.stringify(b.env ?? {})),
  )
  for (const scenario of ordered) {
    const wanted = JSON.stringify(scenario.env ?? {})
    if (wanted !== serverSettings) {
      await stopChild(server)
      ;({ server } = await startServer(`server ${wanted}`, scenario.env))
      if (pinned) pinProcess(server.process.pid!, pinned)
      serverSettings = wanted
      log(`server restarted with ${wanted}`)
    }
    const oursRuns: LoadResult[] = []
    const theirsRuns: LoadResult[] = []
    for (let round = 0; round < rounds; round++) {
      oursRuns.push(await measure(scenario, server, fill(scenario.path), 'server'))
      theirsRuns.push(await measure(scenario, baseline, fill(scenario.baselinePath), 'baseline'))
    }
    const ours = best(oursRuns)
    const theirs = best(theirsRuns)
    const ratio = theirs.rps > 0 ? Math.round((ours.rps / theirs.rps) * 1000) / 1000 : 0
    const errors = sum(oursRuns, 'errors')
    const non2xx = sum(oursRuns, 'non2xx')
    const baselineErrors = sum(theirsRuns, 'errors')
    const baselineNon2xx = sum(theirsRuns, 'non2xx')
    const failed = errors > 0 || non2xx > 0 || baselineErrors > 0 || baselineNon2xx > 0
    const meets =
      ratio >= scenario.target && (scenario.p99TargetMs === undefined || ours.p99_ms <= scenario.p99TargetMs)
    const statusCodes: Record<string, number> = {}
    for (const run of oursRuns) {
      for (const [code, count] of Object.entries(run.statusCodes)) {
        statusCodes[code] = (statusCodes[code] ?? 0) + count
      }
    }
    results.push({
      scenario: scenario.name,
      date,
      database: mode,
      status: failed ? 'failed' : meets ? 'ok' : 'below-target',
      target_ratio: scenario.target,
      ...(scenario.p99TargetMs === undefined ? {} : { target_p99_ms: scenario.p99TargetMs }),
      products: productCount,
      rps: Math.round(ours.rps),
      p50_ms: ours.p50_ms,
      p99_ms: ours.p99_ms,
      baseline: scenario.baseline,
      baseline_rps: Math.round(theirs.rps),
      baseline_p50_ms: theirs.p50_ms,
      baseline_p99_ms: theirs.p99_ms,
      ratio,
      duration_s: durationS,
      rounds,
      round_rps: oursRuns.map((run) => Math.round(run.rps)),
      baseline_round_rps: theirsRuns.map((run) => Math.round(run.rps)),
      connections: CONNECTIONS,
      pipelining: settings.pipelining,
      errors,
      timeouts: sum(oursRuns, 'timeouts'),
      non2xx,
      status_codes: statusCodes,
      baseline_errors: baselineErrors,
      baseline_non2xx: baselineNon2xx,
      cpu_us_per_request: ours.cpuUsPerRequest,
      baseline_cpu_us_per_request: theirs.cpuUsPerRequest,
      db_cpu_us_per_request: ours.dbCpuUsPerRequest,
      baseline_db_cpu_us_per_request: theirs.dbCpuUsPerRequest,
      cpu_ratio:
        ours.cpuUsPerRequest && theirs.cpuUsPerRequest
          ? Math.round((theirs.cpuUsPerRequest / ours.cpuUsPerRequest) * 1000) / 1000
          : null,
      other_cpu_cores: ours.otherCpuCores,
      baseline_other_cpu_cores: theirs.otherCpuCores,
      cpu_pinning: pinned ? `autocannon on CPU 0; server and baseline on CPU ${pinned}` : 'none',
      ...machine(measured),
    })
  }

  printTable(results, startup)
  if (exploratory) {
    log('BENCH_LOG_LEVEL or BENCH_CPU_PROF changes the server: figures not written to bench/results')
  } else {
    for (const result of [startup, ...results]) log(`wrote ${writeResult(RESULTS_DIR, result)}`)
    updateDocs(DOC_FILE, RESULTS_DIR)
    log(`updated ${DOC_FILE}`)
  }
  return results.some((r) => r.status === 'failed') ? 1 : 0
}

let exitCode = 1
try {
  exitCode = await main()
} catch (error) {
  // Once aborted, the run fails because its children were stopped under it: nothing to add.
  if (!aborted) {
    const expected = error instanceof BenchError
    console.error(`bench: ${expected ? (error as Error).message : ((error as Error).stack ?? error)}`)
  }
} finally {
  await cleanup()
}
process.exit(exitCode)
