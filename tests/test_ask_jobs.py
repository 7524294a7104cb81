"""`/ask` as a durable job, on both engines: taken at the ack like the questions of events, answered by the job
workers privately through the command's response_url (with the Share button), capped by `QABOT_MAX_PENDING`, sent
once however often its job is claimed, and dropped when its response_url is past Slack's 30 minutes. PostgreSQL
runs are skipped, with the reason, where no server answers."""

# ruff: noqa: F811  (the fixtures of test_slack_app, imported by name, are test arguments here)
from __future__ import annotations

import json
import logging
import time

import pytest

from bot.slack.listeners.questions import ASK_KIND, REPLIED_WITHOUT_TS, RESPONSE_URL_TTL_S, job_answer_id
from tests.conftest import state_rows
from tests.test_jobs import _dm, _Held, _jobs, _leave_running
from tests.test_slack_app import (  # noqa: F401
    BOTH_ENGINES,
    Slack,
    _block,
    _eventually,
    fake_slack,
    make_slack,
    slack,
)

KEY = "command:T0001:U0001:1000000000002.1000000000.0123456789abcdef0123456789abcdef"  # slash_ask.form.txt's


def _ask_payload(slack: Slack) -> dict:
    """What the ack of slash_ask.form.txt queues (its response_url pointed at the fake, as `Slack.command` does)."""
    return {
        "channel": "C0001",
        "user": "U0001",
        "team": "T0001",
        "text": "Who is the CEO of Rosoboronexport?",
        "response_url": slack.fake.response_url("ask"),
    }


@BOTH_ENGINES
def test_an_ask_is_a_job_holding_what_its_worker_needs_and_never_a_token(slack):
    status, _, body = slack.command("slash_ask.form.txt")
    assert (status, body) == (200, b"")  # acknowledged with nothing to show: the answer comes from the job
    [answer] = slack.fake.wait_for("response_url")
    slack.work.wait_idle()
    [row] = state_rows(slack.state, "select key, kind, state, attempts, reply_ts, payload from slack_jobs")
    payload = row.pop("payload")
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert (row, payload) == (
        {"key": KEY, "kind": ASK_KIND, "state": "done", "attempts": 1, "reply_ts": REPLIED_WITHOUT_TS},
        _ask_payload(slack),
    )
    assert "Fake0Verification0Token1" not in json.dumps(payload) and "xoxb" not in json.dumps(payload)
    assert (answer["response_type"], answer["_path"]) == ("ephemeral", "/response_url/ask")
    assert "*Mikheev*" in _block(answer, "answer")["text"]["text"]
    assert job_answer_id(KEY) in _block(answer, "share")["elements"][0]["value"]  # Share finds the stored answer
    assert slack.fake.methods() == ["response_url"]  # no :eyes:, nothing in the channel


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_an_ask_past_max_pending_gets_the_busy_reply_and_nothing_is_queued(make_slack, engine):
    slack = make_slack(engine=engine, max_pending=1)
    held = _Held(slack.reader)
    try:
        slack.event("event_message_im.json", edit=_dm(1))
        slack.fake.wait_for("reactions.add")  # a worker is reading it: the one place is taken
        slack.command("slash_ask.form.txt")
        [busy] = slack.fake.wait_for("response_url")
    finally:
        held.go.set()
    slack.fake.wait_for("chat.postMessage")
    slack.work.wait_idle()
    assert (busy["text"], busy["response_type"], busy["replace_original"]) == (
        "I'm busy answering other questions right now. Please try again in a minute.",
        "ephemeral",
        False,
    )
    assert [job["key"] for job in _jobs(slack.state)] == ["EvDM0001"]
    assert len(slack.fake.bodies("response_url")) == 1


@BOTH_ENGINES
def test_an_ask_whose_reply_was_sent_before_the_crash_is_not_sent_again(slack):
    _leave_running(
        slack, KEY, kind=ASK_KIND, payload=_ask_payload(slack), reply_ts=REPLIED_WITHOUT_TS, created_at=time.time()
    )
    assert _eventually(lambda: _jobs(slack.state)[0]["state"] == "done", timeout_s=10)
    slack.work.wait_idle()
    assert slack.fake.methods() == []
    assert [(job["attempts"], job["reply_ts"]) for job in _jobs(slack.state)] == [(2, REPLIED_WITHOUT_TS)]


@BOTH_ENGINES
def test_an_ask_left_running_by_a_dead_worker_is_answered_once_by_another_runner(slack):
    _leave_running(slack, KEY, kind=ASK_KIND, payload=_ask_payload(slack), created_at=time.time())
    [answer] = slack.fake.wait_for("response_url", timeout_s=10)
    slack.work.wait_idle()
    assert "*Mikheev*" in _block(answer, "answer")["text"]["text"] and answer["response_type"] == "ephemeral"
    assert slack.fake.methods() == ["response_url"]
    assert [(job["state"], job["attempts"], job["reply_ts"]) for job in _jobs(slack.state)] == [
        ("done", 2, REPLIED_WITHOUT_TS)
    ]
    assert slack.state.get_answer(job_answer_id(KEY)).answer == "Mikheev"  # what Share posts


@BOTH_ENGINES
def test_an_ask_older_than_its_response_url_is_not_answered_and_says_so_in_the_log(slack, caplog):
    asked_at = time.time() - RESPONSE_URL_TTL_S - 60
    with caplog.at_level(logging.WARNING, logger="bot.slack.listeners.questions"):
        _leave_running(slack, KEY, kind=ASK_KIND, payload=_ask_payload(slack), created_at=asked_at)
        assert _eventually(lambda: _jobs(slack.state)[0]["state"] == "done", timeout_s=10)
        slack.work.wait_idle()
    assert slack.fake.methods() == []
    [line] = [r.getMessage() for r in caplog.records if "expired" in r.getMessage()]
    message, age_s = line.split(" age_s=")
    assert (message, 1860 <= int(age_s) <= 1870) == (
        f"question not answered, its /ask response_url expired key={KEY}",
        True,
    )
    assert slack.state.get_answer(job_answer_id(KEY)) is None  # not read either


@BOTH_ENGINES
def test_an_ask_claimed_again_is_not_counted_against_the_rate_limit_twice(slack):
    for _ in range(10):  # `rate_limit_per_minute=10`: the dead worker's run was the tenth
        assert slack.state.allow_question("U0001", per_minute=10).allowed
    _leave_running(slack, KEY, kind=ASK_KIND, payload=_ask_payload(slack), created_at=time.time())
    [answer] = slack.fake.wait_for("response_url", timeout_s=10)
    slack.work.wait_idle()
    assert "*Mikheev*" in _block(answer, "answer")["text"]["text"]
