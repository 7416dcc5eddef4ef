/** Structured JSON logs (pino) with credentials redacted. */
import { type Logger, pino } from 'pino'

/** A pino logger at the given level that never writes credentials. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'shopwright' },
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.password'],
      censor: '[redacted]',
    },
  })
}
