/**
 * Price lists: sale or customer-group prices for variants, valid between two moments. Writing a
 * list's prices rewrites the price read model (price_list_product_prices) of every product whose
 * variants were in the list before or after the change, so the storefront list and its price
 * filters see the new prices on the next read.
 */
import { sql } from 'kysely'
import type { Static } from 'typebox'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { type FieldError, problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import { isCurrency } from '../../platform/money.ts'
import { customerGroupExists } from '../identity/customer-groups.ts'
import { refreshPriceReadModel } from './pricing.ts'
import type { CreatePriceList, UpdatePriceList } from './schemas.ts'

type PriceListInput = Static<typeof UpdatePriceList>
type PriceInput = NonNullable<PriceListInput['prices']>[number]

export interface PriceListPriceView {
  variant_id: string
  currency: string
  amount: number
}

export interface PriceListView {
  id: string
  name: string
  description: string
  status: 'active' | 'draft'
  customer_group_id: string | null
  starts_at: string | null
  ends_at: string | null
  prices: PriceListPriceView[]
  created_at: string
  updated_at: string
}

const listColumns = [
  'id',
  'name',
  'description',
  'status',
  'customer_group_id',
  'starts_at',
  'ends_at',
  'created_at',
  'updated_at',
] as const

const iso = (value: Date | string | null): string | null =>
  value === null ? null : new Date(value).toISOString()

/** The admin view of price lists by id, in the order given, each with all its prices. */
export async function loadPriceLists(db: Queryable, ids: readonly string[]): Promise<PriceListView[]> {
  if (ids.length === 0) return []
  const [lists, prices] = await Promise.all([
    db.selectFrom('price_lists').select(listColumns).where('id', 'in', ids).execute(),
    db
      .selectFrom('price_list_prices')
      .select(['price_list_id', 'variant_id', 'currency_code', 'amount'])
      .where('price_list_id', 'in', ids)
      .orderBy('variant_id')
      .orderBy('currency_code')
      .execute(),
  ])
  const pricesByList = Map.groupBy(prices, (p) => p.price_list_id)
  const byId = new Map(lists.map((l) => [l.id, l]))
  return ids.flatMap((id) => {
    const list = byId.get(id)
    if (!list) return []
    return [
      {
        ...list,
        starts_at: iso(list.starts_at),
        ends_at: iso(list.ends_at),
        prices: (pricesByList.get(id) ?? []).map((p) => ({
          variant_id: p.variant_id,
          currency: p.currency_code,
          amount: Number(p.amount),
        })),
        created_at: list.created_at.toISOString(),
        updated_at: list.updated_at.toISOString(),
      },
    ]
  })
}

/** One price list with its prices, or undefined. */
export async function getPriceList(db: Queryable, id: string): Promise<PriceListView | undefined> {
  const [list] = await loadPriceLists(db, [id])
  return list
}

/** A page of price list ids, newest first; one more than limit tells there is a next page. */
export async function listPriceListIds(
  db: Queryable,
  options: { limit: number; afterId?: string; status?: 'active' | 'draft' },
): Promise<string[]> {
  let query = db
    .selectFrom('price_lists')
    .select('id')
    .orderBy('id', 'desc')
    .limit(options.limit + 1)
  if (options.status) query = query.where('status', '=', options.status)
  if (options.afterId) query = query.where('id', '<', options.afterId)
  return (await query.execute()).map((r) => r.id)
}

/**
 * When the prices a shopper sees next change on their own, as epoch ms: the soonest start or end
 * still ahead among active lists; undefined when none is. The storefront cache keeps no answer past
 * it, so a sale starts and ends on time without a write to invalidate anything.
 */
export async function nextPriceChange(db: Queryable): Promise<number | undefined> {
  // The node's clock, not the database's: the storefront decides which lists apply with it too.
  const now = new Date()
  const { rows } = await sql<{ at: Date | string | null }>`
    select least(
      (select min(starts_at) from price_lists where status = 'active' and starts_at > ${now}),
      (select min(ends_at) from price_lists where status = 'active' and ends_at > ${now})
    ) as at`.execute(db)
  const at = rows[0]?.at
  return at === null || at === undefined ? undefined : new Date(at).getTime()
}

/** The products the variants belong to; unknown variants are absent. */
async function productsOfVariants(trx: Tx, variantIds: readonly string[]): Promise<Map<string, string>> {
  if (variantIds.length === 0) return new Map()
  const rows = await trx
    .selectFrom('product_variants')
    .select(['id', 'product_id'])
    .where('id', 'in', [...new Set(variantIds)])
    .execute()
  return new Map(rows.map((r) => [r.id, r.product_id]))
}

/**
 * Locks the products of the variants priced (and `alsoLock`'s) in id order, then reads the
 * variants again: a variant or product is deleted only under its product's lock (products.ts), so
 * the variants found now stay until this transaction ends, and the insert that references them
 * cannot meet a deleted one. Products before variants, the order of every product write: taking a
 * variant's lock first would deadlock against a variant delete.
 */
async function lockedProductsOfVariants(
  trx: Tx,
  variantIds: readonly string[],
  alsoLock: readonly string[],
): Promise<Map<string, string>> {
  const seen = await productsOfVariants(trx, variantIds)
  await lockProducts(trx, [...new Set([...seen.values(), ...alsoLock])])
  return seen.size === 0 ? seen : productsOfVariants(trx, variantIds)
}

/** "variant currency" keys of the base prices these variants have. */
async function basePricesOf(trx: Tx, variantIds: readonly string[]): Promise<Set<string>> {
  if (variantIds.length === 0) return new Set()
  const rows = await trx
    .selectFrom('variant_prices')
    .select(['variant_id', 'currency_code'])
    .where('variant_id', 'in', [...new Set(variantIds)])
    .execute()
  return new Set(rows.map((r) => `${r.variant_id} ${r.currency_code}`))
}

async function productsInList(trx: Tx, priceListId: string): Promise<string[]> {
  const rows = await trx
    .selectFrom('price_list_prices')
    .innerJoin('product_variants', 'product_variants.id', 'price_list_prices.variant_id')
    .select('product_variants.product_id')
    .distinct()
    .where('price_list_prices.price_list_id', '=', priceListId)
    .execute()
  return rows.map((r) => r.product_id)
}

/**
 * Locks the products in id order, the order refreshPriceReadModel locks them in, before the list's
 * prices change: a product write running at the same time then queues behind this one (or this
 * behind it) instead of rebuilding the read model from a half-changed list.
 */
async function lockProducts(trx: Tx, productIds: readonly string[]): Promise<void> {
  if (productIds.length === 0) return
  await sql`select id from products where id = any(${[...productIds].sort()}::text[]) order by id for update`.execute(
    trx,
  )
}

interface Current {
  starts_at: Date | string | null
  ends_at: Date | string | null
}

/**
 * Every check a list document must pass before anything is written: dates in order, the customer
 * group exists, prices in known currencies, one price per variant and currency, variants exist.
 * Returns the product of each variant priced, locked with `alsoLock`'s (lockedProductsOfVariants).
 */
async function validate(
  trx: Tx,
  input: PriceListInput,
  current?: Current,
  alsoLock: readonly string[] = [],
): Promise<Map<string, string>> {
  const errors: FieldError[] = []
  const startsAt = input.starts_at !== undefined ? input.starts_at : (current?.starts_at ?? null)
  const endsAt = input.ends_at !== undefined ? input.ends_at : (current?.ends_at ?? null)
  if (startsAt !== null && endsAt !== null && new Date(startsAt).getTime() >= new Date(endsAt).getTime())
    errors.push({
      path: input.ends_at !== undefined ? 'body.ends_at' : 'body.starts_at',
      message: 'must be after starts_at (ends_at must come later than starts_at)',
    })
  if (input.customer_group_id && !(await customerGroupExists(trx, input.customer_group_id)))
    errors.push({ path: 'body.customer_group_id', message: 'no such customer group' })
  const prices = input.prices ?? []
  const seen = new Set<string>()
  prices.forEach((price, i) => {
    if (!isCurrency(price.currency))
      errors.push({
        path: `body.prices[${i}].currency`,
        message: `${price.currency} is not a supported currency`,
      })
    const key = `${price.variant_id} ${price.currency}`
    if (seen.has(key))
      errors.push({ path: `body.prices[${i}]`, message: 'appears twice; one price per variant and currency' })
    seen.add(key)
  })
  const products = await lockedProductsOfVariants(
    trx,
    prices.map((p) => p.variant_id),
    alsoLock,
  )
  const based = await basePricesOf(
    trx,
    prices.map((p) => p.variant_id),
  )
  prices.forEach((price, i) => {
    if (!products.has(price.variant_id))
      errors.push({ path: `body.prices[${i}].variant_id`, message: `no variant ${price.variant_id}` })
    else if (isCurrency(price.currency) && !based.has(`${price.variant_id} ${price.currency}`))
      errors.push({
        path: `body.prices[${i}].currency`,
        message: `variant ${price.variant_id} has no base price in ${price.currency}: give it one first (a price list changes the price of a variant sold in a currency, it does not sell it there)`,
      })
  })
  if (errors.length > 0)
    throw problem('validation_failed', `${errors[0]?.path} ${errors[0]?.message}`, { errors })
  return products
}

/** Replaces the list's prices in one statement per step, however many there are. */
async function replacePrices(trx: Tx, priceListId: string, prices: readonly PriceInput[]): Promise<void> {
  await trx.deleteFrom('price_list_prices').where('price_list_id', '=', priceListId).execute()
  if (prices.length === 0) return
  await sql`
    insert into price_list_prices (price_list_id, variant_id, currency_code, amount)
    select ${priceListId}, t.variant_id, t.currency_code, t.amount
    from unnest(
      ${prices.map((p) => p.variant_id)}::text[],
      ${prices.map((p) => p.currency)}::text[],
      ${prices.map((p) => p.amount)}::bigint[]
    ) as t(variant_id, currency_code, amount)`.execute(trx)
}

/**
 * The event payload: the list without its prices (up to 10,000 of them would outgrow a NATS
 * message), with how many it has and whether they changed.
 */
function eventPayload(list: PriceListView, pricesChanged: boolean) {
  const { prices, ...summary } = list
  return { price_list: { ...summary, price_count: prices.length }, prices_changed: pricesChanged }
}

/** Creates a price list with its prices and emits `price_list.created`. */
export async function createPriceList(
  trx: Tx,
  outbox: Outbox,
  input: Static<typeof CreatePriceList>,
): Promise<PriceListView> {
  const products = await validate(trx, input)
  const id = newId('plist')
  await trx
    .insertInto('price_lists')
    .values({
      id,
      name: input.name,
      description: input.description ?? '',
      status: input.status ?? 'active',
      customer_group_id: input.customer_group_id ?? null,
      starts_at: input.starts_at ?? null,
      ends_at: input.ends_at ?? null,
    })
    .execute()
  const affected = [...new Set(products.values())]
  await replacePrices(trx, id, input.prices ?? [])
  await refreshPriceReadModel(trx, affected)
  const list = (await getPriceList(trx, id))!
  await outbox.emit(trx, 'price_list.created', eventPayload(list, affected.length > 0), id)
  return list
}

/**
 * Updates a price list; `prices`, when given, replaces all its prices. Emits `price_list.updated`;
 * undefined when the list is unknown.
 */
export async function updatePriceList(
  trx: Tx,
  outbox: Outbox,
  id: string,
  input: PriceListInput,
): Promise<PriceListView | undefined> {
  // No-key-update: concurrent writers of this list queue, while a product write whose read-model
  // rows reference the list (a key-share lock) is not held up.
  const current = await trx
    .selectFrom('price_lists')
    .select(['starts_at', 'ends_at'])
    .where('id', '=', id)
    .forNoKeyUpdate()
    .executeTakeFirst()
  if (!current) return undefined
  // The products whose prices this list holds now are rewritten too: locked with the new ones.
  const listed = input.prices ? await productsInList(trx, id) : []
  const products = await validate(trx, input, current, listed)
  await trx
    .updateTable('price_lists')
    .set({
      ...(input.name !== undefined ? { name: input.name } : {}),
      ...(input.description !== undefined ? { description: input.description } : {}),
      ...(input.status !== undefined ? { status: input.status } : {}),
      ...(input.customer_group_id !== undefined ? { customer_group_id: input.customer_group_id } : {}),
      ...(input.starts_at !== undefined ? { starts_at: input.starts_at } : {}),
      ...(input.ends_at !== undefined ? { ends_at: input.ends_at } : {}),
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .execute()
  if (input.prices) {
    const affected = [...new Set([...listed, ...products.values()])]
    await replacePrices(trx, id, input.prices)
    await refreshPriceReadModel(trx, affected)
  }
  const list = (await getPriceList(trx, id))!
  await outbox.emit(
    trx,
    'price_list.updated',
    { ...eventPayload(list, input.prices !== undefined), changed: Object.keys(input) },
    id,
  )
  return list
}

/** Deletes a price list with its prices and emits `price_list.deleted`. */
export async function deletePriceList(trx: Tx, outbox: Outbox, id: string): Promise<boolean> {
  const current = await trx
    .selectFrom('price_lists')
    .select('id')
    .where('id', '=', id)
    .forNoKeyUpdate()
    .executeTakeFirst()
  if (!current) return false
  const affected = await productsInList(trx, id)
  await lockProducts(trx, affected)
  await trx.deleteFrom('price_lists').where('id', '=', id).execute()
  await refreshPriceReadModel(trx, affected)
  await outbox.emit(trx, 'price_list.deleted', { id }, id)
  return true
}
