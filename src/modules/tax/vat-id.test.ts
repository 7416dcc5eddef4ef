/** VAT id checks through jsvat: check digits per country, the EL and XI prefixes, country mismatch. */
import { describe, expect, it } from 'vitest'
import { checkVatId } from './vat-id.ts'

describe('VAT id check', () => {
  it('accepts well-formed numbers with correct check digits', () => {
    for (const [id, country] of [
      ['DE136695976', 'DE'],
      ['ATU13585627', 'AT'],
      ['FR40303265045', 'FR'],
      ['NL004495445B01', 'NL'],
      ['EL094259216', 'GR'],
      ['IE6388047V', 'IE'],
      ['IT00743110157', 'IT'],
      ['GB980780684', 'GB'],
      ['XI980780684', 'GB'],
      ['CHE-116.281.710 MWST', 'CH'],
    ] as const) {
      expect(checkVatId(id, country), id).toMatchObject({ valid: true, country })
    }
  })

  it('refuses bad check digits, bad formats, unknown prefixes and another country’s number', () => {
    expect(checkVatId('DE136695975', 'DE')).toMatchObject({ valid: false, reason: 'fails its check digits' })
    expect(checkVatId('DE12345', 'DE')).toMatchObject({
      valid: false,
      reason: 'is not in the format of a DE VAT id',
    })
    expect(checkVatId('GR094259216', 'GR').valid).toBe(false)
    expect(checkVatId('EU123456789').valid).toBe(false)
    expect(checkVatId('136695976', 'DE').valid).toBe(false)
    expect(checkVatId('FR40303265045', 'DE')).toMatchObject({ valid: false, reason: 'belongs to FR, not DE' })
  })
})
