/**
 * Turns every error into an RFC 9457 problem document with a stable code. Anything a client can
 * cause maps to a 4xx here; only a genuine bug reaches `internal_error`.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isConnectionError } from '../db/database.ts'
import { type FieldError, type ProblemCode, ProblemError, problem, problemBody } from './errors.ts'

interface AjvError {
  instancePath: string
  keyword: string
  message?: string
  params: Record<string, unknown>
}

/** `/title` in body → `body.title`; a missing or unknown property names the property itself. */
function fieldErrors(part: string, errors: AjvError[]): FieldError[] {
  return errors.map((e) => {
    const base = e.instancePath
      .split('/')
      .filter(Boolean)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    const extra = (e.params.missingProperty ?? e.params.additionalProperty) as string | undefined
    if (extra !== undefined) base.push(extra)
    const message =
      e.keyword === 'additionalProperties' ? 'is not a known field' : (e.message ?? 'is invalid')
    return { path: [part, ...base].join('.'), message }
  })
}

const BY_STATUS: Record<number, ProblemCode> = {
  400: 'validation_failed',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  503: 'overloaded',
}

/** Maps any thrown value to the ProblemError the client should see. */
export function toProblem(error: unknown): ProblemError {
  if (error instanceof ProblemError) return error
  const e = (error ?? {}) as FastifyError & { validation?: AjvError[]; validationContext?: string }
  if (e.validation) {
    const part = e.validationContext === 'querystring' ? 'query' : (e.validationContext ?? 'body')
    return problem('validation_failed', `The ${part} is invalid`, { errors: fieldErrors(part, e.validation) })
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return problem('payload_too_large')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return problem('unsupported_media_type', 'Send application/json')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return problem('malformed_json', 'The body is empty but the content type is application/json')
    // The router's own refusals (frameworkErrors), before any route runs.
    case 'FST_ERR_BAD_URL':
      return problem('validation_failed', 'The URL path is not valid percent-encoded UTF-8', {
        errors: [{ path: 'url', message: 'is not valid percent-encoded UTF-8' }],
      })
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return problem('uri_too_long', `A path parameter is longer than ${MAX_PARAM_LENGTH} characters`, {
        errors: [{ path: 'params', message: `is longer than ${MAX_PARAM_LENGTH} characters` }],
      })
  }
  if (e instanceof SyntaxError || e.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return problem('malformed_json', e.message)
  }
  // PostgreSQL refuses U+0000 in text and JSON; it can only have come from the client's input, and
  // the statement that met it wrote nothing.
  if (e.code === '22021' || e.code === '22P05') {
    return problem('validation_failed', 'Text may not contain the NUL character (\\u0000)')
  }
  // A foreign key refused the write: a row it refers to (or, for a delete, one that refers to it)
  // changed between the request's checks and its write, in another request's transaction. Run
  // alone, the request would have been answered by those checks (404, 422, 409 in use), and a
  // retry is: the client's request was not at fault, and nothing was written.
  if (e.code === FOREIGN_KEY_VIOLATION) {
    return problem(
      'conflict',
      'Something this request refers to was changed by another request at the same moment; retry',
    )
  }
  if (isConnectionError(e)) {
    return problem('unavailable', 'The database is unreachable; retry shortly', {
      headers: { 'retry-after': '5' },
    })
  }
  // Fastify and its plugins (FST_ codes) report a client's mistake with a 4xx status, and Fastify
  // gives one to Node's own error from reading the request's body (a body cut short). A library
  // our code calls may carry one too (a payment SDK's 401 for the store's key): that is our
  // failure, never to be passed on as the client's.
  const fromHttpLayer = typeof e.code === 'string' && /^(FST_|E[A-Z]+$|ERR_)/.test(e.code)
  const status = fromHttpLayer && typeof e.statusCode === 'number' ? e.statusCode : 500
  if (status >= 400 && status < 500) {
    return problem(BY_STATUS[status] ?? 'validation_failed', e.message)
  }
  return problem('internal_error')
}

/** PostgreSQL's SQLSTATE for a write a foreign key refuses. */
const FOREIGN_KEY_VIOLATION = '23503'

/** The longest path parameter the router takes (Fastify's `maxParamLength`). */
export const MAX_PARAM_LENGTH = 200

/** Answers an error as its problem document. */
export function sendProblem(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const p = toProblem(error)
  if (p.status >= 500 && p.code === 'internal_error') request.log.error({ err: error }, 'request failed')
  else if (p.status >= 500) request.log.warn({ err: error }, p.message)
  // Named, so that a race that keeps happening (or a foreign key our own code breaks) shows.
  else if ((error as { code?: unknown })?.code === FOREIGN_KEY_VIOLATION)
    request.log.warn({ err: error }, 'write refused by a foreign key: raced a concurrent change')
  if (p.headers) reply.headers(p.headers)
  reply
    .code(p.status)
    .type('application/problem+json')
    .send(problemBody(p.code, p.detail, p.errors))
}

/** Installs the error and not-found handlers. */
export function registerProblemHandler(app: FastifyInstance): void {
  app.setErrorHandler(sendProblem)
  app.setNotFoundHandler((request, reply) => {
    reply
      .code(404)
      .type('application/problem+json')
      .send(problemBody('route_not_found', `No route ${request.method} ${request.url.split('?')[0]}`))
  })
}
