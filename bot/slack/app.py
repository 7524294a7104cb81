"""The Slack app (Bolt): mentions, DMs, /ask, /ingest, /qa-help, edits, deletes, feedback and share buttons.

Listeners only do Slack I/O. Each one acknowledges at once and hands the slow part (reading, fetching, storing)
to a small worker pool, so Bolt's own threads stay free to acknowledge the next request within Slack's 3 s.
Answering goes through `AnsweringService`; wording comes from prompts/ through `slack_blocks`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager

from slack_bolt import App, BoltResponse
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.core import messages
from bot.slack import blocks as slack_blocks
from bot.errors import ConfigError, IngestError
from bot.core.ingest import ingest_article
from bot.core.records import Article
from bot.core.service import AnsweringService
from bot.settings import Settings
from bot.slack.escape import unescape_slack
from bot.sources.fetch import fetch_article
from bot.sources.files import article_from_text
from bot.store.state import ReplyLink, SlackState, StoredAnswer

__all__ = ["create_app", "question_text"]

logger = logging.getLogger(__name__)

WORKER_THREADS = 2  # answers take the CPU (and a lock); a second worker lets a slow /ingest fetch overlap them
_SLACK_LINK = re.compile(r"^<(https?://[^|>\s]+)(?:\|[^>]*)?>$")
_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)
_SLACK_CALL_ERRORS = (SlackApiError, SlackClientError, OSError)


def question_text(text: str | None, *, bot_user_id: str | None) -> str:
    """The question in a message: the bot's `<@U…>` mention removed, Slack escaping undone, spaces collapsed.

        >>> question_text("<@U0BOT> Who is the CEO of Rosoboronexport?", bot_user_id="U0BOT")
        'Who is the CEO of Rosoboronexport?'
    """
    text = text or ""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    return " ".join(unescape_slack(text).split())


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def create_app(settings: Settings, service: AnsweringService, *, client: WebClient | None = None,
               store: SlackState | None = None, executor: Executor | None = None) -> App:
    """The Bolt app with every listener registered; serve it with `bot.slack.server.serve` or dispatch to it in tests.

        service = build_service(settings)
        app = create_app(settings, service)
        SlackRequestHandler(app)  # or SocketModeHandler(app, app_token)

    :param settings: Slack credentials (`SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`), `slack_api_url`,
        `admin_user_ids`, `rate_limit_per_minute`, fetch limits and `db_path` (for the Slack tables).
    :param service: answers questions; its store also receives `/ingest` articles.
    :param client: a ready `WebClient` (tests, proxies); default: one for `SLACK_BOT_TOKEN` at `slack_api_url`.
    :param store: the Slack tables (dedup, replies, feedback, rate limit); default: in `settings.db_path`.
    :param executor: where the work after each ack runs; default: a pool of `WORKER_THREADS` threads.
        Pass your own to wait for pending work (`executor.shutdown(wait=True)`) before stopping.
    :raises ConfigError: when the bot token or the signing secret is missing, or Slack rejects the token.
    """
    if client is None:
        if settings.slack_bot_token is None:
            raise ConfigError("SLACK_BOT_TOKEN is not set. Install the Slack app (see manifest.yaml) and set "
                              "SLACK_BOT_TOKEN to its Bot User OAuth Token (xoxb-…).")
        client = WebClient(token=settings.slack_bot_token.get_secret_value(),
                           base_url=settings.slack_api_url or WebClient.BASE_URL)
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    if not signing_secret and settings.slack_app_token is None:
        raise ConfigError("SLACK_SIGNING_SECRET is not set. Copy it from the Slack app's Basic Information page, "
                          "or set SLACK_APP_TOKEN (xapp-…) to use Socket Mode instead of a public URL.")
    try:
        app = App(
            # identity
            name="qa-bot",
            client=client,
            signing_secret=signing_secret,
            # Slack's rules: verify every request, check the token once at start (auth.test)
            request_verification_enabled=True,
            token_verification_enabled=True,
            ignoring_self_events_enabled=True,
            # listeners only acknowledge and enqueue, so a few threads are enough
            listener_executor=ThreadPoolExecutor(max_workers=4, thread_name_prefix="qa-bot-slack"),
        )
    except (BoltError, SlackApiError, SlackClientError) as exc:
        raise ConfigError(f"Slack did not accept the bot token ({exc}). Check SLACK_BOT_TOKEN"
                          f"{' and QABOT_SLACK_API_URL' if settings.slack_api_url else ''}.") from exc
    work = executor or ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="qa-bot-work")
    listeners = _Listeners(settings, service, store or SlackState(settings.db_path), work)
    listeners.register(app)
    return app


class _Listeners:
    """Every listener of the app, sharing the service, the Slack tables and the worker pool."""

    def __init__(self, settings: Settings, service: AnsweringService, state: SlackState, work: Executor) -> None:
        self.settings, self.service, self.state, self._work = settings, service, state, work
        self._reader_lock = threading.Lock()  # one reader run at a time: the model already uses every core

    def register(self, app: App) -> None:
        app.use(self.skip_repeated_events)
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.command("/ask")(self.on_ask)
        app.command("/ingest")(self.on_ingest)
        app.command("/qa-help")(self.on_help)
        app.action(slack_blocks.ACTION_SHARE)(self.on_share)
        app.action(slack_blocks.ACTION_FEEDBACK_UP)(self.on_feedback)
        app.action(slack_blocks.ACTION_FEEDBACK_DOWN)(self.on_feedback)
        app.error(self.on_error)

    # Plumbing ------------------------------------------------------------------------------------------------

    def _later(self, job: Callable[..., None], *args: object, apology: Callable[[dict], object] | None = None) -> None:
        """Run `job` on the worker pool. If it fails, log the traceback with a reference and show the user the
        apology with that reference through `apology(message)`, so nothing fails silently."""
        def run() -> None:
            try:
                job(*args)
            except Exception:
                reference = _new_id()[:8]
                logger.exception("slack job failed job=%s reference=%s", job.__name__, reference)
                if apology is not None:
                    try:
                        apology(slack_blocks.error_message(reference))
                    except Exception:
                        logger.exception("could not show the apology reference=%s", reference)
        self._work.submit(run)

    def _in_thread(self, client: WebClient, event: dict) -> Callable[[dict], object]:
        return lambda message: client.chat_postMessage(channel=event["channel"],
                                                       thread_ts=event.get("thread_ts") or event["ts"], **message)

    def _privately(self, respond) -> Callable[[dict], object]:
        return lambda message: self._respond(respond, message, response_type="ephemeral", replace_original=False)

    def skip_repeated_events(self, body: dict, request, next: Callable[[], BoltResponse]):
        """Global middleware: an Events API delivery whose `event_id` was seen before is acknowledged, not run."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not self.state.first_sighting(event_id):
            retry = (request.headers.get("x-slack-retry-num") or [None])[0]
            logger.info("ignored repeated event event_id=%s retry_num=%s", event_id, retry)
            return BoltResponse(status=200, body="", headers={"X-Slack-No-Retry": "1"})
        return next()

    def on_error(self, error: Exception, body: dict) -> None:
        logger.error("unhandled Slack error reference=%s type=%s", _new_id()[:8], body.get("type"), exc_info=error)

    @contextmanager
    def _eyes(self, client: WebClient, channel: str, ts: str) -> Iterator[None]:
        """Show :eyes: on the question while working; reaction errors never stop the answer."""
        added = self._try(client.reactions_add, channel=channel, timestamp=ts, name="eyes")
        try:
            yield
        finally:
            if added:
                self._try(client.reactions_remove, channel=channel, timestamp=ts, name="eyes")

    @staticmethod
    def _try(call: Callable[..., object], **kwargs: object) -> bool:
        try:
            call(**kwargs)
            return True
        except _SLACK_CALL_ERRORS as exc:
            logger.warning("slack call failed method=%s error=%s", getattr(call, "__name__", call), _slack_error(exc))
            return False

    def _respond(self, respond: Callable[..., object], message: dict, **options: object) -> None:
        try:
            response = respond(**message, **options)
        except _SLACK_CALL_ERRORS as exc:
            logger.warning("response_url post failed error=%s", _slack_error(exc))
            return
        status = getattr(response, "status_code", 200)
        if status != 200:
            logger.warning("response_url post failed status=%s", status)

    def _answer(self, question: str, *, user: str, shareable: bool = False) -> tuple[dict, str | None]:
        """(message, answer id) for a question; any failure becomes the apology with a logged reference."""
        answer_id = _new_id()
        try:
            with self._reader_lock:
                answer = self.service.answer(question)
            message = slack_blocks.answer_message(answer, answer_id=answer_id, shareable=shareable)
            shown = (slack_blocks.answer_message(answer, answer_id=answer_id, asked_by=user)
                     if shareable else message)  # what "Share to channel" will post
            self.state.save_answer(StoredAnswer(
                id=answer_id, question=question, answer=answer.text,
                article_id=answer.citation.article.id if answer.citation else None, score=answer.score,
                text=shown["text"], blocks=shown["blocks"]))
            return message, answer_id
        except Exception:
            reference = _new_id()[:8]
            logger.exception("answering failed reference=%s user=%s", reference, user)
            return slack_blocks.error_message(reference), None

    def _rate_limited(self, user: str) -> dict | None:
        """The polite refusal when `user` asked too often in the last minute, else None (and the question counts)."""
        limit = self.settings.rate_limit_per_minute
        decision = self.state.allow_question(user, per_minute=limit)
        if decision.allowed:
            return None
        logger.info("rate limited user=%s limit=%d", user, limit)
        return slack_blocks.notice(messages.render("slack_rate_limited", limit=limit,
                                                   retry_after_s=decision.retry_after_s))

    # Mentions and DMs ----------------------------------------------------------------------------------------

    def on_mention(self, event: dict, context, client: WebClient) -> None:
        channel = event.get("channel", "")
        if event.get("bot_id") or channel.startswith("D"):  # DMs are answered by on_message
            return
        self._later(self._answer_in_thread, client, "mention", event, context.bot_user_id,
                    apology=self._in_thread(client, event))

    def on_message(self, event: dict, context, client: WebClient) -> None:
        subtype = event.get("subtype")
        if subtype == "message_changed":
            edited = {**(event.get("message") or {}), "channel": event.get("channel", "")}
            self._later(self._on_edit, client, event, context.bot_user_id, apology=self._in_thread(client, edited))
        elif subtype == "message_deleted":
            self._later(self._on_delete, client, event)
        elif subtype is None and _from_a_person(event, context.bot_user_id) and event.get("channel_type") == "im":
            self._later(self._answer_in_thread, client, "dm", event, context.bot_user_id,
                        apology=self._in_thread(client, event))
        # every other message (bot posts, joins, channel chatter) is not for us

    def _answer_in_thread(self, client: WebClient, kind: str, event: dict, bot_user_id: str | None) -> None:
        channel, user, ts = event["channel"], event.get("user", ""), event["ts"]
        thread_ts = event.get("thread_ts") or ts
        logger.info("question kind=%s channel=%s user=%s ts=%s", kind, channel, user, ts)
        question = question_text(event.get("text"), bot_user_id=bot_user_id)
        if not question:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                    **slack_blocks.notice(messages.render("slack_empty_question")))
            return
        refusal = self._rate_limited(user)
        if refusal:
            client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, **refusal)
            return
        with self._eyes(client, channel, ts):
            message, answer_id = self._answer(question, user=user)
            reply = client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message)
        self.state.link_reply(ReplyLink(channel=channel, question_ts=ts, reply_ts=reply["ts"],
                                        thread_ts=thread_ts, answer_id=answer_id))

    def _on_edit(self, client: WebClient, event: dict, bot_user_id: str | None) -> None:
        channel = event.get("channel", "")
        new, old = event.get("message") or {}, event.get("previous_message") or {}
        if not _from_a_person(new, bot_user_id) or "ts" not in new:
            return
        link = self.state.reply_to(channel, new["ts"])
        question = question_text(new.get("text"), bot_user_id=bot_user_id)
        if link is None or not question or question == question_text(old.get("text"), bot_user_id=bot_user_id):
            return  # not a question we answered, or only an unfurl/attachment changed
        user = new.get("user", "")
        logger.info("question edited channel=%s user=%s ts=%s", channel, user, new["ts"])
        refusal = self._rate_limited(user)
        if refusal:
            self._try(client.chat_postEphemeral, channel=channel, user=user, thread_ts=link.thread_ts, **refusal)
            return
        with self._eyes(client, channel, new["ts"]):
            message, answer_id = self._answer(question, user=user)
            updated = self._try(client.chat_update, channel=channel, ts=link.reply_ts, **message)
        if updated:
            self.state.link_reply(dataclasses.replace(link, answer_id=answer_id))

    def _on_delete(self, client: WebClient, event: dict) -> None:
        channel = event.get("channel", "")
        previous = event.get("previous_message") or {}
        question_ts = event.get("deleted_ts") or previous.get("ts")
        if previous.get("bot_id") or not question_ts:
            return
        link = self.state.reply_to(channel, question_ts)
        if link is None:
            return
        logger.info("question deleted channel=%s ts=%s reply_ts=%s", channel, question_ts, link.reply_ts)
        self._try(client.chat_delete, channel=channel, ts=link.reply_ts)
        self.state.forget_reply(channel, question_ts)

    # Slash commands ------------------------------------------------------------------------------------------

    def on_ask(self, ack: Callable[..., None], command: dict, respond) -> None:
        question = question_text(command.get("text"), bot_user_id=None)
        if not question:
            ack(**slack_blocks.notice(messages.render("slack_ask_usage")))
            return
        ack()
        self._later(self._ask, respond, command.get("user_id", ""), question, apology=self._privately(respond))

    def _ask(self, respond, user: str, question: str) -> None:
        logger.info("question kind=ask user=%s", user)
        refusal = self._rate_limited(user)
        if refusal:
            self._respond(respond, refusal, response_type="ephemeral")
            return
        message, _ = self._answer(question, user=user, shareable=True)
        self._respond(respond, message, response_type="ephemeral")

    def on_ingest(self, ack: Callable[..., None], command: dict, respond) -> None:
        user = command.get("user_id", "")
        text = unescape_slack(command.get("text") or "").strip()
        if user not in self.settings.admin_user_ids:
            logger.info("ingest refused user=%s", user)
            ack(**slack_blocks.notice(messages.render("slack_ingest_refused")))
            return
        if not text:
            ack(**slack_blocks.notice(messages.render("slack_ingest_usage")))
            return
        ack()
        self._later(self._ingest, respond, user, text, apology=self._privately(respond))

    def _ingest(self, respond, user: str, text: str) -> None:
        url = _single_url(text)
        try:
            if url:
                article = fetch_article(url, timeout_s=self.settings.fetch_timeout_s,
                                        max_bytes=self.settings.fetch_max_bytes,
                                        allow_private=self.settings.fetch_allow_private)
            else:
                article = _pasted_article(text, user=user)
            outcome = ingest_article(self.service.store, article)
        except IngestError as exc:  # FetchError included: the reason is meant for the user
            logger.info("ingest failed user=%s kind=%s", user, "url" if url else "text")
            logger.debug("ingest failure reason=%s", exc)  # may quote the pasted text
            self._respond(respond, slack_blocks.ingest_failure_message(url=url, reason=str(exc)),
                          response_type="ephemeral")
            return
        logger.info("ingested user=%s status=%s article_id=%d", user, outcome.status, outcome.article_id)
        self._respond(respond, slack_blocks.ingest_report_message(title=outcome.title, source=url or article.source,
                                                                  status=outcome.status),
                      response_type="ephemeral")

    def on_help(self, ack: Callable[..., None]) -> None:
        ack(**slack_blocks.notice(messages.render("help")))

    # Buttons -------------------------------------------------------------------------------------------------

    def on_share(self, ack: Callable[..., None], body: dict, action: dict, respond, client: WebClient) -> None:
        ack()
        self._later(self._share, client, respond, body, action.get("value", ""), apology=self._privately(respond))

    def _share(self, client: WebClient, respond, body: dict, answer_id: str) -> None:
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        stored = self.state.get_answer(answer_id)
        if stored is None or not channel:
            self._respond(respond, slack_blocks.notice(messages.render("slack_share_expired")),
                          response_type="ephemeral", replace_original=False)
            return
        try:
            reply = client.chat_postMessage(channel=channel, text=stored.text, blocks=stored.blocks)
        except _SLACK_CALL_ERRORS as exc:
            logger.warning("share failed channel=%s error=%s", channel, _slack_error(exc))
            self._respond(respond, slack_blocks.notice(messages.render("slack_share_failed",
                                                                       error=_slack_error(exc))),
                          response_type="ephemeral", replace_original=False)
            return
        logger.info("shared answer_id=%s channel=%s ts=%s", answer_id, channel, reply["ts"])
        self._respond(respond, slack_blocks.mrkdwn_notice(messages.render("slack_shared", channel=f"<#{channel}>")),
                      replace_original=True)

    def on_feedback(self, ack: Callable[..., None], body: dict, action: dict, respond) -> None:
        ack()
        self._later(self._feedback, respond, body, action, apology=self._privately(respond))

    def _feedback(self, respond, body: dict, action: dict) -> None:
        vote, answer_id = slack_blocks.parse_feedback_value(action.get("value", ""))
        if vote not in slack_blocks.VOTES:
            vote = "up" if action.get("action_id") == slack_blocks.ACTION_FEEDBACK_UP else "down"
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        message_ts = container.get("message_ts")
        if answer_id is None and channel and message_ts:
            answer_id = self.state.answer_id_of_reply(channel, message_ts)
        user = (body.get("user") or {}).get("id", "")
        self.state.record_feedback(answer_id=answer_id, user=user, vote=vote, channel=channel, message_ts=message_ts)
        logger.info("feedback vote=%s answer_id=%s user=%s", vote, answer_id, user)
        self._respond(respond, slack_blocks.notice(messages.render("slack_feedback_thanks",
                                                                   vote=slack_blocks.VOTES[vote])),
                      response_type="ephemeral", replace_original=False)


def _from_a_person(message: dict, bot_user_id: str | None) -> bool:
    """False for anything a bot posted: classic `bot_message`s, messages with `bot_id`, and our own."""
    return bool(message.get("user")) and not message.get("bot_id") and message.get("user") != bot_user_id


def _slack_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__


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
