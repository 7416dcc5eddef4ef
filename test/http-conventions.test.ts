// biome-ignore-all lint/suspicious/noExplicitAny: problem bodies are read loosely in assertions
/**
 * The HTTP conventions every route shares: bad input of each kind gets a 4xx problem document
 * naming the field, never a 500; request ids; security headers; OpenAPI.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import { describeEachDatabase } from './support/database.ts'

describeEachDatabase('HTTP conventions', (kind) => {
  let node: TestNode
  beforeAll(async () => {
    node = await startTestNode(kind, { env: { BODY_LIMIT_BYTES: '2048' } })
  })
  afterAll(() => node.close())

  // Schemas compile on first use (lazy-compile.ts), so a broken one would otherwise surface only
  // when its route is called: compile them all here. Once: they do not depend on the database.
  it.runIf(kind === 'pglite')('compiles every route schema without a failure', async () => {
    expect(await node.app.warmSchemas({ pauseMs: 0 })).toEqual([])
  })

  const post = (payload: string | Buffer, headers: Record<string, string> = {}) =>
    node.app.inject({
      method: 'POST',
      url: '/admin/products',
      headers: { ...adminAuth, 'content-type': 'application/json', ...headers },
      payload,
    })

  function expectProblem(
    res: { statusCode: number; headers: Record<string, unknown>; json(): Record<string, any> },
    status: number,
    code: string,
  ) {
    expect(res.statusCode).toBe(status)
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
    const body = res.json()
    expect(body).toMatchObject({
      status,
      code,
      type: expect.stringContaining(code),
      title: expect.any(String),
    })
    return body
  }

  it('answers /livez and /readyz', async () => {
    expect((await node.app.inject('/livez')).json()).toEqual({ status: 'ok' })
    const ready = await node.app.inject('/readyz')
    expect(ready.statusCode).toBe(200)
    expect(ready.json()).toMatchObject({ status: 'ready', checks: { database: { status: 'up' } } })
  })

  it('refuses malformed JSON', async () => {
    expectProblem(await post('{"handle": "x",'), 400, 'malformed_json')
  })

  it('refuses a body that is not UTF-8', async () => {
    const bad = Buffer.concat([
      Buffer.from('{"handle":"a","title":"'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}'),
    ])
    expectProblem(await post(bad), 400, 'invalid_encoding')
  })

  it('refuses wrong types and names the field', async () => {
    const body = expectProblem(
      await post(JSON.stringify({ handle: 'ok', title: 42 })),
      400,
      'validation_failed',
    )
    expect(body.errors).toContainEqual({ path: 'body.title', message: expect.any(String) })
  })

  it('refuses unknown fields on write routes', async () => {
    const body = expectProblem(
      await post(JSON.stringify({ handle: 'ok', title: 'T', price: 10 })),
      400,
      'validation_failed',
    )
    expect(body.errors).toContainEqual({ path: 'body.price', message: 'is not a known field' })
  })

  it('refuses fields sent to routes that take none, and takes no body or {}', async () => {
    // Every write operation documents a body; only those whose handler reads the raw body (a file,
    // a signed webhook) take anything else.
    const doc = (await node.app.inject('/openapi.json')).json()
    const operations = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(
      ([path, ops]) =>
        Object.entries(ops).map(([method, op]) => ({ name: `${method.toUpperCase()} ${path}`, method, op })),
    )
    const bodiless = operations.filter(
      ({ method, op }) => ['post', 'put', 'patch', 'delete'].includes(method) && !op.requestBody,
    )
    expect(bodiless.map((o) => o.name).sort()).toEqual(['POST /webhooks/stripe'])
    // Those that take no fields say the body may be left out, as it may.
    const optional = operations.filter(({ op }) => op.requestBody?.required === false).map((o) => o.name)
    expect(optional).toEqual(
      expect.arrayContaining([
        'POST /admin/orders/{id}/capture',
        'POST /admin/orders/{id}/cancel',
        'POST /store/auth/sign-out',
        'DELETE /admin/customer-groups/{id}',
      ]),
    )
    expect(
      operations
        .filter(({ method }) => method === 'delete')
        .every(({ op }) => op.requestBody?.required === false),
    ).toBe(true)

    // An order capture, say: a partial capture by amount is not offered, so asking for one is refused.
    const url = '/admin/orders/ord_00000000000000000000000000/capture'
    const refused = expectProblem(
      await node.app.inject({ method: 'POST', url, headers: adminAuth, payload: { amount: 100 } }),
      400,
      'validation_failed',
    )
    expect(refused.errors).toContainEqual({ path: 'body.amount', message: 'is not a known field' })
    // A delete takes no body either: an option it does not have is not silently dropped.
    const forced = expectProblem(
      await node.app.inject({
        method: 'DELETE',
        url: '/admin/customer-groups/cgrp_00000000000000000000000000',
        headers: adminAuth,
        payload: { force: true },
      }),
      400,
      'validation_failed',
    )
    expect(forced.errors).toContainEqual({ path: 'body.force', message: 'is not a known field' })
    // The same for API reads that take no parameters: a limit that is not offered is not honoured.
    const regions = expectProblem(await node.app.inject('/store/regions?limit=1'), 400, 'validation_failed')
    expect(regions.errors).toContainEqual({ path: 'query.limit', message: 'is not a known field' })
    expect((await node.app.inject('/store/regions')).statusCode).toBe(200)
    for (const payload of [undefined, {}]) {
      const res = await node.app.inject({
        method: 'POST',
        url,
        headers: adminAuth,
        ...(payload ? { payload } : {}),
      })
      expectProblem(res, 404, 'not_found')
    }
  })

  it('names a missing required field', async () => {
    const body = expectProblem(await post(JSON.stringify({ handle: 'ok' })), 400, 'validation_failed')
    expect(body.errors).toContainEqual({ path: 'body.title', message: expect.any(String) })
  })

  it('refuses bodies nested more than 32 levels deep, naming where', async () => {
    const nested = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`
    // The body is the first level: metadata and 30 more make 32.
    const ok = await post(`{"handle":"deep-ok","title":"T","metadata":${nested(31)}}`)
    expect(ok.statusCode, ok.body).toBe(201)
    const deep = await post(`{"handle":"deep","title":"T","metadata":${nested(32)}}`)
    const body = expectProblem(deep, 400, 'validation_failed')
    expect(body.errors).toEqual([
      { path: `body.metadata${'.a'.repeat(31)}`, message: 'is nested more than 32 levels deep' },
    ])
    const arrays = expectProblem(await post(`${'['.repeat(900)}${']'.repeat(900)}`), 400, 'validation_failed')
    expect(arrays.errors[0].path).toBe(`body${'.0'.repeat(32)}`)
  })

  it('refuses text that is not Unicode or that PostgreSQL cannot store, naming where', async () => {
    // Found by the bad-input fuzz test: jsonb refused these mid-handler, and answers echoing the
    // text could not be stored for idempotent replay (500).
    const cases: Array<[string, string, string]> = [
      [
        '"metadata":{"fuzz":"a\\ud800b"}',
        'body.metadata.fuzz',
        'contains a lone surrogate (not valid Unicode)',
      ],
      [
        '"media":[{"url":"https://x.test/a.png","alt":"\\udfff"}]',
        'body.media.0.alt',
        'contains a lone surrogate (not valid Unicode)',
      ],
      ['"options":[{"name":"a\\u0000b","values":["x"]}]', 'body.options.0.name', 'contains U+0000 (NUL)'],
      ['"attributes":{"a\\u0000b":"x"}', 'body.attributes', 'has a property name that contains U+0000 (NUL)'],
    ]
    for (const [field, path, message] of cases) {
      const res = await post(`{"handle":"text","title":"T",${field}}`, { 'idempotency-key': randomUUID() })
      expect(expectProblem(res, 400, 'validation_failed').errors).toEqual([{ path, message }])
    }
    // A well-formed pair of escapes is an ordinary character.
    const emoji = await post('{"handle":"emoji","title":"\\ud83d\\ude00"}')
    expect(emoji.statusCode, emoji.body).toBe(201)
    expect(emoji.json().title).toBe('😀')
  })

  it('refuses oversize bodies', async () => {
    expectProblem(
      await post(JSON.stringify({ handle: 'big', title: 'x'.repeat(5000) })),
      413,
      'payload_too_large',
    )
  })

  it('refuses other content types', async () => {
    expectProblem(
      await post('handle=x', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
      'unsupported_media_type',
    )
  })

  it('refuses bad cursors and limits', async () => {
    const cursor = await node.app.inject('/store/products?cursor=not-a-cursor!')
    expect(expectProblem(cursor, 400, 'invalid_cursor').errors[0].path).toBe('query.cursor')
    const forged = Buffer.from(JSON.stringify({ x: 1 })).toString('base64url')
    expectProblem(await node.app.inject(`/store/products?cursor=${forged}`), 400, 'invalid_cursor')
    const limit = await node.app.inject('/store/products?limit=100000')
    expect(expectProblem(limit, 400, 'validation_failed').errors[0].path).toBe('query.limit')
    expectProblem(await node.app.inject('/store/products?limit=-1'), 400, 'validation_failed')
    const unknown = await node.app.inject('/store/products?colour=red')
    expect(expectProblem(unknown, 400, 'validation_failed').errors[0].path).toBe('query.colour')
  })

  it('answers paths the router refuses (bad percent-encoding, over-long parameters) with a problem', async () => {
    for (const url of ['/admin/products/%ED%A0%80', '/store/carts/%FF', '/store/carts/%E0%A4%A']) {
      const res = await node.app.inject({ url, headers: adminAuth })
      expect(expectProblem(res, 400, 'validation_failed').errors).toEqual([
        { path: 'url', message: 'is not valid percent-encoded UTF-8' },
      ])
      expect(res.headers['x-content-type-options']).toBe('nosniff')
      expect(res.headers['x-request-id']).toBeDefined()
    }
    const long = await node.app.inject({ url: `/admin/products/${'x'.repeat(201)}`, headers: adminAuth })
    expect(expectProblem(long, 414, 'uri_too_long').errors[0].path).toBe('params')
  })

  it('answers unknown routes with route_not_found', async () => {
    expectProblem(await node.app.inject('/nope'), 404, 'route_not_found')
  })

  it('asks for credentials on admin routes and refuses wrong ones', async () => {
    const res = await node.app.inject('/admin/products')
    expectProblem(res, 401, 'unauthenticated')
    expect(res.headers['www-authenticate']).toBe('Bearer')
    const wrong = await node.app.inject({ url: '/admin/products', headers: { authorization: 'Bearer nope' } })
    expectProblem(wrong, 401, 'unauthenticated')
  })

  it('returns the request id it was given, or makes one', async () => {
    const given = await node.app.inject({ url: '/livez', headers: { 'x-request-id': 'abc-123' } })
    expect(given.headers['x-request-id']).toBe('abc-123')
    const made = await node.app.inject({ url: '/livez', headers: { 'x-request-id': 'bad id\nwith newline' } })
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('documents the cart routes as open to guests and to customers with their token', async () => {
    const doc = (await node.app.inject({ method: 'GET', url: '/openapi.json' })).json()
    const either = [{}, { bearer: [] }]
    expect(doc.paths['/store/carts/{id}'].get.security).toEqual(either)
    expect(doc.paths['/store/carts/{id}/lines'].post.security).toEqual(either)
    expect(doc.paths['/store/carts/{id}/complete'].post.security).toEqual(either)
    expect(doc.paths['/store/payments/{id}/authenticate'].post.security).toEqual(either)
  })

  it('documents the product import body under each media type the route reads, and reads them', async () => {
    const doc = (await node.app.inject('/openapi.json')).json()
    const body = doc.paths['/admin/products/import'].post.requestBody
    expect(body.required).toBe(true)
    expect(Object.keys(body.content).sort()).toEqual(['application/json', 'application/x-ndjson', 'text/csv'])
    // Documenting the body must not have Fastify validate the file against it: each type still imports.
    const files = {
      'text/csv': 'handle,title,sku\nbody-csv,CSV,BODY-CSV\n',
      'application/json': '[{"handle":"body-json","title":"JSON"}]',
      'application/x-ndjson': '{"handle":"body-ndjson","title":"NDJSON"}\n',
      'application/ndjson': '{"handle":"body-nd","title":"ND"}\n',
      'text/plain': 'handle,title\nbody-plain,Plain\n',
    }
    for (const [type, payload] of Object.entries(files)) {
      const res = await node.app.inject({
        method: 'POST',
        url: `/admin/products/import?dry_run=true${type === 'text/plain' ? '&format=csv' : ''}`,
        headers: { ...adminAuth, 'content-type': type },
        payload,
      })
      expect(res.statusCode, type).toBe(200)
      expect(res.json()).toMatchObject({ dry_run: true, total_rows: 1, valid_rows: 1 })
    }
  })

  it('documents the Idempotency-Key header on every route that takes one, required where it is', async () => {
    const doc = (await node.app.inject('/openapi.json')).json()
    const keyOf = (path: string, method: string) =>
      (doc.paths[path][method].parameters ?? []).find(
        (p: any) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key',
      )
    const complete = keyOf('/store/carts/{id}/complete', 'post')
    expect(complete).toMatchObject({ required: true, schema: { type: 'string', maxLength: 255 } })
    expect(complete.description).toContain('idempotency_key_reused')
    expect(keyOf('/admin/orders/{id}/refunds', 'post')).toMatchObject({ required: true })
    expect(keyOf('/admin/products', 'post')).toMatchObject({ required: false })
    expect(keyOf('/admin/products/import', 'post')).toMatchObject({ required: false })
    expect(keyOf('/store/carts', 'post')).toMatchObject({ required: false })
    // Exactly the routes that declare it; a read has none.
    const documented = node.app.routeTable
      .filter((r) => r.config.idempotency)
      .map((r) => `${r.method} ${r.url.replace(/:(\w+)/g, '{$1}')}`)
      .sort()
    const withKey = Object.entries(doc.paths as Record<string, Record<string, any>>)
      .flatMap(([path, ops]) =>
        Object.keys(ops).flatMap((method) =>
          keyOf(path, method) ? [`${method.toUpperCase()} ${path}`] : [],
        ),
      )
      .sort()
    expect(withKey).toEqual(documented)
    expect(keyOf('/admin/products', 'get')).toBeUndefined()
    // Documenting it changed nothing at run time: the claim still answers a missing or bad key.
    const cart = '/store/carts/cart_00000000000000000000000000/complete'
    const payload = { payment: { provider: 'manual' } }
    const missing = await node.app.inject({ method: 'POST', url: cart, payload })
    expectProblem(missing, 400, 'idempotency_key_required')
    const bad = await node.app.inject({
      method: 'POST',
      url: cart,
      headers: { 'idempotency-key': 'has space' },
      payload,
    })
    expect(expectProblem(bad, 400, 'validation_failed').errors).toEqual([
      { path: 'headers.idempotency-key', message: 'must be 1 to 255 printable ASCII characters' },
    ])
  })

  it("sends OWASP's API security headers on JSON answers and helmet's on the HTML reference", async () => {
    const res = await node.app.inject('/store/products')
    expect(res.headers['x-content-type-options']).toBe('nosniff')
    expect(res.headers['x-frame-options']).toBe('DENY')
    expect(res.headers['content-security-policy']).toBe("default-src 'none'; frame-ancestors 'none'")
    expect(res.headers['strict-transport-security']).toMatch(/^max-age=\d+/)
    const page = await node.app.inject('/docs/')
    expect(page.statusCode).toBe(200)
    expect(page.headers['content-type']).toMatch(/^text\/html/)
    expect(page.headers['content-security-policy']).toContain("script-src 'self'")
    expect(page.headers['x-content-type-options']).toBe('nosniff')
  })

  it('publishes an OpenAPI 3.1 document that lists the routes', async () => {
    const res = await node.app.inject('/openapi.json')
    expect(res.statusCode).toBe(200)
    const doc = res.json()
    expect(doc.openapi).toBe('3.1.0')
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/store/products', '/admin/products', '/livez']),
    )
    expect(doc.components.schemas.Problem).toBeDefined()
    const docs = await node.app.inject('/docs/')
    expect(docs.statusCode).toBe(200)
    expect(docs.body).toContain('swagger')
  })

  it('serves Prometheus metrics with request latency by route', async () => {
    await node.app.inject('/store/products')
    const res = await node.app.inject('/metrics')
    expect(res.statusCode).toBe(200)
    expect(res.body).toMatch(
      /http_request_duration_seconds_count\{method="GET",route="\/store\/products",status_code="200"\} \d+/,
    )
    expect(res.body).toContain('nodejs_eventloop_lag_seconds')
    expect(res.body).toContain('job_queue_jobs')
  })
})
