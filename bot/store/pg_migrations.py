"""Schema versions of a PostgreSQL database: numbered migrations, applied in order whenever a store opens it.

The version is the one row of the `schema_version` table (0 when the table is missing: a new database); migration
N takes a database from version N-1 to N. Each runs in one transaction with its version bump, under an advisory
lock, so two processes opening a new database at once do the work once and a failed migration leaves nothing
behind. To change the schema, append a function taking a `psycopg.Connection` to `PG_MIGRATIONS`; never edit,
remove or reorder one that has shipped. `qa-bot db upgrade` applies them explicitly.

The SQLite file has its own list (`bot.store.migrations`); the two are numbered apart, since the SQLite history
starts from files made before versions existed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.errors import InsufficientPrivilege
from psycopg.rows import tuple_row

from bot.core import messages
from bot.errors import StoreError
from bot.store.pg_connect import one_line

__all__ = ["PG_MIGRATIONS", "TS_CONFIG", "latest_pg_version", "migrate_pg", "pg_schema_version"]

logger = logging.getLogger(__name__)

PgMigration = Callable[[psycopg.Connection[Any]], None]

# The text search configuration of the index: English stems (Snowball) without a stop-word list, so a question of
# stop words only ("Who is it?") still finds something, as with FTS5's porter tokenizer; hyphenated words are
# indexed by their parts only ("state-of-the-art": state, of, the, art), as FTS5 splits them.
TS_CONFIG = "qa_english"
# Any number, the same in every qa-bot: the advisory lock that serialises migrations of one database.
_MIGRATION_LOCK = 716_301_016


def library_schema(conn: psycopg.Connection[Any]) -> None:
    """Version 1: articles (with author and collection), sentences (with page), passages with a weighted tsvector
    (title A, text B) under a GIN index and their token counts, and the term statistics BM25 needs: how many
    passages hold each lexeme (`passage_terms`) and the corpus totals (`corpus_stats`)."""
    conn.execute(
        f"""
        create text search dictionary {TS_CONFIG}_stem (template = snowball, language = english);
        create text search configuration {TS_CONFIG} (copy = english);
        alter text search configuration {TS_CONFIG}
          alter mapping for asciiword, word, hword_asciipart, hword_part with {TS_CONFIG}_stem;
        alter text search configuration {TS_CONFIG} drop mapping for asciihword, hword, numhword;
        create table articles (
          id bigserial primary key,
          key text not null unique,
          title text not null,
          body text not null,
          source text not null,
          url text,
          published_at text,
          author text,
          content_hash text not null,
          ingested_at text,
          collection text not null default 'general'
        );
        create index articles_content_hash on articles (content_hash);
        create index articles_collection on articles (collection);
        create index articles_url on articles (url);
        create index articles_source on articles (source);
        create table sentences (
          id bigserial primary key,
          article_id bigint not null references articles (id) on delete cascade,
          idx integer not null,
          char_start integer not null,
          char_end integer not null,
          text text not null,
          page integer
        );
        create index sentences_article on sentences (article_id, char_start);
        create table passages (
          id bigserial primary key,
          article_id bigint not null references articles (id) on delete cascade,
          idx integer not null,
          char_start integer not null,
          char_end integer not null,
          title text not null,
          text text not null,
          tsv tsvector not null,
          n_tokens integer not null
        );
        create index passages_article on passages (article_id);
        create index passages_tsv on passages using gin (tsv);
        create table passage_terms (lexeme text primary key, df bigint not null);
        create table corpus_stats (
          one boolean primary key default true check (one),
          passages bigint not null,
          tokens bigint not null
        );
        insert into corpus_stats (passages, tokens) values (0, 0);
        """
    )


def slack_state(conn: psycopg.Connection[Any]) -> None:
    """Version 2: the Slack app's state, shared by every replica (`bot.store.pg_state`), in the `slack_` tables of
    the SQLite file with the same columns: seen deliveries (`slack_events`, the primary key decides which replica
    handles a retried event), answers with what the report keeps of their question (`blocks` as jsonb, `cited`
    as an array of article ids), reply links, feedback, and the rate limit as one row per user holding the times
    of their questions in the last minute (`slack_rate_limits`), so one upsert counts and decides."""
    conn.execute(
        """
        create table slack_events (event_id text primary key, seen_at double precision not null);
        create index slack_events_seen_at on slack_events (seen_at);
        create table slack_answers (
          id text primary key,
          question text not null,
          answer text,
          article_id bigint,
          score double precision not null,
          text text not null,
          blocks jsonb not null,
          created_at text not null,
          collections text,
          outcome text,
          cited bigint[] not null default '{}',
          searched text,
          channel text,
          team text,
          "user" text,
          asked_at double precision not null,
          terms text
        );
        create index slack_answers_asked_at on slack_answers (asked_at);
        create table slack_replies (
          channel text not null,
          question_ts text not null,
          reply_ts text not null,
          thread_ts text not null,
          answer_id text,
          updated_at text not null,
          primary key (channel, question_ts)
        );
        create index slack_replies_reply on slack_replies (channel, reply_ts);
        create index slack_replies_thread on slack_replies (channel, thread_ts, question_ts);
        create index slack_replies_answer on slack_replies (answer_id);
        create table slack_feedback (
          id bigserial primary key,
          answer_id text,
          "user" text not null,
          vote text not null,
          question text,
          answer text,
          article_id bigint,
          channel text,
          message_ts text,
          clicked_at text not null
        );
        create index slack_feedback_answer on slack_feedback (answer_id);
        create index slack_feedback_clicked_at on slack_feedback (clicked_at);
        create table slack_rate_limits (
          "user" text primary key,
          stamps double precision[] not null,
          allowed boolean not null
        );
        """
    )


def feed_tables(conn: psycopg.Connection[Any]) -> None:
    """Version 3 (issue 16): the subscribed feeds and the entries seen in them (`bot.store.feeds`), with the
    columns of the SQLite file's tables (its versions 6 and 8): a feed's validators for conditional GET, its
    failures and when to retry (backoff), its collection; each entry by feed and entry id or link, with the
    article it became. `article_id` has no foreign key, as in SQLite: an entry whose article was deleted stays
    known, and the feed brings the article back only when the entry changes."""
    conn.execute(
        """
        create table feeds (
          id bigserial primary key,
          url text not null unique,
          title text,
          etag text,
          last_modified text,
          added_at text,
          last_polled_at text,
          last_error text,
          failures integer not null default 0,
          retry_at double precision,
          collection text not null default 'general'
        );
        create table feed_entries (
          feed_id bigint not null references feeds (id) on delete cascade,
          entry_key text not null,
          link text,
          fingerprint text,
          article_id bigint,
          seen_at text,
          primary key (feed_id, entry_key)
        );
        create index feed_entries_link on feed_entries (link);
        create index feed_entries_entry_key on feed_entries (entry_key);
        """
    )


def slack_jobs(conn: psycopg.Connection[Any]) -> None:
    """Version 4 (issue 16): `slack_jobs`, the questions acknowledged to Slack and not yet answered, shared by every
    replica and worker (`bot.slack.jobs`): the SQLite file's columns, with the payload as jsonb and times as epoch
    seconds. The primary key on the delivery id is also what stops a retried event reaching another replica from
    being asked twice; the partial index holds only unfinished jobs, for claiming (`for update skip locked`)
    and counting."""
    conn.execute(
        """
        create table slack_jobs (
          key text primary key,
          kind text not null,
          payload jsonb not null,
          state text not null default 'pending' check (state in ('pending', 'running', 'done', 'failed')),
          claimed_by text,
          lease_until double precision,
          attempts integer not null default 0,
          reply_ts text,
          created_at double precision not null,
          finished_at double precision
        );
        create index slack_jobs_unfinished on slack_jobs (created_at) where state in ('pending', 'running');
        """
    )


def passage_postings(conn: psycopg.Connection[Any]) -> None:
    """Version 5 (issue 16): `passage_postings`, one row per lexeme of each passage with its frequency weighted by
    column (title 0.5, text 1.0, as BM25 scores it) and the passage's token count, filled from the stored passages. Its
    index on (lexeme, passage_id) holds the other two columns, so BM25 over a question's lexemes is an index-only
    scan and one aggregate, instead of unnesting each candidate passage's tsvector (at 10k articles 198 -> 11 ms
    median; BENCHMARKS.md, PostgreSQL). No foreign key: PostgresStore deletes a passage's postings with it, through
    the same index (a key on passage_id would need a second index as large as the first)."""
    conn.execute(
        """
        create table passage_postings (
          lexeme text not null,
          passage_id bigint not null,
          f real not null,
          n_tokens integer not null
        );
        insert into passage_postings (lexeme, passage_id, f, n_tokens)
        select u.lexeme, p.id,
          1.0 * cardinality(u.weights) - 0.5 * cardinality(array_positions(u.weights, 'A')), p.n_tokens
        from passages p, unnest(p.tsv) u;
        create index passage_postings_lexeme on passage_postings (lexeme, passage_id) include (f, n_tokens);
        """
    )


# Version N is PG_MIGRATIONS[N - 1]. Append only.
PG_MIGRATIONS: list[PgMigration] = [library_schema, slack_state, feed_tables, slack_jobs, passage_postings]


def latest_pg_version() -> int:
    """The schema version this qa-bot writes to PostgreSQL: the number of migrations it knows."""
    return len(PG_MIGRATIONS)


def pg_schema_version(conn: psycopg.Connection[Any]) -> int:
    """The version recorded in the database; 0 when it has no `schema_version` table yet."""
    with conn.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute("select to_regclass('schema_version') is not null").fetchone()
        if not row or not row[0]:
            return 0
        row = cursor.execute("select max(version) from schema_version").fetchone()
    return int(row[0] or 0) if row else 0


def migrate_pg(conn: psycopg.Connection[Any], *, label: str = "the database") -> tuple[int, int]:
    """Apply every migration the database lacks, in order; returns (version before, version after).

        before, after = migrate_pg(psycopg.connect("postgresql://localhost/qa", autocommit=True))

    :raises StoreError: when the database comes from a newer qa-bot, or a migration fails (it is undone).
    """
    before = pg_schema_version(conn)
    latest = latest_pg_version()
    if before > latest:
        raise StoreError(
            f"{label} has schema version {before}, but this qa-bot knows versions up to {latest}. "
            "Upgrade qa-bot (pip install -U qa-bot) to open it."
        )
    for version in range(before + 1, latest + 1):
        migration = PG_MIGRATIONS[version - 1]
        try:
            with conn.transaction():
                # no statement timeout here (bot.store.pg_connect): an index over a large library may take longer
                conn.execute("set local statement_timeout = 0")
                conn.execute("select pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])  # a second opener waits here
                if pg_schema_version(conn) >= version:  # ... and finds the work done
                    continue
                migration(conn)
                conn.execute("create table if not exists schema_version (version integer not null)")
                conn.execute("delete from schema_version")
                conn.execute("insert into schema_version (version) values (%s)", [version])
        except psycopg.Error as exc:
            # a role that may read and write but not change the schema (least privilege): the owner must upgrade
            hint = messages.render("db_upgrade_as_owner") if isinstance(exc, InsufficientPrivilege) else ""
            raise StoreError(
                f"Could not upgrade {label} to schema version {version} ({migration.__name__}): {one_line(exc)}. "
                f"The database is still at version {pg_schema_version(conn)}.{' ' + hint if hint else ''}"
            ) from exc
        logger.info("schema migrated db=%s version=%d migration=%s", label, version, migration.__name__)
    return before, max(before, latest)
