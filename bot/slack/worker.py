"""`qa-bot worker`: job workers without the HTTP front, so reading questions can scale out on other machines.

It answers the questions that `qa-bot serve` replicas took as jobs (`slack_jobs`), with the same handlers, reader,
access policy and Slack client as `serve`, until SIGTERM or SIGINT; then the questions it is reading are finished
and it exits. With PostgreSQL any number of workers on any machines share the queue. With a SQLite file a worker
shares it only with the `serve` on the same machine using the same file (said in a warning at start).

    run_worker(load_settings(), threads=2)
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from bot.core.access import load_access_policy
from bot.core.service import build_service
from bot.settings import Settings
from bot.slack.app import token_team_id
from bot.slack.gate import Gate
from bot.slack.jobs import JobRunner
from bot.slack.listeners import ListenerKit
from bot.slack.listeners.questions import QuestionJobs
from bot.slack.server import connect_to_slack
from bot.slack.stopping import STOP_JOBS_S, stop_signals
from bot.store import open_state

__all__ = ["run_worker"]

logger = logging.getLogger(__name__)


def run_worker(settings: Settings, *, threads: int, stop: threading.Event | None = None) -> None:
    """Check the Slack token, load the reader, then answer queued questions until SIGTERM/SIGINT (or `stop`).

    :param threads: job workers in this process (one reads at a time; the others post, or wait for the reader).
    :param stop: ends the worker when set (tests); SIGTERM and SIGINT set it when this runs in the main thread.
    :raises ConfigError: when the bot token is missing or rejected, Slack cannot be reached, the reader model is
        missing or the access file is wrong; always before the model loads, for Slack.
    """
    client = connect_to_slack(settings, receiving=False)
    if settings.database_url is None:
        logger.warning(
            "qa-bot worker on a SQLite file answers only the questions taken by a qa-bot serve on this machine "
            "with the same file db=%s; for workers on other machines use PostgreSQL (QABOT_DATABASE_URL)",
            settings.db_path,
        )
    service = build_service(settings)
    policy = load_access_policy(settings.access_file, service.store)
    service.warm_up()
    # the gate needs a workspace even though a worker only reads what a serve let in
    gate = Gate.from_settings(settings, bot_team_id=None if settings.team_ids else token_team_id(client), policy=policy)
    state = open_state(settings.database)
    work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-bot-work")  # the kit's; jobs do not use it
    kit = ListenerKit(settings, service, state, work, gate=gate)
    stop = stop or threading.Event()
    stopped_by = "stop"  # the event, set by a test

    def on_signal(name: str) -> None:
        nonlocal stopped_by
        stopped_by = name
        stop.set()

    with stop_signals(on_signal):
        runner = JobRunner(threads=threads, lease_s=settings.job_lease_s).start(state, QuestionJobs(kit, client))
        logger.info("worker ready threads=%d db=%s", threads, settings.database_label)
        try:
            while not stop.wait(1.0):  # woken now and then, so a signal is handled promptly
                pass
        finally:
            logger.info("worker stopping, finishing the questions being answered")
            finished = runner.stop(timeout_s=STOP_JOBS_S)
            work.shutdown(wait=False)
            state.close()
    logger.info("worker stopped signal=%s questions_finished=%s", stopped_by, finished)
