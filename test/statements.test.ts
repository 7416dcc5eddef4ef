/**
 * Prepared statements on PostgreSQL connections: which statements each connection keeps prepared,
 * that prepared ones answer as unprepared ones do, and the cache's bound.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type Database, openDatabase } from '../src/platform/db/database.ts'
import { migrateToLatest } from '../src/platform/db/migrate.ts'
import { PREPARE_MARK, UNPREPARED_MARK } from '../src/platform/db/statements.ts'
import { newId } from '../src/platform/ids.ts'
import { createTestDatabase, describePostgres, type TestDatabase } from './support/database.ts'

describePostgres('postgres: prepared statements', () => {
  let testDb: TestDatabase
  const opened: Database[] = []
  beforeAll(async () => {
    testDb = await createTestDatabase('postgres')
    const database = await open(250)
    await migrateToLatest(database.db)
  })
  afterAll(async () => {
    for (const database of opened) await database.close()
    await testDb.drop()
  })

  async function open(statementCache: number, poolMax = 2): Promise<Database> {
    const database = await openDatabase({ url: testDb.url, dataDir: undefined, poolMax, statementCache })
    opened.push(database)
    return database
  }

  /** Runs each statement on one connection of the pool, then lists what that connection prepared. */
  async function onOneConnection(database: Database, statements: Array<[string, unknown[]]>) {
    const client = await database.pool!.connect()
    try {
      const results = []
      for (const [text, values] of statements) results.push((await client.query(text, values)).rows)
      const prepared = await client.query<{ statement: string }>(
        'select statement from pg_prepared_statements order by prepare_time',
      )
      return { results, prepared: prepared.rows.map((r) => r.statement) }
    } finally {
      client.release()
    }
  }

  it('keeps a statement prepared from its second run on a connection, with the same answers', async () => {
    const database = await open(250)
    const id = newId('prod')
    await database.db.insertInto('products').values({ id, handle: id, title: 'Prepared' }).execute()
    const text = 'select id, title, $2::int as n from products where id = $1'
    const { results, prepared } = await onOneConnection(database, [
      [text, [id, 1]],
      [text, [id, 2]],
      [text, [id, 3]],
      [text, ['prod_none', 4]],
    ])
    expect(results).toEqual([
      [{ id, title: 'Prepared', n: 1 }],
      [{ id, title: 'Prepared', n: 2 }],
      [{ id, title: 'Prepared', n: 3 }],
      [],
    ])
    expect(prepared).toEqual([text])
    const once = await onOneConnection(database, [['select $1::int as once', [1]]])
    expect(once.prepared).not.toContain('select $1::int as once')
  })

  it('prepares a statement afresh after a change to its table made it stale', async () => {
    const database = await open(250, 1)
    const id = newId('prod')
    await database.db.insertInto('products').values({ id, handle: id, title: 'Stale' }).execute()
    const read = () => database.db.selectFrom('products').selectAll().where('id', '=', id).executeTakeFirst()
    await read()
    await read()
    await sql`alter table products add column stale_test int`.execute(database.db)
    try {
      // The prepared form returns the old columns: PostgreSQL refuses it once, then it is prepared again.
      await read().catch((error: { code?: string }) => expect(error.code).toBe('0A000'))
      expect(await read()).toMatchObject({ id, title: 'Stale', stale_test: null })
      expect(await read()).toMatchObject({ id, stale_test: null })
    } finally {
      await sql`alter table products drop column stale_test`.execute(database.db)
    }
  })

  it('prepares marked statements at once and never unmarked ones without parameters or marked unprepared', async () => {
    const database = await open(250)
    const marked = `${PREPARE_MARK} select $1::int + 1 as n`
    const refused = `${UNPREPARED_MARK} select $1::int + 2 as n`
    const plain = 'select 3 as n'
    const { results, prepared } = await onOneConnection(database, [
      [marked, [1]],
      [refused, [1]],
      [refused, [1]],
      [refused, [1]],
      [plain, []],
      [plain, []],
    ])
    expect(results.map((rows) => rows[0])).toEqual([
      { n: 2 },
      { n: 3 },
      { n: 3 },
      { n: 3 },
      { n: 3 },
      { n: 3 },
    ])
    expect(prepared).toEqual([marked])
  })

  it('keeps at most the configured number per connection, marked ones included, and none at 0', async () => {
    const texts = ['select $1::int as a', 'select $1::int as b', 'select $1::int as c']
    const twice = texts.flatMap(
      (text): Array<[string, unknown[]]> => [
        [text, [1]],
        [text, [2]],
      ],
    )
    const bounded = await onOneConnection(await open(2), twice)
    expect(bounded.prepared).toEqual(texts.slice(0, 2))
    expect(bounded.results.at(-1)).toEqual([{ c: 2 }])

    const marked = `${PREPARE_MARK} select $1::int as d`
    const full = await onOneConnection(await open(2), [...twice, [marked, [4]]])
    expect(full.prepared).toEqual(texts.slice(0, 2))
    const off = await onOneConnection(await open(0), [...twice, [marked, [4]]])
    expect(off.prepared).toEqual([])
    expect(off.results.at(-1)).toEqual([{ d: 4 }])
  })

  it('runs Kysely queries and transactions through prepared statements', async () => {
    // One connection, so that every statement below runs where the last one looks.
    const database = await open(250, 1)
    const id = newId('prod')
    for (let i = 0; i < 3; i++) {
      await database.db.transaction().execute(async (trx) => {
        await trx
          .insertInto('products')
          .values({ id: `${id}_${i}`, handle: `${id}_${i}`, title: `T${i}` })
          .execute()
      })
    }
    const rows = await database.db
      .selectFrom('products')
      .select('title')
      .where('id', 'like', `${id}_%`)
      .orderBy('title')
      .execute()
    expect(rows.map((r) => r.title)).toEqual(['T0', 'T1', 'T2'])
    const { rows: prepared } = await sql<{ statement: string }>`
      select statement from pg_prepared_statements`.execute(database.db)
    expect(prepared.map((r) => r.statement)).toEqual([
      'insert into "products" ("id", "handle", "title") values ($1, $2, $3)',
    ])
  })
})
