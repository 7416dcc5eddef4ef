/**
 * Customer groups (wholesale, VIP, staff, …) and their members. A price list can target a group,
 * so membership decides prices: callers invalidate the catalog cache after a change commits.
 */
import { sql } from 'kysely'
import type { Queryable, Tx } from '../../platform/db/transaction.ts'
import type { Outbox } from '../../platform/events/outbox.ts'
import { problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'

export interface CustomerGroupView {
  id: string
  name: string
  description: string
  customer_ids: string[]
  created_at: string
}

export interface CustomerGroupInput {
  name?: string
  description?: string
}

function nameTaken(error: unknown): unknown {
  if ((error as { code?: string } | null)?.code === '23505')
    return problem('conflict', 'Another customer group has this name', {
      errors: [{ path: 'body.name', message: 'is already in use' }],
    })
  return error
}

async function loadGroups(db: Queryable, id?: string): Promise<CustomerGroupView[]> {
  let query = db
    .selectFrom('customer_groups')
    .select([
      'id',
      'name',
      'description',
      'created_at',
      sql<string[]>`array(select m.customer_id from customer_group_members m
        where m.group_id = customer_groups.id order by m.customer_id)`.as('customer_ids'),
    ])
    .orderBy('name')
  if (id !== undefined) query = query.where('id', '=', id)
  const rows = await query.execute()
  return rows.map((r) => ({ ...r, created_at: r.created_at.toISOString() }))
}

/** Every group by name, with its members' ids. */
export async function listCustomerGroups(db: Queryable): Promise<CustomerGroupView[]> {
  return loadGroups(db)
}

/** One group with its members' ids, or undefined. */
export async function getCustomerGroup(db: Queryable, id: string): Promise<CustomerGroupView | undefined> {
  const [group] = await loadGroups(db, id)
  return group
}

/**
 * True when the group exists. Inside a transaction it also key-share locks the row, so the group
 * cannot be deleted before the caller's reference to it (a price list's target) commits.
 */
export async function customerGroupExists(db: Queryable, id: string): Promise<boolean> {
  const row = await db
    .selectFrom('customer_groups')
    .select('id')
    .where('id', '=', id)
    .forKeyShare()
    .executeTakeFirst()
  return row !== undefined
}

/** The ids of the groups the customer belongs to, sorted: decides which price lists apply. */
export async function customerGroupIdsOf(db: Queryable, customerId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('customer_group_members')
    .select('group_id')
    .where('customer_id', '=', customerId)
    .orderBy('group_id')
    .execute()
  return rows.map((r) => r.group_id)
}

/** Creates a group and emits `customer_group.created`. */
export async function createCustomerGroup(
  trx: Tx,
  outbox: Outbox,
  input: { name: string; description?: string },
): Promise<CustomerGroupView> {
  const id = newId('cgrp')
  try {
    await trx
      .insertInto('customer_groups')
      .values({ id, name: input.name, description: input.description ?? '' })
      .execute()
  } catch (error) {
    throw nameTaken(error)
  }
  const group = (await getCustomerGroup(trx, id))!
  await outbox.emit(trx, 'customer_group.created', { customer_group: group }, id)
  return group
}

/** Renames or redescribes a group and emits `customer_group.updated`; undefined when unknown. */
export async function updateCustomerGroup(
  trx: Tx,
  outbox: Outbox,
  id: string,
  input: CustomerGroupInput,
): Promise<CustomerGroupView | undefined> {
  let row: { id: string } | undefined
  try {
    row = await trx
      .updateTable('customer_groups')
      .set({
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
      })
      .where('id', '=', id)
      .returning('id')
      .executeTakeFirst()
  } catch (error) {
    throw nameTaken(error)
  }
  if (!row) return undefined
  const group = (await getCustomerGroup(trx, id))!
  await outbox.emit(trx, 'customer_group.updated', { customer_group: group, changed: Object.keys(input) }, id)
  return group
}

/**
 * Deletes a group with its memberships and emits `customer_group.deleted`. A price list that
 * targeted it then applies to nobody (no customer is in a group that does not exist), which is the
 * safe outcome: it never widens to every shopper.
 */
export async function deleteCustomerGroup(trx: Tx, outbox: Outbox, id: string): Promise<boolean> {
  const deleted = await trx
    .deleteFrom('customer_groups')
    .where('id', '=', id)
    .returning('id')
    .executeTakeFirst()
  if (!deleted) return false
  await outbox.emit(trx, 'customer_group.deleted', { id }, id)
  return true
}

/**
 * Adds customers to a group (those already in it stay, without error) and emits
 * `customer_group.customers_added` with the ones newly added. An unknown customer is a 400 naming
 * its index; undefined when the group is unknown.
 */
export async function addCustomersToGroup(
  trx: Tx,
  outbox: Outbox,
  groupId: string,
  customerIds: readonly string[],
): Promise<CustomerGroupView | undefined> {
  // Key-share, like the members' foreign key: the group cannot be deleted under this insert.
  if (!(await customerGroupExists(trx, groupId))) return undefined
  // Key-share locks keep the customers from being deleted (erased) before the memberships commit.
  const found = await trx
    .selectFrom('customers')
    .select('id')
    .where('id', 'in', customerIds)
    .forKeyShare()
    .execute()
  const known = new Set(found.map((r) => r.id))
  const errors = customerIds.flatMap((id, i) =>
    known.has(id) ? [] : [{ path: `body.customer_ids[${i}]`, message: `no customer ${id}` }],
  )
  if (errors.length > 0)
    throw problem('validation_failed', `${errors.length} customer(s) do not exist`, { errors })
  const added = await trx
    .insertInto('customer_group_members')
    .values(customerIds.map((customer_id) => ({ group_id: groupId, customer_id })))
    .onConflict((oc) => oc.columns(['group_id', 'customer_id']).doNothing())
    .returning('customer_id')
    .execute()
  if (added.length > 0)
    await outbox.emit(
      trx,
      'customer_group.customers_added',
      { customer_group_id: groupId, customer_ids: added.map((r) => r.customer_id).sort() },
      groupId,
    )
  return getCustomerGroup(trx, groupId)
}

/**
 * Removes a customer from a group and emits `customer_group.customer_removed`. Undefined when the
 * group is unknown or the customer is not in it.
 */
export async function removeCustomerFromGroup(
  trx: Tx,
  outbox: Outbox,
  groupId: string,
  customerId: string,
): Promise<CustomerGroupView | undefined> {
  const removed = await trx
    .deleteFrom('customer_group_members')
    .where('group_id', '=', groupId)
    .where('customer_id', '=', customerId)
    .returning('customer_id')
    .executeTakeFirst()
  if (!removed) return undefined
  await outbox.emit(
    trx,
    'customer_group.customer_removed',
    { customer_group_id: groupId, customer_id: customerId },
    groupId,
  )
  return getCustomerGroup(trx, groupId)
}
