"""Which Slack deliveries were handled already, answered from memory so an ack never waits on SQLite's lock.

Slack retries an event it thinks went unanswered, and a replayed slash command carries the same trigger id. The
ids of recent deliveries live in an LRU in memory (10,000 by default, loaded from the `slack_events` table at
start); each new one is written to that table on a thread of its own, right after the ack, so a retry that comes
after a restart is still recognised.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Executor, ThreadPoolExecutor

from bot.errors import StoreError
from bot.store.state import SlackState

__all__ = ["SeenDeliveries", "MAX_REMEMBERED"]

logger = logging.getLogger(__name__)

MAX_REMEMBERED = 10_000


class SeenDeliveries:
    """Delivery ids seen recently: `first_sighting(id)` answers from memory and persists in the background.

        seen = SeenDeliveries(SlackState("qa.db"))
        if seen.first_sighting("Ev0001"):
            ...  # handle the event

    :param state: where the ids are kept across restarts (`slack_events`).
    :param max_ids: how many ids memory holds; the least recently seen are forgotten first.
    :param executor: where the writes run; default: one thread of its own.
    """

    def __init__(self, state: SlackState, *, max_ids: int = MAX_REMEMBERED, executor: Executor | None = None) -> None:
        if max_ids <= 0:
            raise ValueError(f"max_ids must be positive, got {max_ids}")
        self.state, self.max_ids = state, max_ids
        self._lock = threading.Lock()
        self._ids: OrderedDict[str, None] = OrderedDict(
            (event_id, None) for event_id in reversed(state.recent_event_ids(max_ids))
        )
        self._writes = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-bot-seen")

    def first_sighting(self, delivery_id: str) -> bool:
        """True the first time `delivery_id` is seen, False for every repeat; never touches the database itself."""
        with self._lock:
            if delivery_id in self._ids:
                self._ids.move_to_end(delivery_id)
                return False
            self._ids[delivery_id] = None
            if len(self._ids) > self.max_ids:
                self._ids.popitem(last=False)
        self._writes.submit(self._persist, delivery_id)
        return True

    def _persist(self, delivery_id: str) -> None:
        try:
            self.state.first_sighting(delivery_id)
        except StoreError:  # memory still dedupes; only a restart within Slack's retry window could repeat it
            logger.exception("could not persist a delivery id delivery_id=%s", delivery_id)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the writes submitted so far are done (tests, shutdown)."""
        self._writes.submit(lambda: None).result(timeout=timeout_s)
