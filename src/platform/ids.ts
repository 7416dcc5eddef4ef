/**
 * Prefixed, time-sortable ids (`prod_01JD…`): the prefix tells a reader what the id names, and the
 * ULID body sorts by creation time, so id order is a stable default sort for cursors.
 */
import { getRandomValues } from 'node:crypto'
import { monotonicFactory } from 'ulid'

const BUFFERED = 4096
const pool = new Uint32Array(BUFFERED)
let next = BUFFERED

/**
 * Cryptographic random numbers in [0, 1), drawn from a refilled buffer: ulid asks for one per
 * character, and a system call for each was a measurable share of a write request's CPU.
 */
function bufferedRandom(): number {
  if (next === BUFFERED) {
    getRandomValues(pool)
    next = 0
  }
  return pool[next++]! / 0x1_0000_0000
}

const ulid = monotonicFactory(bufferedRandom)

/** Returns a new id such as `prod_01JDQ3…` for the given prefix. */
export function newId(prefix: string): string {
  return `${prefix}_${ulid().toLowerCase()}`
}
