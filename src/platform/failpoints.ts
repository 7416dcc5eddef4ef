/**
 * Failpoints: named places in a multi-step operation (checkout) where a test can make the process
 * die on the spot, to prove that a retry or the recovery job completes the work exactly once.
 * `SHOPWRIGHT_FAILPOINTS=checkout.after_reserve` kills the process with SIGKILL on reaching that
 * point, as a power cut or an OOM kill would. Unset (always, outside those tests), it costs one
 * Set lookup.
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
