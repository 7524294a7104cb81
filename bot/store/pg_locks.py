"""Taking turns between replicas that share a PostgreSQL database: a session advisory lock, tried, never waited
for, so a replica that finds another one doing the job skips its round instead of queueing behind it.

    with advisory_turn(settings.database_url, FEED_POLL_LOCK) as mine:
        if mine:
            poll_feeds(...)  # no other replica polls until this block ends

The lock lives as long as the connection opened for it: a replica that dies mid-round releases it with its
session, so the next round is never blocked by a crashed one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from bot.store.pg_connect import connect_pg

__all__ = ["FEED_POLL_LOCK", "JOB_QUEUE_LOCK", "advisory_turn"]

logger = logging.getLogger(__name__)

# Any numbers, the same in every qa-bot, apart from pg_migrations' migration lock. Advisory locks are per database.
FEED_POLL_LOCK = 716_301_017
# Held (transaction-scoped, waited for) by each capped enqueue of a question, so that counting the unfinished jobs
# and inserting one is a single step across replicas (`bot.store.pg_state`); a few hundred microseconds each.
JOB_QUEUE_LOCK = 716_301_018


@contextmanager
def advisory_turn(url: str, key: int) -> Iterator[bool]:
    """True inside the block for the one session holding advisory lock `key` in the database at `url`; False at
    once (nothing waits) while another session holds it. Released when the block ends.

    :raises StoreError: when the database cannot be reached (one line naming the host).
    """
    conn = connect_pg(url)
    try:
        row = conn.execute("select pg_try_advisory_lock(%s) as mine", [key]).fetchone()
        mine = bool(row and row["mine"])
        try:
            yield mine
        finally:
            if mine and not conn.closed and not conn.broken:
                conn.execute("select pg_advisory_unlock(%s)", [key])
    finally:
        conn.close()
