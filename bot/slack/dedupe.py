"""Which Slack deliveries were handled already: from memory first, and, when replicas share the state, from the
one database row that decides which replica handles a delivery.

Slack retries an event it thinks went unanswered, and a replayed slash command carries the same trigger id. The
ids of recent deliveries live in an LRU in memory (10,000 by default, loaded from the `slack_events` table at
start), so a repeat reaching the same process is dropped without a database call. What happens to a new id
depends on the state:

- SQLite (one machine): it is written to the table on a thread of its own, right after the ack, so a retry that
  comes after a restart is still recognised and an ack never waits on SQLite's lock (a long ingest holds it).
- PostgreSQL (`state.shared`: several replicas behind a load balancer): Slack's retry may reach another replica,
  whose memory never saw the first delivery, so the id is claimed in the database before the delivery is
  handled (`insert ... on conflict do nothing`, one round trip, no lock an ingest holds): only the replica whose
  insert wrote the row answers. When the database cannot be reached, the delivery is handled anyway (memory still
  stops repeats to this replica) and the failure is logged: a missed answer is worse than a rare double one.

A question (a mention, a DM, a follow-up, an edit, an `/ask`) is claimed by its job's row instead (`slack_jobs`,
keyed by the same id or delivery key: `bot.slack.listeners.questions`), so only `remember` (memory) is asked for it
here.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Executor, ThreadPoolExecutor

from bot.errors import StoreError
from bot.store.state_base import SlackStateStore

__all__ = ["SeenDeliveries", "MAX_REMEMBERED"]

logger = logging.getLogger(__name__)

MAX_REMEMBERED = 10_000


class SeenDeliveries:
    """Delivery ids seen recently: `first_sighting(id)` answers from memory, then persists a new id in the
    background (SQLite) or claims it in the shared database (PostgreSQL).

        seen = SeenDeliveries(open_state("qa.db"))
        if seen.first_sighting("Ev0001"):
            ...  # handle the event

    :param state: where the ids are kept across restarts (`slack_events`), and claimed when it is `shared`.
    :param max_ids: how many ids memory holds; the least recently seen are forgotten first.
    :param executor: where the writes run; default: one thread of its own.
    """

    def __init__(
        self, state: SlackStateStore, *, max_ids: int = MAX_REMEMBERED, executor: Executor | None = None
    ) -> None:
        if max_ids <= 0:
            raise ValueError(f"max_ids must be positive, got {max_ids}")
        self.state, self.max_ids = state, max_ids
        self._lock = threading.Lock()
        self._ids: OrderedDict[str, None] = OrderedDict(
            (event_id, None) for event_id in reversed(state.recent_event_ids(max_ids))
        )
        self._writes = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-bot-seen")

    def first_sighting(self, delivery_id: str) -> bool:
        """True the first time `delivery_id` is seen, False for every repeat: a repeat this process saw is
        answered from memory; with a shared state, a new id is True only for the replica that claims it."""
        if not self.remember(delivery_id):
            return False
        if self.state.shared:
            return self._claim(delivery_id)
        self._writes.submit(self._persist, delivery_id)
        return True

    def remember(self, delivery_id: str) -> bool:
        """True the first time this process sees `delivery_id`, from memory only: for a delivery whose claim is
        another row, a question's job (`bot.slack.listeners.questions`), keyed by the same id."""
        with self._lock:
            if delivery_id in self._ids:
                self._ids.move_to_end(delivery_id)
                return False
            self._ids[delivery_id] = None
            if len(self._ids) > self.max_ids:
                self._ids.popitem(last=False)
        return True

    def _claim(self, delivery_id: str) -> bool:
        try:
            claimed = self.state.first_sighting(delivery_id)
        except StoreError:
            logger.exception("could not claim a delivery id, handling it here delivery_id=%s", delivery_id)
            return True
        if not claimed:
            logger.info("delivery claimed by another replica delivery_id=%s", delivery_id)
        return claimed

    def _persist(self, delivery_id: str) -> None:
        try:
            self.state.first_sighting(delivery_id)
        except StoreError:  # memory still dedupes; only a restart within Slack's retry window could repeat it
            logger.exception("could not persist a delivery id delivery_id=%s", delivery_id)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the writes submitted so far are done (tests, shutdown)."""
        self._writes.submit(lambda: None).result(timeout=timeout_s)
