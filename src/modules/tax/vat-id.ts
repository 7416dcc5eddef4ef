/**
 * VAT identification numbers: format and check digits per country, through `jsvat` (EU member
 * states, the UK, Norway and Switzerland). This proves a number is well formed, not that it is
 * registered: a VIES lookup is the next step and needs the network.
 */
import { checkVAT, countries } from 'jsvat'

// Only the VAT areas the engine taxes: jsvat also knows Brazil, Russia, Serbia and Andorra.
const UNSUPPORTED = new Set(['Europe', 'Brazil', 'Russian Federation', 'Serbia', 'Andorra'])
const SUPPORTED = countries.filter((c) => !UNSUPPORTED.has(c.name))

export interface VatIdCheck {
  valid: boolean
  /** The number normalised: upper case, no spaces, dots or dashes. */
  normalized: string
  /** ISO 3166-1 country of the number (EL → GR, XI → GB), when the prefix is recognised. */
  country: string | undefined
  reason?: string
}

/** The country a VAT id prefix stands for: Greece writes EL, Northern Ireland XI. */
function prefixCountry(prefix: string): string {
  if (prefix === 'EL') return 'GR'
  if (prefix === 'XI') return 'GB'
  return prefix
}

/** Checks format and check digits of a VAT id, and that it belongs to `country` when given. */
export function checkVatId(raw: string, country?: string): VatIdCheck {
  const normalized = raw.toUpperCase().replace(/[\s.\-/]+/g, '')
  const prefix = normalized.slice(0, 2)
  const owner = /^[A-Z]{2}/.test(prefix) ? prefixCountry(prefix) : undefined
  // Northern Ireland's XI numbers are UK numbers with another prefix; jsvat knows only GB.
  const checked = checkVAT(prefix === 'XI' ? `GB${normalized.slice(2)}` : normalized, SUPPORTED)
  if (!checked.isSupportedCountry || !owner) {
    return { valid: false, normalized, country: owner, reason: 'has no recognised country prefix' }
  }
  if (!checked.isValidFormat) {
    return { valid: false, normalized, country: owner, reason: `is not in the format of a ${owner} VAT id` }
  }
  if (!checked.isValid) return { valid: false, normalized, country: owner, reason: 'fails its check digits' }
  if (country && owner !== country) {
    return { valid: false, normalized, country: owner, reason: `belongs to ${owner}, not ${country}` }
  }
  return { valid: true, normalized, country: owner }
}
