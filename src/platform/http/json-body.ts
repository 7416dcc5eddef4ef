/**
 * What a JSON body may hold beyond JSON's own grammar, checked once as it is parsed, so that a body
 * no route could take is refused at the door with the path of the culprit rather than failing deep
 * inside a handler:
 * - nesting deeper than any route needs (free-form fields such as `metadata` would otherwise carry
 *   it into recursive code and PostgreSQL's jsonb parser, both of which run out of stack);
 * - text that is not Unicode or that PostgreSQL cannot store: JSON escapes can spell a lone
 *   surrogate (`"\ud800"`) or U+0000 (`"\u0000"`), which jsonb columns refuse, and which answers
 *   echoing the text could not be stored for idempotent replay either.
 * The same rules hold for documents that arrive inside files (product imports).
 */
import type { FieldError } from './errors.ts'

/** The deepest nesting of objects and arrays a body may have; the deepest route needs about 6. */
export const MAX_JSON_DEPTH = 32

/** Where in a document a rule is broken (property names and array indexes), and how. */
export interface DocumentFault {
  segments: string[]
  message: string
}

/** The first part of a parsed body that no route takes, as a field error under `body`, or undefined. */
export function jsonBodyError(value: unknown): FieldError | undefined {
  const fault = jsonDocumentFault(value)
  return fault && { path: ['body', ...fault.segments].join('.'), message: fault.message }
}

/** The first part of a parsed JSON document that breaks the rules above, or undefined. */
export function jsonDocumentFault(value: unknown, segments: string[] = []): DocumentFault | undefined {
  const fault = faultIn(value, segments.length)
  return fault && { ...fault, segments: [...segments, ...fault.segments] }
}

/**
 * The walk behind jsonDocumentFault. It runs over every node of every body and of every imported
 * document, so the path is built only on the way back from a fault, not copied at every step.
 */
function faultIn(value: unknown, depth: number): DocumentFault | undefined {
  if (typeof value === 'string') return textFault(value, [])
  if (value === null || typeof value !== 'object') return undefined
  if (depth >= MAX_JSON_DEPTH)
    return { segments: [], message: `is nested more than ${MAX_JSON_DEPTH} levels deep` }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = faultIn(value[i], depth + 1)
      if (found) {
        found.segments.unshift(String(i))
        return found
      }
    }
    return undefined
  }
  for (const key in value) {
    const keyFault = textFault(key, [])
    if (keyFault) return { segments: [], message: `has a property name that ${keyFault.message}` }
    const found = faultIn((value as Record<string, unknown>)[key], depth + 1)
    if (found) {
      found.segments.unshift(key)
      return found
    }
  }
  return undefined
}

function textFault(text: string, segments: string[]): DocumentFault | undefined {
  if (text.includes('\u0000')) return { segments, message: 'contains U+0000 (NUL)' }
  if (!text.isWellFormed()) return { segments, message: 'contains a lone surrogate (not valid Unicode)' }
  return undefined
}
