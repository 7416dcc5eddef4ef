/**
 * Shipping options and their prices for a cart: flat, by weight tier, or calculated by a carrier
 * through a rate provider; any of them free once the cart's item subtotal reaches a threshold.
 * Each option has a tax category, so shipping is taxed as the destination taxes it.
 */
import { type Selectable, sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import { lockTaxCategories } from '../tax/service.ts'
import type { ShippingOptionsTable, WeightTier } from './tables.ts'

export interface ShippingOptionView {
  id: string
  region_id: string
  name: string
  price_type: 'flat' | 'weight' | 'calculated'
  amount: number | null
  tiers: WeightTier[]
  free_above_amount: number | null
  tax_category: string
  provider: string | null
  active: boolean
  metadata: Record<string, unknown>
  created_at: string
  updated_at: string
}

export type ShippingOptionRow = Selectable<ShippingOptionsTable>

/** What a carrier needs to quote: the parcel and where it goes. */
export interface RateRequest {
  option_id: string
  currency: string
  weight_g: number
  destination: { country_code: string; postal_code?: string; region?: string } | null
}

/** The seam for carrier-calculated rates (a carrier's API, a rate table service). */
export interface CarrierRateProvider {
  readonly id: string
  /** The price in minor units, or null when the carrier cannot serve this parcel. */
  quote(request: RateRequest): Promise<number | null>
}

const carriers = new Map<string, CarrierRateProvider>()

/** Makes a carrier available to `calculated` options that name it. */
export function registerCarrier(provider: CarrierRateProvider): void {
  carriers.set(provider.id, provider)
}

export interface ParcelFacts {
  currency: string
  weight_g: number
  /** Item subtotal after discounts, for free-shipping thresholds. */
  subtotal: number
  destination: RateRequest['destination']
}

/**
 * The price of an option for a parcel, or throws shipping_not_available (a weight above every
 * tier, a carrier that cannot serve it or is not installed) naming the cart's option: a change
 * that chose it names its request's field instead.
 */
export async function quoteShipping(option: ShippingOptionRow, parcel: ParcelFacts): Promise<number> {
  const unavailable = (why: string) =>
    problem('shipping_not_available', why, {
      errors: [{ path: 'cart.shipping_option_id', message: why }],
    })
  if (!option.active) throw unavailable(`${option.name} is not offered now`)
  let amount: number
  if (option.price_type === 'flat') {
    amount = Number(option.amount ?? 0)
  } else if (option.price_type === 'weight') {
    const tier = [...option.tiers]
      .sort(
        (a, b) => (a.max_weight_g ?? Number.POSITIVE_INFINITY) - (b.max_weight_g ?? Number.POSITIVE_INFINITY),
      )
      .find((t) => t.max_weight_g === null || parcel.weight_g <= t.max_weight_g)
    if (!tier) throw unavailable(`${option.name} does not carry parcels of ${parcel.weight_g} g`)
    amount = tier.amount
  } else {
    const carrier = option.provider ? carriers.get(option.provider) : undefined
    if (!carrier) throw unavailable(`The carrier for ${option.name} is not installed`)
    const quoted = await carrier.quote({
      option_id: option.id,
      currency: parcel.currency,
      weight_g: parcel.weight_g,
      destination: parcel.destination,
    })
    if (quoted === null) throw unavailable(`${option.name} cannot serve this parcel`)
    amount = quoted
  }
  if (option.free_above_amount !== null && parcel.subtotal >= Number(option.free_above_amount)) return 0
  return amount
}

export function shippingOptionView(row: ShippingOptionRow): ShippingOptionView {
  return {
    id: row.id,
    region_id: row.region_id,
    name: row.name,
    price_type: row.price_type,
    amount: row.amount === null ? null : Number(row.amount),
    tiers: row.tiers,
    free_above_amount: row.free_above_amount === null ? null : Number(row.free_above_amount),
    tax_category: row.tax_category,
    provider: row.provider,
    active: row.active,
    metadata: row.metadata,
    created_at: new Date(row.created_at).toISOString(),
    updated_at: new Date(row.updated_at).toISOString(),
  }
}

/** Active options of a region, cheapest-looking first. */
export async function regionShippingOptions(db: Queryable, regionId: string): Promise<ShippingOptionRow[]> {
  return (await db
    .selectFrom('shipping_options')
    .selectAll()
    .where('region_id', '=', regionId)
    .where('active', '=', true)
    .orderBy('name')
    .orderBy('id')
    .execute()) as ShippingOptionRow[]
}

export interface ShippingOptionInput {
  region_id: string
  name: string
  price_type: 'flat' | 'weight' | 'calculated'
  amount?: number | null
  tiers?: WeightTier[]
  free_above_amount?: number | null
  tax_category?: string
  provider?: string | null
  active?: boolean
  metadata?: Record<string, unknown>
}

/** Checks that an option's pricing fields fit its price type; throws validation_failed. */
function checkPricing(input: Partial<ShippingOptionInput>, type: ShippingOptionInput['price_type']): void {
  const errors: Array<{ path: string; message: string }> = []
  if (type === 'flat' && (input.amount === undefined || input.amount === null))
    errors.push({ path: 'body.amount', message: 'is required for a flat option' })
  if (type === 'weight' && !input.tiers?.length)
    errors.push({ path: 'body.tiers', message: 'needs at least one tier for a weight option' })
  if (type === 'calculated' && !input.provider)
    errors.push({ path: 'body.provider', message: 'is required for a calculated option' })
  const limits = (input.tiers ?? []).map((t) => t.max_weight_g)
  if (limits.filter((l) => l === null).length > 1)
    errors.push({ path: 'body.tiers', message: 'only one tier may be open-ended' })
  if (new Set(limits).size !== limits.length)
    errors.push({ path: 'body.tiers', message: 'two tiers have the same max_weight_g' })
  if (errors.length) throw problem('validation_failed', 'The shipping option is inconsistent', { errors })
}

/**
 * Checks that the region and tax category named exist. Both stay key-share locked until the
 * caller's transaction ends. The region's delete (which takes its options with it) then waits for
 * the write, or, committed first, leaves the check to answer unknown_region as it does serially,
 * instead of the foreign key refusing the write. The tax category's delete, which refuses a
 * category options name, waits for the write and counts the option (lockTaxCategories), or,
 * committed first, leaves the check to answer unknown_tax_category.
 */
async function checkReferences(trx: Tx, input: Partial<ShippingOptionInput>): Promise<void> {
  if (input.region_id !== undefined) {
    const region = await trx
      .selectFrom('regions')
      .select('id')
      .where('id', '=', input.region_id)
      .forKeyShare()
      .executeTakeFirst()
    if (!region)
      throw problem('unknown_region', `No region ${input.region_id}`, {
        errors: [{ path: 'body.region_id', message: 'no such region' }],
      })
  }
  if (input.tax_category !== undefined && !(await lockTaxCategories(trx, [input.tax_category])).size)
    throw problem('unknown_tax_category', `No tax category ${input.tax_category}`, {
      errors: [{ path: 'body.tax_category', message: 'no such tax category' }],
    })
}

/** How many shipping options name the tax category, active or not: deleting it is refused while any do. */
export async function countShippingOptionsInTaxCategory(db: Queryable, code: string): Promise<number> {
  const row = await db
    .selectFrom('shipping_options')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('tax_category', '=', code)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

export async function createShippingOption(trx: Tx, input: ShippingOptionInput): Promise<ShippingOptionView> {
  checkPricing(input, input.price_type)
  await checkReferences(trx, input)
  const row = await trx
    .insertInto('shipping_options')
    .values({
      id: newId('so'),
      region_id: input.region_id,
      name: input.name,
      price_type: input.price_type,
      amount: input.amount ?? null,
      tiers: JSON.stringify(input.tiers ?? []),
      free_above_amount: input.free_above_amount ?? null,
      tax_category: input.tax_category ?? 'standard',
      provider: input.provider ?? null,
      active: input.active ?? true,
      metadata: JSON.stringify(input.metadata ?? {}),
      updated_at: sql<Date>`now()`,
    })
    .returningAll()
    .executeTakeFirstOrThrow()
  return shippingOptionView(row as ShippingOptionRow)
}

export async function updateShippingOption(
  trx: Tx,
  id: string,
  patch: Partial<ShippingOptionInput>,
): Promise<ShippingOptionView | undefined> {
  const current = await trx
    .selectFrom('shipping_options')
    .selectAll()
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
  if (!current) return undefined
  const merged = { ...shippingOptionView(current as ShippingOptionRow), ...patch }
  checkPricing(merged, merged.price_type)
  // An unchanged region is not checked (nor locked): its delete, holding it and waiting for this
  // option (a cascade), would wait on this write while it waited on the delete. A tax category is
  // checked even unchanged: its delete locks no option, so it never waits on this one.
  const { region_id, ...rest } = patch
  await checkReferences(trx, region_id === current.region_id ? rest : patch)
  const row = await trx
    .updateTable('shipping_options')
    .set({
      region_id: merged.region_id,
      name: merged.name,
      price_type: merged.price_type,
      amount: merged.amount ?? null,
      tiers: JSON.stringify(merged.tiers ?? []),
      free_above_amount: merged.free_above_amount ?? null,
      tax_category: merged.tax_category,
      provider: merged.provider ?? null,
      active: merged.active,
      metadata: JSON.stringify(merged.metadata ?? {}),
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow()
  return shippingOptionView(row as ShippingOptionRow)
}

export async function deleteShippingOption(trx: Tx, id: string): Promise<boolean> {
  const result = await trx.deleteFrom('shipping_options').where('id', '=', id).executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

export async function listShippingOptions(db: Queryable, regionId?: string): Promise<ShippingOptionView[]> {
  let query = db.selectFrom('shipping_options').selectAll().orderBy('id')
  if (regionId) query = query.where('region_id', '=', regionId)
  return ((await query.execute()) as ShippingOptionRow[]).map(shippingOptionView)
}
