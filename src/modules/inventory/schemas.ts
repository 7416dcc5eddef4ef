/** Wire schemas of the inventory API. */
import { Type } from 'typebox'
import { DateTimeInput } from '../../platform/http/schemas.ts'

const Country = Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2 country code' })
const Quantity = Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Whole units, at least 1' })
const Count = Type.Integer({ minimum: 0, maximum: 1_000_000_000 })
const Reference = Type.String({ minLength: 1, maxLength: 128, description: 'Order, cart, PO or document id' })
export const LocationId = Type.String({ pattern: '^loc_[0-9a-z]{26}$' })
const VariantId = Type.String({ pattern: '^var_[0-9a-z]{26}$' })
const Sku = Type.String({ minLength: 1, maxLength: 128 })

/** `sku` or `variant_id`: exactly one names the variant (checked by the service). */
const VariantRef = {
  sku: Type.Optional(Sku),
  variant_id: Type.Optional(VariantId),
}

export const Address = Type.Object(
  {
    line1: Type.Optional(Type.String({ maxLength: 255 })),
    line2: Type.Optional(Type.String({ maxLength: 255 })),
    city: Type.Optional(Type.String({ maxLength: 128 })),
    postal_code: Type.Optional(Type.String({ maxLength: 32 })),
    province: Type.Optional(Type.String({ maxLength: 128 })),
    country_code: Country,
  },
  { additionalProperties: false },
)

export const Location = Type.Object(
  {
    id: Type.String({ description: 'loc_…' }),
    code: Type.String(),
    name: Type.String(),
    priority: Type.Integer({ description: 'Lower numbers are allocated from first' }),
    address: Address,
    ships_to: Type.Array(Type.String(), { description: 'Countries served; empty means everywhere' }),
    active: Type.Boolean(),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'InventoryLocation' },
)

const locationFields = {
  code: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9_-]*$' }),
  name: Type.String({ minLength: 1, maxLength: 255 }),
  priority: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  address: Address,
  ships_to: Type.Array(Country, { maxItems: 250 }),
  active: Type.Boolean(),
}

export const CreateLocation = Type.Object(
  {
    code: locationFields.code,
    name: locationFields.name,
    priority: Type.Optional(locationFields.priority),
    address: locationFields.address,
    ships_to: Type.Optional(locationFields.ships_to),
    active: Type.Optional(locationFields.active),
  },
  { additionalProperties: false },
)

export const UpdateLocation = Type.Object(
  {
    code: Type.Optional(locationFields.code),
    name: Type.Optional(locationFields.name),
    priority: Type.Optional(locationFields.priority),
    address: Type.Optional(locationFields.address),
    ships_to: Type.Optional(locationFields.ships_to),
    active: Type.Optional(locationFields.active),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const LocationParams = Type.Object({ id: LocationId })

export const Level = Type.Object(
  {
    variant_id: Type.String(),
    sku: Type.Union([Type.String(), Type.Null()]),
    location_id: Type.String(),
    on_hand: Type.Integer(),
    reserved: Type.Integer(),
    available: Type.Integer({ description: 'on_hand − reserved' }),
    safety_stock: Type.Integer(),
    sellable: Type.Integer({ description: 'available − safety_stock' }),
    low_stock_threshold: Type.Union([Type.Integer(), Type.Null()]),
    low_stock: Type.Boolean(),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'InventoryLevel' },
)

export const LevelQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    ...VariantRef,
    location_id: Type.Optional(LocationId),
    low_stock: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)

export const ConfigureLevel = Type.Object(
  {
    ...VariantRef,
    location_id: LocationId,
    safety_stock: Type.Optional(Count),
    low_stock_threshold: Type.Optional(Type.Union([Count, Type.Null()])),
  },
  { additionalProperties: false },
)

export const Policy = Type.Object(
  {
    variant_id: Type.String(),
    allow_backorder: Type.Boolean(),
    preorder: Type.Boolean(),
    backorder_limit: Type.Union([Type.Integer(), Type.Null()]),
    preorder_available_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { $id: 'InventoryPolicy' },
)

export const UpdatePolicy = Type.Object(
  {
    allow_backorder: Type.Optional(Type.Boolean()),
    preorder: Type.Optional(Type.Boolean()),
    backorder_limit: Type.Optional(Type.Union([Count, Type.Null()])),
    preorder_available_at: Type.Optional(Type.Union([DateTimeInput(), Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const VariantParams = Type.Object({
  ref: Type.String({ minLength: 1, maxLength: 128, description: 'Variant id (var_…) or SKU' }),
})

export const MovementResult = Type.Object({
  operation_id: Type.String(),
  levels: Type.Array(Type.Ref('InventoryLevel')),
})

export const Receipt = Type.Object(
  {
    location_id: LocationId,
    lines: Type.Array(Type.Object({ ...VariantRef, quantity: Quantity }, { additionalProperties: false }), {
      minItems: 1,
      maxItems: 500,
    }),
    reference: Type.Optional(Reference),
  },
  { additionalProperties: false },
)

export const Adjustment = Type.Object(
  {
    ...VariantRef,
    location_id: LocationId,
    delta: Type.Integer({ minimum: -1_000_000, maximum: 1_000_000, not: { const: 0 } }),
    reason: Type.String({ minLength: 1, maxLength: 255, description: 'damaged, found, shrinkage, …' }),
    reference: Type.Optional(Reference),
  },
  { additionalProperties: false },
)

export const Return = Type.Object(
  {
    ...VariantRef,
    location_id: LocationId,
    quantity: Quantity,
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    reference: Type.Optional(Reference),
  },
  { additionalProperties: false },
)

export const Transfer = Type.Object(
  {
    ...VariantRef,
    from_location_id: LocationId,
    to_location_id: LocationId,
    quantity: Quantity,
    reference: Type.Optional(Reference),
  },
  { additionalProperties: false },
)

export const Counts = Type.Object(
  {
    counts: Type.Array(
      Type.Object(
        { ...VariantRef, location_id: LocationId, counted: Count },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 1000 },
    ),
    reference: Type.Optional(Reference),
  },
  { additionalProperties: false },
)

export const CountsImportQuery = Type.Object(
  { reference: Type.Optional(Reference) },
  { additionalProperties: false },
)

const Strategy = Type.Union([
  Type.Literal('priority'),
  Type.Literal('nearest'),
  Type.Literal('fewest_splits'),
])
const ReservationStatus = Type.Union([
  Type.Literal('active'),
  Type.Literal('committed'),
  Type.Literal('released'),
  Type.Literal('expired'),
])

export const CreateReservation = Type.Object(
  {
    lines: Type.Array(Type.Object({ ...VariantRef, quantity: Quantity }, { additionalProperties: false }), {
      minItems: 1,
      maxItems: 500,
    }),
    reference: Reference,
    expires_at: Type.Optional(Type.Union([DateTimeInput(), Type.Null()])),
    country: Type.Optional(Country),
    strategy: Type.Optional(Strategy),
  },
  { additionalProperties: false },
)

export const Reservation = Type.Object(
  {
    id: Type.String({ description: 'res_…' }),
    reference: Type.String(),
    status: ReservationStatus,
    expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    country_code: Type.Union([Type.String(), Type.Null()]),
    strategy: Type.String(),
    created_by: Type.String(),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
    lines: Type.Array(
      Type.Object({
        id: Type.String(),
        variant_id: Type.String(),
        location_id: Type.String(),
        quantity: Type.Integer(),
        backordered: Type.Integer(),
      }),
    ),
  },
  { $id: 'InventoryReservation' },
)

export const ReservationParams = Type.Object({ id: Type.String({ pattern: '^res_[0-9a-z]{26}$' }) })

export const ReservationQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    status: Type.Optional(ReservationStatus),
    reference: Type.Optional(Reference),
    ...VariantRef,
  },
  { additionalProperties: false },
)

const MovementKind = Type.Union(
  ['receipt', 'adjustment', 'transfer', 'sale', 'return', 'cycle_count', 'reservation', 'release'].map((k) =>
    Type.Literal(k),
  ),
)

export const Movement = Type.Object(
  {
    id: Type.String({ description: 'mov_…' }),
    operation_id: Type.String({ description: 'Shared by the movements one operation wrote' }),
    variant_id: Type.String(),
    location_id: Type.String(),
    kind: MovementKind,
    on_hand_delta: Type.Integer(),
    reserved_delta: Type.Integer(),
    reason: Type.Union([Type.String(), Type.Null()]),
    reference: Type.Union([Type.String(), Type.Null()]),
    reservation_id: Type.Union([Type.String(), Type.Null()]),
    actor: Type.String(),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'InventoryMovement' },
)

export const MovementQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    ...VariantRef,
    location_id: Type.Optional(LocationId),
    kind: Type.Optional(MovementKind),
    reference: Type.Optional(Reference),
    reservation_id: Type.Optional(Type.String({ pattern: '^res_[0-9a-z]{26}$' })),
    since: Type.Optional(DateTimeInput()),
    until: Type.Optional(DateTimeInput()),
  },
  { additionalProperties: false },
)

export const DriftReport = Type.Object({
  checked: Type.Integer({ description: 'Levels compared' }),
  drift: Type.Array(
    Type.Object({
      variant_id: Type.String(),
      location_id: Type.String(),
      on_hand: Type.Integer(),
      reserved: Type.Integer(),
      ledger_on_hand: Type.Integer(),
      ledger_reserved: Type.Integer(),
      reservations_reserved: Type.Integer(),
    }),
  ),
})

export const StreamQuery = Type.Object(
  { variant_id: Type.Optional(VariantId), location_id: Type.Optional(LocationId) },
  { additionalProperties: false },
)
