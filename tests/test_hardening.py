"""The Slack app under hostile traffic and faults (issue 14): oversized and malformed bodies, a locked or full
database, a flood of questions, slow links and Slack's size limits. Same real parts as test_slack_app: waitress on
loopback, real SQLite files, requests signed as Slack signs them and the fake Slack Web API.
"""

# ruff: noqa: F811  (the fixtures of test_slack_app, imported by name, are test arguments here)
from __future__ import annotations

import io
import json
import logging
import socket

import pytest

from bot.slack.server import EVENTS_PATH, MAX_BODY_BYTES, create_wsgi_app
from tests.test_slack_app import (  # noqa: F401
    SECRET,
    fake_slack,
    make_slack,
    slack,
)

SENTINEL = "event_message_im.json"  # a DM that is always answered: once it is, earlier requests were handled


def _raw_post(url: str, head: str, body: bytes = b"") -> bytes:
    """Send a hand-made HTTP request and return the whole response (urllib cannot send a lying Content-Length)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# Request bodies -----------------------------------------------------------------------------------------------


def test_a_body_over_1_mb_is_refused_with_413_before_it_is_read(slack, caplog):
    head = (
        f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {50 * MAX_BODY_BYTES}\r\nConnection: close"
    )
    with caplog.at_level(logging.DEBUG):
        response = _raw_post(slack.url, head, b"x" * 1000)  # the other 50 MB never come
    assert response.split(b"\r\n", 1)[0].split(b" ")[1] == b"413"


def test_a_signed_body_just_over_1_mb_is_refused_by_the_app_too(make_slack):
    slack = make_slack()
    body = json.dumps({"type": "event_callback", "pad": "x" * MAX_BODY_BYTES}).encode()
    status, _, _ = slack.post(body, "application/json")
    slack.event(SENTINEL)
    slack.fake.wait_for("chat.postMessage")
    assert (status, len(slack.fake.bodies("chat.postMessage"))) == (413, 1)


def test_a_chunked_body_is_read_no_further_than_the_limit():
    class Stream(io.BytesIO):
        read_bytes = 0

        def read(self, size=-1):
            data = super().read(size)
            Stream.read_bytes += len(data)
            return data

    seen = []
    wsgi = create_wsgi_app(_NeverCalled(), signing_secret=SECRET, max_body_bytes=1000)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": EVENTS_PATH, "wsgi.input": Stream(b"y" * 100_000)}
    body = b"".join(wsgi(environ, lambda status, headers: seen.append(status)))
    assert (seen, body, Stream.read_bytes) == (["413 Content Too Large"], b"413 Content Too Large", 1001)


class _NeverCalled:
    """Stands in for the Bolt app where the request must be refused before Bolt sees it."""

    def dispatch(self, request):  # pragma: no cover - failing here is the test failing
        raise AssertionError("Bolt was called")


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json", b'{"type": "event_callback", "event": '),  # cut off
        ("application/json", b"\xff\xfe not utf-8 \x00"),
        ("application/x-www-form-urlencoded", b"payload=%7Bnot-json"),
        ("text/plain", b"MARKER\nERROR bot.slack_app FORGED"),
    ],
)
def test_malformed_bodies_get_4xx_and_leave_no_traceback_or_body_in_the_log(slack, caplog, content_type, body):
    with caplog.at_level(logging.DEBUG):
        unsigned = slack.post(body, content_type, signature="v0=" + "0" * 64)[0]
        signed = slack.post(body, content_type)[0]
        slack.event(SENTINEL)
        slack.fake.wait_for("chat.postMessage")
    assert (unsigned, signed in (200, 400, 404)) == (401, True)
    assert [r for r in caplog.records if r.exc_info] == []
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert "FORGED" not in logged and "event_callback" not in logged and "not-json" not in logged


def test_unsigned_bodies_are_refused_without_their_body_or_headers_in_the_log(slack, caplog):
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            status, _, _ = slack.post(
                b"SECRETBODY" * 50_000, "application/json", signature="v0=" + "1" * 64, headers={"X-Evil": "HEADERVAL"}
            )
            assert status == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "SECRETBODY" not in logged and "HEADERVAL" not in logged
    assert sum("refused request status=401 reason=bad_signature" in r.getMessage() for r in caplog.records) == 3
