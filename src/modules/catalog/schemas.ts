/** Wire schemas of the catalog API. */
import { Type } from 'typebox'

export const Handle = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[a-z0-9]+(?:-[a-z0-9]+)*$',
  description: 'URL slug: lowercase letters, digits and single hyphens',
})

export const ProductStatus = Type.Union([
  Type.Literal('draft'),
  Type.Literal('published'),
  Type.Literal('archived'),
])

export const Product = Type.Object(
  {
    id: Type.String({ description: 'prod_…' }),
    handle: Type.String(),
    title: Type.String(),
    description: Type.String(),
    status: ProductStatus,
    metadata: Type.Record(Type.String(), Type.Unknown()),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Product' },
)

export const CreateProduct = Type.Object(
  {
    handle: Handle,
    title: Type.String({ minLength: 1, maxLength: 255 }),
    description: Type.Optional(Type.String({ maxLength: 20_000 })),
    status: Type.Optional(ProductStatus),
    metadata: Type.Optional(
      Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 50 }),
    ),
  },
  { additionalProperties: false },
)

export const UpdateProduct = Type.Object(
  {
    handle: Type.Optional(Handle),
    title: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    description: Type.Optional(Type.String({ maxLength: 20_000 })),
    status: Type.Optional(ProductStatus),
    metadata: Type.Optional(
      Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 50 }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const ProductIdParams = Type.Object({ id: Type.String({ pattern: '^prod_[0-9a-z]{26}$' }) })
export const ProductRefParams = Type.Object({ ref: Type.String({ minLength: 1, maxLength: 128 }) })
