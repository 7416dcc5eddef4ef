/**
 * Tax providers: the seam where a store swaps the built-in engine for an external service. A
 * provider calculates, commits a sale when an order is placed and voids it when the order is
 * cancelled. The external provider speaks a small JSON protocol over HTTP (below), has a timeout,
 * has its answers checked against a schema and against the cart, and falls back to the built-in
 * engine when any of that fails, so checkout never stops for a tax service.
 *
 * Protocol (all POST, JSON):
 *   {url}/calculate  { currency, prices_include_tax, date_of_supply, customer, lines: [{ id, amount, tax_category }] }
 *                 →  { lines: [{ id, taxes: [{ jurisdiction, label, rate, taxable_amount, tax_amount }] }] }
 *   {url}/commit     { reference, currency, date_of_supply, customer, net_amount, tax_amount }  → 2xx
 *   {url}/void       { reference }  → 2xx
 * `amount` is the line's amount after discounts in minor units, on the basis prices_include_tax says.
 */
import type { Logger } from 'pino'
import { Type } from 'typebox'
import { Compile } from 'typebox/compile'
import type { Tx } from '../../platform/db/transaction.ts'
import { calculateTax, type LineResult, type TaxInput, type TaxLine, type TaxResult } from './engine.ts'
import type { StoreTaxContext } from './place-of-supply.ts'
import { percentToPpm } from './rounding.ts'
import { recordSale, voidSale } from './sales.ts'
import type { TaxData } from './tax-data.ts'

export interface TaxProvider {
  readonly name: string
  /** Tax for a cart or order. */
  calculate(input: TaxInput): Promise<TaxResult>
  /** The order was placed: record the sale (and tell the service, for an external provider). */
  commit(trx: Tx, reference: string, input: TaxInput, result: TaxResult): Promise<void>
  /** The order was cancelled: the sale no longer counts. */
  void(trx: Tx, reference: string): Promise<void>
}

/** What every provider records locally: the sale, for the OSS threshold and the nexus report. */
async function recordLocally(
  trx: Tx,
  store: StoreTaxContext,
  reference: string,
  input: TaxInput,
  result: TaxResult,
  eurAmount?: number,
): Promise<void> {
  await recordSale(trx, {
    reference,
    date_of_supply: input.date_of_supply,
    origin_country: store.origin.country,
    customer: { country: input.customer.address.country, region: input.customer.address.region },
    b2b: Boolean(input.customer.is_business && input.customer.vat_id),
    currency: input.currency,
    net_amount: result.totals.net,
    tax_amount: result.totals.tax,
    eur_amount: eurAmount,
  })
}

/** The built-in engine as a provider. */
export class BuiltInTaxProvider implements TaxProvider {
  readonly name = 'builtin'
  readonly #data: TaxData
  readonly #store: StoreTaxContext

  constructor(data: TaxData, store: StoreTaxContext) {
    this.#data = data
    this.#store = store
  }

  async calculate(input: TaxInput): Promise<TaxResult> {
    return calculateTax(this.#data, this.#store, input)
  }

  async commit(trx: Tx, reference: string, input: TaxInput, result: TaxResult): Promise<void> {
    await recordLocally(trx, this.#store, reference, input, result)
  }

  async void(trx: Tx, reference: string): Promise<void> {
    await voidSale(trx, reference)
  }
}

const ExternalTax = Type.Object({
  jurisdiction: Type.String({ minLength: 1, maxLength: 64 }),
  label: Type.String({ minLength: 1, maxLength: 200 }),
  rate: Type.String({ pattern: '^\\d{1,3}(\\.\\d{1,4})?$' }),
  taxable_amount: Type.Integer({ minimum: 0 }),
  tax_amount: Type.Integer({ minimum: 0 }),
})

/** The answer an external provider must give to /calculate. */
export const ExternalCalculation = Type.Object({
  lines: Type.Array(Type.Object({ id: Type.String(), taxes: Type.Array(ExternalTax, { minItems: 1 }) })),
})
const checkCalculation = Compile(ExternalCalculation)

export interface ExternalProviderOptions {
  url: string
  timeoutMs: number
  /** The engine used when the service fails. */
  fallback: BuiltInTaxProvider
  logger?: Logger
  fetch?: typeof fetch
  /**
   * Where commit and void calls go: enqueued in the caller's transaction and sent after it commits
   * (tax/jobs.ts), so no row stays locked while the service answers and a call is neither lost
   * nor sent for an order that rolled back. Without it they are sent at once, inside the transaction.
   */
  calls?: TaxServiceCalls
}

/** A commit or void for the external service, as it is queued and sent. */
export interface TaxServiceCall {
  url: string
  timeoutMs: number
  path: 'commit' | 'void'
  body: { reference: string } & Record<string, unknown>
}

/** Sends service calls after the transaction that makes them commits. */
export interface TaxServiceCalls {
  send(trx: Tx, call: TaxServiceCall): Promise<void>
}

/**
 * POSTs JSON to the service and returns its parsed answer; throws ExternalTaxError on an error
 * status, invalid JSON or the timeout. The reference and path go as the Idempotency-Key, since a
 * queued call may be delivered more than once.
 */
export async function postToTaxService(
  call: { url: string; timeoutMs: number; path: string; body: Record<string, unknown> },
  doFetch: typeof fetch = fetch,
): Promise<unknown> {
  const response = await doFetch(new URL(call.path, call.url.endsWith('/') ? call.url : `${call.url}/`), {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(typeof call.body.reference === 'string'
        ? { 'idempotency-key': `${call.path}:${call.body.reference}` }
        : {}),
    },
    body: JSON.stringify(call.body),
    signal: AbortSignal.timeout(call.timeoutMs),
  })
  const text = await response.text()
  if (!response.ok) throw new ExternalTaxError(`${call.path} answered ${response.status}`)
  if (!text) return undefined
  try {
    return JSON.parse(text)
  } catch {
    throw new ExternalTaxError(`${call.path} answered with invalid JSON`)
  }
}

/** Why an external answer was not used. */
export class ExternalTaxError extends Error {
  override name = 'ExternalTaxError'
}

/**
 * An external tax service. Its answer must match the schema, cover exactly the cart's lines, and
 * tax no more than a line's amount; otherwise (or on timeout or an error status) the built-in
 * engine answers, and the result says so in `provider` and `fallback_reason`.
 */
export class ExternalTaxProvider implements TaxProvider {
  readonly name = 'external'
  readonly #options: ExternalProviderOptions

  constructor(options: ExternalProviderOptions) {
    this.#options = options
  }

  #post(path: string, body: Record<string, unknown>): Promise<unknown> {
    return postToTaxService(
      { url: this.#options.url, timeoutMs: this.#options.timeoutMs, path, body },
      this.#options.fetch,
    )
  }

  /** A commit or void: queued with the transaction when calls are configured, else sent now. */
  async #call(trx: Tx, path: 'commit' | 'void', body: TaxServiceCall['body']): Promise<void> {
    const { calls, url, timeoutMs } = this.#options
    if (calls) await calls.send(trx, { url, timeoutMs, path, body })
    else await this.#post(path, body)
  }

  async calculate(input: TaxInput): Promise<TaxResult & { fallback_reason?: string }> {
    // The built-in engine runs first: it validates the input (bad input is a 4xx whichever provider
    // is configured) and prices the lines after discounts, which the service is sent.
    const local = await this.#options.fallback.calculate(input)
    try {
      const answer = await this.#post('calculate', {
        currency: input.currency,
        prices_include_tax: input.prices_include_tax,
        date_of_supply: input.date_of_supply,
        customer: input.customer,
        lines: local.lines.map((l) => ({
          id: l.id,
          amount: input.prices_include_tax ? l.gross_amount : l.net_amount,
          tax_category: l.tax_category,
        })),
      })
      return fromExternal(local, answer, input.prices_include_tax)
    } catch (error) {
      const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      this.#options.logger?.warn({ err: error }, 'external tax provider failed; built-in engine used')
      return { ...local, provider: 'builtin', fallback_reason: reason }
    }
  }

  async commit(trx: Tx, reference: string, input: TaxInput, result: TaxResult): Promise<void> {
    await this.#options.fallback.commit(trx, reference, input, result)
    await this.#call(trx, 'commit', {
      reference,
      currency: input.currency,
      date_of_supply: input.date_of_supply,
      customer: input.customer,
      net_amount: result.totals.net,
      tax_amount: result.totals.tax,
    })
  }

  async void(trx: Tx, reference: string): Promise<void> {
    await this.#options.fallback.void(trx, reference)
    await this.#call(trx, 'void', { reference })
  }
}

/** Turns a checked external answer into a result on our lines; throws ExternalTaxError when it does not fit. */
function fromExternal(local: TaxResult, answer: unknown, inclusive: boolean): TaxResult {
  if (!checkCalculation.Check(answer)) {
    const first = [...checkCalculation.Errors(answer)][0]
    throw new ExternalTaxError(
      `answer does not match the schema at ${first?.instancePath || '/'}: ${first?.message}`,
    )
  }
  const byId = new Map(answer.lines.map((l) => [l.id, l]))
  if (byId.size !== local.lines.length || local.lines.some((l) => !byId.has(l.id))) {
    throw new ExternalTaxError('answer does not cover exactly the lines sent')
  }
  const lines: LineResult[] = local.lines.map((line) => {
    const external = byId.get(line.id)!
    const base = inclusive ? line.gross_amount : line.net_amount
    const taxes: TaxLine[] = external.taxes.map((t) => {
      const ppm = percentToPpm(t.rate)
      if (ppm === undefined) throw new ExternalTaxError(`rate ${t.rate} is out of range`)
      return {
        jurisdiction: t.jurisdiction,
        jurisdiction_name: t.jurisdiction,
        tax_name: t.label,
        rate_kind: ppm === 0 ? 'zero' : 'standard',
        rate: t.rate,
        rate_ppm: ppm,
        label: t.label,
        treatment: ppm === 0 ? 'zero_rated' : 'taxable',
        taxable_amount: t.taxable_amount,
        tax_amount: t.tax_amount,
      }
    })
    const tax = taxes.reduce((a, t) => a + t.tax_amount, 0)
    if (tax > base) throw new ExternalTaxError(`line ${line.id}: tax ${tax} exceeds the line amount ${base}`)
    const net = inclusive ? base - tax : base
    return { ...line, net_amount: net, tax_amount: tax, gross_amount: net + tax, taxes }
  })
  const summary = new Map<string, TaxResult['taxes'][number]>()
  for (const line of lines) {
    for (const t of line.taxes) {
      const key = `${t.jurisdiction}|${t.label}|${t.rate}`
      const s = summary.get(key)
      if (s) {
        s.taxable_amount += t.taxable_amount
        s.tax_amount += t.tax_amount
      } else summary.set(key, { ...t, rounding: 'line' })
    }
  }
  const totals = { ...local.totals, net: 0, tax: 0, gross: 0 }
  for (const l of lines) {
    totals.net += l.net_amount
    totals.tax += l.tax_amount
    totals.gross += l.gross_amount
  }
  return { ...local, provider: 'external', lines, taxes: [...summary.values()], totals }
}
