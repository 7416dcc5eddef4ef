/**
 * Turning what a caller names (a SKU or a variant id) into catalog variants, through the catalog's
 * lookup functions. Unknown ones are refused all together, each at its own path.
 */

import type { Queryable } from '../../platform/db/transaction.ts'
import { type FieldError, type ProblemError, problem } from '../../platform/http/errors.ts'
import { findVariantsById, findVariantsBySku, type VariantRef } from '../catalog/variants.ts'

/** A variant named by exactly one of its SKU or its id. */
export interface VariantInput {
  sku?: string | undefined
  variant_id?: string | undefined
}

/**
 * Resolves each input (at `paths[i]`, such as `body.lines.0`) to its variant, in order. Throws
 * `validation_failed` when an input names neither or both, `unknown_variant` for unknown ones.
 */
export async function resolveVariants(
  db: Queryable,
  inputs: VariantInput[],
  paths: string[],
): Promise<VariantRef[]> {
  const invalid: FieldError[] = []
  inputs.forEach((input, i) => {
    if ((input.sku === undefined) === (input.variant_id === undefined)) {
      invalid.push({ path: paths[i]!, message: 'name the variant by exactly one of sku or variant_id' })
    }
  })
  if (invalid.length)
    throw problem('validation_failed', 'Each variant needs a sku or a variant_id', { errors: invalid })
  const skus = inputs.flatMap((i) => (i.sku !== undefined ? [i.sku] : []))
  const ids = inputs.flatMap((i) => (i.variant_id !== undefined ? [i.variant_id] : []))
  const [bySku, byId] = await Promise.all([
    findVariantsBySku(db, [...new Set(skus)]),
    findVariantsById(db, [...new Set(ids)]),
  ])
  const skuMap = new Map(bySku.map((v) => [v.sku, v]))
  const idMap = new Map(byId.map((v) => [v.id, v]))
  const unknown: string[] = []
  const found = inputs.map((input, i) => {
    const variant = input.sku !== undefined ? skuMap.get(input.sku) : idMap.get(input.variant_id!)
    if (!variant) unknown.push(variantPath(input, paths[i]!))
    return variant
  })
  if (unknown.length) throw unknownVariants(unknown)
  return found as VariantRef[]
}

/** Where an input (at `path`, such as `body.lines.0`) names its variant: `body.lines.0.sku`. */
export function variantPath(input: VariantInput, path: string): string {
  return `${path}.${input.sku !== undefined ? 'sku' : 'variant_id'}`
}

/**
 * `unknown_variant` naming the fields (variantPath) whose variants do not exist. A write also
 * answers with it for a variant deleted after the route resolved it and before the write locked
 * it: the answer it would have had had the delete come first.
 */
export function unknownVariants(paths: string[]): ProblemError {
  const unique = [...new Set(paths)]
  return problem('unknown_variant', `${unique.length} of the variants named do not exist`, {
    errors: unique.map((path) => ({
      path,
      message: `no variant has this ${path.endsWith('.sku') ? 'sku' : 'variant_id'}`,
    })),
  })
}
