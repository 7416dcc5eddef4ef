/**
 * Failpoints: named places in a multi-step operation (checkout) where a test can make the process
 * die on the spot, to prove that a retry or the recovery job completes the work exactly once.
 * `SHOPWRIGHT_FAILPOINTS=checkout.after_reserve` kills the process with SIGKILL on reaching that
 * point, as a power cut or an OOM kill would. Unset (always, outside those tests), it costs one
 * Set lookup. Pause points are their in-process kin: a test holds a request there while it stages a
 * race with another.
 */
const armed = new Set(
  (process.env.SHOPWRIGHT_FAILPOINTS ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean),
)

/** Dies here when this failpoint is armed. */
export function failpoint(name: string): void {
  if (armed.size > 0 && armed.has(name)) process.kill(process.pid, 'SIGKILL')
}

const pauses = new Map<string, () => Promise<void>>()

/**
 * Waits here while an in-process test holds this point (pauseAt): some races between requests
 * (which of two waiting transactions the database wakes first) cannot be staged with row locks
 * alone. Unheld, as always outside such tests, it costs one size check.
 */
export async function pausepoint(name: string): Promise<void> {
  if (pauses.size > 0) await pauses.get(name)?.()
}

/**
 * For in-process tests: whatever reaches pausepoint(name) awaits `hold` first, until the returned
 * function takes the hold away.
 */
export function pauseAt(name: string, hold: () => Promise<void>): () => void {
  pauses.set(name, hold)
  return () => {
    if (pauses.get(name) === hold) pauses.delete(name)
  }
}
