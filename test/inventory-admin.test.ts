/**
 * The inventory admin API on each database: locations, receipts, adjustments, returns, transfers,
 * counts (JSON and CSV), levels, policies, reservations (commit, release, expiry), movements
 * history and the drift report; bad input answered with problem+json and nothing written.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { deleteVariant } from '../src/modules/catalog/products.ts'
import { runReservationExpiry } from '../src/modules/inventory/jobs.ts'
import type { Tx } from '../src/platform/db/transaction.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'
import { createVariants, expectLedgerBalanced, levelOf, type TestVariant } from './support/inventory.ts'
import { holdOpen as holdOpenOn, waitForLockWaits } from './support/locks.ts'

describeEachDatabase('inventory admin API', (kind) => {
  let node: TestNode
  let variants: TestVariant[]
  let berlin: string
  let paris: string

  const db = () => node.runtime.database.db
  const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    node.app.inject({
      method: 'POST',
      url,
      headers: { ...adminAuth, ...headers },
      payload: payload as object,
    })
  const get = (url: string) => node.app.inject({ url, headers: adminAuth })
  const put = (url: string, payload: object) =>
    node.app.inject({ method: 'PUT', url, headers: adminAuth, payload })
  const holdOpen = (work: (trx: Tx) => Promise<unknown>) => holdOpenOn(db(), work)
  /** What is stored for these variants: levels, policies and movements. */
  const storedFor = async (ids: string[]) => ({
    levels: await db().selectFrom('inventory_levels').selectAll().where('variant_id', 'in', ids).execute(),
    policies: await db()
      .selectFrom('inventory_policies')
      .selectAll()
      .where('variant_id', 'in', ids)
      .execute(),
    movements: await db()
      .selectFrom('inventory_movements')
      .select(['variant_id', 'kind', 'on_hand_delta'])
      .where('variant_id', 'in', ids)
      .orderBy('id')
      .execute(),
  })
  const movementCount = async () =>
    Number(
      (
        await db()
          .selectFrom('inventory_movements')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    )

  beforeAll(async () => {
    node = await startTestNode(kind)
    variants = await createVariants(db(), 6)
    const create = async (code: string, priority: number, country: string, ships_to: string[]) => {
      const res = await post('/admin/inventory/locations', {
        code,
        name: code,
        priority,
        address: { line1: 'Hauptstr. 1', city: 'X', country_code: country },
        ships_to,
      })
      expect(res.statusCode, res.body).toBe(201)
      return res.json().id as string
    }
    berlin = await create('berlin', 1, 'DE', [])
    paris = await create('paris', 2, 'FR', ['FR', 'BE'])
  })
  afterAll(() => node.close())

  it('manages locations and refuses a taken code', async () => {
    const list = await get('/admin/inventory/locations')
    expect(list.json().data.map((l: { code: string }) => l.code)).toEqual(['berlin', 'paris'])
    const firstPage = (await get('/admin/inventory/locations?limit=1')).json()
    expect(
      (await get(`/admin/inventory/locations?limit=1&cursor=${firstPage.next_cursor}`)).json().data[0].code,
    ).toBe('paris')
    // A forged cursor past the integer priorities is refused, not a database error.
    const forged = Buffer.from(JSON.stringify([2 ** 40, 'loc_x'])).toString('base64url')
    const refused = await get(`/admin/inventory/locations?cursor=${forged}`)
    expect(refused.statusCode, refused.body).toBe(400)
    expect(refused.json().code).toBe('invalid_cursor')
    const taken = await post('/admin/inventory/locations', {
      code: 'berlin',
      name: 'B',
      address: { country_code: 'DE' },
    })
    expect(taken.statusCode).toBe(409)
    expect(taken.json()).toMatchObject({ code: 'location_code_taken', errors: [{ path: 'body.code' }] })
    const temp = await post('/admin/inventory/locations', {
      code: 'temp',
      name: 'T',
      address: { country_code: 'AT' },
    })
    const id = temp.json().id
    const patched = await node.app.inject({
      method: 'PATCH',
      url: `/admin/inventory/locations/${id}`,
      headers: adminAuth,
      payload: { priority: 9, ships_to: ['AT'] },
    })
    expect(patched.json()).toMatchObject({ priority: 9, ships_to: ['AT'] })
    const deleted = await node.app.inject({
      method: 'DELETE',
      url: `/admin/inventory/locations/${id}`,
      headers: adminAuth,
    })
    expect(deleted.statusCode).toBe(204)
    expect((await get(`/admin/inventory/locations/${id}`)).statusCode).toBe(404)
  })

  it('receives, adjusts, returns, transfers and counts, each as movements that balance', async () => {
    const [v] = variants
    const receipt = await post('/admin/inventory/receipts', {
      location_id: berlin,
      reference: 'PO-1',
      lines: [{ sku: v!.sku, quantity: 10 }],
    })
    expect(receipt.statusCode, receipt.body).toBe(201)
    expect(receipt.json().levels[0]).toMatchObject({ sku: v!.sku, on_hand: 10, available: 10 })

    const adjusted = await post('/admin/inventory/adjustments', {
      variant_id: v!.id,
      location_id: berlin,
      delta: -2,
      reason: 'damaged',
    })
    expect(adjusted.statusCode, adjusted.body).toBe(201)
    const returned = await post('/admin/inventory/returns', {
      sku: v!.sku,
      location_id: berlin,
      quantity: 1,
      reference: 'ord_1',
    })
    expect(returned.statusCode).toBe(201)
    const moved = await post('/admin/inventory/transfers', {
      sku: v!.sku,
      from_location_id: berlin,
      to_location_id: paris,
      quantity: 4,
    })
    expect(moved.statusCode, moved.body).toBe(201)
    expect(await levelOf(db(), v!.id, berlin)).toMatchObject({ on_hand: 5 })
    expect(await levelOf(db(), v!.id, paris)).toMatchObject({ on_hand: 4 })

    const counted = await post('/admin/inventory/counts', {
      counts: [{ sku: v!.sku, location_id: paris, counted: 3 }],
      reference: 'COUNT-1',
    })
    expect(counted.statusCode, counted.body).toBe(201)
    expect(counted.json().levels[0]).toMatchObject({ on_hand: 3 })

    const history = await get(`/admin/inventory/movements?sku=${v!.sku}&limit=2`)
    expect(history.statusCode).toBe(200)
    expect(history.json().data.map((m: { kind: string }) => m.kind)).toEqual(['cycle_count', 'transfer'])
    const next = await get(
      `/admin/inventory/movements?sku=${v!.sku}&limit=10&cursor=${history.json().next_cursor}`,
    )
    expect(next.json().data.map((m: { kind: string }) => m.kind)).toEqual([
      'transfer',
      'return',
      'adjustment',
      'receipt',
    ])
    expect(next.json().data[2]).toMatchObject({ reason: 'damaged', actor: 'bootstrap_token:bootstrap-admin' })
    const byKind = await get(`/admin/inventory/movements?kind=receipt&reference=PO-1`)
    expect(byKind.json().data).toHaveLength(1)

    const drift = await get('/admin/inventory/drift')
    expect(drift.json()).toMatchObject({ drift: [] })
    expect(drift.json().checked).toBeGreaterThanOrEqual(2)
  })

  it('imports counts from CSV, all rows or none', async () => {
    const [, v1, v2] = variants
    const csv = `location,sku,counted\nberlin,${v1!.sku},7\n${paris},${v2!.sku},2\n`
    const url = '/admin/inventory/counts/import?reference=CSV-1'
    const ok = await node.app.inject({
      method: 'POST',
      url,
      headers: { ...adminAuth, 'content-type': 'text/csv' },
      payload: csv,
    })
    expect(ok.statusCode, ok.body).toBe(201)
    expect(ok.json().rows).toBe(2)
    expect(await levelOf(db(), v1!.id, berlin)).toMatchObject({ on_hand: 7 })

    const before = await movementCount()
    const bad = `location,sku,counted\nberlin,${v1!.sku},9\nnowhere,${v2!.sku},1.5\nberlin,NO-SUCH-SKU,-1\n`
    const refused = await node.app.inject({
      method: 'POST',
      url,
      headers: { ...adminAuth, 'content-type': 'text/csv' },
      payload: bad,
    })
    expect(refused.statusCode).toBe(422)
    expect(refused.headers['content-type']).toContain('application/problem+json')
    expect(refused.json().code).toBe('invalid_csv')
    expect(refused.json().errors.map((e: { path: string }) => e.path)).toEqual([
      'body.rows.2.location',
      'body.rows.2.counted',
      'body.rows.3.sku',
      'body.rows.3.counted',
    ])
    expect(await levelOf(db(), v1!.id, berlin)).toMatchObject({ on_hand: 7 })
    expect(await movementCount()).toBe(before)
  })

  it('refuses bad input with problem+json and writes nothing', async () => {
    const [, , , v] = variants
    await post('/admin/inventory/receipts', { location_id: berlin, lines: [{ sku: v!.sku, quantity: 3 }] })
    const before = await movementCount()
    const cases: Array<[string, unknown, number, string, string]> = [
      [
        '/admin/inventory/receipts',
        { location_id: berlin, lines: [{ sku: v!.sku, quantity: -1 }] },
        400,
        'validation_failed',
        'body.lines.0.quantity',
      ],
      [
        '/admin/inventory/receipts',
        { location_id: berlin, lines: [{ sku: v!.sku, quantity: 1.5 }] },
        400,
        'validation_failed',
        'body.lines.0.quantity',
      ],
      [
        '/admin/inventory/receipts',
        { location_id: berlin, lines: [{ sku: v!.sku, quantity: 1 }], extra: 1 },
        400,
        'validation_failed',
        'body.extra',
      ],
      [
        '/admin/inventory/receipts',
        { location_id: berlin, lines: [{ sku: 'NOPE', quantity: 1 }] },
        422,
        'unknown_variant',
        'body.lines.0.sku',
      ],
      [
        '/admin/inventory/receipts',
        { location_id: berlin, lines: [{ quantity: 1 }] },
        400,
        'validation_failed',
        'body.lines.0',
      ],
      [
        '/admin/inventory/receipts',
        { location_id: 'loc_00000000000000000000000000', lines: [{ sku: v!.sku, quantity: 1 }] },
        422,
        'unknown_location',
        'body.location_id',
      ],
      [
        '/admin/inventory/adjustments',
        { sku: v!.sku, location_id: berlin, delta: 0, reason: 'x' },
        400,
        'validation_failed',
        'body.delta',
      ],
      [
        '/admin/inventory/adjustments',
        { sku: v!.sku, location_id: berlin, delta: -4, reason: 'lost' },
        409,
        'insufficient_stock',
        'body.delta',
      ],
      [
        '/admin/inventory/transfers',
        { sku: v!.sku, from_location_id: berlin, to_location_id: berlin, quantity: 1 },
        400,
        'validation_failed',
        'body.to_location_id',
      ],
      [
        '/admin/inventory/transfers',
        { sku: v!.sku, from_location_id: berlin, to_location_id: paris, quantity: 4 },
        409,
        'insufficient_stock',
        'body.quantity',
      ],
      [
        '/admin/inventory/reservations',
        {
          reference: 'cart_1',
          lines: [
            { sku: v!.sku, quantity: 2 },
            { sku: v!.sku, quantity: 2 },
          ],
        },
        409,
        'insufficient_stock',
        'body.lines.0.quantity',
      ],
      [
        '/admin/inventory/reservations',
        { reference: 'cart_1', lines: [{ sku: v!.sku, quantity: 0 }] },
        400,
        'validation_failed',
        'body.lines.0.quantity',
      ],
      [
        '/admin/inventory/counts',
        { counts: [{ sku: v!.sku, location_id: berlin, counted: -1 }] },
        400,
        'validation_failed',
        'body.counts.0.counted',
      ],
    ]
    for (const [url, payload, status, code, path] of cases) {
      const res = await post(url, payload)
      const label = `${url} ${JSON.stringify(payload)}`
      expect(res.statusCode, `${label}: ${res.body}`).toBe(status)
      expect(res.headers['content-type'], label).toContain('application/problem+json')
      expect(res.json().code, label).toBe(code)
      expect(
        res.json().errors.map((e: { path: string }) => e.path),
        label,
      ).toContain(path)
    }
    expect(await movementCount()).toBe(before)
    expect(await levelOf(db(), v!.id, berlin)).toMatchObject({ on_hand: 3, reserved: 0 })
    expect(await levelOf(db(), v!.id, paris)).toMatchObject({ on_hand: 0 })
    // Found by the bad-input fuzz test: a time PostgreSQL cannot store reached it (500).
    for (const query of [
      'since=0000-01-01T00:00:00Z',
      'until=0000-12-31T23:59:59Z',
      'since=0001-01-01T00:00:00%2B01:00',
      'until=9999-12-31T23:00:00-05:00',
    ]) {
      const res = await get(`/admin/inventory/movements?${query}`)
      expect(res.statusCode, `${query}: ${res.body}`).toBe(400)
      expect(res.json().code).toBe('validation_failed')
    }
  })

  it('reserves across locations by strategy, commits, releases and expires', async () => {
    const [, , , , v] = variants
    await post('/admin/inventory/receipts', { location_id: berlin, lines: [{ sku: v!.sku, quantity: 3 }] })
    await post('/admin/inventory/receipts', { location_id: paris, lines: [{ sku: v!.sku, quantity: 5 }] })

    const nearest = await post('/admin/inventory/reservations', {
      reference: 'cart_a',
      country: 'FR',
      strategy: 'nearest',
      lines: [{ sku: v!.sku, quantity: 2 }],
    })
    expect(nearest.statusCode, nearest.body).toBe(201)
    expect(nearest.json().lines).toEqual([expect.objectContaining({ location_id: paris, quantity: 2 })])

    // Berlin has 3, Paris 3 left: 5 units need both; same-SKU lines are combined.
    const split = await post('/admin/inventory/reservations', {
      reference: 'cart_b',
      lines: [
        { variant_id: v!.id, quantity: 3 },
        { sku: v!.sku, quantity: 2 },
      ],
    })
    expect(split.statusCode, split.body).toBe(201)
    const lines = split
      .json()
      .lines.map((l: { location_id: string; quantity: number }) => [l.location_id, l.quantity])
    expect(new Map(lines)).toEqual(
      new Map([
        [berlin, 3],
        [paris, 2],
      ]),
    )

    // Only Berlin ships to Spain, and it has nothing left.
    const spain = await post('/admin/inventory/reservations', {
      reference: 'cart_c',
      country: 'ES',
      lines: [{ sku: v!.sku, quantity: 1 }],
    })
    expect(spain.statusCode).toBe(409)

    const committed = await post(`/admin/inventory/reservations/${nearest.json().id}/commit`, {})
    expect(committed.statusCode, committed.body).toBe(200)
    expect(committed.json().status).toBe('committed')
    expect(await levelOf(db(), v!.id, paris)).toMatchObject({ on_hand: 3, reserved: 2 })
    const again = await post(`/admin/inventory/reservations/${nearest.json().id}/release`, {})
    expect(again.statusCode).toBe(409)
    expect(again.json().code).toBe('reservation_not_active')

    const released = await post(`/admin/inventory/reservations/${split.json().id}/release`, {})
    expect(released.json().status).toBe('released')
    expect(await levelOf(db(), v!.id, berlin)).toMatchObject({ on_hand: 3, reserved: 0 })

    const expiring = await post('/admin/inventory/reservations', {
      reference: 'cart_d',
      expires_at: new Date(Date.now() - 1000).toISOString(),
      lines: [{ sku: v!.sku, quantity: 1 }],
    })
    expect(expiring.statusCode).toBe(201)
    expect(await runReservationExpiry(node.runtime)).toBe(1)
    expect(await runReservationExpiry(node.runtime)).toBe(0)
    const listed = await get('/admin/inventory/reservations?reference=cart_d')
    expect(listed.json().data[0].status).toBe('expired')
    const mine = await get(`/admin/inventory/reservations?sku=${v!.sku}&status=committed`)
    expect(mine.json().data.map((r: { id: string }) => r.id)).toEqual([nearest.json().id])
    await expectLedgerBalanced(db())
  })

  it('replays a reservation made under an Idempotency-Key, reserving once', async () => {
    const [v] = variants
    const body = { reference: 'cart_idem', lines: [{ sku: v!.sku, quantity: 1 }] }
    const first = await post('/admin/inventory/reservations', body, { 'idempotency-key': 'inv-res-1' })
    const second = await post('/admin/inventory/reservations', body, { 'idempotency-key': 'inv-res-1' })
    expect(first.statusCode, first.body).toBe(201)
    expect(second.headers['idempotent-replayed']).toBe('true')
    expect(second.json().id).toBe(first.json().id)
    const made = await get('/admin/inventory/reservations?reference=cart_idem')
    expect(made.json().data).toHaveLength(1)
  })

  it('documents the inventory API in the OpenAPI document', async () => {
    const res = await node.app.inject({ url: '/openapi.json' })
    expect(res.statusCode).toBe(200)
    const paths = Object.keys(res.json().paths)
    for (const path of [
      '/admin/inventory/reservations',
      '/admin/inventory/movements',
      '/admin/inventory/stream',
    ]) {
      expect(paths).toContain(path)
    }
  })

  it('backorders within the policy limit, and raises low-stock once per crossing', async () => {
    const [, , , , , v] = variants
    const policy = await node.app.inject({
      method: 'PUT',
      url: `/admin/inventory/variants/${v!.sku}/policy`,
      headers: adminAuth,
      payload: { allow_backorder: true, backorder_limit: 2 },
    })
    expect(policy.statusCode, policy.body).toBe(200)
    const settings = await node.app.inject({
      method: 'PUT',
      url: '/admin/inventory/levels',
      headers: adminAuth,
      payload: { sku: v!.sku, location_id: berlin, low_stock_threshold: 3 },
    })
    expect(settings.statusCode, settings.body).toBe(200)
    await post('/admin/inventory/receipts', { location_id: berlin, lines: [{ sku: v!.sku, quantity: 5 }] })
    const reserveOne = () =>
      post('/admin/inventory/reservations', { reference: 'cart_x', lines: [{ sku: v!.sku, quantity: 1 }] })
    for (let i = 0; i < 7; i++) expect((await reserveOne()).statusCode).toBe(201)
    const over = await reserveOne()
    expect(over.statusCode).toBe(409)
    expect(over.json().errors).toEqual([
      { path: 'body.lines.0.quantity', message: 'only 0 of 1 can be reserved' },
    ])
    const level = (await get(`/admin/inventory/levels?sku=${v!.sku}`)).json().data[0]
    expect(level).toMatchObject({ on_hand: 5, reserved: 7, available: -2, low_stock: true })
    const lows = await db()
      .selectFrom('events')
      .selectAll()
      .where('type', '=', 'inventory.low_stock')
      .where('subject_id', '=', v!.id)
      .execute()
    expect(lows).toHaveLength(1)
    expect(lows[0]!.payload).toMatchObject({ location_id: berlin, available: 3 })
    const low = await get('/admin/inventory/levels?low_stock=true')
    expect(low.json().data.map((l: { variant_id: string }) => l.variant_id)).toContain(v!.id)
    await post('/admin/inventory/receipts', { location_id: berlin, lines: [{ sku: v!.sku, quantity: 10 }] })
    const backs = await db()
      .selectFrom('events')
      .select('type')
      .where('type', '=', 'inventory.back_in_stock')
      .where('subject_id', '=', v!.id)
      .execute()
    expect(backs).toHaveLength(2) // the first receipt and this one
    await expectLedgerBalanced(db())
  })

  // The route resolves the variant before its transaction, so a delete can commit in between; the
  // write must then answer as it does when the delete comes first, not break the foreign key.
  it.runIf(kind === 'postgres')(
    "answers stock writes that wait on their variant's delete as for an unknown variant",
    async () => {
      const [a, b, c] = await createVariants(db(), 3)
      // The deletes are made, not committed: each request below still resolves its variant.
      const deletes = await holdOpen(async (trx) => {
        for (const v of [a!, b!, c!])
          expect(await deleteVariant(trx, node.runtime.outbox, v.id)).toBeDefined()
      })
      const pending = Promise.all([
        put('/admin/inventory/levels', { variant_id: a!.id, location_id: berlin, safety_stock: 2 }),
        put(`/admin/inventory/variants/${b!.sku}/policy`, { allow_backorder: true }),
        post('/admin/inventory/receipts', { location_id: paris, lines: [{ sku: c!.sku, quantity: 5 }] }),
      ])
      await waitForLockWaits(db(), 3)
      await deletes.release()
      const [level, policy, receipt] = await pending
      expect(level.statusCode, level.body).toBe(422)
      expect(level.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(level.json()).toMatchObject({
        code: 'unknown_variant',
        errors: [{ path: 'body.variant_id', message: 'no variant has this variant_id' }],
      })
      expect(policy.statusCode, policy.body).toBe(404)
      expect(policy.json()).toMatchObject({
        code: 'not_found',
        detail: `No variant has the id or SKU ${b!.sku}`,
      })
      expect(receipt.statusCode, receipt.body).toBe(422)
      expect(receipt.json()).toMatchObject({
        code: 'unknown_variant',
        errors: [{ path: 'body.lines.0.sku', message: 'no variant has this sku' }],
      })
      expect(await storedFor([a!.id, b!.id, c!.id])).toEqual({ levels: [], policies: [], movements: [] })
    },
  )

  // The level exists, so creating it takes no lock on the variant; a delete that commits while the
  // write waits for the level used to leave it nothing to lock (a TypeError, 500).
  it.runIf(kind === 'postgres')(
    "answers stock writes whose level goes with its variant's delete as for an unknown variant",
    async () => {
      const [v] = await createVariants(db(), 1)
      const first = await post('/admin/inventory/receipts', {
        location_id: berlin,
        lines: [{ variant_id: v!.id, quantity: 5 }],
      })
      expect(first.statusCode, first.body).toBe(201)
      // Another write holds the level; the delete (its cascade) and the two writes queue behind it.
      const other = await holdOpen((trx) =>
        trx
          .selectFrom('inventory_levels')
          .select('on_hand')
          .where('variant_id', '=', v!.id)
          .where('location_id', '=', berlin)
          .forUpdate()
          .execute(),
      )
      const deleted = node.app.inject({
        method: 'DELETE',
        url: `/admin/variants/${v!.id}`,
        headers: adminAuth,
      })
      await waitForLockWaits(db(), 1)
      const pending = Promise.all([
        post('/admin/inventory/receipts', {
          location_id: berlin,
          lines: [{ variant_id: v!.id, quantity: 3 }],
        }),
        post('/admin/inventory/counts', { counts: [{ sku: v!.sku, location_id: berlin, counted: 9 }] }),
        node.app.inject({
          method: 'POST',
          url: '/admin/inventory/counts/import',
          headers: { ...adminAuth, 'content-type': 'text/csv' },
          payload: `location,sku,counted\nberlin,${v!.sku},7\n`,
        }),
      ])
      await waitForLockWaits(db(), 4)
      await other.release()
      expect((await deleted).statusCode).toBe(200)
      const [receipt, count, imported] = await pending
      expect(receipt.statusCode, receipt.body).toBe(422)
      expect(receipt.json()).toMatchObject({
        code: 'unknown_variant',
        errors: [{ path: 'body.lines.0.variant_id', message: 'no variant has this variant_id' }],
      })
      expect(count.statusCode, count.body).toBe(422)
      expect(count.json()).toMatchObject({
        code: 'unknown_variant',
        errors: [{ path: 'body.counts.0.sku', message: 'no variant has this sku' }],
      })
      // A file is refused as a whole, as one naming an unknown SKU is.
      expect(imported.statusCode, imported.body).toBe(422)
      expect(imported.json()).toMatchObject({
        code: 'invalid_csv',
        errors: [{ path: 'body.rows.1.sku', message: 'no variant has this sku' }],
      })
      // The ledger outlives the variant: the first receipt only.
      expect(await storedFor([v!.id])).toEqual({
        levels: [],
        policies: [],
        movements: [{ variant_id: v!.id, kind: 'receipt', on_hand_delta: 5 }],
      })
    },
  )

  // A location holding no stock can be deleted, its empty levels with it: the same race as above.
  it.runIf(kind === 'postgres')(
    "answers a stock write whose level goes with its location's delete as for an unknown location",
    async () => {
      const [v] = await createVariants(db(), 1)
      const made = await post('/admin/inventory/locations', {
        code: `gone-${v!.sku}`,
        name: 'Closing',
        address: { country_code: 'DE' },
      })
      expect(made.statusCode, made.body).toBe(201)
      const location = made.json().id as string
      const empty = await put('/admin/inventory/levels', {
        variant_id: v!.id,
        location_id: location,
        safety_stock: 0,
      })
      expect(empty.statusCode, empty.body).toBe(200)
      const other = await holdOpen((trx) =>
        trx
          .selectFrom('inventory_levels')
          .select('on_hand')
          .where('variant_id', '=', v!.id)
          .where('location_id', '=', location)
          .forUpdate()
          .execute(),
      )
      const deleted = node.app.inject({
        method: 'DELETE',
        url: `/admin/inventory/locations/${location}`,
        headers: adminAuth,
      })
      await waitForLockWaits(db(), 1)
      const receipt = post('/admin/inventory/receipts', {
        location_id: location,
        lines: [{ variant_id: v!.id, quantity: 3 }],
      })
      await waitForLockWaits(db(), 2)
      await other.release()
      expect((await deleted).statusCode).toBe(204)
      const answer = await receipt
      expect(answer.statusCode, answer.body).toBe(422)
      expect(answer.json()).toMatchObject({
        code: 'unknown_location',
        errors: [{ path: 'body.location_id', message: 'no stock location has this id' }],
      })
      expect(await storedFor([v!.id])).toEqual({ levels: [], policies: [], movements: [] })
    },
  )
})
