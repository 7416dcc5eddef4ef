/**
 * Currencies and their minor units (ISO 4217), for every module. Money is always an integer
 * amount of the minor unit plus the code; this table is what says that JPY has no minor unit and
 * KWD has three, so every module validates, rounds and formats the same way. A code it does not
 * know is refused rather than guessed at: a wrong exponent would misstate every amount by a factor
 * of ten or more.
 */

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

const MINOR_UNITS = new Map<string, number>([
  ...TWO_DECIMALS.split(' ').map((c) => [c, 2] as const),
  ...ZERO_DECIMALS.split(' ').map((c) => [c, 0] as const),
  ...THREE_DECIMALS.split(' ').map((c) => [c, 3] as const),
])

/** Every supported currency code, sorted. */
export const CURRENCIES: readonly string[] = [...MINOR_UNITS.keys()].sort()

/** True for a currency the platform knows. */
export function isCurrency(code: string): boolean {
  return MINOR_UNITS.has(code)
}

/** Digits after the decimal point in the currency's minor unit; throws for an unknown code. */
export function minorUnits(code: string): number {
  const digits = MINOR_UNITS.get(code)
  if (digits === undefined) throw new RangeError(`Unknown currency ${code}`)
  return digits
}

/** Minor units as a decimal string for people to read: 1234 with 2 decimals → "12.34", 500 with 0 → "500". */
export function formatMinor(amount: number, decimals: number): string {
  if (decimals === 0) return String(amount)
  const sign = amount < 0 ? '-' : ''
  const digits = String(Math.abs(amount)).padStart(decimals + 1, '0')
  return `${sign}${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`
}

/** A money amount on the wire: integer minor units and an ISO 4217 code. */
export interface Money {
  amount: number
  currency: string
}
