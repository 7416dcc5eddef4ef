/**
 * Who may read orders' personal data in the back office, and the trace it leaves: every read of
 * the order list, an order and the CSV export is in the audit log (one entry per request, whatever
 * it returned).
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'
import { eventually } from './support/eventually.ts'
import { createOrderCatalog, type OrderCatalog, placeTestOrder } from './support/orders.ts'

interface AuditEntry {
  action: string
  resource_type: string
  resource_id: string | null
  actor_id: string
  status: number | null
  request_id: string | null
}

describeEachDatabase('orders: access to personal data', (kind) => {
  let node: TestNode
  let catalog: OrderCatalog

  beforeAll(async () => {
    node = await startTestNode(kind)
    catalog = await createOrderCatalog(node)
  })
  afterAll(() => node?.close())

  const get = (url: string) => node.app.inject({ method: 'GET', url, headers: adminAuth })

  /** The audit entry of one request (written after its response is sent: polled). */
  const auditOf = (requestId: string) =>
    eventually(async () => {
      const res = await get('/admin/audit-log?actor_id=bootstrap-admin&limit=100')
      return (res.json().data as AuditEntry[]).find((e) => e.request_id === requestId)
    }, 10_000)

  it('records every read of the order list, an order and the export in the audit log', async () => {
    const order = await placeTestOrder(node, catalog)
    const reads = [
      { url: '/admin/orders?limit=5', action: 'GET /admin/orders', id: null },
      { url: `/admin/orders/${order.id}`, action: 'GET /admin/orders/:id', id: order.id },
      { url: '/admin/orders/export.csv', action: 'GET /admin/orders/export.csv', id: null },
    ]
    for (const read of reads) {
      const res = await get(read.url)
      expect(res.statusCode, res.body).toBe(200)
      const entry = await auditOf(String(res.headers['x-request-id'] ?? ''))
      expect(entry, read.action).toMatchObject({
        action: read.action,
        resource_type: 'order',
        resource_id: read.id,
        actor_id: 'bootstrap-admin',
        status: 200,
      })
    }
  })
})
