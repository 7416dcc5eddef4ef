/**
 * Load generation with autocannon's programmatic API. The run in progress is kept so an interrupt
 * can stop it rather than leave it firing at a server that is being torn down.
 */
import autocannon from 'autocannon'
import { cpuSnapshot, otherCpuCores } from './processes.ts'

export interface LoadSettings {
  connections: number
  pipelining: number
  durationS: number
}

export interface LoadResult {
  rps: number
  p50_ms: number
  p99_ms: number
  errors: number
  timeouts: number
  non2xx: number
  statusCodes: Record<string, number>
  /** Cores other processes kept busy meanwhile (null when /proc is unreadable). */
  otherCpuCores: number | null
}

let running: autocannon.Instance | undefined

/** Stops the load run in progress, if any. */
export function stopLoad(): void {
  running?.stop()
}

/**
 * Loads one URL for the given duration and summarises what came back. `pids` are the processes
 * taking part (load generator, target), whose CPU is not counted as interference.
 */
export async function runLoad(url: string, settings: LoadSettings, pids: number[]): Promise<LoadResult> {
  const before = await cpuSnapshot(pids)
  const result = await fire(url, settings)
  return { ...result, otherCpuCores: otherCpuCores(before, await cpuSnapshot(pids)) }
}

function fire(url: string, settings: LoadSettings): Promise<Omit<LoadResult, 'otherCpuCores'>> {
  return new Promise((resolve, reject) => {
    running = autocannon(
      {
        url,
        connections: settings.connections,
        pipelining: settings.pipelining,
        duration: settings.durationS,
        timeout: 10,
      },
      (error, result) => {
        running = undefined
        if (error) {
          reject(error)
          return
        }
        const statusCodes: Record<string, number> = {}
        for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) {
          statusCodes[code] = stat.count ?? 0
        }
        resolve({
          rps: result.requests.average,
          p50_ms: result.latency.p50,
          p99_ms: result.latency.p99,
          errors: result.errors,
          timeouts: result.timeouts,
          non2xx: result.non2xx,
          statusCodes,
        })
      },
    )
  })
}
