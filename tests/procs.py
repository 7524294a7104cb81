"""Real qa-bot processes for tests and benchmarks: `qa-bot serve` replicas and `qa-bot worker`s as subprocesses with
an environment of their own, waiting until each is ready, and correctly signed Slack events sent to them.

    env = bot_env(database=url, slack_api_url=fake.base_url, QABOT_THREADS="1")
    with BotProcess.serve(env, cwd=tmp_path, name="serve-a") as replica:
        replica.wait_healthy()
        assert post_event(replica.url, mention_event(1, text="Who founded the chess club?")) == 200

Each process runs `python -m bot` from `cwd` (so no `.env` of the developer is read), writes its log (stderr and
stdout) to `cwd/<name>.log`, and is killed when its `with` block ends if it is still running.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from slack_sdk.signature import SignatureVerifier

from tests.fakes.slack_api import BOT_USER_ID, TEAM_ID

__all__ = ["SECRET", "BotProcess", "bot_env", "free_port", "mention_event", "post_event", "signed_headers"]

SECRET = "procs-signing-secret"
REPO = Path(__file__).resolve().parents[1]
EVENTS_PATH = "/slack/events"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bot_env(*, database: str, slack_api_url: str, token: str = "xoxb-test", **settings: str) -> dict[str, str]:
    """The environment of a qa-bot process: this one's without any QABOT_* or SLACK_* variable, plus the database,
    the (fake) Slack Web API, a bot token, the signing secret and `settings` (`QABOT_THREADS="1"`, ...)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("QABOT_", "SLACK_"))}
    env.update(
        QABOT_DATABASE_URL=database,
        QABOT_SLACK_API_URL=slack_api_url,
        QABOT_LOG_LEVEL="INFO",
        SLACK_BOT_TOKEN=token,
        SLACK_SIGNING_SECRET=SECRET,
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env


class BotProcess:
    """One `python -m bot ...` subprocess; `serve` and `worker` build the usual ones.

    :param args: the command after `python -m bot`.
    :param env: its whole environment (`bot_env`).
    :param cwd: its working directory, where its log goes.
    :param name: names its log file (`cwd/<name>.log`).
    :param port: the HTTP port it serves on, if it serves.
    """

    def __init__(self, args: list[str], *, env: dict[str, str], cwd: Path, name: str, port: int | None = None) -> None:
        self.args, self.env, self.cwd, self.name, self.port = args, env, Path(cwd), name, port
        self.log_path = self.cwd / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @classmethod
    def serve(cls, env: dict[str, str], *, cwd: Path, name: str = "serve", port: int | None = None) -> BotProcess:
        """`qa-bot serve` over HTTP on 127.0.0.1 (a free port unless given)."""
        port = port or free_port()
        return cls(["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=cwd, name=name, port=port)

    @classmethod
    def worker(cls, env: dict[str, str], *, cwd: Path, name: str = "worker", threads: int = 2) -> BotProcess:
        """`qa-bot worker --threads N`."""
        return cls(["worker", "--threads", str(threads)], env=env, cwd=cwd, name=name)

    # Life cycle ----------------------------------------------------------------------------------------------

    def start(self) -> BotProcess:
        self.cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", *self.args],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def __enter__(self) -> BotProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.kill()

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        assert self.port is not None, f"{self.name} serves no HTTP"
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        assert self.process is not None, "not started"
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, sig: int = signal.SIGTERM, *, timeout_s: float = 30.0) -> int:
        """Send `sig` and wait for the exit; returns the exit status (killed after `timeout_s`: raises)."""
        assert self.process is not None, "not started"
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not stop within {timeout_s} s of signal {sig}:\n{self.log_tail()}"
            ) from None

    # Waiting until ready -------------------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def wait_healthy(self, *, timeout_s: float = 120.0) -> None:
        """Until GET /healthz answers 200 (the reader loads before the server starts).

        :raises AssertionError: with the end of its log, when it exits or is not healthy in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.running:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} was not healthy within {timeout_s} s:\n{self.log_tail()}")

    def wait_for_log(self, text: str, *, timeout_s: float = 120.0) -> None:
        """Until its log holds `text` (a worker says "worker ready" once its reader is loaded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.running:
            if text in self.log():
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} never logged {text!r} within {timeout_s} s:\n{self.log_tail()}")


# Slack's requests ----------------------------------------------------------------------------------------------


def mention_event(number: int, *, text: str, channel: str = "C0001", user: str = "U0001", team: str = TEAM_ID) -> dict:
    """An `app_mention` Events API body; its event id (`EvProc{number}`) and ts (`1700100000.{number}`) come from
    `number`."""
    ts = f"1700100000.{number:06d}"
    return {
        "token": "unused",
        "team_id": team,
        "api_app_id": "A0001",
        "type": "event_callback",
        "event_id": f"EvProc{number:06d}",
        "event_time": 1700100000,
        "event": {
            "type": "app_mention",
            "text": f"<@{BOT_USER_ID}> {text}",
            "user": user,
            "ts": ts,
            "team": team,
            "channel": channel,
            "event_ts": ts,
        },
        "authorizations": [{"team_id": team, "user_id": BOT_USER_ID, "is_bot": True}],
    }


def signed_headers(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack signs a request with: HMAC-SHA256 of `v0:{timestamp}:{body}` under the signing secret."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None  # None only without a secret
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def post_event(url: str, payload: dict, *, secret: str = SECRET, timeout_s: float = 10.0) -> int:
    """POST an Events API body, signed, to `url` + /slack/events; returns the HTTP status."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **signed_headers(body, secret=secret)}
    request = urllib.request.Request(url + EVENTS_PATH, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
