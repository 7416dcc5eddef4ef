/**
 * Best-selling order for the storefront: each product's `sales_count` holds the units of placed
 * orders that were not canceled. An order's units are added once on `order.placed` and taken back
 * once on `order.canceled`, whatever the events' redeliveries and in whichever order they arrive.
 * Cached lists pick the change up within the catalog cache's TTL: a sale does not invalidate the
 * catalog.
 *
 * `product_sales_counted` is the ledger that makes both idempotent: a row keyed by the order id
 * once the order has been counted (or can no longer be: canceled before it was counted), and one
 * keyed `<order id>:canceled` once its cancellation has been seen. Inserts on its primary key
 * queue behind a concurrent insert of the same key, so a placing and a cancellation delivered at
 * the same moment still count the order zero times in total, never minus or plus once.
 */
import { sql } from 'kysely'
import type { Queryable } from '../../platform/db/transaction.ts'
import type { DomainEvent } from '../../platform/events/nats-publisher.ts'
import type { Runtime } from '../../platform/runtime.ts'

interface PlacedLine {
  variant_id: string
  quantity: number
}

/** The ledger key recording that an order's cancellation has been taken into account. */
const canceledKey = (orderId: string) => `${orderId}:canceled`

/** Adds an order's units to its products' sales counts, once per order; true when it counted. */
export async function countSale(
  db: Queryable,
  orderId: string,
  lines: readonly PlacedLine[],
): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`
    with counted as (
      insert into product_sales_counted (order_id) values (${orderId})
      on conflict do nothing returning order_id
    ), sold as (
      select v.product_id, sum(l.quantity)::int as quantity
      from jsonb_to_recordset(${JSON.stringify(lines)}::jsonb) as l(variant_id text, quantity int)
      join product_variants v on v.id = l.variant_id
      where exists (select 1 from counted)
      group by v.product_id
    )
    update products p set sales_count = p.sales_count + sold.quantity
    from sold where p.id = sold.product_id
    returning p.id`.execute(db)
  return rows.length > 0
}

/**
 * Takes a canceled order's units back out of its products' sales counts, once per order; true
 * when it did. A cancellation seen before the order was counted marks the order counted, so its
 * late `order.placed` adds nothing. The units come from the order's lines (a read of the orders
 * module's table: the event names only the order).
 */
export async function uncountSale(db: Queryable, orderId: string): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`
    with never_counted as (
      insert into product_sales_counted (order_id) values (${orderId})
      on conflict do nothing returning order_id
    ), first_cancel as (
      insert into product_sales_counted (order_id) values (${canceledKey(orderId)})
      on conflict do nothing returning order_id
    ), sold as (
      select l.product_id, sum(l.quantity)::int as quantity
      from order_lines l
      where l.order_id = ${orderId}
        and exists (select 1 from first_cancel) and not exists (select 1 from never_counted)
      group by l.product_id
    )
    update products p set sales_count = greatest(p.sales_count - sold.quantity, 0)
    from sold where p.id = sold.product_id
    returning p.id`.execute(db)
  return rows.length > 0
}

/** Has the catalog follow placed and canceled orders (from the outbox, at least once). */
export function followSales(runtime: Runtime): void {
  runtime.outbox.on('order.placed', 'catalog.count-sale', async (event: DomainEvent) => {
    const payload = event.payload as { order_id?: string; lines?: PlacedLine[] }
    if (!payload.order_id || !Array.isArray(payload.lines)) return
    await countSale(runtime.database.db, payload.order_id, payload.lines)
  })
  runtime.outbox.on('order.canceled', 'catalog.uncount-sale', async (event: DomainEvent) => {
    const payload = event.payload as { order_id?: string }
    if (!payload.order_id) return
    await uncountSale(runtime.database.db, payload.order_id)
  })
}
