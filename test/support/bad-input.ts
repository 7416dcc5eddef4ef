// biome-ignore-all lint/suspicious/noExplicitAny: JSON schemas from the OpenAPI document are read loosely
/**
 * Schema-driven bad input, for the route-wide fuzz test: a valid value for a JSON schema (as the
 * OpenAPI document gives it), the path of every field in such a value, and the corruptions to send
 * for each field according to its schema: wrong JSON types, huge, empty and hostile strings,
 * out-of-range numbers, oversized and nested arrays and objects, unknown and missing properties.
 */

export type JsonSchema = Record<string, any>

/** A JSON fragment written into a body as it is: what JSON.stringify cannot write (1e400, -0). */
export class RawJson {
  readonly text: string
  constructor(text: string) {
    this.text = text
  }
}

export type Value = null | boolean | number | string | RawJson | Value[] | { [key: string]: Value }

/** Marks a property to delete (a missing required field). */
export const REMOVE = Symbol('remove')

export type FieldPath = Array<string | number>

export interface Corruption {
  label: string
  value: Value | typeof REMOVE
}

/** JSON text of a value, RawJson fragments written verbatim. */
export function jsonText(value: Value): string {
  if (value instanceof RawJson) return value.text
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`
  if (value !== null && typeof value === 'object')
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`)
      .join(',')}}`
  return JSON.stringify(value)
}

/** `body.lines[0].quantity` */
export function pathLabel(part: string, path: FieldPath): string {
  return path.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : `${s}.${p}`), part)
}

/** A copy of root with the value at path replaced (or removed). */
export function setAt(root: Value, path: FieldPath, value: Value | typeof REMOVE): Value {
  if (path.length === 0) return value === REMOVE ? null : value
  const [head, ...rest] = path
  if (Array.isArray(root)) {
    const copy = [...root]
    if (value === REMOVE && rest.length === 0) copy.splice(head as number, 1)
    else copy[head as number] = setAt(copy[head as number] ?? null, rest, value)
    return copy
  }
  const copy = { ...(root as Record<string, Value>) }
  if (value === REMOVE && rest.length === 0) delete copy[head as string]
  else copy[head as string] = setAt(copy[head as string] ?? null, rest, value)
  return copy
}

/** Nested `{"a":{"a":…}}` (objects) or `[[…]]` (arrays) `depth` levels deep, as raw JSON. */
export function deeplyNested(depth: number, kind: 'object' | 'array'): RawJson {
  return kind === 'object'
    ? new RawJson(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`)
    : new RawJson(`${'['.repeat(depth)}1${']'.repeat(depth)}`)
}

/** The schema's types, over all branches of an anyOf. */
export function typesOf(schema: JsonSchema, deref: (s: JsonSchema) => JsonSchema): Set<string> {
  const s = deref(schema)
  if (s.anyOf || s.oneOf) {
    const all = new Set<string>()
    for (const branch of s.anyOf ?? s.oneOf) for (const t of typesOf(branch, deref)) all.add(t)
    return all
  }
  if (s.enum) return new Set(s.enum.map((v: unknown) => (v === null ? 'null' : typeof v)))
  if (s.const !== undefined) return new Set([s.const === null ? 'null' : typeof s.const])
  if (Array.isArray(s.type)) return new Set(s.type)
  if (s.type) return new Set([s.type])
  return new Set(['null', 'boolean', 'number', 'integer', 'string', 'array', 'object'])
}

/** The branch of an anyOf that samples use: the first that is not null. */
export function mainBranch(schema: JsonSchema, deref: (s: JsonSchema) => JsonSchema): JsonSchema {
  let s = deref(schema)
  while (s.anyOf || s.oneOf) {
    const branches: JsonSchema[] = (s.anyOf ?? s.oneOf).map(deref)
    s = deref(branches.find((b) => b.type !== 'null') ?? branches[0]!)
  }
  return s
}

/** Every schema a value of this one may take (the branches of anyOf, flattened). */
function branchesOf(schema: JsonSchema, deref: (s: JsonSchema) => JsonSchema): JsonSchema[] {
  const s = deref(schema)
  if (s.anyOf || s.oneOf) return (s.anyOf ?? s.oneOf).flatMap((b: JsonSchema) => branchesOf(b, deref))
  return [s]
}

export interface Sampler {
  deref(schema: JsonSchema): JsonSchema
  /** A value for a string field, from its name and schema, or undefined for the generic rules. */
  string(name: string, schema: JsonSchema): string | undefined
}

/**
 * A valid value for the schema, with every property (optional ones too, so that each can be
 * corrupted) and one entry in each record.
 */
export function sample(schema: JsonSchema, name: string, sampler: Sampler): Value {
  const s = mainBranch(schema, sampler.deref)
  if (s.const !== undefined) return s.const
  if (s.enum) return s.enum[0]
  switch (s.type) {
    case 'null':
      return null
    case 'boolean':
      return typeof s.default === 'boolean' ? s.default : false
    case 'integer':
    case 'number': {
      const min = s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : 0)
      const max = s.maximum ?? Number.MAX_SAFE_INTEGER
      return Math.min(Math.max(typeof s.default === 'number' ? s.default : 1, min), max)
    }
    case 'string':
      return sampler.string(name, s) ?? genericString(s)
    case 'array': {
      const n = Math.max(1, s.minItems ?? 0)
      return Array.from({ length: n }, () => sample(s.items ?? {}, singular(name), sampler))
    }
    case 'object': {
      const out: Record<string, Value> = {}
      for (const [key, prop] of Object.entries<JsonSchema>(s.properties ?? {})) {
        out[key] = sample(prop, key, sampler)
      }
      if (!s.properties && s.additionalProperties && typeof s.additionalProperties === 'object') {
        out.fuzz = sample(s.additionalProperties, 'fuzz', sampler)
      }
      return out
    }
    default:
      return 'x'
  }
}

function singular(name: string): string {
  return name.endsWith('ies') ? `${name.slice(0, -3)}y` : name.replace(/s$/, '')
}

const CANDIDATES = ['standard', 'DE', 'EUR', 'a', 'abc', 'x1', 'A1', 'a:b', '19', 'key:value', 'a-b']

function genericString(s: JsonSchema): string {
  if (s.format === 'date-time') return new Date(Date.now() + 86_400_000).toISOString()
  if (s.format === 'date') return '2025-01-01'
  if (s.format === 'email') return 'fuzz@example.test'
  if (s.format === 'uri') return 'https://example.test/a.png'
  if (s.pattern) {
    const re = new RegExp(s.pattern)
    const found = CANDIDATES.find((c) => re.test(c) && c.length >= (s.minLength ?? 0))
    if (found) return found
  }
  return 'x'.repeat(Math.max(1, s.minLength ?? 1))
}

/** The id prefix a pattern such as `^cart_[0-9a-z]{26}$` asks for. */
export function idPrefix(schema: JsonSchema): string | undefined {
  return /^\^([a-z]+)_/.exec(schema.pattern ?? '')?.[1]
}

export interface Field {
  path: FieldPath
  schema: JsonSchema
  name: string
  required: boolean
}

/** The fields of a sampled value: each property at any depth, and the first item of each array. */
export function fieldsOf(schema: JsonSchema, value: Value, sampler: Sampler, path: FieldPath = []): Field[] {
  const s = mainBranch(schema, sampler.deref)
  const out: Field[] = []
  if (path.length === 0 && s.type !== 'object' && s.type !== 'array') {
    return [{ path: [], schema, name: 'body', required: true }]
  }
  if (s.type === 'object' && value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, v] of Object.entries(value as Record<string, Value>)) {
      const prop: JsonSchema | undefined =
        s.properties?.[key] ??
        (typeof s.additionalProperties === 'object' ? s.additionalProperties : undefined)
      if (!prop) continue
      out.push({ path: [...path, key], schema: prop, name: key, required: (s.required ?? []).includes(key) })
      out.push(...fieldsOf(prop, v, sampler, [...path, key]))
    }
  } else if (s.type === 'array' && Array.isArray(value) && value.length > 0 && s.items) {
    out.push({ path: [...path, 0], schema: s.items, name: String(path.at(-1) ?? 'item'), required: false })
    out.push(...fieldsOf(s.items, value[0]!, sampler, [...path, 0]))
  }
  return out
}

const TEN_KB = 'x'.repeat(10 * 1024)
const SQL = "'; drop table x; --"

/** Strings every text field gets. */
export const HOSTILE_STRINGS: Array<[string, string]> = [
  ['empty string', ''],
  ['10 KB string', TEN_KB],
  ['NUL byte', 'a\u0000b'],
  ['lone surrogate', 'a\ud800b'],
  ['SQL metacharacters', SQL],
]

/**
 * Numbers every number field gets: negative, fractional, beyond int4 and int8, beyond a double
 * (1e400 parses as Infinity) and NaN as text.
 */
export const HOSTILE_NUMBERS: Array<[string, Value]> = [
  ['-1', -1],
  ['fraction', 1.5],
  ['2^31', 2 ** 31],
  ['2^63', new RawJson('9223372036854775808')],
  ['1e21', 1e21],
  ['1e400 (Infinity)', new RawJson('1e400')],
  ['"NaN"', 'NaN'],
]

/** RFC 3339 date-times that PostgreSQL or JavaScript's Date cannot hold, or that do not exist. */
export const DATE_TIMES: Array<[string, string]> = [
  ['year 0', '0000-01-01T00:00:00Z'],
  ['year 9999', '9999-12-31T23:59:59.999Z'],
  ['February 30', '2024-02-30T10:00:00Z'],
  ['leap second', '2016-12-31T23:59:60Z'],
  ['year 1 that is year 0 in UTC', '0001-01-01T00:00:00+01:00'],
  ['year 9999 that is year 10000 in UTC', '9999-12-31T23:59:59-01:00'],
]

export const DATES: Array<[string, string]> = [
  ['year 0', '0000-01-01'],
  ['year 9999', '9999-12-31'],
  ['February 29 of 2023', '2023-02-29'],
]

const WRONG_TYPES: Array<[string, string, Value]> = [
  ['null', 'null', null],
  ['boolean', 'boolean', true],
  ['number', 'number', 42],
  ['string', 'string', 'x'],
  ['array', 'array', []],
  ['object', 'object', {}],
]

/** Nonexistent ids: the right prefix and shape, or another kind's prefix. */
export function foreignIds(prefix: string | undefined): Array<[string, string]> {
  const zeros = '0'.repeat(26)
  return [
    ['id that does not exist', `${prefix ?? 'prod'}_${zeros}`],
    ['id of the wrong prefix', `${prefix === 'cus' ? 'prod' : 'cus'}_${zeros}`],
  ]
}

/** Every corruption of one field: its kind decides which apply. */
export function fieldCorruptions(field: Field, base: Value, sampler: Sampler): Corruption[] {
  const types = typesOf(field.schema, sampler.deref)
  const branches = branchesOf(field.schema, sampler.deref)
  const out: Corruption[] = []
  const add = (label: string, value: Value | typeof REMOVE) => out.push({ label, value })
  if (field.required) add('missing', REMOVE)
  // Null, and a scalar and a container of types the field does not take.
  const refused = WRONG_TYPES.filter(
    ([, type]) => !(types.has(type) || (type === 'number' && types.has('integer'))),
  )
  for (const group of [['null'], ['number', 'string', 'boolean'], ['object', 'array']]) {
    const wrong = refused.find(([, type]) => group.includes(type))
    if (wrong) add(`wrong type: ${wrong[0]}`, wrong[2])
  }
  if (types.has('string')) {
    // An enumeration refuses every other string alike: two stand for the rest.
    const enumOnly = branches.every((b) => b.type !== 'string' || b.enum || b.const !== undefined)
    for (const [label, value] of HOSTILE_STRINGS)
      if (!enumOnly || label === '10 KB string' || label === 'SQL metacharacters') add(label, value)
    const str = branches.find((b) => b.type === 'string') ?? {}
    const prefix = idPrefix(str)
    if (prefix || /(^|_)(id|ids|ref|code)$/.test(field.name)) {
      for (const [label, value] of foreignIds(prefix)) add(label, value)
    }
    if (str.format === 'date-time') for (const [label, value] of DATE_TIMES) add(label, value)
    if (str.format === 'date') for (const [label, value] of DATES) add(label, value)
    if (str.format === 'email') {
      add('email without domain', 'a@')
      add('email of 300 characters', `${'x'.repeat(288)}@example.test`)
    }
    if (str.format === 'uri') add('javascript: URI', 'javascript:alert(1)')
  }
  if (types.has('integer') || types.has('number')) {
    const num = branches.find((b) => b.type === 'integer' || b.type === 'number') ?? {}
    const seen = new Set<string>()
    const numbers: Array<[string, Value]> = []
    const inRange = (n: number) => n >= (num.minimum ?? -Infinity) && n <= (num.maximum ?? Infinity)
    for (const [label, value] of HOSTILE_NUMBERS) {
      if (typeof value === 'string') continue // "NaN" as text: a wrong type, sent above
      const n = value instanceof RawJson ? Number(value.text) : (value as number)
      // Past a bound every integer is refused alike: the bound's neighbour stands for them.
      if (Number.isFinite(n) && Number.isInteger(n) && !inRange(n)) continue
      numbers.push([label, value])
    }
    if (typeof num.minimum === 'number') numbers.push(['minimum - 1', num.minimum - 1])
    if (typeof num.maximum === 'number') {
      numbers.push(['maximum', num.maximum], ['maximum + 1', num.maximum + 1])
    }
    for (const [label, value] of numbers) {
      const key = jsonText(value)
      if (seen.has(key)) continue
      seen.add(key)
      add(label, value)
    }
  }
  if (types.has('array')) {
    const arr = branches.find((b) => b.type === 'array') ?? {}
    const item =
      Array.isArray(base) && base.length > 0 ? base[0]! : sample(arr.items ?? {}, field.name, sampler)
    add('empty array', [])
    add('array of null', [null])
    add('10,000 items', new RawJson(`[${Array(10_000).fill(jsonText(item)).join(',')}]`))
    if (typeof item === 'string' && arr.uniqueItems) {
      // Distinct items keep uniqueItems satisfied, so that length is what is tested.
      const distinct = Array.from({ length: 10_000 }, (_, i) =>
        item.length > 6 ? item.slice(0, -6) + i.toString(36).padStart(6, '0') : `${item}${i}`,
      )
      add('10,000 distinct items', distinct)
    }
  }
  if (types.has('object')) {
    const obj = branches.find((b) => b.type === 'object') ?? {}
    add('empty object', {})
    add('deeply nested object', deeplyNested(5_000, 'object'))
    if (base && typeof base === 'object' && !Array.isArray(base)) {
      add('unknown property', { ...(base as Record<string, Value>), zz_not_a_field: 1 })
    }
    if (!obj.properties) {
      add('1,000 properties', Object.fromEntries(Array.from({ length: 1_000 }, (_, i) => [`k${i}`, 'v'])))
      add('key of 10 KB', { [TEN_KB]: 'v' })
      add('key with a NUL byte', { 'a\u0000b': 'v' })
      add('value nested 5,000 deep', { a: deeplyNested(5_000, 'object') })
    }
  }
  return out
}
