/** Demo catalog: a handful of published products so a fresh install has a store to look at. */
import { sql } from 'kysely'
import { withTransaction } from '../../platform/db/transaction.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { createProduct } from './service.ts'

const DEMO_PRODUCTS = [
  ['classic-tee', 'Classic Tee', 'A soft cotton t-shirt, cut for every day.'],
  ['hoodie', 'Organic Hoodie', 'Heavyweight organic cotton hoodie with a brushed inside.'],
  ['canvas-tote', 'Canvas Tote', 'Sturdy tote bag that carries a week of groceries.'],
  ['wool-beanie', 'Merino Beanie', 'Warm, itch-free merino wool beanie.'],
  ['running-socks', 'Running Socks (3-pack)', 'Cushioned socks that stay up on long runs.'],
  ['ceramic-mug', 'Ceramic Mug', 'Stoneware mug, 350 ml, dishwasher safe.'],
  ['notebook-a5', 'A5 Notebook', 'Dot-grid notebook with 160 pages of 100 gsm paper.'],
  ['water-bottle', 'Steel Water Bottle', 'Insulated 750 ml bottle; cold for 24 hours.'],
] as const

/** Seeds the demo catalog unless products already exist; returns how many it created. */
export async function seedDemoCatalog(runtime: Runtime): Promise<number> {
  const { count } = await runtime.database.db
    .selectFrom('products')
    .select(sql<number>`count(*)::int`.as('count'))
    .executeTakeFirstOrThrow()
  if (count > 0) return 0
  await withTransaction(runtime.database.db, async (trx) => {
    for (const [handle, title, description] of DEMO_PRODUCTS) {
      await createProduct(trx, runtime.outbox, { handle, title, description, status: 'published' })
    }
  })
  return DEMO_PRODUCTS.length
}
