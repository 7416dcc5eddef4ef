/**
 * Store cart routes. A guest cart's id is its key; a cart that belongs to a customer answers only
 * to that customer's token. Every change answers with the whole updated cart.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { customerIdOf } from '../../platform/http/auth.ts'
import { problem } from '../../platform/http/errors.ts'
import { errorResponses } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { commerceDeps } from '../orders/deps.ts'
import {
  type CartAccess,
  changeCart,
  checkAccess,
  claimCart,
  createCart,
  getCart,
  pricedLines,
  withAddedQuantity,
  withoutLine,
  withQuantity,
} from './carts.ts'
import { loadCart } from './load.ts'
import {
  AddLine,
  AddPromotion,
  Cart,
  CartCodeParams,
  CartLineParams,
  CartParams,
  CartShippingOption,
  CreateCart,
  UpdateCart,
  UpdateLine,
} from './schemas.ts'
import { quoteShipping, regionShippingOptions } from './shipping.ts'
import { needsShipping, shippingParcel } from './totals.ts'

const tags = ['carts']
/**
 * Optional: a guest's cart is reached by its id alone (the id is its only key, so keep it private);
 * a customer's cart needs the customer's access token.
 */
export const cartSecurity: Array<Record<string, string[]>> = [{}, { bearer: [] }]
const security = cartSecurity
const one = { 200: Type.Ref('Cart'), ...errorResponses }

/** Who asks: the signed-in customer, or a guest. */
export function cartAccessOf(request: FastifyRequest): CartAccess {
  const p = request.principal
  return { customerId: p?.kind === 'customer' ? p.id : null }
}

export const cartRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  app.addSchema(Cart)
  const deps = () => commerceDeps(runtime)

  app.post(
    '/store/carts',
    {
      config: { idempotency: 'optional' },
      schema: {
        tags,
        security,
        summary: 'Create a cart in a region (by id, or by the shopper country), optionally with lines',
        body: CreateCart,
        response: { 201: Type.Ref('Cart'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(201)
      return createCart(deps(), request.body, cartAccessOf(request))
    },
  )

  app.get(
    '/store/carts/:id',
    {
      schema: {
        tags,
        security,
        summary: 'A cart with its lines and totals',
        params: CartParams,
        response: one,
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store')
      return getCart(runtime.database.db, request.params.id, cartAccessOf(request))
    },
  )

  app.patch(
    '/store/carts/:id',
    {
      schema: {
        tags,
        security,
        summary: 'Set email, addresses, shipping option, VAT id or metadata; totals are recomputed',
        params: CartParams,
        body: UpdateCart,
        response: one,
      },
    },
    async (request) => {
      const body = request.body
      const email = body.email ? body.email.toLowerCase() : body.email
      const read = email === undefined ? {} : { email }
      return changeCart(
        deps(),
        request.params.id,
        cartAccessOf(request),
        [],
        async (loaded) => {
          const set: Record<string, unknown> = { ...body }
          if (email !== undefined) set.email = email
          if (body.shipping_address) {
            const country = body.shipping_address.country_code
            if (!loaded.regionCountries.includes(country)) {
              throw problem('unknown_country', `The cart's region does not ship to ${country}`, {
                errors: [
                  { path: 'body.shipping_address.country_code', message: 'not served by the cart region' },
                ],
              })
            }
          }
          if (body.shipping_option_id) {
            const option = await runtime.database.db
              .selectFrom('shipping_options')
              .selectAll()
              .where('id', '=', body.shipping_option_id)
              .where('region_id', '=', loaded.cart.region_id)
              .where('active', '=', true)
              .executeTakeFirst()
            if (!option) {
              throw problem('shipping_not_available', 'No such shipping option in the cart region', {
                errors: [{ path: 'body.shipping_option_id', message: 'not offered in the cart region' }],
              })
            }
            loaded.shippingOption = option
          } else if (body.shipping_option_id === null) {
            loaded.shippingOption = null
          }
          return { set }
        },
        read,
      )
    },
  )

  app.post(
    '/store/carts/:id/lines',
    {
      schema: {
        tags,
        security,
        summary: 'Add a variant (its line grows when already in the cart)',
        params: CartParams,
        body: AddLine,
        response: one,
      },
    },
    async (request) => {
      const { variant_id, quantity } = request.body
      return changeCart(deps(), request.params.id, cartAccessOf(request), [variant_id], (loaded) => ({
        lines: withAddedQuantity(loaded.cart.lines, loaded, variant_id, quantity),
      }))
    },
  )

  app.patch(
    '/store/carts/:id/lines/:line_id',
    {
      schema: {
        tags,
        security,
        summary: "Set a line's quantity",
        params: CartLineParams,
        body: UpdateLine,
        response: one,
      },
    },
    async (request) =>
      changeCart(deps(), request.params.id, cartAccessOf(request), [], (loaded) => ({
        lines: withQuantity(loaded.cart.lines, loaded, request.params.line_id, request.body.quantity),
      })),
  )

  app.delete(
    '/store/carts/:id/lines/:line_id',
    { schema: { tags, security, summary: 'Remove a line', params: CartLineParams, response: one } },
    async (request) =>
      changeCart(deps(), request.params.id, cartAccessOf(request), [], (loaded) => ({
        lines: withoutLine(loaded.cart.lines, request.params.line_id),
      })),
  )

  app.post(
    '/store/carts/:id/promotions',
    {
      schema: {
        tags,
        security,
        summary: 'Apply a promotion code',
        params: CartParams,
        body: AddPromotion,
        response: one,
      },
    },
    async (request) => {
      const code = request.body.code.toUpperCase()
      const d = deps()
      return changeCart(d, request.params.id, cartAccessOf(request), [], async (loaded) => {
        if (loaded.cart.promo_codes.includes(code)) return {}
        await d.promotions.validateCode(d.db, code, loaded.cart)
        return { set: { promo_codes: [...loaded.cart.promo_codes, code] } }
      })
    },
  )

  app.delete(
    '/store/carts/:id/promotions/:code',
    { schema: { tags, security, summary: 'Remove a promotion code', params: CartCodeParams, response: one } },
    async (request) => {
      const code = request.params.code.toUpperCase()
      return changeCart(deps(), request.params.id, cartAccessOf(request), [], (loaded) => {
        if (!loaded.cart.promo_codes.includes(code))
          throw problem('not_found', `The cart has no code ${code}`)
        return { set: { promo_codes: loaded.cart.promo_codes.filter((c) => c !== code) } }
      })
    },
  )

  app.get(
    '/store/carts/:id/shipping-options',
    {
      schema: {
        tags,
        security,
        summary: "Shipping options of the cart's region, priced for this cart",
        params: CartParams,
        response: { 200: Type.Object({ data: Type.Array(CartShippingOption) }), ...errorResponses },
      },
    },
    async (request) => {
      const d = deps()
      const loaded = await loadCart(d.db, request.params.id)
      const cart = checkAccess(loaded?.cart, request.params.id, cartAccessOf(request))
      // Quoted on the parcel the cart's totals would price (its lines, weights and prices as the
      // catalog has them now, its discounts, the region's currency now), not on its stored lines:
      // else the list offers options, and prices, that the next change or checkout refuses.
      const { lines } = pricedLines(loaded!)
      // Nothing to ship, nothing to choose.
      if (lines.length > 0 && !needsShipping(lines)) return { data: [] }
      const options = await regionShippingOptions(d.db, cart.region_id)
      const discounts = d.promotions.discountsFor(cart.promo_codes, lines, cart.currency_code)
      const parcel = shippingParcel(cart, lines, discounts)
      const data = []
      for (const option of options) {
        try {
          const amount = await quoteShipping(option, parcel)
          data.push({
            id: option.id,
            name: option.name,
            price_type: option.price_type,
            amount,
            tax_category: option.tax_category,
          })
        } catch {
          // An option that cannot serve this cart is simply not offered.
        }
      }
      return { data }
    },
  )

  app.post(
    '/store/carts/:id/customer',
    {
      config: { auth: 'customer' },
      schema: {
        tags,
        summary: "Give the cart to the signed-in customer, merging the customer's previous cart into it",
        security: [{ bearer: [] }],
        params: CartParams,
        response: one,
      },
    },
    async (request) => claimCart(deps(), request.params.id, customerIdOf(request)),
  )
}
