"""Event listeners: questions (mentions, DMs, follow-ups, edits, and `/ask`) taken as jobs before the ack,
deletions, retried deliveries, unhandled errors."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_sdk import WebClient

from bot.slack.listeners.questions import QuestionJobs, question_kind
from bot.slack.listeners.shared import ListenerKit, new_id, question_text

__all__ = ["EventListeners"]

logger = logging.getLogger(__name__)


def _repeat() -> BoltResponse:
    """The ack of a delivery handled before: Slack is asked not to retry it."""
    return BoltResponse(status=200, body="", headers={"X-Slack-No-Retry": "1"})


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
    """Questions become jobs in a middleware, before the ack (`take_questions`); deletions, other messages and
    errors have listeners; a middleware drops retried deliveries."""

    def __init__(self, kit: ListenerKit, questions: QuestionJobs) -> None:
        self.kit, self.questions = kit, questions

    def register(self, app: App) -> None:
        app.use(self.take_questions)
        app.use(self.skip_repeated_deliveries)
        # Bolt runs the first listener that matches: deletions, then every other message and mention (acknowledged:
        # an unhandled event would be retried); questions never get here (see `take_questions`).
        app.event({"type": "message", "subtype": "message_deleted"})(self.on_delete)
        app.event("app_mention")(self.on_other_message)
        app.event("message")(self.on_other_message)
        app.error(self.on_error)

    def take_questions(self, body: dict, context: BoltContext, next: Callable[[], BoltResponse]) -> BoltResponse:
        """Global middleware: an event that asks the bot a question (`question_kind`: a mention, a DM, a reply in a
        thread, an edit) or an `/ask` with a question is taken as a job (`QuestionJobs.take`, `take_ask`) and
        acknowledged, before any listener; with PostgreSQL the job is in the database before Slack gets the ack,
        so a crash cannot lose it. A repeat is acknowledged with no retry. Anything else (an `/ask` without a
        question: its usage) goes on to the other middleware and listeners."""
        if body.get("command") == "/ask":
            return self._take_ask(body, next)
        event = body.get("event") if body.get("type") == "event_callback" else None
        key = str(body.get("event_id") or "")
        kind = question_kind(event, bot_user_id=context.bot_user_id) if isinstance(event, dict) and key else None
        if kind is None:
            return next()
        if not self.questions.take(key, kind, body, bot_user_id=context.bot_user_id, team=context.team_id):
            logger.info("ignored repeated event event_id=%s kind=%s", key, kind)
            return _repeat()
        return BoltResponse(status=200, body="")

    def _take_ask(self, body: dict, next: Callable[[], BoltResponse]) -> BoltResponse:
        if not question_text(body.get("text"), bot_user_id=None):
            return next()
        key = delivery_key(body) or f"command:{new_id()}"  # Slack always sends a trigger id
        if not self.questions.take_ask(key, body):
            logger.info("ignored repeated command command=/ask user=%s", body.get("user_id"))
        return BoltResponse(status=200, body="")

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
                return _repeat()
            logger.info("ignored repeated command command=%s user=%s", body.get("command"), body.get("user_id"))
            return BoltResponse(status=200, body="")
        return next()

    def on_error(self, error: Exception, body: dict) -> None:
        logger.error("unhandled Slack error reference=%s type=%s", new_id()[:8], body.get("type"), exc_info=error)

    def on_delete(self, event: dict, client: WebClient) -> None:
        self.kit.later(self._on_delete, client, event)

    def on_other_message(self) -> None:
        """Bot posts, joins, channel chatter: not for us, but acknowledged (an unhandled event would be retried)."""

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
