/** Which thrown errors keep the status they carry: only the HTTP layer's speak for the client. */
import Stripe from 'stripe'
import { describe, expect, it } from 'vitest'
import { toProblem } from './problem-handler.ts'

describe('toProblem', () => {
  it("keeps a 4xx the HTTP layer gives a client's mistake", () => {
    const tooMany = Object.assign(new Error('Too many fields'), {
      code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH',
      statusCode: 400,
    })
    expect(toProblem(tooMany)).toMatchObject({ status: 400, code: 'validation_failed' })
  })

  it("never passes on a library's 4xx as the client's: the store's payment key refused is ours", () => {
    const refused = new Stripe.errors.StripeAuthenticationError({
      type: 'invalid_request_error',
      message: 'Invalid API Key provided: sk_live_****',
    })
    expect(refused.statusCode ?? 401).toBe(401)
    expect(toProblem(Object.assign(refused, { statusCode: 401 }))).toMatchObject({
      status: 500,
      code: 'internal_error',
    })
    const ours = Object.assign(new Error('Unknown parameter: foo'), { statusCode: 400 })
    expect(toProblem(ours)).toMatchObject({ status: 500, code: 'internal_error' })
  })
})
