/** Request ids: the one a client (or a proxy) sent, when well formed, else a new one. */
import { randomUUID } from 'node:crypto'

const REQUEST_ID = /^[\w.:-]{1,128}$/

/** The id for a request whose `X-Request-Id` header was `sent`. */
export function requestIdFrom(sent: string | string[] | undefined): string {
  return typeof sent === 'string' && REQUEST_ID.test(sent) ? sent : randomUUID()
}
