/**
 * Cursor pagination: `?limit=&cursor=` in, `{ data, next_cursor }` out. A cursor is the sort key of
 * the last row served, opaque to clients (base64url JSON); a cursor that does not decode to the
 * shape the list expects is a 400, never a 500.
 */
import { problem } from './errors.ts'

export type CursorKey = Array<string | number>

/** Encodes the sort key of the last row of a page. */
export function encodeCursor(key: CursorKey): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url')
}

/**
 * Decodes a cursor made by encodeCursor for a list whose key has the given element types; throws
 * `invalid_cursor` for anything else.
 */
export function decodeCursor(cursor: string, shape: Array<'string' | 'number'>): CursorKey {
  let key: unknown
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error('not base64url')
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
  } catch {
    throw problem('invalid_cursor', 'The cursor was not made by this API', {
      errors: [{ path: 'query.cursor', message: 'not a cursor from a previous page' }],
    })
  }
  const valid =
    Array.isArray(key) &&
    key.length === shape.length &&
    key.every(
      (part, i) =>
        typeof part === shape[i] &&
        // Every numeric key is an integer (amounts, counts, offsets); a string key never holds U+0000.
        (typeof part === 'number'
          ? Number.isSafeInteger(part)
          : part.length <= 1024 && !part.includes('\u0000')),
    )
  if (!valid) {
    throw problem('invalid_cursor', 'The cursor does not belong to this list', {
      errors: [{ path: 'query.cursor', message: 'not a cursor from this list' }],
    })
  }
  return key as CursorKey
}

/**
 * Turns `limit + 1` fetched rows into a page: the extra row only tells that there is a next page.
 */
export function toPage<T>(rows: T[], limit: number, keyOf: (row: T) => CursorKey) {
  const data = rows.slice(0, limit)
  const last = data[data.length - 1]
  return {
    data,
    next_cursor: rows.length > limit && last !== undefined ? encodeCursor(keyOf(last)) : null,
  }
}
