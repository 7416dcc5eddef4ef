/**
 * `shopwright <command>` (`npm run cli -- <command>`): operator commands that share the server's
 * config and database.
 */
import { parseArgs } from 'node:util'
import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig } from '../config.ts'
import { seedCatalog, seedDemoCatalog } from '../modules/catalog/seed.ts'
import { seedDemoAdmin } from '../modules/identity/seed.ts'
import { createStaff } from '../modules/identity/staff.ts'
import { seedDemoCommerce } from '../modules/orders/seed.ts'
import { seedDemoTaxSettings } from '../modules/tax/seed.ts'
import { migrateToLatest } from '../platform/db/migrate.ts'
import { ProblemError } from '../platform/http/errors.ts'
import { createLogger } from '../platform/observability/logger.ts'
import { createRuntime, type Runtime, startRuntime, stopRuntime } from '../platform/runtime.ts'

const USAGE = `usage: shopwright <command>

commands:
  migrate        apply database migrations and exit
  seed           seed the demo store (skipped when products exist); --products <n> generates a
                 catalog of n products with 3 to 20 variants each, for benchmarks
  worker         run background job workers (no HTTP); scale by running more
  create-admin   create a staff account: --email <address> [--name <name>] [--role role_owner],
                 password from ADMIN_PASSWORD
  help           show this text`

async function withRuntime(fn: (runtime: Runtime) => Promise<void>): Promise<void> {
  const config = loadConfig()
  const runtime = await createRuntime(config, createLogger(config.logLevel, config.logBufferBytes))
  try {
    await fn(runtime)
  } finally {
    await stopRuntime(runtime)
  }
}

const commands: Record<string, (args: string[]) => Promise<void>> = {
  async migrate() {
    await withRuntime(async (runtime) => {
      const applied = await migrateToLatest(runtime.database.db)
      console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date')
    })
  },
  async seed(args) {
    const { values } = parseArgs({ args, options: { products: { type: 'string' } } })
    const count = values.products === undefined ? undefined : Number(values.products)
    if (count !== undefined && (!Number.isSafeInteger(count) || count < 1 || count > 10_000_000)) {
      console.error('seed: --products takes a whole number from 1 to 10000000')
      process.exitCode = 2
      return
    }
    await withRuntime(async (runtime) => {
      await startRuntime(runtime, { work: false })
      const started = Date.now()
      const created =
        count === undefined
          ? await seedDemoCatalog(runtime)
          : await seedCatalog(runtime, {
              products: count,
              onProgress: (done) => {
                if (done % 10_000 === 0 || done === count)
                  console.log(`${done}/${count} products, ${((Date.now() - started) / 1000).toFixed(1)} s`)
              },
            })
      console.log(created ? `seeded ${created} products` : 'products exist already; nothing seeded')
      if (created && (await seedDemoTaxSettings(runtime))) console.log('set the demo store origin to DE')
      if (created && count === undefined && (await seedDemoCommerce(runtime)))
        console.log('stocked the demo warehouse and added shipping options')
      const admin = await seedDemoAdmin(runtime)
      if (admin) console.log(`created ${admin.email}; password in ${admin.passwordFile}`)
    })
  },
  async worker() {
    const config = loadConfig()
    const logger = createLogger(config.logLevel, config.logBufferBytes)
    const runtime = await createRuntime(config, logger)
    closeWithGrace({ delay: config.shutdownTimeoutMs, logger }, async () => {
      logger.info('worker draining')
      await stopRuntime(runtime)
    })
    await startRuntime(runtime, { work: true })
    logger.info({ database: runtime.database.kind }, 'worker running')
  },
  async 'create-admin'(args) {
    const { values } = parseArgs({
      args,
      options: {
        email: { type: 'string' },
        name: { type: 'string' },
        role: { type: 'string', default: 'role_owner' },
      },
    })
    const password = process.env.ADMIN_PASSWORD
    if (!values.email || !password) {
      console.error(
        'create-admin: pass --email <address> and the password in ADMIN_PASSWORD (kept out of shell history)',
      )
      process.exitCode = 2
      return
    }
    await withRuntime(async (runtime) => {
      await startRuntime(runtime, { work: false })
      const staff = await createStaff(runtime.database.db, {
        email: values.email!,
        name: values.name,
        password,
        roleId: values.role!,
      })
      console.log(
        `created ${staff.email} (${staff.id}) with role ${staff.role.name}; enrol MFA at first sign-in`,
      )
    })
  },
  async help() {
    console.log(USAGE)
  },
}

const [name = 'help', ...rest] = process.argv.slice(2)
const command = commands[name]
if (!command) {
  console.error(`shopwright: unknown command ${name}\n\n${USAGE}`)
  process.exit(2)
}
try {
  await command(rest)
} catch (error) {
  if (error instanceof ConfigError || error instanceof ProblemError) {
    console.error(`shopwright: ${error.message}`)
    process.exit(1)
  }
  throw error
}
