/**
 * Buffered logging: lines are written in batches, yet none is lost on exit and none waits longer
 * than the periodic flush when traffic is light.
 */
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { eventually } from './support/eventually.ts'

function run(script: string): { output: () => string; exited: Promise<number | null> } {
  let output = ''
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: process.cwd(),
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  proc.stdout!.on('data', (d) => {
    output += d
  })
  return { output: () => output, exited: new Promise((resolve) => proc.once('exit', resolve)) }
}

const LOGGER = `import { createLogger } from '${process.cwd()}/src/platform/observability/logger.ts'`

describe('buffered logs', () => {
  it('writes every line, in order, by the time the process exits', async () => {
    const { output, exited } = run(`${LOGGER}
      const log = createLogger('info', 4096)
      for (let i = 0; i < 200; i++) log.info({ i }, 'line')
      process.exit(0)`)
    expect(await exited).toBe(0)
    const lines = output()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { i: number })
    expect(lines.map((l) => l.i)).toEqual(Array.from({ length: 200 }, (_, i) => i))
  })

  it('writes a lone line within the periodic flush, without exiting', async () => {
    const { output, exited } = run(`${LOGGER}
      const log = createLogger('info', 4096)
      log.info('alone')
      setTimeout(() => process.exit(0), 5000)`)
    const arrived = await eventually(async () => {
      const line = output()
        .split('\n')
        .find((l) => l.includes('"msg":"alone"'))
      return line ? { at: Date.now(), logged: (JSON.parse(line) as { time: number }).time } : undefined
    }, 3_000)
    // Written out within the flush period of a second (and some slack for a busy machine).
    expect(arrived.at - arrived.logged).toBeLessThan(1_600)
    await exited
  })
})
