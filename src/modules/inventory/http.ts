/** Helpers the inventory routes share: who acts, running a write, naming variants from the wire. */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { type Tx, withTransaction } from '../../platform/db/transaction.ts'
import { ProblemError, problem } from '../../platform/http/errors.ts'
import { runIdempotent } from '../../platform/http/idempotency.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { findVariantsById, findVariantsBySku, type VariantRef } from '../catalog/variants.ts'
import { type InventoryContext, inventoryContext } from './context.ts'

/** `<kind>:<id>` of the caller, as movements record it. */
export function actorOf(request: FastifyRequest): string {
  const p = request.principal
  return p ? `${p.kind}:${p.id}` : 'anonymous'
}

/**
 * Runs a write in one transaction (storing the response under the request's Idempotency-Key when
 * it sent one and a reply is given), then announces the changed levels to live streams.
 */
export async function runWrite<T>(
  runtime: Runtime,
  request: FastifyRequest,
  work: (trx: Tx, ctx: InventoryContext) => Promise<T>,
  reply?: FastifyReply,
): Promise<T> {
  const ctx = inventoryContext(runtime, actorOf(request))
  const { db } = runtime.database
  const result = reply
    ? await runIdempotent(db, request, reply, (trx) => work(trx, ctx))
    : await withTransaction(db, (trx) => work(trx, ctx))
  await ctx.publish()
  return result
}

/** Service errors name paths inside the input (`lines.0.quantity`); on the wire they are in the body. */
export function inBody<T>(promise: Promise<T>): Promise<T> {
  return promise.catch((error: unknown) => {
    if (error instanceof ProblemError && error.errors) {
      throw problem(error.code, error.detail, {
        errors: error.errors.map((e) => (e.path.startsWith('body') ? e : { ...e, path: `body.${e.path}` })),
      })
    }
    throw error
  })
}

/** A variant by its id (`var_…`) or else by SKU; not_found when neither matches. */
export async function variantByRef(runtime: Runtime, ref: string): Promise<VariantRef> {
  const { db } = runtime.database
  const found = /^var_[0-9a-z]{26}$/.test(ref)
    ? ((await findVariantsById(db, [ref]))[0] ?? (await findVariantsBySku(db, [ref]))[0])
    : (await findVariantsBySku(db, [ref]))[0]
  if (!found) throw variantNotFound(ref)
  return found
}

/** not_found for a variant a path names by id or SKU (`ref`). */
export function variantNotFound(ref: string): ProblemError {
  return problem('not_found', `No variant has the id or SKU ${ref}`)
}
