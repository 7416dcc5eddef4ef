/**
 * `shopwright <command>` (`npm run cli -- <command>`): operator commands that share the server's
 * config and database.
 */
import { parseArgs } from 'node:util'
import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig } from '../config.ts'
import { seedDemoCatalog } from '../modules/catalog/seed.ts'
import { migrateToLatest } from '../platform/db/migrate.ts'
import { createLogger } from '../platform/observability/logger.ts'
import { createRuntime, type Runtime, startRuntime, stopRuntime } from '../platform/runtime.ts'

const USAGE = `usage: shopwright <command>

commands:
  migrate        apply database migrations and exit
  seed           seed the demo store (skipped when products exist)
  worker         run background job workers (no HTTP); scale by running more
  create-admin   create a staff owner account (arrives with staff accounts)
  help           show this text`

async function withRuntime(fn: (runtime: Runtime) => Promise<void>): Promise<void> {
  const config = loadConfig()
  const runtime = await createRuntime(config, createLogger(config.logLevel))
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
  async seed() {
    await withRuntime(async (runtime) => {
      await startRuntime(runtime, { work: false })
      const created = await seedDemoCatalog(runtime)
      console.log(created ? `seeded ${created} demo products` : 'products exist already; nothing seeded')
    })
  },
  async worker() {
    const config = loadConfig()
    const logger = createLogger(config.logLevel)
    const runtime = await createRuntime(config, logger)
    closeWithGrace({ delay: config.shutdownTimeoutMs, logger }, async () => {
      logger.info('worker draining')
      await stopRuntime(runtime)
    })
    await startRuntime(runtime, { work: true })
    logger.info({ database: runtime.database.kind }, 'worker running')
  },
  async 'create-admin'() {
    console.error(
      'create-admin: staff accounts arrive with the identity module; until then use the ADMIN_TOKEN bearer token',
    )
    process.exitCode = 2
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
  parseArgs({ args: rest, strict: false })
  await command(rest)
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`shopwright: ${error.message}`)
    process.exit(1)
  }
  throw error
}
