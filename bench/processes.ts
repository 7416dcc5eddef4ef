/**
 * Processes for the benchmark: spawning a Node program on a free loopback port, waiting until it
 * answers, pinning it to CPUs, reading its memory and CPU time from /proc, and stopping it. Every
 * wait here is bounded so a stuck child can never hang the harness.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { availableParallelism } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'

export const HOST = '127.0.0.1'

/** A failure the harness foresaw (a bad setting, a child that would not start): no stack needed. */
export class BenchError extends Error {}

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

/** Waits until the child's log holds `line` (a message it logs once), or fails after `timeoutMs`. */
export async function waitForLogLine(child: Child, line: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (child.hasExited)
      throw new BenchError(`${child.name} exited before logging "${line}":\n${logTail(child)}`)
    try {
      if (readFileSync(child.logFile, 'utf8').includes(line)) return
    } catch {
      // No output yet.
    }
    await sleep(100)
  }
  throw new BenchError(`${child.name} did not log "${line}" within ${timeoutMs} ms:\n${logTail(child)}`)
}

/**
 * Polls `path` until it answers 200 and returns the milliseconds from spawn to that answer.
 * Polls every 10 ms so the measured start-up time is not rounded up by the polling itself.
 */
export async function waitForOk(child: Child, path: string, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (child.hasExited) {
      throw new BenchError(`${child.name} exited before ${path} answered 200:\n${logTail(child)}`)
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
  throw new BenchError(`${child.name}: ${path} did not answer 200 within ${timeoutMs} ms:\n${logTail(child)}`)
}

/**
 * Splits the machine between load generator and target: this process (autocannon) on CPU 0 and,
 * per the returned CPU list, the children on the others. Unpinned, Linux often schedules the
 * server and autocannon, which ping-pong over loopback, onto the same core, and the same run
 * swings between two results about 2× apart. Returns undefined when pinning is not possible.
 */
export function pinLoadGenerator(): string | undefined {
  const count = availableParallelism()
  if (process.platform !== 'linux' || count < 2) return undefined
  try {
    execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' })
  } catch {
    return undefined
  }
  return count === 2 ? '1' : `1-${count - 1}`
}

/**
 * Moves every thread of a running process onto `cpus`; threads it starts later inherit that. Done
 * after start-up, so start-up itself is timed with the whole machine, as a deploy would have it.
 */
export function pinProcess(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
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

/** CPU ticks (USER_HZ, 100 a second on Linux) used by the machine and by the processes in a run. */
export interface CpuSnapshot {
  at: number
  /** Every CPU's user, nice and system time. */
  busy: number
  /** The process under load. */
  target: number
  /** Ticks of each PostgreSQL backend serving the run's database, by pid. */
  database: Map<number, number>
  /** This process: autocannon. */
  generator: number
}

const USER_HZ = 100

async function processTicks(pid: number): Promise<{ comm: string; ticks: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const close = stat.lastIndexOf(')')
    const comm = stat.slice(stat.indexOf('(') + 1, close)
    // After "pid (comm)", utime and stime are the 12th and 13th fields; they cover every thread.
    const fields = stat.slice(close + 2).split(' ')
    return { comm, ticks: Number(fields[11]) + Number(fields[12]) }
  } catch {
    return undefined
  }
}

/** Whose CPU belongs to the run: the process under load and the PostgreSQL database it uses. */
export interface CpuScope {
  targetPid: number
  /** Backends serving this database count as the target's; other PostgreSQL work does not. */
  database?: string | undefined
}

/** A backend's title reads `postgres: <cluster>: <user> <database> <client> <state>`. */
async function servesDatabase(pid: number, database: string): Promise<boolean> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split(/[\s\0]+/).includes(database)
  } catch {
    return false
  }
}

/** Reads the CPU counters for a load run; undefined where /proc is missing. */
export async function cpuSnapshot(scope: CpuScope): Promise<CpuSnapshot | undefined> {
  try {
    const [user, nice, system] = (await readFile('/proc/stat', 'utf8'))
      .split('\n')[0]!
      .trim()
      .split(/\s+/)
      .slice(1, 4)
      .map(Number)
    const snapshot: CpuSnapshot = {
      at: performance.now(),
      busy: user! + nice! + system!,
      target: 0,
      database: new Map(),
      generator: 0,
    }
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      const pid = Number(entry)
      const info = await processTicks(pid)
      if (!info) continue
      if (pid === scope.targetPid) snapshot.target += info.ticks
      else if (pid === process.pid) snapshot.generator += info.ticks
      else if (scope.database && info.comm === 'postgres' && (await servesDatabase(pid, scope.database))) {
        snapshot.database.set(pid, info.ticks)
      }
    }
    return snapshot
  } catch {
    return undefined
  }
}

export interface CpuUse {
  /** Cores, on average, that processes outside the run kept busy: should stay near zero. */
  otherCores: number
  /** CPU seconds of the target and of PostgreSQL over the interval. */
  targetSeconds: number
  databaseSeconds: number
}

/** What happened between two snapshots. */
export function cpuUse(before: CpuSnapshot | undefined, after: CpuSnapshot | undefined): CpuUse | null {
  if (!before || !after) return null
  const delta = (key: 'busy' | 'target' | 'generator') => (after[key] - before[key]) / USER_HZ
  // Backends come and go with the pools: one that started meanwhile counts whole; one that ended
  // meanwhile is lost (a few ticks), rather than subtracting its lifetime from the total.
  let databaseTicks = 0
  for (const [pid, ticks] of after.database) databaseTicks += ticks - (before.database.get(pid) ?? 0)
  const databaseSeconds = databaseTicks / USER_HZ
  const seconds = (after.at - before.at) / 1000
  const other = delta('busy') - delta('target') - databaseSeconds - delta('generator')
  return {
    otherCores: Math.max(0, Math.round((other / seconds) * 100) / 100),
    targetSeconds: delta('target'),
    databaseSeconds,
  }
}
