/**
 * Child processes for the benchmark: spawning a Node program on a free loopback port, waiting until
 * it answers, reading its memory and stopping it. Every wait here is bounded so a stuck child can
 * never hang the harness.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export const HOST = '127.0.0.1'

export interface Child {
  readonly name: string
  readonly process: ChildProcess
  readonly port: number
  readonly url: string
  readonly logFile: string
  /** performance.now() when spawned. */
  readonly spawnedAt: number
  /** Resolves with the exit code (or signal name) once the process is gone. */
  readonly exited: Promise<number | string>
  hasExited: boolean
}

/** Asks the kernel for a port that is free right now on the loopback interface. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const address = server.address()
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port)
        else reject(new Error('no port assigned'))
      })
    })
  })
}

/**
 * Spawns `node <args>` with this very Node binary. Output goes to a file rather than a pipe: an
 * unread pipe would fill up and stall the server, and reading it here would spend the CPU the
 * load generator and the server compete for.
 */
export function spawnNode(options: {
  name: string
  args: string[]
  env: Record<string, string>
  port: number
  logFile: string
  cwd: string
}): Child {
  const fd = openSync(options.logFile, 'a')
  const spawnedAt = performance.now()
  const child = spawn(process.execPath, options.args, {
    cwd: options.cwd,
    // PATH and HOME only: the child must not pick up settings from the developer's shell.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...options.env },
    stdio: ['ignore', fd, fd],
  })
  closeSync(fd)
  const handle: Child = {
    name: options.name,
    process: child,
    port: options.port,
    url: `http://${HOST}:${options.port}`,
    logFile: options.logFile,
    spawnedAt,
    hasExited: false,
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        handle.hasExited = true
        resolve(code ?? signal ?? 'unknown')
      })
      child.once('error', () => {
        handle.hasExited = true
        resolve('spawn error')
      })
    }),
  }
  return handle
}

/** The last lines the child wrote, for error messages. */
export function logTail(child: Child, lines = 20): string {
  try {
    return readFileSync(child.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no output)'
  }
}

/**
 * Polls `path` until it answers 200 and returns the milliseconds from spawn to that answer.
 * Polls every 10 ms so the measured start-up time is not rounded up by the polling itself.
 */
export async function waitForOk(child: Child, path: string, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (child.hasExited) {
      throw new Error(`${child.name} exited before ${path} answered 200:\n${logTail(child)}`)
    }
    try {
      const response = await fetch(`${child.url}${path}`, { signal: AbortSignal.timeout(2_000) })
      await response.arrayBuffer()
      if (response.status === 200) return performance.now() - child.spawnedAt
    } catch {
      // Not listening yet.
    }
    await sleep(10)
  }
  throw new Error(`${child.name}: ${path} did not answer 200 within ${timeoutMs} ms:\n${logTail(child)}`)
}

/** Resident set size of a live process in MiB, from /proc (Linux only). */
export async function rssMb(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]
    return kb ? Math.round((Number(kb) / 1024) * 10) / 10 : null
  } catch {
    return null
  }
}

/** SIGTERM, then SIGKILL if the child has not exited within graceMs; resolves once it is gone. */
export async function stopChild(child: Child, graceMs = 20_000): Promise<number | string> {
  if (child.hasExited) return child.exited
  child.process.kill('SIGTERM')
  const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs)
  try {
    return await child.exited
  } finally {
    clearTimeout(timer)
  }
}

/** CPU ticks (USER_HZ, 100 a second on Linux) the whole machine and selected processes have used. */
export interface CpuSnapshot {
  at: number
  busy: number
  ours: number
}

const USER_HZ = 100

async function processTicks(pid: number): Promise<{ comm: string; ticks: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const close = stat.lastIndexOf(')')
    const comm = stat.slice(stat.indexOf('(') + 1, close)
    // After "pid (comm)", utime and stime are the 12th and 13th fields.
    const fields = stat.slice(close + 2).split(' ')
    return { comm, ticks: Number(fields[11]) + Number(fields[12]) }
  } catch {
    return undefined
  }
}

/**
 * Takes a snapshot of machine-wide busy CPU and of the CPU used by `pids` and by PostgreSQL's
 * processes (which serve our queries, so they belong to the system under test).
 */
export async function cpuSnapshot(pids: number[]): Promise<CpuSnapshot | undefined> {
  try {
    const [user, nice, system] = (await readFile('/proc/stat', 'utf8'))
      .split('\n')[0]!
      .trim()
      .split(/\s+/)
      .slice(1, 4)
      .map(Number)
    let ours = 0
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      const pid = Number(entry)
      const info = await processTicks(pid)
      if (info && (pids.includes(pid) || info.comm === 'postgres')) ours += info.ticks
    }
    return { at: performance.now(), busy: user! + nice! + system!, ours }
  } catch {
    return undefined
  }
}

/**
 * How many cores, on average, processes other than ours were keeping busy between two snapshots:
 * a benchmark on a shared two-core machine is only meaningful when this stays near zero.
 */
export function otherCpuCores(
  before: CpuSnapshot | undefined,
  after: CpuSnapshot | undefined,
): number | null {
  if (!before || !after) return null
  const seconds = (after.at - before.at) / 1000
  const other = (after.busy - before.busy - (after.ours - before.ours)) / USER_HZ
  return Math.max(0, Math.round((other / seconds) * 100) / 100)
}
