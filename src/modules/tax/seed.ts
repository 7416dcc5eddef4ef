/** Demo tax settings: the demo store ships from Germany, so a fresh install can calculate tax. */
import { withTransaction } from '../../platform/db/transaction.ts'
import type { Runtime } from '../../platform/runtime.ts'
import { getTaxSettings, updateTaxSettings } from './service.ts'

/** Sets the store's origin to Germany unless an origin is set; true when it changed anything. */
export async function seedDemoTaxSettings(runtime: Runtime): Promise<boolean> {
  return withTransaction(runtime.database.db, async (trx) => {
    if ((await getTaxSettings(trx)).origin_country) return false
    await updateTaxSettings(trx, { origin_country: 'DE' })
    return true
  })
}
