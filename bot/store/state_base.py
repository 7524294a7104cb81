"""What the Slack app remembers between requests, as a protocol with two implementations: `SlackState` in the
SQLite file (`bot.store.state`) and `PostgresSlackState` in PostgreSQL (`bot.store.pg_state`), shared by every
replica. `bot.store.open_state` picks one the way `open_store` picks the library's engine.

The records the app writes and reads (answers, reply links, thread context, rate decisions) live here, apart
from either engine, so the listeners never see which one is behind them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.core.insights import Report

__all__ = [
    "AskedQuestion",
    "EVENT_MEMORY_S",
    "Enqueued",
    "Job",
    "RATE_WINDOW_S",
    "RateDecision",
    "ReplyLink",
    "SlackStateStore",
    "StoredAnswer",
    "ThreadContext",
    "answer_values",
    "feedback_row",
    "retry_after_s",
    "searched_key",
]

RATE_WINDOW_S = 60.0
EVENT_MEMORY_S = 24 * 3600  # Slack retries for about 5 minutes; a day is plenty and keeps the table small


def searched_key(collections: frozenset[str] | None) -> str:
    """How `slack_answers.searched` writes the collections a question read: sorted names, `*` for everything.

    >>> searched_key(frozenset({"legal", "general"})), searched_key(None)
    ('general,legal', '*')
    """
    return "*" if collections is None else ",".join(sorted(collections))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def retry_after_s(oldest: float, *, now: float) -> int:
    """Whole seconds until the oldest question in the window leaves it (at least 1), for the refusal message.

    >>> retry_after_s(0.0, now=20.0)
    40
    """
    return max(1, int(oldest + RATE_WINDOW_S - now + 0.999))


@dataclass(frozen=True)
class AskedQuestion:
    """What the report keeps of a question: its outcome, the articles cited, where and by whom it was asked.

    :param outcome: `Answer.outcome`: "confident", "unsure" or "none".
    :param searched: the collections read; None for every article (no access file, or the CLI).
    :param terms: the question's stemmed content words (`bot.core.insights.question_terms`), sorted.
    """

    outcome: str
    cited: tuple[int, ...] = ()
    searched: frozenset[str] | None = None
    channel: str | None = None
    team: str | None = None
    user: str | None = None
    terms: tuple[str, ...] = ()
    asked_at: float | None = None  # epoch seconds; None: now


@dataclass(frozen=True)
class StoredAnswer:
    """An answer the app showed, kept so a click (share, feedback) can refer to it by id."""

    id: str
    question: str
    answer: str | None
    article_id: int | None
    score: float
    text: str
    blocks: list[dict]
    collections: tuple[str, ...] = ("general",)  # of every article it cites: where it may be shared
    asked: AskedQuestion | None = None  # who asked what where, for the admins' report (None: not recorded)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, blocks: list[dict]) -> StoredAnswer:
        """The answer a `slack_answers` row holds (either engine; `blocks` decoded by the caller's driver)."""
        return cls(
            id=row["id"],
            question=row["question"],
            answer=row["answer"],
            article_id=row["article_id"],
            score=row["score"],
            text=row["text"],
            blocks=blocks,
            # answers stored before collections (NULL) could only cite `general` articles
            collections=tuple(filter(None, (row.get("collections") or "general").split(","))),
        )


@dataclass(frozen=True)
class ReplyLink:
    """The bot's reply to one question message: where it is and which answer it shows."""

    channel: str
    question_ts: str
    reply_ts: str
    thread_ts: str
    answer_id: str | None


@dataclass(frozen=True)
class ThreadContext:
    """What a follow-up in a thread is asked against: the thread's earlier questions and the articles cited."""

    questions: tuple[str, ...] = ()
    article_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class RateDecision:
    """Whether a user may ask now; when not, how many seconds until they may."""

    allowed: bool
    retry_after_s: int = 0


class Enqueued(Enum):
    """What `SlackStateStore.enqueue_job` did with a question."""

    QUEUED = "queued"  # a new pending job
    REPEAT = "repeat"  # a job with its key was there already (a retried delivery): nothing changed
    BUSY = "busy"  # `max_unfinished` jobs were unfinished already: nothing queued, the asker is told


@dataclass(frozen=True)
class Job:
    """A question acknowledged to Slack and not yet answered, as a worker claimed it from `slack_jobs`.

    :param key: the delivery it came from (the event id): a retried delivery finds the row already there.
    :param kind: which handler answers it ("mention", "dm", "follow-up", "edit": `bot.slack.listeners.questions`).
    :param payload: what the handler needs (the event, the bot's user id, the team), never a token.
    :param attempts: how often it was claimed, this claim included: more than 1 after a worker died holding it.
    :param reply_ts: the reply a worker already posted, if any: the job must not post it again.
    :param claimed_by: the worker holding it (`host:pid:thread`).
    :param created_at: when it was queued (epoch seconds), about when Slack sent it: an `/ask` job's `response_url`
        works for 30 minutes from then.
    """

    key: str
    kind: str
    payload: dict
    attempts: int = 1
    reply_ts: str | None = None
    claimed_by: str | None = None
    created_at: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, payload: dict) -> Job:
        """The job a claimed `slack_jobs` row holds (either engine; `payload` decoded by the caller's driver)."""
        return cls(
            key=row["key"],
            kind=row["kind"],
            payload=payload,
            attempts=row["attempts"],
            reply_ts=row["reply_ts"],
            claimed_by=row["claimed_by"],
            created_at=row["created_at"],
        )


def answer_values(answer: StoredAnswer, *, asked_at: float) -> dict:
    """The `slack_answers` row of an answer, in Python values (each engine encodes `blocks` and `cited`).

    :param asked_at: when the question was asked, if `answer.asked` does not say (epoch seconds).
    """
    asked = answer.asked or AskedQuestion(outcome="", searched=None)
    return {
        "id": answer.id,
        "question": answer.question,
        "answer": answer.answer,
        "article_id": answer.article_id,
        "score": answer.score,
        "text": answer.text,
        "blocks": answer.blocks,
        "created_at": now_iso(),
        "collections": ",".join(answer.collections),
        "outcome": asked.outcome or None,
        "cited": list(asked.cited),
        "searched": searched_key(asked.searched),
        "channel": asked.channel,
        "team": asked.team,
        "user": asked.user,
        "asked_at": asked_at if asked.asked_at is None else asked.asked_at,
        "terms": " ".join(asked.terms),
    }


def feedback_row(
    answer: StoredAnswer | None,
    *,
    answer_id: str | None,
    user: str,
    vote: str,
    channel: str | None,
    message_ts: str | None,
) -> dict:
    """The `slack_feedback` row of one 👍/👎 click, with the question, answer and article it was about."""
    return {
        "answer_id": answer_id,
        "user": user,
        "vote": vote,
        "question": answer.question if answer else None,
        "answer": answer.answer if answer else None,
        "article_id": answer.article_id if answer else None,
        "channel": channel,
        "message_ts": message_ts,
        "clicked_at": now_iso(),
    }


class SlackStateStore(Protocol):
    """The Slack app's memory: seen deliveries, answers and their replies, feedback, rate limits, retention.

        state: SlackStateStore = open_state(settings.database)  # SQLite file or PostgreSQL URL
        if state.first_sighting("Ev0001"):
            ...  # answer the event

    Every method is one atomic step, safe to call from any thread; with `shared`, also across processes.
    """

    path: str  # where it is, as messages show it (never a password)
    location: str  # what `bot.store.open_state` opens: the file, or the URL
    shared: bool  # other processes (replicas) use the same state: a delivery is claimed in the database

    # Retry deduplication

    def first_sighting(self, event_id: str, *, now: float | None = None) -> bool:
        """Record a delivery id; True for the one caller that recorded it first, False for every repeat."""
        ...

    def recent_event_ids(self, limit: int) -> list[str]:
        """The ids recorded most recently (newest first), to remember them across a restart."""
        ...

    # Answers and replies

    def save_answer(self, answer: StoredAnswer) -> None:
        """Keep an answer the app is about to show (its id goes into the message's buttons)."""
        ...

    def get_answer(self, answer_id: str) -> StoredAnswer | None:
        """A kept answer, or None when it is unknown or past retention."""
        ...

    def forget_questions(self, *, before: float) -> int:
        """Delete the questions asked before `before` (epoch seconds) with their answers, reply links and
        feedback; returns how many questions went."""
        ...

    def link_reply(self, link: ReplyLink) -> None:
        """Remember (or move) the bot's reply to a question message."""
        ...

    def reply_to(self, channel: str, question_ts: str) -> ReplyLink | None:
        """The bot's reply to the question message `question_ts` in `channel`, if it answered one."""
        ...

    def thread_context(self, channel: str, thread_ts: str, *, before_ts: str | None = None) -> ThreadContext:
        """The questions the bot answered in a thread (oldest first) and the articles its answers cited."""
        ...

    def answer_id_of_reply(self, channel: str, reply_ts: str) -> str | None:
        """Which answer the bot message `reply_ts` shows."""
        ...

    def forget_reply(self, channel: str, question_ts: str) -> None:
        """Forget the link to the reply of a deleted question."""
        ...

    # Feedback

    def record_feedback(
        self, *, answer_id: str | None, user: str, vote: str, channel: str | None, message_ts: str | None
    ) -> dict:
        """Store one 👍/👎 click; returns the stored row."""
        ...

    def feedback(self) -> list[dict]:
        """Every stored feedback click, oldest first."""
        ...

    # Rate limit

    def allow_question(self, user: str, *, per_minute: int, now: float | None = None) -> RateDecision:
        """Count a question against a user's budget of `per_minute` questions in any 60 s; refuse past it."""
        ...

    # Jobs: questions acknowledged and not yet answered (`bot.slack.jobs`)

    def enqueue_job(
        self, key: str, kind: str, payload: dict, *, max_unfinished: int | None = None, now: float | None = None
    ) -> Enqueued:
        """Queue a question as a pending job, in one atomic step: `REPEAT` when a job with `key` exists (the key is
        the delivery's id, so a retried delivery reaching any replica queues nothing), else `BUSY` when
        `max_unfinished` jobs (of every replica, in a shared state) are unfinished already, else `QUEUED`. The
        count and the insert are one step across processes too, so concurrent askers never push the queue past
        `max_unfinished` (None: no cap)."""
        ...

    def unfinished_jobs(self) -> int:
        """How many jobs are pending or running (every replica's, in a shared state): what `QABOT_MAX_PENDING` caps."""
        ...

    def claim_job(self, worker: str, *, lease_s: float, now: float | None = None) -> Job | None:
        """Take the oldest job that is pending, or running under a lease that expired (its worker died), for
        `worker` until `lease_s` from now; None when there is none. Two workers never get the same job."""
        ...

    def extend_job_leases(self, held: Mapping[str, str], *, lease_s: float, now: float | None = None) -> int:
        """The heartbeat: push the leases of the running jobs `held` ({key: claimed_by}) to `lease_s` from now, while
        each is still claimed by that worker; returns how many were extended (fewer: a job was taken over)."""
        ...

    def record_job_reply(self, key: str, reply_ts: str) -> None:
        """Note that the job's reply was posted (its `ts`), as soon as Slack returns it: a worker that claims the job
        again after a crash finishes the bookkeeping instead of posting a second reply."""
        ...

    def finish_job(self, key: str, *, failed: bool = False, now: float | None = None) -> None:
        """Mark a job done (or failed: it is not tried again) and release its lease."""
        ...

    def forget_finished_jobs(self, *, before: float) -> int:
        """Delete the jobs finished before `before` (epoch seconds); returns how many went. Unfinished ones stay."""
        ...

    # The admins' report, a second connection, closing

    def report(
        self,
        *,
        days: int,
        collections: frozenset[str] | None = None,
        now: float | None = None,
        top_gaps: int | None = None,
    ) -> Report:
        """The insights of `qa-bot report` over the kept questions, scoped to `collections` (None: everything);
        `top_gaps` None keeps `bot.core.insights.TOP_GAPS`."""
        ...

    def reopen(self) -> SlackStateStore:
        """Another state on the same database with a connection of its own (a long read beside the answers)."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...
