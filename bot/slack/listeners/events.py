"""Event listeners: mentions, DMs and their edits and deletions, retried deliveries, unhandled errors."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_sdk import WebClient

from bot.core import messages
from bot.slack import blocks as slack_blocks
from bot.slack.listeners.shared import ListenerKit, from_a_person, new_id, question_text
from bot.store.state import ReplyLink

__all__ = ["EventListeners"]

logger = logging.getLogger(__name__)


def is_direct_message(event: dict) -> bool:
    """Bolt matcher: a message in a DM with the bot."""
    return event.get("channel_type") == "im"


def is_channel_thread_reply(event: dict) -> bool:
    """Bolt matcher: a reply inside a thread of a public or private channel."""
    thread_ts = event.get("thread_ts")
    return event.get("channel_type") in ("channel", "group") and bool(thread_ts) and thread_ts != event.get("ts")


def delivery_key(body: dict) -> str | None:
    """What identifies one delivery for deduplication: an event's `event_id`, a slash command's team, user and
    trigger id; None for anything else (buttons, url_verification).

    >>> delivery_key({"command": "/ask", "team_id": "T1", "user_id": "U1", "trigger_id": "13.4"})
    'command:T1:U1:13.4'
    """
    if body.get("type") == "event_callback":
        return body.get("event_id") or None
    if body.get("command") and body.get("trigger_id"):
        return f"command:{body.get('team_id', '')}:{body.get('user_id', '')}:{body['trigger_id']}"
    return None


class EventListeners:
    """Mentions in channels, DMs, edits and deletions of questions; a middleware drops retried deliveries."""

    def __init__(self, kit: ListenerKit) -> None:
        self.kit = kit

    def register(self, app: App) -> None:
        app.use(self.skip_repeated_deliveries)
        app.event("app_mention")(self.on_mention)
        # Bolt runs the first listener that matches: plain DMs, edits, deletions, then every other message.
        app.event({"type": "message", "subtype": None}, matchers=[is_direct_message])(self.on_direct_message)
        app.event({"type": "message", "subtype": None}, matchers=[is_channel_thread_reply])(self.on_thread_reply)
        app.event({"type": "message", "subtype": "message_changed"})(self.on_edit)
        app.event({"type": "message", "subtype": "message_deleted"})(self.on_delete)
        app.event("message")(self.on_other_message)
        app.error(self.on_error)

    def skip_repeated_deliveries(
        self, body: dict, request: BoltRequest, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        """Global middleware: an Events API delivery whose `event_id` was seen before, or a slash command with a
        (team, user, trigger_id) seen before (a replay), is acknowledged, not run. Memory answers repeats, never
        SQLite, so the ack cannot wait on the database's lock; replicas sharing PostgreSQL state claim a new id
        there first (`SeenDeliveries`), so a retry that reaches another replica is not answered twice."""
        key = delivery_key(body)
        if key and not self.kit.seen.first_sighting(key):
            retries = request.headers.get("x-slack-retry-num") or []
            retry = retries[0] if retries else None
            if body.get("type") == "event_callback":
                logger.info("ignored repeated event event_id=%s retry_num=%s", body.get("event_id"), retry)
                return BoltResponse(status=200, body="", headers={"X-Slack-No-Retry": "1"})
            logger.info("ignored repeated command command=%s user=%s", body.get("command"), body.get("user_id"))
            return BoltResponse(status=200, body="")
        return next()

    def on_error(self, error: Exception, body: dict) -> None:
        logger.error("unhandled Slack error reference=%s type=%s", new_id()[:8], body.get("type"), exc_info=error)

    # Mentions and DMs ----------------------------------------------------------------------------------------

    def on_mention(self, event: dict, context: BoltContext, client: WebClient) -> None:
        channel = event.get("channel", "")
        if event.get("bot_id") or channel.startswith("D"):  # DMs are answered by on_message
            return
        self.kit.question_later(
            self._answer_in_thread,
            client,
            "mention",
            event,
            context.bot_user_id,
            apology=self.kit.in_thread(client, event),
        )

    def on_direct_message(self, event: dict, context: BoltContext, client: WebClient) -> None:
        if not from_a_person(event, context.bot_user_id):
            return
        self.kit.question_later(
            self._answer_in_thread, client, "dm", event, context.bot_user_id, apology=self.kit.in_thread(client, event)
        )

    def on_thread_reply(self, event: dict, context: BoltContext, client: WebClient) -> None:
        """A reply in a channel thread: a follow-up when the bot answered in that thread, else not for us. A reply
        that mentions the bot is left to `on_mention` (Slack sends both events for it)."""
        bot_user_id = context.bot_user_id
        if not from_a_person(event, bot_user_id) or (bot_user_id and f"<@{bot_user_id}" in (event.get("text") or "")):
            return
        if not self.kit.state.thread_context(event["channel"], event["thread_ts"]).questions:
            return
        self.kit.question_later(
            self._answer_in_thread, client, "follow-up", event, bot_user_id, apology=self.kit.in_thread(client, event)
        )

    def on_edit(self, event: dict, context: BoltContext, client: WebClient) -> None:
        edited = {**(event.get("message") or {}), "channel": event.get("channel", "")}
        self.kit.question_later(
            self._on_edit, client, event, context.bot_user_id, apology=self.kit.in_thread(client, edited)
        )

    def on_delete(self, event: dict, client: WebClient) -> None:
        self.kit.later(self._on_delete, client, event)

    def on_other_message(self) -> None:
        """Bot posts, joins, channel chatter: not for us, but acknowledged (an unhandled event would be retried)."""

    def _answer_in_thread(self, client: WebClient, kind: str, event: dict, bot_user_id: str | None) -> None:
        channel, user, ts = event["channel"], event.get("user", ""), event["ts"]
        thread_ts = event.get("thread_ts") or ts
        logger.info("question kind=%s channel=%s user=%s ts=%s", kind, channel, user, ts)
        question = question_text(event.get("text"), bot_user_id=bot_user_id)
        if not question:
            client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, **slack_blocks.notice(messages.render("slack_empty_question"))
            )
            return
        refusal = self.kit.rate_limited(user)
        if refusal:
            client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, **refusal)
            return
        # in a thread the bot has answered in, the earlier questions and their articles guide the search
        thread = self.kit.state.thread_context(channel, thread_ts, before_ts=ts) if thread_ts != ts else None
        team = event.get("user_team") or event.get("team")
        collections = self.kit.gate.collections_for(channel=channel, user=user, team=team)
        with self.kit.eyes(client, channel, ts):
            message, answer_id = self.kit.answer(
                question, user=user, thread=thread, collections=collections, channel=channel, team=team
            )
            reply = client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message)
        self.kit.state.link_reply(
            ReplyLink(channel=channel, question_ts=ts, reply_ts=reply["ts"], thread_ts=thread_ts, answer_id=answer_id)
        )

    def _on_edit(self, client: WebClient, event: dict, bot_user_id: str | None) -> None:
        channel = event.get("channel", "")
        new, old = event.get("message") or {}, event.get("previous_message") or {}
        if not from_a_person(new, bot_user_id) or "ts" not in new:
            return
        link = self.kit.state.reply_to(channel, new["ts"])
        question = question_text(new.get("text"), bot_user_id=bot_user_id)
        if link is None or not question or question == question_text(old.get("text"), bot_user_id=bot_user_id):
            return  # not a question we answered, or only an unfurl/attachment changed
        user = new.get("user", "")
        logger.info("question edited channel=%s user=%s ts=%s", channel, user, new["ts"])
        refusal = self.kit.rate_limited(user)
        if refusal:
            self.kit.try_call(
                client.chat_postEphemeral, channel=channel, user=user, thread_ts=link.thread_ts, **refusal
            )
            return
        team = new.get("user_team") or new.get("team")
        collections = self.kit.gate.collections_for(channel=channel, user=user, team=team)
        with self.kit.eyes(client, channel, new["ts"]):
            message, answer_id = self.kit.answer(
                question, user=user, collections=collections, channel=channel, team=team
            )
            updated = self.kit.try_call(client.chat_update, channel=channel, ts=link.reply_ts, **message)
        if updated:
            self.kit.state.link_reply(dataclasses.replace(link, answer_id=answer_id))

    def _on_delete(self, client: WebClient, event: dict) -> None:
        channel = event.get("channel", "")
        previous = event.get("previous_message") or {}
        question_ts = event.get("deleted_ts") or previous.get("ts")
        if previous.get("bot_id") or not question_ts:
            return
        link = self.kit.state.reply_to(channel, question_ts)
        if link is None:
            return
        logger.info("question deleted channel=%s ts=%s reply_ts=%s", channel, question_ts, link.reply_ts)
        self.kit.try_call(client.chat_delete, channel=channel, ts=link.reply_ts)
        self.kit.state.forget_reply(channel, question_ts)
