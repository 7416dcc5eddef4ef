/**
 * Benchmark results: one JSON file per scenario and database per day in bench/results, and the
 * results section of docs/performance.md, regenerated from every JSON file so the document always
 * shows the latest figures for each scenario and database.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** The database, and `+redis` when the server's KV store (cache version, rate limits) is Redis. */
export type DatabaseMode = 'pglite' | 'postgres' | 'postgres+redis'

export interface ScenarioResult {
  scenario: string
  /** ISO timestamp of the run. */
  date: string
  database: DatabaseMode
  /** `ok`, `below-target`, or `failed` when any response was not 2xx or a request errored. */
  status: 'ok' | 'below-target' | 'failed'
  target_ratio: number
  /** Highest acceptable p99, for scenarios whose issue sets one. */
  target_p99_ms?: number
  /** Products in the seeded catalog. */
  products?: number
  rps: number
  p50_ms: number
  p99_ms: number
  baseline: string
  baseline_rps: number
  baseline_p50_ms: number
  baseline_p99_ms: number
  ratio: number
  duration_s: number
  /** Alternating server/baseline rounds; rps and latencies come from each side's best round. */
  rounds: number
  round_rps: number[]
  baseline_round_rps: number[]
  connections: number
  pipelining: number
  errors: number
  timeouts: number
  non2xx: number
  status_codes: Record<string, number>
  baseline_errors: number
  baseline_non2xx: number
  /** CPU µs the server (with PostgreSQL) spent per response, and the baseline likewise. */
  cpu_us_per_request: number | null
  baseline_cpu_us_per_request: number | null
  /** PostgreSQL's share of the two figures above (0 with PGlite, which runs inside the process). */
  db_cpu_us_per_request: number | null
  baseline_db_cpu_us_per_request: number | null
  /** baseline_cpu_us_per_request / cpu_us_per_request: the ratio by CPU cost, robust to interference. */
  cpu_ratio: number | null
  /** Cores processes outside the benchmark kept busy while the server was measured. */
  other_cpu_cores: number | null
  baseline_other_cpu_cores: number | null
  cpu_pinning: string
  /** Commit of the code measured, `+dirty` when src/ had uncommitted changes. */
  git_revision: string
  node_version: string
  cpus: number
  cpu_model: string
}

export interface StartupResult {
  scenario: 'startup'
  /** Products the CLI seeded between the first start and the measured restart, and how long it took. */
  seed_products?: number
  seed_seconds?: number
  date: string
  database: DatabaseMode
  first_start_ready_ms: number
  restart_ready_ms: number
  idle_rss_mb: number | null
  /** argon2id at the parameters passwords use, one after another on one core. */
  password_hashes_per_second_per_core?: number
  password_verifies_per_second_per_core?: number
  /** Commit of the code measured, `+dirty` when src/ had uncommitted changes. */
  git_revision: string
  node_version: string
  cpus: number
  cpu_model: string
}

const START = '<!-- results:start -->'
const END = '<!-- results:end -->'

function day(iso: string): string {
  return iso.slice(0, 10)
}

/** Writes `<dir>/<YYYY-MM-DD>-<scenario>-<database>.json`; a later run the same day replaces it. */
export function writeResult(dir: string, result: ScenarioResult | StartupResult): string {
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${day(result.date)}-${result.scenario}-${result.database}.json`)
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`)
  return file
}

function readAll(dir: string): Array<ScenarioResult | StartupResult> {
  let names: string[]
  try {
    names = readdirSync(dir).filter((name) => name.endsWith('.json'))
  } catch {
    return []
  }
  const results: Array<ScenarioResult | StartupResult> = []
  for (const name of names) {
    try {
      const parsed = JSON.parse(readFileSync(join(dir, name), 'utf8'))
      if (parsed && typeof parsed.scenario === 'string' && typeof parsed.database === 'string') {
        results.push(parsed)
      }
    } catch {
      // A hand-edited or truncated file should not stop the document from being regenerated.
    }
  }
  return results
}

/** The most recent result for each scenario and database. */
function latest<T extends { scenario: string; database: string; date: string }>(results: T[]): T[] {
  const byKey = new Map<string, T>()
  for (const result of results) {
    const key = `${result.scenario}\u0000${result.database}`
    const seen = byKey.get(key)
    if (!seen || result.date > seen.date) byKey.set(key, result)
  }
  return [...byKey.values()].sort(
    (a, b) => a.scenario.localeCompare(b.scenario) || a.database.localeCompare(b.database),
  )
}

const integer = (n: number) => Math.round(n).toLocaleString('en-US')
const ms = (n: number) => (n >= 100 ? integer(n) : String(Math.round(n * 10) / 10))

/** The day, and the commit the figures belong to (files from before it was recorded have none). */
function when(result: { date: string; git_revision?: string }): string {
  return result.git_revision ? `${day(result.date)} (${result.git_revision})` : day(result.date)
}

function statusText(result: ScenarioResult): string {
  if (result.status === 'failed') return `**failed** (${result.non2xx} non-2xx, ${result.errors} errors)`
  return result.status === 'ok' ? 'meets target' : '**below target**'
}

/** The worse of the two measurements' interference, in cores. */
function otherCpu(result: ScenarioResult): string {
  const values = [result.other_cpu_cores, result.baseline_other_cpu_cores].filter(
    (v): v is number => typeof v === 'number',
  )
  return values.length ? Math.max(...values).toFixed(2) : 'n/a'
}

/** Markdown tables of the latest figures. */
export function markdownTables(results: Array<ScenarioResult | StartupResult>): string {
  const scenarios = latest(results.filter((r): r is ScenarioResult => r.scenario !== 'startup'))
  const startups = latest(results.filter((r): r is StartupResult => r.scenario === 'startup'))
  const lines: string[] = []
  if (scenarios.length) {
    lines.push(
      '| Scenario | Database | Catalog | Date (commit) | req/s | p50 ms | p99 ms | Baseline | Baseline req/s | Baseline p99 ms | Ratio | Target | Result | CPU µs/req (server / baseline) | Other CPU |',
      '| --- | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |',
    )
    for (const r of scenarios) {
      lines.push(
        `| ${r.scenario} | ${r.database} | ${r.products === undefined ? 'n/a' : `${integer(r.products)} products`} | ` +
          `${when(r)} | ${integer(r.rps)} | ${ms(r.p50_ms)} | ${ms(r.p99_ms)} | ` +
          `${r.baseline} | ${integer(r.baseline_rps)} | ${ms(r.baseline_p99_ms)} | ${r.ratio.toFixed(3)} | ` +
          `≥ ${r.target_ratio}${r.target_p99_ms === undefined ? '' : `, p99 ≤ ${r.target_p99_ms} ms`} | ` +
          `${statusText(r)} | ${r.cpu_us_per_request ?? 'n/a'} / ` +
          `${r.baseline_cpu_us_per_request ?? 'n/a'} | ${otherCpu(r)} |`,
      )
    }
    const first = scenarios[0]!
    lines.push(
      '',
      `autocannon: ${first.connections} connections, pipelining ${first.pipelining}, ${first.duration_s} s per ` +
        `measurement after a 2 s warm-up, best of ${first.rounds ?? 1} alternating round(s); ` +
        `Node ${first.node_version}; ${first.cpus} × ${first.cpu_model}; ${first.cpu_pinning ?? 'not pinned'}.`,
    )
  }
  if (startups.length) {
    if (lines.length) lines.push('')
    lines.push(
      '| Database | Date (commit) | Cold start to ready (empty database) | Seed (CLI) | Restart to ready | RSS at idle | argon2id hashes/s per core (verifies/s) |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
    )
    for (const r of startups) {
      const rss = r.idle_rss_mb === null ? 'n/a' : `${r.idle_rss_mb} MB`
      lines.push(
        `| ${r.database} | ${when(r)} | ${integer(r.first_start_ready_ms)} ms | ` +
          `${r.seed_products === undefined ? 'n/a' : `${integer(r.seed_products)} products in ${r.seed_seconds} s`} | ` +
          `${integer(r.restart_ready_ms)} ms | ${rss} | ` +
          `${r.password_hashes_per_second_per_core ?? 'n/a'} (${r.password_verifies_per_second_per_core ?? 'n/a'}) |`,
      )
    }
  }
  return lines.length ? lines.join('\n') : '_No results yet: run `npm run bench`._'
}

/**
 * Replaces what lies between the results markers of the document with tables built from every
 * JSON file in resultsDir. A document without the markers gets them appended.
 */
export function updateDocs(docFile: string, resultsDir: string): void {
  const tables = markdownTables(readAll(resultsDir))
  const block = `${START}\n\n${tables}\n\n${END}`
  let text: string
  try {
    text = readFileSync(docFile, 'utf8')
  } catch {
    text = '# Performance\n'
  }
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  const next =
    start !== -1 && end > start
      ? text.slice(0, start) + block + text.slice(end + END.length)
      : `${text.trimEnd()}\n\n## Results\n\n${block}\n`
  writeFileSync(docFile, next)
}
