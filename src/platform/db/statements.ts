/**
 * Prepared statements on PostgreSQL connections. Parsing and planning a statement often costs more
 * than running it (a test-gateway read: 0.08 ms parse, 0.15 ms plan, 0.02 ms run), so each pooled
 * connection keeps the statements it runs repeatedly prepared, as pgx, asyncpg and postgres.js do
 * by default: the text is parsed once per connection and PostgreSQL may reuse its plan.
 */
import { createHash } from 'node:crypto'
import type pg from 'pg'

/**
 * Put first in a statement's SQL (`sql\`${sql.raw(PREPARE_MARK)} select …\``) to prepare it from its
 * first run rather than its second. Only for statements with a fixed text.
 */
export const PREPARE_MARK = '/* prepared */'

/**
 * Put first in a statement's SQL to keep it from being prepared: for statements whose best plan
 * depends on the values (a filter that matches five products or fifty thousand), where a cached
 * generic plan would be a slow one for some of them.
 */
export const UNPREPARED_MARK = '/* unprepared */'

/** Texts counted per connection before the count starts over: one-off texts must not pile up. */
const MAX_COUNTED = 1_000
/** Bulk statements (an import's batch of rows) are rarely the same twice and heavy to keep. */
const MAX_PARAMETERS = 100

/**
 * Errors after which a named statement must be prepared afresh: a table's columns changed under it
 * ("cached plan must not change result type"), or the server no longer has it.
 */
const STALE_STATEMENT = new Set(['0A000', '26000'])

/**
 * Makes client keep up to `capacity` statements prepared: marked ones (PREPARE_MARK) from their
 * first run, others with parameters from their second run on this connection (a text seen once
 * may never come again); 0 prepares none. A text without parameters goes by the simple protocol,
 * which also runs several statements in one text (migrations do). A statement whose prepared form
 * went stale fails once and is prepared again under a new name on its next run. Prepared
 * statements live as long as the connection (the pool bounds that).
 */
export function keepStatementsPrepared(client: pg.PoolClient | pg.Client, capacity: number): void {
  const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown> | undefined
  const names = new Map<string, string>()
  const seen = new Map<string, number>()
  // Names only need to be unique on this connection: a counter, never reused.
  let generation = 0
  ;(client as unknown as { query: (...args: unknown[]) => unknown }).query = (
    text: unknown,
    ...rest: unknown[]
  ) => {
    if (typeof text !== 'string' || typeof rest[0] === 'function') return query(text, ...rest)
    let name = names.get(text)
    if (!name) {
      if (!shouldPrepare(text, rest[0])) return query(text, ...rest)
      name = `sw_${generation++}`
      names.set(text, name)
    }
    const result = query({ name, text, values: rest[0] as unknown[] }, ...rest.slice(1))
    if (!(result instanceof Promise)) return result
    const prepared = name
    return result.catch((error: unknown) => {
      if (STALE_STATEMENT.has((error as { code?: string }).code ?? '') && names.get(text) === prepared) {
        // pg would skip the Parse of a name it saw parsed; a fresh name makes the next run parse again.
        names.set(text, `sw_${generation++}`)
      }
      throw error
    })
  }

  function shouldPrepare(text: string, values: unknown): boolean {
    if (names.size >= capacity) return false
    const start = text.trimStart()
    if (start.startsWith(PREPARE_MARK)) return true
    if (start.startsWith(UNPREPARED_MARK)) return false
    if (!Array.isArray(values) || values.length === 0 || values.length > MAX_PARAMETERS) return false
    const key = createHash('sha1').update(text).digest('base64')
    const count = (seen.get(key) ?? 0) + 1
    if (count < 2) {
      if (seen.size >= MAX_COUNTED) seen.clear()
      seen.set(key, count)
      return false
    }
    seen.delete(key)
    return true
  }
}
