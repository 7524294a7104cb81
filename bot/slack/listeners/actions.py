"""Button listeners: Share to channel (answers from /ask) and the 👍/👎 feedback buttons."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.core import messages
from bot.slack import blocks as slack_blocks
from bot.slack.listeners.shared import SLACK_CALL_ERRORS, ListenerKit, slack_error

__all__ = ["ActionListeners"]

logger = logging.getLogger(__name__)


class ActionListeners:
    """Clicks on the buttons of an answer: each acknowledges at once and does its work on the worker pool."""

    def __init__(self, kit: ListenerKit) -> None:
        self.kit = kit

    def register(self, app: App) -> None:
        app.action(slack_blocks.ACTION_SHARE)(self.on_share)
        app.action(slack_blocks.ACTION_FEEDBACK_UP)(self.on_feedback)
        app.action(slack_blocks.ACTION_FEEDBACK_DOWN)(self.on_feedback)
        app.action(slack_blocks.ACTION_ADMIN_DELETE)(self.on_admin_delete)
        app.action(slack_blocks.ACTION_ADMIN_CANCEL)(self.on_admin_cancel)

    # Buttons -------------------------------------------------------------------------------------------------

    def on_share(self, ack: Ack, body: dict, action: dict, respond: Respond, client: WebClient) -> None:
        ack()
        self.kit.later(self._share, client, respond, body, action.get("value", ""), apology=self.kit.privately(respond))

    def _share(self, client: WebClient, respond: Respond, body: dict, answer_id: str) -> None:
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        stored = self.kit.state.get_answer(answer_id)
        if stored is None or not channel:
            self.kit.respond(
                respond,
                slack_blocks.notice(messages.render("slack_share_expired")),
                response_type="ephemeral",
                replace_original=False,
            )
            return
        if not self.kit.gate.may_post_in(channel, stored.collections):
            logger.info("share refused answer_id=%s channel=%s", answer_id, channel)
            self.kit.respond(
                respond,
                slack_blocks.notice(messages.render("slack_share_refused")),
                response_type="ephemeral",
                replace_original=False,
            )
            return
        try:
            reply = client.chat_postMessage(channel=channel, text=stored.text, blocks=stored.blocks)
        except SLACK_CALL_ERRORS as exc:
            logger.warning("share failed channel=%s error=%s", channel, slack_error(exc))
            self.kit.respond(
                respond,
                slack_blocks.notice(messages.render("slack_share_failed", error=slack_error(exc))),
                response_type="ephemeral",
                replace_original=False,
            )
            return
        logger.info("shared answer_id=%s channel=%s ts=%s", answer_id, channel, reply["ts"])
        self.kit.respond(
            respond,
            slack_blocks.mrkdwn_notice(messages.render("slack_shared", channel=f"<#{channel}>")),
            replace_original=True,
        )

    def on_feedback(self, ack: Ack, body: dict, action: dict, respond: Respond) -> None:
        ack()
        self.kit.later(self._feedback, respond, body, action, apology=self.kit.privately(respond))

    def _feedback(self, respond: Respond, body: dict, action: dict) -> None:
        vote, answer_id = slack_blocks.parse_feedback_value(action.get("value", ""))
        if vote not in slack_blocks.VOTES:
            vote = "up" if action.get("action_id") == slack_blocks.ACTION_FEEDBACK_UP else "down"
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        message_ts = container.get("message_ts")
        if answer_id is None and channel and message_ts:
            answer_id = self.kit.state.answer_id_of_reply(channel, message_ts)
        user = (body.get("user") or {}).get("id", "")
        if answer_id is not None and self.kit.state.get_answer(answer_id) is None:
            # deleted after QABOT_QUESTION_RETENTION_DAYS (or never stored): there is nothing left to vote on
            logger.info("feedback on an expired answer answer_id=%s user=%s", answer_id, user)
            self.kit.respond(
                respond,
                slack_blocks.notice(messages.render("slack_feedback_expired")),
                response_type="ephemeral",
                replace_original=False,
            )
            return
        self.kit.state.record_feedback(
            answer_id=answer_id, user=user, vote=vote, channel=channel, message_ts=message_ts
        )
        logger.info("feedback vote=%s answer_id=%s user=%s", vote, answer_id, user)
        self.kit.respond(
            respond,
            slack_blocks.notice(messages.render("slack_feedback_thanks", vote=slack_blocks.VOTES[vote])),
            response_type="ephemeral",
            replace_original=False,
        )

    def on_admin_delete(self, ack: Ack, body: dict, action: dict, respond: Respond) -> None:
        """The Delete button of `/qa-admin delete`: checked again here, since anyone can send a click payload."""
        ack()
        user = (body.get("user") or {}).get("id", "")
        team = (body.get("user") or {}).get("team_id") or (body.get("team") or {}).get("id")
        if not self.kit.is_admin(team, user):
            logger.info("admin delete refused user=%s", user)
            self.kit.respond(
                respond,
                slack_blocks.notice(messages.render("slack_admin_refused")),
                response_type="ephemeral",
                replace_original=False,
            )
            return
        self.kit.later(self._admin_delete, respond, user, action.get("value", ""), apology=self.kit.privately(respond))

    def _admin_delete(self, respond: Respond, user: str, value: str) -> None:
        library = self.kit.library()
        row = library.find(value) if value.isdigit() else None
        if row is None:
            message = slack_blocks.notice(messages.render("slack_admin_already_deleted", id=value))
        else:
            library.delete([row.id])  # the same transaction as `qa-bot articles delete`
            logger.info("admin deleted user=%s article_id=%d", user, row.id)
            message = slack_blocks.notice(
                messages.render("slack_admin_deleted", id=row.id, title=" ".join(row.title.split()), source=row.source)
            )
        self.kit.respond(respond, message, replace_original=True)

    def on_admin_cancel(self, ack: Ack, respond: Respond) -> None:
        ack()
        self.kit.later(self._admin_cancel, respond, apology=self.kit.privately(respond))

    def _admin_cancel(self, respond: Respond) -> None:
        self.kit.respond(respond, slack_blocks.notice(messages.render("slack_admin_cancelled")), replace_original=True)
