"""Questions as durable jobs: which Slack events ask one, how each is taken at the ack, and how a worker answers it.

A mention, a DM, a reply in a thread the bot answered (a follow-up) and the edit of a question it answered become
one `slack_jobs` row keyed by the event id, so a question acknowledged to Slack is answered even if the process
that took it dies:

- PostgreSQL (`state.shared`): the row is written before the ack, and its insert is also what keeps a retried
  delivery that reaches another replica from being asked twice (the ack waits for one round trip that counts the
  unfinished jobs and inserts the row, atomically across replicas).
- SQLite: the row is written right after the ack, on a thread of its own, so the ack never waits on the file's
  lock; the workers of this process (or of a `qa-bot worker` on this machine) pick it up.

Past `QABOT_MAX_PENDING` unfinished jobs (every replica's, with PostgreSQL) the asker gets the "busy" reply and
nothing is queued. The workers (`bot.slack.jobs.JobRunner`, in `qa-bot serve` and `qa-bot worker`) answer a job
through `QuestionJobs.run`.

    questions = QuestionJobs(kit, client, wake=runner.wake)
    questions.take("Ev0001", "mention", body, bot_user_id="U0BOT")  # in the middleware, before the ack
    runner.start(kit.state, questions)
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from slack_sdk import WebClient

from bot.core import messages
from bot.slack import blocks as slack_blocks
from bot.slack.gate import is_dm_channel
from bot.slack.listeners.shared import ListenerKit, from_a_person, new_id, question_text
from bot.store.state_base import Enqueued, Job, ReplyLink

__all__ = ["QUESTION_KINDS", "QuestionJobs", "job_answer_id", "question_kind"]

logger = logging.getLogger(__name__)

QUESTION_KINDS = ("mention", "dm", "follow-up", "edit")


def question_kind(event: dict, *, bot_user_id: str | None) -> str | None:
    """Which question an event asks, by what it says alone (no database): "mention", "dm", "follow-up" (a
    reply in a channel thread: a question only where the bot has answered), "edit" (a person changed the text of
    a message: a question only if the bot answered it), or None.

    >>> question_kind({"type": "app_mention", "channel": "C1", "user": "U1", "ts": "1.0"}, bot_user_id="U0BOT")
    'mention'
    """
    kind, subtype = event.get("type"), event.get("subtype")
    if kind == "app_mention":  # in a DM the message event answers it
        return None if event.get("bot_id") or is_dm_channel(event.get("channel", "")) else "mention"
    if kind != "message":
        return None
    if subtype == "message_changed":
        new, old = event.get("message") or {}, event.get("previous_message") or {}
        question = question_text(new.get("text"), bot_user_id=bot_user_id)
        changed = question != question_text(old.get("text"), bot_user_id=bot_user_id)  # not just an unfurl
        return "edit" if from_a_person(new, bot_user_id) and "ts" in new and question and changed else None
    if subtype is not None or not from_a_person(event, bot_user_id):
        return None
    if event.get("channel_type") == "im":
        return "dm"
    thread_ts = event.get("thread_ts")
    in_thread = event.get("channel_type") in ("channel", "group") and bool(thread_ts) and thread_ts != event.get("ts")
    mentions_bot = bool(bot_user_id) and f"<@{bot_user_id}" in (event.get("text") or "")
    return "follow-up" if in_thread and not mentions_bot else None  # a reply that mentions the bot is a mention


def job_answer_id(key: str) -> str:
    """The id of the answer a job stores (`slack_answers.id`), the same however often the job runs, so a worker
    that finds the reply already posted can still link it to its answer.

    >>> job_answer_id("Ev0001") == job_answer_id("Ev0001") != job_answer_id("Ev0002")
    True
    """
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class QuestionJobs:
    """Questions taken as jobs at the ack (`take`) and answered by the workers (`run`, `apologise`).

    :param kit: the settings, service, Slack state, gate and plumbing the listeners share.
    :param client: the Slack Web API client answers are posted with.
    :param wake: called after this process queued a job (`JobRunner.wake`), so a worker starts at once.
    :param intake: where a question is recorded after the ack when the state is a SQLite file; default: one
        thread of its own, so the questions are recorded in the order they came.
    """

    def __init__(
        self,
        kit: ListenerKit,
        client: WebClient,
        *,
        wake: Callable[[], None] = lambda: None,
        intake: Executor | None = None,
    ) -> None:
        self.kit, self.client, self.wake = kit, client, wake
        self._intake = intake

    # Taking a question at the ack ----------------------------------------------------------------------------

    def take(self, key: str, kind: str, body: dict, *, bot_user_id: str | None, team: str | None) -> bool:
        """Take the question of delivery `key` (an Events API body, sent for workspace `team`): False when it is a
        repeat, to acknowledge with no retry; True when it is new to this process, queued now (PostgreSQL) or
        right after the ack (SQLite). The payload is what a worker needs, never a token."""
        if not self.kit.seen.remember(key):
            return False
        payload = {"event": body.get("event") or {}, "bot_user_id": bot_user_id, "team": team}
        if self.kit.state.shared:
            return self._queue(key, kind, payload)
        if self._intake is None:
            self._intake = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-bot-intake")
        self._intake.submit(self._queue, key, kind, payload)
        return True

    def _queue(self, key: str, kind: str, payload: dict) -> bool:
        """Queue the question unless it is not ours or the bot is busy; False when another replica queued it."""
        event = payload["event"]
        limit = self.kit.settings.max_pending
        try:
            if not self._is_for_us(kind, event):
                return True
            outcome = self.kit.state.enqueue_job(key, kind, payload, max_unfinished=limit)
        except Exception:  # the database: the asker learns it failed rather than waiting for nothing
            reference = new_id()[:8]
            logger.exception("could not queue a question key=%s reference=%s", key, reference)
            self.kit.later(self._post, kind, payload, slack_blocks.error_message(reference))
            return True
        if outcome is Enqueued.BUSY:
            logger.warning("busy, question refused pending=%d", limit)
            self.kit.later(self._post, kind, payload, slack_blocks.notice(messages.render("slack_busy")))
        elif outcome is Enqueued.QUEUED:
            self.wake()
        else:  # a retry reaching another replica, or this one after a restart
            logger.info("question queued already key=%s", key)
        return outcome is not Enqueued.REPEAT

    def _is_for_us(self, kind: str, event: dict) -> bool:
        """A follow-up only in a thread the bot answered, an edit only of a question it answered."""
        if kind == "follow-up":
            return bool(self.kit.state.thread_context(event["channel"], event["thread_ts"]).questions)
        if kind == "edit":
            return self.kit.state.reply_to(event.get("channel", ""), event["message"]["ts"]) is not None
        return True

    # Answering a job (a worker) ------------------------------------------------------------------------------

    def run(self, job: Job, replied: Callable[[str], None]) -> None:
        """Answer a job: in the question's thread, or by updating the answer of an edited question."""
        if job.kind == "edit":
            self._update_answer(job, replied)
        elif job.kind in QUESTION_KINDS:
            self._answer_in_thread(job, replied)
        else:
            raise ValueError(f"unknown job kind {job.kind!r} (known: {', '.join(QUESTION_KINDS)})")

    def apologise(self, job: Job, message: dict) -> None:
        self._post(job.kind, job.payload, message)

    def _post(self, kind: str, payload: dict, message: dict) -> None:
        """Post `message` in the thread of the question a job's event asked (the edited message's, for an edit)."""
        event = payload["event"]
        asked = {**(event.get("message") or {}), "channel": event.get("channel", "")} if kind == "edit" else event
        self._client_for(payload).chat_postMessage(
            channel=asked["channel"], thread_ts=asked.get("thread_ts") or asked["ts"], **message
        )

    def _client_for(self, payload: dict) -> WebClient:
        """The client for a job's workspace, as Bolt makes one per request (org-wide installs need `team_id`)."""
        base = self.client
        return WebClient(
            token=base.token,
            base_url=base.base_url,
            timeout=base.timeout,
            ssl=base.ssl,
            proxy=base.proxy,
            headers=base.headers,
            team_id=payload.get("team"),
            logger=base.logger,
            retry_handlers=base.retry_handlers.copy() if base.retry_handlers is not None else None,
        )

    def _answer_in_thread(self, job: Job, replied: Callable[[str], None]) -> None:
        event, bot_user_id = job.payload["event"], job.payload.get("bot_user_id")
        client = self._client_for(job.payload)
        channel, user, ts = event["channel"], event.get("user", ""), event["ts"]
        thread_ts = event.get("thread_ts") or ts
        answer_id = job_answer_id(job.key)
        if job.reply_ts is not None:  # posted by a worker that died before the bookkeeping: finish that only
            logger.info("reply posted before, linking it key=%s reply_ts=%s", job.key, job.reply_ts)
            if self.kit.state.get_answer(answer_id) is not None:
                link = ReplyLink(channel, ts, job.reply_ts, thread_ts, answer_id)
                self.kit.state.link_reply(link)
            return
        logger.info("question kind=%s channel=%s user=%s ts=%s", job.kind, channel, user, ts)
        question = question_text(event.get("text"), bot_user_id=bot_user_id)
        if not question:
            notice = slack_blocks.notice(messages.render("slack_empty_question"))
            replied(client.chat_postMessage(channel=channel, thread_ts=thread_ts, **notice)["ts"])
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
            message, stored_id = self.kit.answer(
                question,
                user=user,
                thread=thread,
                collections=collections,
                channel=channel,
                team=team,
                answer_id=answer_id,
            )
            reply = client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message)
            replied(reply["ts"])
        self.kit.state.link_reply(ReplyLink(channel, ts, reply["ts"], thread_ts, stored_id))

    def _update_answer(self, job: Job, replied: Callable[[str], None]) -> None:
        event, bot_user_id = job.payload["event"], job.payload.get("bot_user_id")
        client = self._client_for(job.payload)
        channel, new = event.get("channel", ""), event.get("message") or {}
        link = self.kit.state.reply_to(channel, new["ts"])
        question = question_text(new.get("text"), bot_user_id=bot_user_id)
        if link is None or not question:
            return  # its answer was deleted meanwhile
        answer_id = job_answer_id(job.key)
        if job.reply_ts is not None:  # updated by a worker that died before the bookkeeping
            if self.kit.state.get_answer(answer_id) is not None:
                self.kit.state.link_reply(dataclasses.replace(link, answer_id=answer_id))
            return
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
            message, stored_id = self.kit.answer(
                question, user=user, collections=collections, channel=channel, team=team, answer_id=answer_id
            )
            updated = self.kit.try_call(client.chat_update, channel=channel, ts=link.reply_ts, **message)
            if updated:
                replied(link.reply_ts)
        if updated:
            self.kit.state.link_reply(dataclasses.replace(link, answer_id=stored_id))
