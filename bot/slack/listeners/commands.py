"""Slash command listeners: /ask's usage (its questions are jobs: `bot.slack.listeners.questions`), /ingest,
/qa-admin and /qa-report (admins), /qa-help."""

from __future__ import annotations

import dataclasses
import logging
import re

from slack_bolt import Ack, App, Respond

from bot.core import messages
from bot.core.access import DEFAULT_COLLECTION, check_collection_name
from bot.core.ingest import ingest_article
from bot.core.insights import render_markdown
from bot.core.records import Article
from bot.errors import IngestError
from bot.slack import blocks as slack_blocks
from bot.slack.escape import unescape_slack
from bot.slack.gate import is_dm_channel
from bot.slack.listeners.shared import ListenerKit
from bot.sources.fetch import fetch_article
from bot.sources.files import article_from_text

__all__ = ["CommandListeners"]

logger = logging.getLogger(__name__)

_SLACK_LINK = re.compile(r"^<(https?://[^|>\s]+)(?:\|[^>]*)?>$")
REPORT_MAX_DAYS = 3650
REPORT_GAPS = 10  # knowledge gaps /qa-report lists (a Slack message is short)
ADMIN_LIST_MAX = 20  # articles one /qa-admin list shows; more are named, not listed
_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)
_COLLECTION_OPTION = re.compile(r"^--collection(?:=|[ \t]+)(\S*)[ \t]*\n?")


class CommandListeners:
    """`/ask` (its usage), `/ingest`, `/qa-admin` and `/qa-help`: each acknowledges at once; ingesting and the
    library's queries run on the worker pools, questions on the job workers."""

    def __init__(self, kit: ListenerKit) -> None:
        self.kit = kit

    def register(self, app: App) -> None:
        app.command("/ask")(self.on_ask)
        app.command("/ingest")(self.on_ingest)
        app.command("/qa-help")(self.on_help)
        app.command("/qa-admin")(self.on_admin)
        app.command("/qa-report")(self.on_report)

    # Slash commands ------------------------------------------------------------------------------------------

    def on_ask(self, ack: Ack) -> None:
        """`/ask` without a question: its usage. A question is taken as a job before any listener runs
        (`EventListeners.take_questions`) and answered through its response_url by the job workers."""
        ack(**slack_blocks.notice(messages.render("slack_ask_usage")))

    def on_ingest(self, ack: Ack, command: dict, respond: Respond) -> None:
        user = command.get("user_id", "")
        text = unescape_slack(command.get("text") or "").strip()
        if not self.kit.is_admin(command.get("team_id"), user):
            logger.info("ingest refused user=%s", user)
            ack(**slack_blocks.notice(messages.render("slack_ingest_refused")))
            return
        collection, text = _collection_option(text)
        try:
            check_collection_name(collection)
        except ValueError as exc:
            ack(**slack_blocks.notice(messages.render("slack_ingest_bad_collection", reason=str(exc))))
            return
        if not text:
            ack(**slack_blocks.notice(messages.render("slack_ingest_usage")))
            return
        ack()
        self.kit.later(
            self._ingest, respond, user, text, collection, apology=self.kit.privately(respond), pool=self.kit.fetches
        )

    def _ingest(self, respond: Respond, user: str, text: str, collection: str) -> None:
        url = _single_url(text)
        try:
            if url:
                article = fetch_article(
                    url,
                    timeout_s=self.kit.settings.fetch_timeout_s,
                    max_bytes=self.kit.settings.fetch_max_bytes,
                    allow_private=self.kit.settings.fetch_allow_private,
                )
            else:
                article = _pasted_article(text, user=user)
            article = dataclasses.replace(article, collection=collection)
            outcome = ingest_article(self.kit.service.store, article)
        except IngestError as exc:  # FetchError included: the reason is meant for the user
            logger.info("ingest failed user=%s kind=%s", user, "url" if url else "text")
            logger.debug("ingest failure reason=%s", exc)  # may quote the pasted text
            self.kit.respond(
                respond, slack_blocks.ingest_failure_message(url=url, reason=str(exc)), response_type="ephemeral"
            )
            return
        logger.info(
            "ingested user=%s status=%s article_id=%d collection=%s moved_from=%s",
            user,
            outcome.status,
            outcome.article_id,
            collection,
            outcome.moved_from,
        )
        report = slack_blocks.ingest_report_message(
            title=outcome.title,
            source=url or article.source,
            status=outcome.status,
            moved=(outcome.moved_from, collection) if outcome.moved_from else None,
        )
        policy = self.kit.gate.policy
        if policy is not None and collection not in policy.names:  # stored, but nobody may read it yet
            report = slack_blocks.notice(
                report["text"] + " " + messages.render("slack_ingest_unread", collection=collection)
            )
        self.kit.respond(respond, report, response_type="ephemeral")

    def on_admin(self, ack: Ack, command: dict, respond: Respond) -> None:
        """`/qa-admin list [text]` and `/qa-admin delete <id or url>` (admins only, the same check as `/ingest`)."""
        user = command.get("user_id", "")
        if not self.kit.is_admin(command.get("team_id"), user):
            logger.info("admin command refused user=%s", user)
            ack(**slack_blocks.notice(messages.render("slack_admin_refused")))
            return
        verb, _, rest = unescape_slack(command.get("text") or "").strip().partition(" ")
        rest = rest.strip()
        if verb.lower() == "list":
            ack()
            self.kit.later(self._admin_list, respond, rest, apology=self.kit.privately(respond))
        elif verb.lower() == "delete" and rest:
            ack()
            self.kit.later(
                self._admin_delete, respond, user, _single_url(rest) or rest, apology=self.kit.privately(respond)
            )
        else:
            ack(**slack_blocks.notice(messages.render("slack_admin_usage")))

    def _admin_list(self, respond: Respond, query: str) -> None:
        found = self.kit.library().articles(text=query or None, limit=ADMIN_LIST_MAX + 1)
        rows = [row.to_dict() for row in found]
        message = slack_blocks.admin_list_message(rows[:ADMIN_LIST_MAX], query=query, more=len(rows) > ADMIN_LIST_MAX)
        self.kit.respond(respond, message, response_type="ephemeral")

    def _admin_delete(self, respond: Respond, user: str, ref: str) -> None:
        row = self.kit.library().find(ref)
        if row is None:
            message = slack_blocks.notice(messages.render("slack_admin_unknown", ref=ref))
        else:
            logger.info("admin delete asked user=%s article_id=%d", user, row.id)
            message = slack_blocks.admin_delete_confirm_message(row.to_dict())
        self.kit.respond(respond, message, response_type="ephemeral")

    def on_report(self, ack: Ack, command: dict, respond: Respond) -> None:
        """`/qa-report [days]` (admins only, ephemeral): the insights of `qa-bot report`; typed in a channel they
        cover only the questions that read nothing that channel may not read, in a DM with the bot everything."""
        user = command.get("user_id", "")
        if not self.kit.is_admin(command.get("team_id"), user):
            logger.info("report refused user=%s", user)
            ack(**slack_blocks.notice(messages.render("slack_report_refused")))
            return
        text = (command.get("text") or "").strip()
        if text and not (text.isdigit() and 0 < int(text) <= REPORT_MAX_DAYS):
            ack(**slack_blocks.notice(messages.render("slack_report_usage")))
            return
        ack()
        channel = command.get("channel_id", "")
        policy = self.kit.gate.policy
        scope = None if policy is None or is_dm_channel(channel) else policy.for_channel(channel)
        self.kit.later(self._report, respond, user, int(text or 7), scope, apology=self.kit.privately(respond))

    def _report(self, respond: Respond, user: str, days: int, scope: frozenset[str] | None) -> None:
        state = self.kit.state.reopen()  # its own connection: the report reads while answers are written
        try:
            report = state.report(days=days, collections=scope, top_gaps=REPORT_GAPS)
        finally:
            state.close()
        logger.info("report shown user=%s days=%d scoped=%s", user, days, scope is not None)
        where = messages.render("slack_report_scope_channel") if scope is not None else None
        message = slack_blocks.report_message(render_markdown(report, scope=where))
        self.kit.respond(respond, message, response_type="ephemeral")

    def on_help(self, ack: Ack) -> None:
        ack(**slack_blocks.notice(messages.render("help")))


def _collection_option(text: str) -> tuple[str, str]:
    """(`--collection NAME` given before the url or text, or `general`; the rest of the text).

    >>> _collection_option("--collection legal https://example.com/memo")
    ('legal', 'https://example.com/memo')
    """
    given = _COLLECTION_OPTION.match(text)
    if not given:
        return DEFAULT_COLLECTION, text
    return given.group(1), text[given.end() :].strip()


def _single_url(text: str) -> str | None:
    """The URL when `/ingest` was given one link (plain or in Slack's `<url|label>` form), else None."""
    text = text.strip()
    linked = _SLACK_LINK.match(text)
    if linked:
        return linked.group(1)
    return text if _URL.match(text) else None


def _pasted_article(text: str, *, user: str) -> Article:
    """Pasted text as an article: first line the title; the same title pasted again by the same admin updates it."""
    article = article_from_text(text, source=messages.render("slack_ingest_source", user=user))
    return dataclasses.replace(article, key=f"{article.source}#{article.title}")
