"""The Slack app (Bolt): mentions, DMs, /ask, /ingest, /qa-help, edits, deletes, feedback and share buttons.

Listeners only do Slack I/O. Each one acknowledges at once and hands the slow part (reading, fetching, storing)
to a small worker pool, so Bolt's own threads stay free to acknowledge the next request within Slack's 3 s. A
question (a mention, a DM, a follow-up, an edit, an `/ask`) becomes a job in the database instead, answered by the
job workers (`bot.slack.jobs`) of this process or of any other sharing the database, so it survives a crash.
Answering goes through `AnsweringService`; wording comes from prompts/ through `slack_blocks`. The listeners live
in `bot.slack.listeners`, by kind: events, commands, actions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from slack_bolt import App, BoltResponse
from slack_bolt.error import BoltError
from slack_bolt.logger import get_bolt_logger
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.core.access import load_access_policy
from bot.core.service import AnsweringService
from bot.errors import ConfigError
from bot.settings import Settings
from bot.slack.dedupe import SeenDeliveries
from bot.slack.gate import Gate
from bot.slack.jobs import JobRunner
from bot.slack.listeners import ListenerKit, register_all
from bot.slack.listeners.questions import QuestionJobs
from bot.slack.listeners.shared import question_text
from bot.store import SlackStateStore, open_state

__all__ = [
    "create_app",
    "slack_web_client",
    "token_team_id",
    "question_text",
    "WORKER_THREADS",
    "FETCH_THREADS",
    "RATE_LIMIT_RETRIES",
]

logger = logging.getLogger(__name__)

WORKER_THREADS = 2  # answers take the CPU (and a lock); a second worker lets clicks and posts overlap a reading
# (the same number of job workers answer the questions taken as jobs: one reads while the other posts)
RATE_LIMIT_RETRIES = 2  # Slack's HTTP 429s are waited out (Retry-After) this many times per call
FETCH_THREADS = 2  # /ingest fetches wait on other servers: their own pool, so a slow link never delays an answer


class _DropTokenSkippedWarning(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN from the environment goes unused when it is also given a client; giving it
    our own client (base URL, proxies, tests) is deliberate, and the token is the client's, so say nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


_BOLT_APP_LOGGER = get_bolt_logger(App)
if not any(isinstance(f, _DropTokenSkippedWarning) for f in _BOLT_APP_LOGGER.filters):
    _BOLT_APP_LOGGER.addFilter(_DropTokenSkippedWarning())


def create_app(
    settings: Settings,
    service: AnsweringService,
    *,
    client: WebClient | None = None,
    store: SlackStateStore | None = None,
    executor: Executor | None = None,
    fetch_executor: Executor | None = None,
    jobs: JobRunner | None = None,
    intake_executor: Executor | None = None,
) -> App:
    """The Bolt app with every listener registered; serve it with `bot.slack.server.serve` or dispatch to it in tests.

        service = build_service(settings)
        app = create_app(settings, service)
        SlackRequestHandler(app)  # or SocketModeHandler(app, app_token)

    :param settings: Slack credentials (`SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`), `slack_api_url`,
        `admin_user_ids`, `rate_limit_per_minute`, fetch limits and `database` (for the Slack tables).
    :param service: answers questions; its store also receives `/ingest` articles.
    :param client: a ready `WebClient` (tests, proxies); default: one for `SLACK_BOT_TOKEN` at `slack_api_url`.
    :param store: the Slack tables (dedup, replies, feedback, rate limit); default: beside the library
        (`settings.database`: PostgreSQL for a `postgresql://` URL, shared by every replica, else the SQLite file).
    :param executor: where the work after each ack runs; default: a pool of `WORKER_THREADS` threads.
        Pass your own to wait for pending work (`executor.shutdown(wait=True)`) before stopping.
    :param fetch_executor: where `/ingest` fetches and stores; default: a pool of `FETCH_THREADS` threads.
    :param jobs: the job workers that answer the questions taken as jobs; create_app starts them on the Slack state.
        Default: `WORKER_THREADS` of them, with `QABOT_JOB_LEASE_S` leases, never stopped. Pass your own to stop
        them (`jobs.stop()`) before stopping.
    :param intake_executor: where a question is recorded right after the ack when the state is a SQLite file;
        default: one thread of its own.
    :raises ConfigError: when the bot token or the signing secret is missing, Slack rejects the token, or the
        access file (`QABOT_ACCESS_FILE`) or the admins' ids are wrong.
    """
    policy = load_access_policy(settings.access_file, service.store)
    if client is None:
        if settings.slack_bot_token is None:
            raise ConfigError(
                "SLACK_BOT_TOKEN is not set. Install the Slack app (see manifest.yaml) and set "
                "SLACK_BOT_TOKEN to its Bot User OAuth Token (xoxb-…)."
            )
        client = slack_web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    if not signing_secret and settings.slack_app_token is None:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is not set. Copy it from the Slack app's Basic Information page, "
            "or set SLACK_APP_TOKEN (xapp-…) to use Socket Mode instead of a public URL."
        )
    gate: Gate | None = None

    def only_allowed_teams(body: dict, next: Callable[[], BoltResponse]) -> BoltResponse:
        assert gate is not None  # set before the first request can arrive
        return gate.only_allowed_teams(body, next)

    try:
        app = App(
            # identity
            name="qa-bot",
            client=client,
            signing_secret=signing_secret,
            # requests from other workspaces are dropped before anything else looks at them
            before_authorize=only_allowed_teams,
            # Slack's rules: verify every request, check the token once at start (auth.test)
            request_verification_enabled=True,
            token_verification_enabled=True,
            ignoring_self_events_enabled=True,
            # listeners only acknowledge and enqueue, so a few threads are enough
            listener_executor=ThreadPoolExecutor(max_workers=4, thread_name_prefix="qa-bot-slack"),
        )
    except (BoltError, SlackApiError, SlackClientError, OSError) as exc:
        raise ConfigError(
            f"Slack did not accept the bot token ({exc}). Check SLACK_BOT_TOKEN"
            f"{' and QABOT_SLACK_API_URL' if settings.slack_api_url else ''}."
        ) from exc
    gate = Gate.from_settings(
        settings, bot_team_id=None if settings.team_ids else _bot_team_id(app, client), policy=policy
    )
    work = executor or ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="qa-bot-work")
    fetches = fetch_executor or ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="qa-bot-fetch")
    state = store or open_state(settings.database)
    kit = ListenerKit(settings, service, state, work, fetches=fetches, seen=SeenDeliveries(state), gate=gate)
    runner = jobs or JobRunner(threads=WORKER_THREADS, lease_s=settings.job_lease_s)
    questions = QuestionJobs(kit, client, wake=runner.wake, intake=intake_executor)
    register_all(app, kit, questions)
    runner.start(state, questions)
    return app


def slack_web_client(token: str, base_url: str | None = None, *, timeout: int = 30) -> WebClient:
    """The Web API client the app posts with. Slack rate-limits `chat.postMessage` (about one a second per
    channel), and a busy channel or several replicas answering at once can meet it: an HTTP 429 is waited out
    (its Retry-After) and the call sent again, `RATE_LIMIT_RETRIES` times, instead of failing the answer and then
    its apology, which Slack would refuse as well. Nothing else is retried: a call that failed otherwise may have
    posted."""
    client = WebClient(token=token, base_url=base_url or WebClient.BASE_URL, timeout=timeout)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES))
    return client


def _bot_team_id(app: App, client: WebClient) -> str | None:
    """The bot token's workspace: from the auth.test Bolt made at start-up, else asked again."""
    for middleware in getattr(app, "_middleware_list", []):
        result = getattr(middleware, "auth_test_result", None)
        if result is not None and result.get("team_id"):
            return str(result["team_id"])
    return token_team_id(client)


def token_team_id(client: WebClient) -> str:
    """The workspace of the client's bot token, asked of Slack (`auth.test`).

    :raises ConfigError: when Slack does not say; QABOT_TEAM_IDS then has to.
    """
    try:
        return str(client.auth_test()["team_id"])
    except (SlackApiError, SlackClientError, OSError, KeyError) as exc:
        raise ConfigError(f"Cannot tell the bot token's workspace ({exc}). Set QABOT_TEAM_IDS.") from exc
