/**
 * Default deny on /admin: every admin route declares a permission (an undeclared one stops the app
 * at boot), and every admin route in the route table refuses a caller without credentials.
 */
import Fastify from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { registerAuth } from '../src/platform/http/auth.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'

describe('admin route permissions', () => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode('pglite')
  })
  afterAll(() => node.close())

  it('refuses to register an admin route that declares no permission', () => {
    const app = Fastify()
    registerAuth(app, { resolvers: [] })
    expect(() => app.get('/admin/secret', async () => ({ secret: true }))).toThrow(/declares no permission/)
  })

  it('refuses every admin route without credentials, and lets the admin token through', async () => {
    const adminRoutes = node.app.routeTable
      .filter((r) => r.url.startsWith('/admin') && r.method !== 'HEAD' && r.config.permission !== 'public')
      .map((r) => ({ path: r.url, method: r.method, staffOnly: r.config.permission === 'staff' }))
    expect(adminRoutes.length).toBeGreaterThanOrEqual(5)
    for (const { path, method, staffOnly } of adminRoutes) {
      const url = path.replace(/:id/g, 'prod_00000000000000000000000000').replace(/:(\w+)/g, 'x')
      const anonymous = await node.app.inject({ method: method as 'GET', url })
      expect(anonymous.statusCode, `${method} ${path}`).toBe(401)
      if (staffOnly) continue // about a staff member's own account: the bootstrap token has none
      const admin = await node.app.inject({ method: method as 'GET', url, headers: adminAuth })
      expect([401, 403], `${method} ${path}`).not.toContain(admin.statusCode)
    }
  })
})
