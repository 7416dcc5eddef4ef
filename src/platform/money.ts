/**
 * Currencies the platform accepts and their minor units (ISO 4217). Money is always an integer
 * amount of the minor unit plus the code; this table is what says that JPY has no minor unit and
 * KWD has three, so every module rounds and formats the same way.
 */

const MINOR_UNITS: Readonly<Record<string, number>> = {
  AED: 2,
  ARS: 2,
  AUD: 2,
  BGN: 2,
  BHD: 3,
  BRL: 2,
  CAD: 2,
  CHF: 2,
  CLP: 0,
  CNY: 2,
  COP: 2,
  CZK: 2,
  DKK: 2,
  EGP: 2,
  EUR: 2,
  GBP: 2,
  HKD: 2,
  HUF: 2,
  IDR: 2,
  ILS: 2,
  INR: 2,
  ISK: 0,
  JOD: 3,
  JPY: 0,
  KRW: 0,
  KWD: 3,
  MAD: 2,
  MXN: 2,
  MYR: 2,
  NOK: 2,
  NZD: 2,
  OMR: 3,
  PHP: 2,
  PLN: 2,
  QAR: 2,
  RON: 2,
  RSD: 2,
  SAR: 2,
  SEK: 2,
  SGD: 2,
  THB: 2,
  TND: 3,
  TRY: 2,
  TWD: 2,
  UAH: 2,
  USD: 2,
  VND: 0,
  ZAR: 2,
}

/** Every supported currency code, sorted. */
export const CURRENCIES: readonly string[] = Object.keys(MINOR_UNITS).sort()

/** True for a currency the platform knows. */
export function isCurrency(code: string): boolean {
  return Object.hasOwn(MINOR_UNITS, code)
}

/** Digits after the decimal point in the currency's minor unit; throws for an unknown code. */
export function minorUnits(code: string): number {
  const digits = MINOR_UNITS[code]
  if (digits === undefined) throw new RangeError(`Unknown currency ${code}`)
  return digits
}

/** A money amount on the wire: integer minor units and an ISO 4217 code. */
export interface Money {
  amount: number
  currency: string
}
