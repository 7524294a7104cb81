"""Run the Slack app: Socket Mode when SLACK_APP_TOKEN is set, else HTTP (waitress) with /slack/events and /healthz."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.core import messages
from bot.core.service import build_service
from bot.errors import ConfigError
from bot.settings import Settings
from bot.slack.app import create_app

__all__ = ["serve", "connect_to_slack", "create_wsgi_app", "create_http_server", "EVENTS_PATH", "HEALTH_PATH"]

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
HTTP_THREADS = 8


def create_wsgi_app(app: App) -> Callable[[dict, Callable], Iterable[bytes]]:
    """The WSGI application `serve` runs: `POST /slack/events` goes to Bolt, `GET /healthz` answers 200.

    server = create_http_server(create_wsgi_app(app), host="127.0.0.1", port=0)
    """
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def wsgi(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            body = json.dumps({"ok": True}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return slack(environ, start_response)

    return wsgi


def create_http_server(wsgi_app: Callable, *, host: str, port: int, threads: int = HTTP_THREADS):
    """A waitress server for the WSGI app, bound but not yet running (`.run()`); port 0 picks a free port."""
    from waitress.server import create_server

    return create_server(wsgi_app, host=host, port=port, threads=threads, ident="qa-bot")


def connect_to_slack(settings: Settings) -> WebClient:
    """Check the Slack credentials before anything slow happens, and return the client that the app will use.

        client = connect_to_slack(settings)  # auth.test at settings.slack_api_url (default https://slack.com/api/)

    :raises ConfigError: in one line, when a credential is missing, Slack rejects the bot token, or Slack cannot be
        reached (naming the URL and what failed).
    """
    if settings.slack_bot_token is None:
        raise ConfigError(
            "SLACK_BOT_TOKEN is not set. Install the Slack app (see manifest.yaml) and set "
            "SLACK_BOT_TOKEN to its Bot User OAuth Token (xoxb-…)."
        )
    if settings.slack_app_token is None and settings.slack_signing_secret is None:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is not set. Copy it from the Slack app's Basic Information page, "
            "or set SLACK_APP_TOKEN (xapp-…) to use Socket Mode instead of a public URL."
        )
    if settings.slack_app_token is not None and not settings.slack_app_token.get_secret_value().startswith("xapp-"):
        raise ConfigError(
            "SLACK_APP_TOKEN must be an app-level token (xapp-…) with the connections:write "
            "scope; unset it to serve over HTTP instead."
        )
    base_url = settings.slack_api_url or WebClient.BASE_URL
    client = WebClient(token=settings.slack_bot_token.get_secret_value(), base_url=base_url, timeout=10)
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
    """Check the Slack credentials, load the reader once, then serve Slack until interrupted.

        serve(load_settings(), port=3000)

    :param host: interface for the HTTP server (ignored in Socket Mode).
    :param port: port for the HTTP server (ignored in Socket Mode).
    :raises ConfigError: when Slack credentials are missing or rejected, Slack cannot be reached, or the reader
        model is missing; always before the model loads, for Slack.
    """
    client = connect_to_slack(settings)  # seconds, not the minutes a model load may take on a small machine
    service = build_service(settings)
    if service.store.article_count() == 0:
        logger.warning("%s", messages.render("not_indexed", db_path=settings.db_path))
    service.warm_up()
    app = create_app(settings, service, client=client)
    if settings.slack_app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        logger.info("serving mode=socket")
        SocketModeHandler(app, settings.slack_app_token.get_secret_value()).start()
        return
    server = create_http_server(create_wsgi_app(app), host=host, port=port)
    logger.info("serving mode=http host=%s port=%s events_path=%s", host, server.effective_port, EVENTS_PATH)
    try:
        server.run()
    except KeyboardInterrupt:
        logger.info("stopped")
    finally:
        server.close()
