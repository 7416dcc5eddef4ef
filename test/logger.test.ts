/**
 * Logging to standard output: by default each line is written at once, and none is lost at exit
 * even when the reader falls behind; with LOG_BUFFER_BYTES, lines go in batches, all of them by
 * exit for a reader that keeps up, and none waits longer than the periodic flush.
 */
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { eventually } from './support/eventually.ts'

function run(
  script: string,
  options: { slowReader?: boolean } = {},
): { output: () => string; exited: Promise<number | null> } {
  let output = ''
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: process.cwd(),
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  proc.stdout!.on('data', (d) => {
    output += d
  })
  if (options.slowReader) {
    // A reader that falls behind (a busy log shipper): the pipe fills and writes must wait.
    proc.stdout!.pause()
    setTimeout(() => proc.stdout!.resume(), 300)
  }
  return { output: () => output, exited: new Promise((resolve) => proc.once('exit', resolve)) }
}

const LOGGER = `import { createLogger } from '${process.cwd()}/src/platform/observability/logger.ts'`

const numbers = (output: string) =>
  output
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { i: number }).i)
const ALL = Array.from({ length: 2000 }, (_, i) => i)

describe('logs', () => {
  it('writes every line by default, in order, even to a reader that falls behind', async () => {
    const { output, exited } = run(
      `${LOGGER}
      const log = createLogger('info')
      for (let i = 0; i < 2000; i++) log.info({ i }, 'line')
      process.exit(0)`,
      { slowReader: true },
    )
    expect(await exited).toBe(0)
    expect(numbers(output())).toEqual(ALL)
  })

  it('writes every buffered line, in order, by the time the process exits', async () => {
    const { output, exited } = run(`${LOGGER}
      const log = createLogger('info', 4096)
      for (let i = 0; i < 2000; i++) log.info({ i }, 'line')
      process.exit(0)`)
    expect(await exited).toBe(0)
    expect(numbers(output())).toEqual(ALL)
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
