/**
 * Carts: create, read and change a shopper's cart. Every change is one read (loadCart: the cart
 * and everything its lines need) and one write (the new lines and totals, compared and set on the
 * cart's version), so two concurrent changes never lose one: the loser re-reads and re-applies.
 * Prices come from the server only; every change re-resolves them for the cart's region, customer
 * groups and the moment.
 */

import type { Kysely } from 'kysely'
import { sql } from 'kysely'
import { ulid } from 'ulid'
import type { DB } from '../../platform/db/schema.ts'
import { PREPARE_MARK } from '../../platform/db/statements.ts'
import {
  asynchronousCommit,
  type Queryable,
  type Tx,
  withTransaction,
} from '../../platform/db/transaction.ts'
import { type FieldError, ProblemError, problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import {
  type CartRow,
  type LoadedCart,
  loadCart,
  regionChanged,
  shopperIdentity,
  type VariantFacts,
} from './load.ts'
import type { Address, CartLine } from './tables.ts'
import { type CartTotals, computeTotals, needsShipping, type TotalsDeps } from './totals.ts'

/** No line may hold more than this, whatever the variant's own limit. */
export const MAX_LINE_QUANTITY = 1000
/** Distinct lines in one cart. */
export const MAX_LINES = 200
const WRITE_ATTEMPTS = 8

export interface CartAccess {
  /** The signed-in customer, or null for a guest. A customer's cart is theirs alone. */
  customerId: string | null
}

export interface CartView {
  id: string
  status: CartRow['status']
  region_id: string
  currency: string
  prices_include_tax: boolean
  customer_id: string | null
  email: string | null
  shipping_address: Address | null
  billing_address: Address | null
  vat_id: string | null
  is_business: boolean
  shipping_option_id: string | null
  promo_codes: string[]
  lines: Array<CartLine & Omit<CartTotals['lines'][number], 'id'>>
  shipping: CartTotals['shipping']
  taxes: CartTotals['taxes']
  totals: Omit<CartTotals, 'lines' | 'shipping' | 'taxes'>
  order_id: string | null
  payment_id: string | null
  metadata: Record<string, unknown>
  /**
   * What this change dropped or could not do: lines no longer sold, a shipping option that can no
   * longer serve the cart, lines of the customer's earlier cart a claim could not carry.
   */
  notices: string[]
  version: number
  created_at: string
  updated_at: string
}

export interface CartDeps extends TotalsDeps {
  db: Kysely<DB>
}

/** A cart id with 80 fresh random bits: a guest cart's id is its only key. */
function newCartId(): string {
  return `cart_${ulid().toLowerCase()}`
}

/** The response for a cart row. */
export function cartView(cart: CartRow, notices: string[] = []): CartView {
  const totals = cart.totals as unknown as CartTotals
  const byId = new Map((totals.lines ?? []).map((l) => [l.id, l]))
  const { lines: _lines, shipping, taxes, ...sums } = totals
  return {
    id: cart.id,
    status: cart.status,
    region_id: cart.region_id,
    currency: cart.currency_code,
    prices_include_tax: cart.prices_include_tax,
    customer_id: cart.customer_id,
    email: cart.email,
    shipping_address: cart.shipping_address,
    billing_address: cart.billing_address,
    vat_id: cart.vat_id,
    is_business: cart.is_business,
    shipping_option_id: cart.shipping_option_id,
    promo_codes: cart.promo_codes,
    lines: cart.lines.map((line) => {
      const t = byId.get(line.id)
      return {
        ...line,
        subtotal: t?.subtotal ?? line.unit_amount * line.quantity,
        discount_amount: t?.discount_amount ?? 0,
        tax_amount: t?.tax_amount ?? 0,
        total: t?.total ?? line.unit_amount * line.quantity,
        taxes: t?.taxes ?? [],
      }
    }),
    shipping: shipping ?? null,
    taxes: taxes ?? [],
    totals: sums,
    order_id: cart.order_id,
    payment_id: cart.payment_id,
    metadata: cart.metadata,
    notices,
    version: cart.version,
    created_at: new Date(cart.created_at).toISOString(),
    updated_at: new Date(cart.updated_at).toISOString(),
  }
}

/** The cart if the caller may see it: another customer's cart is not found, as a missing one is. */
export function checkAccess(cart: CartRow | undefined, cartId: string, access: CartAccess): CartRow {
  if (!cart || (cart.customer_id !== null && cart.customer_id !== access.customerId)) {
    throw problem('not_found', `No cart ${cartId}`)
  }
  return cart
}

export async function getCart(db: Queryable, cartId: string, access: CartAccess): Promise<CartView> {
  const cart = await db.selectFrom('carts').selectAll().where('id', '=', cartId).executeTakeFirst()
  return cartView(checkAccess(cart as CartRow | undefined, cartId, access))
}

async function regionFor(
  db: Queryable,
  input: { region_id?: string | undefined; country_code?: string | undefined },
): Promise<{ id: string; currency_code: string; prices_include_tax: boolean }> {
  let query = db.selectFrom('regions').select(['regions.id', 'currency_code', 'prices_include_tax'])
  if (input.region_id !== undefined) query = query.where('regions.id', '=', input.region_id)
  else if (input.country_code !== undefined)
    query = query
      .innerJoin('region_countries', 'region_countries.region_id', 'regions.id')
      .where('region_countries.country_code', '=', input.country_code)
  const rows = await query.limit(2).execute()
  if (rows.length === 1) return rows[0]!
  throw unknownRegion(input)
}

function unknownRegion(input: { region_id?: string | undefined; country_code?: string | undefined }) {
  const path = input.region_id !== undefined ? 'body.region_id' : 'body.country_code'
  const message =
    input.region_id !== undefined
      ? 'no such region'
      : input.country_code !== undefined
        ? 'no region serves this country'
        : 'give region_id or country_code: the store has several regions'
  return problem('unknown_region', message, { errors: [{ path, message }] })
}

export interface CreateCartInput {
  region_id?: string
  country_code?: string
  email?: string
  lines?: Array<{ variant_id: string; quantity: number }>
  metadata?: Record<string, unknown>
}

/** Creates a cart in a region (given, or found by country), with lines when given. */
export async function createCart(
  deps: CartDeps,
  input: CreateCartInput,
  access: CartAccess,
): Promise<CartView> {
  const region = await regionFor(deps.db, input)
  const id = newCartId()
  const totals: CartTotals = {
    item_count: 0,
    subtotal: 0,
    discount_total: 0,
    shipping_total: 0,
    tax_total: 0,
    total: 0,
    tax_pending: false,
    lines: [],
    shipping: null,
    taxes: [],
    tax_provider: null,
    tax_notes: [],
    date_of_supply: new Date().toISOString().slice(0, 10),
  }
  // The region is read again, key-share locked, by the insert itself: a delete of it committed
  // since regionFor read it leaves nothing to insert, and the cart is refused as it is when the
  // delete comes first (not by the foreign key); a delete that comes later waits for the insert
  // and then finds the region in use. One statement, as the plain insert was.
  const inserted = await deps.db
    .insertInto('carts')
    .columns([
      'id',
      'region_id',
      'currency_code',
      'prices_include_tax',
      'customer_id',
      'email',
      'lines',
      'totals',
      'metadata',
      'updated_at',
    ])
    .expression((eb) =>
      eb
        .selectFrom('regions')
        .select([
          sql.val(id).as('id'),
          'regions.id as region_id',
          'regions.currency_code',
          'regions.prices_include_tax',
          sql.val(access.customerId).as('customer_id'),
          sql.val(input.email?.toLowerCase() ?? null).as('email'),
          sql`'[]'::jsonb`.as('lines'),
          sql`${JSON.stringify(totals)}::jsonb`.as('totals'),
          sql`${JSON.stringify(input.metadata ?? {})}::jsonb`.as('metadata'),
          sql`now()`.as('updated_at'),
        ])
        .where('regions.id', '=', region.id)
        .forKeyShare(),
    )
    .returning('id')
    .executeTakeFirst()
  if (!inserted) throw unknownRegion(input)
  if (!input.lines?.length) return getCart(deps.db, id, access)
  const requested = input.lines
  try {
    return await changeCart(
      deps,
      id,
      access,
      requested.map((l) => l.variant_id),
      (loaded) => {
        let lines = loaded.cart.lines
        requested.forEach((l, i) => {
          lines = withAddedQuantity(lines, loaded, l.variant_id, l.quantity, `body.lines.${i}`)
        })
        return { lines }
      },
    )
  } catch (error) {
    // A cart refused for its lines was never handed out, and its id is its only key: it goes too.
    // Should that fail, an empty cart nobody can reach is left to expire.
    await deps.db
      .deleteFrom('carts')
      .where('id', '=', id)
      .execute()
      .catch(() => {})
    throw error
  }
}

export interface CartChange {
  lines?: CartLine[]
  /** What the change could not do as asked, for the answer's notices. */
  notices?: string[]
  set?: Partial<{
    email: string | null
    shipping_address: Address | null
    billing_address: Address | null
    vat_id: string | null
    is_business: boolean
    shipping_option_id: string | null
    promo_codes: string[]
    metadata: Record<string, unknown>
    customer_id: string | null
    /** Set by the change itself, never by a request: the region's, once staff changed them. */
    currency_code: string
    prices_include_tax: boolean
  }>
}

/**
 * Applies a change to an active cart: one read, the change, re-pricing and totals, one
 * compare-and-set write; repeated from the read when another writer got there first. A change
 * that sets the email names it in `read.email`, so that the read counts what a guest bought under
 * the new email for the per-customer limits; one that gives the cart to a customer names them in
 * `read.customerId`, so that it is priced and limited as theirs at once.
 */
export async function changeCart(
  deps: CartDeps,
  cartId: string,
  access: CartAccess,
  variantIds: readonly string[],
  change: (loaded: LoadedCart) => CartChange | Promise<CartChange>,
  read: { email?: string | null; customerId?: string } = {},
): Promise<CartView> {
  for (let attempt = 1; ; attempt++) {
    const prepared = await prepareChange(deps, cartId, access, variantIds, change, read)
    const updated = await writeChange(deps.db, cartId, prepared)
    if (updated) return writtenView(prepared, updated)
    if (attempt >= WRITE_ATTEMPTS)
      throw problem('conflict', 'The cart is being changed by other requests; retry')
  }
}

/** A change applied in memory to the cart as read, to be written if the cart is still as read. */
interface PreparedChange {
  /** The cart as read, with the change's columns set. */
  cart: CartRow
  /** The version read, which the write compares and sets. */
  version: number
  lines: CartLine[]
  totals: CartTotals
  set: NonNullable<CartChange['set']>
  notices: string[]
}

type Written = { version: number; updated_at: Date }

/** The read of a change and the change applied to it: changeCart's step before its write. */
async function prepareChange(
  deps: CartDeps,
  cartId: string,
  access: CartAccess,
  variantIds: readonly string[],
  change: (loaded: LoadedCart) => CartChange | Promise<CartChange>,
  read: { email?: string | null; customerId?: string },
): Promise<PreparedChange> {
  const loaded = await loadCart(deps.db, cartId, variantIds, read)
  const cart = checkAccess(loaded?.cart, cartId, access)
  if (cart.status !== 'active') {
    throw problem(
      'cart_not_active',
      `The cart is ${cart.status}${cart.order_id ? ` (order ${cart.order_id})` : ''}`,
    )
  }
  const { lines: changedLines, set: asked = {}, notices: told = [] } = await change(loaded!)
  const set = { ...asked, ...followRegion(loaded!) }
  const next: LoadedCart = { ...loaded!, cart: { ...cart, ...set } as CartRow }
  const notices = [...regionNotices(loaded!), ...told]
  const lines = reprice(changedLines ?? cart.lines, next, notices)
  checkCustomerLimits(lines, next)
  const totals = await totalsDroppingStaleShipping(next, lines, deps, set, notices)
  return { cart: next.cart, version: cart.version, lines, totals, set, notices }
}

/**
 * The region's currency and tax basis, for the change to store, when staff changed them since the
 * cart was last priced (loadCart reads the cart on its region's now): nothing otherwise.
 */
function followRegion(loaded: LoadedCart): NonNullable<CartChange['set']> {
  if (!regionChanged(loaded)) return {}
  const { currency_code, prices_include_tax } = loaded.cart
  return { currency_code, prices_include_tax }
}

/** What the shopper is told when the cart is repriced for its region's new currency or tax basis. */
function regionNotices({ cart, pricedOn }: LoadedCart): string[] {
  const notices: string[] = []
  if (cart.currency_code !== pricedOn.currency_code) {
    notices.push(
      `Prices here are now in ${cart.currency_code}, no longer ${pricedOn.currency_code}: the cart was repriced`,
    )
  }
  if (cart.prices_include_tax !== pricedOn.prices_include_tax) {
    notices.push(
      cart.prices_include_tax
        ? 'Prices here now include tax: the cart was repriced'
        : 'Prices here now exclude tax, which is added on top: the cart was repriced',
    )
  }
  return notices
}

/** The compare-and-set write of a prepared change; undefined when the cart changed since its read. */
async function writeChange(db: Queryable, cartId: string, p: PreparedChange): Promise<Written | undefined> {
  const columns = serialise(p.set)
  if (Object.keys(columns).length === 0) return writeLines(db, cartId, p.version, p.lines, p.totals)
  return (
    db
      .updateTable('carts')
      .set({
        ...columns,
        lines: JSON.stringify(p.lines),
        totals: JSON.stringify(p.totals),
        version: sql<number>`version + 1`,
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', cartId)
      .where('version', '=', p.version)
      .where('status', '=', 'active')
      .where(asynchronousCommit)
      // The lines and totals are in hand: reading them back would only parse them again.
      .returning(['version', 'updated_at'])
      .executeTakeFirst()
  )
}

/** The answer to a change once written. */
function writtenView(p: PreparedChange, updated: Written): CartView {
  const written = {
    ...p.cart,
    lines: p.lines,
    totals: p.totals as unknown as Record<string, unknown>,
    ...updated,
  }
  return cartView(written, p.notices)
}

/**
 * The totals of a change. When the cart's shipping option can no longer serve it (deactivated,
 * deleted, moved to another region, or the cart outgrew its heaviest tier) and this change did not
 * choose it, the option is dropped with a notice rather than refusing every change until the
 * shopper picks another.
 */
async function totalsDroppingStaleShipping(
  next: LoadedCart,
  lines: CartLine[],
  deps: TotalsDeps,
  set: NonNullable<CartChange['set']>,
  notices: string[],
): Promise<CartTotals> {
  const drop = (notice: string) => {
    notices.push(`${notice}: choose another shipping option`)
    set.shipping_option_id = null
    next.cart.shipping_option_id = null
    next.shippingOption = null
    return computeTotals(next, lines, deps)
  }
  const chosenBefore = !('shipping_option_id' in set) && next.cart.shipping_option_id !== null
  // A deleted option, or one moved to another region, leaves its id with no option loaded (see
  // loadCart): left alone, totals would show free shipping.
  if (chosenBefore && !next.shippingOption && needsShipping(lines)) {
    return drop('The shipping option chosen for this cart is no longer offered')
  }
  try {
    return await computeTotals(next, lines, deps)
  } catch (error) {
    const option = next.shippingOption
    const stale = error instanceof ProblemError && error.code === 'shipping_not_available'
    if (!stale || !option) throw error
    if (chosenBefore) return drop(`${option.name} can no longer ship this cart`)
    // This change chose it: the request's field is what to correct.
    throw problem(error.code, error.detail, {
      errors: (error.errors ?? []).map((e) => ({ ...e, path: 'body.shipping_option_id' })),
    })
  }
}

/**
 * The write of a change to the lines alone (adding, changing or removing one: the most frequent
 * write of all), compared and set on the version like any other. Its text never changes, so it is
 * kept prepared: PostgreSQL spent longer parsing and planning it than running it.
 */
async function writeLines(
  db: Queryable,
  cartId: string,
  version: number,
  lines: CartLine[],
  totals: CartTotals,
): Promise<Written | undefined> {
  const { rows } = await linesWrite(cartId, version, JSON.stringify(lines), JSON.stringify(totals)).execute(
    db,
  )
  return rows[0]
}

/** The statement of writeLines, exported so that the checkout benchmark's baseline runs the same text. */
export function linesWrite(cartId: string, version: number, linesJson: string, totalsJson: string) {
  return sql<{ version: number; updated_at: Date }>`
    ${sql.raw(PREPARE_MARK)} update carts
    set lines = ${linesJson}, totals = ${totalsJson}, version = version + 1, updated_at = now()
    where id = ${cartId} and version = ${version} and status = 'active' and ${asynchronousCommit}
    returning version, updated_at`
}

function serialise(set: NonNullable<CartChange['set']>) {
  const out: Record<string, unknown> = { ...set }
  for (const key of ['shipping_address', 'billing_address', 'metadata'] as const) {
    if (key in set) out[key] = set[key] === null ? null : JSON.stringify(set[key])
  }
  return out
}

/**
 * The cart's lines priced as the catalog is now, with the lines no longer sold dropped (and named
 * in notices); throws purchase_limit_exceeded when a line is over a per-customer limit. Checkout
 * charges these, not the prices of the cart's last change.
 */
export function currentLines(loaded: LoadedCart): { lines: CartLine[]; notices: string[] } {
  const { lines, notices } = pricedLines(loaded)
  checkCustomerLimits(lines, loaded)
  return { lines, notices }
}

/** The cart's lines priced as the catalog is now, those no longer sold dropped (named in notices). */
export function pricedLines(loaded: LoadedCart): { lines: CartLine[]; notices: string[] } {
  const notices: string[] = []
  return { lines: reprice(loaded.cart.lines, loaded, notices), notices }
}

/**
 * Re-prices lines from the catalog as it is now. Lines whose product is gone, unpublished or no
 * longer priced in the cart's currency are dropped, with a notice.
 */
function reprice(lines: readonly CartLine[], loaded: LoadedCart, notices: string[]): CartLine[] {
  const out: CartLine[] = []
  for (const line of lines) {
    const facts = loaded.variants.get(line.variant_id)
    if (facts?.product_status !== 'published' || !facts.price) {
      notices.push(`${line.product_title} (${line.sku}) is no longer sold here and was removed`)
      continue
    }
    out.push(lineFrom(line.id, facts, line.quantity))
  }
  return out
}

function lineFrom(id: string, facts: VariantFacts, quantity: number): CartLine {
  return {
    id,
    variant_id: facts.id,
    product_id: facts.product_id,
    sku: facts.sku,
    title: facts.title,
    product_title: facts.product_title,
    quantity,
    unit_amount: facts.price!.amount,
    compare_at_amount: facts.price!.compare_at_amount,
    price_list_id: facts.price!.price_list_id,
    tax_category: facts.tax_category,
    weight_g: facts.weight_g,
    manage_inventory: facts.manage_inventory,
    requires_shipping: facts.requires_shipping,
  }
}

/** The limit that applies to one line of a variant, and the error when a quantity passes it. */
function checkLineQuantity(facts: VariantFacts, quantity: number, path: string): void {
  const max = Math.min(MAX_LINE_QUANTITY, facts.max_per_line ?? MAX_LINE_QUANTITY)
  if (quantity > max) {
    throw problem('purchase_limit_exceeded', `At most ${max} of ${facts.sku} per order`, {
      errors: [{ path: `${path}.quantity`, message: `must be at most ${max}` }],
    })
  }
}

/**
 * The per-customer limits checked again, one checkout of a shopper at a time: for the transaction
 * in which checkout moves the cart to `completing`. The check before it (currentLines) reads
 * without a lock, so two carts of one shopper checked out at once would both pass it, neither
 * counting the other. A transaction-scoped advisory lock on each customer id and email the count
 * takes in (shopperIdentity) makes the second wait until the first commits: a checkout that counts
 * another's shares at least one of its keys, the other's own customer id or email. The cart read
 * again then counts the first as a cart being checked out (loadCart). Lines with no per-customer
 * limit take no lock.
 */
export async function lockCustomerLimits(
  trx: Tx,
  loaded: LoadedCart,
  lines: readonly CartLine[],
): Promise<void> {
  if (!lines.some((l) => (loaded.variants.get(l.variant_id)?.max_per_customer ?? null) !== null)) return
  const who = shopperIdentity(sql`${loaded.cart.customer_id}::text`, sql`${loaded.cart.email}::text`)
  // One statement, the locks taken in the order of their keys: two checkouts that share several
  // keys take them in the same order, so neither holds one the other waits for while waiting.
  await sql`
    select count(pg_advisory_xact_lock(k)) from (
      select distinct hashtext('carts.purchase_limits:' || key) as k
      from (${who}) who, lateral (
        select 'customer:' || id as key from unnest(who.customer_ids) id
        union all select 'email:' || e from unnest(who.emails) e
      ) keys
      order by k
    ) ordered`.execute(trx)
  const now = await loadCart(trx, loaded.cart.id)
  if (now) checkCustomerLimits(lines, now)
}

/**
 * Per-customer limits: what the shopper bought before plus what the cart holds. How many are left
 * is told only to a signed-in customer whose cart carries their account's email, whose count is
 * their own: a guest's counts whatever was bought under the email typed in, anyone's.
 */
function checkCustomerLimits(lines: readonly CartLine[], loaded: LoadedCart): void {
  const { cart } = loaded
  const own = cart.customer_id !== null && (cart.email === null || cart.email === loaded.accountEmail)
  const errors: FieldError[] = []
  for (const line of lines) {
    const facts = loaded.variants.get(line.variant_id)!
    if (facts.max_per_customer === null) continue
    const left = facts.max_per_customer - facts.bought
    if (line.quantity > left) {
      const limit = `${facts.sku} is limited to ${facts.max_per_customer} per customer`
      errors.push({
        path: `lines.${line.id}.quantity`,
        message: own ? `${limit}; ${Math.max(0, left)} left` : `${limit}, counting earlier purchases`,
      })
    }
  }
  if (errors.length) throw problem('purchase_limit_exceeded', errors[0]!.message, { errors })
}

/** The sellable facts of a variant being added, or the 4xx for one that cannot be. */
function sellableVariant(loaded: LoadedCart, variantId: string, path: string): VariantFacts {
  const facts = loaded.variants.get(variantId)
  if (facts?.product_status !== 'published') {
    throw problem('unknown_variant', `No variant ${variantId} is for sale`, {
      errors: [{ path: `${path}.variant_id`, message: 'no such variant for sale' }],
    })
  }
  if (!facts.price) {
    throw problem('not_sold_in_region', `${facts.sku} has no price in ${loaded.cart.currency_code}`, {
      errors: [{ path: `${path}.variant_id`, message: `not sold in ${loaded.cart.currency_code}` }],
    })
  }
  return facts
}

/** Lines with `quantity` more of a variant: its line grows, or a new line is added. */
export function withAddedQuantity(
  lines: readonly CartLine[],
  loaded: LoadedCart,
  variantId: string,
  quantity: number,
  path = 'body',
): CartLine[] {
  const facts = sellableVariant(loaded, variantId, path)
  const existing = lines.find((l) => l.variant_id === variantId)
  const total = (existing?.quantity ?? 0) + quantity
  checkLineQuantity(facts, total, path)
  if (existing) return lines.map((l) => (l === existing ? { ...l, quantity: total } : l))
  if (lines.length >= MAX_LINES) {
    throw problem('cart_invalid', `A cart holds at most ${MAX_LINES} lines`, {
      errors: [{ path: `${path}.variant_id`, message: `the cart already has ${MAX_LINES} lines` }],
    })
  }
  return [...lines, lineFrom(newId('cali'), facts, quantity)]
}

/** Lines with one line's quantity set. */
export function withQuantity(
  lines: readonly CartLine[],
  loaded: LoadedCart,
  lineId: string,
  quantity: number,
): CartLine[] {
  const line = lines.find((l) => l.id === lineId)
  if (!line) throw problem('not_found', `No line ${lineId} in this cart`)
  const facts = loaded.variants.get(line.variant_id)
  if (facts) checkLineQuantity(facts, quantity, 'body')
  return lines.map((l) => (l.id === lineId ? { ...l, quantity } : l))
}

/** Lines without one line. */
export function withoutLine(lines: readonly CartLine[], lineId: string): CartLine[] {
  if (!lines.some((l) => l.id === lineId)) throw problem('not_found', `No line ${lineId} in this cart`)
  return lines.filter((l) => l.id !== lineId)
}

/**
 * Gives a guest cart to the signed-in customer. When the customer already has an active cart, its
 * lines are merged into this one (quantities added, within limits) and the old cart is marked merged.
 * The cart is priced for the customer at once (their groups' price lists), and refused (422) when it
 * would take them past an item's per-customer limit, counting what they bought before. Unlike other
 * changes, a claim reads the previous cart too and writes both in one transaction (writeMerging), so
 * that claims of one cart sent at once (two tabs, a sign-in sent twice) carry its lines only once.
 */
export async function claimCart(deps: CartDeps, cartId: string, customerId: string): Promise<CartView> {
  for (let attempt = 1; ; attempt++) {
    const previous = await previousCart(deps.db, customerId, cartId)
    const carried = previous?.lines ?? []
    const prepared = await prepareChange(
      deps,
      cartId,
      { customerId },
      carried.map((l) => l.variant_id),
      (loaded) => {
        let lines = loaded.cart.lines
        const notices: string[] = []
        for (const line of carried) {
          const facts = loaded.variants.get(line.variant_id)
          if (!facts?.price || facts.product_status !== 'published') {
            // The previous cart is merged all the same: unnamed, the line would vanish unseen.
            notices.push(
              `${line.product_title} (${line.sku}) from your earlier cart is not sold here and was not added`,
            )
            continue
          }
          const have = lines.find((l) => l.variant_id === line.variant_id)?.quantity ?? 0
          const max = Math.min(MAX_LINE_QUANTITY, facts.max_per_line ?? MAX_LINE_QUANTITY)
          const add = Math.max(0, Math.min(line.quantity, max - have))
          if (add > 0) lines = withAddedQuantity(lines, loaded, line.variant_id, add)
          // The previous cart is merged all the same: units over the line limit would vanish unseen.
          if (add < line.quantity) {
            notices.push(
              `${line.product_title} (${line.sku}): ${line.quantity - add} of the ${line.quantity} from your ` +
                `earlier cart could not be added (at most ${max} per line)`,
            )
          }
        }
        return { lines, notices, set: { customer_id: customerId } }
      },
      { customerId },
    )
    const updated = previous
      ? await writeMerging(deps.db, cartId, prepared, previous)
      : await writeChange(deps.db, cartId, prepared)
    if (updated) return writtenView(prepared, updated)
    if (attempt >= WRITE_ATTEMPTS)
      throw problem('conflict', 'The cart is being changed by other requests; retry')
  }
}

/** The customer's most recently changed active cart other than this one: the one a claim merges. */
async function previousCart(db: Queryable, customerId: string, cartId: string) {
  return db
    .selectFrom('carts')
    .select(['id', 'lines', 'version'])
    .where('customer_id', '=', customerId)
    .where('status', '=', 'active')
    .where('id', '!=', cartId)
    .orderBy('updated_at', 'desc')
    .limit(1)
    .executeTakeFirst()
}

/** Thrown to roll back a claim's transaction whose own cart changed since its read. */
class ClaimRaced extends Error {}

/**
 * The write of a claim that carries a previous cart's lines. The previous cart is marked merged in
 * the same transaction, and only while it is active and as its lines were read: two sign-ins that
 * claim at once both read it, and only the one whose mark takes it may add its lines, so they are
 * added once. Undefined, with nothing written, when either cart changed since it was read.
 */
async function writeMerging(
  db: Kysely<DB>,
  cartId: string,
  prepared: PreparedChange,
  previous: { id: string; version: number },
): Promise<Written | undefined> {
  try {
    // Two carts of one customer claimed at once, each the other's previous cart, lock the two rows
    // in opposite orders: the deadlock is retried by withTransaction, and the retry finds them changed.
    return await withTransaction(db, async (trx) => {
      if (!(await markMergedIfUnchanged(trx, previous))) return undefined
      const updated = await writeChange(trx, cartId, prepared)
      if (!updated) throw new ClaimRaced()
      return updated
    })
  } catch (error) {
    if (error instanceof ClaimRaced) return undefined
    throw error
  }
}

/**
 * Marks a cart merged if it is still active at the version read: a conditional update whose row
 * lock makes a concurrent one wait, then find the cart merged. Whether it took the cart.
 */
async function markMergedIfUnchanged(trx: Tx, cart: { id: string; version: number }): Promise<boolean> {
  const taken = await trx
    .updateTable('carts')
    .set({ status: 'merged', updated_at: sql<Date>`now()` })
    .where('id', '=', cart.id)
    .where('version', '=', cart.version)
    .where('status', '=', 'active')
    .returning('id')
    .executeTakeFirst()
  return taken !== undefined
}

/**
 * Expires active carts untouched for `ttlHours` (batched, SKIP LOCKED so two workers share the
 * work). Carts mid-checkout are left to the checkout recovery job. Returns how many expired.
 */
export async function expireCarts(db: Kysely<DB>, ttlHours: number, batchSize = 500): Promise<number> {
  let total = 0
  for (;;) {
    const { rows } = await sql<{ id: string }>`
      update carts set status = 'expired', updated_at = now()
      where id in (
        select id from carts
        where status = 'active' and updated_at < now() - make_interval(hours => ${ttlHours})
        order by updated_at limit ${batchSize}
        for update skip locked)
      returning id`.execute(db)
    total += rows.length
    if (rows.length < batchSize) return total
  }
}
