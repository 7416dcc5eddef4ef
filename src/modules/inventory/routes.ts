/** The inventory module's HTTP surface: every `/admin/inventory/*` route, needing `inventory:*`. */
import type { FastifyPluginAsync } from 'fastify'
import type { Runtime } from '../../platform/runtime.ts'
import { locationRoutes } from './location-routes.ts'
import { reportRoutes } from './report-routes.ts'
import { reservationRoutes } from './reservation-routes.ts'
import { Level, Location, Movement, Policy, Reservation } from './schemas.ts'
import { stockRoutes } from './stock-routes.ts'

export const inventoryRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (app, { runtime }) => {
  for (const schema of [Location, Level, Policy, Reservation, Movement]) app.addSchema(schema)
  await app.register(locationRoutes, { runtime })
  await app.register(stockRoutes, { runtime })
  await app.register(reservationRoutes, { runtime })
  await app.register(reportRoutes, { runtime })
}
