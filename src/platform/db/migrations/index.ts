/**
 * The one migration set, in order. Each module keeps its migrations beside its code; this list is
 * where they are put in sequence. Names sort in the order they must run.
 */
import type { Migration } from 'kysely/migration'
import * as carts0001 from '../../../modules/carts/migrations/0001-carts.ts'
import * as carts0002 from '../../../modules/carts/migrations/0002-lz4.ts'
import * as catalog0001 from '../../../modules/catalog/migrations/0001-products.ts'
import * as catalog0002 from '../../../modules/catalog/migrations/0002-model.ts'
import * as catalog0003 from '../../../modules/catalog/migrations/0003-requires-shipping.ts'
import * as catalog0004 from '../../../modules/catalog/migrations/0004-sales-counted.ts'
import * as catalog0005 from '../../../modules/catalog/migrations/0005-sales-backfill.ts'
import * as catalog0006 from '../../../modules/catalog/migrations/0006-list-reference-prices.ts'
import * as catalog0007 from '../../../modules/catalog/migrations/0007-list-prices-need-base.ts'
import * as catalog0008 from '../../../modules/catalog/migrations/0008-name-sort-folded.ts'
import * as catalog0009 from '../../../modules/catalog/migrations/0009-web-media-only.ts'
import * as identity0001 from '../../../modules/identity/migrations/0001-identity.ts'
import * as identity0002 from '../../../modules/identity/migrations/0002-audit-truncate.ts'
import * as identity0003 from '../../../modules/identity/migrations/0003-customer-groups.ts'
import * as inventory0001 from '../../../modules/inventory/migrations/0001-inventory.ts'
import * as inventory0002 from '../../../modules/inventory/migrations/0002-reserve-batch.ts'
import * as orders0001 from '../../../modules/orders/migrations/0001-orders.ts'
import * as orders0002 from '../../../modules/orders/migrations/0002-shipping-optional.ts'
import * as orders0003 from '../../../modules/orders/migrations/0003-order-refunds.ts'
import * as orders0004 from '../../../modules/orders/migrations/0004-transition-time.ts'
import * as orders0005 from '../../../modules/orders/migrations/0005-processor-refunds-booked.ts'
import * as payments0001 from '../../../modules/payments/migrations/0001-payments.ts'
import * as tax0001 from '../../../modules/tax/migrations/0001-tax.ts'
import * as tax0002 from '../../../modules/tax/migrations/0002-service-calls.ts'
import * as platform0001 from './0001-platform.ts'
import * as platform0002 from './0002-idempotency-text.ts'
import * as platform0003 from './0003-idempotency-guest-scope.ts'
import * as platform0004 from './0004-event-deliveries.ts'
import * as platform0005 from './0005-event-sequence.ts'

export const migrations: Record<string, Migration> = {
  '0001-platform': platform0001,
  '0002-catalog-products': catalog0001,
  '0003-identity': identity0001,
  '0004-identity-audit-truncate': identity0002,
  '0005-catalog-model': catalog0002,
  '0006-tax': tax0001,
  '0007-identity-customer-groups': identity0003,
  '0008-inventory': inventory0001,
  '0009-platform-idempotency-text': platform0002,
  '0010-payments': payments0001,
  '0011-carts': carts0001,
  '0012-orders': orders0001,
  '0013-inventory-reserve-batch': inventory0002,
  '0014-catalog-requires-shipping': catalog0003,
  '0015-orders-shipping-optional': orders0002,
  '0016-carts-lz4': carts0002,
  '0017-orders-refunds': orders0003,
  '0018-tax-service-calls': tax0002,
  '0019-orders-transition-time': orders0004,
  '0020-catalog-sales-counted': catalog0004,
  '0021-catalog-sales-backfill': catalog0005,
  '0022-catalog-list-reference-prices': catalog0006,
  '0023-platform-idempotency-guest-scope': platform0003,
  '0024-platform-event-deliveries': platform0004,
  '0025-catalog-list-prices-need-base': catalog0007,
  '0026-catalog-name-sort-folded': catalog0008,
  '0027-platform-event-sequence': platform0005,
  '0028-orders-processor-refunds-booked': orders0005,
  '0029-catalog-web-media-only': catalog0009,
}
