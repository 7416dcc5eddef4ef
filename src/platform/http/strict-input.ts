/**
 * Write routes that take no input (capture, sign out, archive, …) refuse a body that holds fields,
 * as every other write route refuses unknown fields: a client sending `{"amount": 100}` to capture
 * means a partial capture, and must hear 400 rather than have the whole payment captured. Such a
 * route gets an empty strict body schema (documented in OpenAPI as such) and no body counts as `{}`.
 * Routes whose body is a file or a signed payload the handler reads itself say `config.rawBody`.
 */
import type { FastifyRequest, RouteOptions } from 'fastify'
import { Type } from 'typebox'
import { appendRouteHook } from './route-hooks.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The handler reads the body itself (an uploaded file, a signed webhook): no schema for it. */
    rawBody?: boolean
  }
}

const NoFields = Type.Object(
  {},
  { additionalProperties: false, description: 'No fields: send no body, or `{}`.' },
)

const WRITES = new Set(['POST', 'PUT', 'PATCH'])

/** preValidation for a route whose body is optional: no body is an empty one. */
export async function emptyWhenMissing(request: FastifyRequest): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {}
}

/** Fastify's onRoute hook: gives write routes without a body schema the empty strict one. */
export function refuseUnexpectedBodies(route: RouteOptions): void {
  const methods = Array.isArray(route.method) ? route.method : [route.method]
  if (!methods.some((method) => WRITES.has(method)) || route.schema?.body || route.config?.rawBody) return
  route.schema = { ...route.schema, body: NoFields }
  appendRouteHook(route, 'preValidation', emptyWhenMissing)
}
