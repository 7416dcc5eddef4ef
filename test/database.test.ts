/**
 * The database layer: migrations, the transaction helper's retries, and PGlite's serializing gate.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Database } from '../src/platform/db/database.ts'
import { migrateToLatest } from '../src/platform/db/migrate.ts'
import { migrations } from '../src/platform/db/migrations/index.ts'
import { asynchronousCommit, withTransaction } from '../src/platform/db/transaction.ts'
import { newId } from '../src/platform/ids.ts'
import {
  createTestDatabase,
  describeEachDatabase,
  describePostgres,
  type TestDatabase,
} from './support/database.ts'

describeEachDatabase('database layer', (kind) => {
  let testDb: TestDatabase
  let database: Database
  beforeAll(async () => {
    testDb = await createTestDatabase(kind)
    database = await testDb.open()
  })
  afterAll(async () => {
    await database.close()
    await testDb.drop()
  })

  it('applies every migration once, and a second run applies none', async () => {
    expect(await migrateToLatest(database.db)).toEqual(Object.keys(migrations))
    expect(await migrateToLatest(database.db)).toEqual([])
    const tables = await sql<{ table_name: string }>`
      select table_name from information_schema.tables where table_schema = 'public'`.execute(database.db)
    expect(tables.rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining(['idempotency_keys', 'events', 'products']),
    )
  })

  it('starts a migrated test database as a copy of the template: nothing to apply, nothing shared', async () => {
    const copies = [
      await createTestDatabase(kind, { migrated: true }),
      await createTestDatabase(kind, { migrated: true }),
    ]
    const [one, two] = await Promise.all(copies.map((copy) => copy.open()))
    try {
      expect(await migrateToLatest(one!.db)).toEqual([])
      const id = newId('prod')
      await one!.db.insertInto('products').values({ id, handle: id, title: 'only in one' }).execute()
      const seen = await two!.db.selectFrom('products').select('id').where('id', '=', id).execute()
      expect(seen).toEqual([])
      expect(await migrateToLatest(two!.db)).toEqual([])
    } finally {
      await Promise.all([one!.close(), two!.close()])
      await Promise.all(copies.map((copy) => copy.drop()))
    }
  })

  it('retries a transaction that fails with a serialization failure, then commits once', async () => {
    let attempts = 0
    const id = newId('prod')
    await withTransaction(database.db, async (trx) => {
      attempts++
      await trx.insertInto('products').values({ id, handle: id, title: 'retry' }).execute()
      if (attempts < 3) throw Object.assign(new Error('could not serialize access'), { code: '40001' })
    })
    expect(attempts).toBe(3)
    const rows = await database.db.selectFrom('products').select('id').where('id', '=', id).execute()
    expect(rows).toHaveLength(1)
  })

  it('compresses cart documents with lz4 where the server has it, and keeps the default where not', async () => {
    const { rows } = await sql<{ attname: string; attcompression: string }>`
      select attname, attcompression::text as attcompression from pg_attribute
      where attrelid = 'carts'::regclass and attname in ('lines', 'totals') order by attname`.execute(
      database.db,
    )
    const lz4 = (
      await sql<{ ok: boolean }>`
        select 'lz4' = any (enumvals) as ok from pg_settings where name = 'default_toast_compression'`.execute(
        database.db,
      )
    ).rows[0]!.ok
    // PGlite is built without lz4; PostgreSQL packages usually have it.
    expect(rows.map((r) => r.attcompression)).toEqual(lz4 ? ['l', 'l'] : ['', ''])
  })

  it('commits a write asynchronously only in its own transaction, and writes it all the same', async () => {
    const id = newId('prod')
    await database.db.insertInto('products').values({ id, handle: id, title: 'before' }).execute()
    const inside = await withTransaction(database.db, async (trx) => {
      const updated = await trx
        .updateTable('products')
        .set({ title: 'after' })
        .where('id', '=', id)
        .where(asynchronousCommit)
        .executeTakeFirst()
      expect(updated.numUpdatedRows).toBe(1n)
      return (
        await sql<{ value: string }>`select current_setting('synchronous_commit') as value`.execute(trx)
      ).rows[0]!.value
    })
    expect(inside).toBe('off')
    const after = await sql<{ value: string }>`select current_setting('synchronous_commit') as value`.execute(
      database.db,
    )
    expect(after.rows[0]!.value).toBe('on')
    const row = await database.db
      .selectFrom('products')
      .select('title')
      .where('id', '=', id)
      .executeTakeFirst()
    expect(row?.title).toBe('after')
  })

  it('gives up after the bounded number of attempts and does not retry other errors', async () => {
    let attempts = 0
    const deadlock = Object.assign(new Error('deadlock detected'), { code: '40P01' })
    await expect(
      withTransaction(
        database.db,
        async () => {
          attempts++
          throw deadlock
        },
        { attempts: 4 },
      ),
    ).rejects.toBe(deadlock)
    expect(attempts).toBe(4)
    attempts = 0
    await expect(
      withTransaction(database.db, async () => {
        attempts++
        throw new Error('plain bug')
      }),
    ).rejects.toThrow('plain bug')
    expect(attempts).toBe(1)
  })

  it('reads and writes timestamptz of the years 0001 to 0099 and BC as the instants they are', async () => {
    // JavaScript's Date reads '0001-06-01 00:00:00+00' with its legacy two-digit years, as 2001.
    for (const text of [
      '0001-06-01T00:00:00.000Z',
      '0050-06-01T12:34:56.789Z',
      '0099-12-31T23:59:59.999Z',
      '0100-01-01T00:00:00.000Z',
    ]) {
      const { rows } = await sql<{ at: Date }>`select ${text}::timestamptz as at`.execute(database.db)
      expect(rows[0]!.at.toISOString()).toBe(text)
      const back = await sql<{ same: boolean }>`
        select ${rows[0]!.at}::timestamptz = ${text}::timestamptz as same`.execute(database.db)
      expect(back.rows[0]!.same).toBe(true)
    }
    // No input reaches BC (DateTimeInput stops at 0001), but arithmetic in SQL can: it comes back as
    // the year ISO 8601 numbers -43 for 44 BC, and goes back in as the same instant.
    for (const [text, iso] of [
      ['0044-03-15 12:00:00+00 BC', '-000043-03-15T12:00:00.000Z'],
      ['0001-12-31 23:59:59.5+00 BC', '0000-12-31T23:59:59.500Z'],
    ] as const) {
      const { rows } = await sql<{ at: Date }>`select ${text}::timestamptz as at`.execute(database.db)
      expect(rows[0]!.at.toISOString()).toBe(iso)
      const back = await sql<{ same: boolean }>`
        select ${rows[0]!.at}::timestamptz = ${text}::timestamptz as same`.execute(database.db)
      expect(back.rows[0]!.same).toBe(true)
    }
    const { rows } = await sql<{ at: Date }>`
      select '0001-01-01T00:00:00Z'::timestamptz - interval '1 day' as at`.execute(database.db)
    expect(rows[0]!.at.toISOString()).toBe('0000-12-31T00:00:00.000Z')
  })

  it('keeps queries from outside out of an open transaction', async () => {
    // On PGlite one connection serves everyone: without the gate, the outside insert below would run
    // inside the transaction and vanish with its rollback. On Postgres it takes another connection.
    const inside = newId('prod')
    const outside = newId('prod')
    const { promise: held, resolve: releaseTransaction } = Promise.withResolvers<void>()
    const { promise: begun, resolve: began } = Promise.withResolvers<void>()
    const transaction = withTransaction(database.db, async (trx) => {
      await trx.insertInto('products').values({ id: inside, handle: inside, title: 'inside' }).execute()
      began()
      await held
      throw new Error('roll back')
    }).catch(() => 'rolled back')
    await begun
    const outsideInsert = database.db
      .insertInto('products')
      .values({ id: outside, handle: outside, title: 'outside' })
      .execute()
    releaseTransaction()
    expect(await transaction).toBe('rolled back')
    await outsideInsert
    const found = await database.db
      .selectFrom('products')
      .select('id')
      .where('id', 'in', [inside, outside])
      .execute()
    expect(found.map((r) => r.id)).toEqual([outside])
  })
})

describePostgres('postgres: real serialization failures', () => {
  let testDb: TestDatabase
  let database: Database
  beforeAll(async () => {
    testDb = await createTestDatabase('postgres')
    database = await testDb.open()
    await migrateToLatest(database.db)
  })
  afterAll(async () => {
    await database.close()
    await testDb.drop()
  })

  it('retries serializable transactions that collide until every one commits', async () => {
    const id = newId('prod')
    await database.db.insertInto('products').values({ id, handle: id, title: '0' }).execute()
    let attempts = 0
    // Twenty read-modify-write increments under SERIALIZABLE: most collide (40001) and must retry.
    await Promise.all(
      Array.from({ length: 20 }, () =>
        withTransaction(
          database.db,
          async (trx) => {
            attempts++
            const row = await trx
              .selectFrom('products')
              .select('title')
              .where('id', '=', id)
              .executeTakeFirstOrThrow()
            await trx
              .updateTable('products')
              .set({ title: String(Number(row.title) + 1) })
              .where('id', '=', id)
              .execute()
          },
          { isolation: 'serializable', attempts: 50 },
        ),
      ),
    )
    const row = await database.db
      .selectFrom('products')
      .select('title')
      .where('id', '=', id)
      .executeTakeFirstOrThrow()
    expect(row.title).toBe('20')
    expect(attempts).toBeGreaterThan(20)
  })
})
