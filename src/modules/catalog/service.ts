/**
 * Catalog service: the functions other modules and the routes call. Variants, prices, categories
 * and search arrive with the catalog issue; this is the product core they build on.
 */

import { sql } from 'kysely'
import type { Static } from 'typebox'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { problem } from '../../platform/http/errors.ts'
import { decodeCursor, toPage } from '../../platform/http/pagination.ts'
import { newId } from '../../platform/ids.ts'
import type { CreateProduct, UpdateProduct } from './schemas.ts'
import type { ProductStatus } from './tables.ts'

export interface ProductView {
  id: string
  handle: string
  title: string
  description: string
  status: ProductStatus
  metadata: Record<string, unknown>
  created_at: string
  updated_at: string
}

const columns = [
  'id',
  'handle',
  'title',
  'description',
  'status',
  'metadata',
  'created_at',
  'updated_at',
] as const

function view(row: {
  id: string
  handle: string
  title: string
  description: string
  status: ProductStatus
  metadata: Record<string, unknown>
  created_at: Date
  updated_at: Date
}): ProductView {
  return { ...row, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() }
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === '23505'
}

/** Lists products newest first; `status` narrows (the storefront passes 'published'). */
export async function listProducts(
  db: Queryable,
  options: { limit: number; cursor?: string; status?: ProductStatus },
): Promise<{ data: ProductView[]; next_cursor: string | null }> {
  let query = db
    .selectFrom('products')
    .select(columns)
    .orderBy('id', 'desc')
    .limit(options.limit + 1)
  if (options.status) query = query.where('status', '=', options.status)
  if (options.cursor) {
    const [lastId] = decodeCursor(options.cursor, ['string'])
    query = query.where('id', '<', String(lastId))
  }
  const rows = await query.execute()
  return toPage(rows.map(view), options.limit, (p) => [p.id])
}

/** Finds a product by id (`prod_…`) or by handle; undefined when there is none. */
export async function findProduct(
  db: Queryable,
  ref: string,
  options: { status?: ProductStatus } = {},
): Promise<ProductView | undefined> {
  let query = db
    .selectFrom('products')
    .select(columns)
    .where(ref.startsWith('prod_') ? 'id' : 'handle', '=', ref)
  if (options.status) query = query.where('status', '=', options.status)
  const row = await query.executeTakeFirst()
  return row && view(row)
}

/** Creates a product and emits `product.created`; a taken handle is `handle_taken`. */
export async function createProduct(
  trx: Tx,
  outbox: Outbox,
  input: Static<typeof CreateProduct>,
): Promise<ProductView> {
  try {
    const row = await trx
      .insertInto('products')
      .values({
        id: newId('prod'),
        handle: input.handle,
        title: input.title,
        description: input.description ?? '',
        status: input.status ?? 'draft',
        metadata: JSON.stringify(input.metadata ?? {}),
      })
      .returning(columns)
      .executeTakeFirstOrThrow()
    const product = view(row)
    await outbox.emit(trx, 'product.created', { product }, product.id)
    return product
  } catch (error) {
    if (isUniqueViolation(error)) throw handleTaken(input.handle)
    throw error
  }
}

function handleTaken(handle: string) {
  return problem('handle_taken', `Another product has the handle ${handle}`, {
    errors: [{ path: 'body.handle', message: 'is already in use' }],
  })
}

/** Applies a partial update and emits `product.updated`; undefined when the product is unknown. */
export async function updateProduct(
  trx: Tx,
  outbox: Outbox,
  id: string,
  input: Static<typeof UpdateProduct>,
): Promise<ProductView | undefined> {
  try {
    const row = await trx
      .updateTable('products')
      .set({
        ...(input.handle !== undefined ? { handle: input.handle } : {}),
        ...(input.title !== undefined ? { title: input.title } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(input.status !== undefined ? { status: input.status } : {}),
        ...(input.metadata !== undefined ? { metadata: JSON.stringify(input.metadata) } : {}),
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', id)
      .returning(columns)
      .executeTakeFirst()
    if (!row) return undefined
    const product = view(row)
    await outbox.emit(trx, 'product.updated', { product, changed: Object.keys(input) }, product.id)
    return product
  } catch (error) {
    if (isUniqueViolation(error) && input.handle) throw handleTaken(input.handle)
    throw error
  }
}

/** Deletes a product and emits `product.deleted`; false when there was none. */
export async function deleteProduct(trx: Tx, outbox: Outbox, id: string): Promise<boolean> {
  const deleted = await trx.deleteFrom('products').where('id', '=', id).returning('id').executeTakeFirst()
  if (!deleted) return false
  await outbox.emit(trx, 'product.deleted', { id }, id)
  return true
}
