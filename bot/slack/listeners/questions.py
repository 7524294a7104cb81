"""Questions as durable jobs: which Slack requests ask one, how each is taken at the ack, and how a worker answers it.

A mention, a DM, a reply in a thread the bot answered (a follow-up) and the edit of a question it answered become
one `slack_jobs` row keyed by the event id, and `/ask` one keyed by the command's delivery key (team, user, trigger
id), so a question acknowledged to Slack is answered even if the process that took it dies:

- PostgreSQL (`state.shared`): the row is written before the ack, and its insert is also what keeps a retried
  delivery that reaches another replica from being asked twice (the ack waits for one round trip that counts the
  unfinished jobs and inserts the row, atomically across replicas).
- SQLite: the row is written right after the ack, on a thread of its own, so the ack never waits on the file's
  lock; the workers of this process (or of a `qa-bot worker` on this machine) pick it up.

Past `QABOT_MAX_PENDING` unfinished jobs (every replica's, with PostgreSQL) the asker gets the "busy" reply and
nothing is queued. The workers (`bot.slack.jobs.JobRunner`, in `qa-bot serve` and `qa-bot worker`) answer a job
through `QuestionJobs.run`: an event's in the question's thread, an `/ask` privately through the command's
`response_url` (with the Share button), which Slack accepts for 30 minutes: an `/ask` job older than that is
logged and dropped. A reply without a `ts` of its own (a `response_url` post, an ephemeral message) is recorded
as `REPLIED_WITHOUT_TS` once sent, so a job claimed again never sends it twice.

    questions = QuestionJobs(kit, client, wake=runner.wake)
    questions.take("Ev0001", "mention", body, bot_user_id="U0BOT", team="T0001")  # in the middleware, before the ack
    questions.take_ask("command:T0001:U0001:13.4", command)  # `/ask`, likewise
    runner.start(kit.state, questions)
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from slack_bolt import Respond
from slack_sdk import WebClient

from bot.core import messages
from bot.slack import blocks as slack_blocks
from bot.slack.gate import is_dm_channel
from bot.slack.listeners.shared import ListenerKit, from_a_person, new_id, question_text
from bot.store.state_base import Enqueued, Job, ReplyLink

__all__ = [
    "ASK_KIND",
    "QUESTION_KINDS",
    "REPLIED_WITHOUT_TS",
    "RESPONSE_URL_TTL_S",
    "QuestionJobs",
    "job_answer_id",
    "question_kind",
]

logger = logging.getLogger(__name__)

QUESTION_KINDS = ("mention", "dm", "follow-up", "edit")  # asked by events
ASK_KIND = "ask"  # asked with `/ask`, answered through its response_url
RESPONSE_URL_TTL_S = 30 * 60  # Slack accepts posts to a command's response_url for 30 minutes
REPLIED_WITHOUT_TS = "replied"  # a job's reply_ts when its reply has no ts: it was sent, never send it again


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
        payload = {"event": body.get("event") or {}, "bot_user_id": bot_user_id, "team": team}
        return self._take(key, kind, payload)

    def take_ask(self, key: str, command: dict) -> bool:
        """Take an `/ask` (the command's form, `key` its delivery key) like `take` takes an event. The payload keeps
        where, by whom and what was asked and the response_url, never the command's verification token."""
        payload = {
            "channel": command.get("channel_id", ""),
            "user": command.get("user_id", ""),
            "team": command.get("team_id") or None,
            "text": command.get("text") or "",
            "response_url": command.get("response_url", ""),
        }
        return self._take(key, ASK_KIND, payload)

    def _take(self, key: str, kind: str, payload: dict) -> bool:
        if not self.kit.seen.remember(key):
            return False
        if self.kit.state.shared:
            return self._queue(key, kind, payload)
        if self._intake is None:
            self._intake = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-bot-intake")
        self._intake.submit(self._queue, key, kind, payload)
        return True

    def _queue(self, key: str, kind: str, payload: dict) -> bool:
        """Queue the question unless it is not ours or the bot is busy; False when another replica queued it."""
        limit = self.kit.settings.max_pending
        try:
            if not self._is_for_us(kind, payload):
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

    def _is_for_us(self, kind: str, payload: dict) -> bool:
        """A follow-up only in a thread the bot answered, an edit only of a question it answered."""
        event = payload.get("event") or {}
        if kind == "follow-up":
            return bool(self.kit.state.thread_context(event["channel"], event["thread_ts"]).questions)
        if kind == "edit":
            return self.kit.state.reply_to(event.get("channel", ""), event["message"]["ts"]) is not None
        return True

    # Answering a job (a worker) ------------------------------------------------------------------------------

    def run(self, job: Job, replied: Callable[[str], None]) -> None:
        """Answer a job: in the question's thread, by updating the answer of an edited question, or privately
        through an `/ask`'s response_url."""
        if job.kind == ASK_KIND:
            self._answer_ask(job, replied)
        elif job.kind == "edit":
            self._update_answer(job, replied)
        elif job.kind in QUESTION_KINDS:
            self._answer_in_thread(job, replied)
        else:
            raise ValueError(f"unknown job kind {job.kind!r} (known: {', '.join((*QUESTION_KINDS, ASK_KIND))})")

    def apologise(self, job: Job, message: dict) -> None:
        if job.kind == ASK_KIND and _expired(job):
            logger.warning("apology not shown, the /ask response_url expired key=%s", job.key)
            return
        self._post(job.kind, job.payload, message)

    def _post(self, kind: str, payload: dict, message: dict) -> None:
        """Post `message` in the thread of the question a job's event asked (the edited message's, for an edit), or
        privately to the asker of an `/ask`."""
        if kind == ASK_KIND:
            self._respond(payload, message, replace_original=False)
            return
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

    def _rate_limited(self, job: Job, user: str) -> dict | None:
        """The rate limit's refusal, or None, counting each question once: a job claimed again after its worker
        died was counted by that worker's run (a refusal it sent is recorded as its reply, so it never gets here),
        and the asker must not pay for the crash. A worker that died before counting leaves the question uncounted:
        the cheaper mistake."""
        if job.attempts > 1:
            logger.info("rate limit counted before key=%s attempts=%d", job.key, job.attempts)
            return None
        return self.kit.rate_limited(user)

    def _respond(self, payload: dict, message: dict, **options: object) -> bool:
        """Post `message` ephemerally through an `/ask`'s response_url, as Bolt's `respond` would; True when sent."""
        respond = Respond(response_url=payload["response_url"], proxy=self.client.proxy, ssl=self.client.ssl)
        return self.kit.respond(respond, message, response_type="ephemeral", **options)

    def _answer_ask(self, job: Job, replied: Callable[[str], None]) -> None:
        ask = job.payload
        user, channel, team = ask.get("user", ""), ask.get("channel", ""), ask.get("team")
        if job.reply_ts is not None:  # sent by a worker that died before the bookkeeping: nothing is left to do
            logger.info("reply sent before, not again key=%s", job.key)
            return
        if _expired(job):
            age_s = time.time() - (job.created_at or 0.0)
            logger.warning("question not answered, its /ask response_url expired key=%s age_s=%.0f", job.key, age_s)
            return
        logger.info("question kind=ask user=%s", user)
        question = question_text(ask.get("text"), bot_user_id=None)
        refusal = self._rate_limited(job, user)
        if refusal:
            if self._respond(ask, refusal):
                replied(REPLIED_WITHOUT_TS)
            return
        # /ask reads what the channel it is typed in may read (in a DM: what the asker may read in DMs)
        collections = self.kit.gate.collections_for(channel=channel, user=user, team=team)
        message, _ = self.kit.answer(
            question,
            user=user,
            shareable=True,
            collections=collections,
            channel=channel or None,
            team=team or None,
            answer_id=job_answer_id(job.key),
        )
        if self._respond(ask, message):
            replied(REPLIED_WITHOUT_TS)

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
        refusal = self._rate_limited(job, user)
        if refusal:
            client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, **refusal)
            replied(REPLIED_WITHOUT_TS)
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
        refusal = self._rate_limited(job, user)
        if refusal:
            if self.kit.try_call(
                client.chat_postEphemeral, channel=channel, user=user, thread_ts=link.thread_ts, **refusal
            ):
                replied(REPLIED_WITHOUT_TS)
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


def _expired(job: Job) -> bool:
    """Whether an `/ask` job is past its response_url's 30 minutes (counted from when it was queued)."""
    return job.created_at is not None and time.time() - job.created_at >= RESPONSE_URL_TTL_S
