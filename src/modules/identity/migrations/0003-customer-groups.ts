/** Customer groups: wholesale, VIP and the like; price lists can target one. */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table customer_groups (
      id text primary key,
      name text not null unique,
      description text not null default '',
      created_at timestamptz not null default now()
    )`.execute(db)
  await sql`
    create table customer_group_members (
      group_id text not null references customer_groups (id) on delete cascade,
      customer_id text not null references customers (id) on delete cascade,
      added_at timestamptz not null default now(),
      primary key (group_id, customer_id)
    )`.execute(db)
  await sql`create index customer_group_members_customer on customer_group_members (customer_id)`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table customer_group_members`.execute(db)
  await sql`drop table customer_groups`.execute(db)
}
