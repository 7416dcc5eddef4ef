/**
 * Idempotency-Key with Stripe's semantics: a repeat replays the stored response and does the work
 * once; another body under the same key is refused; a key still running gets 409; a claim left by
 * a request that died is taken over; a server error releases the key.
 */
import Fastify from 'fastify'
import { sql } from 'kysely'
import { afterAll, beforeAll, expect, it } from 'vitest'
import * as guestScopeMigration from '../src/platform/db/migrations/0003-idempotency-guest-scope.ts'
import { problem } from '../src/platform/http/errors.ts'
import { anonymousScope, registerIdempotency, runIdempotent } from '../src/platform/http/idempotency.ts'
import { registerProblemHandler } from '../src/platform/http/problem-handler.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { createTestStore } from './support/commerce.ts'
import { describeEachDatabase, describePostgres } from './support/database.ts'

describeEachDatabase('Idempotency-Key', (kind) => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode(kind)
  })
  afterAll(() => node.close())

  const create = (key: string | undefined, body: object) =>
    node.app.inject({
      method: 'POST',
      url: '/admin/products',
      headers: { ...adminAuth, ...(key ? { 'idempotency-key': key } : {}) },
      payload: body,
    })
  const countByHandle = async (handle: string) =>
    (
      await node.runtime.database.db
        .selectFrom('products')
        .select('id')
        .where('handle', '=', handle)
        .execute()
    ).length

  it('replays the first response for the same key and body, doing the work once', async () => {
    const body = { handle: 'idem-mug', title: 'Mug' }
    const first = await create('key-1', body)
    expect(first.statusCode).toBe(201)
    expect(first.headers['idempotent-replayed']).toBeUndefined()
    const second = await create('key-1', { title: 'Mug', handle: 'idem-mug' })
    expect(second.statusCode).toBe(201)
    expect(second.headers['idempotent-replayed']).toBe('true')
    expect(second.json()).toEqual(first.json())
    expect(await countByHandle('idem-mug')).toBe(1)
    const events = await node.runtime.database.db
      .selectFrom('events')
      .select('id')
      .where('subject_id', '=', first.json().id)
      .execute()
    expect(events).toHaveLength(1)
  })

  it('refuses the same key with a different body', async () => {
    await create('key-2', { handle: 'idem-a', title: 'A' })
    const res = await create('key-2', { handle: 'idem-b', title: 'B' })
    expect(res.statusCode).toBe(422)
    expect(res.json().code).toBe('idempotency_key_reused')
    expect(await countByHandle('idem-b')).toBe(0)
  })

  it('replays a client error too, since retrying cannot change it', async () => {
    await create(undefined, { handle: 'idem-taken', title: 'Taken' })
    const first = await create('key-3', { handle: 'idem-taken', title: 'Again' })
    expect(first.statusCode).toBe(409)
    const again = await create('key-3', { handle: 'idem-taken', title: 'Again' })
    expect(again.statusCode).toBe(409)
    expect(again.headers['idempotent-replayed']).toBe('true')
    expect(again.json()).toEqual(first.json())
  })

  it('answers 409 while the key is held, and lets a retry take over a claim left by a dead request', async () => {
    const { db } = node.runtime.database
    const body = { handle: 'idem-crash', title: 'Crash' }
    // A request that claimed the key and died before its work committed.
    await create('key-4', body)
      .then(() => db.deleteFrom('products').where('handle', '=', 'idem-crash').execute())
      .then(() =>
        db
          .updateTable('idempotency_keys')
          .set({ state: 'running', response_status: null, response_body: null, locked_at: sql<Date>`now()` })
          .where('key', '=', 'key-4')
          .execute(),
      )
    const busy = await create('key-4', body)
    expect(busy.statusCode).toBe(409)
    expect(busy.json().code).toBe('idempotency_in_progress')
    expect(busy.headers['retry-after']).toBe('1')

    await db
      .updateTable('idempotency_keys')
      .set({ locked_at: sql<Date>`now() - interval '5 minutes'` })
      .where('key', '=', 'key-4')
      .execute()
    const retried = await create('key-4', body)
    expect(retried.statusCode).toBe(201)
    expect(await countByHandle('idem-crash')).toBe(1)
  })

  it('refuses a body nested thousands of levels deep before hashing it for the key', async () => {
    // Found by the bad-input fuzz test: hashing such a body for its key ran out of stack (500).
    const metadata = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`
    const res = await node.app.inject({
      method: 'POST',
      url: '/admin/products',
      headers: { ...adminAuth, 'idempotency-key': 'key-deep', 'content-type': 'application/json' },
      payload: `{"handle":"idem-deep","title":"Deep","metadata":${metadata}}`,
    })
    expect(res.statusCode, res.body).toBe(400)
    expect(res.json()).toMatchObject({
      code: 'validation_failed',
      errors: [{ path: expect.stringMatching(/^body\.metadata\.a/) }],
    })
    const capture = await node.app.inject({
      method: 'POST',
      url: '/admin/orders/ord_00000000000000000000000000/capture',
      headers: { ...adminAuth, 'idempotency-key': 'key-deep-capture', 'content-type': 'application/json' },
      payload: `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
    })
    expect(capture.statusCode, capture.body).toBe(400)
    expect(await countByHandle('idem-deep')).toBe(0)
  })

  it('stores and replays an answer that echoes U+0000 from an uploaded file', async () => {
    // Found by the bad-input fuzz test: jsonb refused the stored answer, and the client got a 500.
    const upload = () =>
      node.app.inject({
        method: 'POST',
        url: '/admin/products/import',
        headers: { ...adminAuth, 'idempotency-key': 'key-nul-file', 'content-type': 'text/csv' },
        payload: 'handle,title,attributes,sku\nnul-file,T,"a\u0000b",NUL-1\n',
      })
    const first = await upload()
    expect(first.statusCode, first.body).toBe(422)
    expect(first.body).toContain('\\u0000')
    const replay = await upload()
    expect(replay.headers['idempotent-replayed']).toBe('true')
    expect(replay.body).toBe(first.body)
  })

  it('refuses keys that are too long or not printable ASCII', async () => {
    const res = await create('x'.repeat(256), { handle: 'idem-long', title: 'Long' })
    expect(res.statusCode).toBe(400)
    expect(res.json().errors[0].path).toBe('headers.idempotency-key')
  })

  it('purges keys older than 24 hours and keeps newer ones', async () => {
    const { db } = node.runtime.database
    await create('key-old', { handle: 'idem-old', title: 'Old' })
    await db
      .updateTable('idempotency_keys')
      .set({ created_at: sql<Date>`now() - interval '25 hours'` })
      .where('key', '=', 'key-old')
      .execute()
    const { purgeExpiredIdempotencyKeys } = await import('../src/platform/http/idempotency.ts')
    expect(await purgeExpiredIdempotencyKeys(db)).toBe(1)
    const left = await db.selectFrom('idempotency_keys').select('key').execute()
    expect(left.map((r) => r.key)).toContain('key-1')
    expect(left.map((r) => r.key)).not.toContain('key-old')
  })

  it("scopes a guest's key to the resource path, so two guests' keys never meet", async () => {
    const { db } = node.runtime.database
    const app = Fastify({ routerOptions: { ignoreTrailingSlash: true } })
    registerProblemHandler(app)
    registerIdempotency(app, db)
    let runs = 0
    app.post<{ Params: { id: string } }>(
      '/guest-carts/:id/complete',
      { config: { idempotency: 'required' } },
      async (request, reply) => {
        reply.code(201)
        return runIdempotent(db, request, reply, async () => ({ cart: request.params.id, run: ++runs }))
      },
    )
    const complete = (cart: string, payload: object) =>
      app.inject({
        method: 'POST',
        url: `/guest-carts/${cart}/complete`,
        payload,
        headers: { 'idempotency-key': 'guest-key-1' },
      })
    const first = await complete('cart_a', { method: 'card' })
    expect(first.json()).toEqual({ cart: 'cart_a', run: 1 })
    // Another guest, the same poor key: the same body gets its own answer, another body no 422.
    const second = await complete('cart_b', { method: 'card' })
    expect(second.statusCode, second.body).toBe(201)
    expect(second.headers['idempotent-replayed']).toBeUndefined()
    expect(second.json()).toEqual({ cart: 'cart_b', run: 2 })
    const third = await complete('cart_c', { method: 'transfer' })
    expect(third.statusCode, third.body).toBe(201)
    expect(third.json()).toEqual({ cart: 'cart_c', run: 3 })
    // The same request again still replays, and another body on the same path is still refused.
    const replay = await complete('cart_a', { method: 'card' })
    expect(replay.headers['idempotent-replayed']).toBe('true')
    expect(replay.json()).toEqual(first.json())
    const reused = await complete('cart_a', { method: 'transfer' })
    expect(reused.statusCode).toBe(422)
    expect(reused.json().code).toBe('idempotency_key_reused')
    // The router takes a trailing slash for the same route: so does the scope.
    const slashed = await app.inject({
      method: 'POST',
      url: '/guest-carts/cart_a/complete/',
      payload: { method: 'card' },
      headers: { 'idempotency-key': 'guest-key-1' },
    })
    expect(slashed.statusCode).toBe(422)
    expect(runs).toBe(3)

    // A key a guest stored before keys were scoped (under `anonymous`) replays after the upgrade.
    const old = await complete('cart_old', { method: 'card' })
    expect(runs).toBe(4)
    await db
      .updateTable('idempotency_keys')
      .set({ principal: 'anonymous', path: '/guest-carts/cart_old/complete/?from=before' })
      .where('principal', '=', anonymousScope('/guest-carts/cart_old/complete'))
      .execute()
    await guestScopeMigration.up(db as never)
    const replayed = await complete('cart_old', { method: 'card' })
    expect(replayed.headers['idempotent-replayed']).toBe('true')
    expect(replayed.json()).toEqual(old.json())
    expect(runs).toBe(4)
    await app.close()
  })

  it("never replays one guest's new cart to another guest who sends the same key", async () => {
    const region = (await createTestStore(node.app)).euRegion
    const createCart = () =>
      node.app.inject({
        method: 'POST',
        url: '/store/carts',
        headers: { 'idempotency-key': 'cart-create-1' },
        payload: { region_id: region },
      })
    const first = await createCart()
    expect(first.statusCode, first.body).toBe(201)
    // Another shopper whose storefront counts its keys from 1 too: a cart of its own, not the first.
    const second = await createCart()
    expect(second.statusCode, second.body).toBe(201)
    expect(second.headers['idempotent-replayed']).toBeUndefined()
    expect(second.json().id).not.toBe(first.json().id)
  })

  it('releases the key after an answer that describes a passing state, such as a purchase limit', async () => {
    const { db } = node.runtime.database
    const app = Fastify()
    registerProblemHandler(app)
    registerIdempotency(app, db)
    let limited = true
    let runs = 0
    app.post('/carts/:id/buy', { config: { idempotency: 'required' } }, async (request, reply) => {
      reply.code(201)
      return runIdempotent(db, request, reply, async () => {
        runs++
        // Another checkout of the customer's held the units, and then failed.
        if (limited) throw problem('purchase_limit_exceeded', 'limited to 1 per customer; 0 left')
        return { bought: true }
      })
    })
    const buy = () =>
      app.inject({
        method: 'POST',
        url: '/carts/c1/buy',
        payload: { n: 1 },
        headers: { 'idempotency-key': 'k-limit' },
      })
    expect((await buy()).statusCode).toBe(422)
    limited = false
    const again = await buy()
    expect(again.statusCode, again.body).toBe(201)
    expect(again.headers['idempotent-replayed']).toBeUndefined()
    expect(runs).toBe(2)
    await app.close()
  })

  it('requires the header on routes that demand it, and releases the key after a server error', async () => {
    const { db } = node.runtime.database
    const app = Fastify()
    registerProblemHandler(app)
    registerIdempotency(app, db)
    let fail = true
    app.post('/orders/:id/charge', { config: { idempotency: 'required' } }, async (request, reply) => {
      reply.code(201)
      return runIdempotent(db, request, reply, async (trx) => {
        await trx
          .insertInto('products')
          .values({ id: `prod_${Date.now()}`, handle: `charge-${Date.now()}`, title: 'c' })
          .execute()
        if (fail) throw new Error('gateway exploded')
        return { charged: true }
      })
    })
    const missing = await app.inject({ method: 'POST', url: '/orders/o1/charge', payload: {} })
    expect(missing.statusCode).toBe(400)
    expect(missing.json().code).toBe('idempotency_key_required')

    const broken = await app.inject({
      method: 'POST',
      url: '/orders/o1/charge',
      payload: { a: 1 },
      headers: { 'idempotency-key': 'k500' },
    })
    expect(broken.statusCode).toBe(500)
    expect(await db.selectFrom('idempotency_keys').select('key').where('key', '=', 'k500').execute()).toEqual(
      [],
    )
    const charged = db.selectFrom('products').select('id').where('handle', 'like', 'charge-%')
    expect(await charged.execute()).toEqual([])
    fail = false
    const retried = await app.inject({
      method: 'POST',
      url: '/orders/o1/charge',
      payload: { a: 1 },
      headers: { 'idempotency-key': 'k500' },
    })
    expect(retried.statusCode).toBe(201)
    expect(retried.json()).toEqual({ charged: true })
    const replayed = await app.inject({
      method: 'POST',
      url: '/orders/o1/charge',
      payload: { a: 1 },
      headers: { 'idempotency-key': 'k500' },
    })
    expect(replayed.headers['idempotent-replayed']).toBe('true')
    expect(await charged.execute()).toHaveLength(1)
    await app.close()
  })
})

describePostgres('postgres: Idempotency-Key under concurrency', () => {
  let nodes: TestNode[]
  beforeAll(async () => {
    const first = await startTestNode('postgres')
    // A second node on the same database, as behind a load balancer.
    nodes = [first, await startTestNode('postgres', { database: first.database })]
  })
  afterAll(async () => {
    await nodes[1]?.close()
    await nodes[0]?.close()
  })

  it('creates once when the same request races on two nodes', async () => {
    const body = { handle: 'race-mug', title: 'Race' }
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        nodes[i % 2]!.app.inject({
          method: 'POST',
          url: '/admin/products',
          headers: { ...adminAuth, 'idempotency-key': 'race-key' },
          payload: body,
        }),
      ),
    )
    const codes = responses.map((r) => r.statusCode)
    expect(codes.every((c) => c === 201 || c === 409)).toBe(true)
    const created = responses.filter((r) => r.statusCode === 201)
    expect(new Set(created.map((r) => r.json().id)).size).toBe(1)
    const rows = await nodes[0]!.runtime.database.db
      .selectFrom('products')
      .select('id')
      .where('handle', '=', 'race-mug')
      .execute()
    expect(rows).toHaveLength(1)
  })
})
