"""A fake Slack Web API on loopback: answers like slack.com/api and records every call, in order.

    with FakeSlackAPI() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.base_url)
        client.chat_postMessage(channel="C0001", text="hi")
        assert fake.calls == [("chat.postMessage", {"channel": "C0001", "text": "hi"})]

Bodies are parsed from JSON or form encoding (slack_sdk uses both). `fake.times` and `fake.tokens` hold, for each
call in `calls`, when it arrived (`time.monotonic()`) and the bot token it carried (which process sent it, when
several processes use tokens of their own). `response_url` posts land on
`fake.response_url(name)` and are recorded as `("response_url", body)` with `body["_path"]`.

Failure modes, chosen by the token like bolt-python's mock server (auth.test always succeeds so an app can start):
`xoxb-ratelimited` → HTTP 429 with Retry-After: 1; `xoxb-fail` → 200 `{"ok": false, "error": "fatal_error"}`.
A single method can be made to fail with `fake.fail("reactions.add", "already_reacted")`, or to answer only after
a while with `fake.delay("chat.postMessage", 1.5)` (recorded on arrival, answered after the delay).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

__all__ = ["FakeSlackAPI", "BOT_USER_ID", "BOT_ID"]

BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
TEAM_ID = "T0001"


class FakeSlackAPI:
    """Start with `start()` (or `with`), stop with `stop()`; `base_url` ends with `/` as slack_sdk needs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.times: list[float] = []
        self.tokens: list[str] = []
        self._caller = threading.local()  # the token of the request the current handler thread is recording
        self._failures: dict[str, str] = {}
        self._delays: dict[str, float] = {}
        self._rate_limited: dict[str, int] = {}
        self._lock = threading.Condition()
        self._ts_counter = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack-api", daemon=True
        )

    # Life cycle ----------------------------------------------------------------------------------------------

    def start(self) -> FakeSlackAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/"

    def response_url(self, name: str = "hook") -> str:
        """A URL to put in a payload's `response_url`; posts to it are recorded as `response_url` calls."""
        return f"{self.base_url}response_url/{name}"

    # Behaviour -----------------------------------------------------------------------------------------------

    def fail(self, method: str, error: str) -> None:
        """Make every later call to `method` answer `{"ok": false, "error": error}`."""
        self._failures[method] = error

    def rate_limit(self, method: str, times: int = 1) -> None:
        """Make the next `times` calls to `method` answer HTTP 429 with Retry-After: 1, as Slack's rate limit."""
        self._rate_limited[method] = times

    def delay(self, method: str, seconds: float) -> None:
        """Make every later call to `method` wait `seconds` before it is answered (a slow Slack)."""
        self._delays[method] = seconds

    def next_ts(self) -> str:
        with self._lock:
            self._ts_counter += 1
            return f"{1700001000 + self._ts_counter}.{self._ts_counter:06d}"

    def _record(self, method: str, body: dict) -> None:
        with self._lock:
            self.calls.append((method, body))
            self.times.append(time.monotonic())
            self.tokens.append(getattr(self._caller, "token", ""))
            self._lock.notify_all()

    # Reading what happened -----------------------------------------------------------------------------------

    def bodies(self, method: str) -> list[dict]:
        """The bodies of every call to `method` so far, in order."""
        with self._lock:
            return [body for name, body in self.calls if name == method]

    def timed_calls(self) -> list[tuple[float, str, dict, str]]:
        """Every call so far as (when it arrived, method, body, token), in order."""
        with self._lock:
            return [(at, method, body, token) for at, (method, body), token in zip(self.times, self.calls, self.tokens)]

    def methods(self) -> list[str]:
        """The names of every call so far except auth.test, in order."""
        with self._lock:
            return [name for name, _ in self.calls if name != "auth.test"]

    def wait_for(self, method: str, count: int = 1, *, timeout_s: float = 5.0) -> list[dict]:
        """Block until `method` was called at least `count` times; return those bodies.

        :raises AssertionError: after `timeout_s`, listing the calls seen (the app works after its ack).
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                bodies = [body for name, body in self.calls if name == method]
                if len(bodies) >= count:
                    return bodies
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} {method} call(s) within {timeout_s}s, saw {[name for name, _ in self.calls]}"
                    )
                self._lock.wait(remaining)


def _canned(fake: FakeSlackAPI, method: str, body: dict) -> dict:
    channel = body.get("channel", "C0001")
    if method == "auth.test":
        return {
            "ok": True,
            "url": "https://example.slack.com/",
            "team": "Example Corp",
            "user": "kb-bot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }
    if method == "chat.postMessage":
        ts = fake.next_ts()
        message = {
            "user": BOT_USER_ID,
            "type": "message",
            "ts": ts,
            "bot_id": BOT_ID,
            "app_id": "A0001",
            "text": body.get("text", ""),
            "team": TEAM_ID,
        }
        if body.get("thread_ts"):
            message["thread_ts"] = body["thread_ts"]
        if body.get("blocks"):
            message["blocks"] = body["blocks"]
        return {"ok": True, "channel": channel, "ts": ts, "message": message}
    if method == "chat.postEphemeral":
        return {"ok": True, "message_ts": fake.next_ts()}
    if method == "chat.update":
        ts = body.get("ts", "")
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": body.get("text", ""),
            "message": {
                "user": BOT_USER_ID,
                "type": "message",
                "ts": ts,
                "bot_id": BOT_ID,
                "text": body.get("text", ""),
                "edited": {"user": BOT_ID, "ts": fake.next_ts()},
            },
        }
    if method == "chat.delete":
        return {"ok": True, "channel": channel, "ts": body.get("ts", "")}
    if method in ("reactions.add", "reactions.remove"):
        return {"ok": True}
    return {"ok": False, "error": "unknown_method"}


def _handler_for(fake: FakeSlackAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
            body = _parse(raw, self.headers.get("Content-Type", ""))
            path = self.path.split("?", 1)[0]
            if path.startswith("/response_url/"):
                fake._caller.token = ""
                fake._record("response_url", {**body, "_path": path})
                self._send(200, b"ok", "text/html")
                return
            method = path.lstrip("/")
            token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip() or str(body.get("token", ""))
            fake._caller.token = token
            fake._record(method, body)
            time.sleep(fake._delays.get(method, 0.0))
            with fake._lock:
                limited = fake._rate_limited.get(method, 0)
                fake._rate_limited[method] = max(limited - 1, 0)
            if (method != "auth.test" and token == "xoxb-ratelimited") or limited:
                self._send(
                    429,
                    json.dumps({"ok": False, "error": "ratelimited"}).encode(),
                    "application/json",
                    {"Retry-After": "1"},
                )
                return
            if (method != "auth.test" and token == "xoxb-fail") or method in fake._failures:
                error = fake._failures.get(method, "fatal_error")
                self._json({"ok": False, "error": error})
                return
            self._json(_canned(fake, method, body))

        def _json(self, payload: dict) -> None:
            self._send(200, json.dumps(payload).encode(), "application/json; charset=utf-8")

        def _send(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _parse(raw: str, content_type: str) -> dict:
    if not raw:
        return {}
    if "json" in content_type:
        return json.loads(raw)
    return dict(parse_qsl(raw, keep_blank_values=True))
