"""What every listener shares: the settings, the answering service, the Slack tables, the worker pool, and the
plumbing around them (run later with an apology on failure, answer with a logged reference, rate limits)."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.core import messages
from bot.core.insights import question_terms
from bot.core.service import AnsweringService
from bot.settings import Settings
from bot.slack import blocks as slack_blocks
from bot.slack.dedupe import SeenDeliveries
from bot.slack.escape import unescape_slack
from bot.slack.gate import Gate
from bot.store.library import Library
from bot.store.state_base import AskedQuestion, SlackStateStore, StoredAnswer, ThreadContext

__all__ = ["ListenerKit", "SLACK_CALL_ERRORS", "from_a_person", "new_id", "question_text", "slack_error"]

logger = logging.getLogger(__name__)

SLACK_CALL_ERRORS = (SlackApiError, SlackClientError, OSError)


def question_text(text: str | None, *, bot_user_id: str | None) -> str:
    """The question in a message: the bot's `<@U…>` mention removed, Slack escaping undone, spaces collapsed.

    >>> question_text("<@U0BOT> Who is the CEO of Rosoboronexport?", bot_user_id="U0BOT")
    'Who is the CEO of Rosoboronexport?'
    """
    text = text or ""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    return " ".join(unescape_slack(text).split())


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def from_a_person(message: dict, bot_user_id: str | None) -> bool:
    """False for anything a bot posted: classic `bot_message`s, messages with `bot_id`, and our own."""
    return bool(message.get("user")) and not message.get("bot_id") and message.get("user") != bot_user_id


def slack_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__


class ListenerKit:
    """The service, the Slack tables and the worker pools every listener uses, with the plumbing around them.

    kit = ListenerKit(settings, service, open_state(settings.database), ThreadPoolExecutor(2), gate=gate)
    kit.later(job, client, event, apology=kit.in_thread(client, event))

    :param work: answers and clicks run here.
    :param fetches: `/ingest` runs here, so a slow link never holds up an answer; default: `work`.
    :param seen: delivery ids already handled (retries, replays); default: remembered in `state`.
    :param gate: allowed workspaces, admins and the access policy (`bot.slack.gate`).
    """

    def __init__(
        self,
        settings: Settings,
        service: AnsweringService,
        state: SlackStateStore,
        work: Executor,
        *,
        gate: Gate,
        fetches: Executor | None = None,
        seen: SeenDeliveries | None = None,
    ) -> None:
        self.settings, self.service, self.state, self.work = settings, service, state, work
        self.gate = gate
        self.fetches = fetches or work
        self.seen = seen or SeenDeliveries(state)
        self.reader_lock = threading.Lock()  # one reader run at a time: the model already uses every core

    def is_admin(self, team: str | None, user: str) -> bool:
        """The one check for every admin action (`/ingest`, `/qa-admin` and its buttons): the (team, user) pair is
        one of `QABOT_ADMIN_USER_IDS` (see `Gate`)."""
        return bool(user) and self.gate.is_admin(team, user)

    def library(self) -> Library:
        """The article library of the answering store, SQLite or PostgreSQL, for `/qa-admin` (its queries take the
        store's lock)."""
        return Library(self.service.store)

    def later(
        self,
        job: Callable[..., None],
        *args: object,
        apology: Callable[[dict], object] | None = None,
        pool: Executor | None = None,
    ) -> None:
        """Run `job` on the worker pool (or `pool`). If it fails, log the traceback with a reference and show the
        user the apology with that reference through `apology(message)`, so nothing fails silently."""

        def run() -> None:
            try:
                job(*args)
            except Exception:
                reference = new_id()[:8]
                logger.exception("slack job failed job=%s reference=%s", job.__name__, reference)
                if apology is not None:
                    try:
                        apology(slack_blocks.error_message(reference))
                    except Exception:
                        logger.exception("could not show the apology reference=%s", reference)

        (pool or self.work).submit(run)

    def in_thread(self, client: WebClient, event: dict) -> Callable[[dict], object]:
        return lambda message: client.chat_postMessage(
            channel=event["channel"], thread_ts=event.get("thread_ts") or event["ts"], **message
        )

    def privately(self, respond: Respond) -> Callable[[dict], object]:
        return lambda message: self.respond(respond, message, response_type="ephemeral", replace_original=False)

    @contextmanager
    def eyes(self, client: WebClient, channel: str, ts: str) -> Iterator[None]:
        """Show :eyes: on the question while working; reaction errors never stop the answer."""
        added = self.try_call(client.reactions_add, channel=channel, timestamp=ts, name="eyes")
        try:
            yield
        finally:
            if added:
                self.try_call(client.reactions_remove, channel=channel, timestamp=ts, name="eyes")

    @staticmethod
    def try_call(call: Callable[..., object], **kwargs: object) -> bool:
        try:
            call(**kwargs)
            return True
        except SLACK_CALL_ERRORS as exc:
            logger.warning("slack call failed method=%s error=%s", getattr(call, "__name__", call), slack_error(exc))
            return False

    def respond(self, respond: Respond, message: dict, **options: Any) -> bool:
        """Post `message` through a response_url; True when Slack took it (a failure is logged, not raised)."""
        try:
            response = respond(**message, **options)
        except SLACK_CALL_ERRORS as exc:
            logger.warning("response_url post failed error=%s", slack_error(exc))
            return False
        status = getattr(response, "status_code", 200)
        if status != 200:
            logger.warning("response_url post failed status=%s", status)
            return False
        return True

    def answer(
        self,
        question: str,
        *,
        user: str,
        shareable: bool = False,
        thread: ThreadContext | None = None,
        collections: frozenset[str] | None = None,
        channel: str | None = None,
        team: str | None = None,
        answer_id: str | None = None,
    ) -> tuple[dict, str | None]:
        """(message, answer id) for a question, a follow-up when `thread` holds earlier questions, reading only
        `collections` (None: every article); any failure becomes the apology with a logged reference.

        The question is recorded with its outcome, the articles cited, where (`channel`, `team`) and by whom it
        was asked, for the admins' report (`bot.core.insights`), under `answer_id` (default: a new one; a job
        passes one derived from its key, so answering it again replaces the same row)."""
        answer_id = answer_id or new_id()
        thread = thread or ThreadContext()
        try:
            with self.reader_lock:
                answer = self.service.answer(
                    question, context=thread.questions, prefer_articles=thread.article_ids, collections=collections
                )
            message = slack_blocks.answer_message(answer, answer_id=answer_id, shareable=shareable)
            shown = (
                slack_blocks.answer_message(answer, answer_id=answer_id, asked_by=user) if shareable else message
            )  # what "Share to channel" will post
            self.state.save_answer(
                StoredAnswer(
                    id=answer_id,
                    question=question,
                    answer=answer.text,
                    article_id=next((article.id for article in answer.cited_articles()), None),
                    score=answer.score,
                    text=shown["text"],
                    blocks=shown["blocks"],
                    collections=tuple(sorted({article.collection for article in answer.cited_articles()})),
                    asked=AskedQuestion(
                        outcome=answer.outcome,
                        cited=tuple(dict.fromkeys(article.id for article in answer.cited_articles())),
                        searched=collections,
                        channel=channel,
                        team=team,
                        user=user,
                        terms=question_terms(question),
                    ),
                )
            )
            return message, answer_id
        except Exception:
            reference = new_id()[:8]
            logger.exception("answering failed reference=%s user=%s", reference, user)
            return slack_blocks.error_message(reference), None

    def rate_limited(self, user: str) -> dict | None:
        """The polite refusal when `user` asked too often in the last minute, else None (and the question counts)."""
        limit = self.settings.rate_limit_per_minute
        decision = self.state.allow_question(user, per_minute=limit)
        if decision.allowed:
            return None
        logger.info("rate limited user=%s limit=%d", user, limit)
        return slack_blocks.notice(
            messages.render("slack_rate_limited", limit=limit, retry_after_s=decision.retry_after_s)
        )
