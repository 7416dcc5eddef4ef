/** Row types of the tables the identity module owns. */
import type { ColumnType, Generated } from 'kysely'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>

export interface CustomersTable {
  id: string
  email: string
  password_hash: string
  first_name: Generated<string>
  last_name: Generated<string>
  email_verified_at: Timestamp | null
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface CustomerAddressesTable {
  id: string
  customer_id: string
  label: Generated<string>
  first_name: string
  last_name: string
  company: Generated<string>
  line1: string
  line2: Generated<string>
  city: string
  region: Generated<string>
  postal_code: Generated<string>
  country: string
  phone: Generated<string>
  created_at: Generated<Date>
}

export interface CustomerGroupsTable {
  id: string
  name: string
  description: Generated<string>
  created_at: Generated<Date>
}

export interface CustomerGroupMembersTable {
  group_id: string
  customer_id: string
  added_at: Generated<Date>
}

export interface RolesTable {
  id: string
  name: string
  description: Generated<string>
  permissions: string[]
  built_in: Generated<boolean>
  created_at: Generated<Date>
}

export interface StaffUsersTable {
  id: string
  email: string
  name: Generated<string>
  password_hash: string
  role_id: string
  disabled_at: Timestamp | null
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export type SubjectType = 'customer' | 'staff'

export interface SessionsTable {
  id: string
  subject_type: SubjectType
  subject_id: string
  family_id: string
  token_hash: string
  device_id: string | null
  mfa_verified_at: Timestamp | null
  expires_at: Timestamp
  rotated_at: Timestamp | null
  revoked_at: Timestamp | null
  ip: string | null
  user_agent: string | null
  created_at: Generated<Date>
}

export interface OneTimeTokensTable {
  token_hash: string
  purpose: 'verify_email' | 'reset_password'
  subject_type: SubjectType
  subject_id: string
  expires_at: Timestamp
  used_at: Timestamp | null
  created_at: Generated<Date>
}

export interface StaffMfaTable {
  staff_id: string
  totp_secret: string
  confirmed_at: Timestamp | null
  last_used_step: ColumnType<number, number | undefined, number>
  recovery_codes: string[]
}

export interface StaffDevicesTable {
  staff_id: string
  device_hash: string
  last_seen_at: Generated<Date>
}

export interface ApiKeysTable {
  id: string
  name: string
  prefix: string
  secret_hash: string
  permissions: string[]
  created_by: string
  expires_at: Timestamp | null
  last_used_at: Timestamp | null
  revoked_at: Timestamp | null
  created_at: Generated<Date>
}

export interface AuditLogTable {
  id: string
  actor_type: string
  actor_id: string
  action: string
  resource_type: string
  resource_id: string | null
  status: number | null
  ip: string | null
  user_agent: string | null
  request_id: string | null
  details: ColumnType<Record<string, unknown>, string | undefined, never>
  at: Generated<Date>
}

export interface IdentityTables {
  customers: CustomersTable
  customer_addresses: CustomerAddressesTable
  customer_groups: CustomerGroupsTable
  customer_group_members: CustomerGroupMembersTable
  roles: RolesTable
  staff_users: StaffUsersTable
  sessions: SessionsTable
  one_time_tokens: OneTimeTokensTable
  staff_mfa: StaffMfaTable
  staff_devices: StaffDevicesTable
  api_keys: ApiKeysTable
  audit_log: AuditLogTable
}
