/** Which thrown errors keep the status they carry: only the HTTP layer's speak for the client. */
import { PGlite } from '@electric-sql/pglite'
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
    // Node's error from a request body cut short, given its 400 by Fastify as it reads the body.
    const cut = Object.assign(new Error('Premature close'), {
      code: 'ERR_STREAM_PREMATURE_CLOSE',
      statusCode: 400,
    })
    expect(toProblem(cut)).toMatchObject({ status: 400, code: 'validation_failed' })
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

  it('answers a write a foreign key refused, because a concurrent request changed its row, with 409', async () => {
    const db = new PGlite()
    try {
      await db.exec(`
        create table regions (id text primary key);
        create table carts (id text primary key, region_id text not null references regions (id));
        insert into regions values ('reg_1');
        insert into carts values ('cart_1', 'reg_1');`)
      // What a write meets when another request's delete commits between its checks and itself.
      const refused = async (statement: string) => {
        try {
          await db.exec(statement)
        } catch (error) {
          return error
        }
        throw new Error(`${statement} was not refused`)
      }
      for (const statement of [
        "insert into carts values ('cart_2', 'reg_gone')",
        "delete from regions where id = 'reg_1'",
      ]) {
        expect(toProblem(await refused(statement))).toMatchObject({ status: 409, code: 'conflict' })
      }
    } finally {
      await db.close()
    }
  })
})
