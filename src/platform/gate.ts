/**
 * A gate that lets a fixed number of tasks run at once and queues the rest in arrival order, for
 * work that holds database connections across several steps (checkout): queued before the first
 * step, a request waits with nothing done, rather than timing out on the pool half-way through.
 */
import { problem } from './http/errors.ts'

export class Gate {
  readonly #limit: number
  readonly #maxWaitMs: number
  #running = 0
  readonly #waiting: Array<{ start: () => void; timer: NodeJS.Timeout }> = []

  constructor(limit: number, maxWaitMs: number) {
    this.#limit = limit
    this.#maxWaitMs = maxWaitMs
  }

  /** Runs task when a place is free; 503 `overloaded` when none frees up within the wait. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#limit) await this.#wait()
    else this.#running++
    try {
      return await task()
    } finally {
      const next = this.#waiting.shift()
      if (next) {
        clearTimeout(next.timer)
        next.start()
      } else {
        this.#running--
      }
    }
  }

  #wait(): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = {
        // The place is handed over by the task that finishes: #running stays as it is.
        start: resolve,
        timer: setTimeout(() => {
          this.#waiting.splice(this.#waiting.indexOf(entry), 1)
          reject(
            problem('overloaded', 'Too many checkouts at once on this node; retry shortly', {
              headers: { 'retry-after': '2' },
            }),
          )
        }, this.#maxWaitMs),
      }
      this.#waiting.push(entry)
    })
  }
}
