/**
 * Checkout under concurrency and failure, on real PostgreSQL: fifty requests with one key make one
 * order and one authorisation and all get the same answer; a thousand shoppers racing for a
 * hundred units make exactly a hundred orders and no charge without an order; and a serving
 * process killed (SIGKILL) at each step of checkout leaves a state that a retry on another node
 * completes with exactly one order and one charge.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { currentLines, lockCustomerLimits } from '../src/modules/carts/carts.ts'
import { loadCart } from '../src/modules/carts/load.ts'
import { commerceDeps } from '../src/modules/orders/deps.ts'
import { recoverCheckouts } from '../src/modules/orders/jobs.ts'
import type { AuthorizeInput } from '../src/modules/payments/provider.ts'
import { withTransaction } from '../src/platform/db/transaction.ts'
import type { ProblemError } from '../src/platform/http/errors.ts'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { createTestStore, lastUnitCart, readyCart, type TestStore, takeLastUnit } from './support/commerce.ts'
import { createTestDatabase, describePostgres, type TestDatabase } from './support/database.ts'
import { eventually } from './support/eventually.ts'
import { expectLedgerBalanced } from './support/inventory.ts'
import { waitForLockWaits } from './support/locks.ts'

const visa = { provider: 'test', payment_method: 'pm_card_visa' }

describePostgres('postgres: checkout under concurrency and failure', () => {
  let database: TestDatabase
  let nodes: TestNode[]
  let store: TestStore
  const db = () => nodes[0]!.runtime.database.db

  const env = {
    RATE_LIMIT_PER_MINUTE: '1000000',
    DATABASE_POOL_MAX: '10',
    CHECKOUT_LEASE_SECONDS: '1',
    // Short, so that a retry after a killed process takes its claim over soon; not so short that a
    // checkout slowed by a loaded machine passes for a dead one, which let a second request retake
    // the key of the fifty below, meet `checkout_in_progress` and release it to the rest.
    IDEMPOTENCY_STALE_SECONDS: '3',
  }

  beforeAll(async () => {
    database = await createTestDatabase('postgres', { migrated: true })
    nodes = [await startTestNode('postgres', { database, env })]
    nodes.push(await startTestNode('postgres', { database, env }))
    store = await createTestStore(nodes[0]!.app, { stock: 100_000 })
  })
  afterAll(async () => {
    for (const node of nodes ?? []) await node.close()
    await database?.drop()
  })

  const complete = (node: TestNode, cartId: string, key: string, payment: object = visa) =>
    node.app.inject({
      method: 'POST',
      url: `/store/carts/${cartId}/complete`,
      headers: { 'idempotency-key': key },
      payload: { payment },
    })

  /** Authorisations the test gateway recorded for a cart's payments: the charges. */
  async function chargesOf(cartId: string) {
    return db()
      .selectFrom('test_gateway_operations')
      .innerJoin('payments', 'payments.provider_ref', 'test_gateway_operations.charge_id')
      .select(['test_gateway_operations.kind'])
      .where('payments.cart_id', '=', cartId)
      .execute()
  }

  it('answers fifty requests with one key with one order, one authorisation and one response', async () => {
    const cartId = await readyCart(nodes[0]!.app, store, 1)
    const key = randomUUID()
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => complete(nodes[i % 2]!, cartId, key)),
    )
    for (const res of responses) expect(res.statusCode, res.body).toBe(201)
    const bodies = new Set(responses.map((r) => r.body))
    expect(bodies.size).toBe(1)
    const orders = await db().selectFrom('orders').select('id').where('cart_id', '=', cartId).execute()
    expect(orders).toHaveLength(1)
    const charges = await chargesOf(cartId)
    expect(charges.filter((c) => c.kind === 'authorize')).toHaveLength(1)
    expect(charges.filter((c) => c.kind === 'capture')).toHaveLength(1)
    const reused = await complete(nodes[1]!, cartId, key, {
      provider: 'test',
      payment_method: 'pm_card_mastercard',
    })
    expect(reused.statusCode).toBe(422)
    expect(reused.json().code).toBe('idempotency_key_reused')
  })

  /** A store whose shirt a customer (a guest's email) may buy `max` of across their orders. */
  const storeLimitedTo = async (max: number) => {
    const app = nodes[0]!.app
    const limited = await createTestStore(app, { stock: 1000, reuse: store })
    const limit = await app.inject({
      method: 'PUT',
      url: `/admin/purchase-limits/${limited.shirt}`,
      headers: adminAuth,
      payload: { max_per_line: null, max_per_customer: max },
    })
    expect(limit.statusCode, limit.body).toBe(200)
    return limited
  }

  it('lets one customer through the per-customer limit one checkout at a time (lockCustomerLimits)', async () => {
    const limited = await storeLimitedTo(2)
    const carts: string[] = []
    for (let i = 0; i < 8; i++) carts.push(await readyCart(nodes[0]!.app, limited, 1))
    // Checkout's first phase, on two nodes at once: the unlocked check each passes alone, then the
    // transaction that moves the cart to completing.
    const results = await Promise.allSettled(
      carts.map(async (cartId, i) => {
        const { db } = nodes[i % 2]!.runtime.database
        const loaded = (await loadCart(db, cartId))!
        const { lines } = currentLines(loaded)
        await withTransaction(db, async (trx) => {
          await lockCustomerLimits(trx, loaded, lines)
          await trx
            .updateTable('carts')
            .set({ status: 'completing' })
            .where('id', '=', cartId)
            .where('status', '=', 'active')
            .execute()
          // The rest of that transaction (the payment row), so that the racers overlap.
          await sleep(20)
        })
      }),
    )
    try {
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2)
      for (const r of results) {
        if (r.status === 'rejected') expect((r.reason as ProblemError).code).toBe('purchase_limit_exceeded')
      }
    } finally {
      // Not real checkouts: out of the recovery job's way.
      await db().updateTable('carts').set({ status: 'expired' }).where('id', 'in', carts).execute()
    }
  })

  it("never lets one shopper's concurrent checkouts together pass a per-customer purchase limit", async () => {
    const limited = await storeLimitedTo(2)
    // One guest (one email), eight carts of one unit each, all checked out at once on two nodes.
    const carts: string[] = []
    for (let i = 0; i < 8; i++) carts.push(await readyCart(nodes[0]!.app, limited, 1))
    const responses = await Promise.all(
      carts.map((cartId, i) => complete(nodes[i % 2]!, cartId, randomUUID())),
    )
    for (const res of responses) {
      if (res.statusCode === 201) continue
      expect(res.statusCode, res.body).toBe(422)
      expect(res.json().code).toBe('purchase_limit_exceeded')
    }
    const sold = await db()
      .selectFrom('order_lines')
      .select((eb) => eb.fn.sum<number>('quantity').as('units'))
      .where('variant_id', '=', limited.shirt)
      .executeTakeFirstOrThrow()
    expect(Number(sold.units)).toBe(2)
    expect(responses.filter((r) => r.statusCode === 201)).toHaveLength(2)
  })

  it('sells exactly 100 units to 1,000 shoppers: 100 orders, no oversell, no charge without an order', async () => {
    const limited = await createTestStore(nodes[0]!.app, { stock: 100, reuse: store })
    const carts: string[] = []
    const makers = Array.from({ length: 25 }, async (_, worker) => {
      for (let i = worker; i < 1000; i += 25) carts[i] = await readyCart(nodes[i % 2]!.app, limited, 1)
    })
    await Promise.all(makers)
    const outcomes: number[] = []
    const codes: string[] = []
    let next = 0
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        while (next < carts.length) {
          const i = next++
          const key = randomUUID()
          let res = await complete(nodes[i % 2]!, carts[i]!, key)
          // A node out of connections sheds the request with 503 and Retry-After; shoppers retry.
          for (let attempt = 0; res.statusCode === 503 && attempt < 50; attempt++) {
            await sleep(100)
            res = await complete(nodes[i % 2]!, carts[i]!, key)
          }
          outcomes.push(res.statusCode)
          if (res.statusCode !== 201) codes.push(res.json().code)
        }
      }),
    )
    expect([...new Set(codes)]).toEqual(['insufficient_stock'])
    expect(outcomes.filter((s) => s === 201)).toHaveLength(100)
    expect(outcomes.filter((s) => s === 409)).toHaveLength(900)
    const level = await db()
      .selectFrom('inventory_levels')
      .select(['on_hand', 'reserved'])
      .where('variant_id', '=', limited.shirt)
      .executeTakeFirstOrThrow()
    expect(level).toEqual({ on_hand: 100, reserved: 100 })
    const orders = await db()
      .selectFrom('orders')
      .innerJoin('order_lines', 'order_lines.order_id', 'orders.id')
      .select('orders.id')
      .where('order_lines.variant_id', '=', limited.shirt)
      .execute()
    expect(orders).toHaveLength(100)
    // Every authorisation the gateway made belongs to a payment that has an order.
    const { count } = await db()
      .selectFrom('test_gateway_operations')
      .innerJoin('payments', 'payments.provider_ref', 'test_gateway_operations.charge_id')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('test_gateway_operations.kind', '=', 'authorize')
      .where('payments.order_id', 'is', null)
      .executeTakeFirstOrThrow()
    expect(Number(count)).toBe(0)
    await expectLedgerBalanced(db())
  }, 180_000)

  /**
   * Checks out a cart of the last unit while its stock goes as the processor answers, with the
   * payment's row held meanwhile so that placing the order waits on it (holding the cart).
   * `meanwhile` then starts a write that queues behind it, and goes first once placing fails for
   * the stock, before the checkout's give-up. Returns the checkout's answer and its payment.
   */
  async function loseStockWhile(email: string, meanwhile: (cartId: string) => Promise<unknown>) {
    const node = nodes[0]!
    const { cartId, variantId } = await lastUnitCart(node, store, email)
    let releasePayment!: () => void
    const paymentReleased = new Promise<void>((resolve) => (releasePayment = resolve))
    let holder: Promise<unknown> | undefined
    const gateway = commerceDeps(node.runtime).providers.get('test')!
    const authorize = gateway.authorize.bind(gateway)
    gateway.authorize = async (input: AuthorizeInput) => {
      const answer = await authorize(input)
      await takeLastUnit(node, cartId, variantId)
      let held!: () => void
      const locked = new Promise<void>((resolve) => (held = resolve))
      holder = withTransaction(db(), async (trx) => {
        await sql`select 1 from payments where id = ${input.payment_id} for update`.execute(trx)
        held()
        await paymentReleased
      })
      await locked
      return answer
    }
    let queued: Promise<unknown> | undefined
    let res: Awaited<ReturnType<typeof complete>>
    try {
      const answer = complete(node, cartId, randomUUID())
      await waitForLockWaits(db(), 1)
      queued = meanwhile(cartId)
      await waitForLockWaits(db(), 2)
      releasePayment()
      res = await answer
    } finally {
      releasePayment()
      gateway.authorize = authorize
      await holder
      await queued
    }
    const payment = await db()
      .selectFrom('payments')
      .select(['id', 'status', 'order_id', 'provider_ref'])
      .where('cart_id', '=', cartId)
      .executeTakeFirstOrThrow()
    const ops = await db()
      .selectFrom('test_gateway_operations')
      .select('kind')
      .where('idempotency_key', 'like', `${payment.id}:%`)
      .execute()
    return { res, payment, kinds: ops.map((o) => o.kind).sort() }
  }

  it('gives back the authorisation of a checkout that lost its stock while the recovery job reopened its cart', async () => {
    const { res, payment, kinds } = await loseStockWhile('reopened-meanwhile@example.com', (cartId) =>
      withTransaction(db(), async (trx) => {
        // Queued behind the placing transaction on the cart. As the recovery job gives up a
        // checkout whose processor has not answered: the payment, which names no charge yet, is
        // canceled here only, and the cart is open again.
        await sql`select 1 from carts where id = ${cartId} for update`.execute(trx)
        await trx.updateTable('payments').set({ status: 'canceled' }).where('cart_id', '=', cartId).execute()
        await trx
          .updateTable('carts')
          .set({ status: 'active', checkout_lease_until: null })
          .where('id', '=', cartId)
          .execute()
      }),
    )
    expect(res.statusCode, res.body).toBe(409)
    expect(res.json().code).toBe('insufficient_stock')
    expect(payment).toMatchObject({ status: 'canceled', order_id: null })
    // The authorisation the processor gave is voided there, not left to hold the shopper's money.
    expect(kinds).toEqual(['authorize', 'cancel'])
    // Queued with the give-up's look at the cart, in case the node had died before that void.
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pgboss.job
      where name = 'payments.void' and data ->> 'payment_id' = ${payment.id}`.execute(db())
    expect(rows[0]!.n).toBe(1)
  })

  it('voids the authorisation of a checkout that lost its stock while the recovery job canceled its payment', async () => {
    const { res, payment, kinds } = await loseStockWhile('canceled-meanwhile@example.com', (cartId) =>
      // Queued behind the placing transaction on the payment. As cancelPayment does for a payment
      // that names no charge yet: canceled here only; the recovery job reopens the cart after.
      db()
        .updateTable('payments')
        .set({ status: 'canceled' })
        .where('cart_id', '=', cartId)
        .where('status', '=', 'pending')
        .where('provider_ref', 'is', null)
        .execute(),
    )
    expect(res.statusCode, res.body).toBe(409)
    expect(res.json().code).toBe('insufficient_stock')
    expect(payment).toMatchObject({ status: 'canceled', order_id: null })
    // The charge is named on the row, for the void job and the processor's webhooks to find.
    expect(payment.provider_ref).not.toBeNull()
    expect(kinds).toEqual(['authorize', 'cancel'])
  })

  async function freePort(): Promise<number> {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    await new Promise<void>((resolve) => server.close(() => resolve()))
    return port
  }

  /** A serving process on the same database that dies (SIGKILL) on reaching the failpoint. */
  async function doomedServer(
    failpoint: string,
  ): Promise<{ proc: ChildProcess; url: string; exited: Promise<unknown> }> {
    const port = await freePort()
    const proc = spawn(process.execPath, ['src/main.ts'], {
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'test',
        DATABASE_URL: database.url,
        DATA_DIR: mkdtempSync(join(tmpdir(), 'sw-doomed-')),
        PORT: String(port),
        LOG_LEVEL: 'warn',
        APP_SECRET: 'doomed-test-secret-0123456789abcdef0123',
        RUN_WORKERS: 'false',
        SEED_DEMO: 'false',
        RATE_LIMIT_PER_MINUTE: '100000',
        MAX_EVENT_LOOP_DELAY_MS: '0',
        CHECKOUT_LEASE_SECONDS: '1',
        SHOPWRIGHT_FAILPOINTS: failpoint,
      },
      stdio: 'ignore',
    })
    const exited = new Promise((resolve) => proc.once('exit', resolve))
    const url = `http://127.0.0.1:${port}`
    await eventually(async () => {
      const res = await fetch(`${url}/readyz`).catch(() => undefined)
      return res?.status === 200 ? true : undefined
    }, 60_000)
    return { proc, url, exited }
  }

  for (const failpoint of [
    'checkout.after_start',
    'checkout.after_authorize',
    'checkout.after_place',
    'checkout.after_capture',
  ]) {
    it(`recovers from a process killed at ${failpoint}: one order, one charge`, async () => {
      const cartId = await readyCart(nodes[0]!.app, store, 1)
      const key = randomUUID()
      const doomed = await doomedServer(failpoint)
      try {
        const died = await fetch(`${doomed.url}/store/carts/${cartId}/complete`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ payment: visa }),
        }).then(
          (res) => `answered ${res.status}`,
          () => 'died',
        )
        expect(died).toBe('died')
        await doomed.exited
      } finally {
        doomed.proc.kill('SIGKILL')
      }
      // The shopper retries with the same key on another node until it answers.
      let res = await complete(nodes[1]!, cartId, key)
      for (let i = 0; res.statusCode === 409 && i < 40; i++) {
        await sleep(250)
        res = await complete(nodes[1]!, cartId, key)
      }
      expect([200, 201], res.body).toContain(res.statusCode)
      const orderId = res.json().order.id
      // A crash between placing and capturing leaves the capture to the recovery job.
      await recoverCheckouts(commerceDeps(nodes[1]!.runtime), { captureAfterSeconds: 0 })
      const orders = await db()
        .selectFrom('orders')
        .select(['id', 'status', 'payment_status'])
        .where('cart_id', '=', cartId)
        .execute()
      expect(orders).toEqual([{ id: orderId, status: 'paid', payment_status: 'captured' }])
      const charges = await chargesOf(cartId)
      expect(charges.filter((c) => c.kind === 'authorize')).toHaveLength(1)
      expect(charges.filter((c) => c.kind === 'capture')).toHaveLength(1)
      const reservation = await db()
        .selectFrom('inventory_reservations')
        .select(['status', 'reference'])
        .where('reference', '=', orderId)
        .execute()
      expect(reservation).toEqual([{ status: 'active', reference: orderId }])
    }, 90_000)
  }
})
