/**
 * Inventory test helpers: catalog variants inserted straight into the catalog's tables (the
 * minimum columns), locations made through the service, and the ledger check every concurrent
 * scenario ends with.
 */
import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import { expect } from 'vitest'
import { createLocation, type LocationInput } from '../../src/modules/inventory/locations.ts'
import { driftReport } from '../../src/modules/inventory/movements.ts'
import type { DB } from '../../src/platform/db/schema.ts'
import { withTransaction } from '../../src/platform/db/transaction.ts'
import { newId } from '../../src/platform/ids.ts'

export interface TestVariant {
  id: string
  sku: string
}

/** One product with `count` variants (SKUs `<prefix>-<n>`), tracked unless said otherwise. */
export async function createVariants(
  db: Kysely<DB>,
  count: number,
  options: { manageInventory?: boolean; prefix?: string } = {},
): Promise<TestVariant[]> {
  const tag = randomBytes(4).toString('hex')
  const prefix = options.prefix ?? `SKU-${tag}`
  const productId = newId('prod')
  await db
    .insertInto('products')
    .values({ id: productId, handle: `inv-${tag}`, title: `Product ${tag}` })
    .execute()
  const variants = Array.from({ length: count }, (_, i) => ({ id: newId('var'), sku: `${prefix}-${i}` }))
  for (let i = 0; i < variants.length; i += 1000) {
    await db
      .insertInto('product_variants')
      .values(
        variants.slice(i, i + 1000).map((v, j) => ({
          id: v.id,
          product_id: productId,
          sku: v.sku,
          title: v.sku,
          options: JSON.stringify({ n: i + j }),
          manage_inventory: options.manageInventory ?? true,
        })),
      )
      .execute()
  }
  return variants
}

/** A location with a unique code; ships everywhere unless told. */
export async function createTestLocation(
  db: Kysely<DB>,
  input: Partial<LocationInput> & { country?: string } = {},
): Promise<string> {
  const location = await withTransaction(db, (trx) =>
    createLocation(trx, {
      code: input.code ?? `wh-${randomBytes(4).toString('hex')}`,
      name: input.name ?? 'Warehouse',
      priority: input.priority,
      address: input.address ?? { country_code: input.country ?? 'DE' },
      ships_to: input.ships_to,
      active: input.active,
    }),
  )
  return location.id
}

/** Asserts that every level equals the sum of its movements and of its active reservations. */
export async function expectLedgerBalanced(db: Kysely<DB>): Promise<void> {
  const report = await driftReport(db)
  expect(report.drift).toEqual([])
}

/** The level of a variant at a location (zeros when it has none). */
export async function levelOf(db: Kysely<DB>, variantId: string, locationId: string) {
  const row = await db
    .selectFrom('inventory_levels')
    .select(['on_hand', 'reserved', 'safety_stock'])
    .where('variant_id', '=', variantId)
    .where('location_id', '=', locationId)
    .executeTakeFirst()
  return row ?? { on_hand: 0, reserved: 0, safety_stock: 0 }
}
