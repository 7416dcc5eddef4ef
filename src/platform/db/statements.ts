/**
 * Prepared statements on PostgreSQL connections. Parsing and planning a statement often costs more
 * than running it (a checkout's 38 statements spent twice as long there as executing), so each
 * pooled connection keeps the statements it runs repeatedly prepared, as pgx, asyncpg and
 * postgres.js do by default: the text is parsed once per connection and PostgreSQL may reuse its
 * plan. Statements with a fixed text come from the code's query shapes, so a few hundred cover
 * every hot path.
 */
import { createHash } from 'node:crypto'
import type pg from 'pg'

/**
 * Put first in a statement's SQL (`sql\`${sql.raw(PREPARE_MARK)} select …\``) to keep it prepared from
 * its first run, whatever the cache's size. Only for statements with a fixed text.
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

/**
 * Makes client keep statements prepared: those marked with PREPARE_MARK from their first run, and
 * up to `capacity` others from their second run on this connection (a text seen once may never come
 * again). Only statements with parameters are candidates: a text without them goes by the simple
 * protocol, which also runs several statements in one text (migrations do). Prepared statements
 * live as long as the connection; the pool closes idle connections, which frees them.
 */
export function keepStatementsPrepared(client: pg.PoolClient | pg.Client, capacity: number): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown
  const names = new Map<string, string>()
  const seen = new Map<string, number>()
  let automatic = 0
  ;(client as unknown as { query: (...args: unknown[]) => unknown }).query = (
    text: unknown,
    ...rest: unknown[]
  ) => {
    if (typeof text !== 'string') return query(text, ...rest)
    let name = names.get(text)
    if (!name) {
      if (!shouldPrepare(text, rest[0])) return query(text, ...rest)
      name = `sw_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`
      names.set(text, name)
    }
    return query({ name, text, values: rest[0] as unknown[] }, ...rest.slice(1))
  }

  function shouldPrepare(text: string, values: unknown): boolean {
    const marked = text.trimStart()
    if (marked.startsWith(PREPARE_MARK)) return true
    if (automatic >= capacity || marked.startsWith(UNPREPARED_MARK)) return false
    if (!Array.isArray(values) || values.length === 0) return false
    const count = (seen.get(text) ?? 0) + 1
    if (count < 2) {
      if (seen.size >= MAX_COUNTED) seen.clear()
      seen.set(text, count)
      return false
    }
    seen.delete(text)
    automatic++
    return true
  }
}
