/**
 * Starts a Shopwright node: config → runtime → HTTP app → listen, then migrations, job workers
 * (in-process unless RUN_WORKERS=false) and the demo seed. SIGTERM/SIGINT drain it gracefully.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import { buildApp, PRESSURE_SAMPLE_MS } from './app.ts'
import { ConfigError, loadConfig } from './config.ts'
import { seedDemoCatalog } from './modules/catalog/seed.ts'
import { DEMO_ADMIN_EMAIL, seedDemoAdmin } from './modules/identity/seed.ts'
import { seedDemoCommerce } from './modules/orders/seed.ts'
import { seedDemoTaxSettings } from './modules/tax/seed.ts'
import { ROUTE_SCHEMAS_COMPILED } from './platform/http/lazy-compile.ts'
import { createLogger } from './platform/observability/logger.ts'
import { createRuntime, startRuntime, stopRuntime } from './platform/runtime.ts'

const startedAt = performance.now()

function configOrExit() {
  try {
    return loadConfig()
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`shopwright: ${error.message}`)
      process.exit(1)
    }
    throw error
  }
}

const config = configOrExit()
const logger = createLogger(config.logLevel, config.logBufferBytes)
const runtime = await createRuntime(config, logger)
const app = await buildApp(runtime)

closeWithGrace({ delay: config.shutdownTimeoutMs, logger }, async ({ signal, err }) => {
  if (err) logger.error({ err }, 'shutting down after an unexpected error')
  else logger.info({ signal }, 'draining: finishing in-flight requests and jobs')
  runtime.draining = true
  await app.close()
  await stopRuntime(runtime)
})

await app.listen({ host: config.host, port: config.port })
await startRuntime(runtime, {
  work: config.runWorkers,
  async beforeReady() {
    if (!config.seedDemo) return
    const seeded = await seedDemoCatalog(runtime)
    if (seeded) logger.info({ products: seeded }, 'seeded the demo store')
    if (seeded) await seedDemoTaxSettings(runtime)
    if (seeded && (await seedDemoCommerce(runtime))) logger.info('stocked the demo warehouse and shipping')
    const admin = await seedDemoAdmin(runtime)
    if (admin)
      logger.info({ email: admin.email, passwordFile: admin.passwordFile }, 'created the demo owner account')
    // Booting stalls the event loop (embedded Postgres compiles WebAssembly), which load shedding
    // reads as overload for up to a second; turn ready only once it has cleared, so the first
    // requests a balancer sends are served rather than shed.
    await sleep(PRESSURE_SAMPLE_MS + 50)
    while (app.isUnderPressure()) await sleep(PRESSURE_SAMPLE_MS)
  },
})
// Route schemas compile on the first request that needs them. The rest compile now, in short slices
// between requests, rather than before ready: a node added in a spike takes traffic seconds sooner.
const warmingSince = performance.now()
void app.warmSchemas().then((failures) => {
  for (const { schema, error } of failures)
    logger.error({ err: error, schema }, 'a route schema does not compile')
  logger.info({ ms: Math.round(performance.now() - warmingSince) }, ROUTE_SCHEMAS_COMPILED)
})
const readyMs = Math.round(performance.now() - startedAt)
const url = config.publicUrl
logger.info(
  { url, docs: `${url}/docs`, database: runtime.database.kind, readyMs, workers: config.runWorkers },
  'shopwright ready',
)
if (process.stdout.isTTY) {
  const lines = [
    '',
    `  Shopwright is running at ${url}`,
    `  API reference:  ${url}/docs   (OpenAPI: ${url}/openapi.json)`,
    `  Storefront:     ${url}/store/products`,
    `  Database:       ${runtime.database.kind === 'pglite' ? `embedded PGlite in ${config.dataDir}` : 'PostgreSQL'}`,
  ]
  if (config.seedDemo) {
    lines.push(
      `  Demo admin:     POST ${url}/admin/auth/sign-in  {"email":"${DEMO_ADMIN_EMAIL}","password":"$(cat ${config.dataDir}/demo-admin-password)"}`,
    )
  }
  if (config.adminToken && !process.env.ADMIN_TOKEN) {
    lines.push(`  Bootstrap token (development): Authorization: Bearer $(cat ${config.dataDir}/admin-token)`)
  }
  console.log(`${lines.join('\n')}\n`)
}
