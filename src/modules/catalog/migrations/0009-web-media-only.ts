/**
 * Removes from products' media the entries whose URL is not http: or https: (scheme in any case),
 * which product writes refuse now: storefronts put media URLs in `src` and `href` as they come, so
 * a `javascript:` or `data:` URL stored before would still run in shoppers' browsers, and the
 * export of its product would not import back. The entries left keep their order, so the
 * thumbnail (the first one, read from `products.media` by the storefront: no read model holds
 * media) becomes the first web URL.
 *
 * Each product changed gets an audit log entry listing what was removed, with positions, so staff
 * can see and replace it. Products are not bumped in the catalog cache (it lives in the KV store,
 * out of a migration's reach); a node that migrates at start has an empty one. Running this again
 * finds nothing to remove.
 */
import { type Kysely, sql } from 'kysely'
import { monotonicFactory } from 'ulid'

export async function up(db: Kysely<unknown>): Promise<void> {
  const { rows } = await sql<{ id: string; removed: unknown[] }>`
    update products p set media = x.kept, updated_at = now()
    from (
      select q.id,
        coalesce(jsonb_agg(m.item order by m.n) filter (where m.web), '[]') as kept,
        jsonb_agg(
          jsonb_build_object('position', m.n - 1, 'url', m.item -> 'url', 'alt', m.item -> 'alt')
          order by m.n) filter (where not m.web) as removed
      from products q
      cross join lateral (
        select item, n, coalesce(item ->> 'url' ~* '^https?://', false) as web
        from jsonb_array_elements(q.media) with ordinality as e(item, n)) m
      where jsonb_typeof(q.media) = 'array'
      group by q.id
      having not bool_and(m.web)
    ) x
    where p.id = x.id
    returning p.id, x.removed`.execute(db)
  // The audit log's ids sort by time, as newId's do: the log lists newest first by id.
  const ulid = monotonicFactory()
  for (const row of rows) {
    await sql`
      insert into audit_log (id, actor_type, actor_id, action, resource_type, resource_id, details)
      values (${`aud_${ulid().toLowerCase()}`}, 'system', 'migration', 'remove media whose URL is not http(s)',
        'products', ${row.id}, ${JSON.stringify({ removed: row.removed })}::jsonb)`.execute(db)
  }
}

/** The removed URLs are refused on every write now: nothing to put back (the audit log has them). */
export async function down(): Promise<void> {}
