/**
 * The edge cache: whole responses of public GET routes, kept in the node's memory and replayed
 * before Fastify routes the request, as a CDN in front of the node would serve them.
 *
 * A route opts in with `config: { edgeCache: true }` and, per response, says how long the body stays
 * true with `markEdgeCacheable`. Only what Fastify already sent is replayed: the first request for a
 * URL runs the whole pipeline (validation, hooks, the handler), and its headers and body are kept
 * under the URL and the request's Origin. Later identical requests without credentials get those
 * bytes back after one freshness check (for the catalog, one read of its version in the KV store),
 * so a write on any node is seen by the next read on every node, as with the catalog cache.
 *
 * Replayed answers skip the per-request hooks on purpose: rate limits, load shedding and the info
 * request log (they are logged at debug). They still get their own request id, are timed in the
 * request metrics, and are never served while the node drains.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { Logger } from 'pino'
import { Lru } from '../lru.ts'
import { requestIdFrom } from './request-id.ts'
import { appendRouteHook } from './route-hooks.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's public GET responses may be replayed by the edge cache (see markEdgeCacheable). */
    edgeCache?: boolean
  }
}

/** How a response's freshness is known after it was kept. */
export interface EdgeFreshness {
  /** True while the data the body was built from is current (may ask the KV store). */
  isCurrent: () => Promise<boolean>
  /** Epoch ms after which the body must be built again, whatever isCurrent says. */
  expiresAt: number
}

interface Entry extends EdgeFreshness {
  /** Header names and values, flat, as `writeHead` takes them, without the per-request ones. */
  headers: string[]
  body: Buffer
  etag: string | undefined
  /** The route's URL template, for metrics. */
  route: string
}

/** Records one replayed answer in the request metrics. */
export type EdgeObserver = (method: string, status: number, route: string, seconds: number) => void

export interface EdgeCacheOptions {
  enabled: boolean
  /** Most responses kept; the least recently used go first. */
  maxEntries: number
  /** True while the node drains: answers then go through Fastify, which closes connections. */
  draining: () => boolean
  /**
   * The part of the request's Origin that changes the answer's CORS headers: the origin itself when
   * it is one the store allows by name, '' otherwise (no origin, a refused one, or CORS for all).
   */
  originKey: (origin: string | undefined) => string
  observe: EdgeObserver
  logger: Logger
}

const kMark = Symbol('edgeCache')
/** Headers that belong to one request or one client, never replayed. */
const PER_REQUEST = new Set([
  'x-request-id',
  'date',
  'connection',
  'keep-alive',
  'content-length',
  'transfer-encoding',
])
/** The 304 answer carries the validators and caching headers, not the body's description. */
const NOT_IN_304 = new Set(['content-type', 'content-length'])

type Marked = FastifyRequest & { [kMark]?: EdgeFreshness }

/** Lets the edge cache keep this response (public and shareable) while `freshness` holds. */
export function markEdgeCacheable(request: FastifyRequest, freshness: EdgeFreshness): void {
  ;(request as Marked)[kMark] = freshness
}

/** True when an If-None-Match header names this ETag (or `*`); weak comparison, as RFC 9110 says. */
export function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false
  if (header.trim() === '*') return true
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)
}

/** Requests whose answer can be shared: a GET without credentials. */
function shareable(request: IncomingMessage): boolean {
  return request.method === 'GET' && request.headers.authorization === undefined
}

export class EdgeCache {
  readonly #entries: Lru<Entry>
  readonly #options: EdgeCacheOptions
  /** Set when Fastify starts closing: answers then go through it, for its 503s and closes. */
  #closing = false

  constructor(options: EdgeCacheOptions) {
    this.#options = options
    this.#entries = new Lru(options.maxEntries)
  }

  #keyOf(request: IncomingMessage): string {
    return `${request.url}\n${this.#options.originKey(request.headers.origin)}`
  }

  #bypassed(): boolean {
    return this.#closing || this.#options.draining()
  }

  /** Fastify's preClose hook: from now on every request goes through Fastify. */
  close(): void {
    this.#closing = true
    this.#entries.clear()
  }

  /** Forgets every kept answer (a write whose cross-node bump may have failed, say). */
  clear(): void {
    this.#entries.clear()
  }

  /** Wraps Fastify's request handler: answers from memory when it can, else hands the request on. */
  wrap(handler: RequestListener): RequestListener {
    if (!this.#options.enabled) return handler
    return (request, response) => {
      const key = shareable(request) ? this.#keyOf(request) : undefined
      const entry = key === undefined ? undefined : this.#entries.get(key)
      if (!entry || this.#bypassed()) {
        handler(request, response)
        return
      }
      const started = performance.now()
      if (entry.expiresAt <= Date.now()) {
        this.#entries.forget(key as string, entry)
        handler(request, response)
        return
      }
      let handedOver = false
      const handOver = () => {
        handedOver = true
        handler(request, response)
      }
      entry
        .isCurrent()
        .then((current) => {
          if (current && !this.#bypassed()) this.#replay(key as string, entry, request, response, started)
          else {
            if (!current) this.#entries.forget(key as string, entry)
            handOver()
          }
        }, handOver)
        .catch((error: unknown) => {
          // Never an unhandled rejection (it would stop the node): hand over once, else drop the socket.
          this.#options.logger.error({ err: error, url: request.url }, 'edge cache replay failed')
          if (!handedOver && !response.headersSent) handOver()
          else response.destroy()
        })
    }
  }

  #replay(
    key: string,
    entry: Entry,
    request: IncomingMessage,
    response: ServerResponse,
    started: number,
  ): void {
    this.#entries.touch(key, entry)
    const id = requestIdFrom(request.headers['x-request-id'])
    const notModified = entry.etag !== undefined && matchesEtag(request.headers['if-none-match'], entry.etag)
    const status = notModified ? 304 : 200
    const headers = ['x-request-id', id]
    for (let i = 0; i < entry.headers.length; i += 2) {
      if (notModified && NOT_IN_304.has(entry.headers[i] as string)) continue
      headers.push(entry.headers[i] as string, entry.headers[i + 1] as string)
    }
    if (!notModified) headers.push('content-length', String(entry.body.length))
    response.writeHead(status, headers)
    response.end(notModified ? undefined : entry.body)
    const seconds = (performance.now() - started) / 1000
    this.#options.observe('GET', status, entry.route, seconds)
    if (this.#options.logger.isLevelEnabled('debug'))
      this.#options.logger.debug(
        { method: 'GET', url: request.url, status, ms: Math.round(seconds * 10_000) / 10, edge: true },
        'request',
      )
  }

  /** Fastify's onRoute hook: routes with `config.edgeCache` get the onSend hook that keeps answers. */
  onRoute(route: RouteOptions): void {
    if (!this.#options.enabled || !route.config?.edgeCache) return
    appendRouteHook(
      route,
      'onSend',
      (
        request: FastifyRequest,
        reply: FastifyReply,
        payload: unknown,
        done: (error: null, payload: unknown) => void,
      ) => {
        this.#keep(request, reply, payload)
        done(null, payload)
      },
    )
  }

  #keep(request: FastifyRequest, reply: FastifyReply, payload: unknown): void {
    const freshness = (request as Marked)[kMark]
    if (!freshness || reply.statusCode !== 200 || !Buffer.isBuffer(payload) || !shareable(request.raw)) return
    if (this.#closing) return
    const headers: string[] = []
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value === undefined || PER_REQUEST.has(name) || name.startsWith('x-ratelimit-')) continue
      // A response that sets a cookie or is not public belongs to one client.
      if (name === 'set-cookie') return
      if (name === 'cache-control' && !String(value).startsWith('public')) return
      if (Array.isArray(value)) for (const item of value) headers.push(name, item)
      else headers.push(name, String(value))
    }
    const etag = reply.getHeader('etag')
    this.#entries.set(this.#keyOf(request.raw), {
      ...freshness,
      headers,
      body: payload,
      etag: typeof etag === 'string' ? etag : undefined,
      route: request.routeOptions.url ?? 'unmatched',
    })
  }
}
