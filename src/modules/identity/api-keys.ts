/**
 * API keys for integrations: `sk_<prefix>_<secret>`. The prefix identifies the key in lists and
 * logs; only a hash of the secret is stored, and the whole key is shown once, at creation.
 */
import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import { sql } from 'kysely'
import type { DB } from '../../platform/db/schema.ts'
import type { Tx } from '../../platform/db/transaction.ts'
import type { Principal } from '../../platform/http/auth.ts'
import { newId } from '../../platform/ids.ts'
import { sameHash, tokenHash } from './tokens.ts'

const KEY_PATTERN = /^sk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/
/** last_used_at is refreshed at most this often, to keep key use from writing on every request. */
const LAST_USED_GRANULARITY_MS = 60_000

export interface ApiKeyView {
  id: string
  name: string
  prefix: string
  permissions: string[]
  created_by: string
  expires_at: string | null
  last_used_at: string | null
  revoked_at: string | null
  created_at: string
}

type ApiKeyRow = {
  id: string
  name: string
  prefix: string
  permissions: string[]
  created_by: string
  expires_at: Date | null
  last_used_at: Date | null
  revoked_at: Date | null
  created_at: Date
}

/** The public view of a key: never its secret or hash. */
export function apiKeyView(row: ApiKeyRow): ApiKeyView {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    permissions: row.permissions,
    created_by: row.created_by,
    expires_at: row.expires_at?.toISOString() ?? null,
    last_used_at: row.last_used_at?.toISOString() ?? null,
    revoked_at: row.revoked_at?.toISOString() ?? null,
    created_at: row.created_at.toISOString(),
  }
}

const viewColumns = [
  'id',
  'name',
  'prefix',
  'permissions',
  'created_by',
  'expires_at',
  'last_used_at',
  'revoked_at',
  'created_at',
] as const

/** Creates a key; returns its view and the full key, which is never retrievable again. */
export async function createApiKey(
  trx: Tx,
  input: { name: string; permissions: string[]; expiresAt: Date | null; createdBy: string },
): Promise<{ key: ApiKeyView; secret: string }> {
  const prefix = randomBytes(9)
    .toString('base64url')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '0')
    .slice(0, 12)
  const secretPart = randomBytes(32).toString('base64url')
  const secret = `sk_${prefix}_${secretPart}`
  const row = await trx
    .insertInto('api_keys')
    .values({
      id: newId('key'),
      name: input.name,
      prefix,
      secret_hash: tokenHash(secretPart),
      permissions: input.permissions,
      created_by: input.createdBy,
      expires_at: input.expiresAt,
    })
    .returning(viewColumns)
    .executeTakeFirstOrThrow()
  return { key: apiKeyView(row), secret }
}

/** Who `created_by` names for a key the bootstrap ADMIN_TOKEN made (see bootstrapTokenResolver). */
const BOOTSTRAP_CREATOR = 'bootstrap-admin'

/**
 * What a key may do now: its scope, cut down to what its creator holds now, so a key never holds
 * more than its creator and demoting a staff member reaches their keys at once. Null (the key does
 * not authenticate) when the creator is disabled, or is neither a staff member nor the bootstrap
 * token, whose keys keep their scope.
 */
function effectivePermissions(
  scope: string[],
  createdBy: string,
  creator: { disabled_at: Date | null; permissions: string[] } | null,
): string[] | null {
  if (!creator) return createdBy === BOOTSTRAP_CREATOR ? scope : null
  if (creator.disabled_at) return null
  const held = new Set(creator.permissions)
  return scope.filter((p) => held.has(p))
}

/**
 * Resolves an `sk_…` bearer token to its principal, or null when unknown, revoked, expired or its
 * creator is disabled. The creator's role comes in the same query: no extra round trip per request.
 */
export async function resolveApiKey(db: Kysely<DB>, token: string): Promise<Principal | null> {
  const match = KEY_PATTERN.exec(token)
  if (!match) return null
  const [, prefix, secretPart] = match as unknown as [string, string, string]
  const row = await db
    .selectFrom('api_keys')
    .leftJoin('staff_users', 'staff_users.id', 'api_keys.created_by')
    .leftJoin('roles', 'roles.id', 'staff_users.role_id')
    .select([
      'api_keys.id',
      'api_keys.secret_hash',
      'api_keys.permissions',
      'api_keys.created_by',
      'api_keys.expires_at',
      'api_keys.revoked_at',
      'api_keys.last_used_at',
      'staff_users.disabled_at as creator_disabled_at',
      'roles.permissions as creator_permissions',
    ])
    .where('api_keys.prefix', '=', prefix)
    .executeTakeFirst()
  if (!row || !sameHash(row.secret_hash, tokenHash(secretPart))) return null
  if (row.revoked_at || (row.expires_at && row.expires_at.getTime() <= Date.now())) return null
  // A staff creator always has a role, so its permissions are null only when there is none.
  const creator = row.creator_permissions
    ? { disabled_at: row.creator_disabled_at, permissions: row.creator_permissions }
    : null
  const permissions = effectivePermissions(row.permissions, row.created_by, creator)
  if (!permissions) return null
  if (!row.last_used_at || Date.now() - row.last_used_at.getTime() > LAST_USED_GRANULARITY_MS) {
    await db
      .updateTable('api_keys')
      .set({ last_used_at: sql<Date>`now()` as never })
      .where('id', '=', row.id)
      .execute()
  }
  return {
    kind: 'api_key',
    id: row.id,
    sessionId: null,
    permissions: new Set(permissions),
    mfaVerifiedAt: null,
    mfaPending: false,
  }
}

/** Lists keys newest first. */
export async function listApiKeys(db: Kysely<DB>): Promise<ApiKeyView[]> {
  const rows = await db.selectFrom('api_keys').select(viewColumns).orderBy('id', 'desc').limit(500).execute()
  return rows.map(apiKeyView)
}

/** Revokes a key at once; false when there is no such key. */
export async function revokeApiKey(db: Kysely<DB> | Tx, id: string): Promise<ApiKeyView | undefined> {
  const row = await db
    .updateTable('api_keys')
    .set({ revoked_at: sql<Date>`coalesce(revoked_at, now())` as never })
    .where('id', '=', id)
    .returning(viewColumns)
    .executeTakeFirst()
  return row && apiKeyView(row)
}
