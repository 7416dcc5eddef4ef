/**
 * Idempotency-Key with Stripe's semantics, as a route option (`config: { idempotency: 'required' }`):
 * the same key and body replays the stored response; the same key with another body is refused
 * (422); a request still running under the key gets 409; keys are kept at least 24 hours.
 *
 * Keys are scoped to the caller: the authenticated principal, or, for callers without a credential
 * (guests), the resource path, so that two guests who happen to send the same key only ever meet on
 * the same resource (the same cart), never one's request answered with the other's response. A
 * guest's key on a path that names no resource is not kept at all.
 *
 * The key is claimed in its own short transaction, and the response is stored in the same
 * transaction as the work (see runIdempotent), so a crash between the two leaves either nothing
 * done and the key reclaimable, or the work and its response both committed.
 */
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, RouteOptions } from 'fastify'
import { type Kysely, sql } from 'kysely'
import { Type } from 'typebox'
import type { DB } from '../db/schema.ts'
import { PREPARE_MARK } from '../db/statements.ts'
import { asynchronousCommit, type Tx, withTransaction } from '../db/transaction.ts'
import { problem } from './errors.ts'
import { appendRouteHook } from './route-hooks.ts'

/** How often a request waiting on another with the same key first looks for its response, and at most. */
const WAIT_POLL_MS = 25
const WAIT_POLL_MAX_MS = 250
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/
/** Answers that describe a passing state, not the request: never replayed, the key is released. */
const TRANSIENT = new Set([
  'conflict',
  'checkout_in_progress',
  'insufficient_stock',
  'rate_limited',
  'too_many_attempts',
  'payment_attempts_exceeded',
  // Another checkout of the customer's may hold the units it counts, and may yet fail.
  'purchase_limit_exceeded',
])

interface Claim {
  principal: string
  key: string
  completed: boolean
  /** Set by the route (releaseIdempotencyKey): its answer describes a passing state. */
  release?: boolean
}

/**
 * Marks this request's answer as one that describes a state the client is expected to change
 * (a payment waiting for the shopper's 3-D Secure step, say): the answer is not stored, and the
 * same Idempotency-Key may be sent again to carry on. No-op without a claimed key.
 */
export function releaseIdempotencyKey(request: FastifyRequest): void {
  if (request.idempotency) request.idempotency.release = true
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Whether this route takes an Idempotency-Key: required, or honoured when sent. */
    idempotency?: 'required' | 'optional'
    /**
     * A request arriving while another with the same key runs waits up to this long for its
     * response and replays it, instead of answering 409 at once (checkout: a shopper's retries
     * all get the one answer).
     */
    idempotencyWaitMs?: number
  }
  interface FastifyRequest {
    idempotency: Claim | null
  }
}

/** JSON with object keys sorted, so that two encodings of the same body hash the same. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

/**
 * Whose keys a key is among. Guests have no credential to tell them apart, so their scope is the
 * path of the resource (hashed: a path may be longer than an index entry allows): a guest's key can
 * only match requests to that same resource.
 */
function scopeOf(request: FastifyRequest): string {
  if (request.principal) return request.principal.id
  return anonymousScope(request.url)
}

/**
 * A guest's scope for a URL: the path without its query or a trailing slash (the router takes
 * both spellings for the same route), hashed. Migration 0023 gave keys stored before this the same.
 */
export function anonymousScope(url: string): string {
  const path = url.split('?', 1)[0]!.replace(/(.)\/+$/, '$1')
  return `anonymous:${createHash('sha256').update(path).digest('hex')}`
}

function requestHash(request: FastifyRequest): string {
  // No body and `{}` are the same request (routes without fields take either: strict-input.ts), and
  // hash as no body did before those routes turned it into `{}`: a retry across that change replays.
  const body = request.body ?? null
  const same =
    body !== null && typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0
  return createHash('sha256')
    .update(`${request.method} ${request.url}\n${canonical(same ? null : body)}`)
    .digest('hex')
}

/**
 * Installs the claim (preHandler) and the fallback store or release (onSend) on the routes that
 * declare `config.idempotency`; other routes carry no idempotency hooks at all.
 */
export function registerIdempotency(
  app: FastifyInstance,
  db: Kysely<DB>,
  options: { staleSeconds: number } = { staleSeconds: 60 },
): void {
  app.decorateRequest('idempotency', null)
  app.addHook('onRoute', (route) => {
    const mode = route.config?.idempotency
    if (!mode) return
    const waitMs = route.config?.idempotencyWaitMs ?? 0
    appendRouteHook(route, 'preHandler', (request: FastifyRequest, reply: FastifyReply) =>
      claim(request, reply, mode, waitMs),
    )
    appendRouteHook(route, 'onSend', settle)
  })

  async function claim(
    request: FastifyRequest,
    reply: FastifyReply,
    mode: 'required' | 'optional',
    waitMs: number,
  ) {
    const header = request.headers['idempotency-key']
    const key = Array.isArray(header) ? header[0] : header
    if (key === undefined) {
      if (mode === 'required') throw problem('idempotency_key_required')
      return
    }
    if (!KEY_PATTERN.test(key)) {
      throw problem('validation_failed', 'Idempotency-Key must be 1 to 255 printable ASCII characters', {
        errors: [{ path: 'headers.idempotency-key', message: 'must be 1 to 255 printable ASCII characters' }],
      })
    }
    // A guest's key is scoped to the resource its path names. On a path that names none (creating a
    // cart), every guest would share one scope, where a replay hands one shopper another's answer,
    // and a guest cart's id is its only key: there a guest's key is not kept, so a retried create
    // makes a second cart rather than risk giving away the first.
    if (!request.principal && !request.routeOptions.url?.includes(':')) return
    const principal = scopeOf(request)
    const hash = requestHash(request)
    // Committed without waiting for the disk: a claim that a database crash forgets had nothing
    // committed after it (any later synchronous commit makes it durable), so the retry that finds
    // no claim finds no work done under it either.
    const { rows: claimed } = await sql<{ key: string }>`
      ${sql.raw(PREPARE_MARK)} insert into idempotency_keys (principal, key, method, path, request_hash, state)
      select ${principal}, ${key}, ${request.method}, ${request.url}, ${hash}, 'running'
      where ${asynchronousCommit}
      on conflict (principal, key) do nothing
      returning key`.execute(db)
    if (claimed.length) {
      request.idempotency = { principal, key, completed: false }
      return
    }
    const deadline = Date.now() + waitMs
    let existing = await findKey(principal, key)
    let polls = 0
    // Waiting is for the response of a live request; a different body is refused at once.
    while (
      existing?.state === 'running' &&
      existing.request_hash === hash &&
      !existing.stale &&
      Date.now() < deadline
    ) {
      await sleep(Math.min(WAIT_POLL_MS * 2 ** polls++, WAIT_POLL_MAX_MS))
      existing = await findKey(principal, key)
    }
    if (!existing) throw problem('idempotency_in_progress', 'The key was released a moment ago; retry')
    if (existing.request_hash !== hash) throw problem('idempotency_key_reused')
    if (existing.state === 'done') {
      reply.header('idempotent-replayed', 'true')
      reply.code(existing.response_status ?? 200)
      if (existing.response_text === null) return reply.send(existing.response_body)
      // The first answer's bytes, so that every replay is identical to it.
      const type = (existing.response_status ?? 200) >= 400 ? 'application/problem+json' : 'application/json'
      return reply
        .type(`${type}; charset=utf-8`)
        .serializer((text: string) => text)
        .send(existing.response_text)
    }
    // Running: another request holds it, unless that request died and left its claim behind. Two
    // retries racing for a stale claim serialise on the row; the loser's re-checked WHERE fails.
    const retaken = await db
      .updateTable('idempotency_keys')
      .set({ locked_at: sql<Date>`now()` })
      .where('principal', '=', principal)
      .where('key', '=', key)
      .where('state', '=', 'running')
      .where('locked_at', '<', sql<Date>`now() - make_interval(secs => ${options.staleSeconds})`)
      .returning('key')
      .executeTakeFirst()
    if (!retaken) {
      throw problem('idempotency_in_progress', undefined, { headers: { 'retry-after': '1' } })
    }
    request.idempotency = { principal, key, completed: false }
  }

  /** The key's row, and whether its claim is old enough to belong to a request that died. */
  function findKey(principal: string, key: string) {
    return db
      .selectFrom('idempotency_keys')
      .selectAll()
      .select(sql<boolean>`locked_at < now() - make_interval(secs => ${options.staleSeconds})`.as('stale'))
      .where('principal', '=', principal)
      .where('key', '=', key)
      .executeTakeFirst()
  }

  async function settle(request: FastifyRequest, reply: FastifyReply, payload: unknown) {
    const claim = request.idempotency
    if (!claim) return payload
    if (claim.completed) {
      // Stored with the work (runIdempotent) as a value: add the bytes sent, for exact replays.
      if (typeof payload === 'string') {
        await db
          .updateTable('idempotency_keys')
          .set({ response_text: payload })
          .where('principal', '=', claim.principal)
          .where('key', '=', claim.key)
          .where('state', '=', 'done')
          .execute()
      }
      return payload
    }
    claim.completed = true
    let body: unknown = null
    if (typeof payload === 'string') {
      try {
        body = JSON.parse(payload)
      } catch {
        body = payload
      }
    }
    const code = (body as { code?: unknown } | null)?.code
    if (claim.release || reply.statusCode >= 500 || (typeof code === 'string' && TRANSIENT.has(code))) {
      // The work did not complete, or met a state that may pass (another request in the way,
      // stock not there now, a rate limit): the client may retry under the same key.
      await db
        .deleteFrom('idempotency_keys')
        .where('principal', '=', claim.principal)
        .where('key', '=', claim.key)
        .execute()
      return payload
    }
    // A client error (or a route that did no transactional work) is a final answer: replay it.
    // In a transaction of its own after the work's: a database crash that forgets it leaves the
    // claim as a request that died before storing its answer (the retry runs the work again).
    await storeResponse(db, claim, reply.statusCode, body, typeof payload === 'string' ? payload : null, true)
    return payload
  }
}

const IdempotencyKeyHeader = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: KEY_PATTERN.source,
  description:
    'Makes the request safe to retry (Stripe semantics): the same key and body replays the first ' +
    'answer (`Idempotent-Replayed: true`), the same key with another body is refused (422 ' +
    '`idempotency_key_reused`), and while a request under the key runs another gets 409 ' +
    "`idempotency_in_progress`. Keys are kept 24 hours per credential; a guest's key is kept per " +
    'resource path, and not at all on a path that names no resource (creating a cart).',
})

/**
 * @fastify/swagger's transform: documents the Idempotency-Key header on every route that declares
 * `config.idempotency`, as required where the route requires it. Only the OpenAPI document changes:
 * the claim checks the key, and a header schema on the route would answer a missing or bad key
 * with Fastify's validation error instead of `idempotency_key_required` and the key's own message.
 */
export function documentIdempotencyKey({
  schema,
  url,
  route,
}: {
  schema: FastifySchema
  url: string
  route: RouteOptions
}): { schema: FastifySchema; url: string } {
  const mode = route.config?.idempotency
  if (!mode) return { schema, url }
  const headers = (schema?.headers ?? {}) as { properties?: object; required?: string[] }
  return {
    url,
    schema: {
      ...schema,
      headers: {
        ...headers,
        type: 'object',
        properties: { ...headers.properties, 'Idempotency-Key': IdempotencyKeyHeader },
        ...(mode === 'required' ? { required: [...(headers.required ?? []), 'Idempotency-Key'] } : {}),
      },
    },
  }
}

/** What jsonb refuses in JSON text: U+0000, and lone surrogates (JSON.stringify escapes only those). */
const UNSTORABLE_IN_JSONB = /\\u(?:0000|d[89a-f])/i

async function storeResponse(
  db: Kysely<DB> | Tx,
  claim: Claim,
  status: number,
  body: unknown,
  text: string | null = null,
  /** Its own transaction, committed as asynchronousCommit says; never the work's transaction. */
  asynchronous = false,
): Promise<void> {
  const json = JSON.stringify(body ?? null)
  await db
    .updateTable('idempotency_keys')
    .set({
      state: 'done',
      response_status: status,
      // An answer may echo text the client sent in a file or URL that jsonb cannot hold; then the
      // exact bytes sent, kept beside it, are what a replay answers with.
      response_body: text !== null && UNSTORABLE_IN_JSONB.test(json) ? null : json,
      response_text: text,
      completed_at: sql<Date>`now()`,
    })
    .where('principal', '=', claim.principal)
    .where('key', '=', claim.key)
    .$if(asynchronous, (qb) => qb.where(asynchronousCommit))
    .execute()
}

/**
 * Runs a route's work in one transaction and, when the request holds an idempotency claim, stores
 * the response in that same transaction. Set the status code on reply before calling.
 */
export async function runIdempotent<T>(
  db: Kysely<DB>,
  request: FastifyRequest,
  reply: FastifyReply,
  work: (trx: Tx) => Promise<T>,
): Promise<T> {
  const claim = request.idempotency
  const result = await withTransaction(db, async (trx) => {
    const result = await work(trx)
    if (claim) await storeResponse(trx, claim, reply.statusCode, result)
    return result
  })
  if (claim) claim.completed = true
  return result
}

/** Deletes keys older than 24 hours (run hourly by a job); returns how many went. */
export async function purgeExpiredIdempotencyKeys(db: Kysely<DB>): Promise<number> {
  const result = await db
    .deleteFrom('idempotency_keys')
    .where('created_at', '<', sql<Date>`now() - interval '24 hours'`)
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}
