/**
 * The seam where the promotions engine plugs in. A cart asks it whether a code exists and what
 * each code takes off; the totals then spread the discounts over lines before tax, so discounts
 * always reduce the taxable amount. Until the promotions module lands, no code exists: adding one
 * answers `unknown_promotion` rather than pretending to apply it.
 */
import type { Queryable } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'
import type { CartLine } from './tables.ts'

export interface CartDiscounts {
  /** Per line id, in minor units on the cart's price basis. */
  lines: Map<string, number>
  /** On the whole order, spread over the lines by the tax engine. */
  order: number
  shipping: number
}

export interface PromotionEngine {
  /** Throws unknown_promotion (or a reason the code cannot be used) for a code that cannot apply. */
  validateCode(
    db: Queryable,
    code: string,
    cart: { currency_code: string; customer_id: string | null },
  ): Promise<void>
  discountsFor(codes: readonly string[], lines: readonly CartLine[], currency: string): CartDiscounts
}

/** No promotions exist yet: every code is unknown and nothing is discounted. */
export const noPromotions: PromotionEngine = {
  async validateCode(_db, code) {
    throw problem('unknown_promotion', `No promotion has the code ${code}`, {
      errors: [{ path: 'body.code', message: 'is not a known promotion code' }],
    })
  },
  discountsFor() {
    return { lines: new Map(), order: 0, shipping: 0 }
  },
}
