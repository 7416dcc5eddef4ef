/** Schemas shared by every route: the problem document, list envelopes, money, ids. */
import { type TSchema, Type } from 'typebox'

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
