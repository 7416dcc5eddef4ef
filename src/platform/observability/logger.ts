/** Structured JSON logs (pino) with credentials redacted. */
import { type Logger, pino } from 'pino'

/** How often buffered log lines are written out when traffic is too light to fill the buffer. */
const FLUSH_MS = 1_000

/**
 * A pino logger at the given level that never writes credentials, to standard output. With
 * `bufferBytes` > 0, lines are written out in batches of that size (and at least once a second, and
 * on exit) rather than one system call each: a request log line per request cost a tenth of a
 * product page's CPU. A process killed outright loses what the buffer held.
 */
export function createLogger(level: string, bufferBytes = 0): Logger {
  return pino(
    {
      level,
      base: { service: 'shopwright' },
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.password'],
        censor: '[redacted]',
      },
    },
    bufferBytes > 0
      ? pino.destination({ dest: 1, sync: false, minLength: bufferBytes, periodicFlush: FLUSH_MS })
      : pino.destination({ dest: 1, sync: true }),
  )
}
