"""The Slack app end to end: signed requests from the fixture files into the real HTTP server, the real store,
retriever and composer, a stub reader, and a fake Slack Web API on loopback that records what the app posts.

The app works after its ack, so tests wait for the fake's recorded calls (with a time-out) before asserting.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from bot.core.confidence import Calibrator
from bot.core.records import Article, Span
from bot.core.retrieve import Retriever
from bot.core.service import AnsweringService
from bot.errors import ConfigError, StoreError
from bot.settings import Settings
from bot.slack.app import create_app, question_text
from bot.slack.jobs import JobRunner
from bot.slack.server import EVENTS_PATH, check_health, create_http_server, create_wsgi_app
from bot.store import SlackStateStore, SQLiteStore, Store
from bot.store.state import SlackState
from tests.conftest import rows, state_rows
from tests.fakes.slack_api import FakeSlackAPI

SECRET = "test-signing-secret"
# Slack's requests as Slack really sends them (fake ids; see tests/data/slack-fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / "data" / "slack-fixtures"

ARTICLES = [
    Article(
        title="Rosoboronexport leadership",
        source="newswire",
        url="https://example.com/news/rosoboronexport",
        published_at="2024-03-01",
        body="Rosoboronexport is the state agency for arms exports. Alexander Mikheev is the CEO of "
        "Rosoboronexport. The agency is based in Moscow.",
    ),
    Article(
        title="Arms exports overview",
        source="reports/exports.txt",
        body="Rostec chief Sergey Chemezov oversees Rosoboronexport. Exports grew last year.",
    ),
    Article(
        title="Staff memo",
        source="intranet",
        body="A memo went out last week. Zorblax signed the memo (for <!channel>, <@U123> & co). "
        "Nobody replied to the memo.",
    ),
]


class StubReader:
    """A reader with `Reader`'s interface that finds fixed words: deterministic, instant, no model."""

    def __init__(self) -> None:
        self.answers = {"Mikheev": 0.9, "Chemezov": 0.4, "Zorblax": 0.8}
        self.error: Exception | None = None
        self.loaded = False

    def load(self) -> None:
        self.loaded = True

    def run(self, question: str, contexts: list[str], top_n: int = 5) -> list[Span]:
        if self.error:
            raise self.error
        spans = []
        for index, context in enumerate(contexts):
            for word, score in self.answers.items():
                at = context.find(word)
                if at >= 0:
                    spans.append(Span(index, at, at + len(word), word, score, score * 10))
        return sorted(spans, key=lambda s: -s.score)[:top_n]


class TrackedWork(ThreadPoolExecutor):
    """The app's worker pool, counting the jobs in flight: `wait_idle()` waits on an event set when none is left,
    so a test can say "the app did its work and posted nothing" without sleeping for a guessed time. The app's
    `work` also waits for the question intake and for the job workers to have nothing left (`also_idle`)."""

    def __init__(self, max_workers: int = 2) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="test-slack-work")
        self._lock, self._pending, self._idle = threading.Lock(), 0, threading.Event()
        self._idle.set()
        self.also_idle: list[Callable[[], bool]] = []

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            self._pending += 1
            self._idle.clear()
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()

    def is_idle(self) -> bool:
        return self._idle.is_set()

    def wait_idle(self, timeout_s: float = 5.0) -> None:
        """Wait until no job is in flight here and every one of `also_idle` says it is idle, all at once."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self._idle.wait(max(0.0, deadline - time.monotonic())), f"the app still had work after {timeout_s} s"
            if all(idle() for idle in self.also_idle) and self._idle.is_set():
                return
            assert time.monotonic() < deadline, f"the app still had work after {timeout_s} s"
            time.sleep(0.01)


@dataclass
class Slack:
    """One running app: its HTTP server, the fake Web API, the store and the stub reader."""

    url: str
    fake: FakeSlackAPI
    store: Store
    state: SlackStateStore
    reader: StubReader
    settings: Settings
    work: TrackedWork
    _server: object = field(repr=False)
    fetches: TrackedWork | None = None  # the /ingest pool

    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict | None = None,
    ) -> tuple[int, dict, bytes]:
        """POST to /slack/events signed as Slack signs: HMAC-SHA256 over `v0:{timestamp}:{raw body}`."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = (
            signature or "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        )
        request = urllib.request.Request(
            self.url + EVENTS_PATH,
            data=body,
            method="POST",
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature,
                **(headers or {}),
            },
        )
        return _open(request)

    def event(self, name: str, *, edit=None, **kwargs) -> tuple[int, dict, bytes]:
        payload = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
        if edit:
            edit(payload)
        return self.post(json.dumps(payload).encode(), "application/json", **kwargs)

    def command(self, name: str, **changes: str) -> tuple[int, dict, bytes]:
        """A slash-command fixture with its response_url pointed at the fake (and any field changed)."""
        form = dict(parse_qsl((FIXTURES / name).read_text(encoding="utf-8"), keep_blank_values=True))
        form.update(response_url=self.fake.response_url(form["command"].strip("/")), **changes)
        return self.post(urlencode(form).encode(), "application/x-www-form-urlencoded")

    def action(self, payload: dict) -> tuple[int, dict, bytes]:
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
        return self.post(body, "application/x-www-form-urlencoded")

    def get(self, path: str) -> tuple[int, dict, bytes]:
        return _open(urllib.request.Request(self.url + path))


def _open(request: urllib.request.Request) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _fixture_json(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def fake_slack():
    with FakeSlackAPI() as fake:
        yield fake


@pytest.fixture
def make_slack(tmp_path, fake_slack, request):
    """Start the app (same WSGI app as `serve`, on waitress, port 0) with settings overrides; stop it after.

    `engine="postgres"` keeps the library and the Slack state in PostgreSQL, as `serve` does for a
    `postgresql://` URL: the run's database (emptied first unless `fresh=False`: a second replica joining the
    first) or `database_url`. `articles` are stored besides the three test articles."""
    running = []
    opened: list = []

    def start(
        *, engine: str = "sqlite", fresh: bool = True, database_url: str | None = None, articles=(), **overrides
    ) -> Slack:
        db_path = tmp_path / "qa.db"
        values = dict(
            db_path=db_path,
            slack_bot_token="xoxb-test",
            slack_signing_secret=SECRET,
            slack_api_url=fake_slack.base_url,
            admin_user_ids=["U0ADMIN"],
            rate_limit_per_minute=10,
            fetch_allow_private=True,
        )  # the test web pages are on loopback
        if engine == "postgres":
            from bot.store import open_state
            from bot.store.postgres import PostgresStore
            from tests.conftest import SLACK_TABLES

            url = database_url or request.getfixturevalue("postgres_url")
            store = PostgresStore(url)
            if fresh:
                store.conn.execute(
                    "truncate articles, sentences, passages, passage_terms, passage_postings restart identity cascade;"
                    f"update corpus_stats set passages = 0, tokens = 0; truncate {SLACK_TABLES} restart identity"
                )
            state = open_state(url)
            opened.extend([store, state])
            values["database_url"] = url
        else:
            store = SQLiteStore(db_path)
            state = SlackState(db_path)
        for article in [*ARTICLES, *articles]:
            store.add_article(article)
        reader = StubReader()
        service = AnsweringService(
            store=store,
            retriever=Retriever(store, top_k=5),
            reader=reader,
            calibrator=Calibrator.raw(answer_threshold=0.5),
        )
        settings = Settings(_env_file=None, **{**values, **overrides})
        work, fetches, intake = TrackedWork(), TrackedWork(), TrackedWork(max_workers=1)
        jobs = JobRunner(threads=2, lease_s=settings.job_lease_s, poll_s=0.2)
        app = create_app(
            settings, service, store=state, executor=work, fetch_executor=fetches, jobs=jobs, intake_executor=intake
        )
        work.also_idle = [intake.is_idle, lambda: jobs.is_idle() and state.unfinished_jobs() == 0]
        wsgi = create_wsgi_app(
            app,
            signing_secret=SECRET,
            health=lambda: check_health(settings.database, min_free_mb=settings.min_free_mb),
        )
        server = create_http_server(wsgi, host="127.0.0.1", port=0, threads=4)
        thread = threading.Thread(target=server.run, name="test-slack-server", daemon=True)
        thread.start()
        slack = Slack(
            f"http://127.0.0.1:{server.effective_port}",
            fake_slack,
            store,
            state,
            reader,
            settings,
            work,
            server,
            fetches,
        )
        running.append((server, thread, [intake, jobs, work]))
        running.append((None, None, [fetches]))
        return slack

    yield start
    for server, thread, pools in running:
        if server is not None:
            _stop_waitress(server, thread)
        for pool in pools:  # finish work started by the test while the fake Web API still answers
            if isinstance(pool, JobRunner):
                pool.stop(timeout_s=30)
            else:
                pool.shutdown(wait=True)
    for opened_one in opened:
        opened_one.close()


def _stop_waitress(server, thread: threading.Thread) -> None:
    """Let the request workers finish (they wake the loop when done), then close every socket from inside the
    server's own loop: closing them from this thread would race its select()."""
    from waitress import wasyncore

    server.task_dispatcher.shutdown()
    try:
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
    except OSError:
        # its wake-up pipe is already closed (seen once in CI under heavy load): the loop has nothing left to wake,
        # so close what remains from here
        wasyncore.close_all(server._map, ignore_all=True)
    thread.join(timeout=30)


def _eventually(check, *, timeout_s: float = 5.0):
    """The first truthy result of `check()`, polled until `timeout_s` (the app records state after posting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


@pytest.fixture
def slack(make_slack, request) -> Slack:
    """The app on SQLite, or on the engine a test is parametrized with (`@BOTH_ENGINES`)."""
    return make_slack(engine=getattr(request, "param", "sqlite"))


# The app on each engine in turn: library and Slack state in one SQLite file, then both in PostgreSQL.
BOTH_ENGINES = pytest.mark.parametrize("slack", ["sqlite", "postgres"], indirect=True)


def _article_id(slack: Slack, title: str) -> int:
    return rows(slack.store, "select id from articles where title = ?", [title])[0]["id"]


def _all_text(body: dict) -> str:
    """Everything a posted message would show: fallback text plus every block, as one JSON string."""
    return json.dumps({"text": body.get("text"), "blocks": body.get("blocks")}, ensure_ascii=False)


def _block(body: dict, block_id: str) -> dict:
    return next(b for b in body["blocks"] if b.get("block_id") == block_id)


# Plumbing: health, verification, url_verification ------------------------------------------------------------


def test_healthz_answers_200(slack):
    status, _, body = slack.get("/healthz")
    details = json.loads(body)
    assert (status, details["ok"], details["database"], details["disk_free_mb"] >= 100) == (200, True, "ok", True)


def test_unknown_path_is_404(slack):
    assert slack.get("/nope")[0] == 404


def test_url_verification_echoes_challenge(slack):
    status, _, body = slack.event("url_verification.json")
    assert (status, json.loads(body)) == (200, {"challenge": _fixture_json("url_verification.json")["challenge"]})


def test_bad_signature_is_401_and_nothing_is_posted(slack):
    status, _, _ = slack.event("event_app_mention_channel.json", signature="v0=" + "0" * 64)
    slack.work.wait_idle()
    assert (status, slack.fake.methods()) == (401, [])


def test_stale_timestamp_is_401_even_when_correctly_signed(slack):
    status, _, _ = slack.event("event_app_mention_channel.json", timestamp=int(time.time()) - 400)
    slack.work.wait_idle()
    assert (status, slack.fake.methods()) == (401, [])


# Mentions and DMs ---------------------------------------------------------------------------------------------


@BOTH_ENGINES
def test_mention_in_channel_answers_in_a_thread_with_the_cited_sentence(slack):
    status, _, body = slack.event("event_app_mention_channel.json")
    assert (status, body) == (200, b"")
    [reply] = slack.fake.wait_for("chat.postMessage")
    assert (reply["channel"], reply["thread_ts"]) == ("C0001", "1700000000.000100")
    assert _block(reply, "answer")["text"]["text"] == ("*Mikheev*\n>Alexander *Mikheev* is the CEO of Rosoboronexport.")
    assert _block(reply, "source")["elements"][0]["text"] == (
        "<https://example.com/news/rosoboronexport|Rosoboronexport leadership> — newswire, 2024-03-01 · confidence 90%"
    )
    assert _block(reply, "alternatives")["elements"][0]["text"] == (
        "Also possible: *Chemezov* — Arms exports overview (confidence 40%)"
    )
    buttons = _block(reply, "feedback")["elements"]
    assert [b["action_id"] for b in buttons] == ["feedback_up", "feedback_down"]
    assert "Mikheev" in reply["text"]  # plain-text fallback for notifications
    slack.fake.wait_for("reactions.remove")
    assert slack.fake.methods() == ["reactions.add", "chat.postMessage", "reactions.remove"]
    eyes = {"channel": "C0001", "timestamp": "1700000000.000100", "name": "eyes", "team_id": "T0001"}
    assert slack.fake.bodies("reactions.add") == slack.fake.bodies("reactions.remove") == [eyes]


def test_a_reply_slack_rate_limits_is_posted_after_its_retry_after_not_lost(slack):
    slack.fake.rate_limit("chat.postMessage", times=1)
    slack.event("event_app_mention_channel.json")
    posts = slack.fake.wait_for("chat.postMessage", 2, timeout_s=10)
    assert posts[0] == posts[1] and "Mikheev" in posts[1]["text"]  # the same answer, sent again after 429
    slack.fake.wait_for("reactions.remove")
    assert slack.fake.methods() == ["reactions.add", "chat.postMessage", "chat.postMessage", "reactions.remove"]


def test_mention_inside_a_thread_replies_to_the_thread_root(slack):
    slack.reader.answers = {"Mikheev": 0.9}
    slack.event("event_app_mention_in_thread.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    assert (reply["channel"], reply["thread_ts"]) == ("C0001", "1700000000.000100")


@BOTH_ENGINES
def test_dm_is_answered_in_its_thread(slack):
    slack.event("event_message_im.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    assert (reply["channel"], reply["thread_ts"]) == ("D0001", "1700000100.000400")
    assert "*Mikheev*" in _block(reply, "answer")["text"]["text"]


def test_question_text_drops_the_bot_mention_and_slack_escaping():
    assert question_text("<@U0BOT> Is AT&amp;T &lt;big&gt;?  ", bot_user_id="U0BOT") == "Is AT&T <big>?"
    assert question_text("<@U0BOT|qa-bot> hi <@U0001>", bot_user_id="U0BOT") == "hi <@U0001>"


@BOTH_ENGINES
def test_retried_event_is_answered_once(slack):
    first = slack.event("event_app_mention_channel.json")
    retry = slack.event(
        "event_app_mention_channel.json", headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    slack.fake.wait_for("chat.postMessage")
    slack.work.wait_idle()
    assert (first[0], retry[0], retry[1].get("X-Slack-No-Retry")) == (200, 200, "1")
    assert len(slack.fake.bodies("chat.postMessage")) == 1


def test_bot_messages_are_ignored(slack):
    assert slack.event("event_bot_message.json")[0] == 200
    assert slack.event("event_bot_message_classic.json")[0] == 200
    slack.event("event_message_im.json")  # a person's DM afterwards: the only thing answered
    slack.fake.wait_for("chat.postMessage")
    slack.work.wait_idle()
    assert [b["channel"] for b in slack.fake.bodies("chat.postMessage")] == ["D0001"]


@BOTH_ENGINES
def test_edited_question_updates_the_reply(slack):
    slack.event("event_message_im.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    reply_ts = _eventually(lambda: slack.state.reply_to("D0001", "1700000100.000400")).reply_ts
    slack.reader.answers = {"Chemezov": 0.7}
    slack.event("event_message_changed.json")
    [update] = slack.fake.wait_for("chat.update")
    assert (update["channel"], update["ts"]) == ("D0001", reply_ts)
    assert "*Chemezov*" in _block(update, "answer")["text"]["text"]
    assert len(slack.fake.bodies("chat.postMessage")) == 1


@BOTH_ENGINES
def test_deleted_question_deletes_the_reply(slack):
    slack.event("event_message_im.json")
    slack.fake.wait_for("chat.postMessage")
    reply_ts = _eventually(lambda: slack.state.reply_to("D0001", "1700000100.000400")).reply_ts
    slack.event("event_message_deleted.json")
    assert slack.fake.wait_for("chat.delete") == [{"channel": "D0001", "ts": reply_ts, "team_id": "T0001"}]
    assert _eventually(lambda: slack.state.reply_to("D0001", "1700000100.000400") is None)


# What answers say ---------------------------------------------------------------------------------------------


def test_stored_mentions_and_channel_pings_are_quoted_safely(slack):
    def ask_about_memo(payload):
        payload["event"]["text"] = "<@U0BOT> Who signed the memo?"

    slack.event("event_app_mention_channel.json", edit=ask_about_memo)
    [reply] = slack.fake.wait_for("chat.postMessage")
    shown = _all_text(reply)
    assert _block(reply, "answer")["text"]["text"] == (
        "*Zorblax*\n>*Zorblax* signed the memo (for &lt;!channel&gt;, &lt;@U123&gt; &amp; co)."
    )
    assert "&lt;!channel&gt;" in reply["text"]
    assert "<!channel>" not in shown and "<@U123>" not in shown


def test_no_confident_answer_says_so_and_lists_what_was_searched(slack):
    slack.reader.answers = {"Mikheev": 0.1}  # under the hedge threshold (0.2) too
    slack.event("event_app_mention_channel.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    assert _block(reply, "no_answer")["text"]["text"] == (
        "I could not find a confident answer to “Who is the CEO of Rosoboronexport?”.\n"
        "I searched these articles:\n• Rosoboronexport leadership\n• Arms exports overview"
    )
    assert not any(b.get("block_id") == "feedback" for b in reply["blocks"])


def test_an_unsure_answer_is_a_hedge_in_the_thread_with_its_sentence(slack):
    slack.reader.answers = {"Mikheev": 0.3}  # between the hedge (0.2) and answer (0.5) thresholds
    slack.event("event_app_mention_channel.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    assert reply["thread_ts"] == "1700000000.000100"
    assert _block(reply, "tentative")["text"]["text"] == (
        "I'm not sure. The closest I found:\n*Mikheev*\n>Alexander *Mikheev* is the CEO of Rosoboronexport."
    )
    assert [b["block_id"] for b in reply["blocks"]] == ["tentative", "source", "feedback"]


def test_reader_failure_becomes_a_visible_apology_with_a_logged_reference(slack, caplog):
    slack.reader.error = RuntimeError("model exploded")
    with caplog.at_level(logging.ERROR, logger="bot.slack.app"):
        slack.event("event_app_mention_channel.json")
        [reply] = slack.fake.wait_for("chat.postMessage")
    assert reply["thread_ts"] == "1700000000.000100"
    [record] = [r for r in caplog.records if r.message.startswith("answering failed")]
    reference = record.message.split("reference=")[1].split()[0]
    assert reply["text"] == (
        f"Sorry, something went wrong while answering (reference {reference}). The details are in the bot's log."
    )
    assert record.exc_info[0] is RuntimeError


def test_a_failure_outside_the_reader_still_reaches_the_user(slack, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise StoreError("database is locked")

    monkeypatch.setattr(slack.state, "allow_question", broken)
    with caplog.at_level(logging.ERROR, logger="bot.slack.jobs"):
        slack.command("slash_ask.form.txt")
        [apology] = slack.fake.wait_for("response_url")
    [record] = [r for r in caplog.records if r.message.startswith("job failed key=command:T0001:U0001:")]
    reference = record.message.split("reference=")[1]
    assert (apology["text"], apology["response_type"], apology["replace_original"]) == (
        f"Sorry, something went wrong while answering (reference {reference}). The details are in the bot's log.",
        "ephemeral",
        False,
    )
    assert record.exc_info[0] is StoreError and " kind=ask " in record.message


def test_missing_credentials_are_config_errors(tmp_path, fake_slack):
    store = SQLiteStore(tmp_path / "qa.db")
    service = AnsweringService(
        store=store, retriever=Retriever(store), reader=StubReader(), calibrator=Calibrator.raw(answer_threshold=0.5)
    )
    no_token = Settings(_env_file=None, db_path=tmp_path / "qa.db", slack_signing_secret=SECRET)
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is not set"):
        create_app(no_token, service)
    no_secret = Settings(
        _env_file=None, db_path=tmp_path / "qa.db", slack_bot_token="xoxb-test", slack_api_url=fake_slack.base_url
    )
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
        create_app(no_secret, service)


def test_reaction_errors_do_not_stop_the_answer(slack):
    slack.fake.fail("reactions.add", "missing_scope")
    slack.event("event_app_mention_channel.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    assert "*Mikheev*" in _block(reply, "answer")["text"]["text"]
    assert slack.fake.bodies("reactions.remove") == []


def test_too_many_questions_get_a_polite_limit_message(make_slack, engine):
    slack = make_slack(engine=engine, rate_limit_per_minute=1)
    slack.event("event_message_im.json")
    slack.fake.wait_for("chat.postMessage")

    def second_question(payload):
        payload["event_id"], payload["event"]["ts"] = "Ev0000000099", "1700000150.000700"

    slack.event("event_message_im.json", edit=second_question)
    [notice] = slack.fake.wait_for("chat.postEphemeral")
    assert (notice["channel"], notice["user"], notice["thread_ts"]) == ("D0001", "U0001", "1700000150.000700")
    assert notice["text"].startswith("You have asked 1 questions in the last minute")
    assert len(slack.fake.bodies("chat.postMessage")) == 1


def test_question_text_is_not_logged_at_info(slack, caplog):
    with caplog.at_level(logging.INFO):
        slack.event("event_app_mention_channel.json")
        slack.fake.wait_for("chat.postMessage")
        slack.work.wait_idle()
    assert any("question kind=mention" in r.getMessage() for r in caplog.records)
    assert not [
        r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and "Rosoboronexport?" in r.getMessage()
    ]


# Slash commands -----------------------------------------------------------------------------------------------


@BOTH_ENGINES
def test_ask_answers_ephemerally_and_share_posts_it_in_the_channel(slack):
    status, _, body = slack.command("slash_ask.form.txt")
    assert (status, body) == (200, b"")
    [ephemeral] = slack.fake.wait_for("response_url")
    assert (ephemeral["_path"], ephemeral["response_type"]) == ("/response_url/ask", "ephemeral")
    assert "*Mikheev*" in _block(ephemeral, "answer")["text"]["text"]
    [share] = _block(ephemeral, "share")["elements"]
    assert share["action_id"] == "share_answer"
    assert slack.fake.bodies("chat.postMessage") == []

    click = _fixture_json("block_actions_feedback.json")
    click["actions"] = [
        {**click["actions"][0], "action_id": "share_answer", "block_id": "share", "value": share["value"]}
    ]
    click["container"] = {
        "type": "message",
        "message_ts": "1700000006.000300",
        "channel_id": "C0001",
        "is_ephemeral": True,
    }
    del click["message"]  # Slack sends no message body for clicks on ephemeral messages
    click["response_url"] = slack.fake.response_url("share")
    assert slack.action(click)[0] == 200
    [shared] = slack.fake.wait_for("chat.postMessage")
    assert shared["channel"] == "C0001" and "thread_ts" not in shared
    assert _block(shared, "asked_by")["elements"][0]["text"] == ("<@U0001> asked: “Who is the CEO of Rosoboronexport?”")
    assert _block(shared, "answer") == _block(ephemeral, "answer")
    assert not any(b.get("block_id") == "share" for b in shared["blocks"])
    confirmation = slack.fake.wait_for("response_url", 2)[1]
    assert (confirmation["text"], confirmation["replace_original"]) == ("Shared in <#C0001>.", True)


def test_ask_without_a_question_shows_usage(slack):
    status, _, body = slack.command("slash_ask.form.txt", text="  ")
    assert status == 200
    assert json.loads(body)["text"] == (
        "Usage: /ask &lt;question&gt;, for example: /ask Who is the CEO of Rosoboronexport?"
    )


@BOTH_ENGINES
def test_ingest_pasted_text_as_admin_stores_it(slack):
    text = "Ferry news\nThe ferry ticket costs 12 dollars. The captain is Ingrid Holm."
    status, _, _ = slack.command("slash_ingest.form.txt", text=text)
    assert status == 200
    [report] = slack.fake.wait_for("response_url")
    assert report["text"] == ("Ingested “Ferry news” (Slack /ingest by U0ADMIN): 1 added, 0 updated, 0 unchanged.")
    [row] = rows(slack.store, "select title, source, body from articles where title = 'Ferry news'")
    assert row == {
        "title": "Ferry news",
        "source": "Slack /ingest by U0ADMIN",
        "body": "The ferry ticket costs 12 dollars. The captain is Ingrid Holm.",
    }


@pytest.fixture
def web_page():
    """A loopback web server with one article page at /ferry.html."""
    html = (
        b"<html><head><title>Harbour ferry prices</title></head><body><nav>Home | News</nav><article>"
        b"<h1>Harbour ferry prices</h1><p>The harbour ferry will cost 12 dollars from May, the council said on "
        b"Monday after a long debate about the budget of the town.</p><p>Captain Ingrid Holm said the new "
        b"boats are faster and quieter than the old ones, and that the crossing now takes twenty minutes."
        b"</p></article><footer>Contact us</footer></body></html>"
    )

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/ferry.html"
    server.shutdown()
    server.server_close()


def test_ingest_url_as_admin_fetches_and_stores_the_page(slack, web_page):
    slack.command("slash_ingest.form.txt", text=web_page)
    [report] = slack.fake.wait_for("response_url", timeout_s=10)
    assert report["text"] == (f"Ingested “Harbour ferry prices” ({web_page}): 1 added, 0 updated, 0 unchanged.")
    row = next(slack.store.db.query("select source, url, body from articles where url = ?", [web_page]))
    assert (row["source"], "12 dollars" in row["body"], "Contact us" in row["body"]) == ("127.0.0.1", True, False)


def test_ingest_of_a_private_address_is_refused_by_default(make_slack, web_page):
    slack = make_slack(fetch_allow_private=False)
    slack.command("slash_ingest.form.txt", text=web_page)
    [report] = slack.fake.wait_for("response_url", timeout_s=10)
    assert report["text"] == (
        f"Nothing was stored from {web_page}: 127.0.0.1 is a private or local address "
        "(127.0.0.1); links inside the bot's own network are refused unless "
        "QABOT_FETCH_ALLOW_PRIVATE=true"
    )
    assert slack.store.article_count() == len(ARTICLES)


def test_ingest_of_an_unreachable_url_reports_why(slack):
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slack.command("slash_ingest.form.txt", text=f"http://127.0.0.1:{port}/page.html")
    [report] = slack.fake.wait_for("response_url")
    assert report["text"].startswith(
        f"Nothing was stored from http://127.0.0.1:{port}/page.html: could not reach 127.0.0.1:"
    )


def test_ingest_of_a_title_without_body_reports_why(slack):
    slack.command("slash_ingest.form.txt", text="Just a title")
    [report] = slack.fake.wait_for("response_url")
    assert report["text"] == (
        "Nothing was stored from the pasted text: no body: only a title line ('Just a title') was found"
    )


def test_ingest_by_a_non_admin_is_refused_and_stores_nothing(slack):
    before = slack.store.article_count()
    status, _, body = slack.command("slash_ingest.form.txt", user_id="U0001", text="Title\nSome body text.")
    assert status == 200
    assert json.loads(body)["text"].startswith("Only admins can add articles with /ingest, so nothing was stored.")
    slack.work.wait_idle()
    assert (slack.store.article_count(), slack.fake.methods()) == (before, [])


def test_ingest_without_arguments_shows_usage(slack):
    status, _, body = slack.command("slash_ingest.form.txt", text="")
    assert status == 200
    assert json.loads(body)["text"].startswith("Usage: /ingest &lt;https://")


def test_qa_help_shows_the_help_text_escaped(slack):
    status, _, body = slack.command("slash_ask.form.txt", command="/qa-help", text="")
    text = json.loads(body)["text"]
    assert status == 200
    assert text.startswith("Ask me a question about the stored articles")
    assert "/ingest &lt;url or pasted text&gt;" in text


# Buttons ------------------------------------------------------------------------------------------------------


@BOTH_ENGINES
def test_feedback_click_is_stored_with_question_answer_and_article(slack):
    slack.event("event_app_mention_channel.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    reply_ts = _eventually(lambda: slack.state.reply_to("C0001", "1700000000.000100")).reply_ts
    click = _fixture_json("block_actions_feedback.json")  # value "up" without an id: found through the reply ts
    click["container"]["message_ts"] = click["message"]["ts"] = reply_ts
    click["response_url"] = slack.fake.response_url("feedback")
    assert slack.action(click)[0] == 200
    [thanks] = slack.fake.wait_for("response_url")
    assert (thanks["text"], thanks["replace_original"]) == (
        "Thanks, your :+1: was recorded. It helps us improve the answers.",
        False,
    )
    [row] = slack.state.feedback()
    article_id = _article_id(slack, "Rosoboronexport leadership")
    assert {k: row[k] for k in ("user", "vote", "question", "answer", "article_id", "channel", "message_ts")} == {
        "user": "U0001",
        "vote": "up",
        "question": "Who is the CEO of Rosoboronexport?",
        "answer": "Mikheev",
        "article_id": article_id,
        "channel": "C0001",
        "message_ts": reply_ts,
    }
    assert row["clicked_at"]


@BOTH_ENGINES
def test_feedback_button_value_names_its_answer(slack):
    slack.event("event_app_mention_channel.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    down = _block(reply, "feedback")["elements"][1]
    click = _fixture_json("block_actions_feedback.json")
    click["actions"] = [{**click["actions"][0], "action_id": "feedback_down", "value": down["value"]}]
    click["response_url"] = slack.fake.response_url("feedback")
    slack.action(click)
    slack.fake.wait_for("response_url")
    assert [(r["vote"], r["answer"]) for r in slack.state.feedback()] == [("down", "Mikheev")]


@BOTH_ENGINES
def test_an_answered_question_is_recorded_for_the_report(slack):
    slack.event("event_app_mention_channel.json")
    slack.fake.wait_for("chat.postMessage")
    _eventually(lambda: slack.state.reply_to("C0001", "1700000000.000100"))
    [row] = state_rows(
        slack.state,
        'select question, outcome, cited, searched, channel, team, "user", terms, asked_at from slack_answers',
    )
    article_id = _article_id(slack, "Rosoboronexport leadership")
    assert abs(row.pop("asked_at") - time.time()) < 60
    cited = row.pop("cited")  # a JSON list in SQLite, an array in PostgreSQL
    assert (json.loads(cited) if isinstance(cited, str) else cited)[0] == article_id  # the answer's article first
    assert row == {
        "question": "Who is the CEO of Rosoboronexport?",
        "outcome": "confident",
        "searched": "*",
        "channel": "C0001",
        "team": "T0001",
        "user": "U0001",
        "terms": "ceo rosoboronexport",
    }


@BOTH_ENGINES
def test_buttons_of_an_answer_past_retention_say_it_has_expired(slack):
    slack.event("event_app_mention_channel.json")
    [reply] = slack.fake.wait_for("chat.postMessage")
    _eventually(lambda: slack.state.reply_to("C0001", "1700000000.000100"))
    assert slack.state.forget_questions(before=time.time() + 1) == 1
    assert slack.state.reply_to("C0001", "1700000000.000100") is None
    down = _block(reply, "feedback")["elements"][1]
    click = _fixture_json("block_actions_feedback.json")
    click["actions"] = [{**click["actions"][0], "action_id": "feedback_down", "value": down["value"]}]
    click["response_url"] = slack.fake.response_url("feedback")
    slack.action(click)
    [expired] = slack.fake.wait_for("response_url")
    assert (expired["text"], expired["response_type"]) == (
        "That answer is no longer kept, so your vote was not recorded. Ask again to get a fresh answer.",
        "ephemeral",
    )
    assert slack.state.feedback() == []


# /qa-admin: list and delete, admins only ------------------------------------------------------------------------


def _admin(slack: Slack, text: str, *, user: str = "U0ADMIN", trigger: str) -> tuple[int, bytes]:
    status, _, body = slack.command(
        "slash_ingest.form.txt", command="/qa-admin", text=text, user_id=user, trigger_id=trigger
    )
    return status, body


def _click(slack: Slack, button: dict, *, user: str, trigger: str) -> None:
    click = _fixture_json("block_actions_feedback.json")
    click["user"] = {**click["user"], "id": user}
    click["actions"] = [
        {**click["actions"][0], "action_id": button["action_id"], "block_id": "admin_delete", "value": button["value"]}
    ]
    click["container"] = {
        "type": "message",
        "message_ts": "1700000009.000100",
        "channel_id": "C0001",
        "is_ephemeral": True,
    }
    del click["message"]
    click["trigger_id"] = trigger
    click["response_url"] = slack.fake.response_url("admin")
    assert slack.action(click)[0] == 200


def _article_ids(slack: Slack) -> list[int]:
    return [row["id"] for row in rows(slack.store, "select id from articles order by id")]


@BOTH_ENGINES
def test_qa_admin_list_shows_matching_articles_with_links(slack):
    assert _admin(slack, "list rosoboron", trigger="t1") == (200, b"")
    [listing] = slack.fake.wait_for("response_url")
    assert listing["response_type"] == "ephemeral"
    assert listing["text"] == (
        "Stored articles whose title, source or url contains “rosoboron”, oldest first:\n"
        "#1 <https://example.com/news/rosoboronexport|Rosoboronexport leadership> (newswire, 2024-03-01)"
    )


@BOTH_ENGINES
def test_qa_admin_list_without_text_lists_everything_escaped(slack):
    _admin(slack, "list", trigger="t1")
    [listing] = slack.fake.wait_for("response_url")
    assert listing["text"].splitlines() == [
        "Stored articles, oldest first:",
        "#1 <https://example.com/news/rosoboronexport|Rosoboronexport leadership> (newswire, 2024-03-01)",
        "#2 Arms exports overview (reports/exports.txt)",
        "#3 Staff memo (intranet)",
    ]


@BOTH_ENGINES
def test_qa_admin_delete_asks_then_the_button_deletes_through_the_library(slack):
    [url] = [a.url for a in ARTICLES if a.url]
    _admin(slack, f"delete <{url}>", trigger="t1")
    [question] = slack.fake.wait_for("response_url")
    assert question["text"] == (
        "Delete article #1 “Rosoboronexport leadership” (newswire) with its 1 passages? Answers will no longer cite it."
    )
    delete, cancel = _block(question, "admin_delete")["elements"]
    assert (delete["action_id"], delete["value"], delete["style"], cancel["action_id"]) == (
        "admin_delete",
        "1",
        "danger",
        "admin_cancel",
    )
    assert _article_ids(slack) == [1, 2, 3]  # asking changes nothing
    _click(slack, delete, user="U0ADMIN", trigger="c1")
    done = slack.fake.wait_for("response_url", 2)[1]
    assert (done["text"], done["replace_original"]) == (
        "Deleted article #1 “Rosoboronexport leadership” (newswire).",
        True,
    )
    assert _article_ids(slack) == [2, 3]
    counts = [
        rows(slack.store, f"select count(*) as n from {table} where article_id = 1")[0]["n"]
        for table in ("sentences", "passages")
    ]
    assert counts == [0, 0]
    assert slack.store.search('"mikheev"', limit=5) == []


@BOTH_ENGINES
def test_qa_admin_cancel_deletes_nothing(slack):
    _admin(slack, "delete 2", trigger="t1")
    [question] = slack.fake.wait_for("response_url")
    _click(slack, _block(question, "admin_delete")["elements"][1], user="U0ADMIN", trigger="c1")
    done = slack.fake.wait_for("response_url", 2)[1]
    assert (done["text"], _article_ids(slack)) == ("Nothing was deleted.", [1, 2, 3])


@BOTH_ENGINES
def test_qa_admin_delete_of_an_unknown_article_says_so(slack):
    _admin(slack, "delete 99", trigger="t1")
    [reply] = slack.fake.wait_for("response_url")
    assert reply["text"] == (
        "No article with id or url “99” is stored, so nothing was deleted. Find it with /qa-admin list &lt;text&gt;."
    )
    assert _article_ids(slack) == [1, 2, 3]


@BOTH_ENGINES
def test_qa_admin_by_a_non_admin_is_refused_like_ingest_and_changes_nothing(slack):
    for index, text in enumerate(["list", "delete 1", ""]):
        status, body = _admin(slack, text, user="U0001", trigger=f"t{index}")
        assert (status, json.loads(body)["text"]) == (
            200,
            "Only admins can use /qa-admin, so nothing was changed. Ask an admin, or use /ask to query what is "
            "already stored.",
        )
    slack.work.wait_idle()
    assert (slack.fake.methods(), _article_ids(slack)) == ([], [1, 2, 3])


@BOTH_ENGINES
def test_a_delete_click_from_a_non_admin_is_refused_and_deletes_nothing(slack):
    _click(slack, {"action_id": "admin_delete", "value": "1"}, user="U0001", trigger="c1")
    [refusal] = slack.fake.wait_for("response_url")
    assert refusal["text"].startswith("Only admins can use /qa-admin, so nothing was changed.")
    slack.work.wait_idle()
    assert _article_ids(slack) == [1, 2, 3]


def test_qa_admin_without_a_verb_shows_usage(slack):
    status, body = _admin(slack, "purge everything", trigger="t1")
    assert (status, json.loads(body)["text"].startswith("Usage: /qa-admin list [text]")) == (200, True)


# The manifest asks for exactly what the app uses ----------------------------------------------------------------


def test_manifest_lists_the_events_scopes_and_commands_the_app_handles(slack):
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((Path(__file__).resolve().parents[1] / "manifest.yaml").read_text(encoding="utf-8"))
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == [
        "app_mention",
        "message.channels",
        "message.groups",
        "message.im",
    ]
    assert manifest["oauth_config"]["scopes"]["bot"] == [
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "chat:write",
        "commands",
        "im:history",
        "reactions:write",
    ]
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == ["/ask", "/ingest", "/qa-help", "/qa-admin", "/qa-report"]
    for command in commands:  # Bolt answers 404 for a command without a listener; each use has its own trigger
        status, _, body = slack.command("slash_ask.form.txt", command=command, text="", trigger_id=f"t{command}")
        assert (command, status, bool(json.loads(body)["text"])) == (command, 200, True)


def _channel_message(text: str, *, ts: str, thread_ts: str | None, event_id: str) -> Callable[[dict], None]:
    """Turn the mention fixture into a plain channel message (a thread reply when `thread_ts` is given)."""

    def edit(payload: dict) -> None:
        payload["event_id"] = event_id
        payload["event"].update(type="message", channel_type="channel", text=text, ts=ts, event_ts=ts)
        payload["event"].pop("blocks")
        if thread_ts:
            payload["event"]["thread_ts"] = thread_ts

    return edit


@BOTH_ENGINES
def test_a_reply_in_a_thread_the_bot_answered_is_a_follow_up_with_the_earlier_question(slack):
    slack.reader.answers = {"Mikheev": 0.9, "Moscow": 0.9}
    slack.event("event_app_mention_channel.json")
    slack.work.wait_idle()  # answered, and the reply remembered
    slack.reader.answers = {"Moscow": 0.9}
    follow_up = _channel_message(
        "Where is it based?", ts="1700000005.000100", thread_ts="1700000000.000100", event_id="Ev0000000101"
    )
    status, _, _ = slack.event("event_app_mention_channel.json", edit=follow_up)
    _, reply = slack.fake.wait_for("chat.postMessage", 2)
    assert (status, reply["channel"], reply["thread_ts"]) == (200, "C0001", "1700000000.000100")
    assert _block(reply, "answer")["text"]["text"] == "*Moscow*\n>The agency is based in *Moscow*."
    slack.work.wait_idle()  # the follow-up's reply is remembered too
    context = slack.state.thread_context("C0001", "1700000000.000100")
    assert context.questions == ("Who is the CEO of Rosoboronexport?", "Where is it based?")
    assert len(context.article_ids) == 1  # both answers cite "Rosoboronexport leadership"


@BOTH_ENGINES
def test_other_channel_chatter_and_threads_the_bot_never_answered_get_nothing(slack):
    chatter = _channel_message("Where is it based?", ts="1700000006.000100", thread_ts=None, event_id="Ev0000000102")
    stranger = _channel_message(
        "Where is it based?", ts="1700000007.000100", thread_ts="1700000003.000100", event_id="Ev0000000103"
    )
    for edit in (chatter, stranger):
        assert slack.event("event_app_mention_channel.json", edit=edit)[0] == 200
    slack.event("event_message_im.json")  # a DM after them: once it is answered, they were handled
    [reply] = slack.fake.wait_for("chat.postMessage")
    slack.work.wait_idle()
    assert reply["channel"].startswith("D") and len(slack.fake.bodies("chat.postMessage")) == 1


@BOTH_ENGINES
def test_a_thread_reply_that_mentions_the_bot_is_answered_once(slack):
    slack.event("event_app_mention_channel.json")
    slack.work.wait_idle()
    text = "<@U0BOT> Who is the CEO of Rosoboronexport?"
    as_message = _channel_message(text, ts="1700000008.000100", thread_ts="1700000000.000100", event_id="Ev0000000104")

    def as_mention(payload: dict) -> None:
        payload["event_id"] = "Ev0000000105"
        payload["event"].update(text=text, ts="1700000008.000100", thread_ts="1700000000.000100")

    slack.event("event_app_mention_channel.json", edit=as_message)  # Slack sends both events for one reply
    slack.event("event_app_mention_channel.json", edit=as_mention)
    slack.fake.wait_for("chat.postMessage", 2)
    slack.event("event_message_im.json")  # the sentinel: answered third, so nothing else came before it
    third = slack.fake.wait_for("chat.postMessage", 3)[2]
    slack.work.wait_idle()
    assert third["channel"].startswith("D") and len(slack.fake.bodies("chat.postMessage")) == 3
