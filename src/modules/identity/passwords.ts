/**
 * Passwords: argon2id at OWASP's parameters (19 MiB, 2 iterations, 1 lane), stored in PHC form,
 * re-hashed on sign-in when the parameters change; common and short passwords refused.
 */
import { hash, verify } from '@node-rs/argon2'
import { dictionary } from '@zxcvbn-ts/language-common'

// 2 is Algorithm.Argon2id; the package exports it as a const enum, which type stripping cannot inline.
const PARAMS = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const
const PHC_PARAMS = `$argon2id$v=19$m=${PARAMS.memoryCost},t=${PARAMS.timeCost},p=${PARAMS.parallelism}$`

export const MIN_PASSWORD_LENGTH = 8
const COMMON = new Set((dictionary['passwords-common'] as string[]).map((p) => p.toLowerCase()))

/** Why a new password is refused, or null when it is acceptable. */
export function passwordProblem(password: string): string | null {
  if ([...password].length < MIN_PASSWORD_LENGTH) return `must be at least ${MIN_PASSWORD_LENGTH} characters`
  if (COMMON.has(password.toLowerCase())) return 'is too common; choose another'
  return null
}

/** Hashes a password to a PHC string. */
export function hashPassword(password: string): Promise<string> {
  return hash(password, PARAMS)
}

/** Verifies a password against a PHC string; false for a malformed hash rather than throwing. */
export async function verifyPassword(phc: string, password: string): Promise<boolean> {
  try {
    return await verify(phc, password)
  } catch {
    return false
  }
}

/** True when the stored hash was made with other parameters and should be replaced. */
export function needsRehash(phc: string): boolean {
  return !phc.startsWith(PHC_PARAMS)
}

// A real hash to verify against when the account does not exist, so that unknown and known emails
// take the same time.
let decoy: Promise<string> | undefined
/** Spends the time a real verification would, for an account that does not exist. */
export async function verifyDecoy(password: string): Promise<false> {
  decoy ??= hashPassword('decoy password that matches nothing')
  await verifyPassword(await decoy, password)
  return false
}
