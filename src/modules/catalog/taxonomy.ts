/**
 * Categories and collections. Categories form a tree kept as a materialised path (the ids from the
 * root down to the category, joined by '/'), so "this category and everything under it" is one
 * prefix match for the storefront filter; a move rewrites the paths of the moved subtree in one
 * statement. Collections are a flat, hand-curated grouping of products.
 */
import { sql } from 'kysely'
import type { Static } from 'typebox'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'
import type { CreateCategory, CreateCollection, UpdateCategory, UpdateCollection } from './schemas.ts'

export interface CategoryView {
  id: string
  parent_id: string | null
  handle: string
  name: string
  description: string
  position: number
  created_at: string
  updated_at: string
}

export interface CategoryNodeView {
  id: string
  handle: string
  name: string
  description: string
  children: CategoryNodeView[]
}

export interface CollectionView {
  id: string
  handle: string
  title: string
  description: string
  metadata: Record<string, unknown>
  created_at: string
  updated_at: string
}

const categoryColumns = [
  'id',
  'parent_id',
  'handle',
  'name',
  'description',
  'position',
  'created_at',
  'updated_at',
] as const

function categoryView(row: {
  id: string
  parent_id: string | null
  handle: string
  name: string
  description: string
  position: number
  created_at: Date
  updated_at: Date
}): CategoryView {
  return { ...row, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() }
}

/** The 23505 of a handle column: the only unique key of both tables besides the primary key. */
function handleTaken(error: unknown, what: string): unknown {
  const e = error as { code?: string; constraint?: string } | null
  if (e?.code === '23505' && (e.constraint === undefined || e.constraint.endsWith('_handle_key')))
    return problem('handle_taken', `Another ${what} has this handle`, {
      errors: [{ path: 'body.handle', message: 'is already in use' }],
    })
  return error
}

/**
 * Every structural change to the tree (adding under a parent, moving, deleting) takes this lock.
 * Tree writes are rare, and serialising them means a path computed from a parent's path cannot be
 * outdated by a concurrent move of an ancestor, which row locks alone would only catch for the
 * rows a statement's snapshot already saw.
 */
async function lockTree(trx: Tx): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext('catalog.categories.tree'))`.execute(trx)
}

/** `_` and `%` are LIKE wildcards; ids contain `_`, so a path prefix is escaped before matching. */
function likePrefix(path: string): string {
  return `${path.replace(/[\\%_]/g, '\\$&')}/%`
}

/** Every category, flat, in display order (position, then name). */
export async function listCategories(db: Queryable): Promise<CategoryView[]> {
  const rows = await db
    .selectFrom('categories')
    .select(categoryColumns)
    .orderBy('position')
    .orderBy('name')
    .orderBy('id')
    .execute()
  return rows.map(categoryView)
}

/** One category, or undefined. */
export async function getCategory(db: Queryable, id: string): Promise<CategoryView | undefined> {
  const row = await db
    .selectFrom('categories')
    .select(categoryColumns)
    .where('id', '=', id)
    .executeTakeFirst()
  return row && categoryView(row)
}

/** The category tree for the storefront: roots and each level ordered by position, then name. */
export async function categoryTree(db: Queryable): Promise<CategoryNodeView[]> {
  const rows = await db
    .selectFrom('categories')
    .select(['id', 'parent_id', 'handle', 'name', 'description'])
    .orderBy('position')
    .orderBy('name')
    .orderBy('id')
    .execute()
  const nodes = new Map<string, CategoryNodeView>(
    rows.map((r) => [
      r.id,
      { id: r.id, handle: r.handle, name: r.name, description: r.description, children: [] },
    ]),
  )
  const roots: CategoryNodeView[] = []
  // Rows arrive in display order, so appending keeps every level in that order.
  for (const row of rows) {
    const node = nodes.get(row.id)!
    const parent = row.parent_id === null ? undefined : nodes.get(row.parent_id)
    if (parent) parent.children.push(node)
    else roots.push(node)
  }
  return roots
}

async function parentPath(trx: Tx, parentId: string): Promise<string> {
  const parent = await trx
    .selectFrom('categories')
    .select('path')
    .where('id', '=', parentId)
    .executeTakeFirst()
  if (!parent)
    throw problem('validation_failed', 'The parent category does not exist', {
      errors: [{ path: 'body.parent_id', message: 'no such category' }],
    })
  return parent.path
}

/** Creates a category, at the root or under parent_id, and emits `category.created`. */
export async function createCategory(
  trx: Tx,
  outbox: Outbox,
  input: Static<typeof CreateCategory>,
): Promise<CategoryView> {
  const id = newId('cat')
  const parentId = input.parent_id ?? null
  if (parentId) await lockTree(trx)
  const path = parentId ? `${await parentPath(trx, parentId)}/${id}` : id
  try {
    await trx
      .insertInto('categories')
      .values({
        id,
        parent_id: parentId,
        handle: input.handle,
        name: input.name,
        description: input.description ?? '',
        position: input.position ?? 0,
        path,
      })
      .execute()
  } catch (error) {
    throw handleTaken(error, 'category')
  }
  const category = (await getCategory(trx, id))!
  await outbox.emit(trx, 'category.created', { category }, id)
  return category
}

/**
 * Updates a category; a new parent_id moves it with its whole subtree. Moving a category under
 * itself or one of its descendants would make a cycle and is refused with 409 `conflict`.
 * Undefined when the category is unknown.
 */
export async function updateCategory(
  trx: Tx,
  outbox: Outbox,
  id: string,
  input: Static<typeof UpdateCategory>,
): Promise<CategoryView | undefined> {
  const moving = input.parent_id !== undefined
  if (moving) await lockTree(trx)
  const current = await trx
    .selectFrom('categories')
    .select(['parent_id', 'path'])
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
  if (!current) return undefined
  const changes = {
    ...(input.handle !== undefined ? { handle: input.handle } : {}),
    ...(input.name !== undefined ? { name: input.name } : {}),
    ...(input.description !== undefined ? { description: input.description } : {}),
    ...(input.position !== undefined ? { position: input.position } : {}),
  }
  try {
    await trx
      .updateTable('categories')
      .set({ ...changes, updated_at: sql<Date>`now()` })
      .where('id', '=', id)
      .execute()
  } catch (error) {
    throw handleTaken(error, 'category')
  }
  const newParent = input.parent_id ?? null
  if (moving && newParent !== current.parent_id) {
    const base = newParent ? await parentPath(trx, newParent) : ''
    if (newParent === id || base === current.path || base.startsWith(`${current.path}/`))
      throw problem('conflict', 'A category cannot move under itself or one of its descendants', {
        errors: [{ path: 'body.parent_id', message: 'is this category or one of its descendants' }],
      })
    const newPath = base ? `${base}/${id}` : id
    // One statement rewrites the category and every descendant: the old prefix becomes the new one.
    await sql`
      update categories
      set path = ${newPath} || substr(path, ${current.path.length + 1}::int),
          parent_id = case when id = ${id} then ${newParent}::text else parent_id end
      where id = ${id} or path like ${likePrefix(current.path)}`.execute(trx)
  }
  const category = (await getCategory(trx, id))!
  await outbox.emit(trx, 'category.updated', { category, changed: Object.keys(input) }, id)
  return category
}

/**
 * Deletes a category; its products lose it. A category with children is refused with 409
 * `conflict`: silently deleting or re-parenting a subtree is a decision for the caller.
 */
export async function deleteCategory(trx: Tx, outbox: Outbox, id: string): Promise<boolean> {
  await lockTree(trx)
  const child = await trx
    .selectFrom('categories')
    .select('id')
    .where('parent_id', '=', id)
    .limit(1)
    .executeTakeFirst()
  // A child implies the category exists (parent_id is a foreign key), so this is never a 404.
  if (child)
    throw problem('conflict', 'The category has subcategories; move or delete them first', {
      errors: [{ path: 'params.id', message: 'has subcategories' }],
    })
  const deleted = await trx.deleteFrom('categories').where('id', '=', id).returning('id').executeTakeFirst()
  if (!deleted) return false
  await outbox.emit(trx, 'category.deleted', { id }, id)
  return true
}

const collectionColumns = [
  'id',
  'handle',
  'title',
  'description',
  'metadata',
  'created_at',
  'updated_at',
] as const

function collectionView(row: {
  id: string
  handle: string
  title: string
  description: string
  metadata: Record<string, unknown>
  created_at: Date
  updated_at: Date
}): CollectionView {
  return { ...row, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() }
}

/** Every collection, by title. */
export async function listCollections(db: Queryable): Promise<CollectionView[]> {
  const rows = await db
    .selectFrom('collections')
    .select(collectionColumns)
    .orderBy('title')
    .orderBy('id')
    .execute()
  return rows.map(collectionView)
}

/** One collection, or undefined. */
export async function getCollection(db: Queryable, id: string): Promise<CollectionView | undefined> {
  const row = await db
    .selectFrom('collections')
    .select(collectionColumns)
    .where('id', '=', id)
    .executeTakeFirst()
  return row && collectionView(row)
}

/** Creates a collection and emits `collection.created`. */
export async function createCollection(
  trx: Tx,
  outbox: Outbox,
  input: Static<typeof CreateCollection>,
): Promise<CollectionView> {
  const id = newId('col')
  try {
    await trx
      .insertInto('collections')
      .values({
        id,
        handle: input.handle,
        title: input.title,
        description: input.description ?? '',
        metadata: JSON.stringify(input.metadata ?? {}),
      })
      .execute()
  } catch (error) {
    throw handleTaken(error, 'collection')
  }
  const collection = (await getCollection(trx, id))!
  await outbox.emit(trx, 'collection.created', { collection }, id)
  return collection
}

/** Updates a collection and emits `collection.updated`; undefined when it is unknown. */
export async function updateCollection(
  trx: Tx,
  outbox: Outbox,
  id: string,
  input: Static<typeof UpdateCollection>,
): Promise<CollectionView | undefined> {
  let row: { id: string } | undefined
  try {
    row = await trx
      .updateTable('collections')
      .set({
        ...(input.handle !== undefined ? { handle: input.handle } : {}),
        ...(input.title !== undefined ? { title: input.title } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(input.metadata !== undefined ? { metadata: JSON.stringify(input.metadata) } : {}),
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', id)
      .returning('id')
      .executeTakeFirst()
  } catch (error) {
    throw handleTaken(error, 'collection')
  }
  if (!row) return undefined
  const collection = (await getCollection(trx, id))!
  await outbox.emit(trx, 'collection.updated', { collection, changed: Object.keys(input) }, id)
  return collection
}

/** Deletes a collection (its products keep existing, in no collection) and emits `collection.deleted`. */
export async function deleteCollection(trx: Tx, outbox: Outbox, id: string): Promise<boolean> {
  const deleted = await trx.deleteFrom('collections').where('id', '=', id).returning('id').executeTakeFirst()
  if (!deleted) return false
  await outbox.emit(trx, 'collection.deleted', { id }, id)
  return true
}
