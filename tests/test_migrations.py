"""Schema versions: a new file is created at the latest version, a file made before versions opens as version 1
with its data intact, and a migration appended to the list reaches existing files."""

from __future__ import annotations

import sqlite3

import pytest
import sqlite_utils
from click.testing import CliRunner

from bot.cli import cli
from bot.core.records import Article
from bot.errors import StoreError
from bot.store import SQLiteStore, migrations
from bot.store.migrations import latest_version, schema_version, upgrade
from bot.store.state import SlackState

# The schema exactly as qa-bot wrote it before schema versions (sqlite_master of a file made by `qa-bot ingest`
# and the Slack app at commit d898341); FTS5 adds its own shadow tables.
V1_SQL = [
    'CREATE TABLE "articles" (\n   "id" INTEGER PRIMARY KEY,\n   "key" TEXT NOT NULL,\n   "title" TEXT NOT NULL,\n'
    '   "body" TEXT NOT NULL,\n   "source" TEXT NOT NULL,\n   "url" TEXT,\n   "published_at" TEXT,\n'
    '   "content_hash" TEXT NOT NULL,\n   "ingested_at" TEXT\n)',
    'CREATE UNIQUE INDEX "idx_articles_key"\n    ON "articles" ("key")',
    'CREATE INDEX "idx_articles_content_hash"\n    ON "articles" ("content_hash")',
    'CREATE TABLE "sentences" (\n   "id" INTEGER PRIMARY KEY,\n   "article_id" INTEGER REFERENCES "articles"("id"),\n'
    '   "idx" INTEGER,\n   "char_start" INTEGER,\n   "char_end" INTEGER,\n   "text" TEXT\n)',
    'CREATE INDEX "idx_sentences_article_id_char_start"\n    ON "sentences" ("article_id", "char_start")',
    'CREATE TABLE "passages" (\n   "id" INTEGER PRIMARY KEY,\n   "article_id" INTEGER REFERENCES "articles"("id"),\n'
    '   "idx" INTEGER,\n   "char_start" INTEGER,\n   "char_end" INTEGER,\n   "title" TEXT,\n   "text" TEXT\n)',
    'CREATE INDEX "idx_passages_article_id"\n    ON "passages" ("article_id")',
    'CREATE VIRTUAL TABLE "passages_fts" USING FTS5 (\n    "title", "text",\n    tokenize=\'porter\',\n'
    '    content="passages"\n)',
    'CREATE TRIGGER "passages_ai" AFTER INSERT ON "passages" BEGIN\n  INSERT INTO "passages_fts" (rowid, "title", '
    '"text") VALUES (new.rowid, new."title", new."text");\nEND',
    'CREATE TRIGGER "passages_ad" AFTER DELETE ON "passages" BEGIN\n  INSERT INTO "passages_fts" ("passages_fts", '
    'rowid, "title", "text") VALUES(\'delete\', old.rowid, old."title", old."text");\nEND',
    'CREATE TRIGGER "passages_au" AFTER UPDATE ON "passages" BEGIN\n  INSERT INTO "passages_fts" ("passages_fts", '
    'rowid, "title", "text") VALUES(\'delete\', old.rowid, old."title", old."text");\n  INSERT INTO "passages_fts" '
    '(rowid, "title", "text") VALUES (new.rowid, new."title", new."text");\nEND',
]
V1_SLACK_SQL = [
    'CREATE TABLE "slack_events" (\n   "event_id" TEXT PRIMARY KEY,\n   "seen_at" REAL\n)',
    'CREATE TABLE "slack_answers" (\n   "id" TEXT PRIMARY KEY,\n   "question" TEXT,\n   "answer" TEXT,\n'
    '   "article_id" INTEGER,\n   "score" REAL,\n   "text" TEXT,\n   "blocks" TEXT,\n   "created_at" TEXT\n)',
    'CREATE TABLE "slack_replies" (\n   "channel" TEXT,\n   "question_ts" TEXT,\n   "reply_ts" TEXT,\n'
    '   "thread_ts" TEXT,\n   "answer_id" TEXT,\n   "updated_at" TEXT,\n   PRIMARY KEY ("channel", "question_ts")\n)',
    'CREATE INDEX "idx_slack_replies_channel_reply_ts"\n    ON "slack_replies" ("channel", "reply_ts")',
    'CREATE TABLE "slack_feedback" (\n   "id" INTEGER PRIMARY KEY,\n   "answer_id" TEXT,\n   "user" TEXT,\n'
    '   "vote" TEXT,\n   "question" TEXT,\n   "answer" TEXT,\n   "article_id" INTEGER,\n   "channel" TEXT,\n'
    '   "message_ts" TEXT,\n   "clicked_at" TEXT\n)',
    'CREATE TABLE "slack_requests" (\n   "user" TEXT,\n   "at" REAL\n)',
    'CREATE INDEX "idx_slack_requests_user_at"\n    ON "slack_requests" ("user", "at")',
]
# Version 2 adds articles.author, version 3 sentences.page (ALTER TABLE appends each to the table's SQL).
V2_SQL = [V1_SQL[0].removesuffix("\n)") + "\n, author text)", *V1_SQL[1:]]
V3_SQL = [V2_SQL[0], V2_SQL[1], V2_SQL[2], V2_SQL[3].removesuffix("\n)") + "\n, page integer)", *V2_SQL[4:]]
# Version 4 adds articles.collection (with its index), version 5 slack_answers.collections.
V4_SQL = [
    V3_SQL[0].removesuffix(")") + ", collection text not null default 'general')",
    *V3_SQL[1:],
    "CREATE INDEX idx_articles_collection on articles (collection)",
]
V5_SLACK_SQL = [
    V1_SLACK_SQL[1].removesuffix("\n)") + "\n, collections text)" if "slack_answers" in sql else sql
    for sql in V1_SLACK_SQL
]
# Version 6 adds the feeds and feed_entries tables.
V6_FEEDS_SQL = [
    'CREATE TABLE "feeds" (\n   "id" INTEGER PRIMARY KEY,\n   "url" TEXT NOT NULL,\n   "title" TEXT,\n   "etag" TEXT,\n'
    '   "last_modified" TEXT,\n   "added_at" TEXT,\n   "last_polled_at" TEXT,\n   "last_error" TEXT,\n'
    '   "failures" INTEGER DEFAULT 0,\n   "retry_at" REAL\n)',
    'CREATE UNIQUE INDEX "idx_feeds_url"\n    ON "feeds" ("url")',
    'CREATE TABLE "feed_entries" (\n   "feed_id" INTEGER REFERENCES "feeds"("id"),\n   "entry_key" TEXT,\n'
    '   "link" TEXT,\n   "fingerprint" TEXT,\n   "article_id" INTEGER,\n   "seen_at" TEXT,\n'
    '   PRIMARY KEY ("feed_id", "entry_key")\n)',
    'CREATE INDEX "idx_feed_entries_link"\n    ON "feed_entries" ("link")',
    'CREATE INDEX "idx_feed_entries_entry_key"\n    ON "feed_entries" ("entry_key")',
]
# Version 7 adds the report's columns to slack_answers, with an index on asked_at and one on feedback's answer_id.
V7_SLACK_SQL = [
    sql.removesuffix(")")
    + ", outcome text, cited text, searched text, channel text, team text, user text, asked_at real, terms text)"
    if 'TABLE "slack_answers"' in sql
    else sql
    for sql in V5_SLACK_SQL
] + [
    "CREATE INDEX idx_slack_answers_asked_at on slack_answers (asked_at)",
    "CREATE INDEX idx_slack_feedback_answer on slack_feedback (answer_id)",
]
# Version 8 adds feeds.collection.
V8_FEEDS_SQL = [
    sql.removesuffix(")") + ", collection text not null default 'general')" if 'TABLE "feeds"' in sql else sql
    for sql in V6_FEEDS_SQL
]
# Version 9 adds slack_jobs, the questions waiting for a worker, with an index of the unfinished ones.
V9_JOBS_SQL = [
    "CREATE TABLE slack_jobs (key text primary key, kind text not null, payload text not null, "
    "state text not null default 'pending' check (state in ('pending', 'running', 'done', 'failed')), "
    "claimed_by text, lease_until real, attempts integer not null default 0, reply_ts text, "
    "created_at real not null, finished_at real)",
    "CREATE INDEX idx_slack_jobs_unfinished on slack_jobs (created_at) where state in ('pending', 'running')",
]
LATEST = 9
BODY = "The bridge reopened on Monday. Engineer Lena Ortiz led the repairs."


def schema_sql(path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [
            sql
            for (sql,) in conn.execute(
                "select sql from sqlite_master where sql is not null and name not like 'passages_fts_%' order by rowid"
            )
        ]
    finally:
        conn.close()


@pytest.fixture
def legacy_db(tmp_path):
    """A database as `qa-bot ingest` made it before schema versions: one article, no Slack tables, user_version 0."""
    path = tmp_path / "legacy.db"
    conn = sqlite3.connect(path)
    with conn:
        for sql in V1_SQL:
            conn.execute(sql)
        conn.execute(
            "insert into articles (id, key, title, body, source, content_hash) values "
            "(1, 'notes.txt', 'Riverton bridge', ?, 'notes.txt', 'abc')",
            [BODY],
        )
        conn.execute(
            "insert into sentences (article_id, idx, char_start, char_end, text) values (1, 0, 0, 30, ?)", [BODY[:30]]
        )
        conn.execute(
            "insert into passages (article_id, idx, char_start, char_end, title, text) values "
            "(1, 0, 0, ?, 'Riverton bridge', ?)",
            [len(BODY), BODY],
        )
    conn.close()
    return path


def test_a_new_database_gets_the_latest_version_and_its_schema(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    assert schema_version(store.db) == latest_version() == len(migrations.MIGRATIONS) == LATEST
    store.close()
    assert sorted(schema_sql(tmp_path / "qa.db")) == sorted(V4_SQL + V7_SLACK_SQL + V8_FEEDS_SQL + V9_JOBS_SQL)


def test_a_database_from_before_versions_opens_at_the_latest_version_with_its_data(legacy_db):
    store = SQLiteStore(legacy_db)
    assert schema_version(store.db) == LATEST
    assert store.article_count() == 1
    assert [(p.article.title, p.article.author, p.text) for p in store.search('"ortiz"', limit=5)] == [
        ("Riverton bridge", None, BODY)
    ]
    assert store.article_body(1) == BODY
    store.close()
    assert sorted(schema_sql(legacy_db)) == sorted(V4_SQL + V7_SLACK_SQL + V8_FEEDS_SQL + V9_JOBS_SQL)


def test_a_version_1_database_upgrades_to_the_latest_and_keeps_its_rows(legacy_db):
    conn = sqlite3.connect(legacy_db)
    conn.execute("PRAGMA user_version = 1")  # as qa-bot 0.1 left it after migration 1
    conn.close()
    db = sqlite_utils.Database(legacy_db)
    rows_before = {name: list(db[name].rows) for name in ("articles", "sentences", "passages")}
    db.close()
    assert upgrade(legacy_db) == (1, LATEST)
    db = sqlite_utils.Database(legacy_db)
    assert list(db["articles"].rows) == [
        {**row, "author": None, "collection": "general"} for row in rows_before["articles"]
    ]
    assert list(db["sentences"].rows) == [{**row, "page": None} for row in rows_before["sentences"]]
    assert list(db["passages"].rows) == rows_before["passages"]
    db.close()
    store = SQLiteStore(legacy_db)
    store.add_article(Article(title="Mill museum", body="The mill opened as a museum.", source="m.txt", author="Jo"))
    assert [(p.article.title, p.article.author) for p in store.search('"museum"', limit=5)] == [("Mill museum", "Jo")]
    store.close()


def test_the_slack_tables_open_a_legacy_database_too(legacy_db):
    state = SlackState(legacy_db)
    assert state.first_sighting("Ev1") is True
    assert schema_version(state.db) == LATEST
    state.close()


def test_upgrade_reports_the_version_before_and_after(legacy_db):
    assert upgrade(legacy_db) == (0, LATEST)
    assert upgrade(legacy_db) == (LATEST, LATEST)


def test_upgrade_of_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(StoreError, match=r"^No database at .*nope\.db\. Run: qa-bot ingest ./articles"):
        upgrade(tmp_path / "nope.db")


def test_a_database_from_a_newer_qa_bot_is_refused(tmp_path):
    path = tmp_path / "future.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    with pytest.raises(
        StoreError,
        match=rf"schema version {latest_version() + 1}, but this qa-bot knows versions "
        rf"up to {latest_version()}\. Upgrade qa-bot",
    ):
        SQLiteStore(path)


def add_language(db: sqlite_utils.Database) -> None:
    db["articles"].add_column("language", str)


def test_an_appended_migration_reaches_existing_databases(tmp_path, monkeypatch):
    path = tmp_path / "qa.db"
    SQLiteStore(path).add_article(Article(title="Riverton bridge", body=BODY, source="notes.txt"))
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, add_language])
    assert upgrade(path) == (LATEST, LATEST + 1)
    store = SQLiteStore(path)
    assert "language" in store.db["articles"].columns_dict
    assert store.article_count() == 1


def test_a_failed_migration_leaves_the_file_at_its_version(tmp_path, monkeypatch):
    def broken(db: sqlite_utils.Database) -> None:
        db["articles"].add_column("language", str)
        db.execute("select * from no_such_table")

    path = tmp_path / "qa.db"
    SQLiteStore(path).close()
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, broken])
    with pytest.raises(
        StoreError,
        match=rf"Could not upgrade .* to schema version {LATEST + 1} \(broken\): .*no such table.* "
        rf"The file is still at version {LATEST}\.",
    ):
        upgrade(path)
    db = sqlite_utils.Database(path)
    assert (schema_version(db), "language" in db["articles"].columns_dict) == (LATEST, False)


def test_cli_db_upgrade_prints_the_versions(legacy_db):
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "upgrade", "--db", str(legacy_db)])
    again = runner.invoke(cli, ["db", "upgrade", "--db", str(legacy_db)])
    assert (first.exit_code, first.stdout) == (0, f"Upgraded {legacy_db} from schema version 0 to {LATEST}.\n")
    assert (again.exit_code, again.stdout) == (
        0,
        f"{legacy_db} is at schema version {LATEST}, the latest; nothing to do.\n",
    )


def test_cli_db_upgrade_of_a_missing_file_is_one_error_line(tmp_path):
    result = CliRunner().invoke(cli, ["db", "upgrade", "--db", str(tmp_path / "nope.db")])
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: No database at {tmp_path / 'nope.db'}. Run: qa-bot ingest ./articles (it creates one).\n",
    )


def test_version_7_dates_stored_answers_from_created_at(tmp_path):
    path = tmp_path / "v6.db"
    db = sqlite_utils.Database(path)
    for migration in migrations.MIGRATIONS[:6]:
        migration(db)
    db.execute("PRAGMA user_version = 6")
    db.execute(
        "insert into slack_answers (id, question, created_at) values ('a1', 'Who?', '2026-11-30T10:00:00+00:00')"
    )
    db.conn.commit()
    db.close()
    state = SlackState(path)
    row = next(state.db.query("select asked_at, outcome, searched from slack_answers"))
    state.close()
    assert row == {"asked_at": 1796032800.0, "outcome": None, "searched": None}


def test_version_8_keeps_existing_feeds_in_general(tmp_path):
    from bot.store.feeds import FeedStore

    path = tmp_path / "v7.db"
    db = sqlite_utils.Database(path)
    for migration in migrations.MIGRATIONS[:7]:
        migration(db)
    db.execute("PRAGMA user_version = 7")
    db.execute("insert into feeds (url, title, failures) values ('https://news.example.org/rss.xml', 'News', 0)")
    db.conn.commit()
    db.close()
    store = SQLiteStore(path)
    feed = FeedStore(store).get("https://news.example.org/rss.xml")
    store.close()
    assert (feed.title, feed.collection) == ("News", "general")
