/**
 * Authenticated encryption for secrets that must be stored but read back later (TOTP secrets, the secret fields of job payloads), so a
 * database leak alone does not expose them. Each purpose gets its own key derived from the app secret,
 * so a value sealed for one purpose can never be opened as another.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'

const VERSION = 'v1'
const IV_BYTES = 12
const TAG_BYTES = 16
// Binding the version into the tag means a future format can never be confused with this one.
const AAD = Buffer.from(`shopwright.secret-box.${VERSION}`)
const BASE64URL = /^[A-Za-z0-9_-]*$/

/** Seals and opens short secrets with AES-256-GCM under a per-purpose key. */
export class SecretBox {
  readonly #key: Buffer

  constructor(appSecret: string, purpose: string) {
    if (appSecret.length === 0) throw new Error('SecretBox needs a non-empty app secret')
    if (purpose.length === 0) throw new Error('SecretBox needs a non-empty purpose')
    this.#key = Buffer.from(hkdfSync('sha256', appSecret, 'shopwright', purpose, 32))
  }

  /** Encrypts a string as `v1.<iv>.<ciphertext>.<tag>` (base64url parts), with a fresh random IV. */
  seal(plaintext: string): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_BYTES })
    cipher.setAAD(AAD)
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    const tag = cipher.getAuthTag()
    return [VERSION, ...[iv, ciphertext, tag].map((b) => b.toString('base64url'))].join('.')
  }

  /** Decrypts a value from `seal`; throws one generic error whatever went wrong. */
  open(sealed: string): string {
    try {
      const parts = sealed.split('.')
      if (parts.length !== 4 || parts[0] !== VERSION) throw new Error('format')
      const iv = decodeStrict(parts[1] ?? '')
      const ciphertext = decodeStrict(parts[2] ?? '')
      const tag = decodeStrict(parts[3] ?? '')
      if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new Error('format')
      const decipher = createDecipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_BYTES })
      decipher.setAAD(AAD)
      decipher.setAuthTag(tag)
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8')
    } catch {
      // One message for every failure, so callers and logs cannot tell a wrong key from a forgery.
      throw new Error('secret cannot be decrypted')
    }
  }
}

/**
 * Node's base64url decoder silently skips invalid characters and ignores spare trailing bits, so two
 * different strings could decode to the same bytes; only the canonical encoding is accepted.
 */
function decodeStrict(part: string): Buffer {
  if (!BASE64URL.test(part)) throw new Error('format')
  const bytes = Buffer.from(part, 'base64url')
  if (bytes.toString('base64url') !== part) throw new Error('format')
  return bytes
}
