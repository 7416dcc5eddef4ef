/**
 * Catalog model: variants with option sets, prices per currency, price lists, regions, categories
 * (a tree kept as a materialised path), collections, tags, attributes, media and search.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  // Typo-tolerant search needs pg_trgm. It is trusted since PostgreSQL 13, so a database owner can
  // create it; where it is not installed the catalog falls back to prefix matching (see search.ts).
  const { rows } = await sql<{ available: boolean }>`
    select exists (select 1 from pg_available_extensions where name = 'pg_trgm') as available`.execute(db)
  if (rows[0]?.available) await sql`create extension if not exists pg_trgm`.execute(db)

  await sql`
    create table regions (
      id text primary key,
      name text not null,
      currency_code text not null check (currency_code ~ '^[A-Z]{3}$'),
      prices_include_tax boolean not null,
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)
  // A country belongs to at most one region, so "the region for this address" has one answer.
  await sql`
    create table region_countries (
      country_code text primary key check (country_code ~ '^[A-Z]{2}$'),
      region_id text not null references regions (id) on delete cascade
    )`.execute(db)
  await sql`create index region_countries_region on region_countries (region_id)`.execute(db)

  await sql`
    create table categories (
      id text primary key,
      parent_id text references categories (id) on delete restrict,
      handle text not null unique,
      name text not null,
      description text not null default '',
      position integer not null default 0,
      -- ids from the root down to this category joined by '/': descendants are a prefix match.
      path text not null,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)
  await sql`create index categories_path on categories (path text_pattern_ops)`.execute(db)
  await sql`create index categories_parent on categories (parent_id, position)`.execute(db)

  await sql`
    create table collections (
      id text primary key,
      handle text not null unique,
      title text not null,
      description text not null default '',
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)

  await sql`
    alter table products
      add column subtitle text not null default '',
      add column collection_id text references collections (id) on delete set null,
      add column tax_category text not null default 'standard',
      add column options jsonb not null default '[]',
      add column tags text[] not null default '{}',
      add column attributes jsonb not null default '{}',
      add column media jsonb not null default '[]',
      add column sales_count integer not null default 0`.execute(db)
  await sql`create index products_tags on products using gin (tags)`.execute(db)
  await sql`create index products_attributes on products using gin (attributes jsonb_path_ops)`.execute(db)
  // Search read model: one narrow row per product. Ranking reads the vector of every match, and
  // on the wide products table that meant one heap page per match; here a page holds dozens.
  await sql`
    create table product_search (
      product_id text primary key references products (id) on delete cascade,
      status text not null,
      -- Currencies the product has a price in: the storefront lists only what a region can buy.
      currencies text[] not null default '{}',
      search tsvector not null
    )`.execute(db)
  await sql`create index product_search_vector on product_search using gin (search)`.execute(db)
  await sql`create index products_status_title on products (status, title, id)`.execute(db)
  await sql`create index products_status_sales on products (status, sales_count, id)`.execute(db)
  await sql`create index products_collection on products (collection_id, id)`.execute(db)
  if (rows[0]?.available) {
    await sql`create index products_title_trgm on products using gin (title gin_trgm_ops)`.execute(db)
  }

  await sql`
    create table product_categories (
      product_id text not null references products (id) on delete cascade,
      category_id text not null references categories (id) on delete cascade,
      primary key (product_id, category_id)
    )`.execute(db)
  await sql`create index product_categories_category on product_categories (category_id, product_id)`.execute(
    db,
  )

  await sql`
    create table product_variants (
      id text primary key,
      product_id text not null references products (id) on delete cascade,
      sku text not null unique,
      title text not null,
      options jsonb not null default '{}',
      barcode text,
      weight_g integer check (weight_g >= 0),
      length_mm integer check (length_mm >= 0),
      width_mm integer check (width_mm >= 0),
      height_mm integer check (height_mm >= 0),
      position integer not null default 0,
      manage_inventory boolean not null default true,
      metadata jsonb not null default '{}',
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)
  await sql`create index product_variants_product on product_variants (product_id, position)`.execute(db)
  // One variant per combination of option values within a product.
  await sql`create unique index product_variants_options on product_variants (product_id, options)`.execute(
    db,
  )

  await sql`
    create table variant_prices (
      variant_id text not null references product_variants (id) on delete cascade,
      currency_code text not null check (currency_code ~ '^[A-Z]{3}$'),
      amount bigint not null check (amount >= 0),
      compare_at_amount bigint check (compare_at_amount >= 0),
      primary key (variant_id, currency_code)
    )`.execute(db)

  // Read model for the storefront list: each product's lowest base price per currency (with the
  // compare-at price of that variant) and highest, rewritten whenever a variant's prices change.
  // The list then prices a product with one primary-key probe instead of visiting every variant.
  await sql`
    create table product_prices (
      product_id text not null references products (id) on delete cascade,
      currency_code text not null,
      min_amount bigint not null,
      min_compare_at_amount bigint,
      max_amount bigint not null,
      primary key (product_id, currency_code)
    )`.execute(db)
  await sql`create index product_prices_sort on product_prices (currency_code, min_amount, product_id)`.execute(
    db,
  )

  await sql`
    create table price_lists (
      id text primary key,
      name text not null,
      description text not null default '',
      status text not null default 'active' check (status in ('active', 'draft')),
      customer_group_id text,
      starts_at timestamptz,
      ends_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      check (starts_at is null or ends_at is null or starts_at < ends_at)
    )`.execute(db)
  await sql`
    create table price_list_prices (
      price_list_id text not null references price_lists (id) on delete cascade,
      variant_id text not null references product_variants (id) on delete cascade,
      currency_code text not null check (currency_code ~ '^[A-Z]{3}$'),
      amount bigint not null check (amount >= 0),
      primary key (price_list_id, variant_id, currency_code)
    )`.execute(db)
  await sql`create index price_list_prices_variant on price_list_prices (variant_id, currency_code)`.execute(
    db,
  )
  // The same read model per price list: a product's lowest price in the list and that variant's
  // base price (what the sale price is compared with). The lowest price a shopper can get is the
  // least of product_prices and the active lists' rows, because min distributes over variants.
  await sql`
    create table price_list_product_prices (
      price_list_id text not null references price_lists (id) on delete cascade,
      product_id text not null references products (id) on delete cascade,
      currency_code text not null,
      min_amount bigint not null,
      base_amount bigint,
      primary key (product_id, currency_code, price_list_id)
    )`.execute(db)

  // Bulk imports: the import itself (status, counts, the first errors of its report) and its
  // staging table. The request parses and validates the file, then stages the valid documents here
  // in the transaction that enqueues the job, so whichever worker node picks the job up can read
  // them; the job deletes them as it goes.
  await sql`
    create table catalog_imports (
      id text primary key,
      format text not null check (format in ('csv', 'json', 'ndjson')),
      mode text not null check (mode in ('all_or_nothing', 'per_row')),
      status text not null default 'queued'
        check (status in ('queued', 'running', 'succeeded', 'failed')),
      total_rows integer not null default 0,
      processed_rows integer not null default 0,
      created_count integer not null default 0,
      updated_count integer not null default 0,
      failed_count integer not null default 0,
      -- errors holds at most the first 1000 problems; error_count counts them all.
      error_count integer not null default 0,
      errors jsonb not null default '[]',
      created_by text,
      created_at timestamptz not null default now(),
      started_at timestamptz,
      finished_at timestamptz
    )`.execute(db)
  // One row per batch the job will write, its documents as one gzipped JSON text: staging 100,000
  // documents this way costs the database a few seconds, where a jsonb row per document cost it
  // half a minute (building each jsonb, compressing each, logging it all). Nothing queries inside
  // them and they live only until the job has written them; being compressed already, they are
  // stored without a second compression (storage external).
  await sql`
    create table catalog_import_batches (
      import_id text not null references catalog_imports (id) on delete cascade,
      batch_no integer not null,
      -- gzip of a JSON array of {row, source_rows, document}: the report's row, CSV rows per variant, the document.
      documents bytea not null,
      primary key (import_id, batch_no)
    )`.execute(db)
  await sql`alter table catalog_import_batches alter column documents set storage external`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'catalog_import_batches',
    'catalog_imports',
    'price_list_product_prices',
    'price_list_prices',
    'price_lists',
    'product_prices',
    'variant_prices',
    'product_variants',
    'product_categories',
    'collections',
    'categories',
    'region_countries',
    'regions',
    'product_search',
  ]) {
    await sql`drop table if exists ${sql.table(table)} cascade`.execute(db)
  }
  await sql`
    alter table products
      drop column subtitle, drop column collection_id, drop column tax_category, drop column options,
      drop column tags, drop column attributes, drop column media, drop column sales_count`.execute(db)
}
