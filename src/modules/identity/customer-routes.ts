/** Customer account routes: `/store/auth/*` and `/store/me` (profile, password, addresses). */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { customerIdOf } from '../../platform/http/auth.ts'
import { errorResponses } from '../../platform/http/schemas.ts'
import type { Runtime } from '../../platform/runtime.ts'
import {
  changePassword,
  confirmEmail,
  createAddress,
  deleteAddress,
  getCustomer,
  listAddresses,
  refreshCustomer,
  requestAccountEmail,
  requestEmailVerification,
  resetPassword,
  signIn,
  signUp,
  updateAddress,
  updateCustomer,
} from './customers.ts'
import {
  Accepted,
  Address,
  AddressBody,
  ChangePasswordBody,
  Customer,
  CustomerTokens,
  EmailBody,
  IdParams,
  RefreshBody,
  ResetPasswordBody,
  SignInBody,
  SignUpBody,
  Tokens,
  UpdateAddressBody,
  UpdateMeBody,
  VerifyEmailBody,
} from './schemas.ts'
import { revokeSessionFamilyOf } from './sessions.ts'

export const customerRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  app.addSchema(Customer)
  app.addSchema(Address)
  const authLimit = { rateLimit: { max: runtime.config.authRateLimitPerMinute, timeWindow: 60_000 } }
  const tags = ['store: account']
  const me = { auth: 'customer' as const }
  const security = [{ bearer: [] }]

  app.post(
    '/store/auth/sign-up',
    {
      config: authLimit,
      schema: {
        tags,
        summary: 'Create an account',
        description:
          'Answers 202 whether or not the email already has an account (its owner is told by email), so ' +
          'sign-up cannot be used to find out who shops here. Confirm the email with the token sent, then sign in.',
        body: SignUpBody,
        response: { 202: Accepted, ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(202)
      return signUp(runtime, request.body, request.ip)
    },
  )

  app.post(
    '/store/auth/sign-in',
    {
      config: authLimit,
      schema: {
        tags,
        summary: 'Sign in with email and password',
        description:
          'An account signs in once its email is confirmed. Until then it is refused exactly like a wrong ' +
          'password (401 invalid_credentials, the same body), so that signing up with an email and then ' +
          'signing in cannot tell whether the email already had an account. Confirm with the emailed token ' +
          '(`/store/auth/verify-email`); `/store/auth/resend-verification` sends a new one.',
        body: SignInBody,
        response: { 200: CustomerTokens, ...errorResponses },
      },
    },
    async (request) => signIn(runtime, request.body.email, request.body.password, request),
  )

  app.post(
    '/store/auth/refresh',
    {
      config: authLimit,
      schema: {
        tags,
        summary: 'Exchange a refresh token for new tokens (the old one stops working)',
        body: RefreshBody,
        response: { 200: Tokens, ...errorResponses },
      },
    },
    async (request) => refreshCustomer(runtime, request.body.refresh_token, request),
  )

  app.post(
    '/store/auth/sign-out',
    {
      config: me,
      schema: {
        tags,
        summary: 'End this session',
        security,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      await revokeSessionFamilyOf(runtime.database.db, request.principal!.sessionId!)
      reply.code(204)
      return null
    },
  )

  app.post(
    '/store/auth/verify-email',
    {
      config: authLimit,
      schema: {
        tags,
        summary: 'Confirm the email with the emailed token and the password, and sign in',
        description:
          'Takes the token from the confirmation email and the password the account was signed up with, ' +
          'and answers as sign-in does (tokens and the customer). A wrong password answers exactly like an ' +
          'invalid token (401 invalid_token) and leaves the token usable; it counts as a failed sign-in ' +
          'attempt on the account (429 too_many_attempts past the limit). Whoever owns the address but did ' +
          'not sign up takes it over with a password reset instead.',
        body: VerifyEmailBody,
        response: { 200: CustomerTokens, ...errorResponses },
      },
    },
    async (request) => confirmEmail(runtime, request.body.token, request.body.password, request),
  )

  app.post(
    '/store/auth/resend-verification',
    {
      config: authLimit,
      schema: {
        tags,
        summary: 'Email a new verification token to an account that has not confirmed its email',
        description:
          'Answers 202 with the same body whether the email has no account, a confirmed one or an ' +
          'unconfirmed one; only the last is mailed, by a background job, so the answer takes the same ' +
          'time either way. Throttled per address and per IP.',
        body: EmailBody,
        response: { 202: Accepted, ...errorResponses },
      },
    },
    async (request, reply) => {
      await requestAccountEmail(runtime, 'verify_email', request.body.email, request.ip)
      reply.code(202)
      return { status: 'sent_if_unverified' }
    },
  )

  app.post(
    '/store/auth/password-reset',
    {
      config: authLimit,
      schema: {
        tags,
        summary: 'Email a password reset token',
        description:
          'Answers 202 whether or not the email has an account; the email is sent by a background job, ' +
          'so the answer takes the same time either way. A reset (or a password change) voids every ' +
          'other reset token of the account.',
        body: EmailBody,
        response: { 202: Accepted, ...errorResponses },
      },
    },
    async (request, reply) => {
      await requestAccountEmail(runtime, 'reset_password', request.body.email, request.ip)
      reply.code(202)
      return { status: 'sent_if_registered' }
    },
  )

  app.post(
    '/store/auth/password-reset/confirm',
    {
      config: authLimit,
      schema: {
        tags,
        summary: 'Set a new password with a reset token (signs out every session)',
        body: ResetPasswordBody,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      await resetPassword(runtime, request.body.token, request.body.password)
      reply.code(204)
      return null
    },
  )

  app.get(
    '/store/me',
    {
      config: me,
      schema: {
        tags,
        summary: 'The signed-in customer',
        security,
        response: { 200: Type.Ref('Customer'), ...errorResponses },
      },
    },
    async (request) => getCustomer(runtime, customerIdOf(request)),
  )

  app.patch(
    '/store/me',
    {
      config: me,
      schema: {
        tags,
        summary: 'Update your profile',
        security,
        body: UpdateMeBody,
        response: { 200: Type.Ref('Customer'), ...errorResponses },
      },
    },
    async (request) => updateCustomer(runtime, customerIdOf(request), request.body),
  )

  app.post(
    '/store/me/verify-email',
    {
      config: me,
      schema: {
        tags,
        summary: 'Send the verification email again (to the signed-in customer)',
        security,
        response: { 202: Accepted, ...errorResponses },
      },
    },
    async (request, reply) => {
      await requestEmailVerification(runtime, customerIdOf(request))
      reply.code(202)
      return { status: 'sent_if_unverified' }
    },
  )

  app.post(
    '/store/me/password',
    {
      config: me,
      schema: {
        tags,
        summary: 'Change your password (ends every other session; returns new tokens)',
        security,
        body: ChangePasswordBody,
        response: { 200: Tokens, ...errorResponses },
      },
    },
    async (request) =>
      changePassword(
        runtime,
        customerIdOf(request),
        request.body.current_password,
        request.body.new_password,
        request,
      ),
  )

  app.get(
    '/store/me/addresses',
    {
      config: me,
      schema: {
        tags,
        summary: 'Your address book',
        security,
        response: { 200: Type.Object({ data: Type.Array(Type.Ref('Address')) }), ...errorResponses },
      },
    },
    async (request) => ({ data: await listAddresses(runtime, customerIdOf(request)) }),
  )

  app.post(
    '/store/me/addresses',
    {
      config: me,
      schema: {
        tags,
        summary: 'Add an address',
        security,
        body: AddressBody,
        response: { 201: Type.Ref('Address'), ...errorResponses },
      },
    },
    async (request, reply) => {
      reply.code(201)
      return createAddress(runtime, customerIdOf(request), request.body)
    },
  )

  app.patch(
    '/store/me/addresses/:id',
    {
      config: me,
      schema: {
        tags,
        summary: 'Change an address',
        security,
        params: IdParams,
        body: UpdateAddressBody,
        response: { 200: Type.Ref('Address'), ...errorResponses },
      },
    },
    async (request) => updateAddress(runtime, customerIdOf(request), request.params.id, request.body),
  )

  app.delete(
    '/store/me/addresses/:id',
    {
      config: me,
      schema: {
        tags,
        summary: 'Delete an address',
        security,
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      await deleteAddress(runtime, customerIdOf(request), request.params.id)
      reply.code(204)
      return null
    },
  )
}
