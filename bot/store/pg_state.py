"""The Slack app's state in PostgreSQL (`SlackStateStore` for several replicas): the `slack_` tables of schema
version 2, with the same behaviour as `SlackState` in the SQLite file, made safe across processes.

What SQLite got from being one file on one machine, the SQL does here: a delivery id is claimed with
`insert ... on conflict do nothing`, so of two replicas that receive the same retried event exactly one sees its
row inserted; a question is counted against the rate limit by one upsert of the user's row (the row lock orders
concurrent questions, and the count and the decision happen inside the statement), so ten questions spread over
three replicas are still ten; retention deletes the old questions with their links and feedback in one
transaction; a question waiting for a worker is one `slack_jobs` row, claimed by one worker of any replica with
`for update skip locked` (a row another worker is claiming is passed over, not waited for).

    state = PostgresSlackState("postgresql://qa@db.internal/qa")
    if state.first_sighting("Ev0001"):
        ...  # this replica answers the event
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg import ClientCursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from bot.store.pg_connect import PgSession, describe_url, store_errors
from bot.store.pg_locks import JOB_QUEUE_LOCK
from bot.store.pg_migrations import migrate_pg
from bot.store.state_base import (
    EVENT_MEMORY_S,
    RATE_WINDOW_S,
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
)

if TYPE_CHECKING:
    from bot.core.insights import Report

__all__ = ["PostgresSlackState"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# One statement counts the user's questions of the last minute, decides, and records the new one only when
# allowed. On conflict the row is locked, so a concurrent question (another thread or replica) waits and then
# sees this one's stamps. `set` expressions all read the row as it was; `returning` reads it as written.
_ALLOW_SQL = """
insert into slack_rate_limits as r ("user", stamps, allowed) values (%(user)s, array[%(now)s::float8], true)
on conflict ("user") do update set
  allowed = (select count(*) from unnest(r.stamps) s where s > %(since)s) < %(limit)s,
  stamps = array(select s from unnest(r.stamps) s where s > %(since)s order by s)
    || case when (select count(*) from unnest(r.stamps) s where s > %(since)s) < %(limit)s
       then array[%(now)s::float8] else array[]::float8[] end
returning allowed, (select min(s) from unnest(stamps) s) as oldest
"""

# The oldest pending job, or running one whose lease expired; a row another worker is locking is skipped, so
# concurrent claims each get a different job (or none) without waiting for one another.
_CLAIM_SQL = """
update slack_jobs set state = 'running', claimed_by = %(worker)s, lease_until = %(until)s, attempts = attempts + 1
where key = (
  select key from slack_jobs
  where state in ('pending', 'running') and (state = 'pending' or lease_until < %(now)s)
  order by created_at limit 1
  for update skip locked
)
returning key, kind, payload, attempts, reply_ts, claimed_by, created_at
"""

# A capped enqueue, sent as one simple query (one round trip, one implicit transaction): the advisory lock is taken
# by the first statement and held to the end of the second, whose snapshot (read committed: one per statement) is
# taken after the lock, so it counts every job inserted by an enqueue that held the lock before. A single statement
# could not do it: its snapshot would predate the wait for the lock, and two askers would both see room for one.
# A repeat is told apart from a full queue, so a retry of a queued question never gets the busy reply.
_ENQUEUE_CAPPED_SQL = """
select pg_advisory_xact_lock(%(lock)s);
with present as (
  select exists (select 1 from slack_jobs where key = %(key)s) as repeat
), room as (
  select count(*) < %(cap)s as free from slack_jobs where state in ('pending', 'running')
), added as (
  insert into slack_jobs (key, kind, payload, state, attempts, created_at)
  select %(key)s, %(kind)s, %(payload)s, 'pending', 0, %(now)s
  where not (select repeat from present) and (select free from room)
  on conflict (key) do nothing
  returning 1
)
select exists (select 1 from added) as queued, (select repeat from present) as repeat,
  (select free from room) as free
"""


class PostgresSlackState:
    """The Slack tables in the PostgreSQL database of the article library, shared by every replica.

        state = PostgresSlackState(settings.database_url)
        decision = state.allow_question("U0001", per_minute=10)

    One connection shared by Bolt's worker threads, each call under a lock (`bot.store.pg_connect.PgSession`); a
    connection the server dropped (a restart, a failover) is replaced on the next call, and a read that finds it
    dropped runs again on the new one, so one lost connection does not end the bot's memory.

    :param url: a `postgresql://` URL; the schema is created or upgraded on open (`bot.store.pg_migrations`).
    :raises StoreError: when the server cannot be reached (one line naming the host), or the schema upgrade fails.
    """

    shared = True  # replicas share it: deliveries are claimed here, rate limits counted here

    def __init__(self, url: str) -> None:
        self.location = url
        self.path = describe_url(url)  # never the password
        self.session = PgSession(url, label=self.path)
        try:
            migrate_pg(self.conn, label=self.path)
        except BaseException:
            self.session.close()
            raise

    @property
    def conn(self) -> psycopg.Connection[DictRow]:
        """The current connection (a new one after the server dropped the last)."""
        return self.session.conn

    @contextmanager
    def _db(self, doing: str) -> Iterator[psycopg.Connection[DictRow]]:
        """The connection for a write, under the lock, replaced first if the server dropped it; a database error
        becomes a one-line `StoreError` saying what was being done."""
        with store_errors(doing, self.path), self.session.connection() as conn:
            yield conn

    def _read(self, doing: str, run: Callable[[psycopg.Connection[DictRow]], T]) -> T:
        """`run(conn)` for a read, run again on a new connection when the server dropped the last; a database
        error becomes a one-line `StoreError` saying what was being done."""
        with store_errors(doing, self.path):
            return self.session.read(run)

    # Retry deduplication -------------------------------------------------------------------------------------

    def first_sighting(self, event_id: str, *, now: float | None = None) -> bool:
        """Claim a delivery id; True for the one process that inserted it first, False for every repeat."""
        now = time.time() if now is None else now
        with self._db("record a Slack delivery") as conn:
            claimed = conn.execute(
                "insert into slack_events (event_id, seen_at) values (%s, %s) on conflict (event_id) do nothing",
                [event_id, now],
            ).rowcount
            if claimed:
                conn.execute("delete from slack_events where seen_at < %s", [now - EVENT_MEMORY_S])
        return claimed == 1

    def recent_event_ids(self, limit: int) -> list[str]:
        """The ids recorded most recently (newest first), by every replica."""
        rows = self._read(
            "read Slack deliveries",
            lambda conn: conn.execute(
                "select event_id from slack_events order by seen_at desc limit %s", [limit]
            ).fetchall(),
        )
        return [row["event_id"] for row in rows]

    # Answers and replies -------------------------------------------------------------------------------------

    def save_answer(self, answer: StoredAnswer) -> None:
        """Keep an answer the app is about to show (its id goes into the message's buttons)."""
        row = answer_values(answer, asked_at=time.time())
        row["blocks"] = Jsonb(row["blocks"])
        columns = ", ".join(f'"{name}"' for name in row)
        values = ", ".join(f"%({name})s" for name in row)
        updates = ", ".join(f'"{name}" = excluded."{name}"' for name in row if name != "id")
        with self._db("store an answer") as conn:
            conn.execute(
                f"insert into slack_answers ({columns}) values ({values}) on conflict (id) do update set {updates}",
                row,
            )

    def get_answer(self, answer_id: str) -> StoredAnswer | None:
        row = self._read(
            "read an answer",
            lambda conn: conn.execute(
                "select id, question, answer, article_id, score, text, blocks, collections from slack_answers "
                "where id = %s",
                [answer_id],
            ).fetchone(),
        )
        if row is None:
            return None
        return StoredAnswer.from_row(row, blocks=row["blocks"])

    def forget_questions(self, *, before: float) -> int:
        """Delete the questions asked before `before` (epoch seconds) with their answers, reply links and
        feedback, in one transaction; returns how many questions went."""
        before_iso = datetime.fromtimestamp(before, UTC).isoformat(timespec="seconds")
        old = "select id from slack_answers where asked_at < %(before)s"
        params = {"before": before, "before_iso": before_iso}
        with self._db("delete old questions") as conn, conn.transaction():
            conn.execute(f"delete from slack_replies where answer_id in ({old})", params)
            conn.execute(
                f"delete from slack_feedback where answer_id in ({old}) or clicked_at < %(before_iso)s", params
            )
            return conn.execute("delete from slack_answers where asked_at < %(before)s", params).rowcount

    def link_reply(self, link: ReplyLink) -> None:
        """Remember (or move) the bot's reply to a question message."""
        with self._db("link a reply") as conn:
            conn.execute(
                "insert into slack_replies (channel, question_ts, reply_ts, thread_ts, answer_id, updated_at) "
                "values (%s, %s, %s, %s, %s, %s) on conflict (channel, question_ts) do update set "
                "reply_ts = excluded.reply_ts, thread_ts = excluded.thread_ts, answer_id = excluded.answer_id, "
                "updated_at = excluded.updated_at",
                [link.channel, link.question_ts, link.reply_ts, link.thread_ts, link.answer_id, now_iso()],
            )

    def reply_to(self, channel: str, question_ts: str) -> ReplyLink | None:
        row = self._read(
            "read a reply link",
            lambda conn: conn.execute(
                "select channel, question_ts, reply_ts, thread_ts, answer_id from slack_replies "
                "where channel = %s and question_ts = %s",
                [channel, question_ts],
            ).fetchone(),
        )
        return ReplyLink(**row) if row else None

    def thread_context(self, channel: str, thread_ts: str, *, before_ts: str | None = None) -> ThreadContext:
        """The questions the bot answered in a thread (oldest first) and the articles its answers cited; empty
        when the bot never answered there."""
        rows = self._read(
            "read a thread",
            lambda conn: conn.execute(
                "select a.question, a.article_id from slack_replies r join slack_answers a on a.id = r.answer_id "
                "where r.channel = %s and r.thread_ts = %s and r.question_ts < %s order by r.question_ts",
                [channel, thread_ts, before_ts or "9999999999.999999"],
            ).fetchall(),
        )
        return ThreadContext(
            questions=tuple(row["question"] for row in rows),
            article_ids=frozenset(row["article_id"] for row in rows if row["article_id"] is not None),
        )

    def answer_id_of_reply(self, channel: str, reply_ts: str) -> str | None:
        row = self._read(
            "read a reply link",
            lambda conn: conn.execute(
                "select answer_id from slack_replies where channel = %s and reply_ts = %s", [channel, reply_ts]
            ).fetchone(),
        )
        return row["answer_id"] if row else None

    def forget_reply(self, channel: str, question_ts: str) -> None:
        with self._db("forget a reply link") as conn:
            conn.execute("delete from slack_replies where channel = %s and question_ts = %s", [channel, question_ts])

    # Feedback ------------------------------------------------------------------------------------------------

    def record_feedback(
        self, *, answer_id: str | None, user: str, vote: str, channel: str | None, message_ts: str | None
    ) -> dict:
        """Store one 👍/👎 click with the question, answer and article it was about; returns the stored row."""
        answer = self.get_answer(answer_id) if answer_id else None
        row = feedback_row(answer, answer_id=answer_id, user=user, vote=vote, channel=channel, message_ts=message_ts)
        columns = ", ".join(f'"{name}"' for name in row)
        values = ", ".join(f"%({name})s" for name in row)
        with self._db("store feedback") as conn:
            conn.execute(f"insert into slack_feedback ({columns}) values ({values})", row)
        return row

    def feedback(self) -> list[dict]:
        """Every stored feedback click, oldest first."""
        return self.query("select * from slack_feedback order by id")

    # Rate limit ----------------------------------------------------------------------------------------------

    def allow_question(self, user: str, *, per_minute: int, now: float | None = None) -> RateDecision:
        """Count a question against a user's budget of `per_minute` questions in any 60 s, across every replica;
        refuse past it (a refused question does not count)."""
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        now = time.time() if now is None else now
        params = {"user": user, "now": now, "since": now - RATE_WINDOW_S, "limit": per_minute}
        with self._db("count a question") as conn:
            row = conn.execute(_ALLOW_SQL, params).fetchone()
        assert row is not None  # insert ... returning: one row
        if row["allowed"]:
            return RateDecision(True)
        return RateDecision(False, retry_after_s(row["oldest"], now=now))

    # Jobs ----------------------------------------------------------------------------------------------------

    def enqueue_job(
        self, key: str, kind: str, payload: dict, *, max_unfinished: int | None = None, now: float | None = None
    ) -> Enqueued:
        """Queue a question as a pending job unless `key` is there already (queued by any replica: `REPEAT`) or
        `max_unfinished` jobs of every replica are unfinished (`BUSY`); one round trip either way. Capped enqueues
        take turns on an advisory lock for the length of one insert, so concurrent replicas never overshoot."""
        now = time.time() if now is None else now
        params = {"key": key, "kind": kind, "payload": Jsonb(payload), "now": now}

        def enqueue(conn: psycopg.Connection[DictRow]) -> Enqueued:
            if max_unfinished is None:
                inserted = conn.execute(
                    "insert into slack_jobs (key, kind, payload, state, attempts, created_at) "
                    "values (%(key)s, %(kind)s, %(payload)s, 'pending', 0, %(now)s) on conflict (key) do nothing",
                    params,
                ).rowcount
                return Enqueued.QUEUED if inserted == 1 else Enqueued.REPEAT
            # client-side binding: the only way to send two statements with parameters in one simple query
            with ClientCursor(conn) as cursor:
                cursor.execute(_ENQUEUE_CAPPED_SQL, {**params, "lock": JOB_QUEUE_LOCK, "cap": max_unfinished})
                cursor.nextset()  # past the lock's row
                row = cursor.fetchone()
            assert row is not None  # a select without from: one row
            if row["queued"]:
                return Enqueued.QUEUED
            if row["repeat"] or row["free"]:  # free but not inserted: an uncapped insert of the same key won the race
                return Enqueued.REPEAT
            return Enqueued.BUSY

        # keyed by the delivery, the insert is safe to send again: on a connection the server dropped it is, on a
        # new one, so the question waits in the table instead of getting an apology (a first try that committed
        # before the drop comes back as REPEAT, and a worker answers it all the same)
        return self._read("queue a question", enqueue)

    def unfinished_jobs(self) -> int:
        with self._db("count the queued questions") as conn:
            row = conn.execute("select count(*) as n from slack_jobs where state in ('pending', 'running')").fetchone()
        return int(row["n"]) if row else 0

    def claim_job(self, worker: str, *, lease_s: float, now: float | None = None) -> Job | None:
        now = time.time() if now is None else now
        with self._db("claim a job") as conn:
            row = conn.execute(_CLAIM_SQL, {"worker": worker, "until": now + lease_s, "now": now}).fetchone()
        return Job.from_row(row, payload=row["payload"]) if row else None

    def extend_job_leases(self, held: Mapping[str, str], *, lease_s: float, now: float | None = None) -> int:
        if not held:
            return 0
        now = time.time() if now is None else now
        with self._db("extend job leases") as conn:
            return conn.execute(
                "update slack_jobs j set lease_until = %s from unnest(%s::text[], %s::text[]) as h(key, worker) "
                "where j.key = h.key and j.claimed_by = h.worker and j.state = 'running'",
                [now + lease_s, list(held), list(held.values())],
            ).rowcount

    def record_job_reply(self, key: str, reply_ts: str) -> None:
        with self._db("record a job's reply") as conn:
            conn.execute("update slack_jobs set reply_ts = %s where key = %s", [reply_ts, key])

    def finish_job(self, key: str, *, failed: bool = False, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._db("finish a job") as conn:
            conn.execute(
                "update slack_jobs set state = %s, finished_at = %s, lease_until = null where key = %s",
                ["failed" if failed else "done", now, key],
            )

    def forget_finished_jobs(self, *, before: float) -> int:
        with self._db("delete finished jobs") as conn:
            return conn.execute(
                "delete from slack_jobs where state in ('done', 'failed') and finished_at < %s", [before]
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
        """The insights of `qa-bot report`, read from these tables (`bot.store.pg_insights`)."""
        from bot.store.pg_insights import build_pg_report

        return self._read(
            "read the questions for the report",
            lambda conn: build_pg_report(conn, days=days, collections=collections, now=now, top_gaps=top_gaps),
        )

    def reopen(self) -> PostgresSlackState:
        """Another `PostgresSlackState` on the same database, with a connection of its own."""
        return PostgresSlackState(self.location)

    def query(self, sql: str, params: list | tuple | dict = ()) -> list[dict]:
        """Rows of any read query, as dicts (tests, an admin's look at the tables)."""
        return self._read("read Slack state", lambda conn: [dict(row) for row in conn.execute(sql, params).fetchall()])

    def close(self) -> None:
        self.session.close()
