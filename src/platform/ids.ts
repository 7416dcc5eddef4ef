/**
 * Prefixed, time-sortable ids (`prod_01JD…`): the prefix tells a reader what the id names, and the
 * ULID body sorts by creation time, so id order is a stable default sort for cursors.
 */
import { monotonicFactory } from 'ulid'

const ulid = monotonicFactory()

/** Returns a new id such as `prod_01JDQ3…` for the given prefix. */
export function newId(prefix: string): string {
  return `${prefix}_${ulid().toLowerCase()}`
}
