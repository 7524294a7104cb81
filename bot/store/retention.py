"""The daily sweep of `qa-bot serve`: questions older than `QABOT_QUESTION_RETENTION_DAYS` are deleted with their
answers, reply links and feedback (`SlackStateStore.forget_questions`), and question jobs finished over a day ago
(`forget_finished_jobs`: a retried delivery comes within minutes), on a thread of its own with its own connection,
in whichever engine holds the state (the SQLite file, or PostgreSQL shared by the replicas: there any replica's
sweep deletes for all, and a second one in the same day finds nothing left to delete).

    sweeper = RetentionSweeper("qa.db", retention_days=90).start()  # or a postgresql:// URL
    ...
    sweeper.stop(timeout_s=5)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bot.store import SlackStateStore, open_state

__all__ = ["DAY_S", "JOB_MEMORY_S", "RetentionSweeper"]

logger = logging.getLogger(__name__)

DAY_S = 86400.0
JOB_MEMORY_S = DAY_S  # finished jobs are kept this long: their keys still stop a retried delivery


class RetentionSweeper:
    """Forget old questions at start and then every `interval_s` (a day) until stopped.

    :param location: the state's database: the SQLite file, or a `postgresql://` URL (`bot.store.open_state`).
    :param retention_days: questions asked longer ago than this are deleted.
    :param on_sweep: called with the number deleted after every sweep (tests wait on it instead of sleeping).
    """

    def __init__(
        self,
        location: str | Path,
        *,
        retention_days: int,
        interval_s: float = DAY_S,
        on_sweep: Callable[[int], None] | None = None,
    ) -> None:
        if retention_days <= 0:
            raise ValueError(f"retention_days must be positive, got {retention_days}")
        self.location, self.retention_days = str(location), retention_days
        self.interval_s, self.on_sweep = interval_s, on_sweep
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qa-bot-retention", daemon=True)

    def start(self) -> RetentionSweeper:
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        state: SlackStateStore | None = None
        try:
            while not self._stop.is_set():
                deleted = 0
                try:
                    state = state or open_state(self.location)  # a database down at start is tried again tomorrow
                    deleted = state.forget_questions(before=time.time() - self.retention_days * DAY_S)
                    jobs = state.forget_finished_jobs(before=time.time() - JOB_MEMORY_S)
                    logger.info(
                        "old questions deleted count=%d retention_days=%d finished_jobs=%d",
                        deleted,
                        self.retention_days,
                        jobs,
                    )
                except Exception:  # a locked, full or unreachable database must not end the thread
                    logger.exception("question retention sweep failed")
                if self.on_sweep is not None:
                    self.on_sweep(deleted)
                self._stop.wait(self.interval_s)
        finally:
            if state is not None:
                state.close()
