"""Questions as durable jobs (`slack_jobs`), on both engines: the table's operations with several connections
standing in for several processes, then the app's own workers (`bot.slack.jobs.JobRunner`) answering jobs that a
dead worker left behind, with the real handlers, store and fake Slack Web API. PostgreSQL runs are skipped, with
the reason, where no server answers. The multi-process crash test is tests/test_crash.py."""

# ruff: noqa: F811  (the fixtures of test_slack_app, imported by name, are test arguments here)
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from queue import Queue

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import StoreError
from bot.settings import Settings
from bot.slack.jobs import MAX_ATTEMPTS, worker_name
from bot.slack.listeners.questions import job_answer_id, question_kind
from bot.store.retention import DAY_S, RetentionSweeper
from bot.store.state_base import AskedQuestion, Enqueued, Job, StoredAnswer
from tests.conftest import state_rows
from tests.fakes.slack_api import FakeSlackAPI
from tests.test_slack_app import (  # noqa: F401
    BOTH_ENGINES,
    FIXTURES,
    Slack,
    _eventually,
    fake_slack,
    make_slack,
    slack,
)

MENTION = json.loads((FIXTURES / "event_app_mention_channel.json").read_text(encoding="utf-8"))
PAYLOAD = {"event": MENTION["event"], "bot_user_id": "U0BOT", "team": "T0001"}


def _jobs(state) -> list[dict]:
    return state_rows(state, "select key, state, attempts, reply_ts from slack_jobs order by created_at")


# The table, on both engines -----------------------------------------------------------------------------------


def test_a_job_is_queued_once_whichever_connection_queues_it_again(new_state):
    first, second = new_state(), new_state()
    assert first.enqueue_job("Ev1", "mention", PAYLOAD, now=100.0) is Enqueued.QUEUED
    assert second.enqueue_job("Ev1", "mention", {"event": {}}, now=101.0) is Enqueued.REPEAT
    assert second.unfinished_jobs() == 1
    job = second.claim_job("host:1:job-0", lease_s=60, now=102.0)
    assert job == Job(
        key="Ev1", kind="mention", payload=PAYLOAD, attempts=1, claimed_by="host:1:job-0", created_at=100.0
    )


def test_past_the_cap_a_new_question_is_busy_and_a_repeat_is_still_a_repeat(new_state):
    state = new_state()
    assert [state.enqueue_job(f"Ev{n}", "dm", {}, max_unfinished=2) for n in (1, 2, 3)] == [
        Enqueued.QUEUED,
        Enqueued.QUEUED,
        Enqueued.BUSY,
    ]
    assert state.enqueue_job("Ev1", "dm", {}, max_unfinished=2) is Enqueued.REPEAT  # a retry: no busy reply
    state.claim_job("w", lease_s=10)
    state.finish_job("Ev1")
    assert state.enqueue_job("Ev3", "dm", {}, max_unfinished=2) is Enqueued.QUEUED  # a finished job frees its place
    assert [job["key"] for job in _jobs(state)] == ["Ev1", "Ev2", "Ev3"]


def test_eight_replicas_queueing_at_once_against_a_cap_of_three_queue_exactly_three(new_state):
    states = [new_state() for _ in range(8)]  # eight connections: eight replicas acknowledging at the same moment
    start = threading.Barrier(8)

    def enqueue(key: str, state) -> Enqueued:
        start.wait()
        return state.enqueue_job(key, "mention", PAYLOAD, max_unfinished=3)

    for round_number in range(5):  # the race is short: run it a few times
        keys = [f"Ev{round_number}-{number}" for number in range(8)]
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(enqueue, keys, states))
        assert sorted(outcome.value for outcome in outcomes) == ["busy"] * 5 + ["queued"] * 3, round_number
        assert states[0].unfinished_jobs() == 3
        while (job := states[0].claim_job("w", lease_s=10)) is not None:  # answered: room for the next round
            states[0].finish_job(job.key)


def test_eight_workers_racing_claim_every_job_exactly_once(new_state):
    states = [new_state() for _ in range(4)]  # four processes, two worker threads each
    for number in range(40):
        states[0].enqueue_job(f"Ev{number:03d}", "mention", {"n": number}, now=100.0 + number)
    start = threading.Barrier(8)

    def work(state) -> list[str]:
        start.wait()
        claimed = []
        while (job := state.claim_job(worker_name(), lease_s=60)) is not None:
            claimed.append(job.key)
            state.finish_job(job.key)
        return claimed

    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(work, states * 2))
    every = [key for claimed in claims for key in claimed]
    assert sorted(every) == [f"Ev{number:03d}" for number in range(40)]  # none twice, none missed
    assert states[1].unfinished_jobs() == 0


def test_jobs_are_claimed_oldest_first(new_state):
    state = new_state()
    state.enqueue_job("Ev-later", "dm", {}, now=200.0)
    state.enqueue_job("Ev-sooner", "dm", {}, now=100.0)
    assert [state.claim_job("w", lease_s=60, now=300.0).key for _ in range(2)] == ["Ev-sooner", "Ev-later"]


def test_a_job_whose_lease_expired_is_claimed_again_by_another_worker(new_state):
    first, second = new_state(), new_state()
    first.enqueue_job("Ev1", "mention", PAYLOAD, now=100.0)
    first.claim_job("a:1:job-0", lease_s=10, now=100.0)
    assert second.claim_job("b:2:job-0", lease_s=10, now=109.0) is None  # still held
    again = second.claim_job("b:2:job-0", lease_s=10, now=111.0)  # a:1 stopped beating: its lease ran out
    assert (again.key, again.attempts, again.claimed_by) == ("Ev1", 2, "b:2:job-0")


def test_the_heartbeat_keeps_a_lease_only_for_the_worker_holding_it(new_state):
    state, other = new_state(), new_state()
    state.enqueue_job("Ev1", "mention", PAYLOAD, now=100.0)
    state.claim_job("a:1:job-0", lease_s=10, now=100.0)
    assert other.extend_job_leases({"Ev1": "b:2:job-0"}, lease_s=10, now=108.0) == 0  # not b's
    assert state.extend_job_leases({"Ev1": "a:1:job-0"}, lease_s=10, now=108.0) == 1
    assert other.claim_job("b:2:job-0", lease_s=10, now=111.0) is None  # extended to 118
    assert other.claim_job("b:2:job-0", lease_s=10, now=119.0).claimed_by == "b:2:job-0"
    assert state.extend_job_leases({"Ev1": "a:1:job-0"}, lease_s=10, now=120.0) == 0  # a lost it


def test_a_recorded_reply_comes_back_with_the_job_claimed_again(new_state):
    first, second = new_state(), new_state()
    first.enqueue_job("Ev1", "mention", PAYLOAD, now=100.0)
    first.claim_job("a:1:job-0", lease_s=10, now=100.0)
    first.record_job_reply("Ev1", "1700001001.000001")
    again = second.claim_job("b:2:job-0", lease_s=10, now=111.0)
    assert (again.attempts, again.reply_ts) == (2, "1700001001.000001")


def test_finished_jobs_are_not_claimed_and_are_forgotten_a_day_later(new_state):
    state = new_state()
    for key, finished_at in [("Ev-old", 100.0), ("Ev-new", 5000.0)]:
        state.enqueue_job(key, "dm", {}, now=finished_at - 1)
        state.claim_job("w", lease_s=10, now=finished_at - 1)
        state.finish_job(key, failed=key == "Ev-old", now=finished_at)
    state.enqueue_job("Ev-waiting", "dm", {}, now=50.0)
    assert (state.unfinished_jobs(), state.claim_job("w", lease_s=10, now=6000.0).key) == (1, "Ev-waiting")
    assert state.forget_finished_jobs(before=1000.0) == 1
    assert [job["key"] for job in _jobs(state)] == ["Ev-waiting", "Ev-new"]
    assert state.enqueue_job("Ev-new", "dm", {}) is Enqueued.REPEAT  # still stops a late retry


def test_the_daily_sweep_forgets_jobs_finished_over_a_day_ago(new_state):
    state = new_state()
    for key, finished_at in [("Ev-two-days", time.time() - 2 * DAY_S), ("Ev-an-hour", time.time() - 3600)]:
        state.enqueue_job(key, "dm", {})
        state.claim_job("w", lease_s=10)
        state.finish_job(key, now=finished_at)
    sweeps: Queue[int] = Queue()
    sweeper = RetentionSweeper(state.location, retention_days=90, on_sweep=sweeps.put).start()
    try:
        sweeps.get(timeout=20)
    finally:
        sweeper.stop(timeout_s=5)
    assert [job["key"] for job in _jobs(state)] == ["Ev-an-hour"]


def test_the_payload_comes_back_as_it_went_in(new_state):
    payload = {"event": {"text": "Wer leitet „Kestrel“? 🙂", "n": [1, 2.5, None, True]}, "team": None}
    state = new_state()
    state.enqueue_job("Ev1", "dm", payload)
    assert state.claim_job("w", lease_s=10).payload == payload


# Which events ask a question ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"type": "app_mention", "channel": "C1", "user": "U1", "ts": "1.0"}, "mention"),
        ({"type": "app_mention", "channel": "C1", "user": "U1", "ts": "1.0", "bot_id": "B1"}, None),
        ({"type": "app_mention", "channel": "D1", "user": "U1", "ts": "1.0"}, None),  # the message event answers it
        ({"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "ts": "1.0"}, "dm"),
        ({"type": "message", "channel_type": "im", "channel": "D1", "user": "U0BOT", "ts": "1.0"}, None),
        ({"type": "message", "channel_type": "channel", "channel": "C1", "user": "U1", "ts": "2.0"}, None),
        (
            {
                "type": "message",
                "channel_type": "channel",
                "channel": "C1",
                "user": "U1",
                "ts": "2.0",
                "thread_ts": "1.0",
            },
            "follow-up",
        ),
        (
            {
                "type": "message",
                "channel_type": "group",
                "user": "U1",
                "ts": "2.0",
                "thread_ts": "1.0",
                "text": "<@U0BOT> hi",
            },
            None,  # its app_mention answers it
        ),
        ({"type": "message", "subtype": "channel_join", "channel_type": "channel", "user": "U1", "ts": "2.0"}, None),
        (
            {
                "type": "message",
                "subtype": "message_changed",
                "message": {"user": "U1", "ts": "1.0", "text": "Who runs Acme?"},
                "previous_message": {"user": "U1", "ts": "1.0", "text": "Who runs Acme"},
            },
            "edit",
        ),
        (
            {
                "type": "message",
                "subtype": "message_changed",
                "message": {"user": "U1", "ts": "1.0", "text": "Who runs Acme?", "attachments": [{}]},
                "previous_message": {"user": "U1", "ts": "1.0", "text": "Who runs Acme?"},
            },
            None,  # only an unfurl changed
        ),
    ],
)
def test_question_kind_by_the_event_alone(event, kind):
    assert question_kind(event, bot_user_id="U0BOT") == kind


# The app's workers, on both engines ---------------------------------------------------------------------------


def _leave_running(
    slack: Slack,
    key: str,
    *,
    attempts: int = 1,
    reply_ts: str | None = None,
    lease_s: float = 0.5,
    kind: str = "mention",
    payload: dict = PAYLOAD,
    created_at: float = 0.0,
):
    """Write the row a worker that died mid-job leaves behind: running, claimed by a process that is gone, its
    lease running out `lease_s` from now. One insert, so the app's own workers cannot claim it before."""
    values = [key, kind, payload, "gone-host:999:qa-bot-job-0", time.time() + lease_s, attempts, reply_ts, created_at]
    columns = "key, kind, payload, state, claimed_by, lease_until, attempts, reply_ts, created_at"
    if hasattr(slack.state, "db"):
        with slack.state.db.conn:
            values[2] = json.dumps(payload)
            slack.state.db.execute(
                f"insert into slack_jobs ({columns}) values (?, ?, ?, 'running', ?, ?, ?, ?, ?)", values
            )
    else:
        from psycopg.types.json import Jsonb

        values[2] = Jsonb(payload)
        slack.state.conn.execute(
            f"insert into slack_jobs ({columns}) values (%s, %s, %s, 'running', %s, %s, %s, %s, %s)", values
        )


def _thread_replies(slack: Slack) -> list[dict]:
    return [body for body in slack.fake.bodies("chat.postMessage") if body.get("thread_ts") == MENTION["event"]["ts"]]


@BOTH_ENGINES
def test_a_mention_is_queued_with_what_its_worker_needs_and_never_a_token(slack):
    slack.event("event_app_mention_channel.json")
    slack.fake.wait_for("chat.postMessage")
    slack.work.wait_idle()
    [row] = state_rows(slack.state, "select key, kind, state, payload from slack_jobs")
    payload = row.pop("payload")
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert (row, payload) == ({"key": "Ev0000000001", "kind": "mention", "state": "done"}, PAYLOAD)
    assert "xoxb" not in json.dumps(payload) and "token" not in json.dumps(payload)


@BOTH_ENGINES
def test_a_job_left_running_by_a_dead_worker_is_answered_once_after_its_lease(slack):
    _leave_running(slack, "Ev-dead-1")
    [reply] = slack.fake.wait_for("chat.postMessage", timeout_s=10)
    slack.work.wait_idle()
    assert reply["text"].startswith("Mikheev — ") and len(_thread_replies(slack)) == 1
    [job] = _jobs(slack.state)
    assert (job["key"], job["state"], job["attempts"], job["reply_ts"] is not None) == ("Ev-dead-1", "done", 2, True)
    assert slack.state.reply_to("C0001", MENTION["event"]["ts"]).reply_ts == job["reply_ts"]


@BOTH_ENGINES
def test_a_job_whose_reply_was_posted_before_the_crash_is_not_posted_again(slack):
    # the dead worker stored the answer, posted it (Slack returned this ts) and recorded it, then died
    answer_id = job_answer_id("Ev-dead-2")
    slack.state.save_answer(
        StoredAnswer(
            answer_id,
            "Who is the CEO of Rosoboronexport?",
            "Mikheev",
            None,
            0.9,
            "*Mikheev*",
            [],
            asked=AskedQuestion(outcome="confident"),
        )
    )
    _leave_running(slack, "Ev-dead-2", reply_ts="1700009999.000001")
    assert _eventually(lambda: _jobs(slack.state)[0]["state"] == "done", timeout_s=10)
    slack.work.wait_idle()
    assert slack.fake.methods() == []  # no second reply, not even the :eyes:
    link = slack.state.reply_to("C0001", MENTION["event"]["ts"])
    assert (link.reply_ts, link.answer_id) == ("1700009999.000001", answer_id)


@BOTH_ENGINES
def test_a_job_whose_workers_kept_dying_is_given_up_with_an_apology(slack, caplog):
    with caplog.at_level(logging.ERROR, logger="bot.slack.jobs"):
        _leave_running(slack, "Ev-dead-3", attempts=MAX_ATTEMPTS)
        [apology] = slack.fake.wait_for("chat.postMessage", timeout_s=10)
        slack.work.wait_idle()
    [record] = [r for r in caplog.records if r.getMessage().startswith("job given up")]
    reference = record.getMessage().split("reference=")[1]
    assert (apology["thread_ts"], apology["text"]) == (
        MENTION["event"]["ts"],
        f"Sorry, something went wrong while answering (reference {reference}). The details are in the bot's log.",
    )
    assert [(job["state"], job["attempts"]) for job in _jobs(slack.state)] == [("failed", MAX_ATTEMPTS + 1)]
    assert slack.fake.bodies("reactions.add") == []  # not read again


@BOTH_ENGINES
def test_a_job_that_fails_gets_the_apology_with_a_logged_reference_and_is_not_retried(slack, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise StoreError("database is locked")

    monkeypatch.setattr(slack.state, "allow_question", broken)
    with caplog.at_level(logging.ERROR, logger="bot.slack.jobs"):
        slack.event("event_app_mention_channel.json")
        [apology] = slack.fake.wait_for("chat.postMessage")
        slack.work.wait_idle()
    [record] = [r for r in caplog.records if r.getMessage().startswith("job failed key=Ev0000000001 kind=mention")]
    reference = record.getMessage().split("reference=")[1]
    assert (apology["thread_ts"], apology["text"]) == (
        "1700000000.000100",
        f"Sorry, something went wrong while answering (reference {reference}). The details are in the bot's log.",
    )
    assert record.exc_info[0] is StoreError
    assert [(job["state"], job["attempts"]) for job in _jobs(slack.state)] == [("failed", 1)]


def test_a_reply_whose_ts_cannot_be_recorded_is_still_an_answer_not_an_apology(slack, monkeypatch):
    def broken(*args, **kwargs):
        raise StoreError("disk I/O error")

    monkeypatch.setattr(slack.state, "record_job_reply", broken)
    slack.event("event_app_mention_channel.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    slack.work.wait_idle()
    assert reply["text"].startswith("Mikheev — ") and len(slack.fake.bodies("chat.postMessage")) == 1
    assert [(job["state"], job["reply_ts"]) for job in _jobs(slack.state)] == [("done", None)]


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_job_claimed_again_does_not_count_against_the_rate_limit_twice(make_slack, engine):
    slack = make_slack(engine=engine, rate_limit_per_minute=1)
    assert slack.state.allow_question("U0001", per_minute=1).allowed  # the dead worker's run counted it
    _leave_running(slack, "Ev-dead-4")
    [reply] = slack.fake.wait_for("chat.postMessage", timeout_s=10)
    slack.work.wait_idle()
    assert reply["text"].startswith("Mikheev — ") and slack.fake.bodies("chat.postEphemeral") == []
    slack.event("event_message_im.json")  # a new question: the limit is still there, one question a minute
    [refusal] = slack.fake.wait_for("chat.postEphemeral")
    slack.work.wait_idle()
    assert refusal["text"].startswith("You have asked 1 questions in the last minute")
    assert [(job["key"], job["attempts"], job["reply_ts"]) for job in _jobs(slack.state)][1] == (
        "Ev0000000003",
        1,
        "replied",  # a refusal is a reply: a worker claiming the job again does not answer it after all
    )


def _dm(number: int):
    def edit(payload: dict) -> None:
        payload["event_id"] = f"EvDM{number:04d}"
        payload["event"].update(ts=f"1700000200.{number:06d}", event_ts=f"1700000200.{number:06d}")

    return edit


class _Held:
    """Holds the stub reader until the test lets go, so a question stays unfinished."""

    def __init__(self, *readers) -> None:
        self.go = threading.Event()
        for reader in readers:
            reader.run = self._wrap(reader.run)

    def _wrap(self, run):
        def held(*args, **kwargs):
            assert self.go.wait(20), "the test never let the reader go"
            return run(*args, **kwargs)

        return held


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_past_max_pending_jobs_the_asker_is_told_the_bot_is_busy_and_nothing_is_queued(make_slack, engine):
    first = make_slack(engine=engine, max_pending=1)
    # with PostgreSQL the second question reaches another replica: the cap counts every replica's jobs
    second = make_slack(engine=engine, fresh=False, max_pending=1) if engine == "postgres" else first
    held = _Held(first.reader, second.reader)
    try:
        first.event("event_message_im.json", edit=_dm(1))
        first.fake.wait_for("reactions.add")  # a worker is reading it
        second.event("event_message_im.json", edit=_dm(2))
        [busy] = first.fake.wait_for("chat.postMessage")
    finally:
        held.go.set()
    answers = first.fake.wait_for("chat.postMessage", 2)
    first.work.wait_idle()
    second.work.wait_idle()
    assert (busy["thread_ts"], busy["text"]) == (
        "1700000200.000002",
        "I'm busy answering other questions right now. Please try again in a minute.",
    )
    assert answers[1]["thread_ts"] == "1700000200.000001" and "Mikheev" in answers[1]["text"]
    assert [job["key"] for job in _jobs(first.state)] == ["EvDM0001"]


# qa-bot worker ------------------------------------------------------------------------------------------------


def test_worker_without_a_bot_token_is_one_error_line():
    result = CliRunner().invoke(cli, ["worker", "--db", "qa.db"])
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        1,
        "Error: SLACK_BOT_TOKEN is not set. Install the Slack app (see manifest.yaml) and set SLACK_BOT_TOKEN to its "
        "Bot User OAuth Token (xoxb-…).",
    )


def test_a_worker_answers_what_was_queued_and_stops_when_told(store, tiny_reader_dir, tmp_path, caplog):
    from bot.slack.worker import run_worker
    from bot.store import open_state

    state = open_state(tmp_path / "qa.db")
    state.enqueue_job("Ev1", "mention", PAYLOAD)  # as a serve on this machine would have
    stop = threading.Event()
    with FakeSlackAPI() as fake, caplog.at_level(logging.INFO):
        settings = Settings(
            _env_file=None,
            db_path=tmp_path / "qa.db",
            reader_model=str(tiny_reader_dir),
            slack_bot_token="xoxb-test",
            slack_api_url=fake.base_url,
        )
        worker = threading.Thread(target=run_worker, args=(settings,), kwargs={"threads": 1, "stop": stop})
        worker.start()
        [reply] = fake.wait_for("chat.postMessage", timeout_s=30)
        assert _eventually(lambda: _jobs(state)[0]["state"] == "done", timeout_s=10)
        stop.set()
        worker.join(timeout=30)
    [job] = _jobs(state)
    assert (worker.is_alive(), reply["thread_ts"], job["attempts"], job["reply_ts"] is not None) == (
        False,
        MENTION["event"]["ts"],
        1,
        True,
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "bot.slack.worker"]
    assert len(warnings) == 1 and warnings[0].startswith("qa-bot worker on a SQLite file answers only the questions")
    state.close()
