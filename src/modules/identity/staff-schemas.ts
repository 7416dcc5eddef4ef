/** Wire schemas of the staff, role, API key and audit log routes. */
import { Type } from 'typebox'
import { DateTimeInput } from '../../platform/http/schemas.ts'
import { Email, Password } from './schemas.ts'

export const StaffSignInBody = Type.Object(
  { email: Email, password: Password, device_token: Type.Optional(Type.String({ maxLength: 200 })) },
  { additionalProperties: false },
)
export const MfaCodeBody = Type.Object(
  {
    code: Type.String({ minLength: 6, maxLength: 20, description: 'A 6-digit TOTP code or a recovery code' }),
  },
  { additionalProperties: false },
)
export const MfaSignInBody = Type.Object(
  { challenge_token: Type.String({ minLength: 1, maxLength: 2000 }), code: MfaCodeBody.properties.code },
  { additionalProperties: false },
)

const RoleSummary = Type.Object({
  id: Type.String(),
  name: Type.String(),
  permissions: Type.Array(Type.String()),
})
export const Staff = Type.Object(
  {
    id: Type.String(),
    email: Type.String(),
    name: Type.String(),
    role: RoleSummary,
    mfa_enabled: Type.Boolean(),
    disabled: Type.Boolean(),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Staff' },
)

export const StaffSignInResponse = Type.Object({
  status: Type.Union([Type.Literal('signed_in'), Type.Literal('mfa_required')]),
  challenge_token: Type.Optional(Type.String()),
  access_token: Type.Optional(Type.String()),
  token_type: Type.Optional(Type.Literal('Bearer')),
  expires_in: Type.Optional(Type.Integer()),
  refresh_token: Type.Optional(Type.String()),
  device_token: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  staff: Type.Optional(Type.Ref('Staff')),
})

export const CreateStaffBody = Type.Object(
  {
    email: Email,
    name: Type.Optional(Type.String({ maxLength: 100 })),
    password: Password,
    role_id: Type.String({ maxLength: 64 }),
  },
  { additionalProperties: false },
)
export const UpdateStaffBody = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 100 })),
    role_id: Type.Optional(Type.String({ maxLength: 64 })),
    disabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
)

const PermissionList = Type.Array(Type.String({ pattern: '^[a-z_]+:[a-z_]+$' }), {
  maxItems: 200,
  uniqueItems: true,
})
export const Role = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    description: Type.String(),
    permissions: Type.Array(Type.String()),
    built_in: Type.Boolean(),
  },
  { $id: 'Role' },
)
export const CreateRoleBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 60 }),
    description: Type.Optional(Type.String({ maxLength: 300 })),
    permissions: PermissionList,
  },
  { additionalProperties: false },
)
export const UpdateRoleBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 60 })),
    description: Type.Optional(Type.String({ maxLength: 300 })),
    permissions: Type.Optional(PermissionList),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const ApiKey = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    prefix: Type.String(),
    permissions: Type.Array(Type.String()),
    created_by: Type.String(),
    expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    last_used_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'ApiKey' },
)
export const CreateApiKeyBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    permissions: PermissionList,
    expires_at: Type.Optional(DateTimeInput()),
  },
  { additionalProperties: false },
)

export const AuditEntry = Type.Object({
  id: Type.String(),
  actor_type: Type.String(),
  actor_id: Type.String(),
  action: Type.String(),
  resource_type: Type.String(),
  resource_id: Type.Union([Type.String(), Type.Null()]),
  status: Type.Union([Type.Integer(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  request_id: Type.Union([Type.String(), Type.Null()]),
  details: Type.Record(Type.String(), Type.Unknown()),
  at: Type.String({ format: 'date-time' }),
})
export const AuditQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    actor_id: Type.Optional(Type.String({ maxLength: 64 })),
    resource_type: Type.Optional(Type.String({ maxLength: 64 })),
    resource_id: Type.Optional(Type.String({ maxLength: 64 })),
    action: Type.Optional(Type.String({ maxLength: 200 })),
    from: Type.Optional(DateTimeInput()),
    to: Type.Optional(DateTimeInput()),
  },
  { additionalProperties: false },
)
