"""PostgreSQL connections that recover and never hang (`bot.store.pg_connect`): a connection the server dropped is
replaced and the read that found it dropped still answers; a stuck statement ends in a one-line error after the
statement timeout, except in a migration. Skipped, with the reason, where no PostgreSQL server answers."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

import bot.store.pg_connect as pg_connect
from bot.core.ingest import ingest_paths
from bot.errors import StoreError
from bot.store.pg_state import PostgresSlackState
from bot.store.postgres import PostgresStore
from bot.store.state_base import Enqueued, StoredAnswer
from tests.conftest import DATA_DIR, POSTGRES_ADMIN_URL


@pytest.fixture
def pg_store(postgres_url):
    """The run's PostgreSQL library holding the three test articles."""
    store = PostgresStore(postgres_url)
    store.conn.execute(
        "truncate articles, sentences, passages, passage_terms restart identity cascade;"
        "update corpus_stats set passages = 0, tokens = 0"
    )
    assert ingest_paths(store, [DATA_DIR]).added == 3
    yield store
    store.close()


def terminate(pid: int) -> None:
    """What a server restart, a failover or an operator's pg_terminate_backend does to one connection."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        assert admin.execute("select pg_terminate_backend(%s)", [pid]).fetchone() == (True,)


def backend_pid(store_or_state) -> int:
    return store_or_state.query("select pg_backend_pid() as pid")[0]["pid"]


def test_after_the_server_drops_the_library_connection_the_next_search_still_answers(pg_store):
    before = pg_store.search('"kestrel" OR "ceo"', limit=5)
    pid = backend_pid(pg_store)
    terminate(pid)
    assert pg_store.search('"kestrel" OR "ceo"', limit=5) == before != []
    assert backend_pid(pg_store) != pid
    terminate(backend_pid(pg_store))
    assert pg_store.article_count() == 3  # every read, not only search


def test_after_the_server_drops_the_state_connection_the_next_read_still_answers(postgres_url):
    state = PostgresSlackState(postgres_url)
    answer = StoredAnswer(
        id="conn-a1", question="Who?", answer="Ada", article_id=None, score=0.9, text="Ada", blocks=[]
    )
    state.save_answer(answer)
    terminate(backend_pid(state))
    assert state.get_answer("conn-a1").answer == "Ada"
    state.close()


def test_every_connection_has_the_statement_timeout(pg_store, postgres_url):
    state = PostgresSlackState(postgres_url)
    expected = [{"statement_timeout": f"{pg_connect.STATEMENT_TIMEOUT_S}s"}]
    assert pg_store.query("show statement_timeout") == expected == state.query("show statement_timeout")
    state.close()


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setattr(pg_connect, "STATEMENT_TIMEOUT_S", 1)


def test_a_search_stuck_behind_a_lock_ends_in_one_line_after_the_statement_timeout(postgres_url, short_timeout):
    store = PostgresStore(postgres_url)
    with psycopg.connect(postgres_url) as other:  # a forgotten psql session holding a lock
        other.execute("lock table passages in access exclusive mode")
        started = time.monotonic()
        with pytest.raises(StoreError) as raised:
            store.search('"kestrel"', limit=5)
        waited_s = time.monotonic() - started
        other.rollback()
    assert str(raised.value) == "Search failed for '\"kestrel\"': canceling statement due to statement timeout"
    assert 0.9 < waited_s < 5
    assert store.search('"zebra"', limit=5) == []  # the connection itself is fine
    store.close()


def test_a_migration_waits_for_another_openers_migration_past_the_statement_timeout(make_postgres_db, short_timeout):
    from bot.store.pg_migrations import _MIGRATION_LOCK, latest_pg_version

    url = make_postgres_db()
    locked, release = threading.Event(), threading.Event()

    def other_opener() -> None:  # holds the migration lock for 2 s, as a slow migration elsewhere would
        with psycopg.connect(url) as conn:
            conn.execute("select pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
            locked.set()
            release.wait(2)

    thread = threading.Thread(target=other_opener)
    thread.start()
    assert locked.wait(10)
    started = time.monotonic()
    store = PostgresStore(url)
    waited_s = time.monotonic() - started
    thread.join()
    assert store.query("select version from schema_version") == [{"version": latest_pg_version()}]
    assert waited_s > 1.5
    store.close()


@pytest.mark.parametrize("capped", [False, True], ids=["uncapped", "capped"])
def test_a_question_queued_on_a_dropped_state_connection_waits_in_the_table_instead_of_failing(postgres_url, capped):
    state = PostgresSlackState(postgres_url)
    clear_jobs(postgres_url)
    try:
        terminate(backend_pid(state))
        cap = 10 if capped else None
        assert state.enqueue_job("Ev-drop", "mention", {"text": "hi"}, max_unfinished=cap) is Enqueued.QUEUED
        assert state.query("select key, state from slack_jobs") == [{"key": "Ev-drop", "state": "pending"}]
        # sent again (a retry of the delivery): still one job
        assert state.enqueue_job("Ev-drop", "mention", {"text": "hi"}, max_unfinished=cap) is Enqueued.REPEAT
    finally:
        clear_jobs(postgres_url)
        state.close()


def clear_jobs(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("delete from slack_jobs")
