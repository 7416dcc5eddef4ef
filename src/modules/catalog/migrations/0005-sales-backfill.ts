/**
 * Counts into products' sales counts the orders placed before the count followed `order.placed`
 * (migration 0004), canceled ones excepted. Through the same ledger as the event listeners, so an
 * order whose event is delivered meanwhile is counted once either way, and running this twice
 * counts nothing more. Reads the orders module's tables: the events of those orders are gone.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    with counted as (
      insert into product_sales_counted (order_id)
      select o.id from orders o where o.status <> 'canceled'
      on conflict do nothing returning order_id
    ), sold as (
      select l.product_id, sum(l.quantity) as quantity
      from order_lines l join counted c on c.order_id = l.order_id
      group by l.product_id
    )
    update products p set sales_count = p.sales_count + sold.quantity
    from sold where p.id = sold.product_id`.execute(db)
}

/** The counts stay: they cannot be told apart from those the listeners made since. */
export async function down(): Promise<void> {}
