/**
 * The demo store made ready to sell: a warehouse holding stock of every demo variant and a
 * shipping option in each region, so that a fresh install can run a whole checkout at once.
 */

import { withTransaction } from '../../platform/db/transaction.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { createShippingOption } from '../carts/shipping.ts'
import { inventoryContext } from '../inventory/context.ts'
import { createLocation } from '../inventory/locations.ts'
import { receiveStock } from '../inventory/stock.ts'

const DEMO_STOCK = 100

/** Stocks and ships the demo catalog unless a location exists; returns whether it did. */
export async function seedDemoCommerce(runtime: Runtime): Promise<boolean> {
  const { db } = runtime.database
  const ctx = inventoryContext(runtime, 'system:demo-seed')
  const seeded = await withTransaction(db, async (trx) => {
    const existing = await trx.selectFrom('stock_locations').select('id').limit(1).executeTakeFirst()
    if (existing) return false
    const location = await createLocation(trx, {
      code: 'demo-warehouse',
      name: 'Demo warehouse',
      address: { line1: 'Lagerstraße 1', city: 'Hamburg', postal_code: '20457', country_code: 'DE' },
    })
    const variants = await trx.selectFrom('product_variants').select('id').execute()
    for (let i = 0; i < variants.length; i += 500) {
      await receiveStock(trx, ctx, {
        location_id: location.id,
        lines: variants
          .slice(i, i + 500)
          .map((v, j) => ({ variant_id: v.id, quantity: DEMO_STOCK, path: `lines.${i + j}` })),
        reference: 'demo opening stock',
      })
    }
    const regions = await trx.selectFrom('regions').select(['id', 'currency_code']).execute()
    for (const region of regions) {
      if (region.currency_code === 'USD') {
        await createShippingOption(trx, {
          region_id: region.id,
          name: 'Ground',
          price_type: 'weight',
          tiers: [
            { max_weight_g: 1000, amount: 595 },
            { max_weight_g: 5000, amount: 1195 },
            { max_weight_g: null, amount: 2495 },
          ],
          free_above_amount: 15000,
        })
      } else {
        await createShippingOption(trx, {
          region_id: region.id,
          name: 'Standard',
          price_type: 'flat',
          amount: 495,
          free_above_amount: 7500,
        })
      }
    }
    return true
  })
  await ctx.publish()
  return seeded
}
