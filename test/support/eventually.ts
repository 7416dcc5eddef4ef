/** Polling for asynchronous outcomes (jobs, outages, processes) without fixed sleeps. */
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Polls until check returns a value other than undefined (a check that throws counts as not yet),
 * or fails after timeoutMs.
 */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(100)
  }
}
