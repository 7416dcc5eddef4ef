/**
 * SKUs are case-sensitive (docs/catalog.md): two SKUs that differ only in case are two SKUs, in
 * writes, in imports and in every lookup by SKU. Pinned here so that a change to either side of
 * that rule is a decision, not an accident.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'

describeEachDatabase('SKUs are case-sensitive', (kind) => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode(kind)
  })
  afterAll(() => node.close())

  const send = (method: 'GET' | 'POST', url: string, payload?: object) =>
    node.app.inject({ method, url, headers: adminAuth, ...(payload ? { payload } : {}) })

  it('keeps SKUs differing in case apart in writes, imports and inventory lookups', async () => {
    const product = async (handle: string, sku: string) => {
      const res = await send('POST', '/admin/products', { handle, title: handle, variants: [{ sku }] })
      expect(res.statusCode, res.body).toBe(201)
      return res.json().variants[0].id as string
    }
    const upper = await product('sku-case-upper', 'CASE-1')
    const lower = await product('sku-case-lower', 'case-1')
    expect(lower).not.toBe(upper)
    // The same SKU in the same case is still taken.
    const taken = await send('POST', '/admin/products', {
      handle: 'sku-case-again',
      title: 'again',
      variants: [{ sku: 'case-1' }],
    })
    expect(taken.statusCode).toBe(409)

    const location = await send('POST', '/admin/inventory/locations', {
      code: 'sku-case',
      name: 'SKU case',
      priority: 1,
      address: { line1: 'Hauptstr. 1', city: 'Berlin', country_code: 'DE' },
      ships_to: [],
    })
    expect(location.statusCode, location.body).toBe(201)
    const location_id = location.json().id as string
    const receipt = await send('POST', '/admin/inventory/receipts', {
      location_id,
      lines: [{ sku: 'case-1', quantity: 5 }],
    })
    expect(receipt.statusCode, receipt.body).toBeLessThan(300)
    const levelOf = async (sku: string) =>
      (await send('GET', `/admin/inventory/levels?sku=${sku}`)).json().data as Array<{
        variant_id: string
        on_hand: number
      }>
    expect((await levelOf('case-1')).map((l) => [l.variant_id, l.on_hand])).toEqual([[lower, 5]])
    expect((await levelOf('CASE-1')).every((l) => l.variant_id === upper && l.on_hand === 0)).toBe(true)
    const mixed = await send('POST', '/admin/inventory/receipts', {
      location_id,
      lines: [{ sku: 'Case-1', quantity: 1 }],
    })
    expect(mixed.statusCode).toBe(422)
    expect(mixed.json()).toMatchObject({
      code: 'unknown_variant',
      errors: [{ path: 'body.lines.0.sku' }],
    })

    // An import names variants by SKU the same way: two SKUs differing in case are no repeat, and
    // each matches only the variant whose SKU it is.
    const file = 'handle,title,sku\nsku-case-a,A,CASE-2\nsku-case-b,B,case-2\nsku-case-upper,Upper,CASE-1\n'
    const report = await node.app.inject({
      method: 'POST',
      url: '/admin/products/import?dry_run=true',
      headers: { ...adminAuth, 'content-type': 'text/csv' },
      payload: file,
    })
    expect(report.statusCode, report.body).toBe(200)
    expect(report.json()).toMatchObject({ total_rows: 3, valid_rows: 3, error_count: 0 })
    const stolen = await node.app.inject({
      method: 'POST',
      url: '/admin/products/import?dry_run=true',
      headers: { ...adminAuth, 'content-type': 'text/csv' },
      payload: 'handle,title,sku\nsku-case-upper,Upper,case-1\n',
    })
    expect(stolen.statusCode).toBe(422)
    expect(stolen.json().errors).toContainEqual({
      row: 1,
      path: 'sku',
      message: 'SKU case-1 belongs to product sku-case-lower',
    })
  })
})
