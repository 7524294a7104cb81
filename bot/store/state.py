"""What the Slack app remembers between requests, in the store's SQLite file: seen event ids (retry dedup),
answers it posted, which reply belongs to which question (edits and deletes), feedback clicks and a per-user
rate limit. Tables are prefixed `slack_` so they never clash with the article store.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from bot.errors import StoreError
from bot.store.connect import connect
from bot.store.migrations import migrate

__all__ = ["AskedQuestion", "SlackState", "StoredAnswer", "ReplyLink", "RateDecision", "searched_key"]

logger = logging.getLogger(__name__)

RATE_WINDOW_S = 60.0
EVENT_MEMORY_S = 24 * 3600  # Slack retries for about 5 minutes; a day is plenty and keeps the table small


def searched_key(collections: frozenset[str] | None) -> str:
    """How `slack_answers.searched` writes the collections a question read: sorted names, `*` for everything.

    >>> searched_key(frozenset({"legal", "general"})), searched_key(None)
    ('general,legal', '*')
    """
    return "*" if collections is None else ",".join(sorted(collections))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


class SlackState:
    """The Slack app's own tables, opened on the same database file as the article store.

        state = SlackState("qa.db")
        if state.first_sighting("Ev0001"):
            ...  # answer the event

    One connection shared by Bolt's worker threads; every call holds a lock, so each is atomic.

    :param path: the SQLite file (the store's `db_path`); `":memory:"` works in experiments.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self.db = sqlite_utils.Database(connect(self.path))
            migrate(self.db, path=self.path)  # the slack_ tables are part of the store's schema
        except sqlite3.Error as exc:
            raise StoreError(
                f"Cannot open the Slack tables in {self.path}: {exc}. Check the path (QABOT_DB_PATH)."
            ) from exc

    def _write(self, sql: str, params: list | tuple) -> sqlite3.Cursor:
        try:
            with self.db.conn:
                return self.db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"Could not write Slack state to {self.path}: {exc}") from exc

    def _one(self, sql: str, params: list | tuple) -> dict | None:
        try:
            return next(self.db.query(sql, params), None)
        except sqlite3.Error as exc:
            raise StoreError(f"Could not read Slack state from {self.path}: {exc}") from exc

    # Retry deduplication -------------------------------------------------------------------------------------

    def first_sighting(self, event_id: str, *, now: float | None = None) -> bool:
        """Record an Events API `event_id`; True the first time, False for every retry of the same event."""
        now = time.time() if now is None else now
        with self._lock:
            cursor = self._write(
                "insert or ignore into slack_events (event_id, seen_at) values (?, ?)", [event_id, now]
            )
            if cursor.rowcount:
                self._write("delete from slack_events where seen_at < ?", [now - EVENT_MEMORY_S])
            return cursor.rowcount == 1

    def recent_event_ids(self, limit: int) -> list[str]:
        """The ids `first_sighting` recorded most recently (newest first), to remember them across a restart."""
        with self._lock:
            try:
                rows = self.db.execute(
                    "select event_id from slack_events order by seen_at desc limit ?", [limit]
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"Could not read Slack state from {self.path}: {exc}") from exc
        return [row[0] for row in rows]

    # Answers and replies -------------------------------------------------------------------------------------

    def save_answer(self, answer: StoredAnswer) -> None:
        """Keep an answer the app is about to show (its id goes into the message's buttons)."""
        asked = answer.asked or AskedQuestion(outcome="", searched=None)
        with self._lock:
            self._write(
                "insert or replace into slack_answers (id, question, answer, article_id, score, text, blocks, "
                "created_at, collections, outcome, cited, searched, channel, team, user, asked_at, terms) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    answer.id,
                    answer.question,
                    answer.answer,
                    answer.article_id,
                    answer.score,
                    answer.text,
                    json.dumps(answer.blocks),
                    _now_iso(),
                    ",".join(answer.collections),
                    asked.outcome or None,
                    json.dumps(list(asked.cited)),
                    searched_key(asked.searched),
                    asked.channel,
                    asked.team,
                    asked.user,
                    time.time() if asked.asked_at is None else asked.asked_at,
                    " ".join(asked.terms),
                ],
            )

    def forget_questions(self, *, before: float) -> int:
        """Delete the questions asked before `before` (epoch seconds) with their answers, the links to their
        replies and the feedback on them (`QABOT_QUESTION_RETENTION_DAYS`); returns how many questions went.
        A click on one of their buttons then finds no answer and says it has expired."""
        before_iso = datetime.fromtimestamp(before, UTC).isoformat(timespec="seconds")
        old = "select id from slack_answers where asked_at < ?"
        with self._lock:
            try:
                with self.db.conn:
                    self.db.execute(f"delete from slack_replies where answer_id in ({old})", [before])
                    self.db.execute(
                        f"delete from slack_feedback where answer_id in ({old}) or clicked_at < ?", [before, before_iso]
                    )
                    return self.db.execute("delete from slack_answers where asked_at < ?", [before]).rowcount
            except sqlite3.Error as exc:
                raise StoreError(f"Could not delete old questions from {self.path}: {exc}") from exc

    def get_answer(self, answer_id: str) -> StoredAnswer | None:
        with self._lock:
            row = self._one("select * from slack_answers where id = ?", [answer_id])
        if row is None:
            return None
        return StoredAnswer(
            id=row["id"],
            question=row["question"],
            answer=row["answer"],
            article_id=row["article_id"],
            score=row["score"],
            text=row["text"],
            blocks=json.loads(row["blocks"]),
            # answers stored before collections (NULL) could only cite `general` articles
            collections=tuple(filter(None, (row.get("collections") or "general").split(","))),
        )

    def link_reply(self, link: ReplyLink) -> None:
        """Remember (or move) the bot's reply to a question message."""
        with self._lock:
            self._write(
                "insert or replace into slack_replies (channel, question_ts, reply_ts, thread_ts, answer_id, "
                "updated_at) values (?, ?, ?, ?, ?, ?)",
                [link.channel, link.question_ts, link.reply_ts, link.thread_ts, link.answer_id, _now_iso()],
            )

    def reply_to(self, channel: str, question_ts: str) -> ReplyLink | None:
        """The bot's reply to the question message `question_ts` in `channel`, if it answered one."""
        with self._lock:
            row = self._one("select * from slack_replies where channel = ? and question_ts = ?", [channel, question_ts])
        return ReplyLink(**{k: row[k] for k in ReplyLink.__dataclass_fields__}) if row else None

    def thread_context(self, channel: str, thread_ts: str, *, before_ts: str | None = None) -> ThreadContext:
        """The questions the bot answered in a thread (oldest first) and the articles its answers cited.

        Empty when the bot never answered there: such a thread is other people's conversation, not ours.
        """
        with self._lock:
            rows = list(
                self.db.query(
                    "select a.question, a.article_id from slack_replies r join slack_answers a on a.id = r.answer_id "
                    "where r.channel = ? and r.thread_ts = ? and r.question_ts < ? order by r.question_ts",
                    [channel, thread_ts, before_ts or "9999999999.999999"],
                )
            )
        return ThreadContext(
            questions=tuple(row["question"] for row in rows),
            article_ids=frozenset(row["article_id"] for row in rows if row["article_id"] is not None),
        )

    def answer_id_of_reply(self, channel: str, reply_ts: str) -> str | None:
        """Which answer the bot message `reply_ts` shows (for clicks on messages whose buttons carry no id)."""
        with self._lock:
            row = self._one(
                "select answer_id from slack_replies where channel = ? and reply_ts = ?", [channel, reply_ts]
            )
        return row["answer_id"] if row else None

    def forget_reply(self, channel: str, question_ts: str) -> None:
        with self._lock:
            self._write("delete from slack_replies where channel = ? and question_ts = ?", [channel, question_ts])

    # Feedback ------------------------------------------------------------------------------------------------

    def record_feedback(
        self, *, answer_id: str | None, user: str, vote: str, channel: str | None, message_ts: str | None
    ) -> dict:
        """Store one 👍/👎 click with the question, answer and article it was about; returns the stored row."""
        answer = self.get_answer(answer_id) if answer_id else None
        row = {
            "answer_id": answer_id,
            "user": user,
            "vote": vote,
            "question": answer.question if answer else None,
            "answer": answer.answer if answer else None,
            "article_id": answer.article_id if answer else None,
            "channel": channel,
            "message_ts": message_ts,
            "clicked_at": _now_iso(),
        }
        with self._lock:
            try:
                with self.db.conn:
                    self.db.table("slack_feedback").insert(row)
            except sqlite3.Error as exc:
                raise StoreError(f"Could not store feedback in {self.path}: {exc}") from exc
        return row

    def feedback(self) -> list[dict]:
        """Every stored feedback click, oldest first."""
        with self._lock:
            return list(self.db.query("select * from slack_feedback order by id"))

    # Rate limit ----------------------------------------------------------------------------------------------

    def allow_question(self, user: str, *, per_minute: int, now: float | None = None) -> RateDecision:
        """Count a question against a user's budget of `per_minute` questions in any 60 s; refuse past it."""
        now = time.time() if now is None else now
        since = now - RATE_WINDOW_S
        with self._lock:
            self._write("delete from slack_requests where user = ? and at <= ?", [user, since])
            row = self._one("select count(*) as n, min(at) as oldest from slack_requests where user = ?", [user])
            assert row is not None  # an aggregate query always returns one row
            if row["n"] >= per_minute:
                wait = max(1, int(row["oldest"] + RATE_WINDOW_S - now + 0.999))
                return RateDecision(False, wait)
            self._write("insert into slack_requests (user, at) values (?, ?)", [user, now])
        return RateDecision(True)

    def close(self) -> None:
        self.db.close()
