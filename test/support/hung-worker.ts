/**
 * A worker process for the heartbeat test (jobs-and-events.test.ts): it works the `test.hang` queue
 * of the database at DATABASE_URL with a handler that never returns, says `running` when it has
 * taken a job, and waits there to be killed.
 */
import pino from 'pino'
import { openDatabase } from '../../src/platform/db/database.ts'
import { Jobs } from '../../src/platform/jobs/jobs.ts'

const database = await openDatabase({ url: process.env.DATABASE_URL, dataDir: undefined })
const jobs = new Jobs(database, {
  retryLimit: 3,
  retryDelaySeconds: 1,
  logger: pino({ level: 'silent' }),
  pollingIntervalSeconds: 0.5,
  heartbeatSeconds: 10,
})
jobs.define(
  'test.hang',
  async () => {
    process.stdout.write('running\n')
    await new Promise(() => {})
  },
  { concurrency: 1 },
)
await jobs.start({ work: true })
