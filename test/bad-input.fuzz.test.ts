// biome-ignore-all lint/suspicious/noExplicitAny: the OpenAPI document and problem bodies are read loosely
/**
 * Bad input on every route never gives a 500 (DESIGN.md, principle 7). Driven by the app's own
 * OpenAPI document: for every operation (store, admin, customer, webhook) a valid request is built
 * from its schemas and real fixtures, then sent again with one part corrupted at a time: each path
 * parameter, each query parameter, each body field (wrong JSON types, 10 KB strings, NUL bytes,
 * lone surrogates, SQL metacharacters, numbers beyond int4, int8 and doubles, 10,000-item arrays,
 * deep nesting, unknown and missing properties, ids of the wrong kind or of nothing) and the body
 * as a whole (not JSON, not UTF-8, the wrong JSON type). Requests carry full admin rights, or a
 * customer session on store routes, so that they get past the guards to validation and handlers.
 *
 * Every answer must be below 500, and every 4xx a problem+json document with a `code`. The
 * deterministic pass covers every operation and field on every run; a seeded fast-check pass adds
 * random combinations. Answers given before any handler ran (router, parser, schema) do not depend
 * on the database, so with TEST_DATABASE_URL set the PostgreSQL run sends only the requests that
 * reached a handler on PGlite.
 *
 * Knobs: FUZZ_OPS (a regular expression: only the operations whose `METHOD /path` it matches),
 * FUZZ_SEED and FUZZ_RUNS (fast-check), FUZZ_CONCURRENCY (requests in flight, default 8).
 */
import { createHmac, randomUUID } from 'node:crypto'
import fc from 'fast-check'
import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { adminAuth, startTestNode, type TestNode } from './support/app.ts'
import {
  DATE_TIMES,
  DATES,
  deeplyNested,
  type Field,
  fieldCorruptions,
  fieldsOf,
  foreignIds,
  HOSTILE_NUMBERS,
  HOSTILE_STRINGS,
  idPrefix,
  type JsonSchema,
  jsonText,
  mainBranch,
  pathLabel,
  RawJson,
  REMOVE,
  sample,
  setAt,
  typesOf,
  type Value,
} from './support/bad-input.ts'
import {
  bodyOverrides,
  type Fixtures,
  makeFixtures,
  pathParamValue,
  sampler,
} from './support/bad-input-store.ts'
import { DATABASE_KINDS, describeEachDatabase } from './support/database.ts'
import { bearer } from './support/staff.ts'
import { type StripeServer, startStripeServer, stripeEvent } from './support/stripe-server.ts'

const WEBHOOK_SECRET = 'whsec_fuzz_0123456789abcdef'
const SEED = Number(process.env.FUZZ_SEED ?? 20_240_607)
const RANDOM_RUNS = Number(process.env.FUZZ_RUNS ?? 300)
const CONCURRENCY = Number(process.env.FUZZ_CONCURRENCY ?? 8)

interface Operation {
  key: string
  method: string
  /** The OpenAPI path, `/admin/products/{id}`. */
  path: string
  pathParams: JsonSchema[]
  queryParams: JsonSchema[]
  /** The application/json body schema, when the operation takes one. */
  body: JsonSchema | undefined
  contentTypes: string[]
  config: Record<string, any>
}

interface Probe {
  op: Operation
  label: string
  params?: Record<string, string>
  query?: string
  payload?: string | Buffer
  contentType?: string
  headers?: Record<string, string>
}

/** Operations that end or consume what later ones need: sent last, in this order. */
const LAST = [
  'POST /store/carts/{id}/complete',
  'POST /admin/inventory/reservations/{id}/commit',
  'POST /admin/inventory/reservations/{id}/release',
  'POST /admin/orders/{id}/cancel',
  'POST /admin/products/{id}/archive',
  'POST /admin/staff/{id}/mfa/reset',
  'DELETE /store/carts/{id}/lines/{line_id}',
  'DELETE /store/carts/{id}/promotions/{code}',
  'DELETE /admin/customer-groups/{id}/customers/{customerId}',
  'DELETE /admin/tax/jurisdictions/{code}/categories/{category}',
  'DELETE /admin/variants/{id}',
  'DELETE /admin/products/{id}',
  'DELETE /admin/categories/{id}',
  'DELETE /admin/collections/{id}',
  'DELETE /admin/price-lists/{id}',
  'DELETE /admin/customer-groups/{id}',
  'DELETE /admin/shipping-options/{id}',
  'DELETE /admin/inventory/locations/{id}',
  'DELETE /admin/regions/{id}',
  'DELETE /admin/tax/rates/{id}',
  'DELETE /admin/tax/categories/{code}',
  'DELETE /admin/tax/registrations/{code}',
  'DELETE /admin/roles/{id}',
  'DELETE /admin/api-keys/{id}',
  'DELETE /store/me/addresses/{id}',
  'POST /store/me/password',
  'POST /store/auth/sign-out',
  'POST /admin/auth/sign-out',
]

/** Percent-encoding that survives lone surrogates (as U+FFFD; their raw UTF-8 bytes are a case of their own). */
const encode = (value: string) => encodeURIComponent(value.toWellFormed())

/** Query values for a parameter, by its schema, already percent-encoded. */
function queryValues(schema: JsonSchema): Array<[string, string]> {
  const param = mainBranch(schema, (x) => x)
  const s = param.type === 'array' ? mainBranch(param.items ?? {}, (x) => x) : param
  const types = typesOf(s, (x) => x)
  const values: Array<[string, string]> = [
    ...HOSTILE_STRINGS.map(([label, value]): [string, string] => [label, encode(value)]),
    ['invalid UTF-8', '%FF%FE'],
    ['lone surrogate as UTF-8 bytes', '%ED%A0%80'],
    ['broken percent-encoding', '%E0%A4%A'],
  ]
  if (types.has('integer') || types.has('number') || types.has('boolean')) {
    for (const [label, value] of HOSTILE_NUMBERS)
      values.push([label, encode(value instanceof RawJson ? value.text : String(value))])
    values.push(['hexadecimal', '0x10'], ['word', 'maybe'])
  }
  if (s.format === 'date-time' || s.format === 'date')
    for (const [label, value] of [...DATE_TIMES, ...DATES]) values.push([label, encode(value)])
  if (types.has('string') && !s.format) values.push(...foreignIds(idPrefix(s)))
  if (typeof s.minimum === 'number') values.push(['minimum - 1', String(s.minimum - 1)])
  if (typeof s.maximum === 'number') values.push(['maximum + 1', String(s.maximum + 1)])
  return values
}

/** Path parameter values, already percent-encoded. */
const PATH_VALUES: Array<[string, string]> = [
  ['10 KB', 'x'.repeat(10 * 1024)],
  ['201 characters', 'x'.repeat(201)],
  ['NUL byte', 'a%00b'],
  ['lone surrogate as UTF-8 bytes', '%ED%A0%80'],
  ['invalid UTF-8', '%FF'],
  ['SQL metacharacters', encodeURIComponent("'; drop table x; --")],
  ['encoded slash', 'a%2Fb'],
  ['non-ASCII', encodeURIComponent('prodü_é')],
  ['space', '%20'],
  ['-1', '-1'],
  ['1e400', '1e400'],
]

/**
 * Whole-body corruptions for operations that take a body. They meet the shared JSON parser (or a
 * route's own) and then each route's hooks: a few kinds suffice, the parser's own tests do the rest.
 */
const BODIES: Array<[string, string | Buffer, string]> = [
  ['not JSON', '{"a": ', 'application/json'],
  [
    'not UTF-8',
    Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]),
    'application/json',
  ],
  ['empty body', '', 'application/json'],
  ['JSON null', 'null', 'application/json'],
  ['JSON array', '[]', 'application/json'],
  ['__proto__ key', '{"__proto__":{"admin":true}}', 'application/json'],
  ['arrays nested 10,000 deep', deeplyNested(10_000, 'array').text, 'application/json'],
  [
    '1,000 unknown properties',
    jsonText(Object.fromEntries(Array.from({ length: 1_000 }, (_, i) => [`k${i}`, i]))),
    'application/json',
  ],
  ['text/plain', '{}', 'text/plain'],
]

/** A schema that a JSON example satisfies (every property required): for documents without one. */
function exampleSchema(value: Value): JsonSchema {
  if (value === null) return { type: 'null' }
  if (Array.isArray(value)) return { type: 'array', items: value.length > 0 ? exampleSchema(value[0]!) : {} }
  if (value instanceof RawJson) return {}
  if (typeof value === 'object') {
    return {
      type: 'object',
      properties: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, exampleSchema(v)])),
      required: Object.keys(value),
    }
  }
  if (typeof value === 'number') return { type: Number.isInteger(value) ? 'integer' : 'number' }
  return { type: typeof value }
}

function check(res: LightMyRequestResponse): string | undefined {
  const status = res.statusCode
  if (status >= 500) return `${status} ${res.body.slice(0, 300)}`
  if (status < 400) return undefined
  if (!/^application\/problem\+json/.test(String(res.headers['content-type'])))
    return `${status} as ${res.headers['content-type']}: ${res.body.slice(0, 300)}`
  let body: any
  try {
    body = JSON.parse(res.body)
  } catch {
    return `${status} with a body that is not JSON: ${res.body.slice(0, 300)}`
  }
  if (typeof body?.code !== 'string' || body.status !== status)
    return `${status} problem without a code or with another status: ${res.body.slice(0, 300)}`
  return undefined
}

/** Codes that mean a request was stopped by authentication or authorisation, not by its input. */
const GUARD_CODES = new Set([
  'unauthenticated',
  'forbidden',
  'mfa_required',
  'step_up_required',
  'rate_limited',
])

/** Operations whose success ends the session their later requests carry (answered 401, rightly). */
const SESSION_ENDING = new Set(['POST /store/auth/sign-out', 'POST /admin/auth/sign-out'])

function needsCredential(op: Operation): boolean {
  if (op.path.startsWith('/admin')) return op.config.permission !== 'public'
  return op.config.auth === 'customer'
}

/**
 * Whether an answer came from the checks that run before any handler, and so before the database:
 * the router, the body parser and schema validation. Those answers are the same on every database,
 * so the second database's run sends only the requests that reached a handler on the first.
 */
function refusedBeforeHandler(res: LightMyRequestResponse): boolean {
  if (res.statusCode < 400) return false
  const body = JSON.parse(res.body)
  if (BEFORE_HANDLER_CODES.has(body.code)) return true
  if (body.code !== 'validation_failed') return false
  return (
    /^The (body|query|params|headers) is invalid$/.test(body.detail ?? '') ||
    body.errors?.[0]?.path === 'url' ||
    /^(is nested more than|contains U\+0000|contains a lone surrogate|has a property name that)/.test(
      body.errors?.[0]?.message ?? '',
    )
  )
}

const BEFORE_HANDLER_CODES = new Set([
  'malformed_json',
  'invalid_encoding',
  'unsupported_media_type',
  'payload_too_large',
  'uri_too_long',
  'route_not_found',
])

/** Requests the first database's run saw answered before any handler (see refusedBeforeHandler). */
const answeredByValidation = new Set<string>()

describeEachDatabase('bad input on every route', (kind) => {
  let node: TestNode
  let stripe: StripeServer
  let fx: Fixtures
  let doc: any
  let allOperations: Operation[]
  /** The operations under test: all of them, unless FUZZ_OPS picks some. */
  let operations: Operation[]
  const deref = (schema: JsonSchema): JsonSchema => {
    let s = schema
    while (s?.$ref) s = doc.components.schemas[s.$ref.split('/').pop()]
    return s ?? {}
  }

  function operationsOf(): Operation[] {
    const configs = new Map(node.app.routeTable.map((r) => [`${r.method} ${r.url}`, r.config]))
    const ops: Operation[] = []
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(item)) {
        const params: any[] = op.parameters ?? []
        const content = op.requestBody?.content ?? {}
        const key = `${method.toUpperCase()} ${path}`
        ops.push({
          key,
          method: method.toUpperCase(),
          path,
          pathParams: params.filter((p) => p.in === 'path'),
          queryParams: params.filter((p) => p.in === 'query'),
          body: content['application/json']?.schema,
          contentTypes: Object.keys(content),
          config: configs.get(`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`) ?? {},
        })
      }
    }
    const rank = (op: Operation) => LAST.indexOf(op.key)
    return ops.sort((a, b) => rank(a) - rank(b))
  }

  function headersFor(op: Operation): Record<string, string> {
    if (op.path.startsWith('/admin'))
      return op.config.permission === 'staff' ? bearer(fx.staffToken) : adminAuth
    if (op.path.startsWith('/store')) {
      return op.key === 'POST /store/auth/sign-out' || op.key === 'POST /store/me/password'
        ? fx.spare.headers
        : fx.customer.headers
    }
    return {}
  }

  function validParams(op: Operation): Record<string, string> {
    return Object.fromEntries(
      op.pathParams.map((p) => [p.name, encodeURIComponent(pathParamValue(fx, op.path, p.name, p.schema))]),
    )
  }

  /** The valid bodies of an operation: one per branch when the body is a union of objects. */
  function baselines(op: Operation): Array<{ schema: JsonSchema; make: () => Value }> {
    if (!op.body) return []
    const s = deref(op.body)
    const branches: JsonSchema[] = s.anyOf?.every((b: JsonSchema) => deref(b).type === 'object')
      ? s.anyOf
      : [op.body]
    const override = bodyOverrides(fx)[op.key]
    const smp = sampler(fx, deref)
    return branches.map((schema) => ({
      schema,
      make: () => {
        const base = sample(schema, 'body', smp)
        return override && branches.length === 1 ? override(base) : base
      },
    }))
  }

  async function send(probe: Probe): Promise<LightMyRequestResponse> {
    const { op } = probe
    const params = probe.params ?? validParams(op)
    const url =
      op.path.replace(/\{(\w+)\}/g, (_, name: string) => params[name] ?? '') +
      (probe.query ? `?${probe.query}` : '')
    const headers: Record<string, string> = { ...headersFor(op), ...probe.headers }
    if (op.config.idempotency) headers['idempotency-key'] = randomUUID()
    if (probe.payload !== undefined) headers['content-type'] = probe.contentType ?? 'application/json'
    const res = await node.app.inject({
      method: op.method as 'POST',
      url,
      headers,
      ...(probe.payload !== undefined ? { payload: probe.payload } : {}),
    })
    if (op.key === 'POST /store/me/password' && res.statusCode === 200) {
      // A change ends every session and hands back a new one: carry on with it, as a client would.
      fx.spare.headers = bearer(res.json().access_token)
      fx.spare.password = JSON.parse(probe.payload as string).new_password
    }
    return res
  }

  /** Every probe of one operation, in order: the valid request, then one corruption at a time. */
  function* probesOf(op: Operation): Generator<Probe> {
    if (op.key === 'POST /webhooks/stripe') {
      yield* webhookProbes(op)
      return
    }
    yield* genericProbes(op)
    if (op.key === 'POST /admin/products/import') yield* productImportProbes(op)
    if (op.key === 'POST /admin/inventory/counts/import') yield* countsImportProbes(op)
  }

  function* genericProbes(op: Operation): Generator<Probe> {
    const takesBody = ['POST', 'PUT', 'PATCH', 'DELETE'].includes(op.method)
    const jsonBody = op.body && op.contentTypes.includes('application/json')
    const bases = jsonBody ? baselines(op) : []
    const base = (i = 0) => (bases[i] ? jsonText(bases[i]!.make()) : undefined)
    yield { op, label: 'valid request', payload: base() }

    for (const param of op.pathParams) {
      const prefix = idPrefix(param.schema)
      const values: Array<[string, string]> = [...PATH_VALUES, ...foreignIds(prefix)]
      for (const [label, value] of values) {
        yield {
          op,
          label: `params.${param.name}: ${label}`,
          params: { ...validParams(op), [param.name]: value },
          payload: base(),
        }
      }
    }

    const smp = sampler(fx, deref)
    for (const param of op.queryParams) {
      const name = param.name
      const valid = sample(param.schema, name, smp)
      for (const [label, value] of queryValues(param.schema))
        yield { op, label: `query.${name}: ${label}`, query: `${name}=${value}`, payload: base() }
      const text = encodeURIComponent(Array.isArray(valid) ? String(valid[0]) : String(valid))
      yield {
        op,
        label: `query.${name}: repeated`,
        query: `${name}=${text}&${name}=${text}`,
        payload: base(),
      }
      yield { op, label: `query.${name}: valid`, query: `${name}=${text}`, payload: base() }
    }
    yield { op, label: 'query: unknown parameter', query: 'zz_not_a_parameter=1', payload: base() }

    if (takesBody) {
      for (const [label, payload, contentType] of BODIES)
        yield { op, label: `body: ${label}`, payload, contentType }
    }
    for (const [i, b] of bases.entries()) {
      const first = b.make()
      const branch = bases.length > 1 ? ` (branch ${i + 1})` : ''
      for (const field of fieldsOf(b.schema, first, smp)) {
        for (const c of fieldCorruptions(field, fieldValue(first, field), smp)) {
          const label = `${pathLabel('body', field.path)}${branch}: ${c.label}`
          yield { op, label, payload: jsonText(setAt(b.make(), field.path, c.value)) }
        }
      }
    }
  }

  /** Field by field corruptions of a JSON document, as the text of each corrupted copy. */
  function* documentCorruptions(
    schema: JsonSchema,
    make: () => Value,
    part = 'body',
  ): Generator<{ label: string; text: string }> {
    const smp = sampler(fx, deref)
    const first = make()
    for (const field of fieldsOf(schema, first, smp)) {
      for (const c of fieldCorruptions(field, fieldValue(first, field), smp)) {
        yield {
          label: `${pathLabel(part, field.path)}: ${c.label}`,
          text: jsonText(setAt(make(), field.path, c.value)),
        }
      }
    }
  }

  /** Stripe events, signed with the webhook secret so that they get past the signature check. */
  function* webhookProbes(op: Operation): Generator<Probe> {
    const intent = stripe.intent(fx.stripeIntent)!
    const event = (type: string, object: Value) => () => stripeEvent(type, object) as Value
    const refund = {
      id: `re_${randomUUID().replaceAll('-', '')}`,
      object: 'refund',
      amount: 100,
      currency: 'eur',
      payment_intent: intent.id,
      status: 'succeeded',
      metadata: { idempotency_key: randomUUID() },
    }
    const failed = {
      ...intent,
      status: 'requires_payment_method',
      last_payment_error: { code: 'card_declined', decline_code: 'insufficient_funds', message: 'Declined' },
    }
    // One event of each shape the provider reads (the other types of a shape read the same fields).
    const events: Array<[string, () => Value]> = [
      ['payment_intent.succeeded', event('payment_intent.succeeded', intent as unknown as Value)],
      ['payment_intent.payment_failed', event('payment_intent.payment_failed', failed as unknown as Value)],
      ['refund.updated', event('refund.updated', refund)],
    ]
    const signed = (label: string, payload: string | Buffer, contentType = 'application/json'): Probe => {
      const t = Math.floor(Date.now() / 1000)
      const v1 = createHmac('sha256', WEBHOOK_SECRET).update(`${t}.`).update(payload).digest('hex')
      return { op, label, payload, contentType, headers: { 'stripe-signature': `t=${t},v1=${v1}` } }
    }
    for (const type of [
      'payment_intent.amount_capturable_updated',
      'payment_intent.canceled',
      'customer.created',
    ]) {
      yield signed(`${type}: valid`, jsonText(event(type, intent as unknown as Value)()))
    }
    for (const [type, make] of events) {
      yield signed(`${type}: valid`, jsonText(make()))
      for (const c of documentCorruptions(exampleSchema(make()), make, type)) {
        // A failed payment's intent is the succeeded one's but for the error it carries.
        if (type === 'payment_intent.payment_failed' && !c.label.includes('.last_payment_error')) continue
        yield signed(c.label, c.text)
      }
    }
    for (const [label, payload, contentType] of BODIES) yield signed(`body: ${label}`, payload, contentType)
    const valid = jsonText(events[0]![1]())
    for (const [label, header] of [
      ['no signature', undefined],
      ['garbage signature', 'nonsense'],
      ['signature of 10 KB', `t=1,v1=${'a'.repeat(10 * 1024)}`],
      ['timestamp not a number', 't=abc,v1=00'],
      ['huge timestamp', `t=${'9'.repeat(400)},v1=00`],
    ] as Array<[string, string | undefined]>) {
      yield {
        op,
        label: `signature: ${label}`,
        payload: valid,
        headers: header ? { 'stripe-signature': header } : {},
      }
    }
  }

  /** Product files: each field of a product document corrupted, and broken CSV and NDJSON files. */
  function* productImportProbes(op: Operation): Generator<Probe> {
    const product = allOperations.find((o) => o.key === 'POST /admin/products')!
    const base = baselines(product)[0]!
    const wrapped = { type: 'array', items: base.schema }
    // The importer runs the product schema of POST /admin/products, whose type checks that route's
    // own probes cover: here, the values that pass them and reach the importer's own code.
    for (const c of documentCorruptions(wrapped, () => [base.make()], 'file')) {
      if (/: (wrong type|missing|empty|array of null)/.test(c.label)) continue
      yield {
        op,
        label: `json ${c.label}`,
        query: 'format=json',
        payload: c.text,
        contentType: 'application/json',
      }
    }
    const ndjson = base.make()
    yield { op, label: 'ndjson: valid', payload: jsonText(ndjson), contentType: 'application/x-ndjson' }
    const header =
      'handle,title,status,tags,attributes,metadata,sku,weight_g,manage_inventory,price_EUR,compare_at_EUR'
    const row = () => [
      `fuzz-${randomUUID()}`,
      'Fuzz',
      'draft',
      'a',
      '{}',
      '{}',
      `FUZZ-${randomUUID()}`,
      '100',
      'true',
      '1000',
      '',
    ]
    const csvLine = (cells: string[]) => cells.map((c) => `"${c.replaceAll('"', '""')}"`).join(',')
    yield { op, label: 'csv: valid', payload: `${header}\n${csvLine(row())}\n`, contentType: 'text/csv' }
    const cells: Array<[string, string]> = [
      ...HOSTILE_STRINGS,
      ...HOSTILE_NUMBERS.map(([label, v]): [string, string] => [
        label,
        v instanceof RawJson ? v.text : String(v),
      ]),
      ['deep JSON', deeplyNested(5_000, 'object').text],
    ]
    for (const [i, column] of header.split(',').entries()) {
      for (const [label, value] of cells) {
        const r = row()
        r[i] = value
        yield {
          op,
          label: `csv ${column}: ${label}`,
          payload: `${header}\n${csvLine(r)}\n`,
          contentType: 'text/csv',
        }
      }
    }
    for (const [label, payload, contentType] of fileCorruptions(header, csvLine(row())))
      yield { op, label, payload, contentType }
  }

  /** Cycle counts as CSV: each cell corrupted, and broken files. */
  function* countsImportProbes(op: Operation): Generator<Probe> {
    const header = 'location,sku,counted'
    const row = () => [fx.store.location, fx.sku, '5']
    const line = (cells: string[]) => cells.map((c) => `"${c.replaceAll('"', '""')}"`).join(',')
    yield { op, label: 'csv: valid', payload: `${header}\n${line(row())}\n`, contentType: 'text/csv' }
    const cells: Array<[string, string]> = [
      ...HOSTILE_STRINGS,
      ...HOSTILE_NUMBERS.map(([label, v]): [string, string] => [
        label,
        v instanceof RawJson ? v.text : String(v),
      ]),
      ...foreignIds('loc'),
    ]
    for (let i = 0; i < 3; i++) {
      for (const [label, value] of cells) {
        const r = row()
        r[i] = value
        yield {
          op,
          label: `csv ${header.split(',')[i]}: ${label}`,
          payload: `${header}\n${line(r)}\n`,
          contentType: 'text/csv',
        }
      }
    }
    for (const [label, payload, contentType] of fileCorruptions(header, line(row())))
      yield { op, label, payload, contentType }
  }

  function fileCorruptions(header: string, row: string): Array<[string, string | Buffer, string]> {
    return [
      ['csv: empty', '', 'text/csv'],
      ['csv: header only', `${header}\n`, 'text/csv'],
      ['csv: 10,000 rows', `${header}\n${`${row}\n`.repeat(10_000)}`, 'text/csv'],
      ['csv: unbalanced quote', `${header}\n"abc,1,2\n`, 'text/csv'],
      ['csv: NUL bytes', `${header}\n\u0000,\u0000,\u0000\n`, 'text/csv'],
      [
        'csv: not UTF-8',
        Buffer.concat([Buffer.from(`${header}\n`), Buffer.from([0xc3, 0x28, 0x2c, 0xff, 0x0a])]),
        'text/csv',
      ],
      ['csv: byte order mark and CRLF', `\ufeff${header}\r\n${row}\r\n`, 'text/csv'],
      ['csv: 1,000 columns', `${header}${',x'.repeat(1000)}\n${row}${',1'.repeat(1000)}\n`, 'text/csv'],
      ['csv: unknown header', 'a,b,c\n1,2,3\n', 'text/csv'],
      ['ndjson: broken line', '{"handle":"a"}\n{"handle":', 'application/x-ndjson'],
      ['ndjson: nested 50,000 deep', deeplyNested(50_000, 'object').text, 'application/x-ndjson'],
      ['json: nested 100,000 deep', deeplyNested(100_000, 'array').text, 'application/json'],
      ['json: object, not array', '{"products": 1}', 'application/json'],
      ['json: 10,000 empty objects', `[${Array(10_000).fill('{}').join(',')}]`, 'application/json'],
      ['text/plain', 'x', 'text/plain'],
    ]
  }

  function fieldValue(root: Value, field: Field): Value {
    let v: any = root
    for (const p of field.path) v = v?.[p]
    return v ?? null
  }

  beforeAll(async () => {
    stripe = await startStripeServer()
    node = await startTestNode(kind, {
      env: {
        RATE_LIMIT_PER_MINUTE: '1000000',
        AUTH_RATE_LIMIT_PER_MINUTE: '1000000',
        // Large enough for 10,000-item arrays to reach validation rather than the size limit.
        BODY_LIMIT_BYTES: String(8 * 1024 * 1024),
        STRIPE_SECRET_KEY: 'sk_test_shopwright',
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        STRIPE_API_URL: stripe.url,
      },
    })
    doc = (await node.app.inject('/openapi.json')).json()
    fx = await makeFixtures(node)
    allOperations = operationsOf()
    const only = process.env.FUZZ_OPS ? new RegExp(process.env.FUZZ_OPS) : undefined
    operations = allOperations.filter((op) => !only || only.test(op.key))
  }, 120_000)
  afterAll(async () => {
    await node?.close()
    await stripe?.close()
  })

  it('answers random corruptions with a 4xx problem, never a 5xx (fast-check)', async () => {
    const safe = operations.filter((op) => !LAST.includes(op.key))
    const smp = sampler(fx, deref)
    const catalog: Value[] = [
      ...HOSTILE_STRINGS.map(([, v]) => v),
      ...HOSTILE_NUMBERS.map(([, v]) => v),
      ...foreignIds('prod').map(([, v]) => v),
      [],
      {},
      null,
    ]
    const value = fc.oneof(
      fc.constantFrom(...catalog),
      fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Value>,
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.integer(),
      fc.double(),
    )
    const queryText = fc.oneof(
      fc.constantFrom(...queryValues({ type: 'integer', minimum: 0, maximum: 10 }).map(([, v]) => v)),
      fc.string({ unit: 'binary', maxLength: 40 }).map(encode),
    )
    const arbitrary = fc.record({
      op: fc.nat({ max: safe.length - 1 }),
      branch: fc.nat(),
      edits: fc.array(fc.record({ field: fc.nat(), remove: fc.boolean(), value }), {
        minLength: 1,
        maxLength: 3,
      }),
      query: fc.array(fc.tuple(fc.nat(), queryText), { maxLength: 2 }),
      param: fc.option(fc.tuple(fc.nat(), queryText), { nil: undefined }),
    })
    await fc.assert(
      fc.asyncProperty(arbitrary, async (input) => {
        const op = safe[input.op]!
        const bases = baselines(op)
        const params = validParams(op)
        const labels: string[] = []
        if (input.param && op.pathParams.length > 0) {
          const p = op.pathParams[input.param[0] % op.pathParams.length]!
          params[p.name] = input.param[1] || 'x'
          labels.push(`params.${p.name}`)
        }
        const query = op.queryParams.length
          ? input.query.map(([i, v]) => {
              const name = op.queryParams[i % op.queryParams.length]!.name
              labels.push(`query.${name}`)
              return `${name}=${v}`
            })
          : []
        let payload: string | undefined
        if (bases.length > 0) {
          const b = bases[input.branch % bases.length]!
          let body = b.make()
          const fields = fieldsOf(b.schema, body, smp)
          for (const edit of input.edits) {
            const field = fields[edit.field % Math.max(1, fields.length)]
            const at = field?.path ?? []
            labels.push(pathLabel('body', at))
            body = setAt(body, at, edit.remove && field ? REMOVE : edit.value)
          }
          payload = jsonText(body)
        }
        const probe: Probe = { op, label: labels.join(' '), params, query: query.join('&'), payload }
        const res = await send(probe)
        const problem = check(res)
        expect(problem, `${op.key} ${probe.query} ${payload?.slice(0, 500)}`).toBeUndefined()
      }),
      { seed: SEED, numRuns: RANDOM_RUNS, interruptAfterTimeLimit: 20_000, markInterruptAsFailure: false },
    )
  }, 60_000)

  it('answers every corruption of every part of every operation with a 4xx problem, never a 5xx', async () => {
    if (!process.env.FUZZ_OPS) expect(operations.length).toBeGreaterThanOrEqual(150)
    const failures: string[] = []
    const sent = new Map<string, number>()
    /** Answers on authenticated routes that mean the request never got past the guard. */
    const guarded: string[] = []
    for (const op of operations) {
      const probes = probesOf(op)
      // Several requests in flight hide the database's round trips; the operations that end what
      // later ones need go one request at a time, in order.
      const lanes = LAST.includes(op.key) ? 1 : CONCURRENCY
      const lane = async () => {
        for (let next = probes.next(); !next.done; next = probes.next()) {
          const probe = next.value
          const key = `${op.key} [${probe.label}]`
          if (answeredByValidation.has(key)) continue
          let res: LightMyRequestResponse
          try {
            res = await send(probe)
          } catch (error) {
            failures.push(`${key} → threw ${error}`)
            continue
          }
          sent.set(op.key, (sent.get(op.key) ?? 0) + 1)
          const problem = check(res)
          if (problem) failures.push(`${key} → ${problem}`)
          const code = res.statusCode >= 400 ? (JSON.parse(res.body).code as string) : undefined
          if (code && GUARD_CODES.has(code) && needsCredential(op) && !SESSION_ENDING.has(op.key))
            guarded.push(`${key} → ${code}`)
          if (kind === DATABASE_KINDS[0] && refusedBeforeHandler(res)) answeredByValidation.add(key)
        }
      }
      await Promise.all(Array.from({ length: lanes }, lane))
    }
    expect(failures).toEqual([])
    // Every operation was reached, and with credentials that got every request past the guards.
    expect(operations.filter((op) => !sent.has(op.key)).map((op) => op.key)).toEqual([])
    expect(guarded).toEqual([])
  }, 300_000)
})
