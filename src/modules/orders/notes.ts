/** Staff notes on an order: free text with its author and time, shown in the order's detail. */
import type { Queryable } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import { newId } from '../../platform/ids.ts'

export interface OrderNoteView {
  id: string
  order_id: string
  author: string
  body: string
  created_at: string
}

type NoteRow = { id: string; order_id: string; author: string; body: string; created_at: Date }

function noteView(row: NoteRow): OrderNoteView {
  return { ...row, created_at: new Date(row.created_at).toISOString() }
}

/** Adds a note to an order; not_found when there is no such order. */
export async function addOrderNote(
  db: Queryable,
  orderId: string,
  input: { author: string; body: string },
): Promise<OrderNoteView> {
  const exists = await db.selectFrom('orders').select('id').where('id', '=', orderId).executeTakeFirst()
  if (!exists) throw problem('not_found', `No order ${orderId}`)
  const row = await db
    .insertInto('order_notes')
    .values({ id: newId('onote'), order_id: orderId, author: input.author, body: input.body })
    .returningAll()
    .executeTakeFirstOrThrow()
    .catch((error: unknown) => {
      // The order was deleted between the check and the insert.
      if ((error as { code?: string }).code === '23503') throw problem('not_found', `No order ${orderId}`)
      throw error
    })
  return noteView(row)
}

/** The notes of an order, oldest first. */
export async function notesOf(db: Queryable, orderId: string): Promise<OrderNoteView[]> {
  const rows = await db
    .selectFrom('order_notes')
    .selectAll()
    .where('order_id', '=', orderId)
    .orderBy('id')
    .execute()
  return rows.map(noteView)
}
