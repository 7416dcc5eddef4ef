/**
 * Allocation strategies: which locations fill an order's lines. Pure functions over the locked
 * stock, so each strategy is tested without a database and a store can add its own.
 *
 * - `priority`: each line from the first location (lowest priority number) that can fill it
 *   whole; split across locations in priority order only when none can.
 * - `nearest`: the same, trying locations in the shipping country first.
 * - `fewest_splits`: the whole order from as few locations as possible: one that fills every line
 *   if there is one, else greedily the location that fills the most units, and so on.
 *
 * What stock cannot fill goes to backorder at the line's first location when the variant's policy
 * leaves room, and is a shortfall otherwise.
 */

export type Strategy = 'priority' | 'nearest' | 'fewest_splits'
export const STRATEGIES: readonly Strategy[] = ['priority', 'nearest', 'fewest_splits']

export interface Candidate {
  location_id: string
  priority: number
  country_code: string
  /** Units that may be sold here without backorder. */
  sellable: number
}

export interface LineRequest {
  variant_id: string
  quantity: number
  /** Units this variant may still promise beyond sellable stock (0: none). */
  oversell: number
}

export interface Allocation {
  variant_id: string
  location_id: string
  quantity: number
  /** Of quantity, units promised beyond sellable stock. */
  backordered: number
}

export interface Shortfall {
  variant_id: string
  requested: number
  available: number
}

/** Sorts locations in the order the strategy tries them. */
export function orderCandidates<T extends Candidate>(
  candidates: T[],
  strategy: Strategy,
  country: string | null,
): T[] {
  const far = (c: Candidate) =>
    strategy === 'nearest' && country !== null && c.country_code !== country ? 1 : 0
  return [...candidates].sort(
    (a, b) =>
      far(a) - far(b) ||
      a.priority - b.priority ||
      (a.location_id < b.location_id ? -1 : a.location_id > b.location_id ? 1 : 0),
  )
}

/** Allocates every line; candidates hold only locations eligible to ship this order. */
export function allocate(
  strategy: Strategy,
  country: string | null,
  lines: LineRequest[],
  candidates: Map<string, Candidate[]>,
): { allocations: Allocation[]; shortfalls: Shortfall[] } {
  const ordered = new Map([...candidates].map(([v, cs]) => [v, orderCandidates(cs, strategy, country)]))
  const stock = new Map<string, number>()
  const key = (v: string, l: string) => `${v}|${l}`
  for (const [v, cs] of ordered) for (const c of cs) stock.set(key(v, c.location_id), Math.max(0, c.sellable))
  const taken = new Map<string, Allocation>()
  const take = (variant_id: string, location_id: string, quantity: number, backordered = 0) => {
    const k = key(variant_id, location_id)
    const existing = taken.get(k) ?? { variant_id, location_id, quantity: 0, backordered: 0 }
    existing.quantity += quantity
    existing.backordered += backordered
    taken.set(k, existing)
    stock.set(k, (stock.get(k) ?? 0) - (quantity - backordered))
  }
  const need = new Map(lines.map((l) => [l.variant_id, l.quantity]))

  if (strategy === 'fewest_splits') fillFewestSplits(lines, ordered, stock, need, take)
  else {
    for (const line of lines) {
      const cs = ordered.get(line.variant_id) ?? []
      const whole = cs.find((c) => (stock.get(key(line.variant_id, c.location_id)) ?? 0) >= line.quantity)
      if (whole) {
        take(line.variant_id, whole.location_id, line.quantity)
        need.set(line.variant_id, 0)
        continue
      }
      for (const c of cs) {
        const left = need.get(line.variant_id)!
        const here = Math.min(left, stock.get(key(line.variant_id, c.location_id)) ?? 0)
        if (here <= 0) continue
        take(line.variant_id, c.location_id, here)
        need.set(line.variant_id, left - here)
      }
    }
  }

  const shortfalls: Shortfall[] = []
  for (const line of lines) {
    const left = need.get(line.variant_id)!
    if (left <= 0) continue
    const first = ordered.get(line.variant_id)?.[0]
    if (first && line.oversell >= left) take(line.variant_id, first.location_id, left, left)
    else
      shortfalls.push({
        variant_id: line.variant_id,
        requested: line.quantity,
        available: line.quantity - left + line.oversell,
      })
  }
  return { allocations: [...taken.values()], shortfalls }
}

function fillFewestSplits(
  lines: LineRequest[],
  ordered: Map<string, Candidate[]>,
  stock: Map<string, number>,
  need: Map<string, number>,
  take: (variant: string, location: string, quantity: number) => void,
): void {
  // Every location any line could use, in the order the first line's candidates give, then others.
  const locations: string[] = []
  for (const line of lines) {
    for (const c of ordered.get(line.variant_id) ?? [])
      if (!locations.includes(c.location_id)) locations.push(c.location_id)
  }
  locations.sort((a, b) => rank(a) - rank(b))
  function rank(location: string): number {
    for (const cs of ordered.values()) {
      const c = cs.find((x) => x.location_id === location)
      if (c) return c.priority
    }
    return Number.MAX_SAFE_INTEGER
  }
  const coverage = (location: string) =>
    lines.reduce(
      (sum, l) => sum + Math.min(need.get(l.variant_id)!, stock.get(`${l.variant_id}|${location}`) ?? 0),
      0,
    )
  for (;;) {
    const remaining = lines.reduce((sum, l) => sum + need.get(l.variant_id)!, 0)
    if (remaining === 0) return
    let best: string | undefined
    let bestCovered = 0
    for (const location of locations) {
      const covered = coverage(location)
      if (covered > bestCovered) {
        best = location
        bestCovered = covered
      }
    }
    if (!best) return
    for (const line of lines) {
      const here = Math.min(need.get(line.variant_id)!, stock.get(`${line.variant_id}|${best}`) ?? 0)
      if (here <= 0) continue
      take(line.variant_id, best, here)
      need.set(line.variant_id, need.get(line.variant_id)! - here)
    }
  }
}
