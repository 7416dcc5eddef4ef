/** Exact rounding and allocation: half-up at the half, sums preserved, rates parsed without floats. */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  allocate,
  allocateByWeight,
  mulDivHalfUp,
  percentToPpm,
  ppmToPercent,
  roundHalfUp,
} from './rounding.ts'

describe('rounding', () => {
  it('rounds half-up, away from zero', () => {
    expect([5n, 15n, 25n, 14n, 16n].map((n) => roundHalfUp(n, 10n))).toEqual([1n, 2n, 3n, 1n, 2n])
    expect(roundHalfUp(-15n, 10n)).toBe(-2n)
    expect(mulDivHalfUp(1200, 200_000, 1_200_000)).toBe(200)
    // Products beyond 2^53 stay exact.
    expect(mulDivHalfUp(9_007_199_254_740_991, 190_000, 1_000_000)).toBe(1_711_367_858_400_788)
  })

  it('parses percent strings to parts per million exactly and back', () => {
    expect(['19', '9.975', '25.5', '0', '4.8', '2.1', '100'].map(percentToPpm)).toEqual([
      190_000, 99_750, 255_000, 0, 48_000, 21_000, 1_000_000,
    ])
    expect(percentToPpm('19.12345')).toBeUndefined()
    expect(percentToPpm('-1')).toBeUndefined()
    expect(percentToPpm('101')).toBeUndefined()
    expect([99_750, 190_000, 81_000].map(ppmToPercent)).toEqual(['9.975', '19', '8.1'])
  })

  it('allocation always sums to the total and moves each share by less than one unit', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 999_999 }),
        (bases, ppm) => {
          const shares = bases.map((b) => ({ num: BigInt(b) * BigInt(ppm), den: 1_000_000n }))
          const exactSum = shares.reduce((a, s) => a + s.num, 0n)
          const total = roundHalfUp(exactSum, 1_000_000n)
          const parts = allocate(total, shares)
          expect(parts.reduce((a, b) => a + b, 0n)).toBe(total)
          parts.forEach((p, i) => {
            const s = shares[i]!
            expect(p * s.den - s.num < s.den && s.num - p * s.den < s.den).toBe(true)
          })
        },
      ),
    )
    expect(allocateByWeight(1000, [8000, 2000])).toEqual([800, 200])
    expect(allocateByWeight(10, [1, 1, 1])).toEqual([4, 3, 3])
  })
})
