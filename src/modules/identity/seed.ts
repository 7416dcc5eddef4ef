/** The demo store's owner account, so a fresh install can be signed in to at once. */
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Runtime } from '../../platform/runtime.ts'
import { createStaff } from './staff.ts'

export const DEMO_ADMIN_EMAIL = 'admin@shopwright.local'

/**
 * Creates the demo owner when no staff account exists yet. Its password is generated once and kept
 * in DATA_DIR/demo-admin-password (readable only by the owner of the process), never hard-coded.
 */
export async function seedDemoAdmin(
  runtime: Runtime,
): Promise<{ email: string; passwordFile: string } | null> {
  const { db } = runtime.database
  const passwordFile = join(runtime.config.dataDir, 'demo-admin-password')
  const any = await db.selectFrom('staff_users').select('id').limit(1).executeTakeFirst()
  if (any) return null
  let password: string
  try {
    password = readFileSync(passwordFile, 'utf8').trim()
  } catch {
    password = randomBytes(12).toString('base64url')
    mkdirSync(runtime.config.dataDir, { recursive: true })
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 })
  }
  await createStaff(db, { email: DEMO_ADMIN_EMAIL, name: 'Demo Owner', password, roleId: 'role_owner' })
  return { email: DEMO_ADMIN_EMAIL, passwordFile }
}
