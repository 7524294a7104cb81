"""A database made by another qa-bot version, on both engines: one with an older schema is upgraded by whichever
command opens it (as `qa-bot db upgrade` would), one with a newer schema is refused by every command in one line
that says to upgrade qa-bot, with no traceback and nothing changed."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from click.testing import CliRunner

import bot.store.migrations as sqlite_migrations
import bot.store.pg_migrations as pg_migrations
from bot.cli import cli
from bot.core.records import Article
from bot.store import SQLiteStore, open_store
from tests.conftest import DATA_DIR, rows
from tests.fakes.slack_api import FakeSlackAPI

# An older release's schema on each engine (before the feed tables: 5 in SQLite, 2 in PostgreSQL).
OLDER = {"sqlite": 5, "postgres": 2}
# what PostgreSQL's migrations 3 to 5 add: the feed tables, slack_jobs, passage_postings
PG_TABLES_AFTER_OLDER = ("feed_entries", "feeds", "slack_jobs", "passage_postings")


@pytest.fixture
def make_db(engine, tmp_path, request):
    """Makes an empty database of the test's engine and returns what `--db` names (a SQLite file, or the URL of a
    new PostgreSQL database)."""
    made = []

    def make() -> str:
        if engine == "postgres":
            return request.getfixturevalue("make_postgres_db")()
        made.append(str(tmp_path / f"qa{len(made)}.db"))
        return made[-1]

    return make


def version_of(location: str) -> int:
    """The schema version recorded in the database, read without opening it as qa-bot would (no migration)."""
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location) as conn:
            return pg_migrations.pg_schema_version(conn)
    conn = sqlite3.connect(location)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def latest(engine: str) -> int:
    return pg_migrations.latest_pg_version() if engine == "postgres" else sqlite_migrations.latest_version()


@pytest.fixture
def older_db(engine, make_db, monkeypatch):
    """A database at an older release's schema holding one article, as that release left it."""
    location = make_db()
    article = Article(title="Acme history", body="Acme was founded in 1901 by Ada Park.", source="a.txt")
    if engine == "postgres":
        # today's PostgresStore writes tables the older schema lacks (passage_postings): store the article with
        # today's schema, then take back what the later migrations added
        store = open_store(location)
        store.add_article(article)
        store.close()
        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(f"drop table {', '.join(PG_TABLES_AFTER_OLDER)}")
            conn.execute("update schema_version set version = %s", [OLDER[engine]])
    else:
        with monkeypatch.context() as patched:
            patched.setattr(sqlite_migrations, "MIGRATIONS", sqlite_migrations.MIGRATIONS[: OLDER[engine]])
            store = open_store(location)
            store.add_article(article)
            store.close()
    assert version_of(location) == OLDER[engine]
    return location


@pytest.mark.parametrize(
    "args",
    [["ingest", str(DATA_DIR)], ["articles", "stats"], ["feeds", "list"], ["report"]],
    ids=lambda args: " ".join(args[:2]) if args[0] != "ingest" else "ingest",
)
def test_a_database_with_an_older_schema_is_upgraded_by_the_command_that_opens_it(engine, older_db, args):
    result = CliRunner().invoke(cli, [*args, "--db", older_db])
    assert result.exit_code == 0, result.output
    assert version_of(older_db) == latest(engine)
    store = open_store(older_db)
    assert [row["title"] for row in rows(store, "select title from articles order by id")][0] == "Acme history"
    store.close()


@pytest.fixture
def newer_db(engine, make_db) -> tuple[str, str]:
    """A database a newer qa-bot made (one schema version past ours), and the line every command must print."""
    location = make_db()
    store = open_store(location)
    store.add_article(Article(title="Acme history", body="Acme was founded in 1901 by Ada Park.", source="a.txt"))
    newer = latest(engine) + 1
    if isinstance(store, SQLiteStore):
        store.db.execute(f"PRAGMA user_version = {newer}")
    else:
        store.conn.execute("update schema_version set version = %s", [newer])
    label = store.path
    store.close()
    return location, (
        f"Error: {label} has schema version {newer}, but this qa-bot knows versions up to {newer - 1}. "
        "Upgrade qa-bot (pip install -U qa-bot) to open it."
    )


COMMANDS = [
    ["ingest", str(DATA_DIR)],
    ["ask", "Who founded Acme?"],
    ["articles", "list"],
    ["articles", "stats"],
    ["feeds", "list"],
    ["feeds", "poll"],
    ["report"],
    ["db", "upgrade"],
    ["serve"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: " ".join(args[:2]) if len(args[0]) < 8 else args[0])
def test_a_database_with_a_newer_schema_is_refused_by_every_command_in_one_line(
    engine, newer_db, args, monkeypatch, tmp_path
):
    location, line = newer_db
    monkeypatch.setenv("QABOT_READER_MODEL", str(tmp_path / "no-model"))  # never reached
    with FakeSlackAPI() as fake:  # serve checks Slack first
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
        monkeypatch.setenv("QABOT_SLACK_API_URL", fake.base_url)
        result = CliRunner().invoke(cli, [*args, "--db", location])
    assert (result.exit_code, result.stdout) == (1, "")
    errors = [text for text in result.stderr.splitlines() if " INFO " not in text]  # serve logs at INFO too
    assert errors == [line]
    assert version_of(location) == latest(engine) + 1


def test_a_postgresql_role_that_may_not_change_the_schema_is_told_to_run_db_upgrade_as_its_owner(
    make_postgres_db, monkeypatch
):
    """Least privilege: the bot's role reads and writes, the owner changes the schema. An older database is then
    refused with the command to run, and works once the owner ran it."""
    import secrets

    import psycopg

    from bot.store.pg_connect import describe_url
    from tests.conftest import POSTGRES_ADMIN_URL

    owner_url = make_postgres_db()
    with monkeypatch.context() as patched:
        patched.setattr(pg_migrations, "PG_MIGRATIONS", pg_migrations.PG_MIGRATIONS[: OLDER["postgres"]])
        open_store(owner_url).close()
    role = f"qa_bot_reader_{secrets.token_hex(3)}"
    admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True)
    admin.execute(f"create role {role} login")
    try:
        with psycopg.connect(owner_url, autocommit=True) as owner:
            owner.execute(f"revoke create on schema public from public; grant usage on schema public to {role}")
            owner.execute(f"grant select on all tables in schema public to {role}")
            owner.execute(f"alter default privileges in schema public grant select on tables to {role}")
        role_url = owner_url.replace("postgres@", f"{role}@", 1)
        refused = CliRunner().invoke(cli, ["articles", "stats", "--db", role_url])
        older, first_missing = OLDER["postgres"], pg_migrations.PG_MIGRATIONS[OLDER["postgres"]].__name__
        assert (refused.exit_code, refused.stderr) == (
            1,
            f"Error: Could not upgrade {describe_url(role_url)} to schema version {older + 1} ({first_missing}): "
            f"permission denied for schema public. The database is still at version {older}. Run `qa-bot db "
            "upgrade` as a database user allowed to change its schema (its owner, for example), then try again.\n",
        )
        upgraded = CliRunner().invoke(cli, ["db", "upgrade", "--db", owner_url])
        assert upgraded.exit_code == 0, upgraded.output
        assert CliRunner().invoke(cli, ["articles", "stats", "--db", role_url]).exit_code == 0
    finally:
        make_postgres_db.drop(owner_url)
        admin.execute(f"drop role if exists {role}")
        admin.close()
