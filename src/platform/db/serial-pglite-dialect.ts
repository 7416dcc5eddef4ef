/**
 * PGlite is one connection. Kysely's PGlite driver hands the same connection to every caller, so a
 * query issued while a transaction is open would run inside that transaction. This dialect puts a
 * gate in front of the connection: one holder at a time, whether for a single query or a whole
 * transaction, so nothing can slip a statement into someone else's transaction.
 */

import type { PGliteDialectConfig } from 'kysely'
import { type DatabaseConnection, type Driver, PGliteDialect, type TransactionSettings } from 'kysely'

/** A FIFO mutex: acquire() resolves with a release function once every earlier holder released. */
export class Gate {
  #tail: Promise<void> = Promise.resolve()

  acquire(): Promise<() => void> {
    let release!: () => void
    const next = new Promise<void>((resolve) => {
      release = resolve
    })
    const acquired = this.#tail.then(() => release)
    this.#tail = this.#tail.then(() => next)
    return acquired
  }
}

class SerialDriver implements Driver {
  readonly #inner: Driver
  readonly #gate = new Gate()
  readonly #releases: Array<() => void> = []

  constructor(inner: Driver) {
    this.#inner = inner
  }

  init(): Promise<void> {
    return this.#inner.init()
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    this.#releases.push(await this.#gate.acquire())
    return this.#inner.acquireConnection()
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    await this.#inner.releaseConnection(connection)
    // Exactly one holder exists at a time, so the release to call is the only one queued.
    this.#releases.shift()?.()
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.#inner.beginTransaction(connection, settings)
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.commitTransaction(connection)
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.rollbackTransaction(connection)
  }

  savepoint: Driver['savepoint'] = (connection, name, compile) =>
    this.#inner.savepoint!(connection, name, compile)
  rollbackToSavepoint: Driver['rollbackToSavepoint'] = (connection, name, compile) =>
    this.#inner.rollbackToSavepoint!(connection, name, compile)
  releaseSavepoint: Driver['releaseSavepoint'] = (connection, name, compile) =>
    this.#inner.releaseSavepoint!(connection, name, compile)

  destroy(): Promise<void> {
    return this.#inner.destroy()
  }
}

/** PGliteDialect whose connection is held by one caller (query or transaction) at a time. */
export class SerialPGliteDialect extends PGliteDialect {
  constructor(config: PGliteDialectConfig) {
    super(config)
  }

  override createDriver(): Driver {
    return new SerialDriver(super.createDriver())
  }
}
