/**
 * Catalog search: a weighted `tsvector` (title A; subtitle and tags B; description C) matched
 * with prefix terms, so "hood" finds hoodies as the shopper types. When the words match nothing,
 * the list retries by trigram similarity on the title (pg_trgm), which forgives typos; where the
 * extension is missing it falls back to a case-insensitive substring match.
 */
import { type RawBuilder, sql } from 'kysely'
import type { Queryable } from '../../platform/db/transaction.ts'
import { problem } from '../../platform/http/errors.ts'

export interface SearchTerms {
  /** The shopper's text, trimmed. */
  text: string
  /** to_tsquery text built from the words alone: nothing the shopper typed reaches it raw. */
  tsquery: string
  /** The same terms restricted to weight A: the words appear in the title. */
  titleTsquery: string
  /** words: the tsvector; trigram and substring: the list's fallbacks when the words find nothing. */
  mode: 'words' | 'trigram' | 'substring'
}

const MAX_WORDS = 8

/** Turns a search string into terms; a 400 when it holds no searchable word. */
export function parseSearch(text: string): SearchTerms {
  const words = (
    text
      .normalize('NFKC')
      .toLowerCase()
      .match(/[\p{L}\p{N}]+/gu) ?? []
  )
    .slice(0, MAX_WORDS)
    .map((w) => w.slice(0, 40))
  if (words.length === 0) {
    throw problem('validation_failed', 'The search has no letters or digits to look for', {
      errors: [{ path: 'query.q', message: 'needs at least one letter or digit' }],
    })
  }
  return {
    text: words.join(' '),
    tsquery: words.map((w) => `${w}:*`).join(' & '),
    titleTsquery: words.map((w) => `${w}:*A`).join(' & '),
    mode: 'words',
  }
}

const trigram = new WeakMap<object, Promise<boolean>>()

/** Whether pg_trgm is installed in this database (asked once per connection pool). */
export function trigramAvailable(db: Queryable): Promise<boolean> {
  const key = db as object
  let known = trigram.get(key)
  if (!known) {
    known = sql<{
      installed: boolean
    }>`select exists (select 1 from pg_extension where extname = 'pg_trgm') as installed`
      .execute(db)
      .then((r) => r.rows[0]?.installed === true)
    trigram.set(key, known)
  }
  return known
}

/**
 * The WHERE condition for a search on products aliased `p`; in words mode the search read model
 * must be joined as `s` (see storefront.ts).
 */
export function searchCondition(terms: SearchTerms): RawBuilder<boolean> {
  if (terms.mode === 'words') return sql<boolean>`s.search @@ to_tsquery('english', ${terms.tsquery})`
  if (terms.mode === 'trigram') return sql<boolean>`(p.title % ${terms.text} or ${terms.text} <% p.title)`
  // The text holds only letters, digits and spaces (parseSearch), so no LIKE wildcard can sneak in.
  return sql<boolean>`p.title ilike ${`%${terms.text}%`}`
}

/** The relevance of a product aliased `p` to the search, higher first. */
export function searchRank(terms: SearchTerms): RawBuilder<number> {
  if (terms.mode === 'words')
    // ts_rank, not ts_rank_cd: cover density costs four times as much per match for little gain
    // on product texts this short.
    return sql<number>`ts_rank(s.search, to_tsquery('english', ${terms.tsquery}))`
  if (terms.mode === 'trigram') return sql<number>`word_similarity(${terms.text}, p.title)`
  return sql<number>`-length(p.title)`
}
