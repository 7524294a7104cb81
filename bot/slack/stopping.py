"""Stopping `qa-bot serve` and `qa-bot worker` the same way, on SIGTERM (systemd, `docker stop`) as on SIGINT
(Ctrl-C): take no new question, let the ones being read finish for up to `STOP_JOBS_S`, and exit 0 with a log
line naming the signal. A question still being read then, or still queued, stays in the database: another process
answers it, a queued one at once, one cut short once its lease (`QABOT_JOB_LEASE_S`) has run out.

    with stop_signals(lambda name: stop.set()):
        stop.wait()
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["STOP_JOBS_S", "STOP_SIGNALS", "stop_signals"]

logger = logging.getLogger(__name__)

# How long the questions being read may take once a stop is asked for: under the 10 s `docker stop` gives before
# SIGKILL, with room for the HTTP server to close. One read takes about a second; a question still being read
# after this is answered by another process after its lease.
STOP_JOBS_S = 8.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_signals(on_stop: Callable[[str], None]) -> Iterator[None]:
    """Inside the block, the first SIGTERM or SIGINT calls `on_stop(name)` ("SIGTERM"); later ones are ignored, so
    the stop already under way (bounded by `STOP_JOBS_S`) is not cut short. The previous handlers come back after
    the block. Outside the main thread (tests running `serve` or `run_worker` on a thread) nothing is installed:
    Python delivers signals to the main thread only.

    :param on_stop: runs in the main thread, inside the signal handler: set an event, or raise `KeyboardInterrupt`
        to end a server's blocking loop as Ctrl-C does.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stopping.is_set():
            logger.info("already stopping, signal ignored signal=%s", signal.Signals(signum).name)
            return
        stopping.set()
        on_stop(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
