"""Fetching a page for /ingest: from a loopback web server, never the internet."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.errors import FetchError, IngestError
from bot.sources.fetch import check_url, fetch_article, fetch_page, is_public_address

ARTICLE_HTML = (
    b"<html><head><title>Harbour ferry prices</title><meta name='date' content='2024-05-02'></head><body>"
    b"<nav>Home | News | Contact</nav><article><h1>Harbour ferry prices</h1>"
    b"<p>The harbour ferry will cost 12 dollars from May, the council said on Monday after a long debate about "
    b"the budget of the town and the price of fuel.</p>"
    b"<p>Captain Ingrid Holm said the new boats are faster and quieter than the old ones, and that the crossing "
    b"now takes twenty minutes instead of half an hour.</p></article><footer>Contact us</footer></body></html>"
)

ROUTES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/article.html": (200, {"Content-Type": "text/html; charset=utf-8"}, ARTICLE_HTML),
    "/notes.txt": (
        200,
        {"Content-Type": "text/plain; charset=utf-8"},
        b"Ferry notes\nTickets cost 12 dollars. Boats leave hourly.",
    ),
    "/doc.pdf": (200, {"Content-Type": "application/pdf"}, b"%PDF-1.4 not really"),
    "/empty.html": (
        200,
        {"Content-Type": "text/html"},
        b"<html><head><title>Nothing</title></head><body></body></html>",
    ),
    "/big.html": (200, {"Content-Type": "text/html"}, b"x" * 5000),
    "/moved": (302, {"Location": "/article.html"}, b""),
    "/to-ftp": (302, {"Location": "ftp://example.com/file.txt"}, b""),
}


class _Site(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path.startswith("/drip"):  # a byte every 0.05 s for 30 s: each read succeeds, the whole never ends
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if self.path == "/drip-headers":
                for _ in range(600):
                    self.wfile.write(b"X")
                    self.wfile.flush()
                    time.sleep(0.05)
            self.end_headers()
            for _ in range(600):
                self.wfile.write(b"y")
                self.wfile.flush()
                time.sleep(0.05)
            return
        if self.path == "/streamed-big":  # no Content-Length: only counting the bytes can stop it
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"y" * 1000)
            return
        status, headers, body = ROUTES.get(self.path, (404, {"Content-Type": "text/plain"}, b"not found"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # the fetcher hangs up on purpose (size cap, time-out)
        pass


@pytest.fixture(scope="module")
def site():
    server = _QuietServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_html_page_becomes_an_article_without_menus_and_footers(site):
    article = fetch_article(f"{site}/article.html", timeout_s=5, max_bytes=100_000, allow_private=True)
    assert (article.title, article.source, article.url) == ("Harbour ferry prices", "127.0.0.1", f"{site}/article.html")
    assert article.body.startswith("The harbour ferry will cost 12 dollars from May")
    assert "Captain Ingrid Holm" in article.body
    assert "Contact us" not in article.body and "Home | News" not in article.body


def test_plain_text_page_uses_its_first_line_as_title(site):
    article = fetch_article(f"{site}/notes.txt", timeout_s=5, max_bytes=100_000, allow_private=True)
    assert (article.title, article.body) == ("Ferry notes", "Tickets cost 12 dollars. Boats leave hourly.")


def test_redirects_are_followed_and_the_final_url_kept(site):
    assert (
        fetch_article(f"{site}/moved", timeout_s=5, max_bytes=100_000, allow_private=True).url == f"{site}/article.html"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing", "answered HTTP 404 Not Found; check the link in a browser"),
        ("/doc.pdf", "is application/pdf, not a web page; only HTML and plain-text pages can be ingested"),
        ("/empty.html", "no readable article text found in the HTML"),
        ("/big.html", "is 5,000 bytes, more than the 1,000-byte limit (QABOT_FETCH_MAX_BYTES)"),
        ("/streamed-big", "is larger than the 1,000-byte limit (QABOT_FETCH_MAX_BYTES)"),
        ("/to-ftp", "only http:// and https:// links can be ingested, got 'ftp://example.com/file.txt'"),
    ],
)
def test_fetch_failures_say_what_went_wrong(site, path, message):
    with pytest.raises(FetchError) as caught:
        fetch_article(f"{site}{path}", timeout_s=5, max_bytes=1_000, allow_private=True)
    assert message in str(caught.value)


def test_a_slow_server_times_out(site):
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"/slow did not answer within 0.2 s \(QABOT_FETCH_TIMEOUT_S\)"):
        fetch_page(f"{site}/slow", timeout_s=0.2, max_bytes=1_000, allow_private=True)
    assert time.monotonic() - started < 0.9


def test_an_unreachable_host_is_reported():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match="could not reach 127.0.0.1: "):
        fetch_page(f"http://127.0.0.1:{port}/", timeout_s=2, max_bytes=1_000, allow_private=True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http:// and https:// links can be ingested, got 'file:///etc/passwd'"),
        ("javascript:alert(1)", "only http:// and https:// links can be ingested"),
        ("https://", "the link 'https://' has no host name"),
    ],
)
def test_only_http_urls_with_a_host_are_accepted(url, message):
    with pytest.raises(FetchError) as caught:
        check_url(url)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:8080/admin", "127.0.0.1"),
        ("http://localhost/", "127.0.0.1"),
        ("http://[::1]/", "::1"),
        ("http://10.1.2.3/wiki", "10.1.2.3"),
        ("http://192.168.0.10/", "192.168.0.10"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://0.0.0.0/", "0.0.0.0"),
    ],
)
def test_private_and_local_addresses_are_refused_by_default(url, address):
    with pytest.raises(FetchError) as caught:
        fetch_page(url, timeout_s=2, max_bytes=1_000)
    assert f"is a private or local address ({address})" in str(caught.value)
    assert "QABOT_FETCH_ALLOW_PRIVATE=true" in str(caught.value)


def test_a_redirect_to_a_private_address_is_refused(site, monkeypatch):
    import bot.sources.fetch

    checked = []
    real_check = bot.sources.fetch.check_public_host

    def pretend_only_the_target_is_private(url):  # the first hop stands in for a public site
        checked.append(url)
        return real_check(url) if url.endswith("/article.html") else "127.0.0.1"

    monkeypatch.setattr(bot.sources.fetch, "check_public_host", pretend_only_the_target_is_private)
    with pytest.raises(FetchError, match=r"127.0.0.1 is a private or local address"):
        fetch_page(f"{site}/moved", timeout_s=5, max_bytes=100_000)
    assert checked == [f"{site}/moved", f"{site}/article.html"]


def test_fetch_errors_are_ingest_errors():
    assert issubclass(FetchError, IngestError)


@pytest.mark.parametrize("path", ["/drip", "/drip-headers"])
def test_a_server_that_dribbles_bytes_is_cut_off_at_the_deadline(site, path):
    started = time.monotonic()
    with pytest.raises(FetchError, match=rf"{path} did not answer within 0.5 s"):
        fetch_page(f"{site}{path}", timeout_s=0.5, max_bytes=100_000, allow_private=True)
    assert time.monotonic() - started < 1.5  # the timeout + 1 s at most


def test_the_host_is_resolved_once_and_the_checked_address_is_the_one_connected_to(site, monkeypatch):
    port = int(site.rsplit(":", 1)[1])
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]])
    lookups = []

    def rebinding_dns(host, *args, **kwargs):  # a second lookup would get an unroutable address
        lookups.append(host)
        return next(answers, [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))])

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    page = fetch_page(f"http://news.test:{port}/notes.txt", timeout_s=2, max_bytes=1_000, allow_private=True)
    assert (page.body.startswith(b"Ferry notes"), lookups) == (True, ["news.test"])


def test_proxy_settings_are_not_used_for_fetches(site, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert fetch_page(f"{site}/notes.txt", timeout_s=2, max_bytes=1_000, allow_private=True).body.startswith(b"Ferry")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("::ffff:127.0.0.1", False),
        ("::ffff:93.184.216.34", True),  # IPv4-mapped
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of loopback and the metadata endpoint
        ("2002:0a00:0001::1", False),
        ("2002:5db8:d822::1", True),  # 6to4 of 10.0.0.1 and of a public address
        ("::10.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
    ],
)
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_carry(address, public):
    assert is_public_address(address) is public
