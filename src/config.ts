/**
 * Every setting Shopwright reads, parsed and validated once at start-up.
 *
 * A bad value stops the process with one line naming the variable and what it expects, so an
 * operator never has to guess which of twenty settings broke a deploy.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { EVENT_DELIVERY_RETRIES } from './platform/events/outbox.ts'

export interface Config {
  env: 'development' | 'production' | 'test'
  host: string
  port: number
  publicUrl: string
  dataDir: string
  /** postgres:// URL; undefined selects embedded PGlite under dataDir. */
  databaseUrl: string | undefined
  databasePoolMax: number
  /** Statements each PostgreSQL connection keeps prepared; 0 prepares none. */
  databaseStatementCache: number
  allowEmbeddedDatabase: boolean
  redisUrl: string | undefined
  natsUrl: string | undefined
  natsStream: string
  natsSubjectPrefix: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Log bytes buffered before a write (also flushed each second and on exit); 0 writes each line. */
  logBufferBytes: number
  corsOrigins: string[]
  bodyLimitBytes: number
  trustProxy: boolean
  runWorkers: boolean
  seedDemo: boolean
  /** Secret for signing tokens and cursors: at least 32 characters. */
  appSecret: string
  /** Bearer token with every admin permission, until staff accounts arrive (identity module). */
  adminToken: string | undefined
  rateLimitPerMinute: number
  /** Per-IP limit on sign-in, sign-up, password reset and token refresh. */
  authRateLimitPerMinute: number
  maxEventLoopDelayMs: number
  maxEventLoopUtilization: number
  shutdownTimeoutMs: number
  jobRetryLimit: number
  /** Retries of an event's delivery to NATS and the listeners (about a day at the default). */
  eventRetryLimit: number
  /** Staff whose role reaches personal or financial data must use MFA. */
  staffMfaRequired: boolean
  jobRetryDelaySeconds: number
  /** Storefront catalog responses cached in memory, invalidated across nodes through the KV store. */
  catalogCache: boolean
  catalogCacheTtlMs: number
  catalogCacheMaxEntries: number
  /** Replay public catalog responses before routing (src/platform/http/edge-cache.ts). */
  edgeCache: boolean
  /** Cache-Control max-age for anonymous storefront catalog responses (a CDN may keep them this long). */
  catalogHttpMaxAgeSeconds: number
  /** Whether the storefront's availability route tells units left, not only in stock or not. */
  storefrontStockCounts: boolean
  /** A claim on an Idempotency-Key older than this is taken to belong to a request that died. */
  idempotencyStaleSeconds: number
  /** How long a checkout request holds its cart before a retry or the recovery job may take over. */
  checkoutLeaseSeconds: number
  /** Capture payments when the order is placed, or leave them authorised for staff to capture. */
  paymentCapture: 'automatic' | 'manual'
  /** Active carts untouched this long expire; checkouts under way are left to the recovery job. */
  cartTtlHours: number
  /**
   * The built-in test gateway (test cards that always pay): on in development and tests, off in
   * production unless asked for, since with it anyone could place a paid order without paying.
   */
  paymentTestGateway: boolean
  /** Manual payment methods offered (bank transfer, cash on delivery); none switches manual payments off. */
  paymentManualMethods: ManualPaymentMethod[]
  /** Failed payments allowed per hour per IP, card and account before checkout refuses them. */
  paymentFailureLimit: number
  /**
   * Orders to pay by bank transfer or cash on delivery still pending, their money not confirmed,
   * this long after they were placed are canceled, their stock released.
   */
  manualPaymentTtlHours: number
  /** Manual-payment checkouts allowed per UTC day per IP and per account (they hold stock unpaid). */
  manualPaymentOrderLimit: number
  /** Stripe: secret key, webhook signing secret, and an API base (a local stand-in in tests). */
  stripeSecretKey: string | undefined
  stripeWebhookSecret: string | undefined
  stripeApiUrl: string | undefined
}

/** Thrown for a setting that cannot be used; main prints its message and exits 1. */
export const MANUAL_PAYMENT_METHODS = ['bank_transfer', 'cash_on_delivery'] as const
export type ManualPaymentMethod = (typeof MANUAL_PAYMENT_METHODS)[number]

/** PAYMENT_MANUAL_METHODS: a comma-separated subset of the manual methods, or `none`. */
function manualMethods(env: Env): ManualPaymentMethod[] {
  const raw = read(env, 'PAYMENT_MANUAL_METHODS')
  if (raw === undefined) return [...MANUAL_PAYMENT_METHODS]
  if (raw === 'none') return []
  const methods = raw.split(',').map((m) => m.trim())
  for (const method of methods) {
    if (!(MANUAL_PAYMENT_METHODS as readonly string[]).includes(method)) {
      throw new ConfigError(
        `PAYMENT_MANUAL_METHODS has ${method}: expected ${MANUAL_PAYMENT_METHODS.join(', ')} or none`,
      )
    }
  }
  return [...new Set(methods)] as ManualPaymentMethod[]
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

type Env = Record<string, string | undefined>

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim()
  return value === '' ? undefined : value
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name)
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (!/^-?\d+$/.test(raw) || value < min || value > max) {
    throw new ConfigError(`${name}=${raw} is invalid: expected an integer from ${min} to ${max}`)
  }
  return value
}

function decimal(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name)
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new ConfigError(`${name}=${raw} is invalid: expected a number from ${min} to ${max}`)
  }
  return value
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = read(env, name)?.toLowerCase()
  if (raw === undefined) return fallback
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true
  if (['0', 'false', 'no', 'off'].includes(raw)) return false
  throw new ConfigError(`${name}=${raw} is invalid: expected true or false`)
}

function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const raw = read(env, name)
  if (raw === undefined) return fallback
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name}=${raw} is invalid: expected one of ${allowed.join(', ')}`)
  }
  return raw as T
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = read(env, name)
  if (raw === undefined) return undefined
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    throw new ConfigError(`${name} is invalid: expected a URL such as ${protocols[0]}//host:port`)
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(
      `${name} is invalid: expected a ${protocols.join(' or ')} URL, got ${parsed.protocol}`,
    )
  }
  return raw
}

/**
 * Reads a secret from the environment; outside production a missing one is generated once and kept
 * in the data directory so that restarts keep sessions and cursors valid.
 */
function secret(env: Env, name: string, production: boolean, dataDir: string, fileName: string): string {
  const raw = read(env, name)
  if (raw !== undefined) {
    if (raw.length < 32) throw new ConfigError(`${name} is too short: expected at least 32 characters`)
    return raw
  }
  if (production) {
    throw new ConfigError(`${name} is required in production: set a random value of at least 32 characters`)
  }
  const file = join(dataDir, fileName)
  try {
    return readFileSync(file, 'utf8').trim()
  } catch {
    const generated = randomBytes(32).toString('base64url')
    mkdirSync(dataDir, { recursive: true })
    writeFileSync(file, `${generated}\n`, { mode: 0o600 })
    return generated
  }
}

/** Parses the environment into a Config, or throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const nodeEnv = oneOf(env, 'NODE_ENV', 'development', ['development', 'production', 'test'] as const)
  const production = nodeEnv === 'production'
  const dataDir = resolve(read(env, 'DATA_DIR') ?? './data')
  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:'])
  const allowEmbeddedDatabase = boolean(env, 'ALLOW_EMBEDDED_DATABASE', !production)
  if (!databaseUrl && !allowEmbeddedDatabase) {
    throw new ConfigError(
      'DATABASE_URL is required in production: set a postgres:// URL, or ALLOW_EMBEDDED_DATABASE=true for a single-node trial',
    )
  }
  const host = read(env, 'HOST') ?? '127.0.0.1'
  const port = integer(env, 'PORT', 3000, 0, 65535)
  const corsRaw = read(env, 'CORS_ORIGINS')
  const corsOrigins = corsRaw ? corsRaw.split(',').map((o) => o.trim()) : production ? [] : ['*']
  for (const origin of corsOrigins) {
    if (origin !== '*' && !/^https?:\/\/[^/]+$/.test(origin)) {
      throw new ConfigError(
        `CORS_ORIGINS has ${origin}: expected * or origins such as https://shop.example.com`,
      )
    }
  }
  if (production && corsOrigins.includes('*')) {
    throw new ConfigError('CORS_ORIGINS=* is refused in production: list the storefront origins')
  }
  const adminToken = read(env, 'ADMIN_TOKEN')
  if (adminToken !== undefined && adminToken.length < 32) {
    throw new ConfigError('ADMIN_TOKEN is too short: expected at least 32 characters')
  }
  return {
    env: nodeEnv,
    host,
    port,
    publicUrl: read(env, 'PUBLIC_URL') ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    dataDir,
    databaseUrl,
    databasePoolMax: integer(env, 'DATABASE_POOL_MAX', 10, 1, 500),
    databaseStatementCache: integer(env, 'DATABASE_STATEMENT_CACHE', 250, 0, 10_000),
    allowEmbeddedDatabase,
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:']),
    natsUrl: url(env, 'NATS_URL', ['nats:', 'tls:']),
    natsStream: read(env, 'NATS_STREAM') ?? 'SHOPWRIGHT_EVENTS',
    natsSubjectPrefix: read(env, 'NATS_SUBJECT_PREFIX') ?? 'shopwright.events',
    logBufferBytes: integer(env, 'LOG_BUFFER_BYTES', 0, 0, 16_000),
    logLevel: oneOf(env, 'LOG_LEVEL', nodeEnv === 'test' ? 'silent' : 'info', [
      'fatal',
      'error',
      'warn',
      'info',
      'debug',
      'trace',
      'silent',
    ] as const),
    corsOrigins,
    bodyLimitBytes: integer(env, 'BODY_LIMIT_BYTES', 1024 * 1024, 1024, 100 * 1024 * 1024),
    trustProxy: boolean(env, 'TRUST_PROXY', false),
    runWorkers: boolean(env, 'RUN_WORKERS', true),
    seedDemo: boolean(env, 'SEED_DEMO', !production),
    appSecret: secret(env, 'APP_SECRET', production, dataDir, 'app-secret'),
    adminToken:
      adminToken ?? (production ? undefined : secret(env, 'ADMIN_TOKEN', false, dataDir, 'admin-token')),
    rateLimitPerMinute: integer(env, 'RATE_LIMIT_PER_MINUTE', 1200, 1, 1_000_000),
    authRateLimitPerMinute: integer(env, 'AUTH_RATE_LIMIT_PER_MINUTE', 20, 1, 1_000_000),
    maxEventLoopDelayMs: integer(env, 'MAX_EVENT_LOOP_DELAY_MS', 1000, 0, 60_000),
    maxEventLoopUtilization: decimal(env, 'MAX_EVENT_LOOP_UTILIZATION', 0, 0, 1),
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 100, 600_000),
    jobRetryLimit: integer(env, 'JOB_RETRY_LIMIT', 5, 0, 100),
    eventRetryLimit: integer(env, 'EVENT_RETRY_LIMIT', EVENT_DELIVERY_RETRIES, 0, 1000),
    staffMfaRequired: boolean(env, 'STAFF_MFA_REQUIRED', true),
    jobRetryDelaySeconds: integer(env, 'JOB_RETRY_DELAY_SECONDS', 5, 1, 3600),
    catalogCache: boolean(env, 'CATALOG_CACHE', true),
    catalogCacheTtlMs: integer(env, 'CATALOG_CACHE_TTL_MS', 60_000, 100, 3_600_000),
    catalogCacheMaxEntries: integer(env, 'CATALOG_CACHE_MAX_ENTRIES', 10_000, 1, 1_000_000),
    edgeCache: boolean(env, 'EDGE_CACHE', true),
    catalogHttpMaxAgeSeconds: integer(env, 'CATALOG_HTTP_MAX_AGE', 30, 0, 86_400),
    storefrontStockCounts: boolean(env, 'STOREFRONT_STOCK_COUNTS', false),
    idempotencyStaleSeconds: integer(env, 'IDEMPOTENCY_STALE_SECONDS', 60, 1, 86_400),
    checkoutLeaseSeconds: integer(env, 'CHECKOUT_LEASE_SECONDS', 30, 1, 3600),
    paymentCapture: oneOf(env, 'PAYMENT_CAPTURE', 'automatic', ['automatic', 'manual']),
    cartTtlHours: integer(env, 'CART_TTL_HOURS', 24 * 30, 1, 24 * 365),
    paymentTestGateway: boolean(env, 'PAYMENT_TEST_GATEWAY', !production),
    paymentManualMethods: manualMethods(env),
    paymentFailureLimit: integer(env, 'PAYMENT_FAILURE_LIMIT', 5, 1, 10_000),
    manualPaymentTtlHours: integer(env, 'MANUAL_PAYMENT_TTL_HOURS', 72, 1, 24 * 365),
    manualPaymentOrderLimit: integer(env, 'MANUAL_PAYMENT_ORDER_LIMIT', 10, 1, 1_000_000),
    stripeSecretKey: read(env, 'STRIPE_SECRET_KEY'),
    stripeWebhookSecret: read(env, 'STRIPE_WEBHOOK_SECRET'),
    stripeApiUrl: url(env, 'STRIPE_API_URL', ['https:', 'http:']),
  }
}
