/** Per-node identity state derived from the runtime: the token signer. */
import type { Runtime } from '../../platform/runtime.ts'
import { TokenSigner } from './tokens.ts'

const signers = new WeakMap<Runtime, TokenSigner>()

/** The token signer of this runtime (one per node, keyed from APP_SECRET). */
export function signerOf(runtime: Runtime): TokenSigner {
  let signer = signers.get(runtime)
  if (!signer) {
    signer = new TokenSigner(runtime.config.appSecret)
    signers.set(runtime, signer)
  }
  return signer
}
