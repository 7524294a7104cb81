"""Shared fixtures: a clean environment, Settings built in code, a store of three tiny articles, a tiny QA model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from bot.core.ingest import ingest_paths
from bot.settings import Settings
from bot.store import SQLiteStore

DATA_DIR = Path(__file__).parent / "data" / "articles"
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"  # ../shared next to the checkout, when present
NEWS_ARTICLE = Path(__file__).parent / "data" / "news" / "northwind-rail-trains.txt"

# Words of the three test articles and their questions; everything else becomes [UNK], which is fine for a
# model that is only checked for invariants.
TINY_VOCAB = """[PAD] [UNK] [CLS] [SEP] [MASK] . , ? ' ’ $ - the a of in on by at to for and was is who what when
where which how ceo kestrel foods company dr amara velasquez tom becker shares chief executive bridge riverton
mill repairs engineer lena ortiz county chess club elm street founded noor haddad player sam lee boston library
2015 monday may""".split()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No QABOT_*/SLACK_* variables and no `.env` file from the developer's machine; logging left as found."""
    for name in list(os.environ):
        if name.startswith(("QABOT_", "SLACK_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    # `qa-bot` calls configure_logging(force=True) inside CliRunner; don't leave a handler on a closed stream.
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def articles_dir() -> Path:
    """tests/data/articles: three five-sentence articles (.txt, .md, .json) with known answers."""
    return DATA_DIR


@pytest.fixture
def sample_article() -> Path:
    """tests/data/news: a short news article of the project's own (a CEO, a minister, a former chief, numbers)."""
    return NEWS_ARTICLE


@pytest.fixture(scope="session")
def tiny_reader_dir(tmp_path_factory) -> Path:
    """A randomly initialised BERT QA model with a ~60-word vocabulary, saved like a real checkpoint."""
    import torch
    from transformers import AutoModelForQuestionAnswering, BertConfig, BertTokenizerFast

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-reader")
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab_file))
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=len(TINY_VOCAB)
    )
    model = AutoModelForQuestionAnswering.from_config(config)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def settings(tmp_path, tiny_reader_dir) -> Settings:
    return Settings(db_path=tmp_path / "qa.db", reader_model=str(tiny_reader_dir))


@pytest.fixture
def store(tmp_path) -> SQLiteStore:
    """The three articles of tests/data/articles/ ingested into a fresh database (the `settings` db_path)."""
    store = SQLiteStore(tmp_path / "qa.db")
    report = ingest_paths(store, [DATA_DIR])
    assert (report.added, report.failures) == (3, [])
    yield store
    store.close()


@pytest.fixture
def service(settings, store):
    from bot.core.service import build_service

    return build_service(settings, store=store)


# PostgreSQL: one fresh database per test run, dropped afterwards; skipped, with the reason, where no server answers.
POSTGRES_ADMIN_URL = os.environ.get("QABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of an empty database `qa_bot_test_<random>` created for this run (its schema comes on first open)."""
    import secrets

    import psycopg
    from psycopg import sql

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_ADMIN_URL}: {' '.join(str(exc).split())}")
    name = f"qa_bot_test_{secrets.token_hex(4)}"
    admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        admin.close()


@pytest.fixture
def make_postgres_db(postgres_url):
    """Creates more empty databases for one test (`make_postgres_db()` returns the URL of a new one), all dropped
    after it; `make_postgres_db.drop(url)` drops one during the test (what an operator's mistake would do)."""
    import secrets

    import psycopg
    from psycopg import sql

    admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    names: list[str] = []

    def drop(url: str) -> None:
        name = url.rsplit("/", 1)[1]
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    def create() -> str:
        name = f"qa_bot_test_{secrets.token_hex(4)}"
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        names.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    create.drop = drop  # type: ignore[attr-defined]
    try:
        yield create
    finally:
        for name in names:
            drop(f"/{name}")
        admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request) -> str:
    return request.param


@pytest.fixture
def new_store(engine, request, tmp_path):
    """Opens an empty store of the test's engine: a SQLite file in tmp_path, or the run's PostgreSQL database
    emptied (library and feeds). Each call opens another connection to the same database (as a second process
    would)."""
    opened = []
    if engine == "postgres":
        from bot.store.postgres import PostgresStore

        url = request.getfixturevalue("postgres_url")
        first = PostgresStore(url)
        first.conn.execute(
            "truncate articles, sentences, passages, passage_terms, passage_postings, feeds, feed_entries "
            "restart identity cascade;"
            "update corpus_stats set passages = 0, tokens = 0"
        )
        fresh = [first]  # handed out by the first call; later calls open new connections

        def open_one():
            store = fresh.pop() if fresh else PostgresStore(url)
            opened.append(store)
            return store
    else:

        def open_one():
            store = SQLiteStore(tmp_path / "qa.db")
            opened.append(store)
            return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def db(new_store) -> str:
    """What `--db` names for an empty database of the test's engine: the SQLite file, or the PostgreSQL URL."""
    store = new_store()
    return getattr(store, "url", store.path)


SLACK_TABLES = "slack_events, slack_answers, slack_replies, slack_feedback, slack_rate_limits, slack_jobs"


@pytest.fixture
def new_state(engine, request, tmp_path):
    """Opens an empty Slack state of the test's engine (`SlackState` on a SQLite file in tmp_path, or
    `PostgresSlackState` on the run's PostgreSQL database, its slack_ tables emptied). Each call opens another
    connection to the same database, as another process (a replica) would."""
    from bot.store import open_state

    location = str(tmp_path / "qa.db")
    if engine == "postgres":
        location = request.getfixturevalue("postgres_url")
        emptied = open_state(location)
        emptied.conn.execute(f"truncate {SLACK_TABLES} restart identity")
        emptied.close()
    opened = []

    def open_one():
        state = open_state(location)
        opened.append(state)
        return state

    yield open_one
    for state in opened:
        state.close()


def state_rows(state, sql: str, params=()) -> list[dict]:
    """Rows of a read query on either engine's Slack state (`?` placeholders)."""
    if hasattr(state, "db"):
        return [dict(row) for row in state.db.query(sql, params)]
    return state.query(sql.replace("?", "%s"), list(params))


def rows(store, sql: str, params=()) -> list[dict]:
    """Rows of a read query on either engine (`?` placeholders)."""
    if isinstance(store, SQLiteStore):
        return [dict(row) for row in store.db.query(sql, params)]
    return [dict(row) for row in store.query(sql.replace("?", "%s"), list(params))]
