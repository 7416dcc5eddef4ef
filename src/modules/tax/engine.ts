/**
 * The built-in tax engine: pure and synchronous. Given the tax data, the store's context and a
 * cart, it returns tax lines per cart line and per rate, with totals that always add up: every
 * amount is an integer in the currency's minor unit, every share is kept exact until it is rounded
 * once, half-up, per line or per invoice as the jurisdiction says.
 */
import { problem } from '../../platform/http/errors.ts'
import { currencyDecimals, formatMinor } from './currencies.ts'
import type { RateKind } from './data/types.ts'
import {
  type Customer,
  type CustomerFacts,
  checkCustomer,
  placeOfSupply,
  type StoreTaxContext,
  type Supply,
} from './place-of-supply.ts'
import {
  allocate,
  allocateByWeight,
  allocateSafe,
  ppmToPercent,
  roundHalfUp,
  roundHalfUpSafe,
  type Share,
  sumShares,
} from './rounding.ts'
import type { Jurisdiction, Rate, TaxData } from './tax-data.ts'

export interface TaxLineInput {
  /** The caller's reference for the line (a cart line id); defaults to its position. */
  id?: string
  /** Price of one unit in minor units, tax included when prices_include_tax. */
  unit_amount: number
  quantity: number
  tax_category: string
  /** Discount on the whole line, in minor units (on the same basis as the price). */
  discount_amount?: number
}

export interface TaxInput {
  /** ISO 4217. */
  currency: string
  prices_include_tax: boolean
  /** The date of supply (tax point), YYYY-MM-DD in the store's calendar: it picks the rates. */
  date_of_supply: string
  customer: Customer
  lines: TaxLineInput[]
  shipping?: { amount: number; tax_category?: string; discount_amount?: number }
  /** A discount on the whole order, spread over the lines in proportion to their amounts. */
  discount_amount?: number
}

export type Treatment =
  | 'taxable'
  | 'zero_rated'
  | 'exempt'
  | 'reverse_charge'
  | 'export'
  | 'no_nexus'
  | 'no_tax'

/** One tax on one line (or, in the summary, on all lines at that rate). */
export interface TaxLine {
  jurisdiction: string
  jurisdiction_name: string
  tax_name: string
  rate_kind: RateKind
  /** Percent as a decimal string: "19", "9.975". */
  rate: string
  rate_ppm: number
  label: string
  treatment: Treatment
  taxable_amount: number
  tax_amount: number
  /** ZIP or postal prefix of a local rate; absent for the state or national rate. */
  postal_prefix?: string
  rate_id?: string
}

export interface LineResult {
  id: string
  kind: 'item' | 'shipping'
  tax_category: string
  quantity: number
  /** Before discounts. */
  amount: number
  discount_amount: number
  /** After discounts, without tax. */
  net_amount: number
  tax_amount: number
  /** After discounts, with tax. */
  gross_amount: number
  taxes: TaxLine[]
}

export interface TaxSummaryLine extends TaxLine {
  rounding: 'line' | 'invoice'
}

export interface SupplyView {
  treatment: Supply['treatment']
  country: string
  reason: string
}

export interface TaxResult {
  provider: string
  currency: string
  prices_include_tax: boolean
  date_of_supply: string
  place_of_supply: { goods?: SupplyView; digital_services?: SupplyView }
  lines: LineResult[]
  taxes: TaxSummaryLine[]
  totals: { amount: number; discount: number; net: number; tax: number; gross: number }
  notes: string[]
  /** Step by step, for people: present when asked for (the preview). */
  working?: string[]
}

export interface CalculateOptions {
  /** Write out the working (costs time; the preview asks for it, checkout does not). */
  explain?: boolean
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/

interface Component {
  jurisdiction: Jurisdiction
  kind: RateKind
  rate_ppm: number
  /** rate_ppm as a percent string, worked out once per calculation. */
  rate: string
  /** Components with the same key are rounded together (one rate of one jurisdiction). */
  key: string
  ppm: bigint
  label: string
  treatment: Treatment
  postal_prefix: string
  rate_id: string | undefined
}

type ComponentBase = Omit<Component, 'rate' | 'key' | 'ppm'>

function finish(c: ComponentBase): Component {
  return {
    ...c,
    rate: ppmToPercent(c.rate_ppm),
    key: `${c.jurisdiction.code}|${c.kind}|${c.rate_ppm}|${c.treatment}|${c.postal_prefix}`,
    ppm: BigInt(c.rate_ppm),
  }
}

interface Entry {
  line: number
  component: Component
  /** The exact tax is num / den minor units; num is base × rate in ppm. */
  num: number
  den: number
  tax: number
}

/** The entry's exact share as bigints, for sums that could pass 2^53. */
function shareOf(e: Entry, base: number): Share {
  return { num: BigInt(base) * e.component.ppm, den: BigInt(e.den) }
}

function invalid(path: string, message: string): never {
  throw problem('validation_failed', `${path} ${message}`, { errors: [{ path, message }] })
}

function checkDate(date: string): void {
  const m = DATE.exec(date)
  const d = new Date(0)
  // setUTCFullYear, since Date.UTC reads the years 0 to 99 as 1900 to 1999.
  if (m) d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]))
  if (!m || d.toISOString().slice(0, 10) !== date) invalid('body.date_of_supply', 'must be a date YYYY-MM-DD')
}

function checkAmount(value: number, path: string): void {
  if (!Number.isSafeInteger(value) || value < 0)
    invalid(path, 'must be a non-negative integer in minor units')
}

function rateOn(
  data: TaxData,
  code: string,
  kind: RateKind,
  date: string,
  postal?: string,
): Rate | undefined {
  for (const rate of data.rates.get(code) ?? []) {
    if (rate.kind !== kind || rate.valid_from > date || (rate.valid_to !== null && rate.valid_to <= date))
      continue
    if (rate.postal_prefix === '' ? postal === undefined : postal?.startsWith(rate.postal_prefix)) return rate
  }
  return undefined
}

/** Where a jurisdiction's data says nothing of a kind, the generic categories fall back upwards. */
const FALLBACK: Partial<Record<RateKind, RateKind>> = {
  super_reduced: 'reduced',
  second_reduced: 'reduced',
  parking: 'standard',
  reduced: 'standard',
}

function kindFor(data: TaxData, j: Jurisdiction, category: string): { kind: RateKind; explicit: boolean } {
  const own = data.rules.get(j.code)?.get(category)
  if (own) return { kind: own, explicit: true }
  if (j.subdivision) {
    const national = data.rules.get(j.country)?.get(category)
    if (national) return { kind: national, explicit: true }
  }
  return { kind: data.categories.get(category)!, explicit: false }
}

/** The taxes one category bears under one supply: a component per jurisdiction (plus local rates). */
function componentsFor(
  data: TaxData,
  supply: Supply,
  category: string,
  date: string,
  postal?: string,
): Component[] {
  const first = supply.jurisdictions[0]
  if (supply.treatment !== 'taxable' || !first) {
    const j = data.jurisdictions.get(supply.attributed_to) ?? data.jurisdictions.get(supply.country)
    const name = j?.name ?? supply.country
    const label = {
      reverse_charge: 'Reverse charge',
      export: 'Zero-rated export',
      no_nexus: `No sales tax: no nexus in ${name}`,
      no_tax: `No sales tax in ${name}`,
    }[supply.treatment as 'reverse_charge' | 'export' | 'no_nexus' | 'no_tax']
    return [
      finish({
        jurisdiction: j ?? { ...PLACEHOLDER, code: supply.country, country: supply.country, name },
        kind: 'zero',
        rate_ppm: 0,
        label,
        treatment: supply.treatment as Treatment,
        postal_prefix: '',
        rate_id: undefined,
      }),
    ]
  }
  const out: ComponentBase[] = []
  for (const j of supply.jurisdictions) {
    let { kind, explicit } = kindFor(data, j, category)
    if (kind === 'zero' || kind === 'exempt') {
      out.push({
        jurisdiction: j,
        kind,
        rate_ppm: 0,
        label: kind === 'zero' ? `${j.tax_name} 0% (zero-rated)` : `Exempt from ${j.tax_name}`,
        treatment: kind === 'zero' ? 'zero_rated' : 'exempt',
        postal_prefix: '',
        rate_id: undefined,
      })
      continue
    }
    let rate = rateOn(data, j.code, kind, date)
    while (!rate && !explicit && FALLBACK[kind]) {
      kind = FALLBACK[kind]!
      rate = rateOn(data, j.code, kind, date)
    }
    if (!rate) {
      throw problem('tax_rate_missing', `${j.name} (${j.code}) has no ${kind} rate on ${date}`, {
        errors: [
          { path: 'body.date_of_supply', message: `no ${kind} rate of ${j.code} applies on this date` },
        ],
      })
    }
    out.push(componentOf(j, rate))
    if (postal !== undefined) {
      const local = rateOn(data, j.code, kind, date, postal)
      if (local) out.push(componentOf(j, local))
    }
  }
  return out.map(finish)
}

const PLACEHOLDER: Jurisdiction = {
  code: '',
  country: '',
  subdivision: null,
  name: '',
  tax_name: 'Tax',
  tax_area: '',
  rounding: 'line',
  replaces_parent: false,
  requires_registration: false,
  levies_tax: false,
  nexus_threshold_usd: null,
  source_name: '',
  source_url: '',
}

function componentOf(j: Jurisdiction, rate: Rate): ComponentBase {
  return {
    jurisdiction: j,
    kind: rate.kind,
    rate_ppm: rate.rate_ppm,
    label: rate.label,
    treatment: 'taxable',
    postal_prefix: rate.postal_prefix,
    rate_id: rate.id,
  }
}

function taxLine(c: Component, taxable: number, tax: number): TaxLine {
  return {
    jurisdiction: c.jurisdiction.code,
    jurisdiction_name: c.jurisdiction.name,
    tax_name: c.jurisdiction.tax_name,
    rate_kind: c.kind,
    rate: c.rate,
    rate_ppm: c.rate_ppm,
    label: c.label,
    treatment: c.treatment,
    taxable_amount: taxable,
    tax_amount: tax,
    ...(c.postal_prefix ? { postal_prefix: c.postal_prefix } : {}),
    ...(c.rate_id ? { rate_id: c.rate_id } : {}),
  }
}

function view(s: Supply): SupplyView {
  return { treatment: s.treatment, country: s.country, reason: s.reason }
}

interface Priced {
  id: string
  kind: 'item' | 'shipping'
  category: string
  quantity: number
  amount: number
  discount: number
  base: number
  path: string
}

/** Validates the lines and works out each one's amount after its own and the order's discounts. */
function priceLines(data: TaxData, input: TaxInput): Priced[] {
  const lines: Priced[] = input.lines.map((line, i) => {
    const path = `body.lines.${i}`
    checkAmount(line.unit_amount, `${path}.unit_amount`)
    if (!Number.isSafeInteger(line.quantity) || line.quantity < 1)
      invalid(`${path}.quantity`, 'must be a positive integer')
    const amount = line.unit_amount * line.quantity
    if (!Number.isSafeInteger(amount)) invalid(`${path}.unit_amount`, 'times quantity is too large')
    const discount = line.discount_amount ?? 0
    checkAmount(discount, `${path}.discount_amount`)
    if (discount > amount) invalid(`${path}.discount_amount`, 'is larger than the line amount')
    return {
      id: line.id ?? String(i + 1),
      kind: 'item',
      category: line.tax_category,
      quantity: line.quantity,
      amount,
      discount,
      base: amount - discount,
      path,
    }
  })
  const orderDiscount = input.discount_amount ?? 0
  checkAmount(orderDiscount, 'body.discount_amount')
  if (orderDiscount > 0) {
    const bases = lines.map((l) => l.base)
    if (orderDiscount > bases.reduce((a, b) => a + b, 0))
      invalid('body.discount_amount', 'is larger than the lines it discounts')
    const parts = allocateByWeight(orderDiscount, bases)
    lines.forEach((l, i) => {
      l.discount += parts[i]!
      l.base -= parts[i]!
    })
  }
  if (input.shipping) {
    const s = input.shipping
    checkAmount(s.amount, 'body.shipping.amount')
    const discount = s.discount_amount ?? 0
    checkAmount(discount, 'body.shipping.discount_amount')
    if (discount > s.amount) invalid('body.shipping.discount_amount', 'is larger than the shipping amount')
    lines.push({
      id: 'shipping',
      kind: 'shipping',
      category: s.tax_category ?? 'shipping',
      quantity: 1,
      amount: s.amount,
      discount,
      base: s.amount - discount,
      path: 'body.shipping',
    })
  }
  for (const line of lines) {
    if (!data.categories.has(line.category)) {
      throw problem('unknown_tax_category', `No tax category ${line.category}`, {
        errors: [{ path: `${line.path}.tax_category`, message: 'is not a known tax category' }],
      })
    }
  }
  return lines
}

/** Calculates tax for a cart or order. Throws a ProblemError (4xx) for input it cannot tax. */
export function calculateTax(
  data: TaxData,
  store: StoreTaxContext,
  input: TaxInput,
  options: CalculateOptions = {},
): TaxResult {
  const decimals = currencyDecimals(input.currency)
  checkDate(input.date_of_supply)
  const lines = priceLines(data, input)
  const customer: CustomerFacts = checkCustomer(data, input.customer)
  const date = input.date_of_supply
  const inclusive = input.prices_include_tax
  const money = (n: number | bigint) => `${formatMinor(Number(n), decimals)} ${input.currency}`

  const cartEur = input.currency === 'EUR' ? lines.reduce((a, l) => a + l.base, 0) : null
  let goods: Supply | undefined
  let digital: Supply | undefined
  const components = new Map<string, Component[]>()
  const working: string[] | undefined = options.explain ? [] : undefined

  // Every line's exact share of every tax it bears, grouped by rate for rounding.
  const entries: Entry[][] = lines.map(() => [])
  const groups = new Map<string, Entry[]>()
  lines.forEach((line, i) => {
    const isDigital = line.category === 'digital_services'
    if (isDigital && !digital) digital = placeOfSupply(data, store, customer, true, cartEur)
    if (!isDigital && !goods) goods = placeOfSupply(data, store, customer, false, cartEur)
    const supply = (isDigital ? digital : goods)!
    const key = `${isDigital ? 'd' : 'g'}|${line.category}`
    let comps = components.get(key)
    if (!comps) {
      comps = componentsFor(data, supply, line.category, date, customer.postal_code)
      components.set(key, comps)
    }
    let combined = 0
    for (const c of comps) combined += c.rate_ppm
    const den = inclusive ? 1_000_000 + combined : 1_000_000
    for (const component of comps) {
      const entry: Entry = { line: i, component, num: line.base * component.rate_ppm, den, tax: 0 }
      entries[i]!.push(entry)
      const group = groups.get(component.key)
      if (group) group.push(entry)
      else groups.set(component.key, [entry])
    }
  })

  // Round: per line, each share on its own; per invoice, the group's exact sum once, then shared
  // back over its lines by largest remainder so that the lines add up to the rounded total. Plain
  // numbers are exact while every product stays below 2^53; past that the same sums run in bigint.
  const summary: TaxSummaryLine[] = []
  for (const group of groups.values()) {
    const c = group[0]!.component
    if (c.rate_ppm === 0) continue
    const den = group[0]!.den
    let sum = 0
    let fast = true
    for (const e of group) {
      sum += e.num
      fast &&= e.den === den && Number.isSafeInteger(e.num)
    }
    fast &&= Number.isSafeInteger(sum)
    if (c.jurisdiction.rounding === 'line') {
      for (const e of group) {
        e.tax = Number.isSafeInteger(e.num)
          ? roundHalfUpSafe(e.num, e.den)
          : Number(roundHalfUp(BigInt(lines[e.line]!.base) * c.ppm, BigInt(e.den)))
      }
    } else if (fast) {
      const parts = allocateSafe(
        roundHalfUpSafe(sum, den),
        group.map((e) => e.num),
        den,
      )
      group.forEach((e, k) => {
        e.tax = parts[k]!
      })
    } else {
      const shares = group.map((e) => shareOf(e, lines[e.line]!.base))
      const total = sumShares(shares)
      const parts = allocate(roundHalfUp(total.num, total.den), shares)
      group.forEach((e, k) => {
        e.tax = Number(parts[k]!)
      })
    }
  }

  const results: LineResult[] = lines.map((line, i) => {
    let tax = 0
    for (const e of entries[i]!) tax += e.tax
    const net = inclusive ? line.base - tax : line.base
    const taxes = entries[i]!.map((e) => taxLine(e.component, net, e.tax))
    if (working) {
      const basis = inclusive ? 'incl.' : 'excl.'
      const steps = entries[i]!.map((e) =>
        e.component.rate_ppm === 0
          ? `${e.component.label}: 0`
          : `${e.component.label}: ${money(line.base)} × ${ppmToPercent(e.component.rate_ppm)}/${ppmToPercent(e.den)} = ${exact(shareOf(e, line.base), decimals)} → ${money(e.tax)} (${e.component.jurisdiction.rounding === 'line' ? 'rounded half-up on the line' : 'share of the per-invoice rounding'})`,
      )
      working.push(
        `Line ${line.id} (${line.category}): ${line.quantity} × ${money(line.amount / line.quantity)}${line.discount ? ` − ${money(line.discount)} discount` : ''} = ${money(line.base)} ${basis}; ${steps.join('; ')}`,
      )
    }
    return {
      id: line.id,
      kind: line.kind,
      tax_category: line.category,
      quantity: line.quantity,
      amount: line.amount,
      discount_amount: line.discount,
      net_amount: net,
      tax_amount: tax,
      gross_amount: net + tax,
      taxes,
    }
  })

  for (const group of groups.values()) {
    const c = group[0]!.component
    let taxable = 0
    let tax = 0
    for (const e of group) {
      taxable += results[e.line]!.net_amount
      tax += e.tax
    }
    summary.push({ ...taxLine(c, taxable, tax), rounding: c.jurisdiction.rounding })
    if (working && c.rate_ppm > 0) {
      const exactSum = sumShares(group.map((e) => shareOf(e, lines[e.line]!.base)))
      working.push(
        `${c.label} (${c.jurisdiction.code}): taxable ${money(taxable)}, tax ${money(tax)} — exact ${exact(exactSum, decimals)}, rounded half-up ${c.jurisdiction.rounding === 'line' ? 'per line' : 'once per invoice'}`,
      )
    }
  }

  const totals = { amount: 0, discount: 0, net: 0, tax: 0, gross: 0 }
  for (const r of results) {
    totals.amount += r.amount
    totals.discount += r.discount_amount
    totals.net += r.net_amount
    totals.tax += r.tax_amount
    totals.gross += r.gross_amount
  }

  const notes = new Set<string>()
  const placeOf: TaxResult['place_of_supply'] = {}
  if (goods) {
    placeOf.goods = view(goods)
    for (const n of goods.notes) notes.add(n)
  }
  if (digital) {
    placeOf.digital_services = view(digital)
    for (const n of digital.notes) notes.add(n)
  }
  if (working) {
    const supplies = [goods, digital].filter((s): s is Supply => s !== undefined)
    working.unshift(...supplies.flatMap((s) => [s.reason, ...s.skipped]))
    working.push(`Total: net ${money(totals.net)} + tax ${money(totals.tax)} = ${money(totals.gross)}`)
  }
  return {
    provider: 'builtin',
    currency: input.currency,
    prices_include_tax: inclusive,
    date_of_supply: date,
    place_of_supply: placeOf,
    lines: results,
    taxes: summary,
    totals,
    notes: [...notes],
    ...(working ? { working } : {}),
  }
}

/** An exact share as a decimal in major units, with up to four places more than the currency has. */
function exact(s: Share, decimals: number): string {
  const places = decimals + 4
  const digits = roundHalfUp(s.num * 10_000n, s.den)
    .toString()
    .padStart(places + 1, '0')
  const frac = digits.slice(-places).replace(/0+$/, '').padEnd(decimals, '0')
  return frac ? `${digits.slice(0, -places)}.${frac}` : digits.slice(0, -places)
}
