/**
 * Protection against too much traffic: per-IP rate limits answered with 429 problem documents (and
 * shared through Redis, so the limit holds across nodes), and load shedding with 503 + Retry-After
 * while the event loop is saturated, with health probes still answering.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestNode, type TestNode } from './support/app.ts'

describe('rate limits', () => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode('pglite', { env: { RATE_LIMIT_PER_MINUTE: '5' } })
  })
  afterAll(() => node.close())

  it('answers the request over the limit with 429 rate_limited and Retry-After, sparing the probes', async () => {
    const ip = { remoteAddress: '10.1.1.1' }
    for (let i = 0; i < 5; i++)
      expect((await node.app.inject({ url: '/store/products', ...ip })).statusCode).toBe(200)
    const limited = await node.app.inject({ url: '/store/products', ...ip })
    expect(limited.statusCode).toBe(429)
    expect(limited.headers['content-type']).toMatch(/application\/problem\+json/)
    expect(limited.json().code).toBe('rate_limited')
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0)
    expect((await node.app.inject({ url: '/livez', ...ip })).statusCode).toBe(200)
    expect((await node.app.inject({ url: '/store/products', remoteAddress: '10.1.1.2' })).statusCode).toBe(
      200,
    )
  })
})

describe.runIf(process.env.REDIS_URL)('rate limits across nodes (Redis)', () => {
  const nodes: TestNode[] = []
  beforeAll(async () => {
    const env = { RATE_LIMIT_PER_MINUTE: '6', REDIS_URL: process.env.REDIS_URL }
    nodes.push(await startTestNode('pglite', { env }), await startTestNode('pglite', { env }))
  })
  afterAll(async () => {
    for (const node of nodes) await node.close()
  })

  it('counts requests to every node against one limit', async () => {
    const ip = { remoteAddress: `10.9.${randomBytes(1)[0]}.${randomBytes(1)[0]}` }
    const codes: number[] = []
    for (let i = 0; i < 8; i++)
      codes.push((await nodes[i % 2]!.app.inject({ url: '/store/products', ...ip })).statusCode)
    expect(codes.slice(0, 6)).toEqual([200, 200, 200, 200, 200, 200])
    expect(codes.slice(6)).toEqual([429, 429])
    expect((await nodes[0]!.app.inject('/readyz')).json().checks.redis).toEqual({ status: 'up' })
  })
})

describe('load shedding', () => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode('pglite', { env: { MAX_EVENT_LOOP_DELAY_MS: '20' } })
  })
  afterAll(() => node.close())

  it('sheds requests with 503 overloaded and Retry-After while the event loop lags, then recovers', async () => {
    // under-pressure samples the mean event loop delay every 250 ms; a 2.5 s stall outweighs any
    // normal samples already in the current window.
    const blockUntil = Date.now() + 2500
    while (Date.now() < blockUntil) {
      // Saturate the event loop, as a traffic spike would.
    }
    await sleep(30)
    const shed = await node.app.inject('/store/products')
    expect(shed.statusCode).toBe(503)
    expect(shed.headers['retry-after']).toBe('10')
    expect(shed.json().code).toBe('overloaded')
    expect((await node.app.inject('/livez')).statusCode).toBe(200)
    await sleep(1000)
    expect((await node.app.inject('/store/products')).statusCode).toBe(200)
  })
})
