/**
 * Marks as booked the refunds made at the processor (its dashboard: a payment refund recorded from
 * a webhook) that orders followed before each was booked under its own order refund row. That
 * version counted them in the order's refunded total and status but wrote no row, so
 * bookProcessorRefunds would book each again, with a second move and `order.*_refunded` event (and
 * the capture path could move a completed order back). The rows are the ones it writes: a booked
 * order refund under the payment refund's key, with its amount.
 *
 * Left for the new code to book, with its event, as it books a refund made now: refunds of pending
 * orders (no refund status follows pending: their capture books them) and refunds whose
 * `refund.created` the orders listener has not had yet. Failed refunds moved no money and are never
 * booked. Rows under a refund's key already (booked since, or a failure marker) are left as they are,
 * so running this again adds nothing.
 *
 * The id reuses the payment refund's ULID body: the same form as newId('oref') and the same on every
 * run, without app code in a migration.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    insert into order_refunds (id, order_id, refund_key, amount, reason, status)
    select 'oref_' || substr(pr.id, strpos(pr.id, '_') + 1), o.id, pr.idempotency_key, pr.amount,
      'refunded at the processor', 'booked'
    from payment_refunds pr
    join orders o on o.payment_id = pr.payment_id
    where pr.actor like 'webhook:%' and pr.status <> 'failed' and o.status <> 'pending'
      and not exists (
        select 1 from order_refunds r where r.order_id = o.id and r.refund_key = pr.idempotency_key)
      and not exists (
        select 1 from events e
        where e.type = 'refund.created' and e.subject_id = pr.payment_id and e.published_at is null
          and e.payload ->> 'refund_id' = pr.id
          and not exists (
            select 1 from event_deliveries d
            where d.event_id = e.id and d.consumer = 'orders.book-processor-refund'))
    on conflict (order_id, refund_key) do nothing`.execute(db)
}

/** The rows stay, as those booked since do: the version before counts these refunds without them. */
export async function down(): Promise<void> {}
