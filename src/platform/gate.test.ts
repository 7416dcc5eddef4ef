import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { Gate } from './gate.ts'
import { ProblemError } from './http/errors.ts'

describe('Gate', () => {
  it('runs at most its limit at once, the rest in arrival order', async () => {
    const gate = new Gate(2, 5_000)
    let running = 0
    let most = 0
    const order: number[] = []
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        gate.run(async () => {
          running++
          most = Math.max(most, running)
          order.push(i)
          await sleep(10)
          running--
        }),
      ),
    )
    expect(most).toBe(2)
    expect(order).toEqual([0, 1, 2, 3, 4, 5])
  })

  it('answers 503 overloaded to a task that waited too long, and frees its place for later ones', async () => {
    const gate = new Gate(1, 30)
    const slow = gate.run(() => sleep(100))
    const late = gate.run(async () => 'ran')
    await expect(late).rejects.toBeInstanceOf(ProblemError)
    await expect(late).rejects.toMatchObject({ code: 'overloaded', status: 503 })
    await slow
    expect(await gate.run(async () => 'next')).toBe('next')
  })

  it('frees the place of a task that throws', async () => {
    const gate = new Gate(1, 1_000)
    await expect(gate.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
    expect(await gate.run(async () => 'after')).toBe('after')
  })
})
