/**
 * Per-node identity state derived from the runtime, made once and kept with it: the token signer,
 * the box that seals TOTP secrets, and the sign-in throttles.
 */
import type { Runtime } from '../../platform/runtime.ts'
import { SecretBox } from '../../platform/secret-box.ts'
import { LoginThrottle } from './throttle.ts'
import { TokenSigner } from './tokens.ts'

interface IdentityContext {
  signer: TokenSigner
  totpBox: SecretBox
  throttles: { customer: LoginThrottle; staff: LoginThrottle }
}

const contexts = new WeakMap<Runtime, IdentityContext>()

function contextOf(runtime: Runtime): IdentityContext {
  let context = contexts.get(runtime)
  if (!context) {
    context = {
      signer: new TokenSigner(runtime.config.appSecret),
      totpBox: new SecretBox(runtime.config.appSecret, 'staff-totp'),
      throttles: {
        customer: new LoginThrottle(runtime.kv, 'customer'),
        staff: new LoginThrottle(runtime.kv, 'staff'),
      },
    }
    contexts.set(runtime, context)
  }
  return context
}

/** The token signer of this node (keyed from APP_SECRET). */
export function signerOf(runtime: Runtime): TokenSigner {
  return contextOf(runtime).signer
}

/** The box that seals staff TOTP secrets at rest. */
export function totpBoxOf(runtime: Runtime): SecretBox {
  return contextOf(runtime).totpBox
}

/** The sign-in throttle for customers or staff. */
export function throttleOf(runtime: Runtime, scope: 'customer' | 'staff'): LoginThrottle {
  return contextOf(runtime).throttles[scope]
}
