/**
 * Best-selling order for the storefront: each product's `sales_count` grows by the units of every
 * placed order, counted once per order whatever the event's redeliveries. Cached lists pick the
 * new order up within the catalog cache's TTL: a sale does not invalidate the catalog.
 */
import { sql } from 'kysely'
import type { Queryable } from '../../platform/db/transaction.ts'
import type { DomainEvent } from '../../platform/events/nats-publisher.ts'
import type { Runtime } from '../../platform/runtime.ts'

interface PlacedLine {
  variant_id: string
  quantity: number
}

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

/** Has the catalog count the units of every placed order (from the outbox, at least once). */
export function followSales(runtime: Runtime): void {
  runtime.outbox.on('order.placed', async (event: DomainEvent) => {
    const payload = event.payload as { order_id?: string; lines?: PlacedLine[] }
    if (!payload.order_id || !Array.isArray(payload.lines)) return
    await countSale(runtime.database.db, payload.order_id, payload.lines)
  })
}
