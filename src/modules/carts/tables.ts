/** Row types of the tables the carts module owns. */
import type { ColumnType, Generated } from 'kysely'

type Json<T> = ColumnType<T, string | undefined, string>
type NullableJson<T> = ColumnType<T | null, string | null | undefined, string | null>
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
type Amount = ColumnType<number, number, number>

export type CartStatus = 'active' | 'completing' | 'completed' | 'merged' | 'expired'

export interface Address {
  first_name?: string
  last_name?: string
  company?: string
  line1: string
  line2?: string
  city: string
  postal_code?: string
  /** ISO 3166-2 subdivision code without the country prefix: "CA", "QC", "NSW". */
  region?: string
  country_code: string
  phone?: string
}

/** A line as the cart stores it: the price and product facts resolved at the last change. */
export interface CartLine {
  id: string
  variant_id: string
  product_id: string
  sku: string
  title: string
  product_title: string
  quantity: number
  unit_amount: number
  compare_at_amount: number | null
  price_list_id: string | null
  tax_category: string
  weight_g: number | null
  manage_inventory: boolean
  /** False for goods delivered without a parcel; absent on lines written before it existed (true). */
  requires_shipping?: boolean
}

export interface CartsTable {
  id: string
  status: Generated<CartStatus>
  region_id: string
  currency_code: string
  prices_include_tax: boolean
  customer_id: string | null
  email: string | null
  shipping_address: NullableJson<Address>
  billing_address: NullableJson<Address>
  vat_id: string | null
  is_business: Generated<boolean>
  shipping_option_id: string | null
  promo_codes: ColumnType<string[], string[] | undefined, string[]>
  lines: Json<CartLine[]>
  totals: Json<Record<string, unknown>>
  version: Generated<number>
  payment_id: string | null
  reservation_id: string | null
  checkout: NullableJson<Record<string, unknown>>
  checkout_lease_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  order_id: string | null
  metadata: Json<Record<string, unknown>>
  created_at: Generated<Date>
  updated_at: Timestamp
}

export interface WeightTier {
  /** Carts up to this weight in grams pay `amount`; null is the last, open-ended tier. */
  max_weight_g: number | null
  amount: number
}

export interface ShippingOptionsTable {
  id: string
  region_id: string
  name: string
  price_type: 'flat' | 'weight' | 'calculated'
  amount: Amount | null
  tiers: Json<WeightTier[]>
  free_above_amount: Amount | null
  tax_category: Generated<string>
  provider: string | null
  active: Generated<boolean>
  metadata: Json<Record<string, unknown>>
  created_at: Generated<Date>
  updated_at: Timestamp
}

export interface PurchaseLimitsTable {
  variant_id: string
  max_per_line: number | null
  max_per_customer: number | null
  updated_at: Timestamp
}

export interface CartsTables {
  carts: CartsTable
  shipping_options: ShippingOptionsTable
  purchase_limits: PurchaseLimitsTable
}
