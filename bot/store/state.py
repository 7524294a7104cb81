"""The Slack app's state in the store's SQLite file (`SlackStateStore` for one machine): seen event ids (retry
dedup), answers it posted, which reply belongs to which question (edits and deletes), feedback clicks, a
per-user rate limit and the questions waiting for a worker (`slack_jobs`). Tables are prefixed `slack_` so they
never clash with the article store. Several replicas share `PostgresSlackState` (`bot.store.pg_state`) instead.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlite_utils

from bot.errors import StoreError
from bot.store.connect import connect
from bot.store.migrations import migrate
from bot.store.state_base import (
    EVENT_MEMORY_S,
    RATE_WINDOW_S,
    AskedQuestion,
    Enqueued,
    Job,
    RateDecision,
    ReplyLink,
    StoredAnswer,
    ThreadContext,
    answer_values,
    feedback_row,
    now_iso,
    retry_after_s,
    searched_key,
)

if TYPE_CHECKING:
    from bot.core.insights import Report

__all__ = ["AskedQuestion", "SlackState", "StoredAnswer", "ReplyLink", "RateDecision", "ThreadContext", "searched_key"]

logger = logging.getLogger(__name__)

# A job a worker may take: pending, or running under an expired lease (`?`: now); `state in (...)` lets the partial
# index of unfinished jobs serve the query.
_CLAIMABLE = "state in ('pending', 'running') and (state = 'pending' or lease_until < ?)"


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A transaction that takes the file's write lock at its start (`begin immediate`), so what it reads cannot
    change under it in another process before it writes; committed at the end, rolled back on any error."""
    conn.execute("begin immediate")
    try:
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


class SlackState:
    """The Slack app's own tables, opened on the same database file as the article store.

        state = SlackState("qa.db")
        if state.first_sighting("Ev0001"):
            ...  # answer the event

    One connection shared by Bolt's worker threads; every call holds a lock, so each is atomic.

    :param path: the SQLite file (the store's `db_path`); `":memory:"` works in experiments.
    """

    shared = False  # one machine's file: retries are recognised from memory, the table only outlives a restart

    def __init__(self, path: str | Path) -> None:
        self.path = self.location = str(path)
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
        row = answer_values(answer, asked_at=time.time())
        row.update(blocks=json.dumps(row["blocks"]), cited=json.dumps(row["cited"]))
        with self._lock:
            self._write(
                f"insert or replace into slack_answers ({', '.join(row)}) values ({', '.join('?' for _ in row)})",
                list(row.values()),
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
        return StoredAnswer.from_row(row, blocks=json.loads(row["blocks"]))

    def link_reply(self, link: ReplyLink) -> None:
        """Remember (or move) the bot's reply to a question message."""
        with self._lock:
            self._write(
                "insert or replace into slack_replies (channel, question_ts, reply_ts, thread_ts, answer_id, "
                "updated_at) values (?, ?, ?, ?, ?, ?)",
                [link.channel, link.question_ts, link.reply_ts, link.thread_ts, link.answer_id, now_iso()],
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
        row = feedback_row(answer, answer_id=answer_id, user=user, vote=vote, channel=channel, message_ts=message_ts)
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
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        now = time.time() if now is None else now
        since = now - RATE_WINDOW_S
        conn = self.db.conn
        with self._lock:
            try:
                # the file's write lock before the count, so another process's count waits for this one's insert
                # (the Python lock only orders this connection's threads; a deferred transaction let 11 of 30
                # concurrent questions through a limit of 10)
                with immediate(conn):
                    conn.execute("delete from slack_requests where user = ? and at <= ?", [user, since])
                    n, oldest = conn.execute(
                        "select count(*), min(at) from slack_requests where user = ?", [user]
                    ).fetchone()
                    if n < per_minute:
                        conn.execute("insert into slack_requests (user, at) values (?, ?)", [user, now])
            except sqlite3.Error as exc:
                raise StoreError(f"Could not write Slack state to {self.path}: {exc}") from exc
        return RateDecision(True) if n < per_minute else RateDecision(False, retry_after_s(oldest, now=now))

    # Jobs ----------------------------------------------------------------------------------------------------

    def enqueue_job(
        self, key: str, kind: str, payload: dict, *, max_unfinished: int | None = None, now: float | None = None
    ) -> Enqueued:
        """Queue a question as a pending job unless `key` is there already (`REPEAT`) or `max_unfinished` jobs are
        unfinished (`BUSY`). The file's write lock (`begin immediate`) is taken before the count, so a `qa-bot
        worker` or another serve on the same file cannot slip a job in between."""
        now = time.time() if now is None else now
        conn = self.db.conn
        with self._lock:
            try:
                with immediate(conn):
                    outcome = self._enqueue(conn, key, kind, payload, max_unfinished=max_unfinished, now=now)
            except sqlite3.Error as exc:
                raise StoreError(f"Could not queue a question in {self.path}: {exc}") from exc
        return outcome

    @staticmethod
    def _enqueue(
        conn: sqlite3.Connection, key: str, kind: str, payload: dict, *, max_unfinished: int | None, now: float
    ) -> Enqueued:
        if conn.execute("select exists (select 1 from slack_jobs where key = ?)", [key]).fetchone()[0]:
            return Enqueued.REPEAT
        if max_unfinished is not None:
            unfinished = conn.execute(
                "select count(*) from slack_jobs where state in ('pending', 'running')"
            ).fetchone()[0]
            if unfinished >= max_unfinished:
                return Enqueued.BUSY
        conn.execute(
            "insert into slack_jobs (key, kind, payload, state, attempts, created_at) "
            "values (?, ?, ?, 'pending', 0, ?)",
            [key, kind, json.dumps(payload), now],
        )
        return Enqueued.QUEUED

    def unfinished_jobs(self) -> int:
        with self._lock:
            row = self._one("select count(*) as n from slack_jobs where state in ('pending', 'running')", [])
        return row["n"] if row else 0

    def claim_job(self, worker: str, *, lease_s: float, now: float | None = None) -> Job | None:
        """Take the oldest pending job, or a running one whose lease expired, for `worker`. The file's write lock
        (`begin immediate`) is taken before the read, so two processes never pick the same row."""
        now = time.time() if now is None else now
        conn = self.db.conn
        with self._lock:
            try:
                # a plain read first: an idle worker's poll never takes the file's write lock
                if (
                    conn.execute(f"select exists (select 1 from slack_jobs where {_CLAIMABLE})", [now]).fetchone()[0]
                    == 0
                ):
                    return None
                with immediate(conn):
                    row = conn.execute(
                        f"select key from slack_jobs where {_CLAIMABLE} order by created_at limit 1", [now]
                    ).fetchone()
                    if row is not None:
                        conn.execute(
                            "update slack_jobs set state = 'running', claimed_by = ?, lease_until = ?, "
                            "attempts = attempts + 1 where key = ?",
                            [worker, now + lease_s, row[0]],
                        )
            except sqlite3.Error as exc:
                raise StoreError(f"Could not claim a job in {self.path}: {exc}") from exc
            if row is None:
                return None
            claimed = self._one("select * from slack_jobs where key = ?", [row[0]])
        assert claimed is not None  # claimed under the lock above; only a finished job is ever deleted
        return Job.from_row(claimed, payload=json.loads(claimed["payload"]))

    def extend_job_leases(self, held: Mapping[str, str], *, lease_s: float, now: float | None = None) -> int:
        now = time.time() if now is None else now
        extended = 0
        with self._lock:
            try:
                with self.db.conn:
                    for key, worker in held.items():
                        extended += self.db.execute(
                            "update slack_jobs set lease_until = ? where key = ? and claimed_by = ? "
                            "and state = 'running'",
                            [now + lease_s, key, worker],
                        ).rowcount
            except sqlite3.Error as exc:
                raise StoreError(f"Could not extend job leases in {self.path}: {exc}") from exc
        return extended

    def record_job_reply(self, key: str, reply_ts: str) -> None:
        with self._lock:
            self._write("update slack_jobs set reply_ts = ? where key = ?", [reply_ts, key])

    def finish_job(self, key: str, *, failed: bool = False, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._write(
                "update slack_jobs set state = ?, finished_at = ?, lease_until = null where key = ?",
                ["failed" if failed else "done", now, key],
            )

    def forget_finished_jobs(self, *, before: float) -> int:
        with self._lock:
            return self._write(
                "delete from slack_jobs where state in ('done', 'failed') and finished_at < ?", [before]
            ).rowcount

    # The admins' report, a second connection, closing ------------------------------------------------------

    def report(
        self,
        *,
        days: int,
        collections: frozenset[str] | None = None,
        now: float | None = None,
        top_gaps: int | None = None,
    ) -> Report:
        """The insights of `qa-bot report` (`bot.core.insights.build_report` over this file). It holds this
        state's lock while it reads: a report beside live answers belongs on a `reopen()`ed state."""
        from bot.core.insights import build_report

        gaps = {} if top_gaps is None else {"top_gaps": top_gaps}
        with self._lock:
            return build_report(self.db, days=days, collections=collections, now=now, **gaps)

    def reopen(self) -> SlackState:
        """Another `SlackState` on the same file, with a connection of its own."""
        return SlackState(self.path)

    def close(self) -> None:
        self.db.close()
