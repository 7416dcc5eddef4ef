/**
 * Every route validates its input by schema, including routes that take none: an action route
 * (capture, sign out, archive, …) refuses a body that holds fields, and an API read without
 * parameters refuses a query string that has some, as every other route refuses unknown fields.
 * A client sending `{"amount": 100}` to capture means a partial capture and must hear 400 rather
 * than have the whole payment captured; `?limit=1` on the regions list must not answer every
 * region as if it had been honoured (nor make another edge-cache entry for the same answer).
 * Such routes get an empty strict schema (shown in OpenAPI as such); no body counts as `{}`.
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

/**
 * Marks a body schema whose body may be left out (emptyWhenMissing): @fastify/swagger documents every
 * body schema as a required body, and optionalBodies sets that right in the OpenAPI document.
 */
export const OPTIONAL_BODY = 'x-optional-body'

const NoFields = Type.Object(
  {},
  { additionalProperties: false, description: 'No fields: send no body, or `{}`.', [OPTIONAL_BODY]: true },
)
const NoParameters = Type.Object({}, { additionalProperties: false })

// DELETE too: Fastify parses a JSON body on any method, and none of ours takes one.
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
/** The API's own routes; probes, metrics and the API reference keep taking what they take. */
const API = /^\/(store|admin)(\/|$)/

/** preValidation for a route whose body is optional: no body is an empty one. */
export async function emptyWhenMissing(request: FastifyRequest): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {}
}

/** Fastify's onRoute hook: gives routes that declare no input the empty strict schemas. */
export function refuseUndeclaredInput(route: RouteOptions): void {
  const methods = Array.isArray(route.method) ? route.method : [route.method]
  if (methods.some((method) => WRITES.has(method)) && !route.schema?.body && !route.config?.rawBody) {
    route.schema = { ...route.schema, body: NoFields }
    appendRouteHook(route, 'preValidation', emptyWhenMissing)
  }
  if (API.test(route.url) && !route.schema?.querystring)
    route.schema = { ...route.schema, querystring: NoParameters }
}

type OpenApiDocument = { paths?: Record<string, Record<string, { requestBody?: Record<string, unknown> }>> }

/** @fastify/swagger's transformObject: bodies marked OPTIONAL_BODY are documented as optional. */
export function optionalBodies<T>(document: T): T {
  for (const operations of Object.values((document as OpenApiDocument).paths ?? {}))
    for (const operation of Object.values(operations)) {
      const body = operation.requestBody
      const content = body?.content as Record<string, { schema?: Record<string, unknown> }> | undefined
      if (body && Object.values(content ?? {}).some((media) => media.schema?.[OPTIONAL_BODY] === true))
        body.required = false
    }
  return document
}
