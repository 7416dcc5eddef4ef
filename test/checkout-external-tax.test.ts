/**
 * Checkout with an external tax service: the service's commit and void are queued with the order's
 * transaction and sent after it commits, so a service that is down neither stops checkout nor holds
 * rows locked while it fails; the calls arrive once it is back, keyed for idempotency.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { purgeUnsendableTaxCalls } from '../src/modules/tax/jobs.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import {
  adminCall,
  completeCheckout,
  createTestStore,
  readyCart,
  type TestStore,
} from './support/commerce.ts'
import { DATABASE_KINDS } from './support/database.ts'
import { eventually } from './support/eventually.ts'

interface Received {
  path: string
  key: string | undefined
  body: { reference?: string; lines?: Array<{ id: string; amount: number }> }
  status: number
}

async function readJson(req: IncomingMessage): Promise<Received['body']> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return JSON.parse(Buffer.concat(chunks).toString() || '{}')
}

/** A tax service: 10 % on every line; commits and voids fail while `down` is set. */
function taxService(state: { down: boolean; received: Received[] }): Server {
  return createServer(async (req, res) => {
    const body = await readJson(req)
    const path = req.url ?? ''
    const key = req.headers['idempotency-key'] as string | undefined
    if (path !== '/tax/calculate') {
      const status = state.down ? 503 : 204
      state.received.push({ path, key, body, status })
      res.writeHead(status).end()
      return
    }
    const lines = (body.lines ?? []).map((l) => ({
      id: l.id,
      taxes: [{ jurisdiction: 'EXT', label: 'Tax 10%', rate: '10', taxable_amount: l.amount, tax_amount: 0 }],
    }))
    state.received.push({ path, key, body, status: 200 })
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ lines }))
  })
}

describe.each(DATABASE_KINDS)('%s: checkout with an external tax service', (kind) => {
  const state = { down: true, received: [] as Received[] }
  let server: Server
  let node: TestNode
  let store: TestStore

  beforeAll(async () => {
    server = taxService(state)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tax/`
    node = await startTestNode(kind, { work: true, env: { JOB_RETRY_DELAY_SECONDS: '1' } })
    store = await createTestStore(node.app)
    const settings = await adminCall(node.app, 'PATCH', '/admin/tax/settings', {
      provider: 'external',
      provider_url: url,
      provider_timeout_ms: 2000,
    })
    expect(settings.statusCode, settings.body).toBe(200)
  })
  afterAll(async () => {
    await node?.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  const calls = (path: string, reference: string) =>
    state.received.filter((r) => r.path === path && r.body.reference === reference)

  it('places the order while the service is down, and commits and voids it there once it is back', async () => {
    state.down = true
    const cartId = await readyCart(node.app, store, 1)
    const placed = await completeCheckout(node.app, cartId)
    expect(placed.statusCode, placed.body).toBe(201)
    const orderId = placed.json().order.id as string
    // The commit is tried after the order committed, and fails while the service is down.
    await eventually(async () => (calls('/tax/commit', orderId).length > 0 ? true : undefined))
    expect(calls('/tax/commit', orderId).every((c) => c.status === 503)).toBe(true)

    state.down = false
    const committed = await eventually(async () =>
      calls('/tax/commit', orderId).find((c) => c.status === 204),
    )
    expect(committed.key).toBe(`commit:${orderId}`)

    const canceled = await node.app.inject({
      method: 'POST',
      url: `/admin/orders/${orderId}/cancel`,
      headers: { ...adminAuth, 'content-type': 'application/json' },
      payload: { reason: 'customer changed their mind' },
    })
    expect(canceled.statusCode, canceled.body).toBe(200)
    const voided = await eventually(async () => calls('/tax/void', orderId).find((c) => c.status === 204))
    expect(voided.key).toBe(`void:${orderId}`)
  })

  it('does not send a commit still waiting when the order was canceled meanwhile', async () => {
    state.down = true
    const cartId = await readyCart(node.app, store, 1)
    const placed = await completeCheckout(node.app, cartId)
    const orderId = placed.json().order.id as string
    await eventually(async () => (calls('/tax/commit', orderId).length > 0 ? true : undefined))
    const canceled = await node.app.inject({
      method: 'POST',
      url: `/admin/orders/${orderId}/cancel`,
      headers: { ...adminAuth, 'content-type': 'application/json' },
      payload: {},
    })
    expect(canceled.statusCode, canceled.body).toBe(200)
    state.down = false
    await eventually(async () => calls('/tax/void', orderId).find((c) => c.status === 204))
    // Every queued call of the order has finished; the service never booked the sale.
    await eventually(async () => {
      const jobs = await node.runtime.jobs.boss.findJobs('tax.service-call', {})
      const mine = jobs.filter((j) => (j.data as { reference: string }).reference === orderId)
      return mine.length === 2 && mine.every((j) => j.state === 'completed') ? true : undefined
    })
    expect(calls('/tax/commit', orderId).filter((c) => c.status === 204)).toEqual([])
    // The calls' bodies (the buyer's address) are gone once done; the jobs never held them.
    const waiting = await node.runtime.database.db
      .selectFrom('tax_service_calls')
      .select('id')
      .where('reference', '=', orderId)
      .execute()
    expect(waiting).toEqual([])
    for (const job of await node.runtime.jobs.boss.findJobs('tax.service-call', {}))
      expect(Object.keys(job.data as object).sort()).toEqual([
        'call_id',
        'path',
        'reference',
        'timeoutMs',
        'url',
      ])
  })

  it('still sends a call queued with its body, as calls were before their table existed', async () => {
    state.down = false
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tax/`
    const reference = 'ord_queued_before_0018'
    await node.runtime.jobs.enqueue(node.runtime.database.db, 'tax.service-call', {
      url,
      timeoutMs: 2000,
      path: 'void',
      body: { reference },
    })
    const sent = await eventually(async () => calls('/tax/void', reference).find((c) => c.status === 204))
    expect(sent.key).toBe(`void:${reference}`)
  })

  it('purges call bodies that can no longer be sent, and only those', async () => {
    const db = node.runtime.database.db
    const rows = [
      { id: 'txc_purge_old', age: '32 days' },
      { id: 'txc_purge_recent', age: '29 days' },
    ]
    for (const row of rows)
      await sql`insert into tax_service_calls (id, reference, path, body, created_at)
        values (${row.id}, ${row.id}, 'commit', '{}', now() - ${row.age}::interval)`.execute(db)
    expect(await purgeUnsendableTaxCalls(db)).toBeGreaterThanOrEqual(1)
    const left = await db
      .selectFrom('tax_service_calls')
      .select('id')
      .where('id', 'in', ['txc_purge_old', 'txc_purge_recent'])
      .execute()
    expect(left).toEqual([{ id: 'txc_purge_recent' }])
    await db.deleteFrom('tax_service_calls').where('id', '=', 'txc_purge_recent').execute()
  })

  it('sends nothing for a checkout that did not place an order', async () => {
    const cartId = await readyCart(node.app, store, 1)
    const declined = await completeCheckout(node.app, cartId, {
      provider: 'test',
      payment_method: 'pm_card_chargeDeclined',
    })
    expect(declined.statusCode).toBe(402)
    const jobs = await node.runtime.jobs.boss.findJobs('tax.service-call', {})
    const references = jobs.map((j) => {
      const data = j.data as { reference?: string; body?: { reference: string } }
      return data.reference ?? data.body?.reference ?? ''
    })
    expect(references.every((r) => r.startsWith('ord_'))).toBe(true)
    expect(state.received.filter((r) => r.path !== '/tax/calculate' && r.body.reference === cartId)).toEqual(
      [],
    )
  })
})
