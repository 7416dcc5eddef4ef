/**
 * Attaching a hook to one route from an `onRoute` hook, so that a concern that applies to a few
 * routes (idempotency, audit) costs nothing on the others.
 */
import type { RouteOptions } from 'fastify'

type HookName = 'preValidation' | 'preHandler' | 'onSend' | 'onResponse'

/** Appends handler to the route's own hooks of that name, after any it declares itself. */
export function appendRouteHook(route: RouteOptions, name: HookName, handler: unknown): void {
  const existing = route[name] as unknown
  const list = existing === undefined ? [] : Array.isArray(existing) ? existing : [existing]
  ;(route as unknown as Record<HookName, unknown[]>)[name] = [...list, handler]
}
