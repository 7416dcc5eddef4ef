/**
 * Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30 s step, 6 digits, as every authenticator app
 * expects), the RFC 4648 base32 they are shared in, and single-use recovery codes for a lost device.
 */
import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto'

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
const STEP_SECONDS = 30
const DIGITS = 6
const SECRET_BYTES = 20
const CODE_PATTERN = /^[0-9]{6}$/
// No i, l, o, 0 or 1, so a code copied by hand from paper reads back the same.
const RECOVERY_ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789'
// 12 characters of a 31-letter alphabet is about 59 bits; 10 (xxxx-xxxx-xx) would fall just short of 50.
const RECOVERY_GROUPS = [4, 4, 4]

/** A fresh 160-bit TOTP secret (the size RFC 4226 recommends for SHA-1), base32 without padding. */
export function generateTotpSecret(): string {
  return base32Encode(randomBytes(SECRET_BYTES))
}

/** RFC 4648 base32, upper case, without `=` padding (authenticator apps accept it unpadded). */
export function base32Encode(buf: Buffer): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of buf) {
    value = ((value << 8) | byte) & 0xffff
    bits += 8
    while (bits >= 5) {
      out += BASE32_ALPHABET[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += BASE32_ALPHABET[(value << (5 - bits)) & 31]
  return out
}

/** Decodes base32 as people type it: any case, spaces and `=` padding ignored; throws on anything else. */
export function base32Decode(s: string): Buffer {
  const clean = s.replace(/[\s=]/g, '').toUpperCase()
  // Lengths 1, 3 and 6 (mod 8) cannot come from whole bytes, so the input was truncated.
  if ([1, 3, 6].includes(clean.length % 8)) throw new Error('invalid base32 length')
  const out: number[] = []
  let bits = 0
  let value = 0
  for (const char of clean) {
    const index = BASE32_ALPHABET.indexOf(char)
    if (index === -1) throw new Error('invalid base32 character')
    value = ((value << 5) | index) & 0xffff
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Buffer.from(out)
}

/** The 6-digit code for a time step: RFC 4226 HOTP with the step as counter. */
export function totpCode(secretBase32: string, step: number): string {
  if (!Number.isSafeInteger(step) || step < 0)
    throw new RangeError('TOTP step must be a non-negative integer')
  const key = base32Decode(secretBase32)
  if (key.length === 0) throw new Error('TOTP secret is empty')
  const counter = Buffer.alloc(8)
  counter.writeBigUInt64BE(BigInt(step))
  const mac = createHmac('sha1', key).update(counter).digest()
  const offset = (mac[mac.length - 1] ?? 0) & 0x0f
  const binary = mac.readUInt32BE(offset) & 0x7fffffff
  return String(binary % 10 ** DIGITS).padStart(DIGITS, '0')
}

/** The TOTP time step containing a moment (default now). */
export function currentStep(nowMs: number = Date.now()): number {
  return Math.floor(nowMs / 1000 / STEP_SECONDS)
}

export interface VerifyTotpOptions {
  nowMs?: number
  /** The step of the last code accepted for this secret; pass -1 if none has been used yet. */
  lastUsedStep: number
  /** How many steps of clock drift to tolerate either way; default 1. */
  window?: number
}

/**
 * The step a code belongs to if it is valid and newer than the last one used, otherwise null; the
 * caller must store the returned step as the new lastUsedStep so the code cannot be replayed.
 */
export function verifyTotp(secretBase32: string, code: string, options: VerifyTotpOptions): number | null {
  const window = options.window ?? 1
  if (!Number.isSafeInteger(window) || window < 0)
    throw new RangeError('TOTP window must be a non-negative integer')
  if (!CODE_PATTERN.test(code)) return null
  const given = Buffer.from(code)
  const now = currentStep(options.nowMs)
  let matched: number | null = null
  for (let step = now - window; step <= now + window; step++) {
    // Refusing every step up to the last used one also stops an older code after a newer one was used.
    if (step < 0 || step <= options.lastUsedStep) continue
    // No early exit, so the time taken does not reveal which step (if any) matched.
    if (timingSafeEqual(given, Buffer.from(totpCode(secretBase32, step))) && matched === null) matched = step
  }
  return matched
}

export interface OtpauthUriInput {
  secret: string
  accountName: string
  issuer: string
}

/** The `otpauth://` provisioning URI an authenticator app reads from a QR code. */
export function otpauthUri({ secret, accountName, issuer }: OtpauthUriInput): string {
  // encodeURIComponent rather than URLSearchParams: some apps show a `+` literally instead of a space.
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(accountName)}`
  const params: [string, string][] = [
    ['secret', secret.replace(/[\s=]/g, '').toUpperCase()],
    ['issuer', issuer],
    ['algorithm', 'SHA1'],
    ['digits', String(DIGITS)],
    ['period', String(STEP_SECONDS)],
  ]
  const query = params.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')
  return `otpauth://totp/${label}?${query}`
}

/** Single-use recovery codes shaped `xxxx-xxxx-xxxx`, about 59 bits each; show once, store only hashes. */
export function generateRecoveryCodes(count = 10): string[] {
  if (!Number.isSafeInteger(count) || count < 1) throw new RangeError('recovery code count must be positive')
  const codes = new Set<string>()
  while (codes.size < count) {
    const groups = RECOVERY_GROUPS.map((length) => {
      let group = ''
      for (let i = 0; i < length; i++) group += RECOVERY_ALPHABET[randomInt(RECOVERY_ALPHABET.length)]
      return group
    })
    codes.add(groups.join('-'))
  }
  return [...codes]
}

/** SHA-256 hex of a recovery code ignoring case, dashes and spaces, so any way it is typed matches. */
export function hashRecoveryCode(code: string): string {
  const normalised = code.toLowerCase().replace(/[\s-]/g, '')
  return createHash('sha256').update(normalised).digest('hex')
}
