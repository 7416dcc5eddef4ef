import { availableParallelism } from 'node:os'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One migrated database of each kind, copied by every test node instead of migrating its own.
    globalSetup: ['test/support/global-setup.ts'],
    // Vitest's default (one fewer than the cores) runs one file at a time on two cores, and the
    // files spend much of their time waiting on PostgreSQL, job polls and child processes: two at a
    // time took the suite from 502 s to 303 s on the 2-core CI machine (README).
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
})
