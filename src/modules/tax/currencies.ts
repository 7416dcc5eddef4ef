/**
 * The tax engine's view of the platform's currency table (src/platform/money.ts): an unknown code
 * is the caller's mistake, answered 422 `unsupported_currency` at the field that named it.
 */
import { problem } from '../../platform/http/errors.ts'
import { isCurrency, minorUnits } from '../../platform/money.ts'

export { formatMinor } from '../../platform/money.ts'

/** The number of decimals of the currency's minor unit; `unsupported_currency` for unknown codes. */
export function currencyDecimals(code: string, path = 'body.currency'): number {
  if (!isCurrency(code)) {
    throw problem('unsupported_currency', `${code} is not an ISO 4217 currency this engine knows`, {
      errors: [{ path, message: 'is not a known ISO 4217 currency code' }],
    })
  }
  return minorUnits(code)
}
