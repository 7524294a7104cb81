"""Answers survive a crash, with real processes: two `qa-bot serve` replicas and one `qa-bot worker` share one fresh
PostgreSQL database and the fake Slack Web API; 50 signed mentions are spread over both replicas, and one replica
is killed with SIGKILL while it is reading. Every question must be answered in its thread exactly once, and the
questions the killed replica held within its lease plus 10 s. Skipped, with the reason, where no PostgreSQL
server answers. The reader is the shipped one (models/minilm-squad-reader), on one CPU thread per process."""

from __future__ import annotations

import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from bot.core.ingest import ingest_paths
from bot.store import open_store
from tests.conftest import DATA_DIR
from tests.fakes.slack_api import FakeSlackAPI
from tests.procs import BotProcess, bot_env, mention_event, post_event

logger = logging.getLogger(__name__)

LEASE_S = 3
QUESTIONS = 50
ASKED = [
    "Who founded the Elm Street Chess Club?",
    "Who will become the CEO of Kestrel Foods?",
    "Who replaced the steel beams of the Riverton bridge?",
    "How much did the bridge repairs cost?",
    "Where will the chess team travel in April?",
]
APOLOGY = "Sorry, something went wrong"
QUIET_S = 0.05  # the killed replica made no Slack call for this long: no reply of its was half-recorded


def _running_keys(conn: psycopg.Connection, pid: int) -> list[str]:
    rows = conn.execute(
        "select key from slack_jobs where state = 'running' and claimed_by like %s order by key", [f"%:{pid}:%"]
    ).fetchall()
    return [row[0] for row in rows]


def _reading_quietly(fake: FakeSlackAPI, token: str) -> bool:
    """The process with `token` last called reactions.add (:eyes: on a question it reads) and has called nothing
    since for `QUIET_S`: none of its replies is between Slack and its `reply_ts` write, where a kill repeats one."""
    mine = [(at, method) for at, method, _, sent in fake.timed_calls() if sent == token]
    return bool(mine) and mine[-1][1] == "reactions.add" and time.monotonic() - mine[-1][0] >= QUIET_S


@pytest.mark.slow
def test_every_question_is_answered_once_when_a_replica_is_killed_while_reading(tmp_path, make_postgres_db):
    url = make_postgres_db()
    store = open_store(url)
    assert ingest_paths(store, [DATA_DIR]).added == 3
    store.close()
    settings = {
        "QABOT_THREADS": "1",
        "QABOT_JOB_LEASE_S": str(LEASE_S),
        "QABOT_RATE_LIMIT_PER_MINUTE": "1000",
        "QABOT_FEED_INTERVAL_MINUTES": "1000",
    }
    with FakeSlackAPI() as fake, psycopg.connect(url, autocommit=True) as db:
        victim_token = "xoxb-replica-a"
        env = bot_env(database=url, slack_api_url=fake.base_url, **settings)
        victim = BotProcess.serve({**env, "SLACK_BOT_TOKEN": victim_token}, cwd=tmp_path / "a", name="serve-a")
        survivor = BotProcess.serve(env, cwd=tmp_path / "b", name="serve-b")
        worker = BotProcess.worker(env, cwd=tmp_path / "w", name="worker")
        started = time.monotonic()
        with victim, survivor, worker:
            victim.wait_healthy()
            survivor.wait_healthy()
            worker.wait_for_log("worker ready")
            ready_s = time.monotonic() - started
            events = [mention_event(n, text=ASKED[n % len(ASKED)]) for n in range(QUESTIONS)]
            asked_at = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                statuses = list(
                    pool.map(lambda n: post_event((victim, survivor)[n % 2].url, events[n]), range(QUESTIONS))
                )
            assert statuses == [200] * QUESTIONS
            deadline = time.monotonic() + 30
            while not (_running_keys(db, victim.pid) and _reading_quietly(fake, victim_token)):
                assert time.monotonic() < deadline, f"the victim never read a question:\n{victim.log_tail()}"
                time.sleep(0.005)
            victim.kill()
            killed_at = time.monotonic()
            held = _running_keys(db, victim.pid)  # frozen now: what the dead replica left running
            assert held, "the victim held no job when it was killed"
            threads = {event["event_id"]: event["event"]["ts"] for event in events}
            deadline = time.monotonic() + 60
            while len({body.get("thread_ts") for body in fake.bodies("chat.postMessage")}) < QUESTIONS:
                assert time.monotonic() < deadline, f"unanswered after 60 s:\n{survivor.log_tail()}"
                time.sleep(0.05)
            finished_at = time.monotonic()
            time.sleep(LEASE_S + 1)  # long enough for any job claimed twice to post twice
            posts = [(at, body) for at, method, body, _ in fake.timed_calls() if method == "chat.postMessage"]
            jobs = db.execute("select key, state, attempts from slack_jobs").fetchall()
            assert survivor.stop(signal.SIGINT) == 0
            assert worker.stop(signal.SIGTERM) == 0
    replies = sorted(body["thread_ts"] for _, body in posts)
    assert replies == sorted(threads.values())  # each question answered, none twice
    assert [body["text"] for _, body in posts if body["text"].startswith(APOLOGY)] == []
    answered_at = {body["thread_ts"]: at for at, body in posts}
    recovered_s = max(answered_at[threads[key]] for key in held) - killed_at
    assert recovered_s <= LEASE_S + 10, f"the killed replica's jobs took {recovered_s:.1f} s"
    assert {row[1] for row in jobs} == {"done"} and len(jobs) == QUESTIONS
    assert all(attempts == 2 for key, _, attempts in jobs if key in held)
    logger.info(
        "crash run: ready_s=%.1f killed_after_s=%.2f held_by_killed=%d killed_jobs_answered_after_s=%.2f "
        "all_answered_after_s=%.2f",
        ready_s,
        killed_at - asked_at,
        len(held),
        recovered_s,
        finished_at - asked_at,
    )
