/**
 * `npm run bench:checkout`: add to cart and completed checkouts on real PostgreSQL, each beside a
 * bare baseline that runs the same SQL statements, measured in the same run on the same database
 * with the same pool size.
 *
 *   add-to-cart       POST /store/carts/:id/lines {variant_id, quantity: 1}. 2,000 carts made
 *                     ready beforehand (email, shipping address in DE, a flat shipping option), taken
 *                     round robin, so the 50 requests in flight always name 50 different carts and
 *                     the compare-and-set never retries; each cart cycles through 5 of 100 variants,
 *                     so it holds at most 5 lines (the 200-line and 1,000-unit limits are never hit).
 *   checkout          POST /store/carts/:id/complete {payment: {provider: 'test', payment_method:
 *                     'pm_card_visa'}} with a fresh Idempotency-Key, every request on the next
 *                     unused ready cart (one line of one of 400 variants, so stock rows are spread).
 *                     Only 201s count as completed checkouts; every other answer is reported with
 *                     its status and problem code.
 *   checkout-hot-sku  The same, every cart holding the same variant: one stock row takes every
 *                     reservation.
 *
 * The server is the real one (`node src/main.ts`, NODE_ENV=production, SEED_DEMO=false,
 * RUN_WORKERS=false, RATE_LIMIT_PER_MINUTE=1000000, logs to a file at the default level) on a
 * scratch database sw_bench_<random>, dropped at the end. The store is made through the admin API
 * (tax origin DE, an EUR region of DE/FR/AT with prices including tax, a published product of 400
 * variants with 25,000 units each, a hot product of one variant with 1,000,000 units, a flat
 * shipping option of 4.90). Ready carts: one template cart per variant is made through the store
 * API (POST /store/carts with the line, PATCH with address and shipping option); the carts under
 * load are copies of those rows made with one INSERT … SELECT (every column but id and the
 * timestamps copied), because making 15,000+ carts over HTTP would take minutes and these are the
 * very rows the API wrote.
 *
 * The baseline is this file run with `--baseline`: bare Fastify, no plugins, no logger, no schemas,
 * a pg.Pool of the server's size, in a process of its own. Its routes run the statements the real
 * routes run (read from PostgreSQL's statement log, log_min_duration_statement = 0), with the same
 * texts, in the same transactions and in the same order, with parameters taken from the cart row,
 * and nothing else: no validation, no pricing or tax engine, no problem handling, no hooks. Both
 * send them the same way: each connection keeps the statements it runs repeatedly prepared
 * (src/platform/db/statements.ts, at the server's default size). As of this writing:
 *
 *   add to cart (2 statements): the cart read of src/modules/carts/load.ts (cart, variant facts,
 *     prices, limits, shipping option, region countries in one SELECT, kept prepared on both
 *     sides; its text is taken from loadCart itself); the compare-and-set UPDATE of carts on its
 *     version, returning only the new version and time (the lines and totals are in hand), also
 *     prepared on both sides, its text taken from linesWrite in src/modules/carts/carts.ts.
 *   checkout (27 statements, 3 transactions), in order:
 *     autocommit  idempotency_keys INSERT … SELECT … ON CONFLICT DO NOTHING (the claim, committed
 *                 without waiting for the disk, as the test gateway's INSERTs and the stored
 *                 response are: asynchronousCommit in src/platform/db/transaction.ts); the cart read;
 *                 inventory_reserve_batch() (the single-line stock hold, coalesced with others of the
 *                 same SKU on the server; a batch of one on the baseline);
 *     tx          payments INSERT; carts UPDATE to completing, on the priced version;
 *     autocommit  test_gateway_operations INSERT (authorize) returning the row;
 *     tx          carts UPDATE to completed, on the checkout's payment (the lock a read would take);
 *                 payments UPDATE authorized with the order id, unless settled; orders INSERT (no
 *                 number yet) with its order_lines and order_transitions INSERTs as CTEs of the same
 *                 statement; inventory_reservations UPDATE (held for the order); tax_sales INSERT; pg-boss job INSERT (delivery of
 *                 order.placed); order_sequences UPDATE … orders UPDATE … events INSERT in one
 *                 statement (the gapless number and the event that carries it, last, so the
 *                 counter row is locked only for that statement and the commit);
 *     autocommit  test_gateway_operations SELECT of the charge and whether it was canceled, INSERT
 *                 capture returning the row (the payment is in hand from the placing phase);
 *     tx          payments UPDATE captured; events INSERT; pg-boss job INSERT; orders UPDATE to paid
 *                 where still pending, with its order_transitions and events INSERTs, in one
 *                 statement; pg-boss job INSERT;
 *     autocommit  idempotency_keys UPDATE with the response.
 *
 * The statement audit checks this in every run: with statement logging switched on for the scratch
 * database, one add to cart and one checkout go to each side and the statements PostgreSQL logged
 * for them are compared, in order; a difference is printed and recorded (statement_audit in the
 * results). Then the server and baseline that are measured start afresh with logging off.
 *
 * Run: npm run bench:checkout
 * Environment:
 *   BENCH_DATABASE_URL  a local PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres)
 *   BENCH_DURATION      seconds per measurement (default 10), each after a 2 s warm-up
 *   BENCH_POOL          DATABASE_POOL_MAX of the server and the baseline's pool (default 10)
 *   BENCH_CONNECTIONS   autocannon's connections (default 50, the issue's); another number writes
 *                       checkout-<date>-c<N>.json and leaves the docs' results block alone
 *   BENCH_SCENARIOS     comma-separated subset of add-to-cart, checkout, checkout-hot-sku
 *   BENCH_PIN=false     leave processes unpinned (default: autocannon on CPU 0, the rest on 1…n)
 *   BENCH_PG_LOG        PostgreSQL's log file for the statement audit (default: Debian's
 *                       /var/log/postgresql/postgresql-<major>-main.log); `off` skips the audit
 *   BENCH_LOG_LEVEL     LOG_LEVEL for the server
 *   BENCH_CPU_PROF      a directory: the server runs with --cpu-prof and leaves its profile there
 * The last two change the system under test, so such runs print figures but write no results.
 * Otherwise it writes bench/results/checkout-<date>.json and the "Carts and checkout" results in
 * docs/performance.md.
 */
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import {
  accessSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import pg from 'pg'
import { insertJobs } from 'pg-boss/dist/plans.js'
import { ulid } from 'ulid'
import { newId } from '../src/platform/ids.ts'
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
  spawnNode,
  stopChild,
  waitForOk,
} from './processes.ts'

const ROOT = resolve(import.meta.dirname, '..')
const RESULTS_DIR = join(ROOT, 'bench', 'results')
const DOC_FILE = join(ROOT, 'docs', 'performance.md')
const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres'

/** autocannon's connections (BENCH_CONNECTIONS, checked in main); the issue's targets are at 50. */
const DEFAULT_CONNECTIONS = 50
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS?.trim() || DEFAULT_CONNECTIONS)
const WARMUP_S = 2
const READY_TIMEOUT_MS = 120_000
const OTHER_CPU_WARNING = 0.15
const QUIET_WAIT_MS = 30_000
/** Variants of the spread product; stock per variant. */
const VARIANTS = 400
const STOCK_PER_VARIANT = 25_000
const HOT_STOCK = 1_000_000
/** Add to cart: carts taken round robin, variants rotated over, distinct variants per cart. */
const ADD_CARTS = 2_000
const ADD_VARIANTS = 100
const LINES_PER_ADD_CART = 5
/** Ready carts made before a checkout warm-up, and the margin over the warm-up rate after it. */
const CHECKOUT_WARMUP_CARTS = 4_000
const CHECKOUT_MARGIN = 1.6
const EMAIL = 'shopper@example.com'
const BERLIN = { line1: 'Unter den Linden 1', city: 'Berlin', postal_code: '10117', country_code: 'DE' }
const PAYMENT_BODY = JSON.stringify({ payment: { provider: 'test', payment_method: 'pm_card_visa' } })

const TARGETS = {
  'add-to-cart': { ops_per_second: 2_000, p99_ms: 30 },
  checkout: { ops_per_second: 300, p99_ms: 100 },
} as const

type ScenarioName = 'add-to-cart' | 'checkout' | 'checkout-hot-sku'
const SCENARIOS: ScenarioName[] = ['add-to-cart', 'checkout', 'checkout-hot-sku']
// ---------------------------------------------------------------------------------------------
// The statements the baseline runs: the texts Kysely sends for the real routes (see the list at the
// top; the statement audit compares them with the server's in every run).

const SQL = {
  // Claimed, and the response stored, committing without waiting for the disk (asynchronousCommit).
  claimKey:
    '/* prepared */ insert into idempotency_keys (principal, key, method, path, request_hash, state) ' +
    "select $1, $2, $3, $4, $5, 'running' where set_config('synchronous_commit', 'off', true) = 'off' " +
    'on conflict (principal, key) do nothing returning key',
  // The coalesced single-line hold (src/modules/inventory/coalesce.ts), as a batch of one.
  reserveBatch:
    'select * from inventory_reserve_batch($1, $2::text, $3, $4::text[], $5::text[], $6::text[], $7::text[], ' +
    '$8::timestamptz[], $9::text[], $10::bigint[])',
  insertPayment:
    'insert into "payments" ("id", "cart_id", "provider", "amount", "currency_code", "payment_method", ' +
    '"updated_at") values ($1, $2, $3, $4, $5, $6, now()) returning *',
  startCart:
    'update "carts" set "status" = $1, "lines" = $2, "totals" = $3, "payment_id" = $4, "reservation_id" = $5, ' +
    '"checkout" = $6, "checkout_lease_until" = now() + make_interval(secs => $7), "version" = version + 1, ' +
    '"updated_at" = now() where "id" = $8 and "status" = $9 and "version" = $10 ' +
    'returning *, (extract(epoch from checkout_lease_until) * 1000000)::int8::text as "lease"',
  // The test gateway's ledger commits without waiting for the disk, as the claim does.
  gatewayInsert:
    '/* prepared */ insert into test_gateway_operations (idempotency_key, kind, charge_id, amount, ' +
    "currency_code, outcome) select $1, $2, $3, $4, $5, $6 where set_config('synchronous_commit', 'off', true) " +
    "= 'off' on conflict (idempotency_key) do nothing returning *",
  closeCart:
    'update "carts" set "status" = $1, "order_id" = $2, "checkout_lease_until" = $3, "updated_at" = now() ' +
    'where "id" = $4 and "status" = $5 and "payment_id" = $6 returning *',
  authorizePayment:
    'update "payments" set "status" = $1, "card_fingerprint" = $2, "next_action" = $3, "failure_code" = $4, ' +
    '"failure_message" = $5, "provider_ref" = $6, "order_id" = $7, "updated_at" = now() where "id" = $8 ' +
    'and "status" not in ($9, $10, $11, $12) returning *',
  /**
   * The order is numbered last in its transaction, in one statement with its order.placed event
   * (Outbox.emitWith with src/modules/orders/orders.ts nextNumber).
   */
  numberAndEvent:
    "with taken as ( update order_sequences set next_value = next_value + 1 where name = 'orders' " +
    'returning next_value - 1 as number), source as ( update orders set number = taken.number from taken ' +
    'where orders.id = $1 returning orders.number as value) insert into events (id, type, subject_id, payload) ' +
    'select $2, $3, $4, $5::jsonb || jsonb_build_object($6::text, source.value) from source ' +
    'returning payload -> $7::text as value',
  /**
   * The order with its lines and first history row in one statement (src/modules/orders/orders.ts
   * placeOrder): placeOrderSql gives the text for a number of lines.
   */
  placeOrderLines:
    'with "lines" as (insert into "order_lines" ("id", "order_id", "position", "variant_id", "product_id", ' +
    '"sku", "title", "product_title", "quantity", "unit_amount", "subtotal", "discount_amount", "tax_amount", ' +
    '"total", "taxes", "tax_category", "fulfilled_quantity", "refunded_quantity", "refunded_amount") values ',
  placeOrderHistory:
    '), "history" as (insert into "order_transitions" ("id", "order_id", "from_status", "to_status", "actor", ' +
    '"reason") values ',
  placeOrderOrder:
    ') insert into "orders" ("id", "cart_id", "status", "payment_status", "customer_id", "email", ' +
    '"region_id", "currency_code", "prices_include_tax", "shipping_address", "billing_address", ' +
    '"shipping_method", "subtotal", "discount_total", "shipping_total", "tax_total", "total", "taxes", ' +
    '"tax_provider", "reservation_id", "payment_id", "promo_codes", "metadata", "updated_at") values ',
  insertEvent:
    'insert into "events" ("id", "type", "subject_id", "payload") values ($1, $2, $3, $4) returning "occurred_at", "sequence"',
  holdReservation:
    'update "inventory_reservations" set "expires_at" = $1, "reference" = $2, "updated_at" = now() ' +
    'where "id" = $3 and "status" = $4 returning "id"',
  insertTaxSale:
    'insert into "tax_sales" ("id", "reference", "date_of_supply", "origin_country", "country", "region", ' +
    '"currency", "net_amount", "tax_amount", "eur_amount", "eu_distance_sale", "b2b", "voided_at") values ($1, ' +
    '$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) on conflict ("reference") do nothing ' +
    'returning "id", "eu_distance_sale"',
  // The test gateway reads a charge and whether it was canceled in one statement.
  gatewayCharge:
    'select "op".*, exists (select "c"."idempotency_key" from "test_gateway_operations" as "c" where ' +
    '"c"."charge_id" = $1 and "c"."kind" = $2) as "canceled" from "test_gateway_operations" as "op" ' +
    'where "op"."charge_id" = $3 and "op"."kind" = $4',
  capturePayment:
    'update "payments" set "status" = $1, "captured_amount" = $2, "updated_at" = now() ' +
    'where "id" = $3 and "status" in ($4, $5) returning *',
  payOrder:
    'with moved as (update "orders" set "payment_status" = $1, "status" = $2, "updated_at" = now() where ' +
    '"id" = $3 and "status" = $4 returning "number"), history as ( insert into order_transitions (id, ' +
    'order_id, from_status, to_status, actor, reason) select $5, $6, $7, $8, $9, $10 from moved), source as ' +
    '(select number as value from moved) insert into events (id, type, subject_id, payload) select $11, $12, ' +
    '$13, $14::jsonb || jsonb_build_object($15::text, source.value) from source returning payload -> $16::text ' +
    'as value',
  storeResponse:
    'update "idempotency_keys" set "state" = $1, "response_status" = $2, "response_body" = $3, ' +
    '"response_text" = $4, "completed_at" = now() where "principal" = $5 and "key" = $6 ' +
    "and set_config('synchronous_commit', 'off', true) = 'off'",
} as const

/** The `values` groups of a multi-row insert of `rows` rows of `columns` parameters each. */
function valueGroups(rows: number, columns: number, from = 1): string {
  return Array.from(
    { length: rows },
    (_, r) => `(${Array.from({ length: columns }, (_, c) => `$${from + r * columns + c}`).join(', ')})`,
  ).join(', ')
}

/** The placing statement's text for an order of `lines` lines (19 parameters a line). */
function placeOrderSql(lines: number): string {
  const history = 19 * lines + 1
  const order = history + 6
  const orderValues = valueGroups(1, 23, order).replace(/\)$/, ', now())')
  return (
    SQL.placeOrderLines +
    valueGroups(lines, 19) +
    SQL.placeOrderHistory +
    valueGroups(1, 6, history) +
    SQL.placeOrderOrder +
    orderValues +
    ' returning *'
  )
}

/**
 * The cart read, exactly as src/modules/carts/load.ts compiles it: loadCart runs against a Kysely
 * whose driver records the statement instead of sending it, so the baseline follows every change
 * to that statement. Returns its text and how to order the parameters.
 */
async function cartReadStatement(): Promise<{
  text: string
  params: (cartId: string, variants: string[]) => unknown[]
}> {
  const { loadCart } = await import('../src/modules/carts/load.ts')
  const probe = await probeKysely()
  const CART = 'cart_probe'
  const VARIANT = 'var_probe'
  await loadCart(probe.db as never, CART, [VARIANT])
  const captured = probe.captured()
  if (!captured) throw new Error('loadCart ran no statement')
  const roles = captured.parameters.map((p) => {
    if (p === CART) return 'cart'
    if (Array.isArray(p) && p.length === 1 && p[0] === VARIANT) return 'variants'
    throw new Error(`the cart read has a parameter the baseline does not know: ${JSON.stringify(p)}`)
  })
  return {
    text: captured.sql,
    params: (cartId, variants) => roles.map((role) => (role === 'cart' ? cartId : variants)),
  }
}

/**
 * The compare-and-set write of a lines-only change, exactly as src/modules/carts/carts.ts compiles
 * it, with the order of its parameters.
 */
async function linesWriteStatement(): Promise<{
  text: string
  params: (lines: string, totals: string, cartId: string, version: number) => unknown[]
}> {
  const { linesWrite } = await import('../src/modules/carts/carts.ts')
  const probe = await probeKysely()
  const compiled = linesWrite('cart_probe', -7, '"lines"', '"totals"').compile(probe.db as never)
  const roles = compiled.parameters.map((p) => {
    const role = { cart_probe: 'cart', '-7': 'version', '"lines"': 'lines', '"totals"': 'totals' }[String(p)]
    if (!role)
      throw new Error(`the cart write has a parameter the baseline does not know: ${JSON.stringify(p)}`)
    return role
  })
  return {
    text: compiled.sql,
    params: (lines, totals, cartId, version) =>
      roles.map((role) => ({ lines, totals, cart: cartId, version })[role]),
  }
}

/** A Kysely whose driver records the statement it is given instead of sending it. */
async function probeKysely() {
  const { Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler } = await import('kysely')
  let captured: { sql: string; parameters: readonly unknown[] } | undefined
  const connection = {
    async executeQuery(query: { sql: string; parameters: readonly unknown[] }) {
      captured = query
      return { rows: [] }
    },
    async *streamQuery() {},
  }
  const db = new Kysely<never>({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => ({
        init: async () => {},
        acquireConnection: async () => connection,
        beginTransaction: async () => {},
        commitTransaction: async () => {},
        rollbackTransaction: async () => {},
        releaseConnection: async () => {},
        destroy: async () => {},
      }),
      createIntrospector: (k) => new PostgresIntrospector(k),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
  })
  return { db, captured: () => captured }
}

interface CartLineJson {
  id: string
  variant_id: string
  product_id: string
  sku: string
  title: string
  product_title: string
  quantity: number
  unit_amount: number
  tax_category: string
  [key: string]: unknown
}

interface LineTotalsJson {
  id: string
  subtotal: number
  discount_amount: number
  tax_amount: number
  total: number
  taxes: unknown[]
}

interface TotalsJson {
  subtotal: number
  discount_total: number
  shipping_total: number
  tax_total: number
  total: number
  taxes: unknown[]
  shipping: Record<string, unknown> | null
  tax_provider: string | null
  date_of_supply: string
  lines: LineTotalsJson[]
  [key: string]: unknown
}

interface CartRowJson {
  id: string
  email: string
  region_id: string
  currency_code: string
  prices_include_tax: boolean
  customer_id: string | null
  shipping_address: Record<string, unknown>
  billing_address: Record<string, unknown> | null
  promo_codes: string[]
  metadata: Record<string, unknown>
  lines: CartLineJson[]
  totals: TotalsJson
  version: number
  variants: Array<Record<string, unknown> & { id: string; amount: string | number | null }>
}

/** German VAT on a tax-inclusive amount, for the baseline's totals: same JSON shape, no tax engine. */
function vatLine(gross: number) {
  const tax = Math.round((gross * 19) / 119)
  return {
    rate: '19',
    label: 'VAT 19%',
    rate_id: 'txr_de_standard_2024-01-01',
    rate_ppm: 190000,
    tax_name: 'VAT',
    rate_kind: 'standard',
    treatment: 'taxable',
    tax_amount: tax,
    jurisdiction: 'DE',
    taxable_amount: gross - tax,
    jurisdiction_name: 'Germany',
  }
}

/** Totals of the same shape as the server's, from plain sums (the baseline's stand-in for pricing). */
function bareTotals(lines: CartLineJson[], previous: TotalsJson): TotalsJson {
  const lineTotals = lines.map((l) => {
    const gross = l.unit_amount * l.quantity
    const vat = vatLine(gross)
    return {
      id: l.id,
      taxes: [vat],
      total: gross,
      subtotal: gross,
      tax_amount: vat.tax_amount,
      discount_amount: 0,
    }
  })
  const subtotal = lineTotals.reduce((sum, l) => sum + l.total, 0)
  const shipping = lines.length ? 490 : 0
  const vat = vatLine(subtotal + shipping)
  return {
    ...previous,
    lines: lineTotals,
    taxes: [{ ...vat, rounding: 'invoice' }],
    total: subtotal + shipping,
    subtotal,
    tax_total: vat.tax_amount,
    item_count: lines.reduce((sum, l) => sum + l.quantity, 0),
    tax_pending: false,
    shipping_total: shipping,
    discount_total: 0,
    tax_provider: 'builtin',
    tax_notes: [],
    date_of_supply: new Date().toISOString().slice(0, 10),
    shipping: lines.length
      ? {
          option_id: 'so_bench',
          name: 'Standard',
          tax_category: 'standard',
          amount: shipping,
          total: shipping,
        }
      : null,
  }
}

async function runBaseline(): Promise<void> {
  const { default: Fastify } = await import('fastify')
  const { keepStatementsPrepared } = await import('../src/platform/db/statements.ts')
  const url = process.env.BASELINE_DATABASE_URL
  if (!url) throw new Error('baseline: set BASELINE_DATABASE_URL')
  // As the server reads int8 (src/platform/db/database.ts), so both sides handle the same values.
  pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10))
  const pool = new pg.Pool({ connectionString: url, max: Number(process.env.BASELINE_POOL ?? 10) })
  pool.on('error', () => {})
  // Statements are sent as the server's pool sends them: kept prepared per connection by the same
  // code, at the server's default size (DATABASE_STATEMENT_CACHE).
  pool.on('connect', (client) => keepStatementsPrepared(client, 250))
  const query = (text: string, params: unknown[]) => pool.query(text, params)
  const tx = async <T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
    const client = await pool.connect()
    try {
      await client.query('begin')
      const result = await work(client)
      await client.query('commit')
      return result
    } catch (error) {
      await client.query('rollback').catch(() => {})
      throw error
    } finally {
      client.release()
    }
  }
  // The cart read's and the lines-only write's texts come from the server's code, marks and all.
  const cartRead = await cartReadStatement()
  const readCart = async (cartId: string, variants: string[]) =>
    (await pool.query(cartRead.text, cartRead.params(cartId, variants))).rows[0] as CartRowJson
  const linesWrite = await linesWriteStatement()
  // The outbox's job INSERT, as pg-boss builds it for the queue's table.
  const queue = await query('select table_name from pgboss.queue where name = $1', ['events.publish'])
  const JOB_SQL = insertJobs('pgboss', { table: queue.rows[0].table_name, name: 'events.publish' })
  const enqueue = async (client: pg.PoolClient, id: string) => {
    const job = {
      id: null,
      name: 'events.publish',
      data: { id },
      priority: 0,
      singletonKey: null,
      singletonOffset: 0,
      groupId: null,
      groupTier: null,
      deadLetter: null,
      __traceContext: null,
    }
    await client.query(JOB_SQL, [JSON.stringify([job])])
  }
  const outbox = async (client: pg.PoolClient, type: string, subject: string, payload: object) => {
    const id = newId('evt')
    await client.query(SQL.insertEvent, [id, type, subject, JSON.stringify(payload)])
    await enqueue(client, id)
  }

  const app = Fastify()
  app.post<{ Params: { id: string }; Body: { variant_id: string; quantity: number } }>(
    '/carts/:id/lines',
    async (request) => {
      const { variant_id, quantity } = request.body
      for (;;) {
        const cart = await readCart(request.params.id, [variant_id])
        const facts = cart.variants.find((v) => v.id === variant_id)!
        const existing = cart.lines.find((l) => l.variant_id === variant_id)
        const lines = existing
          ? cart.lines.map((l) => (l === existing ? { ...l, quantity: l.quantity + quantity } : l))
          : [
              ...cart.lines,
              {
                id: newId('cali'),
                variant_id,
                product_id: facts.product_id as string,
                sku: facts.sku as string,
                title: facts.title as string,
                product_title: facts.product_title as string,
                quantity,
                unit_amount: Number(facts.amount),
                compare_at_amount: null,
                price_list_id: null,
                tax_category: facts.tax_category as string,
                weight_g: facts.weight_g,
                manage_inventory: facts.manage_inventory,
                requires_shipping: facts.requires_shipping,
              },
            ]
        const totals = bareTotals(lines, cart.totals)
        const updated = await pool.query(
          linesWrite.text,
          linesWrite.params(JSON.stringify(lines), JSON.stringify(totals), cart.id, cart.version),
        )
        if (updated.rows[0]) return { ...cart, lines, totals, ...updated.rows[0] }
      }
    },
  )

  app.post<{ Params: { id: string } }>('/carts/:id/complete', async (request, reply) => {
    const cartId = request.params.id
    const key = String(request.headers['idempotency-key'])
    const hash = createHash('sha256')
      .update(`POST ${request.url}\n${JSON.stringify(request.body)}`)
      .digest('hex')
    await query(SQL.claimKey, ['anonymous', key, 'POST', request.url, hash])
    const cart = await readCart(cartId, [])
    // As the server does, totals are worked out afresh at checkout, not read back.
    const totals = bareTotals(cart.lines, cart.totals)
    const reservationId = newId('res')
    // One line per ready cart: the single-line stock hold, one autocommitted statement.
    await query(SQL.reserveBatch, [
      cart.lines[0]!.variant_id,
      'DE',
      'priority',
      [reservationId],
      [newId('resl')],
      [newId('mov')],
      [cartId],
      [new Date(Date.now() + 30 * 60_000)],
      ['guest'],
      [cart.lines[0]!.quantity],
    ])
    const paymentId = newId('pay')
    await tx(async (client) => {
      await client.query(SQL.insertPayment, [paymentId, cartId, 'test', totals.total, 'EUR', 'pm_card_visa'])
      await client.query(SQL.startCart, [
        'completing',
        JSON.stringify(cart.lines),
        JSON.stringify(totals),
        paymentId,
        reservationId,
        JSON.stringify({ provider: 'test', started_by: 'guest' }),
        30,
        cartId,
        'active',
        cart.version,
      ])
    })
    const chargeId = newId('ch')
    await query(SQL.gatewayInsert, [
      `${paymentId}:authorize`,
      'authorize',
      chargeId,
      totals.total,
      'EUR',
      'authorized',
    ])

    const orderId = newId('ord')
    const placed = await tx(async (client) => {
      const locked = (
        await client.query(SQL.closeCart, ['completed', orderId, null, cartId, 'completing', paymentId])
      ).rows[0] as CartRowJson
      await client.query(SQL.authorizePayment, [
        'authorized',
        '0ac348513f4e6619',
        null,
        null,
        null,
        chargeId,
        orderId,
        paymentId,
        'captured',
        'partially_refunded',
        'refunded',
        'canceled',
      ])
      const lines = locked.lines.map((l, position) => {
        const t = totals.lines[position]!
        return {
          id: newId('ordl'),
          order_id: orderId,
          position,
          variant_id: l.variant_id,
          product_id: l.product_id,
          sku: l.sku,
          title: l.title,
          product_title: l.product_title,
          quantity: l.quantity,
          unit_amount: l.unit_amount,
          subtotal: t.subtotal,
          discount_amount: t.discount_amount,
          tax_amount: t.tax_amount,
          total: t.total,
          taxes: t.taxes,
          tax_category: l.tax_category,
          fulfilled_quantity: 0,
          refunded_quantity: 0,
          refunded_amount: 0,
        }
      })
      const order = (
        await client.query(placeOrderSql(lines.length), [
          ...lines.flatMap((l) => Object.values({ ...l, taxes: JSON.stringify(l.taxes) })),
          newId('otr'),
          orderId,
          null,
          'pending',
          'guest',
          'placed',
          orderId,
          cartId,
          'pending',
          'authorized',
          locked.customer_id,
          locked.email,
          locked.region_id,
          locked.currency_code,
          locked.prices_include_tax,
          JSON.stringify(locked.shipping_address),
          null,
          JSON.stringify(totals.shipping),
          totals.subtotal,
          totals.discount_total,
          totals.shipping_total,
          totals.tax_total,
          totals.total,
          JSON.stringify(totals.taxes),
          totals.tax_provider,
          reservationId,
          paymentId,
          locked.promo_codes,
          JSON.stringify(locked.metadata),
        ])
      ).rows[0]
      await client.query(SQL.holdReservation, [null, orderId, reservationId, 'active'])
      await client.query(SQL.insertTaxSale, [
        newId('txs'),
        orderId,
        totals.date_of_supply,
        'DE',
        'DE',
        null,
        'EUR',
        totals.total - totals.tax_total,
        totals.tax_total,
        null,
        false,
        false,
        null,
      ])
      const eventId = newId('evt')
      await enqueue(client, eventId)
      const placedEvent = {
        order_id: orderId,
        cart_id: cartId,
        customer_id: null,
        email: locked.email,
        currency: 'EUR',
        total: totals.total,
        tax_total: totals.tax_total,
        lines: locked.lines.map((l) => ({ variant_id: l.variant_id, sku: l.sku, quantity: l.quantity })),
      }
      const numbered = await client.query(SQL.numberAndEvent, [
        orderId,
        eventId,
        'order.placed',
        orderId,
        JSON.stringify(placedEvent),
        'number',
        'number',
      ])
      order.number = Number(numbered.rows[0].value)
      return { order, lines }
    })

    await query(SQL.gatewayCharge, [chargeId, 'cancel', chargeId, 'authorize'])
    await query(SQL.gatewayInsert, [
      `${paymentId}:capture`,
      'capture',
      chargeId,
      totals.total,
      'EUR',
      'captured',
    ])
    await tx(async (client) => {
      await client.query(SQL.capturePayment, [
        'captured',
        totals.total,
        paymentId,
        'authorized',
        'awaiting_transfer',
      ])
      await outbox(client, 'payment.captured', paymentId, {
        actor: 'guest',
        amount: totals.total,
        cart_id: cartId,
        currency: 'EUR',
        order_id: orderId,
        provider: 'test',
        payment_id: paymentId,
      })
      // Marked paid in the capture's own transaction: the move, its history row and its event in
      // one statement (src/modules/orders/state.ts transitionFrom), then the event's delivery job.
      const paidEvent = newId('evt')
      await client.query(SQL.payOrder, [
        'captured',
        'paid',
        orderId,
        'pending',
        newId('otr'),
        orderId,
        'pending',
        'paid',
        'guest',
        'payment captured',
        paidEvent,
        'order.paid',
        orderId,
        JSON.stringify({
          order_id: orderId,
          from: 'pending',
          to: 'paid',
          payment_id: paymentId,
          amount: totals.total,
        }),
        'number',
        'number',
      ])
      await enqueue(client, paidEvent)
    })
    const text = JSON.stringify({
      type: 'order',
      order: { ...placed.order, status: 'paid', payment_status: 'captured', lines: placed.lines },
    })
    await query(SQL.storeResponse, ['done', 201, text, text, 'anonymous', key])
    reply.code(201).type('application/json; charset=utf-8')
    return text
  })

  process.once('SIGTERM', () => {
    app.close().finally(() => process.exit(0))
  })
  await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 3001) })
}

// ---------------------------------------------------------------------------------------------
// The statement audit: what each side ran for one request, from PostgreSQL's statement log.

interface Audited {
  server: string[]
  baseline: string[]
  match: boolean
}

/** The statements logged for the database in the log from byte `from` on, normalised. */
function loggedStatements(file: string, from: number, database: string): string[] {
  const text = readFileSync(file).subarray(from).toString('utf8')
  const entries = text.split(/\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)/)
  const ours = entries.some((e) => e.includes(database))
    ? entries.filter((e) => e.includes(database))
    : entries
  const logged: Array<{ pid: string; statement: string }> = []
  for (const entry of ours) {
    const m = /\[(\d+)\][^\n]*?LOG: {2}duration: [\d.]+ ms {2}(?:execute [^:]*|statement): ([\s\S]*)/.exec(
      entry,
    )
    if (m) logged.push({ pid: m[1]!, statement: m[2]!.split(/\n\S/)[0]!.replace(/\s+/g, ' ').trim() })
  }
  // A request's statements, not background work (pg-boss): the sessions that touched carts or keys.
  const pids = new Set(
    logged.filter((l) => /"?(carts|idempotency_keys)"?/.test(l.statement)).map((l) => l.pid),
  )
  return logged.filter((l) => pids.has(l.pid)).map((l) => l.statement)
}

/**
 * The PostgreSQL server log to read statements from (BENCH_PG_LOG, or the Debian default for the
 * server's version), or null when it cannot be read or statement logging cannot be switched on.
 */
async function statementLog(client: pg.Client): Promise<string | null> {
  const raw = process.env.BENCH_PG_LOG?.trim()
  if (raw === 'off' || raw === 'false') return null
  let file = raw
  try {
    if (!file) {
      const version = String((await client.query('show server_version_num')).rows[0].server_version_num)
      file = `/var/log/postgresql/postgresql-${version.slice(0, -4)}-main.log`
    }
    accessSync(file, constants.R_OK)
    const superuser = (await client.query('select rolsuper from pg_roles where rolname = current_user'))
      .rows[0]
    if (!superuser?.rolsuper) throw new Error('log_min_duration_statement needs a superuser')
    return file
  } catch (error) {
    log(`statement audit off (${file ?? 'no log'}: ${(error as Error).message})`)
    return null
  }
}

/** The lines of a and b in order, each marked ' ' (both), '-' (a only) or '+' (b only). */
function diff(a: string[], b: string[]): string[] {
  const lcs = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0))
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!)
    }
  }
  const out: string[] = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      out.push(`  ${a[i++]}`)
      j++
    } else if (j < b.length && (i >= a.length || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) out.push(`+ ${b[j++]}`)
    else out.push(`- ${a[i++]}`)
  }
  return out
}

/**
 * Sends one add to cart and one checkout to each side (after one of each to warm up) and compares
 * the statements PostgreSQL logged for them. A difference means the baseline no longer runs what
 * the server runs: the run goes on, but says so loudly.
 */
async function auditStatements(
  file: string,
  database: string,
  targets: { server: Child; baseline: Child },
  freshCart: (templates: string[]) => Promise<string>,
  store: { add: string; checkout: string; variant: string },
): Promise<Record<string, Audited> | null> {
  const out: Record<string, Audited> = {}
  const short = (s: string) => (s.length > 160 ? `${s.slice(0, 157)}...` : s)
  for (const scenario of ['add-to-cart', 'checkout'] as const) {
    const lists = { server: [] as string[], baseline: [] as string[] }
    for (const who of ['server', 'baseline'] as const) {
      const prefix = who === 'server' ? '/store/carts' : '/carts'
      // Until two requests in a row ran the same statements: the first of a kind may load caches,
      // and a cache that expires now and then (tax data, every 5 s) may refresh in one of them.
      let previous: string[] | undefined
      for (let attempt = 0; attempt < 5; attempt++) {
        const cart = await freshCart([scenario === 'add-to-cart' ? store.add : store.checkout])
        await sleep(200)
        const from = statSync(file).size
        const response = await fetch(
          `${targets[who].url}${prefix}/${cart}/${scenario === 'add-to-cart' ? 'lines' : 'complete'}`,
          {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'idempotency-key': `audit-${randomBytes(8).toString('hex')}`,
            },
            body:
              scenario === 'add-to-cart'
                ? JSON.stringify({ variant_id: store.variant, quantity: 1 })
                : PAYMENT_BODY,
            signal: AbortSignal.timeout(30_000),
          },
        )
        const body = await response.text()
        if (response.status !== (scenario === 'add-to-cart' ? 200 : 201)) {
          throw new BenchError(
            `statement audit: ${who} answered ${response.status} to ${scenario}: ${body.slice(0, 500)}`,
          )
        }
        await sleep(300)
        lists[who] = loggedStatements(file, from, database)
        if (previous && previous.join('\n') === lists[who].join('\n')) break
        previous = lists[who]
      }
    }
    if (lists.server.length === 0) {
      log(`statement audit: no statements found in ${file} (does log_line_prefix show the pid as [%p]?)`)
      return null
    }
    const match =
      lists.server.length === lists.baseline.length && lists.server.every((s, i) => s === lists.baseline[i])
    const transactions = lists.server.filter((s) => s === 'begin').length
    log(
      `statement audit, ${scenario}: server ${lists.server.length} statements (${transactions} transactions), ` +
        `baseline ${lists.baseline.length}: ${match ? 'the same statements in the same order' : 'DIFFERENT'}`,
    )
    if (!match) {
      for (const line of diff(lists.server, lists.baseline)) {
        if (!line.startsWith(' ')) log(`  ${short(line)}  (- server only, + baseline only)`)
      }
      log(`warning: the ${scenario} baseline is out of date with the server; update bench/checkout.ts`)
    }
    out[scenario] = { server: lists.server.map(short), baseline: lists.baseline.map(short), match }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// The harness.

function positive(name: string, fallback: number, max: number): number {
  const raw = process.env[name]?.trim()
  if (!raw) return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new BenchError(`${name}=${raw} is invalid: expected a whole number from 1 to ${max}`)
  }
  return value
}

function scenariosFromEnv(): ScenarioName[] {
  const raw = process.env.BENCH_SCENARIOS?.trim()
  if (!raw) return SCENARIOS
  const names = raw.split(',').map((s) => s.trim())
  for (const name of names) {
    if (!SCENARIOS.includes(name as ScenarioName)) {
      throw new BenchError(`BENCH_SCENARIOS names ${name}; known: ${SCENARIOS.join(', ')}`)
    }
  }
  return SCENARIOS.filter((s) => names.includes(s))
}

// Cleanup steps run last-registered first, on success, failure, interrupt and watchdog alike.
const cleanups: Array<() => Promise<unknown>> = []
let cleaning: Promise<void> | undefined
let running: autocannon.Instance | undefined
let aborted = false

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    running?.stop()
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

function abort(reason: string, code: number): void {
  aborted = true
  console.error(`\nbench: ${reason}; cleaning up`)
  void cleanup().finally(() => process.exit(code))
}

function log(message: string): void {
  console.error(`bench: ${message}`)
}

/** One benchmark per machine at a time (the lock `npm run bench` takes too). */
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

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Waits up to QUIET_WAIT_MS for a second in which other processes leave the machine alone. */
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

/** The commit measured, `+dirty` when src/ or the dependencies differ from it. */
function revision(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = git('status', '--porcelain', '--', 'src', 'package.json', 'package-lock.json') !== ''
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? '+dirty' : ''}`
  } catch {
    return 'unknown'
  }
}

async function call(child: Child, method: string, path: string, body?: unknown, token?: string) {
  const response = await fetch(`${child.url}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(60_000),
  })
  const text = await response.text()
  if (!response.ok)
    throw new BenchError(`${method} ${path} answered ${response.status}: ${text.slice(0, 500)}`)
  return JSON.parse(text)
}

/** Runs `work` over the items with `width` requests in flight. */
async function inParallel<T, R>(items: T[], width: number, work: (item: T, i: number) => Promise<R>) {
  const out: R[] = new Array(items.length)
  let next = 0
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await work(items[i]!, i)
    }),
  )
  return out
}

interface Store {
  region: string
  shipping: string
  variants: string[]
  hot: string
}

/** The store, made through the admin API as an operator would. */
async function createStore(server: Child, token: string): Promise<Store> {
  const admin = (method: string, path: string, body: unknown) => call(server, method, path, body, token)
  await admin('PATCH', '/admin/tax/settings', { origin_country: 'DE' })
  const region = await admin('POST', '/admin/regions', {
    name: 'Europe',
    currency: 'EUR',
    prices_include_tax: true,
    countries: ['DE', 'FR', 'AT'],
  })
  const sizes = Array.from({ length: 20 }, (_, i) => `S${i + 1}`)
  const colours = Array.from({ length: VARIANTS / 20 }, (_, i) => `C${i + 1}`)
  const product = await admin('POST', '/admin/products', {
    handle: 'bench-tee',
    title: 'Bench tee',
    status: 'published',
    options: [
      { name: 'Size', values: sizes },
      { name: 'Colour', values: colours },
    ],
    variants: colours.flatMap((colour, c) =>
      sizes.map((size, s) => ({
        sku: `BENCH-${c}-${s}`,
        options: { Size: size, Colour: colour },
        weight_g: 300,
        prices: [{ currency: 'EUR', amount: 1490 + ((c * 20 + s) % 40) * 50 }],
      })),
    ),
  })
  const hotProduct = await admin('POST', '/admin/products', {
    handle: 'bench-hot',
    title: 'Bench bestseller',
    status: 'published',
    variants: [{ sku: 'BENCH-HOT', weight_g: 300, prices: [{ currency: 'EUR', amount: 1990 }] }],
  })
  const variants = (product.variants as Array<{ id: string }>).map((v) => v.id)
  const hot = (hotProduct.variants as Array<{ id: string }>)[0]!.id
  const location = await admin('POST', '/admin/inventory/locations', {
    code: 'bench',
    name: 'Bench warehouse',
    address: { country_code: 'DE' },
  })
  await admin('POST', '/admin/inventory/receipts', {
    location_id: location.id,
    lines: [
      ...variants.map((variant_id) => ({ variant_id, quantity: STOCK_PER_VARIANT })),
      { variant_id: hot, quantity: HOT_STOCK },
    ],
  })
  const shipping = await admin('POST', '/admin/shipping-options', {
    region_id: region.id,
    name: 'Standard',
    price_type: 'flat',
    amount: 490,
  })
  return { region: region.id, shipping: shipping.id, variants, hot }
}

/** A cart made through the store API, ready to check out (or, without a variant, empty). */
async function templateCart(server: Child, store: Store, variant: string | undefined, n: number) {
  const cart = await call(server, 'POST', '/store/carts', {
    region_id: store.region,
    email: n === 0 ? EMAIL : `shopper+${n}@example.com`,
    ...(variant ? { lines: [{ variant_id: variant, quantity: 1 }] } : {}),
  })
  await call(server, 'PATCH', `/store/carts/${cart.id}`, {
    shipping_address: BERLIN,
    shipping_option_id: store.shipping,
  })
  return cart.id as string
}

/** Copies of API-made carts: one INSERT … SELECT of every column but id and the timestamps. */
class CartPool {
  readonly ids: string[] = []
  next = 0
  ranOut = false
  readonly #client: pg.Client
  readonly #templates: string[]
  readonly #columns: string[]

  constructor(client: pg.Client, templates: string[], columns: string[]) {
    this.#client = client
    this.#templates = templates
    this.#columns = columns
  }

  get left(): number {
    return this.ids.length - this.next
  }

  /** Makes sure at least `count` unused carts are left. */
  async topUp(count: number): Promise<void> {
    const missing = count - this.left
    if (missing <= 0) return
    const cols = this.#columns.map((c) => `"${c}"`)
    for (let done = 0; done < missing; done += 5_000) {
      const ids = Array.from(
        { length: Math.min(5_000, missing - done) },
        () => `cart_${ulid().toLowerCase()}`,
      )
      const templates = ids.map((_, i) => this.#templates[(this.ids.length + i) % this.#templates.length]!)
      await this.#client.query(
        `insert into carts (id, ${cols.join(', ')})
         select n.id, ${cols.map((c) => `c.${c}`).join(', ')}
         from unnest($1::text[], $2::text[]) as n (id, template) join carts c on c.id = n.template`,
        [ids, templates],
      )
      this.ids.push(...ids)
    }
    await this.#client.query('analyze carts')
  }

  /** The next unused cart; when none is left, the last one again (and ranOut is set). */
  take(): string {
    if (this.next < this.ids.length) return this.ids[this.next++]!
    this.ranOut = true
    return this.ids.at(-1)!
  }
}

interface Fired {
  ok: number
  requests: number
  rps: number
  p50_ms: number
  p99_ms: number
  errors: number
  timeouts: number
  /** `<status> <problem code>` of every answer that was not the expected status, with counts. */
  unexpected: Record<string, number>
}

/** Loads `url` with a request made per call of `next`, counting answers other than `expected`. */
function fire(
  url: string,
  durationS: number,
  next: () => { method: 'POST'; path: string; headers: Record<string, string>; body: string },
  expected: number,
): Promise<Fired> {
  const unexpected: Record<string, number> = {}
  return new Promise((done, fail) => {
    running = autocannon(
      {
        url,
        connections: CONNECTIONS,
        pipelining: 1,
        duration: durationS,
        timeout: 10,
        requests: [
          {
            setupRequest: (request) => ({ ...request, ...next() }),
            onResponse: (status, body) => {
              if (status === expected) return
              const code = /"code"\s*:\s*"([^"]+)"/.exec(body)?.[1] ?? '-'
              const key = `${status} ${code}`
              unexpected[key] = (unexpected[key] ?? 0) + 1
            },
          },
        ],
      },
      (error, result) => {
        running = undefined
        if (error) {
          fail(error)
          return
        }
        const ok = result.statusCodeStats?.[String(expected) as '200']?.count ?? 0
        done({
          ok,
          requests: result.requests.total,
          rps: result.requests.average,
          p50_ms: result.latency.p50,
          p99_ms: result.latency.p99,
          errors: result.errors,
          timeouts: result.timeouts,
          unexpected,
        })
      },
    )
  })
}

/** Samples what the database's active backends wait on, several times a second. */
function sampleWaits(client: pg.Client, database: string) {
  const counts: Record<string, number> = {}
  let samples = 0
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      const { rows } = await client.query(
        `select case when state = 'active' then coalesce(wait_event_type || ':' || wait_event, 'CPU')
                     else state end
                  || case when wait_event_type = 'Lock' then ' in '
                     when state = 'idle in transaction' then ' after ' else '' end
                  || case when wait_event_type = 'Lock' or state = 'idle in transaction'
                     then left(regexp_replace(query, '\\s+', ' ', 'g'), 48) else '' end as what,
                count(*)::int as n
         from pg_stat_activity
         where datname = $1 and pid <> pg_backend_pid() and state <> 'idle' and backend_type = 'client backend'
         group by 1`,
        [database],
      )
      samples++
      for (const row of rows) counts[row.what] = (counts[row.what] ?? 0) + row.n
      await sleep(200)
    }
  })()
  return async () => {
    stopped = true
    await loop
    const average: Record<string, number> = {}
    for (const [what, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
      average[what] = Math.round((n / Math.max(1, samples)) * 100) / 100
    }
    return average
  }
}

/**
 * Waits (at most 30 s) until no session of the database is running a statement or holding a
 * transaction open: the requests a run left in flight when it stopped have finished.
 */
async function waitForIdleDatabase(client: pg.Client, database: string): Promise<number> {
  const deadline = performance.now() + 30_000
  for (;;) {
    const { rows } = await client.query(
      `select count(*)::int as n from pg_stat_activity
       where datname = $1 and pid <> pg_backend_pid() and state <> 'idle' and backend_type = 'client backend'`,
      [database],
    )
    if (rows[0].n === 0 || performance.now() > deadline) return rows[0].n
    await sleep(100)
  }
}

interface Measurement {
  target: 'server' | 'baseline'
  /** Answers with the expected status (200 for add to cart, 201 for checkout) per second. */
  ok_per_second: number
  /** All answers per second, whatever their status. */
  rps: number
  p50_ms: number
  p99_ms: number
  ok: number
  requests: number
  non_ok: number
  errors: number
  timeouts: number
  unexpected: Record<string, number>
  /** CPU µs the target and the database's backends spent per expected answer, and PostgreSQL's part. */
  cpu_us_per_op: number | null
  db_cpu_us_per_op: number | null
  other_cpu_cores: number | null
  /** Average number of the database's non-idle backends per state or wait event, sampled. */
  db_backends: Record<string, number>
  /** Answers other than the expected status in the warm-up, which the figures leave out. */
  warmup_unexpected?: Record<string, number>
  /** Ready carts ran out and some requests named a used one (checkout only). */
  ran_out_of_carts?: boolean
}

interface ScenarioResult {
  name: ScenarioName
  target: { ops_per_second: number; p99_ms: number } | null
  met: boolean | null
  status: 'ok' | 'below-target' | 'failed' | 'no-target'
  ratio: number
  server: Measurement
  baseline: Measurement
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

async function main(): Promise<number> {
  const serverUrl = process.env.BENCH_DATABASE_URL?.trim() || DEFAULT_DATABASE_URL
  const durationS = positive('BENCH_DURATION', 10, 3600)
  const pool = positive('BENCH_POOL', 10, 500)
  positive('BENCH_CONNECTIONS', DEFAULT_CONNECTIONS, 1000)
  const scenarios = scenariosFromEnv()
  const logLevel = process.env.BENCH_LOG_LEVEL?.trim() || undefined
  const cpuProfDir = process.env.BENCH_CPU_PROF?.trim()
    ? resolve(process.env.BENCH_CPU_PROF.trim())
    : undefined
  const exploratory = Boolean(logLevel || cpuProfDir)

  const budgetS = 600 + scenarios.length * 2 * (WARMUP_S + durationS + QUIET_WAIT_MS / 1000 + 20)
  setTimeout(() => abort(`still running after ${budgetS} s (watchdog)`, 124), budgetS * 1000).unref()

  takeMachineLock()
  const tmp = mkdtempSync(join(tmpdir(), 'sw-bench-checkout-'))
  cleanups.push(() => rm(tmp, { recursive: true, force: true }))
  const date = new Date().toISOString()
  const database = await createBenchDatabase(serverUrl)
  cleanups.push(() => database.drop())
  log(
    `created database ${database.name}; ${durationS} s per measurement, pool ${pool}, work directory ${tmp}`,
  )
  // The harness's own sessions open before statement logging is switched on, so they never log.
  const client = new pg.Client({ connectionString: database.url })
  client.on('error', (error) => log(`database connection lost: ${error.message}`))
  await client.connect()
  cleanups.push(() => client.end())
  const sampler = new pg.Client({ connectionString: database.url })
  sampler.on('error', (error) => log(`database connection lost: ${error.message}`))
  await sampler.connect()
  cleanups.push(() => sampler.end())
  const pgLog = await statementLog(client)
  if (pgLog) {
    // Sessions opened from now on log every statement, until the reset below: the first server and
    // baseline (setup and the audit) log, the measured ones, started after the reset, do not.
    await client.query(`alter database ${database.name} set log_min_duration_statement = 0`)
  }

  const adminToken = randomBytes(32).toString('base64url')
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true })
  const serverEnv = {
    HOST,
    DATA_DIR: join(tmp, 'data'),
    NODE_ENV: 'production',
    APP_SECRET: randomBytes(32).toString('base64url'),
    ADMIN_TOKEN: adminToken,
    CORS_ORIGINS: 'http://localhost',
    RATE_LIMIT_PER_MINUTE: '1000000',
    SEED_DEMO: 'false',
    RUN_WORKERS: 'false',
    // Off by default in production (test cards place paid orders); the benchmark pays with it.
    PAYMENT_TEST_GATEWAY: 'true',
    DATABASE_URL: database.url,
    DATABASE_POOL_MAX: String(pool),
    ...(logLevel ? { LOG_LEVEL: logLevel } : {}),
  }
  let starts = 0
  const startServer = async (profile: boolean): Promise<Child> => {
    const port = await freePort()
    const child = spawnNode({
      name: 'server',
      args: [...(profile && cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []), 'src/main.ts'],
      env: { ...serverEnv, PORT: String(port) },
      port,
      logFile: join(tmp, `server-${++starts}.log`),
      cwd: ROOT,
    })
    cleanups.push(() => stopChild(child))
    await waitForOk(child, '/readyz', READY_TIMEOUT_MS)
    return child
  }
  const startBaseline = async (): Promise<Child> => {
    const port = await freePort()
    const child = spawnNode({
      name: 'baseline',
      args: ['bench/checkout.ts', '--baseline'],
      env: { HOST, PORT: String(port), BASELINE_DATABASE_URL: database.url, BASELINE_POOL: String(pool) },
      port,
      logFile: join(tmp, `baseline-${starts}.log`),
      cwd: ROOT,
    })
    cleanups.push(() => stopChild(child))
    await waitForReachable(child)
    return child
  }

  let server = await startServer(!pgLog)
  const measured = revision()
  log('server ready; creating the store through the admin API')
  let started = performance.now()
  const store = await createStore(server, adminToken)
  log(`store: ${VARIANTS} variants × ${fmt(STOCK_PER_VARIANT)} units, a hot SKU with ${fmt(HOT_STOCK)}`)
  const addTemplate = await templateCart(server, store, undefined, 0)
  const spreadTemplates = await inParallel(store.variants, 8, (variant, i) =>
    templateCart(server, store, variant, i + 1),
  )
  const hotTemplate = await templateCart(server, store, store.hot, VARIANTS + 1)
  const columns = (
    await client.query(
      `select column_name from information_schema.columns
       where table_schema = current_schema() and table_name = 'carts'
         and column_name not in ('id', 'created_at', 'updated_at')
       order by ordinal_position`,
    )
  ).rows.map((r) => r.column_name as string)
  const setupSeconds = Math.round((performance.now() - started) / 100) / 10
  log(`store and ${VARIANTS + 2} template carts made through the API in ${setupSeconds} s`)
  let baseline = await startBaseline()

  let audit: Record<string, Audited> | null = null
  if (pgLog) {
    audit = await auditStatements(
      pgLog,
      database.name,
      { server, baseline },
      async (templates) => {
        const carts = new CartPool(client, templates, columns)
        await carts.topUp(1)
        return carts.take()
      },
      { add: addTemplate, checkout: spreadTemplates[0]!, variant: store.variants[0]! },
    )
    await client.query(`alter database ${database.name} reset log_min_duration_statement`)
    await stopChild(server)
    await stopChild(baseline)
    server = await startServer(true)
    baseline = await startBaseline()
    log('restarted server and baseline with statement logging off')
  } else {
    log('statement audit skipped: set BENCH_PG_LOG to the PostgreSQL server log to compare statements')
  }

  const pinned = process.env.BENCH_PIN?.trim() === 'false' ? undefined : pinLoadGenerator()
  if (pinned) {
    for (const child of [server, baseline]) pinProcess(child.process.pid!, pinned)
    log(`pinned: autocannon on CPU 0, server and baseline on CPU ${pinned}; PostgreSQL unpinned`)
  }

  const measure = async (
    scenario: ScenarioName,
    target: Child,
    who: 'server' | 'baseline',
    expected: number,
    next: () => { method: 'POST'; path: string; headers: Record<string, string>; body: string },
    beforeMeasuring?: (warmupRate: number) => Promise<void>,
  ): Promise<Measurement> => {
    const scope = { targetPid: target.process.pid ?? 0, database: database.name }
    // Each side starts from the same state: the dead rows the previous measurement left vacuumed
    // away and fresh statistics, as autovacuum keeps a live database (it lags a 10 s burst).
    await client.query('vacuum analyze')
    await waitForQuiet(scope)
    log(`${scenario}: warming up ${who} (${WARMUP_S} s)`)
    const warm = await fire(target.url, WARMUP_S, next, expected)
    if (target.hasExited) throw new BenchError(`${target.name} died in the warm-up:\n${logTail(target)}`)
    if (warm.ok === 0) {
      // Slow enough that nothing came back in the warm-up (or nothing right): measure anyway, and say so.
      log(
        `warning: ${scenario}: ${who} answered no ${expected} in the warm-up ` +
          `(${JSON.stringify(warm.unexpected)}, ${warm.errors} errors, ${warm.timeouts} timeouts)`,
      )
    }
    // The warm-up's requests still in flight would otherwise overlap the measurement's first ones.
    await waitForIdleDatabase(client, database.name)
    await beforeMeasuring?.(warm.ok / WARMUP_S)
    log(`${scenario}: measuring ${who} (${durationS} s)`)
    const stopSampling = sampleWaits(sampler, database.name)
    const before = await cpuSnapshot(scope)
    const run = await fire(target.url, durationS, next, expected)
    const cpu = cpuUse(before, await cpuSnapshot(scope))
    const waits = await stopSampling()
    if (target.hasExited) throw new BenchError(`${target.name} died under load:\n${logTail(target)}`)
    const perOp = (seconds: number | undefined) =>
      seconds !== undefined && run.ok > 0 ? Math.round((seconds * 1e6) / run.ok) : null
    const m: Measurement = {
      target: who,
      ok_per_second: Math.round(run.ok / durationS),
      rps: Math.round(run.rps),
      p50_ms: run.p50_ms,
      p99_ms: run.p99_ms,
      ok: run.ok,
      requests: run.requests,
      non_ok: run.requests - run.ok,
      errors: run.errors,
      timeouts: run.timeouts,
      unexpected: run.unexpected,
      cpu_us_per_op: perOp(cpu ? cpu.targetSeconds + cpu.databaseSeconds : undefined),
      db_cpu_us_per_op: perOp(cpu?.databaseSeconds),
      other_cpu_cores: cpu?.otherCores ?? null,
      db_backends: waits,
      ...(Object.keys(warm.unexpected).length ? { warmup_unexpected: warm.unexpected } : {}),
    }
    log(
      `${scenario}: ${who} ${fmt(m.ok_per_second)}/s, p50 ${m.p50_ms} ms, p99 ${m.p99_ms} ms, ` +
        `${m.non_ok} not ${expected}${m.non_ok ? ` ${JSON.stringify(m.unexpected)}` : ''}, ${m.errors} errors, ` +
        `CPU ${m.cpu_us_per_op ?? '?'} µs/op (database ${m.db_cpu_us_per_op ?? '?'}); ` +
        `busy database sessions ${JSON.stringify(m.db_backends)}`,
    )
    if ((m.other_cpu_cores ?? 0) > OTHER_CPU_WARNING) {
      log(`warning: other processes kept ${m.other_cpu_cores} cores busy meanwhile; figures disturbed`)
    }
    // The requests in flight when autocannon stopped still run: let them finish before going on.
    const busy = await waitForIdleDatabase(client, database.name)
    if (busy) log(`warning: ${busy} database sessions still busy 30 s after the run`)
    await sleep(500)
    return m
  }

  const results: ScenarioResult[] = []
  const checkoutCarts: Record<string, string[]> = {}
  for (const scenario of scenarios) {
    let server_: Measurement
    let baseline_: Measurement
    if (scenario === 'add-to-cart') {
      const addLoad = async (target: Child, who: 'server' | 'baseline', prefix: string) => {
        const carts = new CartPool(client, [addTemplate], columns)
        await carts.topUp(ADD_CARTS)
        let i = 0
        return measure(scenario, target, who, 200, () => {
          const cart = i % ADD_CARTS
          const round = Math.floor(i / ADD_CARTS)
          i++
          const variant =
            store.variants[(cart * LINES_PER_ADD_CART + (round % LINES_PER_ADD_CART)) % ADD_VARIANTS]!
          return {
            method: 'POST',
            path: `${prefix}/${carts.ids[cart]}/lines`,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ variant_id: variant, quantity: 1 }),
          }
        })
      }
      server_ = await addLoad(server, 'server', '/store/carts')
      baseline_ = await addLoad(baseline, 'baseline', '/carts')
    } else {
      const templates = scenario === 'checkout' ? spreadTemplates : [hotTemplate]
      const checkoutLoad = async (target: Child, who: 'server' | 'baseline', prefix: string) => {
        const carts = new CartPool(client, templates, columns)
        started = performance.now()
        await carts.topUp(CHECKOUT_WARMUP_CARTS)
        log(
          `${scenario}: ${fmt(CHECKOUT_WARMUP_CARTS)} ready carts copied in ${Math.round(performance.now() - started)} ms`,
        )
        const run = randomBytes(4).toString('hex')
        let n = 0
        const m = await measure(
          scenario,
          target,
          who,
          201,
          () => ({
            method: 'POST',
            path: `${prefix}/${carts.take()}/complete`,
            headers: { 'content-type': 'application/json', 'idempotency-key': `bench-${run}-${n++}` },
            body: PAYMENT_BODY,
          }),
          async (rate) => {
            const wanted = Math.ceil(Math.max(rate, 100) * durationS * CHECKOUT_MARGIN)
            await carts.topUp(wanted)
            log(`${scenario}: warm-up ran ${fmt(rate)}/s; ${fmt(carts.left)} ready carts for the measurement`)
          },
        )
        m.ran_out_of_carts = carts.ranOut
        if (carts.ranOut) log(`warning: ${scenario} ${who} ran out of ready carts; some requests reused one`)
        checkoutCarts[`${scenario}/${who}`] = carts.ids.slice(0, carts.next)
        return m
      }
      server_ = await checkoutLoad(server, 'server', '/store/carts')
      baseline_ = await checkoutLoad(baseline, 'baseline', '/carts')
    }
    const target = scenario === 'checkout-hot-sku' ? null : TARGETS[scenario]
    const failed = server_.non_ok > 0 || server_.errors > 0 || baseline_.non_ok > 0 || baseline_.errors > 0
    const met = target
      ? server_.ok_per_second >= target.ops_per_second && server_.p99_ms < target.p99_ms
      : null
    results.push({
      name: scenario,
      target,
      met,
      status: failed ? 'failed' : met === null ? 'no-target' : met ? 'ok' : 'below-target',
      ratio:
        baseline_.ok_per_second > 0
          ? Math.round((server_.ok_per_second / baseline_.ok_per_second) * 1000) / 1000
          : 0,
      server: server_,
      baseline: baseline_,
    })
  }

  // What the checkouts left behind: every cart a request took should be completed, none stuck.
  const cartStates: Record<string, Record<string, number>> = {}
  for (const [key, ids] of Object.entries(checkoutCarts)) {
    const { rows } = await client.query(
      'select status, count(*)::int as n from carts where id = any($1::text[]) group by status order by status',
      [ids],
    )
    cartStates[key] = Object.fromEntries(rows.map((r) => [r.status, r.n]))
  }
  // Stopped first: the server's logger buffers, and its last lines arrive on exit.
  await stopChild(server)
  const serverLog = serverLogSummary(server)

  printTable(results)
  for (const [key, states] of Object.entries(cartStates))
    log(`carts taken by ${key}: ${JSON.stringify(states)}`)
  log(`the measured server's log: answers ${JSON.stringify(serverLog.answers)}`)
  if (Object.keys(serverLog.warnings).length)
    log(`  warnings and errors: ${JSON.stringify(serverLog.warnings)}`)

  const result = {
    kind: 'checkout-benchmark',
    date,
    database: 'postgres',
    connections: CONNECTIONS,
    pipelining: 1,
    pool,
    duration_s: durationS,
    warmup_s: WARMUP_S,
    catalog: {
      variants: VARIANTS,
      stock_per_variant: STOCK_PER_VARIANT,
      hot_sku_stock: HOT_STOCK,
      add_to_cart_carts: ADD_CARTS,
      add_to_cart_variants: ADD_VARIANTS,
      lines_per_add_to_cart_cart: LINES_PER_ADD_CART,
    },
    ready_carts:
      'copies of carts made through the store API (POST /store/carts, PATCH address and shipping option), ' +
      'one INSERT … SELECT of every column but id and the timestamps',
    setup_seconds: setupSeconds,
    statement_audit: audit,
    scenarios: results,
    carts_after_checkout: cartStates,
    server_log: serverLog,
    cpu_pinning: pinned ? `autocannon on CPU 0; server and baseline on CPU ${pinned}` : 'none',
    git_revision: measured,
    node_version: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model.trim() ?? 'unknown',
  }
  if (exploratory) {
    log('BENCH_LOG_LEVEL or BENCH_CPU_PROF changes the server: figures not written')
  } else {
    mkdirSync(RESULTS_DIR, { recursive: true })
    // Another concurrency is filed beside the issue's, and leaves the docs' block to it.
    const other = CONNECTIONS === DEFAULT_CONNECTIONS ? '' : `-c${CONNECTIONS}`
    const file = join(RESULTS_DIR, `checkout-${date.slice(0, 10)}${other}.json`)
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`)
    log(`wrote ${file}`)
    if (!other) {
      updateDocs(result)
      log(`updated ${DOC_FILE}`)
    }
  }
  return results.some((r) => r.status === 'failed') ? 1 : 0
}

/** The baseline answers 404 on / once it listens. */
async function waitForReachable(child: Child): Promise<void> {
  const deadline = performance.now() + READY_TIMEOUT_MS
  while (performance.now() < deadline) {
    if (child.hasExited) throw new BenchError(`${child.name} exited:\n${logTail(child)}`)
    try {
      await (await fetch(`${child.url}/`, { signal: AbortSignal.timeout(2_000) })).arrayBuffer()
      return
    } catch {
      await sleep(50)
    }
  }
  throw new BenchError(`${child.name} did not listen within ${READY_TIMEOUT_MS} ms:\n${logTail(child)}`)
}

/**
 * What the measured server's log says (one line per request at the default level): answers by
 * route and status, including those autocannon never saw (sent before a run stopped), and its
 * warnings and errors by message.
 */
function serverLogSummary(child: Child): {
  answers: Record<string, number>
  warnings: Record<string, number>
  /** The first line of each kind of warning or error, shortened. */
  examples: Record<string, string>
  errors: number
} {
  const answers: Record<string, number> = {}
  const warnings: Record<string, number> = {}
  const examples: Record<string, string> = {}
  let errors = 0
  let text = ''
  try {
    text = readFileSync(child.logFile, 'utf8')
  } catch {
    // No log: nothing to report.
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    let entry: {
      level?: number
      msg?: string
      url?: string
      status?: number
      method?: string
      err?: { code?: string }
    }
    try {
      entry = JSON.parse(line)
    } catch {
      continue
    }
    if (entry.msg === 'request' && entry.url) {
      const route = entry.url.replace(/cart_[0-9a-z]+/, ':id')
      const key = `${entry.method} ${route} ${entry.status}`
      answers[key] = (answers[key] ?? 0) + 1
    }
    if ((entry.level ?? 0) >= 40) {
      const key =
        `${entry.level === 40 ? 'warn' : 'error'}: ${entry.err?.code ? `${entry.err.code} ` : ''}${entry.msg ?? ''}`.slice(
          0,
          160,
        )
      warnings[key] = (warnings[key] ?? 0) + 1
      examples[key] ??= line.slice(0, 1500)
      if ((entry.level ?? 0) >= 50) errors++
    }
  }
  return { answers, warnings, examples, errors }
}

const LABELS: Record<ScenarioName, string> = {
  'add-to-cart': 'add to cart',
  checkout: 'checkout, 400 SKUs',
  'checkout-hot-sku': 'checkout, one hot SKU',
}

function targetText(r: ScenarioResult): string {
  return r.target ? `>= ${fmt(r.target.ops_per_second)}/s, p99 < ${r.target.p99_ms} ms` : 'none'
}

function resultText(r: ScenarioResult): string {
  const unexpected = r.server.non_ok + r.baseline.non_ok
  if (r.status === 'failed') {
    const met = r.met === null ? '' : r.met ? 'met, but ' : 'not met, and '
    return `${met}FAILED (${unexpected} unexpected answers, ${r.server.errors + r.baseline.errors} errors)`
  }
  return r.status === 'ok' ? 'met' : r.status === 'below-target' ? 'NOT met' : '-'
}

function printTable(results: ScenarioResult[]): void {
  const rows = [
    [
      'scenario',
      'ok/s',
      'p50 ms',
      'p99 ms',
      'non-2xx',
      'cpu us/op (db)',
      'baseline ok/s',
      'baseline p50',
      'baseline p99',
      'baseline non-2xx',
      'ratio',
      'target',
      'result',
    ],
    ...results.map((r) => [
      LABELS[r.name],
      fmt(r.server.ok_per_second),
      fmt(r.server.p50_ms, 1),
      fmt(r.server.p99_ms, 1),
      String(r.server.non_ok),
      `${r.server.cpu_us_per_op ?? '?'} (${r.server.db_cpu_us_per_op ?? '?'})`,
      fmt(r.baseline.ok_per_second),
      fmt(r.baseline.p50_ms, 1),
      fmt(r.baseline.p99_ms, 1),
      String(r.baseline.non_ok),
      r.ratio.toFixed(3),
      targetText(r),
      resultText(r),
    ]),
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  const line = (row: string[]) =>
    row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')
  console.log(`\n${line(rows[0]!)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`)
  for (const row of rows.slice(1)) console.log(line(row))
  for (const r of results) {
    for (const m of [r.server, r.baseline]) {
      if (m.non_ok)
        console.log(`${LABELS[r.name]}, ${m.target}: unexpected answers ${JSON.stringify(m.unexpected)}`)
    }
  }
}

const START = '<!-- checkout-results:start -->'
const END = '<!-- checkout-results:end -->'

/** Replaces the generated part of the "Carts and checkout" section (appending the section if missing). */
function updateDocs(result: {
  date: string
  git_revision: string
  duration_s: number
  pool: number
  connections: number
  node_version: string
  cpus: number
  cpu_model: string
  cpu_pinning: string
  scenarios: ScenarioResult[]
  statement_audit: Record<string, Audited> | null
  carts_after_checkout: Record<string, Record<string, number>>
  server_log: { answers: Record<string, number>; warnings: Record<string, number> }
}): void {
  const ms = (n: number) => (n >= 100 ? fmt(n) : String(Math.round(n * 10) / 10))
  const unexpected = (m: Measurement) => {
    if (m.non_ok === 0 && m.errors === 0 && m.timeouts === 0) return '0'
    const codes = Object.entries(m.unexpected).map(([k, n]) => `${n} × ${k}`)
    if (m.errors) codes.push(`${m.errors} errors`)
    if (m.timeouts) codes.push(`${m.timeouts} timeouts`)
    return `${m.non_ok} (${codes.join(', ')})`
  }
  const verdict = (r: ScenarioResult) =>
    r.status === 'ok'
      ? 'met'
      : r.status === 'below-target'
        ? '**not met**'
        : r.status === 'failed'
          ? `**failed**${r.met ? ' (target met)' : r.met === false ? ' (target not met)' : ''}`
          : 'n/a'
  const other = (r: ScenarioResult) =>
    `${r.server.other_cpu_cores ?? 'n/a'} / ${r.baseline.other_cpu_cores ?? 'n/a'}`
  const audit = result.statement_audit
  const lines = [
    `Latest run: ${result.date.slice(0, 10)} (${result.git_revision}), ${result.connections} connections, ` +
      `${result.duration_s} s per measurement after a ${WARMUP_S} s warm-up, pool of ${result.pool} on both sides; ` +
      `Node ${result.node_version}; ${result.cpus} × ${result.cpu_model}; ${result.cpu_pinning}.`,
    '',
    '| Scenario | ok/s | p50 ms | p99 ms | Unexpected answers | CPU µs/op (db) | Baseline ok/s | Baseline p50 ms | Baseline p99 ms | Baseline unexpected | Baseline CPU µs/op (db) | Ratio | Target | Result | Other CPU |',
    '| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- | ---: |',
    ...result.scenarios.map(
      (r) =>
        `| ${LABELS[r.name]} | ${fmt(r.server.ok_per_second)} | ${ms(r.server.p50_ms)} | ${ms(r.server.p99_ms)} | ` +
        `${unexpected(r.server)} | ${r.server.cpu_us_per_op ?? 'n/a'} (${r.server.db_cpu_us_per_op ?? 'n/a'}) | ` +
        `${fmt(r.baseline.ok_per_second)} | ${ms(r.baseline.p50_ms)} | ${ms(r.baseline.p99_ms)} | ` +
        `${unexpected(r.baseline)} | ${r.baseline.cpu_us_per_op ?? 'n/a'} (${r.baseline.db_cpu_us_per_op ?? 'n/a'}) | ` +
        `${r.ratio.toFixed(3)} | ${r.target ? `≥ ${fmt(r.target.ops_per_second)}/s, p99 < ${r.target.p99_ms} ms` : 'none'} | ` +
        `${verdict(r)} | ${other(r)} |`,
    ),
    '',
    '"ok/s" counts only 200s (add to cart) and 201s (checkout: an order placed and its payment captured) ' +
      'in the measured seconds; latencies cover every answer. "Other CPU" is the cores other processes ' +
      'kept busy meanwhile (server / baseline measurement): above about 0.15 the machine was shared and ' +
      'the figures are disturbed.',
    '',
    audit
      ? `Statement audit: ${Object.entries(audit)
          .map(
            ([name, a]) =>
              `${name} ${a.server.length} statements on the server (${a.server.filter((x) => x === 'begin').length} ` +
              `transactions), ${a.baseline.length} on the baseline, ${a.match ? 'the same in the same order' : '**different**'}`,
          )
          .join('; ')}.`
      : 'Statement audit: not run (PostgreSQL log not readable).',
    '',
    'Busy database sessions during each server measurement, on average (sampled from `pg_stat_activity`; ' +
      '"in …" is the statement a lock wait is in, "after …" the last statement of a transaction waiting for the node):',
    '',
    ...result.scenarios.map(
      (r) =>
        `- ${LABELS[r.name]}: ${
          Object.entries(r.server.db_backends)
            .slice(0, 4)
            .map(([what, n]) => `${n} \`${what}\``)
            .join(', ') || 'n/a'
        }`,
    ),
    '',
    `Carts the checkout requests took, by status once the database was idle again: ${Object.entries(
      result.carts_after_checkout,
    )
      .map(([k, v]) => `${k} ${JSON.stringify(v)}`)
      .join('; ')} (\`active\`: built into a request autocannon never sent before it stopped; ` +
      '`completing`: a checkout that failed after its start, left to the recovery job). ' +
      `The measured server logged ${Object.entries(result.server_log.answers)
        .map(([k, n]) => `${fmt(n)} × \`${k}\``)
        .join(', ')}${
        Object.keys(result.server_log.warnings).length
          ? `, and ${Object.entries(result.server_log.warnings)
              .map(([k, n]) => `${fmt(n)} × \`${k}\``)
              .join(', ')}`
          : ''
      }.`,
  ]
  const block = `${START}\n\n${lines.join('\n')}\n\n${END}`
  let text: string
  try {
    text = readFileSync(DOC_FILE, 'utf8')
  } catch {
    text = '# Performance\n'
  }
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  const next =
    start !== -1 && end > start
      ? text.slice(0, start) + block + text.slice(end + END.length)
      : `${text.trimEnd()}\n\n## Carts and checkout\n\n${block}\n`
  writeFileSync(DOC_FILE, next)
}

if (process.argv.includes('--baseline')) {
  await runBaseline()
} else {
  process.once('SIGINT', () => abort('interrupted', 130))
  process.once('SIGTERM', () => abort('terminated', 143))
  let exitCode = 1
  try {
    exitCode = await main()
  } catch (error) {
    if (!aborted) {
      const expected = error instanceof BenchError
      console.error(`bench: ${expected ? (error as Error).message : ((error as Error).stack ?? error)}`)
    }
  } finally {
    await cleanup()
  }
  process.exit(exitCode)
}
