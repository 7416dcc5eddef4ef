/** Schemas shared by every route: the problem document, list envelopes, money, ids. */
import { type TSchema, Type } from 'typebox'

/**
 * An RFC 3339 date-time a client sends, limited to what PostgreSQL stores and JavaScript's Date
 * reads: no year 0000, offsets up to ±15:59 (RFC 3339 allows ±23:59) and no leap second (`:60`,
 * which Date cannot represent).
 */
export function DateTimeInput(options: { description?: string } = {}) {
  return Type.String({
    format: 'date-time',
    pattern:
      '^(?!0000)(?!\\d{4}-\\d\\d-\\d\\d[Tt\\s]\\d\\d:\\d\\d:60)[\\s\\S]*(?:[Zz]|[+-](?:0\\d|1[0-5]):?[0-5]\\d)$',
    ...options,
  })
}

export const FieldErrorSchema = Type.Object({ path: Type.String(), message: Type.String() })

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(FieldErrorSchema)),
  },
  { $id: 'Problem', description: 'RFC 9457 problem document with a stable `code`' },
)

/** `{ data: [...], next_cursor }`, the envelope of every list. */
export function ListOf<T extends TSchema>(item: T) {
  return Type.Object({
    data: Type.Array(item),
    next_cursor: Type.Union([Type.String(), Type.Null()]),
  })
}

export const ListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
)

/** Common error responses, referenced from each route's `response`. */
export const errorResponses = {
  '4xx': Type.Ref('Problem'),
  '5xx': Type.Ref('Problem'),
}
