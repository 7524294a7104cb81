"""Who may see what, end to end (issue 13's leak tests): a `legal` article never reaches #general, in Slack, in
`ask --json` or in the INFO log; #legal and an allowed DM get it; sharing into #general is refused; requests of
another workspace get nothing posted and nothing stored. Same harness as test_slack_app: real HTTP, signed
requests, the fake Slack Web API; the app's tests run on SQLite and again on PostgreSQL (library and state)."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

import bot.core.service
from bot.cli import cli
from bot.core.records import Article
from tests.conftest import rows, state_rows
from tests.fakes.reader import FakeReader
from tests.test_slack_app import (  # noqa: F401 (fixtures)
    _all_text,
    _block,
    _fixture_json,
    fake_slack,
    make_slack,
)

ACCESS_YAML = """\
collections:
  general: {channels: "*", dms: true}
  legal:   {channels: [C0LEGAL1], dms: [U0ALICE]}
"""
MEMO = Article(
    title="Vantorre acquisition memo",
    body="Vantorre Holdings will buy the old mill in June. The lawyer for the Vantorre deal is Odalys Brenn.",
    source="memos/vantorre.txt",
    collection="legal",
)
QUESTION = "Who is the lawyer for the Vantorre deal?"
# what would betray the memo (the question's own words are echoed in "nothing found", so they are no trace)
TRACES = ("Brenn", "Odalys", "vantorre.txt", "acquisition memo", "Holdings", "old mill")


def _no_trace(text: str) -> bool:
    return not any(trace.lower() in text.lower() for trace in TRACES)


@pytest.fixture(params=["sqlite", "postgres"])
def scoped(make_slack, tmp_path, request):  # noqa: F811
    """The Slack app with the legal memo stored and the access file in place, on each engine in turn."""
    access = tmp_path / "access.yaml"
    access.write_text(ACCESS_YAML, encoding="utf-8")
    slack = make_slack(engine=request.param, articles=[MEMO], access_file=access)
    slack.reader.answers = {"Brenn": 0.9, "Mikheev": 0.9}
    return slack


def _ask_in(channel: str, *, user: str = "U0001", event_id: str = "Ev1", channel_type: str | None = None):
    def edit(payload):
        payload["event_id"] = event_id
        payload["event"].update(channel=channel, user=user, text=f"<@U0BOT> {QUESTION}")
        if channel_type:
            payload["event"]["channel_type"] = channel_type
            payload["event"]["text"] = QUESTION

    return edit


def test_a_question_in_general_about_a_legal_fact_gets_nothing_and_no_trace(scoped, caplog):
    caplog.set_level(logging.INFO)
    scoped.event("event_app_mention_channel.json", edit=_ask_in("C0001"))
    [reply] = scoped.fake.wait_for("chat.postMessage")
    scoped.work.wait_idle()
    assert _block(reply, "no_answer")["text"]["text"].startswith("I could not find a confident answer")
    assert _no_trace(_all_text(reply)), _all_text(reply)
    assert _no_trace(caplog.text), caplog.text
    assert [row["collections"] for row in state_rows(scoped.state, "select collections from slack_answers")] == [""]


def test_the_same_question_in_legal_and_in_an_allowed_dm_is_answered(scoped):
    scoped.event("event_app_mention_channel.json", edit=_ask_in("C0LEGAL1"))
    scoped.event("event_message_im.json", edit=_ask_in("D0ALICE", user="U0ALICE", event_id="Ev2", channel_type="im"))
    replies = {body["channel"]: body for body in scoped.fake.wait_for("chat.postMessage", 2)}
    for channel in ("C0LEGAL1", "D0ALICE"):
        assert _block(replies[channel], "answer")["text"]["text"] == (
            "*Brenn*\n>The lawyer for the Vantorre deal is Odalys *Brenn*."
        )


def test_a_dm_from_someone_without_dm_rights_gets_nothing(scoped):
    scoped.event("event_message_im.json", edit=_ask_in("D0001", user="U0001", channel_type="im"))
    [reply] = scoped.fake.wait_for("chat.postMessage")
    assert _no_trace(_all_text(reply))


def _share_click(slack, share: dict, channel: str) -> dict:
    click = _fixture_json("block_actions_feedback.json")
    click["actions"] = [
        {**click["actions"][0], "action_id": "share_answer", "block_id": "share", "value": share["value"]}
    ]
    click["container"] = {"type": "message", "message_ts": "1700000006.000300", "channel_id": channel}
    click["channel"] = {"id": channel, "name": channel}
    del click["message"]
    click["response_url"] = slack.fake.response_url("share")
    return click


def test_sharing_a_legal_answer_into_general_is_refused_and_into_legal_works(scoped):
    scoped.command("slash_ask.form.txt", text=QUESTION, channel_id="C0LEGAL1")
    [ephemeral] = scoped.fake.wait_for("response_url")
    assert "*Brenn*" in _block(ephemeral, "answer")["text"]["text"]
    [share] = _block(ephemeral, "share")["elements"]

    scoped.action(_share_click(scoped, share, "C0001"))
    refusal = scoped.fake.wait_for("response_url", 2)[1]
    assert refusal["text"].startswith("This answer quotes articles that can't be read in this channel")
    scoped.action(_share_click(scoped, share, "C0LEGAL1"))
    [shared] = scoped.fake.wait_for("chat.postMessage")
    assert shared["channel"] == "C0LEGAL1"
    scoped.work.wait_idle()
    assert [body["channel"] for body in scoped.fake.bodies("chat.postMessage")] == ["C0LEGAL1"]


def test_ask_in_general_reads_only_general(scoped):
    scoped.command("slash_ask.form.txt", text=QUESTION)  # typed in C0001
    [ephemeral] = scoped.fake.wait_for("response_url")
    assert _no_trace(_all_text(ephemeral))


# Other workspaces ---------------------------------------------------------------------------------------------


def test_a_foreign_team_gets_nothing_posted_and_nothing_stored(scoped, caplog):
    def foreign(payload):
        payload["team_id"] = "T0EVIL"
        payload["event_id"] = "EvFOREIGN"

    def foreign_user(payload):  # a Slack Connect user of another workspace, in our channel
        payload["event_id"] = "EvCONNECT"
        payload["event"]["user_team"] = "T0EVIL"

    articles = scoped.store.article_count()
    assert scoped.event("event_app_mention_channel.json", edit=foreign)[:3:2] == (200, b"")
    assert scoped.event("event_app_mention_channel.json", edit=foreign_user)[:3:2] == (200, b"")
    status, _, body = scoped.command("slash_ingest.form.txt", team_id="T0EVIL", text="Evil\nStored by a stranger.")
    assert (status, body) == (200, b"")
    scoped.event("event_message_im.json")  # the sentinel: an allowed request that does get a reply
    scoped.fake.wait_for("chat.postMessage")
    scoped.work.wait_idle()
    scoped.fetches.wait_idle()
    assert [body["channel"] for body in scoped.fake.bodies("chat.postMessage")] == ["D0001"]
    assert scoped.fake.methods().count("response_url") == 0
    assert scoped.store.article_count() == articles
    assert len(state_rows(scoped.state, "select id from slack_answers")) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings.count("ignored request from a workspace not allowed team_id=T0EVIL") == 3


def test_admins_are_team_and_user_pairs(make_slack):  # noqa: F811
    slack = make_slack(admin_user_ids=["T0OTHER:U0ADMIN"], team_ids=["T0001", "T0OTHER"])
    status, _, body = slack.command("slash_ingest.form.txt", text="Title\nSome body text.")
    assert (status, json.loads(body)["text"].startswith("Only admins can add articles")) == (200, True)


def test_ingest_with_a_collection_stores_it_there_and_moving_says_so(scoped):
    text = "--collection legal\nFerry memo\nThe ferry contract was signed by Ingrid Holm."
    scoped.command("slash_ingest.form.txt", text=text)
    [report] = scoped.fake.wait_for("response_url")
    assert report["text"] == "Ingested “Ferry memo” (Slack /ingest by U0ADMIN): 1 added, 0 updated, 0 unchanged."
    scoped.command("slash_ingest.form.txt", text=text.replace("legal", "general"), trigger_id="2.2.2")
    moved = scoped.fake.wait_for("response_url", 2)[1]
    assert moved["text"] == (
        "Ingested “Ferry memo” (Slack /ingest by U0ADMIN): 0 added, 0 updated, 1 unchanged. Moved “Ferry memo” from "
        "collection legal to general: it is now read where general may be read."
    )
    [row] = rows(scoped.store, "select collection from articles where title = 'Ferry memo'")
    assert row == {"collection": "general"}


def test_a_bad_access_file_stops_the_app_with_file_and_line(make_slack, tmp_path):  # noqa: F811
    from bot.errors import ConfigError

    access = tmp_path / "access.yaml"
    access.write_text("collections:\n  general: {channels: '*'}\n  legal: {channels: ['#legal']}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^Bad access file {access}, line 3: '#legal' in channels of 'legal'"):
        make_slack(access_file=access)


# The command line ---------------------------------------------------------------------------------------------


@pytest.fixture
def cli_library(tmp_path, monkeypatch, tiny_reader_dir, articles_dir):
    monkeypatch.setenv("QABOT_READER_MODEL", str(tiny_reader_dir))
    monkeypatch.setattr(
        bot.core.service, "build_reader", lambda settings: FakeReader(settings.reader_config(), point_at="brenn")
    )
    (tmp_path / "memo.txt").write_text(f"{MEMO.title}\n{MEMO.body}\n", encoding="utf-8")
    (tmp_path / "access.yaml").write_text(ACCESS_YAML, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest", "--db", "qa.db", str(articles_dir)]).exit_code == 0
    ingested = runner.invoke(cli, ["ingest", "--db", "qa.db", "--collection", "legal", "memo.txt"])
    assert ingested.exit_code == 0, ingested.output
    monkeypatch.setenv("QABOT_ACCESS_FILE", str(tmp_path / "access.yaml"))
    return runner


def test_cli_ask_json_in_general_shows_no_trace_of_legal(cli_library, caplog):
    caplog.set_level(logging.INFO)
    result = cli_library.invoke(cli, ["-v", "ask", "--json", "--db", "qa.db", "--channel", "C0001", QUESTION])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["answer"], data["searched"], data["tentative"]) == (None, [], None)
    assert _no_trace(result.stdout) and _no_trace(result.stderr) and _no_trace(caplog.text)


@pytest.mark.parametrize("where", [["--channel", "C0LEGAL1"], ["--user", "U0ALICE"], []])
def test_cli_ask_in_legal_for_alice_or_unscoped_reads_the_memo(cli_library, where):
    result = cli_library.invoke(cli, ["ask", "--json", "--db", "qa.db", *where, QUESTION])
    assert result.exit_code == 0, result.output
    assert MEMO.title in json.loads(result.stdout)["searched"]


def test_cli_ask_refuses_a_bad_access_file(cli_library, tmp_path):
    (tmp_path / "access.yaml").write_text("collections:\n  legl: {channels: [C0LEGAL1]}\n", encoding="utf-8")
    result = cli_library.invoke(cli, ["ask", "--db", "qa.db", QUESTION])
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: Bad access file {tmp_path / 'access.yaml'}, line 2: unknown collection 'legl' (stored collections: "
        "general, legal). Ingest into it first: qa-bot ingest --collection legl PATH.\n",
    )


# /qa-report: a channel's report covers only what the channel may read ------------------------------------------

SECRET_QUESTION = "When does Quixotic Zephyr sign?"  # asked in #legal only, unanswered: a gap of #legal's


def _report(slack, channel: str, *, trigger: str, nth: int = 1) -> dict:
    """The `nth` response of `/qa-report` typed by the admin in `channel`."""
    slack.command("slash_ingest.form.txt", command="/qa-report", text="", channel_id=channel, trigger_id=trigger)
    return slack.fake.wait_for("response_url", nth)[nth - 1]


def _asked_everywhere(scoped) -> None:
    scoped.event("event_app_mention_channel.json", edit=_ask_in("C0LEGAL1"))
    secret = _ask_in("C0LEGAL1", event_id="Ev2")

    def ask_secret(payload):
        secret(payload)
        payload["event"].update(text=f"<@U0BOT> {SECRET_QUESTION}", ts="1700000001.000100")

    scoped.event("event_app_mention_channel.json", edit=ask_secret)
    scoped.event("event_app_mention_channel.json", edit=_ask_in("C0001", event_id="Ev3"))
    scoped.fake.wait_for("chat.postMessage", 3)
    scoped.work.wait_idle()


def test_qa_report_in_general_shows_nothing_of_legal(scoped, caplog):
    caplog.set_level(logging.INFO)
    _asked_everywhere(scoped)
    report = _report(scoped, "C0001", trigger="r1")
    text = _all_text(report)
    assert report["response_type"] == "ephemeral"
    assert "1 questions asked: 0 answered (0%), 0 hedged (0%), 1 not answered (100%)." in text
    assert _no_trace(text) and "Zephyr" not in text, text
    assert _no_trace(caplog.text)


def test_qa_report_in_legal_and_in_a_dm_covers_legal_too(scoped):
    _asked_everywhere(scoped)
    in_legal = _all_text(_report(scoped, "C0LEGAL1", trigger="r1"))
    in_dm = _all_text(_report(scoped, "D0ADMIN", trigger="r2", nth=2))
    for text in (in_legal, in_dm):
        assert "acquisition memo" in text and SECRET_QUESTION in text
    assert "3 questions asked: 1 answered (33%), 0 hedged (0%), 2 not answered (67%)." in in_legal
    assert in_legal.replace(", covering only what this channel may read", "") == in_dm  # the same three questions


def test_qa_report_by_a_non_admin_is_refused(scoped):
    status, _, body = scoped.command("slash_ingest.form.txt", command="/qa-report", user_id="U0001", text="")
    assert (status, json.loads(body)["text"]) == (200, "Only admins can use /qa-report. Ask an admin for the numbers.")
    assert scoped.fake.bodies("response_url") == []
