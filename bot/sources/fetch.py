"""Fetch one web page for `/ingest <url>`: http(s) only, public hosts only (checked, then connected to), one total
deadline, a size cap, then readable text → `Article`."""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from urllib.parse import urljoin, urlsplit

from bot.core.records import Article
from bot.errors import FetchError, IngestError
from bot.sources.files import article_from_text
from bot.sources.html import article_from_html

__all__ = ["fetch_article", "fetch_page", "FetchedPage", "check_url", "check_public_host", "is_public_address"]

logger = logging.getLogger(__name__)

USER_AGENT = "qa-bot/0.1 (article ingestion for a Slack bot)"
ALLOWED_SCHEMES = ("http", "https")
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain", "text/markdown")
ACCEPT_PAGES = "text/html, text/plain;q=0.9, */*;q=0.1"
ACCEPT_FEEDS = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
_CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
_NO_TIMEOUT_S = 30.0  # connections are always made with the time left; this only satisfies the type
_REDIRECTS = (301, 302, 303, 307, 308)


class FetchedPage:
    """The bytes of a fetched page with what the server said about them.

    `status` is 304 (and `body` empty) when a conditional request found the page unchanged; `etag` and
    `last_modified` are the validators to send next time (None when the server gave none).
    """

    def __init__(
        self,
        url: str,
        body: bytes,
        content_type: str,
        charset: str | None,
        *,
        status: int = 200,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> None:
        self.url, self.body, self.content_type, self.charset = url, body, content_type, charset
        self.status, self.etag, self.last_modified = status, etag, last_modified

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # an unknown charset name in the header
            return self.body.decode("utf-8", errors="replace")


def check_url(url: str) -> str:
    """The URL, trimmed, if it is an absolute http(s) URL with a host.

    :raises FetchError: naming the scheme or the missing host.
    """
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise FetchError(f"only http:// and https:// links can be ingested, got {url!r}")
    if not parts.hostname:
        raise FetchError(f"the link {url!r} has no host name")
    return url


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries: mapped (::ffff:a.b.c.d), 6to4 (2002::/16), NAT64 (64:ff9b::/96) or
    IPv4-compatible (::a.b.c.d)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = int(address)
    if address in _NAT64 or (packed >> 32 == 0 and packed > 1):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def is_public_address(text: str) -> bool:
    """True for a global unicast address; IPv6 forms that carry an IPv4 address are judged by that address.

    >>> [is_public_address(a) for a in ("93.184.216.34", "10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::a00:1")]
    [True, False, False, False]
    """
    address = ipaddress.ip_address(text.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return inner.is_global
    return address.is_global


def _port(parts) -> int:
    try:
        return parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise FetchError(f"the link {parts.geturl()!r} has a bad port number") from exc


def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"could not reach {host}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_public_host(url: str) -> str:
    """Resolve the URL's host once and refuse it if any address is loopback, private, link-local or otherwise not
    public; returns the address to connect to, so what was checked is what is reached (no DNS rebinding).

    `/ingest` runs on the bot's host, inside its network: without this an admin's link (or a page redirecting
    there) could read internal services or a cloud metadata endpoint into the article store.

    :raises FetchError: naming the address, and QABOT_FETCH_ALLOW_PRIVATE for intranet sources.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    addresses = _addresses(host, _port(parts))
    for address in sorted(addresses):
        if not is_public_address(address):
            raise FetchError(
                f"{host} is a private or local address ({address}); links inside the bot's own network "
                "are refused unless QABOT_FETCH_ALLOW_PRIVATE=true"
            )
    return addresses[0]


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to an IP address literal, with no name lookup of any kind."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address resolved (and checked) beforehand; the Host header still names the host."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = _connect(self.address, self.port, self.timeout or _NO_TIMEOUT_S)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address, with SNI and the certificate checked against the original host name."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        self.context = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.context)
        self.address = address

    def connect(self) -> None:
        sock = _connect(self.address, self.port, self.timeout or _NO_TIMEOUT_S)
        self.sock = self.context.wrap_socket(sock, server_hostname=self.host)


class _Deadline:
    """One total time limit for a fetch: each blocking step gets what is left, and a watchdog hangs up on a
    server that keeps a read alive by dribbling bytes."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s, self.ends = timeout_s, time.monotonic() + timeout_s
        self.connection: http.client.HTTPConnection | None = None
        self.expired = False
        self._timer = threading.Timer(timeout_s, self._hang_up)
        self._timer.daemon = True

    def left(self) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            self.expired = True
        return max(left, 0.001)

    def _hang_up(self) -> None:
        self.expired = True
        sock = self.connection.sock if self.connection is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        if self.connection is not None:
            self.connection.close()


def fetch_page(
    url: str,
    *,
    timeout_s: float,
    max_bytes: int,
    allow_private: bool = False,
    etag: str | None = None,
    last_modified: str | None = None,
    accept: str = ACCEPT_PAGES,
) -> FetchedPage:
    """Download a page within `timeout_s` seconds in all (connect, headers, body, redirects) and `max_bytes` bytes.

    The host is resolved once per hop and the connection goes to that address. Proxy environment variables are
    not used: a proxy would connect to hosts that were never checked.

    :param allow_private: also fetch from loopback and private-network hosts (an intranet wiki, tests).
    :param etag: sent as If-None-Match; with `last_modified` (If-Modified-Since) a conditional GET, answered by
        a `FetchedPage` whose `not_modified` is true when the server says 304.
    :param accept: the Accept header (feeds ask for XML).
    :raises FetchError: for a non-http(s) URL, a private host (unless allowed), an unreachable host, an HTTP
        error status, a time-out or a page that is too large; the message names the URL and what to try.
    """
    start_url = url = check_url(url)
    headers = {"User-Agent": USER_AGENT, "Accept": accept}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    with _Deadline(timeout_s) as deadline:
        try:
            for _hop in range(MAX_REDIRECTS + 1):
                response = _request(url, deadline=deadline, allow_private=allow_private, headers=headers)
                location = response.getheader("Location")
                if response.status in _REDIRECTS and location:
                    url = check_url(urljoin(url, location))
                    continue
                if response.status == 304 and (etag or last_modified):
                    body = b""
                    break
                if response.status >= 400:
                    raise FetchError(
                        f"{url} answered HTTP {response.status} {response.reason}; check the link in a browser"
                    )
                body = _read_body(response, url=url, max_bytes=max_bytes, deadline=deadline)
                break
            else:
                raise FetchError(f"{start_url} redirects more than {MAX_REDIRECTS} times")
        except FetchError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.expired or isinstance(exc, (TimeoutError, socket.timeout)):
                raise _timeout(start_url, timeout_s) from exc
            if isinstance(exc, ssl.SSLError):
                raise FetchError(f"could not fetch {url} securely: {exc}") from exc
            if isinstance(exc, ConnectionRefusedError):
                raise FetchError(f"could not reach {urlsplit(url).hostname}: {exc}") from exc
            raise FetchError(f"could not fetch {url}: {exc}") from exc
    content_type, charset = response.msg.get_content_type(), response.msg.get_content_charset()
    logger.debug("fetched url=%s status=%d bytes=%d content_type=%s", url, response.status, len(body), content_type)
    return FetchedPage(
        url,
        body,
        content_type,
        charset,
        status=response.status,
        etag=response.getheader("ETag") or etag,
        last_modified=response.getheader("Last-Modified") or last_modified,
    )


def _request(
    url: str, *, deadline: _Deadline, allow_private: bool, headers: dict[str, str]
) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    host, port = parts.hostname or "", _port(parts)
    address = check_public_host(url) if not allow_private else _addresses(host, port)[0]
    if deadline.connection is not None:
        deadline.connection.close()
    kind = _PinnedHTTPSConnection if parts.scheme.lower() == "https" else _PinnedHTTPConnection
    connection = kind(host, port, address=address, timeout=deadline.left())
    deadline.connection = connection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection.request("GET", path, headers=headers)
    connection.sock.settimeout(deadline.left())
    return connection.getresponse()


def _read_body(response: http.client.HTTPResponse, *, url: str, max_bytes: int, deadline: _Deadline) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(
            f"{url} is {int(declared):,} bytes, more than the {max_bytes:,}-byte limit (QABOT_FETCH_MAX_BYTES)"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        sock = deadline.connection.sock if deadline.connection is not None else None
        if sock is not None:
            sock.settimeout(deadline.left())
        chunk = response.read1(_CHUNK_BYTES)  # what one read gives: the deadline is looked at after every one
        if deadline.expired:
            raise _timeout(url, deadline.timeout_s)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"{url} is larger than the {max_bytes:,}-byte limit (QABOT_FETCH_MAX_BYTES)")
        chunks.append(chunk)


def _timeout(url: str, timeout_s: float) -> FetchError:
    return FetchError(f"{url} did not answer within {timeout_s:g} s (QABOT_FETCH_TIMEOUT_S); try again later")


def fetch_article(
    url: str, *, timeout_s: float = 10.0, max_bytes: int = 5_000_000, allow_private: bool = False
) -> Article:
    """Fetch a web page and extract its article: title and readable text (HTML) or first line as title (text).

        article = fetch_article("https://example.com/news/1", timeout_s=10, max_bytes=5_000_000)
        store.add_article(article)

    The article's url is the page's final URL (after redirects), its source the host name.

    :raises FetchError: when the page cannot be fetched, is not HTML or plain text, or holds no readable text.
    """
    page = fetch_page(url, timeout_s=timeout_s, max_bytes=max_bytes, allow_private=allow_private)
    source = urlsplit(page.url).hostname or page.url
    try:
        if page.content_type in HTML_TYPES:
            return article_from_html(page.text(), source=source, url=page.url)
        if page.content_type in TEXT_TYPES:
            return article_from_text(page.text(), source=source, url=page.url)
    except FetchError:
        raise
    except IngestError as exc:
        raise FetchError(f"{page.url}: {exc}") from exc
    raise FetchError(
        f"{page.url} is {page.content_type}, not a web page; only HTML and plain-text pages can be "
        "ingested (for other documents, paste their text after /ingest)"
    )
