/**
 * TOTP against the RFC 6238 and RFC 4648 vectors, plus the replay and drift rules and recovery codes
 * that the RFCs leave to the implementer.
 */
import { describe, expect, it } from 'vitest'
import {
  base32Decode,
  base32Encode,
  currentStep,
  generateRecoveryCodes,
  generateTotpSecret,
  hashRecoveryCode,
  otpauthUri,
  totpCode,
  verifyTotp,
} from './totp.ts'

const RFC_SECRET = base32Encode(Buffer.from('12345678901234567890', 'ascii'))

describe('base32', () => {
  const vectors: [string, string][] = [
    ['', ''],
    ['f', 'MY'],
    ['fo', 'MZXQ'],
    ['foo', 'MZXW6'],
    ['foob', 'MZXW6YQ'],
    ['fooba', 'MZXW6YTB'],
    ['foobar', 'MZXW6YTBOI'],
  ]

  it.each(vectors)('encodes %j as %j and decodes it back', (plain, encoded) => {
    expect(base32Encode(Buffer.from(plain))).toBe(encoded)
    expect(base32Decode(encoded).toString()).toBe(plain)
  })

  it('decodes lower case, spaces and padding', () => {
    expect(base32Decode('mzxw 6ytb oi======').toString()).toBe('foobar')
    expect(base32Decode('MZXW6===').toString()).toBe('foo')
  })

  it('throws on characters outside the alphabet', () => {
    for (const bad of ['MZXW1', 'MZXW0', 'MZXW8', 'MZ-XW', 'MZXWé']) expect(() => base32Decode(bad)).toThrow()
  })

  it('throws on a length no whole number of bytes can produce', () => {
    for (const bad of ['M', 'MZX', 'MZXW6Y']) expect(() => base32Decode(bad)).toThrow()
  })

  it('round-trips random bytes', () => {
    for (let n = 0; n < 40; n++) {
      const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 97 + n * 31) & 0xff))
      expect(base32Decode(base32Encode(bytes)).equals(bytes)).toBe(true)
    }
  })
})

describe('totpCode', () => {
  it('matches the RFC 6238 appendix B SHA-1 vectors (last 6 digits)', () => {
    expect(RFC_SECRET).toBe('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ')
    const vectors: [number, string][] = [
      [59, '287082'],
      [1111111109, '081804'],
      [1111111111, '050471'],
      [1234567890, '005924'],
      [2000000000, '279037'],
      [20000000000, '353130'],
    ]
    for (const [seconds, code] of vectors)
      expect(totpCode(RFC_SECRET, currentStep(seconds * 1000))).toBe(code)
  })

  it('rejects negative or fractional steps', () => {
    expect(() => totpCode(RFC_SECRET, -1)).toThrow(RangeError)
    expect(() => totpCode(RFC_SECRET, 1.5)).toThrow(RangeError)
  })
})

describe('currentStep', () => {
  it('counts 30-second steps since the epoch', () => {
    expect(currentStep(0)).toBe(0)
    expect(currentStep(29_999)).toBe(0)
    expect(currentStep(30_000)).toBe(1)
    expect(currentStep(59_000)).toBe(1)
  })
})

describe('generateTotpSecret', () => {
  it('makes distinct 20-byte secrets in unpadded base32', () => {
    const a = generateTotpSecret()
    const b = generateTotpSecret()
    expect(a).toMatch(/^[A-Z2-7]{32}$/)
    expect(base32Decode(a)).toHaveLength(20)
    expect(a).not.toBe(b)
  })
})

describe('verifyTotp', () => {
  const nowMs = 1_700_000_000_000
  const now = currentStep(nowMs)
  const codeAt = (step: number) => totpCode(RFC_SECRET, step)

  it('accepts the current step and one either side, returning the step matched', () => {
    for (const step of [now - 1, now, now + 1]) {
      expect(verifyTotp(RFC_SECRET, codeAt(step), { nowMs, lastUsedStep: -1 })).toBe(step)
    }
  })

  it('rejects codes two steps away', () => {
    for (const step of [now - 2, now + 2]) {
      expect(verifyTotp(RFC_SECRET, codeAt(step), { nowMs, lastUsedStep: -1 })).toBeNull()
    }
  })

  it('honours a custom window', () => {
    expect(verifyTotp(RFC_SECRET, codeAt(now + 1), { nowMs, lastUsedStep: -1, window: 0 })).toBeNull()
    expect(verifyTotp(RFC_SECRET, codeAt(now - 2), { nowMs, lastUsedStep: -1, window: 2 })).toBe(now - 2)
    expect(() => verifyTotp(RFC_SECRET, codeAt(now), { nowMs, lastUsedStep: -1, window: -1 })).toThrow(
      RangeError,
    )
  })

  it('refuses to accept the same step twice', () => {
    const used = verifyTotp(RFC_SECRET, codeAt(now), { nowMs, lastUsedStep: -1 })
    expect(used).toBe(now)
    expect(verifyTotp(RFC_SECRET, codeAt(now), { nowMs, lastUsedStep: now })).toBeNull()
  })

  it('refuses an older step once a newer one was used, but accepts a newer one', () => {
    expect(verifyTotp(RFC_SECRET, codeAt(now), { nowMs, lastUsedStep: now + 1 })).toBeNull()
    expect(verifyTotp(RFC_SECRET, codeAt(now - 1), { nowMs, lastUsedStep: now })).toBeNull()
    expect(verifyTotp(RFC_SECRET, codeAt(now + 1), { nowMs, lastUsedStep: now })).toBe(now + 1)
  })

  it('rejects anything that is not exactly 6 ASCII digits', () => {
    const good = codeAt(now)
    const bad = [
      '',
      good.slice(1),
      `${good}0`,
      `0${good}`,
      ` ${good}`,
      `${good}\n`,
      `${good.slice(0, 5)}a`,
      '１２３４５６',
    ]
    for (const code of bad) expect(verifyTotp(RFC_SECRET, code, { nowMs, lastUsedStep: -1 })).toBeNull()
  })

  it('rejects a wrong code', () => {
    const wrong = String((Number(codeAt(now)) + 1) % 1_000_000).padStart(6, '0')
    expect([now - 1, now + 1].map(codeAt)).not.toContain(wrong)
    expect(verifyTotp(RFC_SECRET, wrong, { nowMs, lastUsedStep: -1 })).toBeNull()
  })
})

describe('otpauthUri', () => {
  it('builds the key URI with issuer, account and parameters encoded', () => {
    const uri = otpauthUri({ secret: RFC_SECRET, accountName: 'jane+test@example.com', issuer: 'Shop & Co' })
    expect(uri).toBe(
      'otpauth://totp/Shop%20%26%20Co:jane%2Btest%40example.com' +
        `?secret=${RFC_SECRET}&issuer=Shop%20%26%20Co&algorithm=SHA1&digits=6&period=30`,
    )
    const parsed = new URL(uri)
    expect(parsed.protocol).toBe('otpauth:')
    expect(parsed.searchParams.get('issuer')).toBe('Shop & Co')
    expect(parsed.searchParams.get('secret')).toBe(RFC_SECRET)
  })

  it('keeps colons, question marks and non-ASCII in names from breaking the URI', () => {
    const uri = otpauthUri({ secret: 'MZXW6', accountName: 'a:b?c=d&e/f', issuer: 'Bäckerei#1' })
    expect(uri).toBe(
      'otpauth://totp/B%C3%A4ckerei%231:a%3Ab%3Fc%3Dd%26e%2Ff' +
        '?secret=MZXW6&issuer=B%C3%A4ckerei%231&algorithm=SHA1&digits=6&period=30',
    )
  })
})

describe('recovery codes', () => {
  it('generates ten unique, unambiguous codes by default', () => {
    const codes = generateRecoveryCodes()
    expect(codes).toHaveLength(10)
    expect(new Set(codes).size).toBe(10)
    for (const code of codes)
      expect(code).toMatch(/^[a-hjkmnp-z2-9]{4}-[a-hjkmnp-z2-9]{4}-[a-hjkmnp-z2-9]{4}$/)
  })

  it('carries at least 50 bits of entropy per code', () => {
    const [code] = generateRecoveryCodes(1)
    const symbols = (code ?? '').replace(/-/g, '').length
    expect(symbols * Math.log2(31)).toBeGreaterThanOrEqual(50)
  })

  it('honours the count and stays unique across many codes', () => {
    const codes = generateRecoveryCodes(500)
    expect(codes).toHaveLength(500)
    expect(new Set(codes).size).toBe(500)
  })

  it('hashes the same code typed with or without dashes, spaces or capitals alike', () => {
    const code = 'abcd-efgh-jkmn'
    const hash = hashRecoveryCode(code)
    expect(hash).toMatch(/^[0-9a-f]{64}$/)
    for (const typed of ['abcdefghjkmn', 'ABCD-EFGH-JKMN', ' abcd efgh jkmn ', 'AbCd-EfGh JkMn']) {
      expect(hashRecoveryCode(typed)).toBe(hash)
    }
    expect(hashRecoveryCode('abcd-efgh-jkmp')).not.toBe(hash)
  })
})
