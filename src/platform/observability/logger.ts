/** Structured JSON logs (pino) with credentials redacted. */
import { type Logger, pino } from 'pino'

/** How often buffered log lines are written out when traffic is too light to fill the buffer. */
const FLUSH_MS = 1_000

/** Buffers still alive, written out when the process exits (one listener for all of them). */
const buffers = new Set<WeakRef<{ flush(): void }>>()
let flushOnExit = false

/**
 * A pino logger at the given level that never writes credentials, to standard output, each line
 * at once (waiting for a reader that falls behind rather than dropping lines). With `bufferBytes`
 * > 0, lines are gathered and written in batches of about that size (and at least once a second,
 * and on exit) instead of one system call each: the request log line cost a tenth of a product
 * page's CPU. Batches can be lost when the process exits while its reader is behind (seen with a
 * stalled pipe; pino's own asynchronous and `minLength` modes lost lines there too), and a process
 * killed outright loses what the buffer held: an opt-in for throughput.
 */
export function createLogger(level: string, bufferBytes = 0): Logger {
  const destination = pino.destination({ dest: 1, sync: true })
  return pino(
    {
      level,
      base: { service: 'shopwright' },
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.password'],
        censor: '[redacted]',
      },
    },
    bufferBytes > 0 ? batched(destination, bufferBytes) : destination,
  )
}

/** Lines gathered into batches of about `bytes`, each written to `destination` in one call. */
function batched(destination: { write(chunk: string): unknown }, bytes: number) {
  let pending = ''
  const buffer = {
    write(line: string): void {
      pending += line
      if (pending.length >= bytes) buffer.flush()
    },
    flush(): void {
      if (!pending) return
      const chunk = pending
      pending = ''
      destination.write(chunk)
    },
  }
  setInterval(() => buffer.flush(), FLUSH_MS).unref()
  for (const ref of buffers) if (!ref.deref()) buffers.delete(ref)
  buffers.add(new WeakRef(buffer))
  if (!flushOnExit) {
    flushOnExit = true
    process.once('exit', () => {
      for (const ref of buffers) ref.deref()?.flush()
    })
  }
  return buffer
}
