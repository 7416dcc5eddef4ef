/**
 * The product CSV layout, both ways: one row per variant with Shopify-like columns, rows sharing a
 * handle forming one product. Product fields come from a product's first row; later rows may
 * repeat them or leave them blank, and a later row that contradicts them is an error. Lists are
 * pipe-separated (`tags`, `category_ids`, `media`, `media_alt`; `attributes` as `key=value|…`),
 * with `\` escaping a literal `|`, `=` or `\`. Prices are one `price_<CUR>` (and optional
 * `compare_at_<CUR>`) column per currency, in integer minor units.
 *
 * A column the file leaves out leaves its field out of the documents, so that an upsert keeps the
 * stored value; a blank cell clears a field that may be empty (null or the empty value) and is left
 * out for one that always has a value (title, status, tax category, the variant's flags). Prices go
 * by currency the same way: a variant's `prices` hold the currencies whose `price_<CUR>` cell is
 * filled, and the file's price columns (CsvProduct.priceCurrencies) say which currencies they state,
 * so that a currency without a column keeps its price and a blank cell removes it. A price carries
 * `compare_at_amount` (null when blank) only when the file has its `compare_at_<CUR>` column; without
 * it the stored compare-at stays.
 *
 * An option's values are read off its variants' rows, in row order, unless the product's
 * `option<k>_values` cell lists them: rows cannot carry a value no variant uses, an order other than
 * the rows', nor the values of a product without variants, so the exporter lists them whenever the
 * rows alone would not give back the stored list.
 *
 * A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a
 * formula (CSV injection), so the writer puts an apostrophe before such a cell, as before one that
 * starts with apostrophes and then one of those, and the reader takes one apostrophe off every
 * cell written so: a round trip gives back every text as it was.
 *
 * This module only converts cells to documents and back; whether a document is valid is decided by
 * the CreateProduct schema and the product rules (import.ts), so both formats obey the same rules.
 */
import { parse } from 'csv-parse/sync'
import { stringify } from 'csv-stringify/sync'
import { problem } from '../../platform/http/errors.ts'
import type { ProductDocument } from './bulk.ts'
import { defaultVariantTitle } from './products.ts'
import type { ImportError } from './tables.ts'

/** Option columns the reader accepts (option1_… to option5_…, the schema's maximum). */
export const MAX_CSV_OPTIONS = 5
/** Option columns the writer always emits, as Shopify does; more when a product has more options. */
const DEFAULT_CSV_OPTIONS = 3

const PRODUCT_COLUMNS = [
  'handle',
  'title',
  'subtitle',
  'description',
  'status',
  'collection_id',
  'category_ids',
  'tax_category',
  'tags',
  'attributes',
  'media',
  'media_alt',
  'metadata',
] as const
const VARIANT_COLUMNS = [
  'sku',
  'variant_title',
  'barcode',
  'weight_g',
  'length_mm',
  'width_mm',
  'height_mm',
  'manage_inventory',
  'requires_shipping',
  'variant_metadata',
] as const
const DIMENSIONS = ['weight_g', 'length_mm', 'width_mm', 'height_mm'] as const
const KNOWN = new Set<string>([...PRODUCT_COLUMNS, ...VARIANT_COLUMNS])
const INTEGER = /^-?\d{1,16}$/
/** Cells a spreadsheet would read as a formula, behind any apostrophes the writer put before them. */
const FORMULA = /^'*[=+\-@\t\r]/

/** A cell as the writer puts it in the file: one that a spreadsheet would run is quoted with a '. */
function guardFormula(cell: string): string {
  return FORMULA.test(cell) ? `'${cell}` : cell
}

/** A cell as the writer had it: the apostrophe guardFormula puts before a formula taken off. */
function unguardFormula(cell: string): string {
  return cell.startsWith("'") && FORMULA.test(cell) ? cell.slice(1) : cell
}

/** The header the exporter writes for these currencies and this many options. */
export function csvHeader(currencies: readonly string[], optionCount: number): string[] {
  const options = Math.min(MAX_CSV_OPTIONS, Math.max(DEFAULT_CSV_OPTIONS, optionCount))
  return [
    ...PRODUCT_COLUMNS,
    ...Array.from({ length: options }, (_, i) => [
      `option${i + 1}_name`,
      `option${i + 1}_value`,
      `option${i + 1}_values`,
    ]).flat(),
    ...VARIANT_COLUMNS,
    ...currencies.flatMap((c) => [`price_${c}`, `compare_at_${c}`]),
  ]
}

// ---------------------------------------------------------------------------------------------
// Lists with escapes

function escapeItem(value: string): string {
  return value.replace(/[\\|=]/g, '\\$&')
}

function unescapeItem(value: string): string {
  return value.includes('\\') ? value.replace(/\\(.)/g, '$1') : value
}

/** Splits on unescaped `|`, keeping escapes (attributes split each piece again on `=`). */
function splitRaw(cell: string): string[] {
  if (cell === '') return []
  if (!cell.includes('\\')) return cell.split('|')
  const pieces: string[] = []
  let current = ''
  for (let i = 0; i < cell.length; i++) {
    const c = cell[i] as string
    if (c === '\\' && i + 1 < cell.length) {
      current += c + cell[i + 1]
      i++
    } else if (c === '|') {
      pieces.push(current)
      current = ''
    } else current += c
  }
  pieces.push(current)
  return pieces
}

const splitList = (cell: string) => splitRaw(cell).map(unescapeItem)
const joinList = (items: readonly string[]) => items.map(escapeItem).join('|')

/** The index of the first `=` not escaped by a backslash, or -1. */
function unescapedEquals(piece: string): number {
  for (let i = 0; i < piece.length; i++) {
    if (piece[i] === '\\') i++
    else if (piece[i] === '=') return i
  }
  return -1
}

// ---------------------------------------------------------------------------------------------
// Reading

/** One product assembled from its rows, before the schema has looked at it. */
export interface CsvProduct {
  /** The product's first data row (1-based; the header is row 0). */
  row: number
  /** The data row of each variant, in the document's variant order. */
  variantRows: number[]
  document: Record<string, unknown>
  /** Options whose values the file does not list (no `option<k>_values`) but reads off the rows. */
  valuesFromRows: string[]
  /**
   * The currencies of the file's `price_<CUR>` columns: the variants' `prices` state their prices
   * in these (none when the cell is blank) and leave the others' alone (bulkUpsertProducts).
   */
  priceCurrencies: string[]
  /** Cells that could not be read; a product with any is not imported. */
  errors: ImportError[]
}

export interface CsvFile {
  products: CsvProduct[]
  /** Problems of rows that belong to no product (no handle). */
  rowErrors: ImportError[]
}

/** Where each column is (-1: absent), resolved once so that rows are read by position. */
interface Layout {
  index: Map<string, number>
  width: number
  currencies: Array<{ code: string; price: number; compareAt: number }>
  optionNames: number[]
  optionValues: number[]
  /** `option<k>_values`, the product's whole list of an option's values, or -1. */
  optionLists: number[]
  /** Every column a variant row may fill, for the check of rows without a SKU. */
  variantCells: Array<{ name: string; at: number }>
}

const cellAt = (cells: readonly string[], at: number): string => (at < 0 ? '' : (cells[at] ?? ''))

/** The canonical name of a header cell (`Price_eur` → `price_EUR`), or undefined if unknown. */
function canonicalColumn(name: string): string | undefined {
  const lower = name.trim().toLowerCase()
  if (KNOWN.has(lower)) return lower
  const money = /^(price|compare_at)_([a-z]{3})$/.exec(lower)
  if (money) return `${money[1]}_${(money[2] as string).toUpperCase()}`
  const option = /^option([1-9])_(name|values?)$/.exec(lower)
  if (option && Number(option[1]) <= MAX_CSV_OPTIONS) return lower
  return undefined
}

function readHeader(cells: string[]): Layout {
  const index = new Map<string, number>()
  const unknown: string[] = []
  const repeated: string[] = []
  cells.forEach((cell, i) => {
    const name = canonicalColumn(cell)
    if (!name) unknown.push(cell)
    else if (index.has(name)) repeated.push(cell)
    else index.set(name, i)
  })
  const errors = [
    ...unknown.map((c) => ({ path: `header.${c}`, message: 'is not a known column' })),
    ...repeated.map((c) => ({ path: `header.${c}`, message: 'appears twice' })),
  ]
  if (!index.has('handle')) errors.push({ path: 'header.handle', message: 'is required' })
  const at = (name: string) => index.get(name) ?? -1
  const currencies: Layout['currencies'] = []
  for (const name of index.keys()) {
    const money = /^(price|compare_at)_([A-Z]{3})$/.exec(name)
    const code = money?.[2] as string
    if (money?.[1] === 'price')
      currencies.push({ code, price: at(name), compareAt: at(`compare_at_${code}`) })
    if (money?.[1] === 'compare_at' && !index.has(`price_${code}`))
      errors.push({ path: `header.${name}`, message: `needs a price_${code} column` })
  }
  let options = 0
  for (let k = 1; k <= MAX_CSV_OPTIONS; k++) {
    const hasName = index.has(`option${k}_name`)
    if (hasName !== index.has(`option${k}_value`))
      errors.push({
        path: `header.option${k}_${hasName ? 'value' : 'name'}`,
        message: `is required with option${k}_${hasName ? 'name' : 'value'}`,
      })
    if (index.has(`option${k}_values`) && !hasName)
      errors.push({ path: `header.option${k}_values`, message: `is required with option${k}_name` })
    if (hasName) options = k
  }
  if (errors.length > 0)
    throw problem('invalid_csv', `The header cannot be read: ${errors[0]?.path} ${errors[0]?.message}`, {
      errors,
    })
  const optionNames = Array.from({ length: options }, (_, k) => at(`option${k + 1}_name`))
  const optionValues = Array.from({ length: options }, (_, k) => at(`option${k + 1}_value`))
  const optionLists = Array.from({ length: options }, (_, k) => at(`option${k + 1}_values`))
  const variantCells = [
    ...optionValues.map((position, k) => ({ name: `option${k + 1}_value`, at: position })),
    ...VARIANT_COLUMNS.map((name) => ({ name, at: at(name) })),
    ...currencies.flatMap((c) => [
      { name: `price_${c.code}`, at: c.price },
      { name: `compare_at_${c.code}`, at: c.compareAt },
    ]),
  ].filter((c) => c.at >= 0)
  return { index, width: cells.length, currencies, optionNames, optionValues, optionLists, variantCells }
}

function parseInteger(
  cell: string,
  row: number,
  column: string,
  errors: ImportError[],
  money = false,
): number | undefined {
  if (cell === '') return undefined
  if (INTEGER.test(cell)) return Number(cell)
  errors.push({
    row,
    path: column,
    message: money ? 'must be a whole number of minor units (1999 for 19.99)' : 'must be a whole number',
  })
  return undefined
}

function parseBoolean(cell: string, row: number, column: string, errors: ImportError[]) {
  if (cell === '') return undefined
  const lower = cell.toLowerCase()
  if (lower === 'true' || lower === 'yes' || lower === '1') return true
  if (lower === 'false' || lower === 'no' || lower === '0') return false
  errors.push({ row, path: column, message: 'must be true or false' })
  return undefined
}

function parseObject(cell: string, row: number, column: string, errors: ImportError[]) {
  if (cell === '') return undefined
  try {
    const value: unknown = JSON.parse(cell)
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>
  } catch {}
  errors.push({ row, path: column, message: 'must be a JSON object' })
  return undefined
}

interface RowRef {
  row: number
  cells: string[]
}

/**
 * Parses a product CSV into documents, one per handle. Throws `invalid_csv` when the file as a
 * whole cannot be read (broken quoting, an unusable header); problems of single rows or cells are
 * returned with the product they belong to.
 */
export function parseProductCsv(text: string): CsvFile {
  let records: string[][]
  try {
    records = parse(text, { bom: true, relax_column_count: true })
  } catch (error) {
    const e = error as Error & { lines?: number }
    throw problem('invalid_csv', `The CSV cannot be read: ${e.message}`, {
      errors: [{ path: e.lines ? `line ${e.lines}` : 'body', message: e.message }],
    })
  }
  // In place after parsing: the parser's cast option costs a context object per cell (a 100,000
  // product file has 40 million), this loop only a character test for most.
  for (const cells of records)
    for (let i = 0; i < cells.length; i++) cells[i] = unguardFormula(cells[i] as string)
  const [header, ...rows] = records
  if (!header)
    throw problem('invalid_csv', 'The file is empty', { errors: [{ path: 'body', message: 'is empty' }] })
  const layout = readHeader(header)
  const handleAt = layout.index.get('handle') as number
  const groups = new Map<string, RowRef[]>()
  const rowErrors: ImportError[] = []
  const widthErrors = new Map<string, ImportError[]>()
  rows.forEach((cells, i) => {
    const row = i + 1
    // A blank line is no row of data, but keeps its number so rows match the spreadsheet's.
    if (cells.length <= 1 && (cells[0] ?? '') === '') return
    const handle = cells[handleAt] ?? ''
    if (cells.length !== layout.width) {
      const error = { row, path: 'row', message: `has ${cells.length} cells; the header has ${layout.width}` }
      if (handle === '') rowErrors.push(error)
      else widthErrors.set(handle, [...(widthErrors.get(handle) ?? []), error])
    }
    if (handle === '') {
      if (cells.length === layout.width) rowErrors.push({ row, path: 'handle', message: 'is required' })
      return
    }
    const group = groups.get(handle)
    if (group) group.push({ row, cells })
    else groups.set(handle, [{ row, cells }])
  })
  const products: CsvProduct[] = []
  for (const [handle, group] of groups) {
    const product = productFromRows(handle, group, layout)
    product.errors.unshift(...(widthErrors.get(handle) ?? []))
    products.push(product)
  }
  return { products, rowErrors }
}

function productFromRows(handle: string, group: RowRef[], layout: Layout): CsvProduct {
  const position = (column: string) => layout.index.get(column) ?? -1
  const first = group[0] as RowRef
  const row = first.row
  const errors: ImportError[] = []
  const doc: Record<string, unknown> = { handle }
  // A column the file leaves out leaves its field out of the document: the stored value stays. A
  // blank cell clears a field that may be empty; one that always has a value (title, status, tax
  // category) is left out, as without the column.
  const has = (column: string) => layout.index.has(column)
  const firstCell = (column: string) => cellAt(first.cells, position(column))
  for (const column of ['title', 'status', 'tax_category']) {
    const value = firstCell(column)
    if (value !== '') doc[column] = value
  }
  for (const column of ['subtitle', 'description']) if (has(column)) doc[column] = firstCell(column)
  if (has('collection_id')) doc.collection_id = firstCell('collection_id') || null
  if (has('category_ids')) doc.category_ids = splitList(firstCell('category_ids'))
  if (has('tags')) doc.tags = splitList(firstCell('tags'))
  const attributes = firstCell('attributes')
  if (has('attributes')) doc.attributes = {}
  if (attributes !== '') {
    const parsed = new Map<string, string>()
    for (const piece of splitRaw(attributes)) {
      const at = unescapedEquals(piece)
      if (at < 0) {
        errors.push({ row, path: 'attributes', message: `"${unescapeItem(piece)}" is not key=value` })
        continue
      }
      const key = unescapeItem(piece.slice(0, at))
      // Keeping the last would drop a value without a word, where a repeated tag is reported.
      if (parsed.has(key)) errors.push({ row, path: 'attributes', message: `repeats the key ${key}` })
      parsed.set(key, unescapeItem(piece.slice(at + 1)))
    }
    doc.attributes = Object.fromEntries(parsed)
  }
  const urls = splitList(firstCell('media'))
  const alts = splitList(firstCell('media_alt'))
  if (alts.length > urls.length)
    errors.push({ row, path: 'media_alt', message: `has ${alts.length} texts for ${urls.length} media` })
  if (has('media')) doc.media = urls.map((url, i) => ({ url, alt: alts[i] ?? '' }))
  const metadata = parseObject(firstCell('metadata'), row, 'metadata', errors)
  if (has('metadata')) doc.metadata = metadata ?? {}

  const optionNames = layout.optionNames.map((at) => {
    const name = cellAt(first.cells, at)
    return name === '' ? undefined : name
  })
  const optionLists = layout.optionLists.map((at, k) => {
    const list = cellAt(first.cells, at)
    if (list === '') return undefined
    if (optionNames[k] === undefined)
      errors.push({
        row,
        path: `option${k + 1}_values`,
        message: `has no option name in option${k + 1}_name`,
      })
    return splitList(list)
  })

  if (group.length > 1) {
    // Later rows may repeat the product's cells but not contradict them.
    const productColumns = [
      ...PRODUCT_COLUMNS.filter((c) => c !== 'handle').map((name) => ({ name, at: position(name) })),
      ...layout.optionNames.map((at, k) => ({ name: `option${k + 1}_name`, at })),
      ...layout.optionLists.map((at, k) => ({ name: `option${k + 1}_values`, at })),
    ].filter((c) => c.at >= 0)
    for (const later of group.slice(1)) {
      for (const { name, at } of productColumns) {
        const value = cellAt(later.cells, at)
        if (value !== '' && value !== cellAt(first.cells, at))
          errors.push({
            row: later.row,
            path: name,
            message: `differs from row ${row}, the first row of product ${handle}`,
          })
      }
    }
  }

  const sku = position('sku')
  const variantTitle = position('variant_title')
  const barcode = position('barcode')
  const dimensions = DIMENSIONS.map((name) => ({ name, at: position(name) }))
  const manageInventory = position('manage_inventory')
  const requiresShipping = position('requires_shipping')
  const variantMetadata = position('variant_metadata')
  const values = optionNames.map(() => new Set<string>())
  const variants: Record<string, unknown>[] = []
  const variantRows: number[] = []
  for (const { row: at, cells } of group) {
    const skuValue = cellAt(cells, sku)
    if (skuValue === '') {
      const stray = layout.variantCells.find((c) => cellAt(cells, c.at) !== '')
      if (stray) errors.push({ row: at, path: 'sku', message: `is required on a row with ${stray.name}` })
      continue
    }
    const variant: Record<string, unknown> = { sku: skuValue }
    let options: Record<string, string> | undefined
    for (let k = 0; k < optionNames.length; k++) {
      const value = cellAt(cells, layout.optionValues[k] as number)
      if (value === '') continue
      const name = optionNames[k]
      if (name === undefined) {
        errors.push({
          row: at,
          path: `option${k + 1}_value`,
          message: `has no option name in option${k + 1}_name on row ${row}`,
        })
        continue
      }
      options ??= {}
      options[name] = value
      values[k]?.add(value)
    }
    // With option columns in the file, a row states all of its variant's values (none when blank).
    if (optionNames.length > 0) variant.options = options ?? {}
    // A blank title is the one made of the variant's values.
    if (variantTitle >= 0) variant.title = cellAt(cells, variantTitle) || null
    if (barcode >= 0) variant.barcode = cellAt(cells, barcode) || null
    for (const dimension of dimensions) {
      if (dimension.at < 0) continue
      const value = parseInteger(cellAt(cells, dimension.at), at, dimension.name, errors)
      variant[dimension.name] = value ?? null
    }
    const manage = parseBoolean(cellAt(cells, manageInventory), at, 'manage_inventory', errors)
    if (manage !== undefined) variant.manage_inventory = manage
    const shipped = parseBoolean(cellAt(cells, requiresShipping), at, 'requires_shipping', errors)
    if (shipped !== undefined) variant.requires_shipping = shipped
    const meta = parseObject(cellAt(cells, variantMetadata), at, 'variant_metadata', errors)
    if (variantMetadata >= 0) variant.metadata = meta ?? {}
    if (layout.currencies.length > 0) {
      // A row states its variant's prices in the currencies the file has columns for: a blank price
      // cell is no price there, and a currency without a column is left out (its price is kept).
      // A compare-at column gives the compare-at (null when blank); without one it is left out.
      const prices: Array<Record<string, unknown>> = []
      for (const currency of layout.currencies) {
        const priceCell = cellAt(cells, currency.price)
        const compareCell = cellAt(cells, currency.compareAt)
        const amount = parseInteger(priceCell, at, `price_${currency.code}`, errors, true)
        const compare = parseInteger(compareCell, at, `compare_at_${currency.code}`, errors, true)
        if (amount !== undefined)
          prices.push({
            currency: currency.code,
            amount,
            ...(currency.compareAt >= 0 ? { compare_at_amount: compare ?? null } : {}),
          })
        else if (compareCell !== '' && priceCell === '')
          errors.push({
            row: at,
            path: `compare_at_${currency.code}`,
            message: `needs a price in price_${currency.code}`,
          })
      }
      variant.prices = prices
    }
    variants.push(variant)
    variantRows.push(at)
  }
  const named = optionNames.flatMap((name, k) => (name === undefined ? [] : [{ name, k }]))
  if (optionNames.length > 0)
    doc.options = named.map(({ name, k }) => ({ name, values: optionLists[k] ?? [...(values[k] ?? [])] }))
  if (variants.length > 0) doc.variants = variants
  const valuesFromRows = named.flatMap(({ name, k }) => (optionLists[k] === undefined ? [name] : []))
  const priceCurrencies = layout.currencies.map((c) => c.code)
  return { row, variantRows, document: doc, valuesFromRows, priceCurrencies, errors }
}

/**
 * Where a problem found in a document assembled from CSV lies in the file: the row and column of
 * the cell, given the problem's path within the document (`['variants', '2', 'prices', '0',
 * 'amount']`).
 */
export function csvCellOf(
  document: Partial<ProductDocument>,
  row: number,
  variantRows: readonly number[],
  segments: readonly string[],
): { row: number; path: string } {
  const [field, a, b, c, d] = segments
  if (field === 'variants' && a !== undefined) {
    const i = Number(a)
    const variant = Number.isInteger(i) ? document.variants?.[i] : undefined
    const at = (Number.isInteger(i) ? variantRows[i] : undefined) ?? row
    if (b === 'options') {
      const k = (document.options ?? []).findIndex((o) => o.name === c)
      return { row: at, path: k >= 0 ? `option${k + 1}_value` : 'option1_value' }
    }
    if (b === 'prices') {
      const currency = c !== undefined ? variant?.prices?.[Number(c)]?.currency : undefined
      if (!currency) return { row: at, path: 'price' }
      return { row: at, path: d === 'compare_at_amount' ? `compare_at_${currency}` : `price_${currency}` }
    }
    if (b === 'title') return { row: at, path: 'variant_title' }
    if (b === 'metadata') return { row: at, path: 'variant_metadata' }
    return { row: at, path: b ?? 'sku' }
  }
  if (field === 'options') return { row, path: `option${Number(a ?? 0) + 1}_name` }
  if (field === 'media') return { row, path: b === 'alt' ? 'media_alt' : 'media' }
  if (field === 'variants') return { row, path: 'sku' }
  return { row, path: field ?? 'handle' }
}

// ---------------------------------------------------------------------------------------------
// Writing

const sameList = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((v, i) => v === b[i])

/**
 * Rows stored before attribute values were validated may hold numbers or objects: written as JSON
 * text, so that one such row shows up in the file (and is refused if imported back) instead of
 * ending the export mid-stream.
 */
function attributeText(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value))
}

/** A writer of product documents as CSV lines under `header` (from csvHeader). */
export function productCsvWriter(header: readonly string[]): (doc: ProductDocument) => string {
  const at = new Map(header.map((name, i) => [name, i]))
  return (doc) => productCsvLines(doc, header.length, at)
}

function productCsvLines(doc: ProductDocument, width: number, at: ReadonlyMap<string, number>): string {
  const options = doc.options ?? []
  const blank = () => new Array<string>(width).fill('')
  const set = (cells: string[], column: string, value: string) => {
    const i = at.get(column)
    if (i !== undefined) cells[i] = value
  }
  const productCells = blank()
  set(productCells, 'handle', doc.handle)
  set(productCells, 'title', doc.title ?? '')
  set(productCells, 'subtitle', doc.subtitle ?? '')
  set(productCells, 'description', doc.description ?? '')
  set(productCells, 'status', doc.status ?? '')
  set(productCells, 'collection_id', doc.collection_id ?? '')
  set(productCells, 'category_ids', joinList(doc.category_ids ?? []))
  set(productCells, 'tax_category', doc.tax_category ?? '')
  set(productCells, 'tags', joinList(doc.tags ?? []))
  set(
    productCells,
    'attributes',
    Object.entries(doc.attributes ?? {})
      .map(([k, v]) => `${escapeItem(k)}=${escapeItem(attributeText(v))}`)
      .join('|'),
  )
  const media = doc.media ?? []
  set(productCells, 'media', joinList(media.map((m) => m.url)))
  set(productCells, 'media_alt', media.some((m) => m.alt !== '') ? joinList(media.map((m) => m.alt)) : '')
  if (doc.metadata && Object.keys(doc.metadata).length > 0)
    set(productCells, 'metadata', JSON.stringify(doc.metadata))

  const variants = doc.variants ?? []
  options.forEach((o, k) => {
    set(productCells, `option${k + 1}_name`, o.name)
    const fromRows = new Set(variants.flatMap((v) => v.options?.[o.name] ?? []))
    if (!sameList(o.values, [...fromRows])) set(productCells, `option${k + 1}_values`, joinList(o.values))
  })
  const lines: string[][] = []
  if (variants.length === 0) lines.push(productCells)
  variants.forEach((variant, n) => {
    const cells = n === 0 ? productCells : blank()
    set(cells, 'handle', doc.handle)
    options.forEach((o, k) => {
      set(cells, `option${k + 1}_name`, o.name)
      set(cells, `option${k + 1}_value`, variant.options?.[o.name] ?? '')
    })
    set(cells, 'sku', variant.sku)
    // A title the importer would give the variant anyway is left out.
    if (variant.title != null && variant.title !== defaultVariantTitle(options, variant))
      set(cells, 'variant_title', variant.title)
    set(cells, 'barcode', variant.barcode ?? '')
    for (const column of DIMENSIONS) {
      const value = variant[column]
      set(cells, column, value === null || value === undefined ? '' : String(value))
    }
    if (variant.manage_inventory !== undefined)
      set(cells, 'manage_inventory', String(variant.manage_inventory))
    if (variant.requires_shipping !== undefined)
      set(cells, 'requires_shipping', String(variant.requires_shipping))
    if (variant.metadata && Object.keys(variant.metadata).length > 0)
      set(cells, 'variant_metadata', JSON.stringify(variant.metadata))
    for (const price of variant.prices ?? []) {
      set(cells, `price_${price.currency}`, String(price.amount))
      if (price.compare_at_amount !== null && price.compare_at_amount !== undefined)
        set(cells, `compare_at_${price.currency}`, String(price.compare_at_amount))
    }
    lines.push(cells)
  })
  return stringify(lines.map((cells) => cells.map(guardFormula)))
}

/** The header line of an export. */
export function csvHeaderLine(header: readonly string[]): string {
  return stringify([header as string[]])
}
