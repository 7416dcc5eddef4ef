/**
 * The store the bad-input fuzz test works in, and how it builds valid requests there: fixtures of
 * every kind a route may name, the valid value of each path parameter, the bodies a schema alone
 * cannot make valid, and a sampler that fills string fields with values that exist.
 */
import { randomUUID } from 'node:crypto'
import { adminAuth, type TestNode } from './app.ts'
import { idPrefix, type JsonSchema, type Sampler, type Value } from './bad-input.ts'
import { berlin, createTestStore, type TestStore } from './commerce.ts'
import { signUpConfirmed } from './customers.ts'
import { bearer, newStaffSession, strongPassword, uniqueEmail } from './staff.ts'

export interface Session {
  email: string
  password: string
  headers: Record<string, string>
}

export interface Fixtures {
  store: TestStore
  /** An id of each kind by prefix: prod, var, cart, ord, … */
  ids: Record<string, string>
  sku: string
  handle: string
  customerId: string
  customer: Session
  /** A second customer for the routes that end or change a session (sign-out, password). */
  spare: Session
  staffToken: string
  otherStaff: { id: string; email: string; password: string }
  role: string
  apiKey: string
  address: string
  taxCategory: string
  taxRate: string
  orderLine: string
  cart3ds: string
  payment3ds: string
  stripeIntent: string
}

/** Body baselines that the schema alone cannot make valid (they need each other's values). */
export function bodyOverrides(fx: Fixtures): Record<string, (base: Value) => Value> {
  const merge = (extra: Record<string, Value>) => (base: Value) => ({ ...(base as object), ...extra })
  return {
    'POST /admin/products': merge({
      options: [{ name: 'Size', values: ['M'] }],
      variants: [
        {
          sku: `FUZZ-${randomUUID().slice(0, 8)}`,
          title: 'M',
          options: { Size: 'M' },
          prices: [{ currency: 'EUR', amount: 1000 }],
          metadata: { fuzz: 'x' },
        },
      ],
    }),
    'POST /admin/products/{id}/variants': merge({ options: { Style: 'Shirt' } }),
    'PATCH /admin/variants/{id}': merge({ options: { Style: 'Shirt' } }),
    'POST /store/carts/{id}/complete': () => ({
      payment: { provider: 'test', payment_method: 'pm_card_visa' },
    }),
    'POST /admin/shipping-options': merge({ provider: null, region_id: fx.store.euRegion }),
    'PATCH /admin/shipping-options/{id}': merge({ provider: null, region_id: fx.store.euRegion }),
    'POST /store/payments/{id}/authenticate': () => ({ result: 'pass', cart_id: fx.cart3ds }),
    'POST /store/auth/sign-in': () => ({ email: fx.customer.email, password: fx.customer.password }),
    'POST /admin/auth/sign-in': () => ({ email: fx.otherStaff.email, password: fx.otherStaff.password }),
    'POST /store/me/password': () => ({
      current_password: fx.spare.password,
      new_password: strongPassword(),
    }),
    'POST /admin/tax/rates': merge({ valid_from: '2090-01-01', valid_to: null, postal_prefix: null }),
    'PATCH /admin/tax/rates/{id}': merge({ valid_from: '2020-01-01', valid_to: null }),
    'POST /admin/price-lists': merge({ starts_at: null, ends_at: null }),
    'PATCH /admin/price-lists/{id}': merge({ starts_at: null, ends_at: null }),
    'PATCH /admin/regions/{id}': merge({ countries: ['DE', 'FR', 'AT'] }),
    'PATCH /admin/tax/settings': merge({ origin_country: 'DE', origin_region: null, provider_url: null }),
    'PATCH /admin/staff/{id}': merge({ disabled: false, role_id: fx.role }),
    'PATCH /store/carts/{id}': merge({ vat_id: null, is_business: false }),
  }
}

/** A valid value for a path parameter of an operation. */
export function pathParamValue(fx: Fixtures, path: string, name: string, schema: JsonSchema): string {
  const prefix = idPrefix(schema)
  if (path === '/store/payments/{id}/authenticate') return fx.payment3ds
  if (prefix && fx.ids[prefix]) return fx.ids[prefix]
  const byPath: Record<string, string> = {
    '/admin/api-keys/{id}:id': fx.apiKey,
    '/admin/customers/{id}:id': fx.customerId,
    '/admin/customers/{id}/addresses:id': fx.customerId,
    '/admin/inventory/variants/{ref}/policy:ref': fx.sku,
    '/admin/jobs/failed/{id}/replay:id': '00000000-0000-4000-8000-000000000000',
    '/admin/roles/{id}:id': fx.role,
    '/admin/staff/{id}:id': fx.otherStaff.id,
    '/admin/staff/{id}/mfa/reset:id': fx.otherStaff.id,
    '/admin/tax/categories/{code}:code': fx.taxCategory,
    '/admin/tax/jurisdictions/{code}:code': 'DE',
    '/admin/tax/jurisdictions/{code}/categories/{category}:code': 'DE',
    '/admin/tax/jurisdictions/{code}/categories/{category}:category': fx.taxCategory,
    '/admin/tax/registrations/{code}:code': 'FR',
    '/admin/tax/rates/{id}:id': fx.taxRate,
    '/store/carts/{id}/promotions/{code}:code': 'FUZZ',
    '/store/me/addresses/{id}:id': fx.address,
    '/store/products/{ref}:ref': fx.handle,
    '/store/products/{ref}/availability:ref': fx.handle,
  }
  const value = byPath[`${path}:${name}`]
  if (value === undefined) throw new Error(`no fixture for ${path} {${name}}`)
  return value
}

let unique = 0

export function sampler(fx: Fixtures, deref: (s: JsonSchema) => JsonSchema): Sampler {
  const next = () => `${Date.now().toString(36)}${(unique++).toString(36)}`
  const byName: Record<string, () => string> = {
    email: () => `fuzz-${next()}@example.test`,
    handle: () => `fuzz-${next()}`,
    sku: () => `FUZZ-${next()}`,
    code: () => `fuzz-${next()}`,
    name: () => `Fuzz ${next()}`,
    title: () => `Fuzz ${next()}`,
    reference: () => `fuzz-ref-${next()}`,
    password: () => strongPassword(),
    new_password: () => strongPassword(),
    current_password: () => fx.spare.password,
    region_id: () => fx.store.euRegion,
    role_id: () => fx.role,
    line_id: () => fx.orderLine,
    location_id: () => fx.store.location,
    variant_id: () => fx.store.shirt,
    permission: () => 'products:read',
    country: () => 'DE',
    country_code: () => 'DE',
    origin_country: () => 'DE',
    jurisdiction: () => 'DE',
    currency: () => 'EUR',
    tax_category: () => 'standard',
    rate: () => '19',
    vat_id: () => 'DE123456789',
    postal_code: () => '10115',
    payment_method: () => 'pm_card_visa',
  }
  return {
    deref,
    string(name, schema) {
      const prefix = idPrefix(schema)
      if (prefix) return fx.ids[prefix] ?? `${prefix}_${'0'.repeat(26)}`
      if (schema.format === 'email') return byName.email!()
      if (schema.format) return undefined
      const make = byName[name]
      if (!make) return undefined
      const value = make()
      if (schema.pattern && !new RegExp(schema.pattern).test(value)) return undefined
      return value.slice(0, schema.maxLength ?? value.length)
    },
  }
}

async function call(
  node: TestNode,
  method: string,
  url: string,
  payload?: object,
  headers: Record<string, string> = adminAuth,
) {
  const res = await node.app.inject({
    method: method as 'POST',
    url,
    headers: { ...headers, 'idempotency-key': randomUUID() },
    ...(payload ? { payload } : {}),
  })
  if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`)
  return res.json()
}

async function signedUpCustomer(node: TestNode): Promise<Session & { id: string }> {
  const email = uniqueEmail('fuzz')
  const password = strongPassword()
  await signUpConfirmed(node, email, password)
  const session = await call(node, 'POST', '/store/auth/sign-in', { email, password }, {})
  const headers = bearer(session.access_token)
  const me = await call(node, 'GET', '/store/me', undefined, headers)
  return { id: me.id, email, password, headers }
}

/**
 * A store with one of everything a route may name: catalog, regions, stock, customers with a
 * session, staff, roles, keys, carts (one open, one ordered, one waiting for 3-D Secure, one paid
 * at Stripe) and so on. `node` must have Stripe configured.
 */
export async function makeFixtures(node: TestNode): Promise<Fixtures> {
  const store = await createTestStore(node.app)
  const customer = await signedUpCustomer(node)
  const spare = await signedUpCustomer(node)
  const staff = await newStaffSession(node, 'role_owner')
  const asCustomer = customer.headers
  const category = await call(node, 'POST', '/admin/categories', {
    handle: `fuzz-${randomUUID()}`,
    name: 'Fuzz',
  })
  const collection = await call(node, 'POST', '/admin/collections', {
    handle: `fuzz-${randomUUID()}`,
    title: 'Fuzz',
  })
  const group = await call(node, 'POST', '/admin/customer-groups', { name: 'Fuzz group' })
  await call(node, 'POST', `/admin/customer-groups/${group.id}/customers`, { customer_ids: [customer.id] })
  const priceList = await call(node, 'POST', '/admin/price-lists', {
    name: 'Fuzz prices',
    prices: [{ variant_id: store.shirt, currency: 'EUR', amount: 1500 }],
  })
  const role = await call(node, 'POST', '/admin/roles', { name: 'Fuzz role', permissions: ['products:read'] })
  const otherPassword = strongPassword()
  const otherStaff = await call(node, 'POST', '/admin/staff', {
    email: uniqueEmail('fuzz-staff'),
    password: otherPassword,
    role_id: role.id,
  })
  const apiKey = await call(node, 'POST', '/admin/api-keys', {
    name: 'Fuzz key',
    permissions: ['products:read'],
  })
  await call(node, 'PUT', '/admin/tax/categories/fuzz_category', { name: 'Fuzz', default_kind: 'standard' })
  const rates = await call(node, 'GET', '/admin/tax/rates?jurisdiction=DE')
  const address = await call(
    node,
    'POST',
    '/store/me/addresses',
    { first_name: 'Ada', last_name: 'Fuzz', line1: 'Hauptstraße 1', city: 'Berlin', country: 'DE' },
    asCustomer,
  )
  const reservation = await call(node, 'POST', '/admin/inventory/reservations', {
    lines: [{ variant_id: store.shirt, quantity: 1 }],
    reference: 'fuzz',
  })
  const imported = await call(node, 'POST', '/admin/products/import?format=json', [
    { handle: `fuzz-import-${randomUUID()}`, title: 'Imported' },
  ] as unknown as object)

  const newCart = async () => {
    const cart = await call(
      node,
      'POST',
      '/store/carts',
      {
        region_id: store.euRegion,
        email: customer.email,
        lines: [{ variant_id: store.shirt, quantity: 1 }],
      },
      asCustomer,
    )
    await call(
      node,
      'PATCH',
      `/store/carts/${cart.id}`,
      { shipping_address: berlin, shipping_option_id: store.euShipping },
      asCustomer,
    )
    return cart
  }
  const complete = (cartId: string, payment: object) =>
    node.app.inject({
      method: 'POST',
      url: `/store/carts/${cartId}/complete`,
      headers: { ...customer.headers, 'idempotency-key': randomUUID() },
      payload: { payment },
    })
  const cart = await newCart()
  const ordered = await newCart()
  const placed = await complete(ordered.id, { provider: 'test', payment_method: 'pm_card_visa' })
  if (placed.statusCode !== 201) throw new Error(`checkout: ${placed.statusCode} ${placed.body}`)
  const order = placed.json().order
  const secure = await newCart()
  const challenged = await complete(secure.id, {
    provider: 'test',
    payment_method: 'pm_card_threeDSecureRequired',
  })
  if (challenged.statusCode !== 200)
    throw new Error(`3-D Secure: ${challenged.statusCode} ${challenged.body}`)
  const viaStripe = await newCart()
  const paidAtStripe = await complete(viaStripe.id, { provider: 'stripe', payment_method: 'pm_card_visa' })
  if (paidAtStripe.statusCode !== 201)
    throw new Error(`Stripe: ${paidAtStripe.statusCode} ${paidAtStripe.body}`)

  const product = await call(node, 'GET', `/admin/products/${store.product}`)
  const detail = await call(node, 'GET', `/admin/orders/${order.id}`)
  return {
    store,
    ids: {
      prod: store.product,
      var: store.shirt,
      reg: store.euRegion,
      loc: store.location,
      so: store.euShipping,
      cat: category.id,
      col: collection.id,
      cgrp: group.id,
      cus: customer.id,
      plist: priceList.id,
      res: reservation.id,
      imp: imported.id,
      cart: cart.id,
      cali: cart.lines[0].id,
      ord: order.id,
      pay: challenged.json().payment.id,
    },
    sku: product.variants[0].sku,
    handle: product.handle,
    customerId: customer.id,
    customer,
    spare,
    staffToken: staff.accessToken,
    otherStaff: { id: otherStaff.id, email: otherStaff.email, password: otherPassword },
    role: role.id,
    apiKey: apiKey.key.id,
    address: address.id,
    taxCategory: 'fuzz_category',
    taxRate: rates.data[0].id,
    orderLine: detail.lines[0].id,
    cart3ds: secure.id,
    payment3ds: challenged.json().payment.id,
    stripeIntent: await stripeIntentOf(node, viaStripe.id),
  }
}

async function stripeIntentOf(node: TestNode, cartId: string): Promise<string> {
  const row = await node.runtime.database.db
    .selectFrom('payments')
    .select('provider_ref')
    .where('cart_id', '=', cartId)
    .executeTakeFirstOrThrow()
  return row.provider_ref!
}
