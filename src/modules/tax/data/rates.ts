/**
 * The tax rates this engine ships with, effective-dated and with the source of each. Loaded into
 * the database on start by `ensureTaxReferenceData` (once per version); admins edit them there.
 *
 * To change a rate: add an entry with the new `from` date, give the old one `to` (the same date:
 * `to` is exclusive), cite the announcement, and bump `version`. Never edit a past rate in place:
 * orders already taxed at it must stay explainable.
 *
 * Rates marked as effective from 2024-01-01 are those in force on that date and since; the data
 * does not reach further back, and a date of supply before a jurisdiction's first rate is refused.
 */
import type { JurisdictionEntry, RateEntry, RateKind, Source, TaxDataFile } from './types.ts'

const SINCE = '2024-01-01'

const EC: Source = {
  name: 'European Commission, DG TAXUD: VAT rates applied in the Member States of the European Union',
  url: 'https://taxation-customs.ec.europa.eu/taxation/vat/vat-directive/vat-rates_en',
}

type Rates = Partial<Record<Exclude<RateKind, 'zero' | 'exempt'>, string>>

/** Rates in force throughout, as percent strings, from SINCE. */
function steady(rates: Rates): RateEntry[] {
  return Object.entries(rates).map(([kind, percent]) => ({ kind: kind as RateKind, percent, from: SINCE }))
}

/** A rate replaced on `on`: `before` until the day before, `after` from that day. */
function change(kind: RateKind, before: string, after: string, on: string, source: Source): RateEntry[] {
  return [
    { kind, percent: before, from: SINCE, to: on, source },
    { kind, percent: after, from: on, source },
  ]
}

function eu(
  code: string,
  name: string,
  rates: RateEntry[],
  categories: Record<string, RateKind> = {},
  source: Source = EC,
): JurisdictionEntry {
  // Article 226(10) of Directive 2006/112/EC asks for the VAT payable per rate on the invoice.
  return { code, name, tax_name: 'VAT', tax_area: 'EU', rounding: 'invoice', source, rates, categories }
}

const EU: JurisdictionEntry[] = [
  eu('AT', 'Austria', steady({ standard: '20', reduced: '10', second_reduced: '13', parking: '13' }), {
    food: 'reduced',
    books: 'reduced',
  }),
  eu('BE', 'Belgium', steady({ standard: '21', reduced: '6', second_reduced: '12', parking: '12' }), {
    food: 'reduced',
    books: 'reduced',
  }),
  eu('BG', 'Bulgaria', steady({ standard: '20', reduced: '9' })),
  eu('CY', 'Cyprus', steady({ standard: '19', reduced: '5', second_reduced: '9' }), {
    food: 'reduced',
    books: 'reduced',
  }),
  eu('CZ', 'Czechia', steady({ standard: '21', reduced: '12' }), { food: 'reduced', books: 'zero' }),
  eu('DE', 'Germany', steady({ standard: '19', reduced: '7' }), { food: 'reduced', books: 'reduced' }),
  eu('DK', 'Denmark', steady({ standard: '25' })),
  eu(
    'EE',
    'Estonia',
    [
      ...change('standard', '22', '24', '2025-07-01', {
        name: 'Estonian Tax and Customs Board (EMTA): VAT rate rises to 24% from 1 July 2025',
        url: 'https://www.emta.ee/en/business-client/taxes-and-payment/value-added-tax',
      }),
      ...steady({ reduced: '9' }),
      { kind: 'second_reduced', percent: '13', from: '2025-01-01', label: 'VAT 13% (accommodation)' },
    ],
    { books: 'reduced' },
  ),
  eu('ES', 'Spain', steady({ standard: '21', reduced: '10', super_reduced: '4' }), {
    food: 'reduced',
    books: 'super_reduced',
  }),
  eu(
    'FI',
    'Finland',
    [
      ...change('standard', '24', '25.5', '2024-09-01', {
        name: 'Finnish Tax Administration (Vero): general VAT rate 25.5% from 1 September 2024',
        url: 'https://www.vero.fi/en/businesses-and-corporations/taxes-and-charges/vat/rates-of-vat/',
      }),
      ...steady({ reduced: '14', second_reduced: '10' }),
    ],
    // Books moved from 10% to 14% on 1 January 2025; the mapping follows the current law.
    { food: 'reduced', books: 'reduced' },
  ),
  eu('FR', 'France', steady({ standard: '20', reduced: '10', second_reduced: '5.5', super_reduced: '2.1' }), {
    food: 'second_reduced',
    books: 'second_reduced',
  }),
  eu('GR', 'Greece', steady({ standard: '24', reduced: '13', second_reduced: '6' }), {
    food: 'reduced',
    books: 'second_reduced',
  }),
  eu('HR', 'Croatia', steady({ standard: '25', reduced: '13', second_reduced: '5' }), {
    books: 'second_reduced',
  }),
  eu('HU', 'Hungary', steady({ standard: '27', reduced: '18', second_reduced: '5' }), {
    books: 'second_reduced',
  }),
  eu(
    'IE',
    'Ireland',
    steady({ standard: '23', reduced: '13.5', second_reduced: '9', super_reduced: '4.8', parking: '13.5' }),
    { food: 'zero', books: 'zero', childrens_clothing: 'zero' },
  ),
  eu('IT', 'Italy', steady({ standard: '22', reduced: '10', second_reduced: '5', super_reduced: '4' }), {
    food: 'reduced',
    books: 'super_reduced',
  }),
  eu('LT', 'Lithuania', steady({ standard: '21', reduced: '9', second_reduced: '5' }), { books: 'reduced' }),
  eu('LU', 'Luxembourg', steady({ standard: '17', reduced: '8', super_reduced: '3', parking: '14' }), {
    food: 'super_reduced',
    books: 'super_reduced',
    childrens_clothing: 'super_reduced',
  }),
  eu('LV', 'Latvia', steady({ standard: '21', reduced: '12', second_reduced: '5' })),
  eu('MT', 'Malta', steady({ standard: '18', reduced: '7', second_reduced: '5', parking: '12' }), {
    food: 'zero',
    books: 'second_reduced',
  }),
  eu('NL', 'Netherlands', steady({ standard: '21', reduced: '9' }), { food: 'reduced', books: 'reduced' }),
  eu('PL', 'Poland', steady({ standard: '23', reduced: '8', second_reduced: '5' }), {
    food: 'second_reduced',
    books: 'second_reduced',
  }),
  eu('PT', 'Portugal', steady({ standard: '23', reduced: '13', second_reduced: '6', parking: '13' }), {
    food: 'second_reduced',
    books: 'second_reduced',
  }),
  (() => {
    // Law 141/2025: 21% standard and one 11% reduced rate (replacing 9% and 5%) from 1 August 2025.
    const law: Source = {
      name: 'Romanian National Agency for Fiscal Administration (ANAF): Law 141/2025, VAT rates from 1 August 2025',
      url: 'https://www.anaf.ro/',
    }
    return eu(
      'RO',
      'Romania',
      [
        ...change('standard', '19', '21', '2025-08-01', law),
        ...change('reduced', '9', '11', '2025-08-01', law),
        ...change('second_reduced', '5', '11', '2025-08-01', law),
      ],
      { food: 'reduced', books: 'second_reduced' },
    )
  })(),
  eu('SE', 'Sweden', steady({ standard: '25', reduced: '12', second_reduced: '6' }), {
    food: 'reduced',
    books: 'second_reduced',
  }),
  eu('SI', 'Slovenia', steady({ standard: '22', reduced: '9.5', second_reduced: '5' }), {
    food: 'reduced',
    books: 'second_reduced',
  }),
  (() => {
    const act: Source = {
      name: 'Financial Administration of the Slovak Republic: VAT rates 23%, 19% and 5% from 1 January 2025',
      url: 'https://www.financnasprava.sk/en/businesses/taxes/value-added-tax',
    }
    return eu('SK', 'Slovakia', [
      ...change('standard', '20', '23', '2025-01-01', act),
      ...change('reduced', '10', '19', '2025-01-01', act),
      ...steady({ second_reduced: '5' }),
    ])
  })(),
]

const EUROPE_OTHER: JurisdictionEntry[] = [
  {
    code: 'GB',
    name: 'United Kingdom',
    tax_name: 'VAT',
    tax_area: 'GB',
    // HMRC allows rounding per line or per invoice (VAT Notice 700, section 16.6); per line is the default.
    rounding: 'line',
    source: {
      name: 'HM Revenue & Customs: VAT rates on different goods and services',
      url: 'https://www.gov.uk/guidance/rates-of-vat-on-different-goods-and-services',
    },
    rates: steady({ standard: '20', reduced: '5' }),
    categories: { food: 'zero', books: 'zero', childrens_clothing: 'zero' },
  },
  {
    code: 'NO',
    name: 'Norway',
    tax_name: 'MVA',
    tax_area: 'NO',
    rounding: 'invoice',
    source: {
      name: 'Norwegian Tax Administration (Skatteetaten): VAT rates',
      url: 'https://www.skatteetaten.no/en/rates/value-added-tax/',
    },
    rates: steady({ standard: '25', reduced: '15', second_reduced: '12' }),
    categories: { food: 'reduced', books: 'zero' },
  },
  {
    code: 'CH',
    name: 'Switzerland',
    tax_name: 'MWST',
    tax_area: 'CH',
    rounding: 'invoice',
    source: {
      name: 'Swiss Federal Tax Administration (ESTV/FTA): VAT rates in Switzerland from 1 January 2024',
      url: 'https://www.estv.admin.ch/estv/en/home/value-added-tax/vat-rates-switzerland.html',
    },
    rates: [
      ...steady({ standard: '8.1', reduced: '2.6' }),
      { kind: 'second_reduced', percent: '3.8', from: SINCE, label: 'MWST 3.8% (accommodation)' },
    ],
    categories: { food: 'reduced', books: 'reduced' },
  },
]

const CRA: Source = {
  name: 'Canada Revenue Agency: GST/HST rates by province',
  url: 'https://www.canada.ca/en/revenue-agency/services/tax/businesses/topics/gst-hst-businesses/charge-collect-which-rate/calculator.html',
}

function province(
  code: string,
  name: string,
  extra: Partial<JurisdictionEntry> & Pick<JurisdictionEntry, 'tax_name' | 'rates'>,
): JurisdictionEntry {
  return { code, name, tax_area: 'CA', rounding: 'invoice', source: CRA, ...extra }
}

/** The provincial sales taxes exempt basic groceries, books and children's clothing. */
const PST_EXEMPTIONS: Record<string, RateKind> = {
  food: 'exempt',
  books: 'exempt',
  childrens_clothing: 'exempt',
}

const CANADA: JurisdictionEntry[] = [
  {
    code: 'CA',
    name: 'Canada',
    tax_name: 'GST',
    tax_area: 'CA',
    rounding: 'invoice',
    source: CRA,
    rates: steady({ standard: '5' }),
    // Basic groceries are zero-rated (Excise Tax Act, Schedule VI, Part III).
    categories: { food: 'zero' },
  },
  province('CA-ON', 'Ontario', { tax_name: 'HST', replaces_parent: true, rates: steady({ standard: '13' }) }),
  province('CA-NB', 'New Brunswick', {
    tax_name: 'HST',
    replaces_parent: true,
    rates: steady({ standard: '15' }),
  }),
  province('CA-NL', 'Newfoundland and Labrador', {
    tax_name: 'HST',
    replaces_parent: true,
    rates: steady({ standard: '15' }),
  }),
  province('CA-PE', 'Prince Edward Island', {
    tax_name: 'HST',
    replaces_parent: true,
    rates: steady({ standard: '15' }),
  }),
  province('CA-NS', 'Nova Scotia', {
    tax_name: 'HST',
    replaces_parent: true,
    rates: change('standard', '15', '14', '2025-04-01', {
      name: 'Canada Revenue Agency: Nova Scotia HST rate decreases to 14% on 1 April 2025',
      url: 'https://www.canada.ca/en/revenue-agency/services/tax/businesses/topics/gst-hst-businesses/charge-collect-which-rate/calculator.html',
    }),
  }),
  province('CA-QC', 'Quebec', {
    tax_name: 'QST',
    requires_registration: true,
    source: {
      name: 'Revenu Québec: GST/HST and QST rates (QST 9.975%, computed on the price before GST)',
      url: 'https://www.revenuquebec.ca/en/businesses/consumption-taxes/gsthst-and-qst/',
    },
    rates: steady({ standard: '9.975' }),
    categories: { food: 'zero', books: 'zero' },
  }),
  province('CA-BC', 'British Columbia', {
    tax_name: 'PST',
    requires_registration: true,
    source: {
      name: 'Government of British Columbia: Provincial sales tax (PST)',
      url: 'https://www2.gov.bc.ca/gov/content/taxes/sales-taxes/pst',
    },
    rates: steady({ standard: '7' }),
    categories: PST_EXEMPTIONS,
  }),
  province('CA-SK', 'Saskatchewan', {
    tax_name: 'PST',
    requires_registration: true,
    source: {
      name: 'Government of Saskatchewan: Provincial sales tax',
      url: 'https://www.saskatchewan.ca/business/taxes-licensing-and-reporting/provincial-taxes-policies-and-bulletins/provincial-sales-tax',
    },
    rates: steady({ standard: '6' }),
    categories: PST_EXEMPTIONS,
  }),
  province('CA-MB', 'Manitoba', {
    tax_name: 'RST',
    requires_registration: true,
    source: {
      name: 'Manitoba Finance, Taxation Division: Retail sales tax',
      url: 'https://www.gov.mb.ca/finance/taxation/taxes/retail.html',
    },
    rates: steady({ standard: '7' }),
    categories: PST_EXEMPTIONS,
  }),
  ...['AB:Alberta', 'YT:Yukon', 'NT:Northwest Territories', 'NU:Nunavut'].map((p) => {
    const [code, name] = p.split(':') as [string, string]
    return province(`CA-${code}`, name, { tax_name: 'PST', levies_tax: false, rates: [] })
  }),
]

const ASIA_PACIFIC: JurisdictionEntry[] = [
  {
    code: 'AU',
    name: 'Australia',
    tax_name: 'GST',
    tax_area: 'AU',
    rounding: 'invoice',
    source: {
      name: 'Australian Taxation Office: Goods and services tax (GST)',
      url: 'https://www.ato.gov.au/businesses-and-organisations/gst-excise-and-indirect-taxes/gst',
    },
    rates: steady({ standard: '10' }),
    categories: { food: 'zero' },
  },
  {
    code: 'NZ',
    name: 'New Zealand',
    tax_name: 'GST',
    tax_area: 'NZ',
    rounding: 'invoice',
    source: { name: 'Inland Revenue (IRD): GST', url: 'https://www.ird.govt.nz/gst' },
    rates: steady({ standard: '15' }),
  },
  {
    code: 'JP',
    name: 'Japan',
    tax_name: 'JCT',
    tax_area: 'JP',
    // The qualified invoice system rounds once per rate per invoice.
    rounding: 'invoice',
    source: {
      name: 'National Tax Agency Japan: Consumption tax (10%, reduced 8% for food and beverages)',
      url: 'https://www.nta.go.jp/english/taxes/consumption_tax/',
    },
    rates: steady({ standard: '10', reduced: '8' }),
    categories: { food: 'reduced' },
  },
  {
    code: 'SG',
    name: 'Singapore',
    tax_name: 'GST',
    tax_area: 'SG',
    rounding: 'invoice',
    source: {
      name: 'Inland Revenue Authority of Singapore (IRAS): GST rate 9% from 1 January 2024',
      url: 'https://www.iras.gov.sg/taxes/goods-services-tax-(gst)',
    },
    rates: [
      { kind: 'standard', percent: '8', from: '2023-01-01', to: '2024-01-01' },
      { kind: 'standard', percent: '9', from: '2024-01-01' },
    ],
  },
]

/** State, name, base rate (percent), economic-nexus threshold in dollars, revenue agency and its site. */
const US_STATES: Array<[string, string, string, number | null, string, string]> = [
  ['AL', 'Alabama', '4', 250_000, 'Alabama Department of Revenue', 'https://www.revenue.alabama.gov/'],
  ['AK', 'Alaska', '0', null, 'Alaska Department of Revenue', 'https://dor.alaska.gov/'],
  ['AZ', 'Arizona', '5.6', 100_000, 'Arizona Department of Revenue', 'https://azdor.gov/'],
  [
    'AR',
    'Arkansas',
    '6.5',
    100_000,
    'Arkansas Department of Finance and Administration',
    'https://www.dfa.arkansas.gov/',
  ],
  [
    'CA',
    'California',
    '7.25',
    500_000,
    'California Department of Tax and Fee Administration',
    'https://www.cdtfa.ca.gov/',
  ],
  ['CO', 'Colorado', '2.9', 100_000, 'Colorado Department of Revenue', 'https://tax.colorado.gov/'],
  [
    'CT',
    'Connecticut',
    '6.35',
    100_000,
    'Connecticut Department of Revenue Services',
    'https://portal.ct.gov/drs',
  ],
  ['DE', 'Delaware', '0', null, 'Delaware Division of Revenue', 'https://revenue.delaware.gov/'],
  ['DC', 'District of Columbia', '6', 100_000, 'DC Office of Tax and Revenue', 'https://otr.cfo.dc.gov/'],
  ['FL', 'Florida', '6', 100_000, 'Florida Department of Revenue', 'https://floridarevenue.com/'],
  ['GA', 'Georgia', '4', 100_000, 'Georgia Department of Revenue', 'https://dor.georgia.gov/'],
  ['HI', 'Hawaii', '4', 100_000, 'Hawaii Department of Taxation', 'https://tax.hawaii.gov/'],
  ['ID', 'Idaho', '6', 100_000, 'Idaho State Tax Commission', 'https://tax.idaho.gov/'],
  ['IL', 'Illinois', '6.25', 100_000, 'Illinois Department of Revenue', 'https://tax.illinois.gov/'],
  ['IN', 'Indiana', '7', 100_000, 'Indiana Department of Revenue', 'https://www.in.gov/dor/'],
  ['IA', 'Iowa', '6', 100_000, 'Iowa Department of Revenue', 'https://revenue.iowa.gov/'],
  ['KS', 'Kansas', '6.5', 100_000, 'Kansas Department of Revenue', 'https://www.ksrevenue.gov/'],
  ['KY', 'Kentucky', '6', 100_000, 'Kentucky Department of Revenue', 'https://revenue.ky.gov/'],
  ['LA', 'Louisiana', '5', 100_000, 'Louisiana Department of Revenue', 'https://revenue.louisiana.gov/'],
  ['ME', 'Maine', '5.5', 100_000, 'Maine Revenue Services', 'https://www.maine.gov/revenue/'],
  ['MD', 'Maryland', '6', 100_000, 'Comptroller of Maryland', 'https://www.marylandtaxes.gov/'],
  [
    'MA',
    'Massachusetts',
    '6.25',
    100_000,
    'Massachusetts Department of Revenue',
    'https://www.mass.gov/orgs/massachusetts-department-of-revenue',
  ],
  ['MI', 'Michigan', '6', 100_000, 'Michigan Department of Treasury', 'https://www.michigan.gov/taxes'],
  [
    'MN',
    'Minnesota',
    '6.875',
    100_000,
    'Minnesota Department of Revenue',
    'https://www.revenue.state.mn.us/',
  ],
  ['MS', 'Mississippi', '7', 250_000, 'Mississippi Department of Revenue', 'https://www.dor.ms.gov/'],
  ['MO', 'Missouri', '4.225', 100_000, 'Missouri Department of Revenue', 'https://dor.mo.gov/'],
  ['MT', 'Montana', '0', null, 'Montana Department of Revenue', 'https://mtrevenue.gov/'],
  ['NE', 'Nebraska', '5.5', 100_000, 'Nebraska Department of Revenue', 'https://revenue.nebraska.gov/'],
  ['NV', 'Nevada', '6.85', 100_000, 'Nevada Department of Taxation', 'https://tax.nv.gov/'],
  [
    'NH',
    'New Hampshire',
    '0',
    null,
    'New Hampshire Department of Revenue Administration',
    'https://www.revenue.nh.gov/',
  ],
  [
    'NJ',
    'New Jersey',
    '6.625',
    100_000,
    'New Jersey Division of Taxation',
    'https://www.nj.gov/treasury/taxation/',
  ],
  [
    'NM',
    'New Mexico',
    '4.875',
    100_000,
    'New Mexico Taxation and Revenue Department',
    'https://www.tax.newmexico.gov/',
  ],
  [
    'NY',
    'New York',
    '4',
    500_000,
    'New York State Department of Taxation and Finance',
    'https://www.tax.ny.gov/',
  ],
  ['NC', 'North Carolina', '4.75', 100_000, 'North Carolina Department of Revenue', 'https://www.ncdor.gov/'],
  [
    'ND',
    'North Dakota',
    '5',
    100_000,
    'North Dakota Office of State Tax Commissioner',
    'https://www.tax.nd.gov/',
  ],
  ['OH', 'Ohio', '5.75', 100_000, 'Ohio Department of Taxation', 'https://tax.ohio.gov/'],
  ['OK', 'Oklahoma', '4.5', 100_000, 'Oklahoma Tax Commission', 'https://oklahoma.gov/tax.html'],
  ['OR', 'Oregon', '0', null, 'Oregon Department of Revenue', 'https://www.oregon.gov/dor/'],
  ['PA', 'Pennsylvania', '6', 100_000, 'Pennsylvania Department of Revenue', 'https://www.revenue.pa.gov/'],
  ['RI', 'Rhode Island', '7', 100_000, 'Rhode Island Division of Taxation', 'https://tax.ri.gov/'],
  ['SC', 'South Carolina', '6', 100_000, 'South Carolina Department of Revenue', 'https://dor.sc.gov/'],
  ['SD', 'South Dakota', '4.2', 100_000, 'South Dakota Department of Revenue', 'https://dor.sd.gov/'],
  ['TN', 'Tennessee', '7', 100_000, 'Tennessee Department of Revenue', 'https://www.tn.gov/revenue.html'],
  ['TX', 'Texas', '6.25', 500_000, 'Texas Comptroller of Public Accounts', 'https://comptroller.texas.gov/'],
  ['UT', 'Utah', '6.1', 100_000, 'Utah State Tax Commission', 'https://tax.utah.gov/'],
  ['VT', 'Vermont', '6', 100_000, 'Vermont Department of Taxes', 'https://tax.vermont.gov/'],
  ['VA', 'Virginia', '5.3', 100_000, 'Virginia Department of Taxation', 'https://www.tax.virginia.gov/'],
  ['WA', 'Washington', '6.5', 100_000, 'Washington State Department of Revenue', 'https://dor.wa.gov/'],
  ['WV', 'West Virginia', '6', 100_000, 'West Virginia State Tax Department', 'https://tax.wv.gov/'],
  ['WI', 'Wisconsin', '5', 100_000, 'Wisconsin Department of Revenue', 'https://www.revenue.wi.gov/'],
  ['WY', 'Wyoming', '4', 100_000, 'Wyoming Department of Revenue', 'https://revenue.wyo.gov/'],
]

const LOUISIANA_2025: Source = {
  name: 'Louisiana Department of Revenue: state sales tax rate 5% from 1 January 2025 (Act 11 of 2024)',
  url: 'https://revenue.louisiana.gov/',
}

const UNITED_STATES: JurisdictionEntry[] = [
  {
    code: 'US',
    name: 'United States',
    tax_name: 'Sales tax',
    tax_area: 'US',
    rounding: 'invoice',
    levies_tax: false,
    source: {
      name: 'Tax Foundation: State and Local Sales Tax Rates, 2025 (no federal sales tax)',
      url: 'https://taxfoundation.org/data/all/state/sales-tax-rates-2025/',
    },
    rates: [],
  },
  ...US_STATES.map(([state, name, percent, threshold, agency, url]): JurisdictionEntry => {
    const levies = percent !== '0'
    return {
      code: `US-${state}`,
      name,
      tax_name: 'Sales tax',
      tax_area: 'US',
      rounding: 'invoice',
      requires_registration: true,
      levies_tax: levies,
      ...(threshold ? { nexus_threshold_usd: threshold } : {}),
      source: { name: `${agency}: state sales tax rate`, url },
      rates: !levies
        ? []
        : state === 'LA'
          ? change('standard', '4.45', '5', '2025-01-01', LOUISIANA_2025)
          : steady({ standard: percent }),
    }
  }),
]

/** The data set: bump `version` with every change. */
export const TAX_DATA: TaxDataFile = {
  version: '2025.10.1',
  categories: [
    { code: 'standard', name: 'Standard rate', default_kind: 'standard' },
    { code: 'reduced', name: 'Reduced rate', default_kind: 'reduced' },
    { code: 'super_reduced', name: 'Super-reduced rate', default_kind: 'super_reduced' },
    { code: 'zero', name: 'Zero-rated', default_kind: 'zero' },
    { code: 'exempt', name: 'Exempt', default_kind: 'exempt' },
    { code: 'digital_services', name: 'Electronically supplied services', default_kind: 'standard' },
    { code: 'food', name: 'Food and groceries', default_kind: 'standard' },
    { code: 'books', name: 'Books', default_kind: 'standard' },
    { code: 'childrens_clothing', name: "Children's clothing", default_kind: 'standard' },
    { code: 'shipping', name: 'Shipping and delivery', default_kind: 'standard' },
  ],
  jurisdictions: [...EU, ...EUROPE_OTHER, ...CANADA, ...ASIA_PACIFIC, ...UNITED_STATES],
}
