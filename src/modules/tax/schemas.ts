/** Wire schemas of the tax API. */
import { Type } from 'typebox'
import { RATE_KINDS } from './data/types.ts'

const strict = { additionalProperties: false } as const

export const CountryCode = Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2' })
export const RegionCode = Type.String({
  pattern: '^[A-Z0-9]{1,3}$',
  description: 'ISO 3166-2 subdivision part',
})
export const JurisdictionCode = Type.String({
  pattern: '^[A-Z]{2}(-[A-Z0-9]{1,3})?$',
  description: '`DE`, `CA-QC`, `US-NY`',
})
export const CategoryCode = Type.String({ pattern: '^[a-z][a-z0-9_]{0,63}$' })
/** A calendar date; the year 0000 passes the format but is no PostgreSQL date. */
export const DateOnly = Type.String({ format: 'date', pattern: '^(?!0000)', description: 'YYYY-MM-DD' })
export const RateKind = Type.Union(RATE_KINDS.map((k) => Type.Literal(k)))
export const PositiveRateKind = Type.Union(
  RATE_KINDS.filter((k) => k !== 'zero' && k !== 'exempt').map((k) => Type.Literal(k)),
)
export const Percent = Type.String({
  pattern: '^\\d{1,3}(\\.\\d{1,4})?$',
  description: 'percent: "19", "9.975"',
})
const Minor = (description: string) => Type.Integer({ minimum: 0, maximum: 1e15, description })

export const Address = Type.Object(
  {
    country: CountryCode,
    region: Type.Optional(RegionCode),
    postal_code: Type.Optional(Type.String({ minLength: 1, maxLength: 16 })),
  },
  strict,
)

export const TaxInput = Type.Object(
  {
    currency: Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217' }),
    prices_include_tax: Type.Boolean(),
    date_of_supply: DateOnly,
    customer: Type.Object(
      {
        address: Address,
        vat_id: Type.Optional(Type.String({ minLength: 2, maxLength: 32 })),
        is_business: Type.Optional(Type.Boolean()),
      },
      strict,
    ),
    lines: Type.Array(
      Type.Object(
        {
          id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
          unit_amount: Minor('price of one unit in minor units'),
          quantity: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
          tax_category: CategoryCode,
          discount_amount: Type.Optional(Minor('discount on the whole line')),
        },
        strict,
      ),
      { minItems: 1, maxItems: 500 },
    ),
    shipping: Type.Optional(
      Type.Object(
        {
          amount: Minor('shipping charge in minor units'),
          tax_category: Type.Optional(CategoryCode),
          discount_amount: Type.Optional(Minor('discount on shipping')),
        },
        strict,
      ),
    ),
    discount_amount: Type.Optional(Minor('order discount, spread over the lines')),
  },
  strict,
)

/** The preview: a cart plus, optionally, a hypothetical store in place of the configured one. */
export const PreviewBody = Type.Object(
  {
    ...TaxInput.properties,
    store: Type.Optional(
      Type.Object(
        {
          origin_country: CountryCode,
          origin_region: Type.Optional(RegionCode),
          registrations: Type.Optional(Type.Array(JurisdictionCode, { maxItems: 200 })),
          oss_opt_in: Type.Optional(Type.Boolean()),
          eu_distance_sales_eur: Type.Optional(
            Type.Object({ current_year: Minor('EUR cents'), previous_year: Minor('EUR cents') }, strict),
          ),
        },
        strict,
      ),
    ),
  },
  strict,
)

const TaxLine = Type.Object({
  jurisdiction: Type.String(),
  jurisdiction_name: Type.String(),
  tax_name: Type.String(),
  rate_kind: Type.String(),
  rate: Type.String(),
  rate_ppm: Type.Integer(),
  label: Type.String(),
  treatment: Type.String(),
  taxable_amount: Type.Integer(),
  tax_amount: Type.Integer(),
  postal_prefix: Type.Optional(Type.String()),
  rate_id: Type.Optional(Type.String()),
})

const SupplyView = Type.Object({ treatment: Type.String(), country: Type.String(), reason: Type.String() })

export const TaxResult = Type.Object(
  {
    provider: Type.String(),
    currency: Type.String(),
    prices_include_tax: Type.Boolean(),
    date_of_supply: Type.String(),
    place_of_supply: Type.Object({
      goods: Type.Optional(SupplyView),
      digital_services: Type.Optional(SupplyView),
    }),
    lines: Type.Array(
      Type.Object({
        id: Type.String(),
        kind: Type.String(),
        tax_category: Type.String(),
        quantity: Type.Integer(),
        amount: Type.Integer(),
        discount_amount: Type.Integer(),
        net_amount: Type.Integer(),
        tax_amount: Type.Integer(),
        gross_amount: Type.Integer(),
        taxes: Type.Array(TaxLine),
      }),
    ),
    taxes: Type.Array(Type.Object({ ...TaxLine.properties, rounding: Type.String() })),
    totals: Type.Object({
      amount: Type.Integer(),
      discount: Type.Integer(),
      net: Type.Integer(),
      tax: Type.Integer(),
      gross: Type.Integer(),
    }),
    notes: Type.Array(Type.String()),
    working: Type.Optional(Type.Array(Type.String())),
  },
  { $id: 'TaxResult' },
)

export const Jurisdiction = Type.Object(
  {
    code: Type.String(),
    country: Type.String(),
    subdivision: Type.Union([Type.String(), Type.Null()]),
    name: Type.String(),
    tax_name: Type.String(),
    tax_area: Type.String(),
    rounding: Type.Union([Type.Literal('line'), Type.Literal('invoice')]),
    replaces_parent: Type.Boolean(),
    requires_registration: Type.Boolean(),
    levies_tax: Type.Boolean(),
    nexus_threshold_usd: Type.Union([Type.Integer(), Type.Null()]),
    source_name: Type.String(),
    source_url: Type.String(),
    origin: Type.String(),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'TaxJurisdiction' },
)

export const Rate = Type.Object(
  {
    id: Type.String(),
    jurisdiction: Type.String(),
    kind: Type.String(),
    rate: Type.String(),
    rate_ppm: Type.Integer(),
    label: Type.String(),
    valid_from: Type.String(),
    valid_to: Type.Union([Type.String(), Type.Null()]),
    postal_prefix: Type.Union([Type.String(), Type.Null()]),
    source_name: Type.String(),
    source_url: Type.String(),
    origin: Type.String(),
  },
  { $id: 'TaxRate' },
)

export const JurisdictionDetail = Type.Object({
  ...Jurisdiction.properties,
  rates: Type.Array(Type.Ref('TaxRate')),
  category_rules: Type.Array(Type.Object({ category: Type.String(), rate_kind: Type.String() })),
})

export const UpdateJurisdiction = Type.Object(
  {
    rounding: Type.Optional(Type.Union([Type.Literal('line'), Type.Literal('invoice')])),
    nexus_threshold_usd: Type.Optional(
      Type.Union([Type.Integer({ minimum: 0, maximum: 1_000_000_000_000 }), Type.Null()]),
    ),
    source_name: Type.Optional(Type.String({ minLength: 1, maxLength: 300 })),
    source_url: Type.Optional(Type.String({ format: 'uri', maxLength: 500 })),
  },
  { ...strict, minProperties: 1 },
)

const Label = Type.String({ minLength: 1, maxLength: 120 })
const SourceName = Type.String({
  minLength: 1,
  maxLength: 300,
  description: 'the authority that publishes the rate',
})
const SourceUrl = Type.String({ format: 'uri', maxLength: 500 })

export const CreateRate = Type.Object(
  {
    jurisdiction: JurisdictionCode,
    kind: PositiveRateKind,
    rate: Percent,
    label: Label,
    valid_from: DateOnly,
    valid_to: Type.Optional(Type.Union([DateOnly, Type.Null()])),
    postal_prefix: Type.Optional(
      Type.Union([
        Type.String({ pattern: '^[A-Z0-9]{1,10}$', description: 'ZIP or postal prefix' }),
        Type.Null(),
      ]),
    ),
    source_name: SourceName,
    source_url: SourceUrl,
    supersede: Type.Optional(
      Type.Boolean({
        description: 'end the open-ended rate of this kind in force on valid_from at that date',
      }),
    ),
  },
  strict,
)

export const UpdateRate = Type.Object(
  {
    rate: Type.Optional(Percent),
    label: Type.Optional(Label),
    valid_from: Type.Optional(DateOnly),
    valid_to: Type.Optional(Type.Union([DateOnly, Type.Null()])),
    source_name: Type.Optional(SourceName),
    source_url: Type.Optional(SourceUrl),
  },
  { ...strict, minProperties: 1 },
)

export const RatesQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    jurisdiction: Type.Optional(JurisdictionCode),
    kind: Type.Optional(RateKind),
    on: Type.Optional(DateOnly),
  },
  strict,
)

export const JurisdictionsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    country: Type.Optional(CountryCode),
  },
  strict,
)

export const Category = Type.Object({
  code: Type.String(),
  name: Type.String(),
  default_kind: Type.String(),
  built_in: Type.Boolean(),
})

export const PutCategory = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 120 }), default_kind: RateKind },
  strict,
)

export const PutCategoryRule = Type.Object({ rate_kind: RateKind }, strict)

export const Settings = Type.Object({
  origin_country: Type.Union([Type.String(), Type.Null()]),
  origin_region: Type.Union([Type.String(), Type.Null()]),
  oss_opt_in: Type.Boolean(),
  provider: Type.String(),
  provider_url: Type.Union([Type.String(), Type.Null()]),
  provider_timeout_ms: Type.Integer(),
  data_version: Type.Union([Type.String(), Type.Null()]),
  registrations: Type.Array(
    Type.Object({ jurisdiction: Type.String(), number: Type.Union([Type.String(), Type.Null()]) }),
  ),
})

export const UpdateSettings = Type.Object(
  {
    origin_country: Type.Optional(CountryCode),
    origin_region: Type.Optional(Type.Union([RegionCode, Type.Null()])),
    oss_opt_in: Type.Optional(Type.Boolean()),
    provider: Type.Optional(Type.Union([Type.Literal('builtin'), Type.Literal('external')])),
    provider_url: Type.Optional(Type.Union([Type.String({ format: 'uri', maxLength: 500 }), Type.Null()])),
    provider_timeout_ms: Type.Optional(Type.Integer({ minimum: 50, maximum: 30_000 })),
  },
  { ...strict, minProperties: 1 },
)

export const PutRegistration = Type.Object(
  { number: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()])) },
  strict,
)

export const YearQuery = Type.Object(
  { year: Type.Optional(Type.Integer({ minimum: 2000, maximum: 2100 })) },
  strict,
)

const CurrencyKey = Type.String({ pattern: '^[A-Z]{3}$' })

/** Which quarter's OSS figures, and the exchange rates of its last day. */
export const OssReturnBody = Type.Object(
  {
    year: Type.Integer({ minimum: 2000, maximum: 2100 }),
    quarter: Type.Integer({ minimum: 1, maximum: 4 }),
    exchange_rates: Type.Optional(
      Type.Record(
        CurrencyKey,
        Type.String({
          pattern: '^\\d{1,9}(\\.\\d{1,6})?$',
          description: 'units of the currency per EUR, as the ECB quotes them: "11.0485"',
        }),
        {
          maxProperties: 200,
          additionalProperties: false,
          description:
            "the ECB's rate of each currency the quarter's sales are priced in, for the quarter's last day (or its next publication)",
        },
      ),
    ),
  },
  strict,
)

const OssFigures = {
  sales: Type.Integer(),
  net_eur: Type.Integer({ description: 'EUR cents' }),
  tax_eur: Type.Integer({ description: 'EUR cents' }),
}

export const OssReturn = Type.Object({
  year: Type.Integer(),
  quarter: Type.Integer(),
  from: Type.String({ description: 'first day of the quarter' }),
  to: Type.String({ description: 'last day of the quarter, whose exchange rates apply' }),
  exchange_rates: Type.Record(Type.String(), Type.String()),
  countries: Type.Array(
    Type.Object({
      country: Type.String({ description: 'member state of consumption' }),
      ...OssFigures,
      currencies: Type.Array(
        Type.Object({
          currency: Type.String(),
          net_amount: Type.Integer({ description: "in the currency's minor unit" }),
          tax_amount: Type.Integer({ description: "in the currency's minor unit" }),
          ...OssFigures,
        }),
      ),
    }),
  ),
  totals: Type.Object(OssFigures),
})

export const CheckVatIdBody = Type.Object(
  { vat_id: Type.String({ minLength: 2, maxLength: 32 }), country: Type.Optional(CountryCode) },
  strict,
)

export const CodeParams = Type.Object({ code: JurisdictionCode })
export const RuleParams = Type.Object({ code: JurisdictionCode, category: CategoryCode })
export const CategoryParams = Type.Object({ code: CategoryCode })
export const RateIdParams = Type.Object({ id: Type.String({ pattern: '^txr_[a-z0-9_-]{1,80}$' }) })
