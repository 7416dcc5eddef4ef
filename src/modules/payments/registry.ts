/**
 * The payment providers a node offers: manual payments with the methods the store takes, the
 * built-in test gateway where enabled, Stripe when its secret key is configured. Checkout names a provider by id; an id that is not here is the
 * caller's mistake (422), never a crash.
 */
import type { Kysely } from 'kysely'
import type { Config } from '../../config.ts'
import type { DB } from '../../platform/db/schema.ts'
import { problem } from '../../platform/http/errors.ts'
import type { Runtime } from '../../platform/runtime.ts'
import type { PaymentProvider } from './provider.ts'
import { ManualProvider } from './providers/manual.ts'
import { StripeProvider } from './providers/stripe.ts'
import { TestGateway } from './providers/test-gateway.ts'

export type PaymentProviders = ReadonlyMap<string, PaymentProvider>

/** Builds the providers this configuration enables, keyed by id. */
export function createPaymentProviders(config: Config, db: Kysely<DB>): Map<string, PaymentProvider> {
  // Manual stays registered with no methods: orders already paid that way must still be captured,
  // canceled and refunded; only new checkouts are refused (ManualProvider.checkMethod).
  const providers: PaymentProvider[] = [new ManualProvider(config.paymentManualMethods)]
  if (config.paymentTestGateway) providers.push(new TestGateway(db, config.publicUrl))
  if (config.stripeSecretKey) {
    providers.push(
      new StripeProvider({
        secretKey: config.stripeSecretKey,
        webhookSecret: config.stripeWebhookSecret,
        apiUrl: config.stripeApiUrl,
      }),
    )
  }
  return new Map(providers.map((p) => [p.id, p]))
}

/** The provider with this id; throws 422 `unknown_payment_provider` when it is not configured. */
export function providerOf(providers: PaymentProviders, id: string): PaymentProvider {
  const provider = providers.get(id)
  if (!provider) throw problem('unknown_payment_provider', `No payment provider "${id}" is configured`)
  return provider
}

const perRuntime = new WeakMap<Runtime, Map<string, PaymentProvider>>()

/** The providers of this node, built once per runtime so every caller shares one Stripe client. */
export function paymentProvidersOf(runtime: Runtime): PaymentProviders {
  let providers = perRuntime.get(runtime)
  if (!providers) {
    providers = createPaymentProviders(runtime.config, runtime.database.db)
    perRuntime.set(runtime, providers)
  }
  return providers
}
