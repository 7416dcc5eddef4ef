/** Wire schemas of the orders API (admin and store). */
import { Type } from 'typebox'
import { DateTimeInput } from '../../platform/http/schemas.ts'
import { OPTIONAL_BODY } from '../../platform/http/strict-input.ts'
import { ORDER_STATUSES } from './state.ts'

const Amount = Type.Integer({ description: 'In the currency’s minor unit' })
const PositiveAmount = Type.Integer({ minimum: 1, maximum: 1_000_000_000_000, description: 'In minor units' })
const Timestamp = Type.String({ format: 'date-time' })
const NullableString = Type.Union([Type.String(), Type.Null()])
export const OrderId = Type.String({ pattern: '^ord_[0-9a-z]{26}$', description: 'ord_…' })
const OrderLineId = Type.String({ minLength: 1, maxLength: 64, description: 'ordl_…' })
const Reason = Type.String({ minLength: 1, maxLength: 1000 })

export const OrderStatusSchema = Type.Union(ORDER_STATUSES.map((s) => Type.Literal(s)))

const OrderAddress = Type.Object(
  {
    first_name: Type.Optional(Type.String()),
    last_name: Type.Optional(Type.String()),
    company: Type.Optional(Type.String()),
    line1: Type.String(),
    line2: Type.Optional(Type.String()),
    city: Type.String(),
    postal_code: Type.Optional(Type.String()),
    region: Type.Optional(Type.String()),
    country_code: Type.String(),
    phone: Type.Optional(Type.String()),
  },
  { $id: 'OrderAddress' },
)

const OrderLine = Type.Object({
  id: Type.String({ description: 'ordl_…' }),
  variant_id: Type.String(),
  product_id: Type.String(),
  sku: Type.String(),
  title: Type.String(),
  product_title: Type.String(),
  quantity: Type.Integer(),
  unit_amount: Amount,
  subtotal: Amount,
  discount_amount: Amount,
  tax_amount: Amount,
  total: Amount,
  taxes: Type.Array(Type.Unknown()),
  tax_category: Type.String(),
  fulfilled_quantity: Type.Integer(),
  refunded_quantity: Type.Integer(),
  refunded_amount: Amount,
})

const orderFields = {
  id: Type.String({ description: 'ord_…' }),
  number: Type.Integer({ description: 'The human order number, gapless' }),
  cart_id: Type.String(),
  status: OrderStatusSchema,
  payment_status: Type.String(),
  fulfillment_status: Type.String(),
  customer_id: NullableString,
  email: Type.String(),
  region_id: Type.String(),
  currency: Type.String(),
  prices_include_tax: Type.Boolean(),
  shipping_address: Type.Union([Type.Ref('OrderAddress'), Type.Null()], {
    description: 'Null when nothing in the order is shipped',
  }),
  billing_address: Type.Union([Type.Ref('OrderAddress'), Type.Null()]),
  shipping_method: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  lines: Type.Array(OrderLine),
  totals: Type.Object({
    subtotal: Amount,
    discount: Amount,
    shipping: Amount,
    tax: Amount,
    total: Amount,
    refunded: Amount,
  }),
  taxes: Type.Array(Type.Unknown()),
  payment_id: NullableString,
  reservation_id: NullableString,
  promo_codes: Type.Array(Type.String()),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  placed_at: Timestamp,
  canceled_at: Type.Union([Timestamp, Type.Null()]),
  updated_at: Timestamp,
}

/** An order as the store and the back office see it. */
export const OrderSchema = Type.Object(orderFields, { $id: 'Order' })

export const OrderNote = Type.Object(
  {
    id: Type.String({ description: 'onote_…' }),
    order_id: Type.String(),
    author: Type.String({ description: '`<principal kind>:<id>` of who wrote it' }),
    body: Type.String(),
    created_at: Timestamp,
  },
  { $id: 'OrderNote' },
)

const OrderTransition = Type.Object({
  id: Type.String(),
  from: Type.Union([OrderStatusSchema, Type.Null()]),
  to: OrderStatusSchema,
  actor: Type.String(),
  reason: NullableString,
  at: Timestamp,
})

/** An order with its history and staff notes (admin only). */
export const OrderDetail = Type.Object(
  {
    ...orderFields,
    transitions: Type.Array(OrderTransition),
    notes: Type.Array(Type.Ref('OrderNote')),
  },
  { $id: 'OrderDetail' },
)

/** Every schema the order plugins reference, to add to each plugin's scope. */
export const orderSchemas = [OrderAddress, OrderSchema, OrderNote, OrderDetail]

export const OrderParams = Type.Object({ id: OrderId }, { additionalProperties: false })

const filterFields = {
  status: Type.Optional(OrderStatusSchema),
  payment_status: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  fulfillment_status: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  customer_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  email: Type.Optional(Type.String({ minLength: 1, maxLength: 320, description: 'Exact, case-insensitive' })),
  q: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 320,
      description: 'An order number (digits, optionally with a leading #) or the start of an email',
    }),
  ),
  placed_after: Type.Optional(DateTimeInput({ description: 'Placed at or after' })),
  placed_before: Type.Optional(DateTimeInput({ description: 'Placed before' })),
}

export const AdminOrderQuery = Type.Object(
  {
    ...filterFields,
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
)

export const OrderExportQuery = Type.Object(filterFields, { additionalProperties: false })

export const StoreOrderQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
)

export const CreateNote = Type.Object(
  { body: Type.String({ minLength: 1, maxLength: 5000 }) },
  { additionalProperties: false },
)

export const CreateTransition = Type.Object(
  {
    to: OrderStatusSchema,
    reason: Type.Optional(Reason),
  },
  { additionalProperties: false },
)

export const CancelOrder = Type.Object(
  { reason: Type.Optional(Reason) },
  // No body is an empty one (the route's emptyWhenMissing).
  { additionalProperties: false, [OPTIONAL_BODY]: true },
)

const AmountRefund = Type.Object(
  { amount: PositiveAmount, reason: Type.Optional(Reason) },
  { additionalProperties: false, title: 'By amount' },
)

const LinesRefund = Type.Object(
  {
    lines: Type.Array(
      Type.Object(
        { line_id: OrderLineId, quantity: Type.Integer({ minimum: 1, maximum: 1_000_000 }) },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 200 },
    ),
    include_shipping: Type.Optional(Type.Boolean()),
    reason: Type.Optional(Reason),
  },
  { additionalProperties: false, title: 'By line' },
)

export const CreateRefund = Type.Union([AmountRefund, LinesRefund])

export const OrderRefundResult = Type.Object({
  refund: Type.Object({
    id: Type.String(),
    amount: Amount,
    currency: Type.String(),
    status: Type.String(),
    reason: NullableString,
    lines: Type.Array(Type.Object({ line_id: Type.String(), quantity: Type.Integer(), amount: Amount })),
    shipping_amount: Amount,
  }),
  order: Type.Ref('Order'),
})
