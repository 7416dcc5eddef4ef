/**
 * buildApp: a Fastify instance with the platform's HTTP conventions (validation, problem+json,
 * request ids, security headers, CORS, rate limits, load shedding, OpenAPI) and every module's routes.
 */
import { createServer } from 'node:http'
import cors from '@fastify/cors'
import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import underPressure from '@fastify/under-pressure'
import { Ajv } from 'ajv'
import addFormatsModule from 'ajv-formats'
import { fullFormats } from 'ajv-formats/dist/formats.js'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyContextConfig,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify'
import helmet from 'helmet'
import { cartAdminRoutes } from './modules/carts/admin-routes.ts'
import { cartRoutes } from './modules/carts/routes.ts'
import { catalogAdminTaxonomyRoutes } from './modules/catalog/admin-taxonomy-routes.ts'
import { catalogCacheOf } from './modules/catalog/cache.ts'
import { catalogImportRoutes } from './modules/catalog/import-routes.ts'
import { catalogRoutes } from './modules/catalog/routes.ts'
import { catalogStoreRoutes } from './modules/catalog/store-routes.ts'
import { adminCustomerRoutes } from './modules/identity/admin-customer-routes.ts'
import { registerAuditHook } from './modules/identity/audit.ts'
import { customerRoutes } from './modules/identity/customer-routes.ts'
import { identityResolvers } from './modules/identity/principals.ts'
import { staffRoutes } from './modules/identity/staff-routes.ts'
import { inventoryRoutes } from './modules/inventory/routes.ts'
import { orderAdminRoutes } from './modules/orders/admin-routes.ts'
import { checkoutRoutes } from './modules/orders/checkout-routes.ts'
import { orderStoreRoutes } from './modules/orders/store-routes.ts'
import { paymentRoutes } from './modules/payments/routes.ts'
import { taxRoutes } from './modules/tax/routes.ts'
import { bootstrapTokenResolver, registerAuth } from './platform/http/auth.ts'
import { EdgeCache } from './platform/http/edge-cache.ts'
import { problem, problemBody } from './platform/http/errors.ts'
import { documentIdempotencyKey, registerIdempotency } from './platform/http/idempotency.ts'
import { jsonBodyError } from './platform/http/json-body.ts'
import { type CompileFailure, LazyCompiler } from './platform/http/lazy-compile.ts'
import { MAX_PARAM_LENGTH, registerProblemHandler, sendProblem } from './platform/http/problem-handler.ts'
import { requestIdFrom } from './platform/http/request-id.ts'
import { ProblemSchema } from './platform/http/schemas.ts'
import { optionalBodies, refuseUndeclaredInput } from './platform/http/strict-input.ts'
import { jobsAdminRoutes } from './platform/jobs/routes.ts'
import { RedisKv } from './platform/kv/index.ts'
import { healthRoutes } from './platform/observability/health.ts'
import { registerMetrics, requestObserver } from './platform/observability/metrics.ts'
import type { Runtime } from './platform/runtime.ts'

// ajv-formats is CommonJS with a default export; under NodeNext it arrives as the module object.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv

export type App = FastifyInstance

/** A registered route and its options, for tests that walk every route (permissions, audit). */
export interface RouteEntry {
  method: string
  url: string
  config: FastifyContextConfig
}

declare module 'fastify' {
  interface FastifyInstance {
    routeTable: RouteEntry[]
    /** Compiles the route schemas no request has needed yet (see lazy-compile.ts). */
    warmSchemas(options?: { sliceMs?: number; pauseMs?: number }): Promise<CompileFailure[]>
  }
}

/** How often load shedding samples the event loop. */
export const PRESSURE_SAMPLE_MS = 250

/**
 * One log line per request, on completion (Fastify's default is two), and none for probes: they
 * arrive every few seconds from every balancer and would drown the real traffic.
 */
class RequestLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (request.routeOptions.config.probe) return
    const line = {
      method: request.method,
      url: request.url,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
    }
    if (error) request.log.error({ ...line, err: error }, 'request failed')
    else request.log.info(line, 'request')
  }
}

const rfc3339 = fullFormats['date-time'] as { validate: (text: string) => boolean }
const EARLIEST = Date.parse('0001-01-01T00:00:00Z')
const LATEST = Date.parse('9999-12-31T23:59:59.999Z')

/**
 * `date-time` input, narrowed to instants between the years 0001 and 9999 in UTC: the text may say
 * 0001 or 9999 and its offset still carry it to year 0 or 10000, which PostgreSQL refuses (a 500
 * from the query, where a 400 naming the field is due).
 */
function storableDateTimes(ajv: Ajv): Ajv {
  return ajv.addFormat('date-time', {
    type: 'string',
    validate: (text: string) => {
      if (!rfc3339.validate(text)) return false
      const at = Date.parse(text)
      return at >= EARLIEST && at <= LATEST
    },
  })
}

/**
 * Bodies are validated strictly (no type coercion, unknown fields refused); query strings and
 * params arrive as text, so there numbers and booleans are coerced from their string form.
 */
function validators(lazy: LazyCompiler) {
  const common = { allErrors: true, removeAdditional: false, useDefaults: true, strict: false } as const
  const body = storableDateTimes(addFormats(new Ajv({ ...common, coerceTypes: false })))
  const text = storableDateTimes(addFormats(new Ajv({ ...common, coerceTypes: 'array' })))
  return ({
    schema,
    method,
    url,
    httpPart,
  }: {
    schema: object
    method: string
    url: string
    httpPart?: string
  }) =>
    lazy.validator(() => (httpPart === 'body' ? body : text).compile(schema), `${method} ${url} ${httpPart}`)
}

/**
 * helmet's security headers for the HTML pages (the API reference at /docs), computed once. They
 * depend on configuration only, never on the request, so running helmet's middleware per request
 * (as @fastify/helmet does, re-parsing every option each time) would only repeat the same work.
 */
function htmlSecurityHeaders(): Record<string, string> {
  const headers: Record<string, string> = {}
  const recorder = {
    setHeader: (name: string, value: string | number) => {
      headers[name.toLowerCase()] = String(value)
    },
    removeHeader: () => {},
  }
  helmet({
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
      },
    },
  })({} as never, recorder as never, () => {})
  return headers
}

/**
 * The headers OWASP's REST Security Cheat Sheet gives for every API response (Content-Type is set
 * per answer; routes whose answers may be cached, the public catalog, replace Cache-Control).
 * helmet's other headers guard HTML documents and would only add bytes, and per-header validation,
 * to every JSON answer; Cross-Origin-Resource-Policy is left out on purpose, since storefronts on
 * other origins read these answers (CORS governs that).
 */
const API_SECURITY_HEADERS: Record<string, string> = {
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
}

/** The API reference's pages (/docs and below): the only HTML the server sends. */
function isDocsPage(url: string): boolean {
  return url === '/docs' || url.startsWith('/docs/') || url.startsWith('/docs?')
}

/** Builds the HTTP app over a started or starting runtime. Does not listen. */
export async function buildApp(runtime: Runtime): Promise<App> {
  const { config } = runtime
  const observe = requestObserver(runtime.metrics)
  const allowedOrigins = new Set(config.corsOrigins)
  const edgeCache = new EdgeCache({
    enabled: config.edgeCache && config.catalogCache,
    maxEntries: config.catalogCacheMaxEntries,
    draining: () => runtime.draining,
    originKey: config.corsOrigins.includes('*')
      ? () => ''
      : (origin) => (origin !== undefined && allowedOrigins.has(origin) ? origin : ''),
    observe: (method, status, route, seconds) => {
      observe(method, status, route, seconds)
      runtime.metrics.edgeCacheHits.inc()
    },
    logger: runtime.logger,
  })
  const lazy = new LazyCompiler()
  const app = Fastify({
    loggerInstance: runtime.logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    requestIdHeader: false,
    genReqId: (req) => requestIdFrom(req.headers['x-request-id']),
    logController: new RequestLog({ requestIdLogLabel: 'request_id' }),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_PARAM_LENGTH },
    // A path that is not valid percent-encoded UTF-8, or a parameter over the length limit, is
    // refused by the router before any route or hook runs: answer it as a problem all the same.
    frameworkErrors: (error, request, reply) => {
      reply.headers(API_SECURITY_HEADERS).header('x-request-id', request.id)
      sendProblem(error, request, reply)
    },
    schemaController: {
      compilersFactory: {
        buildValidator: (() => validators(lazy)) as never,
        buildSerializer: lazy.serializerFactory() as never,
      },
    },
    // The server Fastify would make (lib/server.js), whose requests meet the edge cache first.
    serverFactory: (handler, options) => {
      const server = createServer(options.http ?? {}, edgeCache.wrap(handler))
      server.keepAliveTimeout = options.keepAliveTimeout as number
      server.requestTimeout = options.requestTimeout as number
      server.setTimeout(options.connectionTimeout as number)
      const perSocket = Number(options.maxRequestsPerSocket ?? 0)
      if (perSocket > 0) server.maxRequestsPerSocket = perSocket
      return server
    },
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.addHook('preClose', (done) => {
    edgeCache.close()
    done()
  })
  // A catalog write clears this node's kept answers at once, even if its cross-node bump fails.
  catalogCacheOf(runtime).onInvalidate(() => edgeCache.clear())
  app.addSchema(ProblemSchema)
  registerProblemHandler(app)
  const routeTable: RouteEntry[] = []
  app.decorate('routeTable', routeTable)
  app.decorate('warmSchemas', (options?: { sliceMs?: number; pauseMs?: number }) => lazy.warm(options))
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    for (const method of methods) routeTable.push({ method, url: route.url, config: route.config ?? {} })
    refuseUndeclaredInput(route)
    edgeCache.onRoute(route)
  })

  // Fastify decodes bodies leniently (bad bytes become U+FFFD); a body that is not UTF-8 is refused,
  // and so is one that no route could take (see json-body.ts).
  const utf8 = new TextDecoder('utf-8', { fatal: true })
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string
    try {
      text = utf8.decode(body as Buffer)
    } catch {
      done(problem('invalid_encoding'), undefined)
      return
    }
    parseJson(request, text, (error, body) => {
      const bad = error ? undefined : jsonBodyError(body)
      if (bad) done(problem('validation_failed', `${bad.path} ${bad.message}`, { errors: [bad] }), undefined)
      else done(error, body)
    })
  })

  // The hooks on every request are written callback-style: no promise per request and hook.
  // First, so that every answer (a shed or rate-limited one too) carries them.
  const htmlHeaders = htmlSecurityHeaders()
  app.addHook('onRequest', (request, reply, done) => {
    // Probes are read by balancers and orchestrators, never rendered by a browser: browser security
    // headers would only add bytes (and Node's per-header validation) to the most frequent request.
    if (!request.routeOptions.config.probe)
      reply.headers(isDocsPage(request.url) ? htmlHeaders : API_SECURITY_HEADERS)
    reply.header('x-request-id', request.id)
    done()
  })
  // A draining node tells keep-alive clients to reconnect elsewhere; otherwise a connection that
  // was busy when shutdown began would stay open and hold the close up.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (runtime.draining) reply.header('connection', 'close')
    done(null, payload)
  })
  await app.register(underPressure, {
    sampleInterval: PRESSURE_SAMPLE_MS,
    maxEventLoopDelay: config.maxEventLoopDelayMs,
    maxEventLoopUtilization: config.maxEventLoopUtilization,
    retryAfter: 10,
    pressureHandler: (_request, reply) => {
      reply
        .code(503)
        .header('retry-after', '10')
        .type('application/problem+json')
        .send(problemBody('overloaded', 'The server is shedding load; retry after the delay given'))
    },
  })
  await app.register(cors, {
    origin: config.corsOrigins.includes('*') ? '*' : config.corsOrigins,
    exposedHeaders: ['x-request-id', 'idempotent-replayed', 'retry-after', 'etag'],
  })
  await app.register(rateLimit, {
    global: true,
    max: config.rateLimitPerMinute,
    timeWindow: 60_000,
    ...(runtime.kv instanceof RedisKv ? { redis: runtime.kv.client, nameSpace: 'sw:rl:' } : {}),
    errorResponseBuilder: (_request, context) =>
      problem(
        'rate_limited',
        `Limit of ${context.max} requests per minute reached; retry in ${context.after}`,
        {
          headers: { 'retry-after': String(Math.ceil(context.ttl / 1000)) },
        },
      ),
  })

  registerAuth(app, {
    resolvers: [
      ...identityResolvers(runtime),
      ...(config.adminToken ? [bootstrapTokenResolver(config.adminToken)] : []),
    ],
  })
  registerIdempotency(app, runtime.database.db, { staleSeconds: config.idempotencyStaleSeconds })
  registerAuditHook(app, runtime.database.db)

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Shopwright API',
        version: '0.1.0',
        description:
          'Headless commerce backend. `/store` serves storefronts; `/admin` serves the back office and ' +
          'needs a bearer credential with the permission each operation names. Errors are RFC 9457 ' +
          'problem documents with a stable `code`.',
      },
      servers: [{ url: config.publicUrl }],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `schema${i}`) },
    transform: documentIdempotencyKey,
    transformObject: (document) =>
      optionalBodies('openapiObject' in document ? document.openapiObject : document.swaggerObject),
  })
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } })
  app.get('/openapi.json', { schema: { hide: true }, config: { rateLimit: false } }, async () =>
    app.swagger(),
  )

  registerMetrics(app, runtime.metrics, observe)
  await app.register(healthRoutes, { runtime })
  await app.register(jobsAdminRoutes, { runtime })
  await app.register(catalogRoutes, { runtime })
  await app.register(taxRoutes, { runtime })
  await app.register(catalogAdminTaxonomyRoutes, { runtime })
  await app.register(catalogStoreRoutes, { runtime })
  await app.register(catalogImportRoutes, { runtime })
  await app.register(customerRoutes, { runtime })
  await app.register(staffRoutes, { runtime })
  await app.register(adminCustomerRoutes, { runtime })
  await app.register(inventoryRoutes, { runtime })
  await app.register(cartRoutes, { runtime })
  await app.register(cartAdminRoutes, { runtime })
  await app.register(checkoutRoutes, { runtime })
  await app.register(orderStoreRoutes, { runtime })
  await app.register(orderAdminRoutes, { runtime })
  await app.register(paymentRoutes, { runtime })
  return app
}
