"""Workers for the questions acknowledged to Slack: a few threads that claim jobs from the `slack_jobs` table, run
them, keep their leases alive and mark them finished, so a question survives the process that took it.

A job is claimed with a lease of `QABOT_JOB_LEASE_S` seconds that a heartbeat pushes forward every third of it
while the job runs. A worker that dies stops the heartbeat: once the lease has run out, any worker of any
replica (or `qa-bot worker`) claims the job again. The handler records the reply's `ts` in the job as soon as
Slack returns it, and a job claimed again with its reply recorded only finishes the bookkeeping, so the answer is
posted once. A duplicate is possible only if a worker dies after Slack took the reply and before that write (a
few milliseconds), or if a live worker stalls for a whole lease.

A job that raises is not tried again: the user gets the apology with a logged reference and the job is marked
failed. A job claimed more than `MAX_ATTEMPTS` times (its workers keep dying on it) is given up the same way.

    runner = JobRunner(threads=2, lease_s=60).start(state, QuestionJobs(kit, client))
    runner.wake()  # after queueing a job in this process: a worker starts on it at once
    runner.stop(timeout_s=30)  # lets the running jobs finish
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from bot.slack import blocks as slack_blocks
from bot.slack.listeners.shared import new_id
from bot.store.state_base import Job, SlackStateStore

__all__ = ["JobRunner", "JobWork", "MAX_ATTEMPTS", "POLL_S", "worker_name"]

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4  # the first run and at most 3 more after the workers holding it died
POLL_S = 0.5  # how often an idle worker looks for jobs queued by other processes, or whose lease expired
_ERROR_PAUSE_S = 5.0  # an idle worker whose database fails waits this long before trying again


def worker_name(thread_name: str | None = None) -> str:
    """Who holds a job, as `slack_jobs.claimed_by` says it: host, process id and thread.

    >>> worker_name("qa-bot-job-0").endswith(f":{os.getpid()}:qa-bot-job-0")
    True
    """
    return f"{socket.gethostname()}:{os.getpid()}:{thread_name or threading.current_thread().name}"


class JobWork(Protocol):
    """What a runner runs: the question handlers (`bot.slack.listeners.questions.QuestionJobs`)."""

    def run(self, job: Job, replied: Callable[[str], None]) -> None:
        """Answer the job; call `replied(ts)` as soon as Slack returned the posted reply's ts."""
        ...

    def apologise(self, job: Job, message: dict) -> None:
        """Show the asker `message` (the apology of a failed job) where the answer would have gone."""
        ...


class JobRunner:
    """`threads` workers claiming and running jobs, and a heartbeat keeping their leases, until `stop()`.

        runner = JobRunner(threads=2, lease_s=60).start(open_state(settings.database), work)

    :param threads: how many jobs run at once in this process (the reader itself reads one question at a time).
    :param lease_s: how long a claim lasts without a heartbeat: after a crash, how long its jobs wait.
    :param poll_s: how often idle workers look for jobs this process did not queue (`wake()` is at once).
    """

    def __init__(self, *, threads: int = 2, lease_s: float = 60.0, poll_s: float = POLL_S) -> None:
        if threads <= 0:
            raise ValueError(f"threads must be positive, got {threads}")
        if lease_s <= 0 or poll_s <= 0:
            raise ValueError(f"lease_s and poll_s must be positive, got {lease_s} and {poll_s}")
        self.threads, self.lease_s, self.poll_s = threads, lease_s, poll_s
        self._stopping = threading.Event()  # workers take no new job
        self._stopped = threading.Event()  # workers ended (or stop() gave up waiting): the heartbeat ends
        self._wakeups = threading.Condition()
        self._pending_wakeups = 0
        self._held: dict[str, str] = {}  # key -> claimed_by, of the jobs running here
        self._held_lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._heartbeat: threading.Thread | None = None
        self._state: SlackStateStore | None = None
        self._work: JobWork | None = None

    def start(self, state: SlackStateStore, work: JobWork) -> JobRunner:
        """Start the workers and the heartbeat on `state` (the Slack state of the app, or of `qa-bot worker`)."""
        if self._workers:
            raise RuntimeError("this JobRunner was started already")
        self._state, self._work = state, work
        for index in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"qa-bot-job-{index}", daemon=True)
            self._workers.append(thread)
        self._heartbeat = threading.Thread(target=self._beat, name="qa-bot-job-heartbeat", daemon=True)
        for thread in [*self._workers, self._heartbeat]:
            thread.start()
        logger.info("job workers started threads=%d lease_s=%g db=%s", self.threads, self.lease_s, state.path)
        return self

    def wake(self) -> None:
        """A job was queued in this process: let an idle worker claim it now rather than at its next poll."""
        with self._wakeups:
            self._pending_wakeups += 1
            self._wakeups.notify()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Let every worker finish its running job, then end; True when they all ended within `timeout_s`. A job
        still running after that is claimed again by another worker once its lease runs out."""
        self._stopping.set()
        with self._wakeups:
            self._wakeups.notify_all()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._workers:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        ended = not any(thread.is_alive() for thread in self._workers)
        self._stopped.set()
        if self._heartbeat is not None:
            self._heartbeat.join(5.0)
        logger.info("job workers stopped ended=%s", ended)
        return ended

    def is_idle(self) -> bool:
        """No job is running in this process (tests wait on it together with the state's `unfinished_jobs()`)."""
        with self._held_lock:
            return not self._held

    # Workers -------------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        assert self._state is not None
        worker = worker_name()
        failing = False
        while not self._stopping.is_set():
            try:
                job = self._state.claim_job(worker, lease_s=self.lease_s)
            except Exception:
                if not failing:  # once per outage, not every poll
                    logger.exception("could not claim a job worker=%s", worker)
                failing, job = True, None
                self._stopping.wait(_ERROR_PAUSE_S)
                continue
            failing = False
            if job is None:
                self._idle()
                continue
            with self._held_lock:
                self._held[job.key] = worker
            try:
                self._run(job)
            finally:
                with self._held_lock:
                    self._held.pop(job.key, None)

    def _idle(self) -> None:
        with self._wakeups:
            if not self._pending_wakeups and not self._stopping.is_set():
                self._wakeups.wait(self.poll_s)
            self._pending_wakeups = max(0, self._pending_wakeups - 1)

    def _run(self, job: Job) -> None:
        assert self._state is not None and self._work is not None
        state, work = self._state, self._work
        if job.attempts > 1:
            logger.warning("job claimed again key=%s kind=%s attempts=%d", job.key, job.kind, job.attempts)
        failed, reference = False, ""
        if job.attempts > MAX_ATTEMPTS and job.reply_ts is None:
            failed, reference = True, new_id()[:8]
            logger.error(
                "job given up key=%s kind=%s attempts=%d reference=%s", job.key, job.kind, job.attempts, reference
            )
        else:
            try:
                work.run(job, lambda ts: self._record_reply(job, ts))
            except Exception:
                failed, reference = True, new_id()[:8]
                logger.exception("job failed key=%s kind=%s reference=%s", job.key, job.kind, reference)
        if failed:
            try:
                work.apologise(job, slack_blocks.error_message(reference))
            except Exception:
                logger.exception("could not show the apology reference=%s", reference)
        try:
            state.finish_job(job.key, failed=failed)
        except Exception:  # claimed again after its lease: its reply is recorded, so only the bookkeeping repeats
            logger.exception("could not mark a job finished key=%s", job.key)

    def _record_reply(self, job: Job, reply_ts: str) -> None:
        """The reply is posted: a failed write must not turn it into an apology too (only a crash before the job
        is finished could then post it again)."""
        assert self._state is not None
        try:
            self._state.record_job_reply(job.key, reply_ts)
        except Exception:
            logger.exception("could not record a job's reply key=%s reply_ts=%s", job.key, reply_ts)

    # Heartbeat -----------------------------------------------------------------------------------------------

    def _beat(self) -> None:
        assert self._state is not None
        while not self._stopped.wait(self.lease_s / 3):
            with self._held_lock:
                held = dict(self._held)
            if not held:
                continue
            try:
                extended = self._state.extend_job_leases(held, lease_s=self.lease_s)
            except Exception:
                logger.exception("could not extend job leases jobs=%d", len(held))
                continue
            if extended < len(held):
                logger.warning("job leases lost held=%d extended=%d", len(held), extended)
