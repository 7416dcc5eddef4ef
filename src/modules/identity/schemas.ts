/** Wire schemas of the identity API. Write bodies refuse unknown fields (no mass assignment). */
import { Type } from 'typebox'

export const Email = Type.String({ format: 'email', maxLength: 254 })
export const Password = Type.String({ minLength: 1, maxLength: 256 })
const Name = Type.String({ maxLength: 100 })

export const SignUpBody = Type.Object(
  { email: Email, password: Password, first_name: Type.Optional(Name), last_name: Type.Optional(Name) },
  { additionalProperties: false },
)
export const SignInBody = Type.Object({ email: Email, password: Password }, { additionalProperties: false })
export const RefreshBody = Type.Object(
  { refresh_token: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false },
)
/** Confirming an email takes the account's password too, so that only who chose it can confirm. */
export const VerifyEmailBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 200 }), password: Password },
  { additionalProperties: false },
)
export const EmailBody = Type.Object({ email: Email }, { additionalProperties: false })
export const ResetPasswordBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 200 }), password: Password },
  { additionalProperties: false },
)
export const ChangePasswordBody = Type.Object(
  { current_password: Password, new_password: Password },
  { additionalProperties: false },
)

export const Customer = Type.Object(
  {
    id: Type.String(),
    email: Type.String(),
    first_name: Type.String(),
    last_name: Type.String(),
    email_verified: Type.Boolean(),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Customer' },
)
export const UpdateMeBody = Type.Object(
  { first_name: Type.Optional(Name), last_name: Type.Optional(Name) },
  { additionalProperties: false, minProperties: 1 },
)

export const Tokens = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  refresh_token: Type.String(),
})
export const CustomerTokens = Type.Object({ ...Tokens.properties, customer: Type.Ref('Customer') })
export const Accepted = Type.Object({ status: Type.String() })

const addressFields = {
  label: Type.Optional(Type.String({ maxLength: 50 })),
  first_name: Type.String({ minLength: 1, maxLength: 100 }),
  last_name: Type.String({ minLength: 1, maxLength: 100 }),
  company: Type.Optional(Type.String({ maxLength: 100 })),
  line1: Type.String({ minLength: 1, maxLength: 200 }),
  line2: Type.Optional(Type.String({ maxLength: 200 })),
  city: Type.String({ minLength: 1, maxLength: 100 }),
  region: Type.Optional(Type.String({ maxLength: 100 })),
  postal_code: Type.Optional(Type.String({ maxLength: 20 })),
  country: Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2' }),
  phone: Type.Optional(Type.String({ maxLength: 30 })),
}
export const AddressBody = Type.Object(addressFields, { additionalProperties: false })
export const UpdateAddressBody = Type.Partial(AddressBody, { additionalProperties: false, minProperties: 1 })
export const Address = Type.Object(
  {
    id: Type.String(),
    label: Type.String(),
    first_name: Type.String(),
    last_name: Type.String(),
    company: Type.String(),
    line1: Type.String(),
    line2: Type.String(),
    city: Type.String(),
    region: Type.String(),
    postal_code: Type.String(),
    country: Type.String(),
    phone: Type.String(),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Address' },
)
export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) })
