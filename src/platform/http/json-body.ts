/**
 * What a JSON body may hold beyond JSON's own grammar, checked once as it is parsed, so that a body
 * no route could take is refused at the door with the path of the culprit rather than failing deep
 * inside a handler:
 * - nesting deeper than any route needs (free-form fields such as `metadata` would otherwise carry
 *   it into recursive code and PostgreSQL's jsonb parser, both of which run out of stack);
 * - text that is not Unicode or that PostgreSQL cannot store: JSON escapes can spell a lone
 *   surrogate (`"\ud800"`) or U+0000 (`"\u0000"`), which jsonb columns refuse, and which answers
 *   echoing the text could not be stored for idempotent replay either.
 */
import type { FieldError } from './errors.ts'

/** The deepest nesting of objects and arrays a body may have; the deepest route needs about 6. */
export const MAX_JSON_DEPTH = 32

/** The first part of a parsed body that no route takes, as a field error, or undefined. */
export function jsonBodyError(value: unknown, path = 'body', depth = 0): FieldError | undefined {
  if (typeof value === 'string') return textError(value, path)
  if (value === null || typeof value !== 'object') return undefined
  if (depth >= MAX_JSON_DEPTH) return { path, message: `is nested more than ${MAX_JSON_DEPTH} levels deep` }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = jsonBodyError(value[i], `${path}.${i}`, depth + 1)
      if (found) return found
    }
    return undefined
  }
  for (const key in value) {
    const keyError = textError(key, path)
    if (keyError) return { path, message: `has a property name that ${keyError.message}` }
    const found = jsonBodyError((value as Record<string, unknown>)[key], `${path}.${key}`, depth + 1)
    if (found) return found
  }
  return undefined
}

function textError(text: string, path: string): FieldError | undefined {
  if (text.includes('\u0000')) return { path, message: 'contains U+0000 (NUL)' }
  if (!text.isWellFormed()) return { path, message: 'contains a lone surrogate (not valid Unicode)' }
  return undefined
}
