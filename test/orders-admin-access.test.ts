/**
 * Who may read orders' personal data in the back office, and the trace it leaves: every read of
 * the order list, an order and the CSV export is in the audit log (one entry per request, whatever
 * it returned); the export, every customer's email in one file, needs `customers:export` besides
 * `orders:read`, while the single order (an address to ship to) needs only `orders:read`; and the
 * OpenAPI document gives the export's media type as the route sends it.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'
import { eventually } from './support/eventually.ts'
import { createOrderCatalog, type OrderCatalog, placeTestOrder } from './support/orders.ts'
import { bearer, newStaffSession, type StaffSession } from './support/staff.ts'

interface AuditEntry {
  action: string
  resource_type: string
  resource_id: string | null
  actor_id: string
  status: number | null
  request_id: string | null
  details?: Record<string, unknown>
}

describeEachDatabase('orders: access to personal data', (kind) => {
  let node: TestNode
  let catalog: OrderCatalog
  const roles = new Map<string, StaffSession>()

  // Signing staff in hashes passwords and enrols MFA: slow on a loaded machine.
  beforeAll(async () => {
    node = await startTestNode(kind)
    catalog = await createOrderCatalog(node)
    for (const role of ['role_analyst', 'role_inventory_manager', 'role_accountant'])
      roles.set(role, await newStaffSession(node, role))
  }, 180_000)
  afterAll(() => node?.close())

  const get = (url: string, session?: StaffSession) =>
    node.app.inject({ method: 'GET', url, headers: session ? bearer(session.accessToken) : adminAuth })

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
    // A lookup records whose orders it looked for.
    const lookup = await get(`/admin/orders?email=${encodeURIComponent(order.email)}`)
    expect(lookup.statusCode, lookup.body).toBe(200)
    const entry = await auditOf(String(lookup.headers['x-request-id'] ?? ''))
    expect(entry).toMatchObject({ action: 'GET /admin/orders', details: { query: { email: order.email } } })
  })

  it('needs customers:export besides orders:read for the export, and only orders:read for an order', async () => {
    const order = await placeTestOrder(node, catalog)
    for (const role of ['role_analyst', 'role_inventory_manager']) {
      const session = roles.get(role)!
      const refused = await get('/admin/orders/export.csv', session)
      expect(refused.statusCode, `${role}: ${refused.body}`).toBe(403)
      expect(refused.json()).toMatchObject({ code: 'forbidden' })
      expect(refused.json().detail).toContain('customers:export')
      expect(refused.body).not.toContain(order.email)
      // Staff who fulfil orders still read the address of the one they ship.
      const one = await get(`/admin/orders/${order.id}`, session)
      expect(one.statusCode, `${role}: ${one.body}`).toBe(200)
      expect(one.json().email).toBe(order.email)
    }
    const file = await get('/admin/orders/export.csv', roles.get('role_accountant')!)
    expect(file.statusCode, file.body).toBe(200)
    expect(file.body).toContain(order.email)
    // Without credentials it is still 401, not 403.
    const anonymous = await node.app.inject({ method: 'GET', url: '/admin/orders/export.csv' })
    expect(anonymous.statusCode).toBe(401)
  })

  it('documents the export as text/csv in the OpenAPI document', async () => {
    const doc = (await node.app.inject({ method: 'GET', url: '/openapi.json' })).json()
    const ok = doc.paths['/admin/orders/export.csv'].get.responses['200']
    expect(Object.keys(ok.content)).toEqual(['text/csv'])
    expect(ok.content['text/csv'].schema).toMatchObject({ type: 'string' })
    const file = await get('/admin/orders/export.csv')
    expect(file.statusCode).toBe(200)
    expect(file.headers['content-type']).toMatch(/^text\/csv/)
  })
})
