/**
 * `node bench/tax.ts`: the built-in tax engine on a 50-line cart, in process, no database (the
 * engine is pure). Target: under 0.2 ms per calculation. Prints calculations per second and µs per
 * calculation for each case, and writes bench/results/tax-<day>.json
 * (no `database` field, so bench/report.ts leaves it out of docs/performance.md).
 *
 * Environment: BENCH_DURATION seconds per case (default 3), after a one-second warm-up.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { calculateTax, type TaxInput } from '../src/modules/tax/engine.ts'
import type { StoreTaxContext } from '../src/modules/tax/place-of-supply.ts'
import { taxDataFromFile } from '../src/modules/tax/tax-data.ts'

const ROOT = resolve(import.meta.dirname, '..')
const TARGET_US = 200
const LINES = 50

const data = taxDataFromFile()
const CATEGORIES = [
  'standard',
  'standard',
  'standard',
  'food',
  'books',
  'childrens_clothing',
  'digital_services',
]

function cart(country: string, currency: string, inclusive: boolean, region?: string): TaxInput {
  return {
    currency,
    prices_include_tax: inclusive,
    date_of_supply: '2025-09-15',
    customer: { address: { country, ...(region ? { region } : {}) } },
    lines: Array.from({ length: LINES }, (_, i) => ({
      id: `line_${i}`,
      unit_amount: 199 + ((i * 7919) % 25_000),
      quantity: 1 + (i % 4),
      tax_category: CATEGORIES[i % CATEGORIES.length]!,
      ...(i % 5 === 0 ? { discount_amount: 100 } : {}),
    })),
    shipping: { amount: 995 },
    discount_amount: 1500,
  }
}

function store(country: string, region?: string): StoreTaxContext {
  return {
    origin: { country, ...(region ? { region } : {}) },
    registrations: [],
    oss_opt_in: false,
    eu_distance_sales_eur: { current_year: 2_000_000, previous_year: 0 },
  }
}

const CASES: Array<{ name: string; store: StoreTaxContext; input: TaxInput }> = [
  {
    name: 'EU cross-border, exclusive, per-invoice (AT → DE)',
    store: store('AT'),
    input: cart('DE', 'EUR', false),
  },
  { name: 'UK domestic, inclusive, per-line', store: store('GB'), input: cart('GB', 'GBP', true) },
  { name: 'Quebec GST + QST, inclusive', store: store('CA', 'QC'), input: cart('CA', 'CAD', true, 'QC') },
]

function measure(input: TaxInput, s: StoreTaxContext, seconds: number): { calcs: number; ms: number } {
  const deadline = performance.now() + seconds * 1000
  let calcs = 0
  const start = performance.now()
  let sink = 0
  while (performance.now() < deadline) {
    for (let i = 0; i < 100; i++) sink += calculateTax(data, s, input).totals.tax
    calcs += 100
  }
  if (sink < 0) console.log(sink)
  return { calcs, ms: performance.now() - start }
}

function revision(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = git('status', '--porcelain', '--', 'src', 'package.json', 'package-lock.json') !== ''
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? '+dirty' : ''}`
  } catch {
    return 'unknown'
  }
}

const seconds = Number(process.env.BENCH_DURATION ?? 3)
if (!Number.isFinite(seconds) || seconds <= 0)
  throw new Error(`BENCH_DURATION=${process.env.BENCH_DURATION} is invalid`)

const results = CASES.map((c) => {
  measure(c.input, c.store, 1)
  const { calcs, ms } = measure(c.input, c.store, seconds)
  const usPerCalc = (ms * 1000) / calcs
  return {
    case: c.name,
    lines: LINES + 1,
    calculations: calcs,
    calculations_per_second: Math.round((calcs / ms) * 1000),
    us_per_calculation: Number(usPerCalc.toFixed(2)),
    status: usPerCalc < TARGET_US ? 'ok' : 'below-target',
  }
})

console.log(`tax engine, ${LINES}-line cart + shipping (target < ${TARGET_US} µs per calculation)`)
for (const r of results) {
  console.log(
    `  ${r.case.padEnd(52)} ${String(r.calculations_per_second).padStart(8)} calc/s  ${r.us_per_calculation.toFixed(1).padStart(7)} µs/calc  ${r.status}`,
  )
}

const date = new Date().toISOString()
const report = {
  scenario: 'tax-engine',
  date,
  target_us_per_calculation: TARGET_US,
  status: results.every((r) => r.status === 'ok') ? 'ok' : 'below-target',
  duration_s: seconds,
  results,
  git_revision: revision(),
  node_version: process.version,
  cpus: cpus().length,
  cpu_model: cpus()[0]?.model.trim() ?? 'unknown',
}
const dir = join(ROOT, 'bench', 'results')
mkdirSync(dir, { recursive: true })
const file = join(dir, `tax-${date.slice(0, 10)}.json`)
writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
console.log(`wrote ${file}`)
