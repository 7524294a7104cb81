"""Stopping on SIGTERM (systemd, `docker stop`) as on Ctrl-C, with real processes: a `qa-bot serve` and a
`qa-bot worker` on one SQLite file, the tiny reader, and a fake Slack Web API that takes `POST_S` to accept each
reply, signalled while they answer. Each exits 0 within `STOP_JOBS_S` with a `stopped signal=SIGTERM` line,
after finishing the questions it had started; none is lost or left half-done: each is answered once, or still
queued for the next process."""

from __future__ import annotations

import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

from bot.core.ingest import ingest_paths
from bot.slack.stopping import STOP_JOBS_S
from bot.store import SQLiteStore
from tests.conftest import DATA_DIR
from tests.fakes.slack_api import FakeSlackAPI
from tests.procs import BotProcess, bot_env, mention_event, post_event

QUESTIONS = 20
POST_S = 1.5  # each reply takes this long to post: the questions started when the signal comes are still running


def _stop(process: BotProcess) -> tuple[int, float]:
    """SIGTERM, then (exit status, seconds until it exited)."""
    signalled_at = time.monotonic()
    status = process.stop(signal.SIGTERM, timeout_s=STOP_JOBS_S + 10)
    return status, time.monotonic() - signalled_at


def test_serve_and_worker_stop_on_sigterm_promptly_finishing_what_they_read(tmp_path, tiny_reader_dir):
    db_path = tmp_path / "qa.db"
    store = SQLiteStore(db_path)
    assert ingest_paths(store, [DATA_DIR]).added == 3
    store.close()
    with FakeSlackAPI() as fake:
        fake.delay("chat.postMessage", POST_S)
        env = bot_env(
            database=f"sqlite:///{db_path}",
            slack_api_url=fake.base_url,
            QABOT_READER_MODEL=str(tiny_reader_dir),
            QABOT_THREADS="1",
            QABOT_FEED_INTERVAL_MINUTES="1000",
            QABOT_RATE_LIMIT_PER_MINUTE="1000",
        )
        serve = BotProcess.serve(env, cwd=tmp_path / "serve", name="serve")
        worker = BotProcess.worker(env, cwd=tmp_path / "worker", name="worker", threads=1)
        with serve, worker:
            serve.wait_healthy()
            worker.wait_for_log("worker ready")
            for number in range(QUESTIONS):
                assert post_event(serve.url, mention_event(number, text="Who founded the chess club?")) == 200
            fake.wait_for("reactions.add", timeout_s=30)  # reading has begun
            with ThreadPoolExecutor(2) as pool:  # both signalled at once
                (serve_status, serve_s), (worker_status, worker_s) = pool.map(_stop, [serve, worker])
        replies = [body["thread_ts"] for body in fake.bodies("chat.postMessage")]
    with sqlite3.connect(db_path) as conn:
        jobs = dict(conn.execute("select key, state from slack_jobs").fetchall())
    assert (serve_status, worker_status) == (0, 0), serve.log_tail() + worker.log_tail()
    assert serve_s < STOP_JOBS_S and worker_s < STOP_JOBS_S, (serve_s, worker_s)
    assert "stopped signal=SIGTERM questions_finished=True" in serve.log()
    assert "worker stopped signal=SIGTERM questions_finished=True" in worker.log()
    assert "Traceback" not in serve.log() + worker.log()
    # every question answered once or still queued: none lost, none cut short, none answered twice
    assert len(jobs) == QUESTIONS and set(jobs.values()) <= {"done", "pending"}
    answered = sorted(f"1700100000.{key.removeprefix('EvProc')}" for key, state in jobs.items() if state == "done")
    assert sorted(replies) == answered and 0 < len(answered) < QUESTIONS, (len(answered), jobs)
