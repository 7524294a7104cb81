"""Run the Slack app: Socket Mode when SLACK_APP_TOKEN is set, else HTTP (waitress) with /slack/events and /healthz."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.core import messages
from bot.errors import ConfigError
from bot.core.service import build_service
from bot.settings import Settings
from bot.slack.app import create_app

__all__ = ["serve", "create_wsgi_app", "create_http_server", "EVENTS_PATH", "HEALTH_PATH"]

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


def serve(settings: Settings, *, host: str = "0.0.0.0", port: int = 3000) -> None:
    """Load the reader once, then serve Slack until interrupted.

        serve(load_settings(), port=3000)

    :param host: interface for the HTTP server (ignored in Socket Mode).
    :param port: port for the HTTP server (ignored in Socket Mode).
    :raises ConfigError: when Slack credentials or the reader model are missing.
    """
    service = build_service(settings)
    if service.store.article_count() == 0:
        logger.warning("%s", messages.render("not_indexed", db_path=settings.db_path))
    service.warm_up()
    app = create_app(settings, service)
    if settings.slack_app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        app_token = settings.slack_app_token.get_secret_value()
        if not app_token.startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN must be an app-level token (xapp-…) with the connections:write "
                              "scope; unset it to serve over HTTP instead.")
        logger.info("serving mode=socket")
        SocketModeHandler(app, app_token).start()
        return
    server = create_http_server(create_wsgi_app(app), host=host, port=port)
    logger.info("serving mode=http host=%s port=%s events_path=%s", host, server.effective_port, EVENTS_PATH)
    try:
        server.run()
    except KeyboardInterrupt:
        logger.info("stopped")
    finally:
        server.close()
