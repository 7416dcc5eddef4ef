/**
 * CSV import of cycle counts: `location,sku,counted` (or `variant_id` instead of `sku`; a location
 * by id or code), one level per row. The whole file is checked first and any bad row refuses the
 * whole import, each at `body.rows.<n>.<column>` (n counts data rows from 1), so a half-applied
 * count never happens.
 */
import { parse } from 'csv-parse/sync'
import type { Tx } from '../../platform/db/transaction.ts'
import { type FieldError, ProblemError, problem } from '../../platform/http/errors.ts'
import { findVariantsById, findVariantsBySku } from '../catalog/variants.ts'
import type { InventoryContext } from './context.ts'
import { locationIdsByRef } from './locations.ts'
import { countStock, type MovementResult } from './stock.ts'

export const MAX_CSV_ROWS = 10_000
const INTEGER = /^\d{1,9}$/

/** Parses and applies a counts CSV in the caller's transaction. */
export async function importCounts(
  trx: Tx,
  ctx: InventoryContext,
  csv: string,
  reference: string | null,
): Promise<MovementResult & { rows: number }> {
  let records: Record<string, string>[]
  try {
    records = parse(csv, {
      columns: (header: string[]) => header.map((h) => h.trim().toLowerCase()),
      skip_empty_lines: true,
      trim: true,
      bom: true,
    })
  } catch (error) {
    throw problem('invalid_csv', `The CSV cannot be read: ${(error as Error).message}`, {
      errors: [{ path: 'body', message: 'is not valid CSV with a header row' }],
    })
  }
  const first = records[0]
  if (
    !first ||
    !('location' in first) ||
    !('counted' in first) ||
    !('sku' in first || 'variant_id' in first)
  ) {
    throw problem('invalid_csv', 'The header must name location, sku (or variant_id) and counted', {
      errors: [{ path: 'body', message: 'needs the columns location, sku or variant_id, counted' }],
    })
  }
  if (records.length > MAX_CSV_ROWS) {
    throw problem('invalid_csv', `At most ${MAX_CSV_ROWS} rows per import`, {
      errors: [{ path: 'body', message: `has ${records.length} rows` }],
    })
  }
  const locations = await locationIdsByRef(
    trx,
    records.map((r) => r.location ?? ''),
  )
  const bySku = new Map(
    (await findVariantsBySku(trx, [...new Set(records.flatMap((r) => (r.sku ? [r.sku] : [])))])).map((v) => [
      v.sku,
      v.id,
    ]),
  )
  const byId = new Set(
    (
      await findVariantsById(trx, [
        ...new Set(records.flatMap((r) => (!r.sku && r.variant_id ? [r.variant_id] : []))),
      ])
    ).map((v) => v.id),
  )
  const errors: FieldError[] = []
  const counts = records.map((record, i) => {
    const path = `body.rows.${i + 1}`
    const locationId = locations.get(record.location ?? '')
    if (!locationId)
      errors.push({ path: `${path}.location`, message: 'no stock location has this id or code' })
    let variantId: string | undefined
    if (record.sku) {
      variantId = bySku.get(record.sku)
      if (!variantId) errors.push({ path: `${path}.sku`, message: 'no variant has this sku' })
    } else if (record.variant_id && byId.has(record.variant_id)) variantId = record.variant_id
    else
      errors.push({
        path: `${path}.${'sku' in record ? 'sku' : 'variant_id'}`,
        message: 'no variant has this id',
      })
    const counted = record.counted ?? ''
    if (!INTEGER.test(counted))
      errors.push({ path: `${path}.counted`, message: 'must be a whole number from 0' })
    return {
      variant_id: variantId ?? '',
      location_id: locationId ?? '',
      counted: Number(counted),
      path,
      variant_path: `${path}.${record.sku ? 'sku' : 'variant_id'}`,
    }
  })
  if (errors.length) {
    throw problem('invalid_csv', `${errors.length} problems in the file; nothing was imported`, {
      errors: errors.slice(0, 100),
    })
  }
  const result = await countStock(trx, ctx, { counts, reference }).catch((error: unknown) => {
    // A variant or location deleted after the lookups above and before countStock locked it: the
    // file gets the answer it has when the delete comes first.
    if (
      error instanceof ProblemError &&
      (error.code === 'unknown_variant' || error.code === 'unknown_location')
    ) {
      const rows = (error.errors ?? []).map((e) => ({
        ...e,
        path: e.path.replace(/\.location_id$/, '.location'),
      }))
      throw problem('invalid_csv', `${rows.length} problems in the file; nothing was imported`, {
        errors: rows,
      })
    }
    throw error
  })
  return { ...result, rows: counts.length }
}
