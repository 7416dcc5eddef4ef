/** Wire schemas of the cart and shipping-option APIs. */
import { Type } from 'typebox'

const Country = Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2 country code' })
export const CartId = Type.String({ pattern: '^cart_[0-9a-z]{26}$' })
const VariantId = Type.String({ pattern: '^var_[0-9a-z]{26}$' })
const LineId = Type.String({ pattern: '^cali_[0-9a-z]{26}$' })
const Quantity = Type.Integer({
  minimum: 1,
  maximum: 1000,
  description: 'Whole units, 1 to 1000 (a variant may allow fewer)',
})
const Metadata = Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 50 })
const Loose = Type.Object({}, { additionalProperties: true })

export const AddressInput = Type.Object(
  {
    first_name: Type.Optional(Type.String({ maxLength: 128 })),
    last_name: Type.Optional(Type.String({ maxLength: 128 })),
    company: Type.Optional(Type.String({ maxLength: 255 })),
    line1: Type.String({ minLength: 1, maxLength: 255 }),
    line2: Type.Optional(Type.String({ maxLength: 255 })),
    city: Type.String({ minLength: 1, maxLength: 128 }),
    postal_code: Type.Optional(Type.String({ maxLength: 32 })),
    region: Type.Optional(
      Type.String({ pattern: '^[A-Z0-9]{1,3}$', description: 'ISO 3166-2 subdivision: CA, QC, NSW' }),
    ),
    country_code: Country,
    phone: Type.Optional(Type.String({ maxLength: 32 })),
  },
  { additionalProperties: false },
)

export const CartParams = Type.Object({ id: CartId }, { additionalProperties: false })
export const CartLineParams = Type.Object({ id: CartId, line_id: LineId }, { additionalProperties: false })
export const CartCodeParams = Type.Object(
  { id: CartId, code: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
)

const LineInput = Type.Object({ variant_id: VariantId, quantity: Quantity }, { additionalProperties: false })

export const CreateCart = Type.Object(
  {
    region_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    country_code: Type.Optional(Country),
    email: Type.Optional(Type.String({ format: 'email', maxLength: 254 })),
    lines: Type.Optional(Type.Array(LineInput, { maxItems: 100 })),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
)

export const UpdateCart = Type.Object(
  {
    email: Type.Optional(Type.Union([Type.String({ format: 'email', maxLength: 254 }), Type.Null()])),
    shipping_address: Type.Optional(Type.Union([AddressInput, Type.Null()])),
    billing_address: Type.Optional(Type.Union([AddressInput, Type.Null()])),
    shipping_option_id: Type.Optional(
      Type.Union([Type.String({ pattern: '^so_[0-9a-z]{26}$' }), Type.Null()]),
    ),
    vat_id: Type.Optional(Type.Union([Type.String({ minLength: 4, maxLength: 20 }), Type.Null()])),
    is_business: Type.Optional(Type.Boolean()),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const AddLine = LineInput
export const UpdateLine = Type.Object({ quantity: Quantity }, { additionalProperties: false })
export const AddPromotion = Type.Object(
  { code: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }) },
  { additionalProperties: false },
)

export const CompleteCart = Type.Object(
  {
    payment: Type.Object(
      {
        provider: Type.String({ minLength: 1, maxLength: 32, description: 'test, manual or stripe' }),
        payment_method: Type.Optional(
          Type.String({
            minLength: 1,
            maxLength: 255,
            description: 'A processor token such as pm_card_visa',
          }),
        ),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
)

const CartLine = Type.Object({
  id: Type.String(),
  variant_id: Type.String(),
  product_id: Type.String(),
  sku: Type.String(),
  title: Type.String(),
  product_title: Type.String(),
  quantity: Type.Integer(),
  unit_amount: Type.Integer({ description: 'Minor units, on the region basis (tax included or not)' }),
  compare_at_amount: Type.Union([Type.Integer(), Type.Null()]),
  price_list_id: Type.Union([Type.String(), Type.Null()]),
  tax_category: Type.String(),
  weight_g: Type.Union([Type.Integer(), Type.Null()]),
  manage_inventory: Type.Boolean(),
  requires_shipping: Type.Boolean({ description: 'False for goods delivered without a parcel' }),
  subtotal: Type.Integer(),
  discount_amount: Type.Integer(),
  tax_amount: Type.Integer(),
  total: Type.Integer(),
  taxes: Type.Array(Loose),
})

export const Cart = Type.Object(
  {
    id: Type.String(),
    status: Type.String(),
    region_id: Type.String(),
    currency: Type.String(),
    prices_include_tax: Type.Boolean(),
    customer_id: Type.Union([Type.String(), Type.Null()]),
    email: Type.Union([Type.String(), Type.Null()]),
    shipping_address: Type.Union([Loose, Type.Null()]),
    billing_address: Type.Union([Loose, Type.Null()]),
    vat_id: Type.Union([Type.String(), Type.Null()]),
    is_business: Type.Boolean(),
    shipping_option_id: Type.Union([Type.String(), Type.Null()]),
    promo_codes: Type.Array(Type.String()),
    lines: Type.Array(CartLine),
    shipping: Type.Union([Loose, Type.Null()]),
    taxes: Type.Array(Loose),
    totals: Type.Object({
      item_count: Type.Integer(),
      subtotal: Type.Integer(),
      discount_total: Type.Integer(),
      shipping_total: Type.Integer(),
      tax_total: Type.Integer(),
      total: Type.Integer(),
      tax_pending: Type.Boolean({ description: 'No destination yet: tax is not computed' }),
      tax_provider: Type.Union([Type.String(), Type.Null()]),
      tax_notes: Type.Array(Type.String()),
      date_of_supply: Type.String(),
    }),
    order_id: Type.Union([Type.String(), Type.Null()]),
    payment_id: Type.Union([Type.String(), Type.Null()]),
    metadata: Loose,
    notices: Type.Array(Type.String()),
    version: Type.Integer(),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Cart' },
)

const WeightTier = Type.Object(
  {
    max_weight_g: Type.Union([Type.Integer({ minimum: 1, maximum: 10_000_000 }), Type.Null()]),
    amount: Type.Integer({ minimum: 0, maximum: 100_000_000 }),
  },
  { additionalProperties: false },
)

const ShippingFields = {
  region_id: Type.String({ minLength: 1, maxLength: 64 }),
  name: Type.String({ minLength: 1, maxLength: 128 }),
  price_type: Type.Union([Type.Literal('flat'), Type.Literal('weight'), Type.Literal('calculated')]),
  amount: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 100_000_000 }), Type.Null()])),
  tiers: Type.Optional(Type.Array(WeightTier, { maxItems: 50 })),
  free_above_amount: Type.Optional(
    Type.Union([Type.Integer({ minimum: 0, maximum: 1_000_000_000 }), Type.Null()]),
  ),
  tax_category: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  provider: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()])),
  active: Type.Optional(Type.Boolean()),
  metadata: Type.Optional(Metadata),
}

export const CreateShippingOption = Type.Object(ShippingFields, { additionalProperties: false })
export const UpdateShippingOption = Type.Partial(
  Type.Object(ShippingFields, { additionalProperties: false }),
  {
    additionalProperties: false,
    minProperties: 1,
  },
)

export const ShippingOption = Type.Object(
  {
    id: Type.String(),
    region_id: Type.String(),
    name: Type.String(),
    price_type: Type.String(),
    amount: Type.Union([Type.Integer(), Type.Null()]),
    tiers: Type.Array(Loose),
    free_above_amount: Type.Union([Type.Integer(), Type.Null()]),
    tax_category: Type.String(),
    provider: Type.Union([Type.String(), Type.Null()]),
    active: Type.Boolean(),
    metadata: Loose,
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'ShippingOption' },
)

/** A shipping option as a cart sees it: priced for that cart. */
export const CartShippingOption = Type.Object({
  id: Type.String(),
  name: Type.String(),
  price_type: Type.String(),
  amount: Type.Integer({ description: 'For this cart, in minor units' }),
  tax_category: Type.String(),
})

export const ShippingOptionParams = Type.Object(
  { id: Type.String({ pattern: '^so_[0-9a-z]{26}$' }) },
  { additionalProperties: false },
)
export const ShippingOptionQuery = Type.Object(
  { region_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) },
  { additionalProperties: false },
)

export const PurchaseLimitParams = Type.Object({ variant_id: VariantId }, { additionalProperties: false })
export const PurchaseLimitInput = Type.Object(
  {
    max_per_line: Type.Union([Type.Integer({ minimum: 1, maximum: 1000 }), Type.Null()]),
    max_per_customer: Type.Union([Type.Integer({ minimum: 1, maximum: 1_000_000 }), Type.Null()]),
  },
  { additionalProperties: false },
)
export const PurchaseLimit = Type.Object({
  variant_id: Type.String(),
  max_per_line: Type.Union([Type.Integer(), Type.Null()]),
  max_per_customer: Type.Union([Type.Integer(), Type.Null()]),
})
