"""Run the Slack app: Socket Mode when SLACK_APP_TOKEN is set, else HTTP (waitress) with /slack/events and /healthz."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.core import messages
from bot.core.access import load_access_policy
from bot.core.service import build_service
from bot.errors import ConfigError
from bot.settings import Settings
from bot.slack.app import WORKER_THREADS, create_app, slack_web_client
from bot.slack.jobs import JobRunner
from bot.slack.stopping import STOP_JOBS_S, stop_signals
from bot.store import is_postgres_url
from bot.store.retention import RetentionSweeper

if TYPE_CHECKING:
    from bot.core.feeds import FeedPoller

__all__ = [
    "serve",
    "connect_to_slack",
    "STOP_JOBS_S",
    "create_wsgi_app",
    "create_http_server",
    "EVENTS_PATH",
    "HEALTH_PATH",
    "MAX_BODY_BYTES",
    "is_signed_by_slack",
    "check_health",
]

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
HTTP_THREADS = 8
# Slack's largest payloads (a modal's view state, a long message) are tens of KB; anything past 1 MB is not Slack.
MAX_BODY_BYTES = 1024 * 1024
_PLAIN = [("Content-Type", "text/plain; charset=utf-8")]
HEALTH_TIMEOUT_S = 2  # libpq's shortest connect_timeout; a load balancer's check should not hang much longer


def check_health(database: str | Path, *, min_free_mb: int) -> tuple[bool, dict]:
    """Whether the bot can work: the database of the library and the Slack state answers a read, on a connection
    of its own (so a busy store does not make it wait, and a server that takes no new connections shows), and,
    for a SQLite file, its disk has at least `min_free_mb` MB free. Returns (healthy, details for /healthz); when
    unhealthy, `reason` says why in one line (never a password).

        ok, details = check_health("qa.db", min_free_mb=100)  # (True, {"database": "ok", "disk_free_mb": 5120, ...})
        ok, details = check_health("postgresql://qa@db.internal/qa", min_free_mb=100)  # (True, {"database": "ok"})
    """
    if is_postgres_url(database):
        return _check_postgres(str(database))
    path = Path(database).resolve()
    reason = None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=1)
        try:
            conn.execute("select count(*) from (select 1 from articles limit 1)").fetchone()
        finally:
            conn.close()
        database_status = "ok"
    except sqlite3.Error as exc:
        logger.warning("health check failed db=%s error=%s", path, exc)
        database_status, reason = "unavailable", f"Cannot read {path}: {exc}"
    try:
        free_mb = shutil.disk_usage(path.parent).free // (1024 * 1024)
    except OSError:
        free_mb = 0
    details: dict = {"database": database_status, "disk_free_mb": free_mb, "min_free_mb": min_free_mb}
    healthy = database_status == "ok" and free_mb >= min_free_mb
    if not healthy and database_status == "ok":
        logger.warning("health check failed disk_free_mb=%d min_free_mb=%d", free_mb, min_free_mb)
        reason = f"{free_mb} MB free on the disk of {path}, under QABOT_MIN_FREE_MB={min_free_mb}"
    if reason is not None:
        details["reason"] = reason
    return healthy, details


def _check_postgres(url: str) -> tuple[bool, dict]:
    """One cheap read of both halves (articles, slack_events) through a new connection; its disk is the
    server's to watch, not ours."""
    import psycopg

    from bot.errors import StoreError
    from bot.store.pg_connect import connect_pg, describe_url

    try:
        conn = connect_pg(url, timeout_s=HEALTH_TIMEOUT_S)
        try:
            conn.execute(f"set statement_timeout = {HEALTH_TIMEOUT_S * 1000}")
            conn.execute(
                "select (select count(*) from (select 1 from articles limit 1) a)"
                " + (select count(*) from (select 1 from slack_events limit 1) e)"
            ).fetchone()
        finally:
            conn.close()
    except StoreError as exc:
        logger.warning("health check failed db=%s error=%s", describe_url(url), exc)
        return False, {"database": "unavailable", "reason": str(exc)}
    except psycopg.Error as exc:  # from the read: a dropped table, a time-out, a server shutting down
        said = getattr(exc.diag, "message_primary", None) or " ".join(str(exc).split())  # without its SQL
        reason = f"PostgreSQL at {describe_url(url)} did not answer a read: {said}"
        logger.warning("health check failed db=%s error=%s", describe_url(url), reason)
        return False, {"database": "unavailable", "reason": reason}
    return True, {"database": "ok"}


def create_wsgi_app(
    app: App,
    *,
    signing_secret: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    health: Callable[[], tuple[bool, dict]] | None = None,
) -> Callable[[dict, Callable], Iterable[bytes]]:
    """The WSGI application `serve` runs: `POST /slack/events` goes to Bolt, `GET /healthz` answers 200 when
    `health()` says so (503 otherwise, with its details; always 200 without `health`).

    In front of Bolt it refuses what is not Slack, cheaply and without logging what was sent: a body over
    `max_body_bytes` gets 413 before it is read (by its Content-Length, or as soon as a chunked body passes the
    limit); with `signing_secret`, a request whose signature does not verify gets 401 before Bolt parses it; a
    signed body Bolt cannot parse gets 400. Log lines name the status, the reason and the size, never the body
    or header values.

        server = create_http_server(create_wsgi_app(app, signing_secret=secret), host="127.0.0.1", port=0)
    """
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def refuse(start_response: Callable, status: str, reason: str, size: int | None) -> list[bytes]:
        logger.info("refused request status=%s reason=%s bytes=%s", status.split()[0], reason, size)
        body = status.encode()
        start_response(status, [*_PLAIN, ("Content-Length", str(len(body)))])
        return [body]

    def wsgi(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            healthy, details = health() if health is not None else (True, {})
            body = json.dumps({"ok": healthy, **details}).encode()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != EVENTS_PATH:
            return slack(environ, start_response)  # Bolt's 404
        declared = _content_length(environ)
        if declared is not None and declared > max_body_bytes:
            return refuse(start_response, "413 Content Too Large", "too_large", declared)
        raw = _read_body(environ, declared, limit=max_body_bytes)
        if raw is None:
            return refuse(start_response, "413 Content Too Large", "too_large", None)
        if signing_secret and not is_signed_by_slack(
            raw,
            timestamp=environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""),
            signature=environ.get("HTTP_X_SLACK_SIGNATURE", ""),
            secret=signing_secret,
        ):
            return refuse(start_response, "401 Unauthorized", "bad_signature", len(raw))
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(raw), str(len(raw))
        try:
            return slack(environ, start_response)
        except Exception as exc:  # a signed body Bolt cannot parse (not JSON, not a form): Slack's bug, not ours
            error = type(exc).__name__
            logger.warning("refused request status=400 reason=malformed error=%s bytes=%d", error, len(raw))
            body = b"400 Bad Request"
            start_response("400 Bad Request", [*_PLAIN, ("Content-Length", str(len(body)))])
            return [body]

    return wsgi


def is_signed_by_slack(
    body: bytes, *, timestamp: str, signature: str, secret: str, now: float | None = None, max_age_s: int = 300
) -> bool:
    """Whether `body` carries Slack's signature: HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret,
    the timestamp within `max_age_s` of now. Works on the raw bytes, so a body that is not UTF-8 is simply
    unsigned (slack_sdk's verifier decodes it first and raises).

    >>> is_signed_by_slack(b"{}", timestamp="1", signature="v0=00", secret="s", now=1.0)
    False
    """
    now = time.time() if now is None else now
    try:
        if abs(now - int(timestamp)) > max_age_s:
            return False
    except ValueError:
        return False
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def _content_length(environ: dict) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _read_body(environ: dict, declared: int | None, *, limit: int) -> bytes | None:
    """The request body, or None when it is longer than `limit` (read no further than limit + 1 bytes)."""
    stream = environ["wsgi.input"]
    if declared is not None:
        return stream.read(declared) if declared else b""
    chunks, size = [], 0
    while size <= limit:  # no length given (chunked): read in pieces, stop past the limit
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return None if size > limit else b"".join(chunks)


def create_http_server(wsgi_app: Callable, *, host: str, port: int, threads: int = HTTP_THREADS):
    """A waitress server for the WSGI app, bound but not yet running (`.run()`); port 0 picks a free port."""
    from waitress.server import create_server

    # waitress itself refuses larger bodies (413) before buffering them, chunked ones included
    return create_server(
        wsgi_app, host=host, port=port, threads=threads, ident="qa-bot", max_request_body_size=MAX_BODY_BYTES
    )


def connect_to_slack(settings: Settings, *, receiving: bool = True) -> WebClient:
    """Check the Slack credentials before anything slow happens, and return the client that the app will use.

        client = connect_to_slack(settings)  # auth.test at settings.slack_api_url (default https://slack.com/api/)

    :param receiving: whether this process receives Slack's requests (`serve`: it needs the signing secret or an
        app token); `qa-bot worker` only posts, with the bot token.
    :raises ConfigError: in one line, when a credential is missing, Slack rejects the bot token, or Slack cannot be
        reached (naming the URL and what failed).
    """
    if settings.slack_bot_token is None:
        raise ConfigError(
            "SLACK_BOT_TOKEN is not set. Install the Slack app (see manifest.yaml) and set "
            "SLACK_BOT_TOKEN to its Bot User OAuth Token (xoxb-…)."
        )
    if receiving and settings.slack_app_token is None and settings.slack_signing_secret is None:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is not set. Copy it from the Slack app's Basic Information page, "
            "or set SLACK_APP_TOKEN (xapp-…) to use Socket Mode instead of a public URL."
        )
    if (
        receiving
        and settings.slack_app_token is not None
        and not settings.slack_app_token.get_secret_value().startswith("xapp-")
    ):
        raise ConfigError(
            "SLACK_APP_TOKEN must be an app-level token (xapp-…) with the connections:write "
            "scope; unset it to serve over HTTP instead."
        )
    base_url = settings.slack_api_url or WebClient.BASE_URL
    client = slack_web_client(settings.slack_bot_token.get_secret_value(), base_url, timeout=10)
    url = f"{base_url}auth.test"
    sdk_logger = logging.getLogger("slack_sdk.web.base_client")
    sdk_level = sdk_logger.level
    sdk_logger.setLevel(logging.CRITICAL)  # it logs each failed try at ERROR; the user gets our one line instead
    try:
        identity = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else exc.response.status_code
        raise ConfigError(
            f"Slack rejected SLACK_BOT_TOKEN at {url}: {error}. Copy the Bot User OAuth Token "
            "(xoxb-…) from the Slack app's OAuth & Permissions page."
        ) from exc
    except (SlackClientError, OSError, ValueError) as exc:  # URLError, refused connection, time-out, bad URL
        reason = getattr(exc, "reason", None) or exc
        raise ConfigError(
            f"Cannot reach Slack at {url}: {reason}. Check the network"
            f"{' and QABOT_SLACK_API_URL' if settings.slack_api_url else ''}."
        ) from exc
    finally:
        sdk_logger.setLevel(sdk_level)
    logger.info("slack token checked team=%s bot_user_id=%s", identity.get("team"), identity.get("user_id"))
    return client


def serve(settings: Settings, *, host: str = "0.0.0.0", port: int = 3000) -> None:
    """Check the Slack credentials, load the reader once, then serve Slack until SIGTERM or SIGINT (Ctrl-C).

        serve(load_settings(), port=3000)

    On SIGTERM or SIGINT it stops taking requests and questions, lets the questions being read finish for up to
    `STOP_JOBS_S` (the rest wait in the database for another process) and returns, after one `stopped` log line.

    :param host: interface for the HTTP server (ignored in Socket Mode).
    :param port: port for the HTTP server (ignored in Socket Mode).
    :raises ConfigError: when Slack credentials are missing or rejected, Slack cannot be reached, or the reader
        model is missing; always before the model loads, for Slack.
    """
    client = connect_to_slack(settings)  # seconds, not the minutes a model load may take on a small machine
    service = build_service(settings)
    if service.store.article_count() == 0:
        logger.warning("%s", messages.render("not_indexed", db_path=settings.database_label))
    load_access_policy(settings.access_file, service.store)  # a bad access file stops us before the model loads
    service.warm_up()
    jobs = JobRunner(threads=WORKER_THREADS, lease_s=settings.job_lease_s)
    app = create_app(settings, service, client=client, jobs=jobs)
    poller = start_feed_poller(settings)
    sweeper = RetentionSweeper(settings.database, retention_days=settings.question_retention_days).start()
    stopped_by = "SIGINT"  # a KeyboardInterrupt that no handler of ours raised: Ctrl-C before they were installed

    def interrupt(name: str) -> None:
        nonlocal stopped_by
        stopped_by = name
        raise KeyboardInterrupt  # ends waitress's loop (or Socket Mode's wait) the way Ctrl-C does

    try:
        with stop_signals(interrupt):
            _serve_app(app, settings, host=host, port=port)
    except KeyboardInterrupt:
        pass
    finally:
        finished = jobs.stop(timeout_s=STOP_JOBS_S)  # the questions being read; the queued ones wait in the database
        poller.stop(timeout_s=2)  # a feed round cut short is polled again next round
        sweeper.stop(timeout_s=2)
    logger.info("stopped signal=%s questions_finished=%s", stopped_by, finished)


def start_feed_poller(settings: Settings, **options: Any) -> FeedPoller:
    """Poll every subscribed feed now and then every QABOT_FEED_INTERVAL_MINUTES, on a thread of its own with
    its own database connection, into the library (the feed tables live beside it: the SQLite file, or
    PostgreSQL); a feed's failure is logged and never reaches Slack. With a PostgreSQL database the replicas take
    turns: each round polls only in the one holding the advisory lock (`bot.store.pg_locks`)."""
    from bot.core.feeds import FeedPoller
    from bot.store import open_store

    url = settings.database_url
    if url is not None and "turn" not in options:
        from bot.store.pg_locks import FEED_POLL_LOCK, advisory_turn

        options["turn"] = lambda: advisory_turn(url, FEED_POLL_LOCK)
    logger.info("feed polling every minutes=%g", settings.feed_interval_minutes)
    return FeedPoller(lambda: open_store(settings.database), limits=settings.feed_limits(), **options).start()


def _serve_app(app: App, settings: Settings, *, host: str, port: int) -> None:
    if settings.slack_app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        logger.info("serving mode=socket")
        handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
        try:
            handler.start()
        finally:
            handler.close()
        return
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    wsgi = create_wsgi_app(
        app,
        signing_secret=secret,
        health=lambda: check_health(settings.database, min_free_mb=settings.min_free_mb),
    )
    server = create_http_server(wsgi, host=host, port=port)
    logger.info("serving mode=http host=%s port=%s events_path=%s", host, server.effective_port, EVENTS_PATH)
    try:
        server.run()  # returns on KeyboardInterrupt, after waiting (up to 5 s) for the requests being handled
    finally:
        server.close()
