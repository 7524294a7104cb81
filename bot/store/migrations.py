"""Schema versions of the SQLite file: numbered migrations, applied in order whenever a store opens the file.

The version is SQLite's `PRAGMA user_version`: 0 for a new file and for files made before versions existed,
then the number of the last migration applied. Migration N takes a database from version N-1 to N.

To change the schema, write a function that takes the `sqlite_utils.Database` and append it to `MIGRATIONS`:

    def add_article_language(db: sqlite_utils.Database) -> None:
        \"\"\"articles.language, for language-aware sentence splitting (issue 12).\"\"\"
        db.table("articles").add_column("language", str)

    MIGRATIONS.append(add_article_language)  # becomes version 2

Never edit, remove or reorder a migration that has shipped: databases in the field record only its number.
A migration runs in one transaction with its version bump, so a failed one leaves the file as it was (DDL that
commits by itself, like sqlite-utils' `enable_fts`, should check what already exists, as version 1 does).
`qa-bot db upgrade` applies them explicitly and reports the version before and after.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from bot.errors import StoreError
from bot.store.connect import connect

__all__ = ["MIGRATIONS", "Migration", "latest_version", "migrate", "schema_version", "upgrade"]

logger = logging.getLogger(__name__)

Migration = Callable[[sqlite_utils.Database], None]


def initial_schema(db: sqlite_utils.Database) -> None:
    """Version 1, the schema qa-bot shipped before versions: articles, sentences, passages and their FTS5 index
    (kept in sync by triggers), and the Slack app's `slack_` tables.

    A file made before versions existed already holds some or all of these tables; they are left as they are,
    so such a file becomes version 1 without any change to its data.
    """
    tables = set(db.table_names())
    if "articles" not in tables:
        db.table("articles").create(
            {
                "id": int,
                "key": str,
                "title": str,
                "body": str,
                "source": str,
                "url": str,
                "published_at": str,
                "content_hash": str,
                "ingested_at": str,
            },
            pk="id",
            not_null={"key", "title", "body", "source", "content_hash"},
        )
        db.table("articles").create_index(["key"], unique=True)
        db.table("articles").create_index(["content_hash"])
    if "sentences" not in tables:
        db.table("sentences").create(
            {
                "id": int,
                "article_id": int,
                "idx": int,
                "char_start": int,
                "char_end": int,
                "text": str,
            },
            pk="id",
            foreign_keys=[("article_id", "articles", "id")],
        )
        db.table("sentences").create_index(["article_id", "char_start"])
    if "passages" not in tables:
        db.table("passages").create(
            {
                "id": int,
                "article_id": int,
                "idx": int,
                "char_start": int,
                "char_end": int,
                "title": str,
                "text": str,
            },
            pk="id",
            foreign_keys=[("article_id", "articles", "id")],
        )
        db.table("passages").create_index(["article_id"])
    if "slack_events" not in tables:
        db.table("slack_events").create({"event_id": str, "seen_at": float}, pk="event_id")
    if "slack_answers" not in tables:
        db.table("slack_answers").create(
            {
                "id": str,
                "question": str,
                "answer": str,
                "article_id": int,
                "score": float,
                "text": str,
                "blocks": str,
                "created_at": str,
            },
            pk="id",
        )
    if "slack_replies" not in tables:
        db.table("slack_replies").create(
            {
                "channel": str,
                "question_ts": str,
                "reply_ts": str,
                "thread_ts": str,
                "answer_id": str,
                "updated_at": str,
            },
            pk=("channel", "question_ts"),
        )
        db.table("slack_replies").create_index(["channel", "reply_ts"])
    if "slack_feedback" not in tables:
        db.table("slack_feedback").create(
            {
                "id": int,
                "answer_id": str,
                "user": str,
                "vote": str,
                "question": str,
                "answer": str,
                "article_id": int,
                "channel": str,
                "message_ts": str,
                "clicked_at": str,
            },
            pk="id",
        )
    if "slack_requests" not in tables:
        db.table("slack_requests").create({"user": str, "at": float})
        db.table("slack_requests").create_index(["user", "at"])
    if "passages_fts" not in tables:
        # enable_fts runs a script, which commits: done last, and only when missing, so a rerun is safe
        db.table("passages").enable_fts(["title", "text"], create_triggers=True, tokenize="porter")


def add_article_author(db: sqlite_utils.Database) -> None:
    """Version 2: `articles.author`, kept from a page's metadata (issue 12). Existing rows get NULL."""
    if "author" not in db.table("articles").columns_dict:
        db.execute("alter table articles add column author text")


def add_sentence_page(db: sqlite_utils.Database) -> None:
    """Version 3: `sentences.page`, the page of a PDF a sentence stands on (issue 12). Existing rows get NULL."""
    if "page" not in db.table("sentences").columns_dict:
        db.execute("alter table sentences add column page integer")


def add_article_collection(db: sqlite_utils.Database) -> None:
    """Version 4: `articles.collection`, who may read the article (issue 13). Existing rows get `general`."""
    if "collection" not in db.table("articles").columns_dict:
        db.execute("alter table articles add column collection text not null default 'general'")
    db.execute("create index if not exists idx_articles_collection on articles (collection)")


def add_answer_collections(db: sqlite_utils.Database) -> None:
    """Version 5: `slack_answers.collections`, the collections an answer cites (comma-separated), so sharing it
    into a channel can be refused when the channel may not read one of them (issue 13). Existing rows get NULL,
    read as `general` (everything was `general` before version 4)."""
    table = db.table("slack_answers")
    if table.exists() and "collections" not in table.columns_dict:
        db.execute("alter table slack_answers add column collections text")


def add_feeds(db: sqlite_utils.Database) -> None:
    """Version 6: `feeds` (subscribed RSS/Atom feeds, their validators for conditional GET and their failures, for
    backoff) and `feed_entries` (each entry seen, by feed and entry id or link, with the article it became)."""
    tables = set(db.table_names())
    if "feeds" not in tables:
        db.table("feeds").create(
            {
                "id": int,
                "url": str,
                "title": str,
                "etag": str,
                "last_modified": str,
                "added_at": str,
                "last_polled_at": str,
                "last_error": str,
                "failures": int,
                "retry_at": float,  # epoch seconds; a failing feed is not polled before this
            },
            pk="id",
            not_null={"url"},
            defaults={"failures": 0},
        )
        db.table("feeds").create_index(["url"], unique=True)
    if "feed_entries" not in tables:
        db.table("feed_entries").create(
            {
                "feed_id": int,
                "entry_key": str,  # the entry's id, else its link
                "link": str,
                "fingerprint": str,  # changes when the entry's title, link or dates change
                "article_id": int,
                "seen_at": str,
            },
            pk=("feed_id", "entry_key"),
            foreign_keys=[("feed_id", "feeds", "id")],
        )
        db.table("feed_entries").create_index(["link"])
        db.table("feed_entries").create_index(["entry_key"])


def add_question_insights(db: sqlite_utils.Database) -> None:
    """Version 7: what each answered Slack question was, for `qa-bot report` and `/qa-report` (issue 13):
    `slack_answers.outcome` (confident / unsure / none), `cited` (a JSON list of article ids), `searched` (the
    collections read, comma-separated, `*` for every article), `channel`, `team`, `user`, `asked_at` (epoch
    seconds, indexed: the report and the retention sweep read by time) and `terms` (its stemmed content words,
    space-separated: the key knowledge gaps are grouped by). Existing rows keep NULLs, `asked_at` from `created_at`.
    """
    table = db.table("slack_answers")
    if not table.exists():
        return
    have = set(table.columns_dict)
    for name, kind in [
        ("outcome", "text"),
        ("cited", "text"),
        ("searched", "text"),
        ("channel", "text"),
        ("team", "text"),
        ("user", "text"),
        ("asked_at", "real"),
        ("terms", "text"),
    ]:
        if name not in have:
            db.execute(f"alter table slack_answers add column {name} {kind}")
    db.execute("update slack_answers set asked_at = cast(strftime('%s', created_at) as real) where asked_at is null")
    db.execute("create index if not exists idx_slack_answers_asked_at on slack_answers (asked_at)")
    db.execute("create index if not exists idx_slack_feedback_answer on slack_feedback (answer_id)")


def add_feed_collection(db: sqlite_utils.Database) -> None:
    """Version 8: `feeds.collection`, the collection a feed's entries are stored in (issue 13). Existing feeds get
    `general`, where their entries went before."""
    table = db.table("feeds")
    if table.exists() and "collection" not in table.columns_dict:
        db.execute("alter table feeds add column collection text not null default 'general'")


def add_slack_jobs(db: sqlite_utils.Database) -> None:
    """Version 9: `slack_jobs`, the questions acknowledged to Slack and not yet answered (issue 16), so an answer
    survives a crash: one row per question keyed by its delivery (`event_id`), its `kind` and `payload` (JSON: what
    the worker needs), its `state` (pending, running, done, failed), who holds it (`claimed_by`, host:pid:thread)
    and until when (`lease_until`, epoch seconds), how often it was claimed (`attempts`) and the `ts` of the reply
    already posted (`reply_ts`: never posted twice). The index holds only unfinished jobs: claiming and counting
    them stay cheap however many finished ones the day kept."""
    db.execute(
        "create table if not exists slack_jobs (key text primary key, kind text not null, payload text not null, "
        "state text not null default 'pending' check (state in ('pending', 'running', 'done', 'failed')), "
        "claimed_by text, lease_until real, attempts integer not null default 0, reply_ts text, "
        "created_at real not null, finished_at real)"
    )
    db.execute(
        "create index if not exists idx_slack_jobs_unfinished on slack_jobs (created_at) "
        "where state in ('pending', 'running')"
    )


# Version N is MIGRATIONS[N - 1]. Append only.
MIGRATIONS: list[Migration] = [
    initial_schema,
    add_article_author,
    add_sentence_page,
    add_article_collection,
    add_answer_collections,
    add_feeds,
    add_question_insights,
    add_feed_collection,
    add_slack_jobs,
]


def latest_version() -> int:
    """The schema version this qa-bot writes: the number of migrations it knows."""
    return len(MIGRATIONS)


def schema_version(db: sqlite_utils.Database) -> int:
    """The version recorded in the file (`PRAGMA user_version`)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite_utils.Database, *, path: str = "the database") -> tuple[int, int]:
    """Apply every migration the file lacks, in order; returns (version before, version after).

        before, after = migrate(sqlite_utils.Database("qa.db"))

    :raises StoreError: when the file comes from a newer qa-bot, or a migration fails (the failed one is undone).
    """
    before = schema_version(db)
    latest = latest_version()
    if before > latest:
        raise StoreError(
            f"{path} has schema version {before}, but this qa-bot knows versions up to {latest}. "
            "Upgrade qa-bot (pip install -U qa-bot) to open it."
        )
    conn = db.conn
    for version in range(before + 1, latest + 1):
        migration = MIGRATIONS[version - 1]
        if conn.in_transaction:
            conn.commit()
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock: a second process opening the file waits here
            if schema_version(db) >= version:  # ... and finds the work done
                conn.commit()
                continue
            migration(db)
            conn.execute(f"PRAGMA user_version = {version:d}")
            conn.commit()  # the migration and its version bump commit together
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise StoreError(
                f"Could not upgrade {path} to schema version {version} ({migration.__name__}): "
                f"{exc}. The file is still at version {schema_version(db)}."
            ) from exc
        logger.info("schema migrated db=%s version=%d migration=%s", path, version, migration.__name__)
    return before, max(before, latest)


def upgrade(path: str | Path) -> tuple[int, int]:
    """Bring an existing database file to the latest schema; returns (version before, version after).

        before, after = upgrade("qa.db")  # (0, 1) for a file made before schema versions

    :raises StoreError: when there is no such file, it cannot be opened, or a migration fails.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"No database at {path}. Run: qa-bot ingest ./articles (it creates one).")
    try:
        db = sqlite_utils.Database(connect(path))
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open the database {path}: {exc}.") from exc
    try:
        return migrate(db, path=str(path))
    except sqlite3.DatabaseError as exc:  # not a database at all
        raise StoreError(f"Cannot read the database {path}: {exc}.") from exc
    finally:
        db.close()
