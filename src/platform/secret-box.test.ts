/**
 * SecretBox must round-trip, never repeat a ciphertext, and refuse (with one indistinct error) any
 * altered value or any key other than the one that sealed it.
 */
import { describe, expect, it } from 'vitest'
import { SecretBox } from './secret-box.ts'

const APP_SECRET = 'test-app-secret-that-is-long-enough-0123456789'
const box = new SecretBox(APP_SECRET, 'totp')
const FAILURE = 'secret cannot be decrypted'

/** Flips one bit in a base64url part, keeping it canonical, so only the GCM tag can catch it. */
function flipBit(part: string, byteIndex = 0): string {
  const bytes = Buffer.from(part, 'base64url')
  bytes[byteIndex] = (bytes[byteIndex] ?? 0) ^ 0x01
  return bytes.toString('base64url')
}

function replacePart(sealed: string, index: number, update: (part: string) => string): string {
  const parts = sealed.split('.')
  parts[index] = update(parts[index] ?? '')
  return parts.join('.')
}

function expectRefused(sealed: string, opener: SecretBox = box): void {
  expect(() => opener.open(sealed)).toThrow(new Error(FAILURE))
}

describe('SecretBox', () => {
  it('round-trips ASCII, Unicode and empty plaintexts', () => {
    for (const plaintext of ['JBSWY3DPEHPK3PXP', 'päss wörd 🔐', ''])
      expect(box.open(box.seal(plaintext))).toBe(plaintext)
  })

  it('produces the v1 format with a 12-byte IV and 16-byte tag', () => {
    const sealed = box.seal('hello')
    const [version, iv, ciphertext, tag] = sealed.split('.')
    expect(version).toBe('v1')
    expect(Buffer.from(iv ?? '', 'base64url')).toHaveLength(12)
    expect(Buffer.from(ciphertext ?? '', 'base64url')).toHaveLength(5)
    expect(Buffer.from(tag ?? '', 'base64url')).toHaveLength(16)
    expect(sealed).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
  })

  it('seals the same plaintext differently each time', () => {
    const a = box.seal('same secret')
    const b = box.seal('same secret')
    expect(a).not.toBe(b)
    expect(a.split('.')[1]).not.toBe(b.split('.')[1])
    expect(box.open(a)).toBe(box.open(b))
  })

  it('refuses a tampered IV, ciphertext or tag', () => {
    const sealed = box.seal('JBSWY3DPEHPK3PXP')
    for (const index of [1, 2, 3]) {
      expectRefused(replacePart(sealed, index, (p) => flipBit(p)))
      expectRefused(replacePart(sealed, index, (p) => flipBit(p, Buffer.from(p, 'base64url').length - 1)))
    }
  })

  it('refuses a changed version', () => {
    const sealed = box.seal('JBSWY3DPEHPK3PXP')
    for (const version of ['v2', 'V1', 'v0', '']) expectRefused(replacePart(sealed, 0, () => version))
  })

  it('refuses non-canonical encodings of otherwise valid parts', () => {
    const sealed = box.seal('JBSWY3DPEHPK3PXP')
    // The 16-byte tag leaves 4 spare bits in its last character; setting one must not be ignored.
    const tag = sealed.split('.')[3] ?? ''
    const last = tag.at(-1) ?? 'A'
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const sibling = alphabet[alphabet.indexOf(last) ^ 0x01] ?? 'A'
    expectRefused(replacePart(sealed, 3, (p) => p.slice(0, -1) + sibling))
    expectRefused(replacePart(sealed, 2, (p) => `${p}=`))
    expectRefused(replacePart(sealed, 1, (p) => `${p.slice(0, 4)} ${p.slice(4)}`))
  })

  it('refuses truncated, swapped or malformed values', () => {
    const sealed = box.seal('JBSWY3DPEHPK3PXP')
    const [version, iv, ciphertext, tag] = sealed.split('.')
    const malformed = [
      '',
      'v1',
      'garbage',
      `${version}.${iv}.${ciphertext}`,
      `${sealed}.extra`,
      `${version}.${iv}.${ciphertext}.${tag?.slice(0, 16)}`,
      `${version}.${iv?.slice(0, 8)}.${ciphertext}.${tag}`,
      `${version}.${iv}.${ciphertext?.slice(0, -2)}.${tag}`,
      `${version}.${iv}..${tag}`,
      `${version}.${tag}.${ciphertext}.${iv}`,
    ]
    for (const value of malformed) expectRefused(value)
  })

  it('cannot be opened with another app secret or another purpose', () => {
    const sealed = box.seal('JBSWY3DPEHPK3PXP')
    expectRefused(sealed, new SecretBox(`${APP_SECRET}x`, 'totp'))
    expectRefused(sealed, new SecretBox(APP_SECRET, 'totp-backup'))
    expect(new SecretBox(APP_SECRET, 'totp').open(sealed)).toBe('JBSWY3DPEHPK3PXP')
  })

  it('refuses an empty app secret or purpose', () => {
    expect(() => new SecretBox('', 'totp')).toThrow()
    expect(() => new SecretBox(APP_SECRET, '')).toThrow()
  })
})
