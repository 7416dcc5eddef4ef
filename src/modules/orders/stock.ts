/**
 * What an order's status means for its stock: a fulfilled order's units have left the warehouse
 * (its reservation is committed: on_hand and reserved both go down); an order refunded in full
 * before it shipped will never ship (its reservation is released). Cancel releases on its own.
 */
import type { Tx } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import type { InventoryContext } from '../inventory/context.ts'
import { commitReservation, findReservation, releaseReservation } from '../inventory/reservations.ts'
import type { OrderStatus } from './tables.ts'

/** Commits or releases the order's reservation as its new status requires; a no-op otherwise. */
export async function settleOrderStock(
  trx: Tx,
  ctx: InventoryContext,
  orderId: string,
  to: OrderStatus,
): Promise<void> {
  if (to !== 'fulfilled' && to !== 'refunded') return
  const order = await trx
    .selectFrom('orders')
    .select(['reservation_id', 'fulfillment_status'])
    .where('id', '=', orderId)
    .executeTakeFirst()
  if (!order?.reservation_id) return
  const reservation = await findReservation(trx, order.reservation_id)
  if (to === 'fulfilled' && (reservation?.status === 'released' || reservation?.status === 'expired')) {
    // Released when the order was refunded in full before shipping, whose refund then failed at
    // the processor: shipping now would send units the stock no longer counts as sold.
    throw problem('conflict', "The order's stock was released (it was refunded before it shipped)", {
      errors: [{ path: 'body.to', message: 'refund or cancel the order; its stock is no longer held' }],
    })
  }
  if (reservation?.status !== 'active') return
  if (to === 'fulfilled') await commitReservation(trx, order.reservation_id, ctx)
  else if (order.fulfillment_status === 'not_fulfilled')
    await releaseReservation(trx, order.reservation_id, ctx)
}
