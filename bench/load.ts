/**
 * Load generation with autocannon's programmatic API, plus the CPU the target spent meanwhile.
 * The run in progress is kept so an interrupt can stop it rather than leave it firing at a server
 * that is being torn down.
 */
import autocannon from 'autocannon'
import { type CpuScope, cpuSnapshot, cpuUse } from './processes.ts'

export interface LoadSettings {
  connections: number
  pipelining: number
  durationS: number
  /** Sent with every request, e.g. a bearer token. */
  headers?: Record<string, string>
}

export interface LoadResult {
  rps: number
  p50_ms: number
  p99_ms: number
  requests: number
  errors: number
  timeouts: number
  non2xx: number
  statusCodes: Record<string, number>
  /** Cores other processes kept busy meanwhile; null when /proc is unreadable. */
  otherCpuCores: number | null
  /**
   * CPU microseconds the target (and PostgreSQL, for its queries) spent per response. Unlike
   * req/s it hardly moves when something else on the machine takes CPU away.
   */
  cpuUsPerRequest: number | null
  /** The PostgreSQL backends' part of cpuUsPerRequest. */
  dbCpuUsPerRequest: number | null
}

let running: autocannon.Instance | undefined

/** Stops the load run in progress, if any. */
export function stopLoad(): void {
  running?.stop()
}

/** Loads one URL for the given duration and summarises what came back. */
export async function runLoad(url: string, settings: LoadSettings, scope: CpuScope): Promise<LoadResult> {
  const before = await cpuSnapshot(scope)
  const result = await fire(url, settings)
  const use = cpuUse(before, await cpuSnapshot(scope))
  return {
    ...result,
    otherCpuCores: use?.otherCores ?? null,
    cpuUsPerRequest: perRequest(use && use.targetSeconds + use.databaseSeconds, result.requests),
    dbCpuUsPerRequest: perRequest(use?.databaseSeconds, result.requests),
  }
}

function perRequest(seconds: number | null | undefined, requests: number): number | null {
  return seconds != null && requests > 0 ? Math.round((seconds * 1e6) / requests) : null
}

type Fired = Omit<LoadResult, 'otherCpuCores' | 'cpuUsPerRequest' | 'dbCpuUsPerRequest'>

function fire(url: string, settings: LoadSettings): Promise<Fired> {
  return new Promise((resolve, reject) => {
    running = autocannon(
      {
        url,
        connections: settings.connections,
        pipelining: settings.pipelining,
        duration: settings.durationS,
        timeout: 10,
        ...(settings.headers ? { headers: settings.headers } : {}),
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
          requests: result.requests.total,
          errors: result.errors,
          timeouts: result.timeouts,
          non2xx: result.non2xx,
          statusCodes,
        })
      },
    )
  })
}
