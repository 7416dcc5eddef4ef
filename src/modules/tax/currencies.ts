/**
 * ISO 4217 currencies and their minor units. Amounts are integers in the minor unit, so a currency
 * the engine does not know is refused rather than guessed at: a wrong exponent would misstate
 * every amount by a factor of ten or more.
 */
import { problem } from '../../platform/http/errors.ts'

// Active ISO 4217 codes with two decimals (the common case); exceptions are listed below.
const TWO_DECIMALS =
  'AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD ' +
  'CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD ' +
  'HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD ' +
  'MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON ' +
  'RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD ' +
  'TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWG'

const ZERO_DECIMALS = 'BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF'
const THREE_DECIMALS = 'BHD IQD JOD KWD LYD OMR TND'

const DECIMALS = new Map<string, number>([
  ...TWO_DECIMALS.split(' ').map((c) => [c, 2] as const),
  ...ZERO_DECIMALS.split(' ').map((c) => [c, 0] as const),
  ...THREE_DECIMALS.split(' ').map((c) => [c, 3] as const),
])

/** True for a currency the engine knows. */
export function isKnownCurrency(code: string): boolean {
  return DECIMALS.has(code)
}

/** The number of decimals of the currency's minor unit; `unsupported_currency` for unknown codes. */
export function currencyDecimals(code: string, path = 'body.currency'): number {
  const decimals = DECIMALS.get(code)
  if (decimals === undefined) {
    throw problem('unsupported_currency', `${code} is not an ISO 4217 currency this engine knows`, {
      errors: [{ path, message: 'is not a known ISO 4217 currency code' }],
    })
  }
  return decimals
}

/** Minor units as a decimal string for people to read: 1234 EUR → "12.34", 500 JPY → "500". */
export function formatMinor(amount: number, decimals: number): string {
  if (decimals === 0) return String(amount)
  const sign = amount < 0 ? '-' : ''
  const digits = String(Math.abs(amount)).padStart(decimals + 1, '0')
  return `${sign}${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`
}
