/**
 * The catalogue of every problem the API can answer with. A code, its HTTP status and its title
 * live together here so that docs, clients and tests can rely on one list; routes throw from it and
 * never make up codes on the spot.
 */

export const problems = {
  validation_failed: { status: 400, title: 'The request is invalid' },
  weak_password: { status: 400, title: 'The password is too weak' },
  malformed_json: { status: 400, title: 'The body is not valid JSON' },
  invalid_encoding: { status: 400, title: 'The body is not valid UTF-8' },
  invalid_cursor: { status: 400, title: 'The cursor is not valid' },
  idempotency_key_required: { status: 400, title: 'This request needs an Idempotency-Key header' },
  unauthenticated: { status: 401, title: 'Authentication is required' },
  invalid_credentials: { status: 401, title: 'The email or password is wrong' },
  invalid_token: { status: 401, title: 'The token is invalid, expired or already used' },
  forbidden: { status: 403, title: 'This credential lacks the permission needed' },
  mfa_required: { status: 403, title: 'Multi-factor authentication is required' },
  step_up_required: { status: 403, title: 'This action needs a fresh MFA confirmation' },
  invalid_mfa_code: { status: 401, title: 'The MFA code is wrong or already used' },
  not_found: { status: 404, title: 'The resource does not exist' },
  route_not_found: { status: 404, title: 'No such route' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  not_acceptable: { status: 406, title: 'No representation matches the Accept header' },
  conflict: { status: 409, title: 'The request conflicts with the current state' },
  handle_taken: { status: 409, title: 'The handle is already in use' },
  sku_taken: { status: 409, title: 'The SKU is already in use' },
  email_taken: { status: 409, title: 'Another account uses this email' },
  role_in_use: { status: 409, title: 'Staff members still hold this role' },
  built_in_role: { status: 409, title: 'Built-in roles cannot be changed' },
  insufficient_stock: { status: 409, title: 'Not enough stock to fill the request' },
  reservation_not_active: { status: 409, title: 'The reservation is no longer active' },
  location_code_taken: { status: 409, title: 'Another location uses this code' },
  location_in_use: { status: 409, title: 'The location still holds stock or reservations' },
  idempotency_in_progress: { status: 409, title: 'A request with this Idempotency-Key is still running' },
  tax_rate_overlap: { status: 409, title: 'Another rate of this kind applies over part of that period' },
  tax_category_built_in: { status: 409, title: 'Built-in tax categories cannot be deleted' },
  tax_category_in_use: { status: 409, title: 'Products or shipping options use this tax category' },
  cart_not_active: { status: 409, title: 'The cart is no longer open for changes' },
  checkout_in_progress: { status: 409, title: 'A checkout of this cart is already under way' },
  cart_changed: { status: 409, title: 'The cart changed since it was last shown; review it before paying' },
  invalid_order_transition: {
    status: 409,
    title: 'The order cannot move to that status from its current one',
  },
  refund_exceeds_captured: { status: 409, title: 'The refund is larger than what remains captured' },
  payment_not_capturable: { status: 409, title: 'The payment cannot be captured in its current state' },
  payment_required: { status: 402, title: 'The payment was declined' },
  payload_too_large: { status: 413, title: 'The body is larger than allowed' },
  uri_too_long: { status: 414, title: 'A segment of the URL path is longer than allowed' },
  unsupported_media_type: { status: 415, title: 'The content type is not supported' },
  idempotency_key_reused: {
    status: 422,
    title: 'This Idempotency-Key was used with a different request',
  },
  unknown_variant: { status: 422, title: 'No variant has this SKU or id' },
  unknown_location: { status: 422, title: 'No stock location has this id or code' },
  invalid_csv: { status: 422, title: 'The CSV file cannot be imported' },
  import_invalid: { status: 422, title: 'Rows of the import file are invalid; nothing was imported' },
  unsupported_currency: { status: 422, title: 'The currency is not supported' },
  unknown_country: { status: 422, title: 'The country is not an ISO 3166-1 country code' },
  unknown_region: { status: 422, title: 'The region is missing or unknown for this country' },
  unknown_tax_category: { status: 422, title: 'The tax category does not exist' },
  invalid_vat_id: { status: 422, title: 'The VAT id fails its format or check-digit test' },
  tax_rate_missing: { status: 422, title: 'No tax rate applies on that date' },
  unknown_promotion: { status: 422, title: 'No promotion has this code' },
  cart_invalid: { status: 422, title: 'The cart cannot be checked out as it is' },
  purchase_limit_exceeded: { status: 422, title: 'The quantity is over the limit for this item' },
  not_sold_in_region: { status: 422, title: 'The variant has no price in this region' },
  shipping_not_available: { status: 422, title: 'The shipping option does not serve this cart' },
  unknown_payment_provider: { status: 422, title: 'The payment provider is unknown or not configured' },
  unsupported_payment_method: { status: 422, title: 'The payment provider does not take this method here' },
  invalid_webhook: { status: 400, title: 'The webhook signature or timestamp does not verify' },
  rate_limited: { status: 429, title: 'Too many requests' },
  payment_attempts_exceeded: { status: 429, title: 'Too many failed payments; wait before trying again' },
  too_many_attempts: { status: 429, title: 'Too many failed attempts; wait before trying again' },
  internal_error: { status: 500, title: 'Internal error' },
  overloaded: { status: 503, title: 'The server is busy; retry shortly' },
  payment_provider_unavailable: { status: 503, title: 'The payment provider cannot be reached; retry' },
  unavailable: { status: 503, title: 'A dependency is unavailable' },
} as const satisfies Record<string, { status: number; title: string }>

export type ProblemCode = keyof typeof problems

export interface FieldError {
  /** Where the bad value is, as `<part>.<json path>`: `body.title`, `query.limit`. */
  path: string
  message: string
}

/** An error that the API answers with as an RFC 9457 problem document. */
export class ProblemError extends Error {
  override name = 'ProblemError'
  readonly code: ProblemCode
  readonly status: number
  readonly detail: string | undefined
  readonly errors: FieldError[] | undefined
  readonly headers: Record<string, string> | undefined

  constructor(
    code: ProblemCode,
    detail?: string,
    extra: { errors?: FieldError[]; headers?: Record<string, string> } = {},
  ) {
    super(detail ?? problems[code].title)
    this.code = code
    this.status = problems[code].status
    this.detail = detail
    this.errors = extra.errors
    this.headers = extra.headers
  }
}

/** Shorthand: `throw problem('not_found', 'No product prod_123')`. */
export function problem(
  code: ProblemCode,
  detail?: string,
  extra?: { errors?: FieldError[]; headers?: Record<string, string> },
): ProblemError {
  return new ProblemError(code, detail, extra)
}

/** The problem document for a code, as the wire format has it. */
export function problemBody(code: ProblemCode, detail?: string, errors?: FieldError[]) {
  const { status, title } = problems[code]
  return {
    type: `https://shopwright.dev/problems/${code}`,
    title,
    status,
    code,
    ...(detail ? { detail } : {}),
    ...(errors?.length ? { errors } : {}),
  }
}
