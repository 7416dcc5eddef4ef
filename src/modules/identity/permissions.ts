/**
 * The permission catalogue and the built-in roles. A permission is `<resource>:<action>` with
 * actions read, write and delete, plus a few special ones for dangerous operations. Roles are
 * least-privilege bundles; stores add custom roles through the API.
 */

const RESOURCES = [
  'products',
  'inventory',
  'orders',
  'customers',
  'fulfillment',
  'tax',
  'accounting',
  'promotions',
  'analytics',
  'jobs',
  'staff',
  'roles',
  'api_keys',
  'audit_log',
  'settings',
] as const

const SPECIAL = ['orders:refund', 'customers:export', 'staff:manage'] as const

/** Every permission a role or API key may hold. */
export const PERMISSIONS: readonly string[] = [
  ...RESOURCES.flatMap((r) => [`${r}:read`, `${r}:write`, `${r}:delete`]),
  ...SPECIAL,
]

const ALL = new Set(PERMISSIONS)

/** True when every entry is a known permission. */
export function areKnownPermissions(permissions: readonly string[]): boolean {
  return permissions.every((p) => ALL.has(p))
}

const rw = (...resources: string[]) => resources.flatMap((r) => [`${r}:read`, `${r}:write`])
const read = (...resources: string[]) => resources.map((r) => `${r}:read`)

export interface BuiltInRole {
  id: string
  name: string
  description: string
  permissions: string[]
}

/** The roles every store starts with; they cannot be edited or deleted. */
export const BUILT_IN_ROLES: readonly BuiltInRole[] = [
  {
    id: 'role_owner',
    name: 'owner',
    description: 'Everything, including staff and roles',
    permissions: [...PERMISSIONS],
  },
  {
    id: 'role_admin',
    name: 'admin',
    description: 'Everything except managing staff accounts',
    permissions: PERMISSIONS.filter((p) => p !== 'staff:manage'),
  },
  {
    id: 'role_catalog_manager',
    name: 'catalog manager',
    description: 'Products, prices and promotions',
    permissions: [...rw('products', 'promotions'), 'products:delete', ...read('inventory')],
  },
  {
    id: 'role_inventory_manager',
    name: 'inventory manager',
    description: 'Stock levels, locations and transfers',
    permissions: [...rw('inventory'), ...read('products', 'orders')],
  },
  {
    id: 'role_fulfillment',
    name: 'fulfillment',
    description: 'Pick, pack, ship and handle returns',
    permissions: [
      ...rw('fulfillment'),
      'orders:read',
      'orders:write',
      ...read('inventory', 'products', 'customers'),
    ],
  },
  {
    id: 'role_support',
    name: 'support',
    description: 'Help customers with their orders and accounts',
    permissions: [...rw('customers', 'orders'), 'orders:refund', ...read('products', 'fulfillment')],
  },
  {
    id: 'role_accountant',
    name: 'accountant',
    description: 'Ledger, tax and financial exports',
    // The orders export is a financial export, and holds every customer's email: customers:export.
    permissions: [...rw('accounting', 'tax'), ...read('orders', 'customers'), 'customers:export'],
  },
  {
    id: 'role_analyst',
    name: 'analyst',
    description: 'Read-only access to reports and the catalog',
    permissions: read('analytics', 'products', 'orders', 'inventory', 'promotions'),
  },
]

/**
 * Permissions that reach personal or financial data: staff holding any of them must use MFA
 * (when MFA enforcement is on).
 */
export const SENSITIVE_PERMISSIONS: readonly string[] = [
  'customers:read',
  'customers:export',
  'orders:read',
  'orders:refund',
  'accounting:read',
  'staff:manage',
  'api_keys:write',
  'audit_log:read',
]

/** True when a role with these permissions reaches personal or financial data. */
export function needsMfa(permissions: Iterable<string>): boolean {
  for (const p of permissions) if (SENSITIVE_PERMISSIONS.includes(p)) return true
  return false
}
