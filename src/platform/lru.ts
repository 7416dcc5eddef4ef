/** A bounded map in recency order: past `max` entries, the least recently used goes first. */
export class Lru<V> {
  readonly #entries = new Map<string, V>()
  readonly #max: number

  constructor(max: number) {
    this.#max = max
  }

  get(key: string): V | undefined {
    return this.#entries.get(key)
  }

  /** Marks key as just used, if it still holds value (another caller may have replaced it). */
  touch(key: string, value: V): void {
    if (this.#entries.get(key) !== value) return
    // Map order is insertion order: re-inserting moves the key to the most recent end.
    this.#entries.delete(key)
    this.#entries.set(key, value)
  }

  set(key: string, value: V): void {
    this.#entries.delete(key)
    this.#entries.set(key, value)
    if (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value
      if (oldest !== undefined) this.#entries.delete(oldest)
    }
  }

  /** Drops key, if it still holds value. */
  forget(key: string, value: V): void {
    if (this.#entries.get(key) === value) this.#entries.delete(key)
  }

  clear(): void {
    this.#entries.clear()
  }
}
