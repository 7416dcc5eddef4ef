/**
 * Exact integer arithmetic for tax amounts. Shares are kept as fractions of bigints until the one
 * place each is rounded, so no float ever touches money and every rounding is the named one:
 * half-up (half away from zero), to the currency's minor unit.
 */

/** An exact non-negative amount in minor units: num / den. */
export interface Share {
  num: bigint
  den: bigint
}

/** num / den rounded half-up (away from zero); den must be positive. */
export function roundHalfUp(num: bigint, den: bigint): bigint {
  const negative = num < 0n
  const abs = negative ? -num : num
  const q = abs / den
  const rounded = (abs % den) * 2n >= den ? q + 1n : q
  return negative ? -rounded : rounded
}

/** round(a × b ÷ c) half-up, for plain integers (a × b may exceed 2^53: computed in bigint). */
export function mulDivHalfUp(a: number, b: number, c: number): number {
  return Number(roundHalfUp(BigInt(a) * BigInt(b), BigInt(c)))
}

/** The sum of shares as one exact fraction. */
export function sumShares(shares: readonly Share[]): Share {
  let num = 0n
  let den = 1n
  for (const s of shares) {
    if (s.den === den) num += s.num
    else {
      num = num * s.den + s.num * den
      den *= s.den
    }
  }
  return { num, den }
}

/**
 * Splits `total` minor units over the shares by the largest-remainder method: each part is its
 * share rounded down, and the units left go to the largest remainders (earliest first on ties).
 * The parts always sum to total; `total` must lie between the sum of the floors and that sum plus
 * the number of shares, which holds whenever total is the rounded sum of the shares.
 */
export function allocate(total: bigint, shares: readonly Share[]): bigint[] {
  const parts = shares.map((s) => s.num / s.den)
  let left = total - parts.reduce((a, b) => a + b, 0n)
  if (left === 0n) return parts
  const order = shares
    .map((s, i) => ({ i, rem: s.num % s.den, den: s.den }))
    // a.rem/a.den > b.rem/b.den, compared without division
    .sort((a, b) => {
      const lhs = a.rem * b.den
      const rhs = b.rem * a.den
      return lhs === rhs ? a.i - b.i : lhs > rhs ? -1 : 1
    })
  const step = left > 0n ? 1n : -1n
  for (let k = 0; left !== 0n; k = (k + 1) % order.length) {
    const i = order[step > 0n ? k : order.length - 1 - k]!.i
    parts[i] = parts[i]! + step
    left -= step
  }
  return parts
}

/**
 * Splits an integer amount over integer weights in proportion (largest remainder): used for an
 * order-level discount spread over its lines. Zero weights get nothing.
 */
export function allocateByWeight(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0)
  if (sum === 0) return weights.map(() => 0)
  const den = BigInt(sum)
  const shares = weights.map((w) => ({ num: BigInt(total) * BigInt(w), den }))
  return allocate(BigInt(total), shares).map(Number)
}

const PERCENT = /^(\d{1,3})(?:\.(\d{1,4}))?$/

/** "9.975" (percent) → 99750 parts per million, exactly; undefined for anything else. */
export function percentToPpm(percent: string): number | undefined {
  const m = PERCENT.exec(percent)
  if (!m) return undefined
  const ppm = Number(m[1]) * 10_000 + Number((m[2] ?? '').padEnd(4, '0'))
  return ppm <= 1_000_000 ? ppm : undefined
}

/** 99750 → "9.975": the rate as a percent string without trailing zeros. */
export function ppmToPercent(ppm: number): string {
  const whole = Math.floor(ppm / 10_000)
  const frac = String(ppm % 10_000)
    .padStart(4, '0')
    .replace(/0+$/, '')
  return frac ? `${whole}.${frac}` : String(whole)
}

/** roundHalfUp for a non-negative safe-integer numerator: the fast path when nothing can overflow. */
export function roundHalfUpSafe(num: number, den: number): number {
  const rem = num % den
  const q = (num - rem) / den
  return rem * 2 >= den ? q + 1 : q
}

/** allocate() for safe-integer numerators over one common denominator. */
export function allocateSafe(total: number, nums: readonly number[], den: number): number[] {
  const parts = nums.map((n) => (n - (n % den)) / den)
  let left = total - parts.reduce((a, b) => a + b, 0)
  if (left === 0) return parts
  const order = nums.map((_, i) => i).sort((a, b) => (nums[b]! % den) - (nums[a]! % den) || a - b)
  for (let k = 0; left > 0; k++, left--) {
    const i = order[k]!
    parts[i] = parts[i]! + 1
  }
  return parts
}
