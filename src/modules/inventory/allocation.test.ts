/** Allocation strategies on hand-made stock: which locations fill which lines. */
import { describe, expect, it } from 'vitest'
import { allocate, type Candidate } from './allocation.ts'

const loc = (location_id: string, priority: number, country_code: string, sellable: number): Candidate => ({
  location_id,
  priority,
  country_code,
  sellable,
})

describe('allocation strategies', () => {
  const stock = new Map([
    ['a', [loc('de', 1, 'DE', 2), loc('fr', 2, 'FR', 10), loc('es', 3, 'ES', 10)]],
    ['b', [loc('de', 1, 'DE', 5), loc('es', 3, 'ES', 5)]],
  ])

  it('priority: the first location that fills a line whole, splitting only when none can', () => {
    expect(
      allocate('priority', null, [{ variant_id: 'a', quantity: 5, oversell: 0 }], stock).allocations,
    ).toEqual([{ variant_id: 'a', location_id: 'fr', quantity: 5, backordered: 0 }])
    const split = allocate('priority', null, [{ variant_id: 'a', quantity: 15, oversell: 0 }], stock)
    expect(split.allocations.map((a) => [a.location_id, a.quantity])).toEqual([
      ['de', 2],
      ['fr', 10],
      ['es', 3],
    ])
  })

  it('nearest: locations in the shipping country first', () => {
    const { allocations } = allocate('nearest', 'ES', [{ variant_id: 'a', quantity: 1, oversell: 0 }], stock)
    expect(allocations.map((a) => a.location_id)).toEqual(['es'])
  })

  it('fewest_splits: one location for the whole order when one can fill it', () => {
    const lines = [
      { variant_id: 'a', quantity: 3, oversell: 0 },
      { variant_id: 'b', quantity: 4, oversell: 0 },
    ]
    // Priority takes a from France and b from Germany: two parcels. Spain fills both.
    expect(new Set(allocate('priority', null, lines, stock).allocations.map((a) => a.location_id))).toEqual(
      new Set(['fr', 'de']),
    )
    expect(allocate('fewest_splits', null, lines, stock).allocations.map((a) => a.location_id)).toEqual([
      'es',
      'es',
    ])
  })

  it('backorders at the first location within the room left, and reports shortfalls beyond it', () => {
    const backordered = allocate('priority', null, [{ variant_id: 'b', quantity: 12, oversell: 2 }], stock)
    expect(backordered.shortfalls).toEqual([])
    expect(backordered.allocations).toContainEqual({
      variant_id: 'b',
      location_id: 'de',
      quantity: 7,
      backordered: 2,
    })
    const short = allocate('priority', null, [{ variant_id: 'b', quantity: 13, oversell: 2 }], stock)
    expect(short.shortfalls).toEqual([{ variant_id: 'b', requested: 13, available: 12 }])
  })
})
