"""Fetch one web page for `/ingest <url>`: http(s) only, a time limit, a size cap, then readable text → `Article`."""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
import urllib.error
import urllib.request
from email.message import Message
from urllib.parse import urlsplit

from bot.core.records import Article
from bot.errors import FetchError, IngestError
from bot.sources.files import article_from_text
from bot.sources.html import article_from_html

__all__ = ["fetch_article", "fetch_page", "FetchedPage", "check_url", "check_public_host"]

logger = logging.getLogger(__name__)

USER_AGENT = "qa-bot/0.1 (article ingestion for a Slack bot)"
ALLOWED_SCHEMES = ("http", "https")
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain", "text/markdown")
_CHUNK_BYTES = 64 * 1024


class FetchedPage:
    """The bytes of a fetched page with what the server said about them."""

    def __init__(self, url: str, body: bytes, content_type: str, charset: str | None) -> None:
        self.url, self.body, self.content_type, self.charset = url, body, content_type, charset

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


def check_public_host(url: str) -> None:
    """Refuse a URL whose host resolves to a loopback, private, link-local or otherwise non-public address.

    `/ingest` runs on the bot's host, inside its network: without this an admin's link (or a page redirecting
    there) could read internal services or a cloud metadata endpoint into the article store.

    :raises FetchError: naming the address, and QABOT_FETCH_ALLOW_PRIVATE for intranet sources.
    """
    host = urlsplit(url).hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"could not reach {host}: {exc}") from exc
    for address in sorted(addresses):
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise FetchError(
                f"{host} is a private or local address ({address}); links inside the bot's own network "
                "are refused unless QABOT_FETCH_ALLOW_PRIVATE=true"
            )


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to other http(s) URLs (urllib would also follow one to ftp://), and only to public
    hosts unless private ones are allowed."""

    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl)
        if not self.allow_private:
            check_public_host(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_page(url: str, *, timeout_s: float, max_bytes: int, allow_private: bool = False) -> FetchedPage:
    """Download a page, giving up after `timeout_s` seconds in all or past `max_bytes` bytes.

    :param allow_private: also fetch from loopback and private-network hosts (an intranet wiki, tests).
    :raises FetchError: for a non-http(s) URL, a private host (unless allowed), an unreachable host, an HTTP
        error status, a time-out or a page that is too large; the message names the URL and what to try.
    """
    url = check_url(url)
    if not allow_private:
        check_public_host(url)
    opener = urllib.request.build_opener(_CheckedRedirects(allow_private))
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(
        url, headers={"User-Agent": USER_AGENT, "Accept": "text/html, text/plain;q=0.9, */*;q=0.1"}
    )
    try:
        with opener.open(request, timeout=timeout_s) as response:
            headers: Message = response.headers
            declared = headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(
                    f"{url} is {int(declared):,} bytes, more than the {max_bytes:,}-byte limit (QABOT_FETCH_MAX_BYTES)"
                )
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise _timeout(url, timeout_s)
                chunk = response.read(_CHUNK_BYTES)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{url} is larger than the {max_bytes:,}-byte limit (QABOT_FETCH_MAX_BYTES)")
                chunks.append(chunk)
            final_url = response.geturl()
            content_type = headers.get_content_type()
            charset = headers.get_content_charset()
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url} answered HTTP {exc.code} {exc.reason}; check the link in a browser") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise _timeout(url, timeout_s) from exc
        raise FetchError(f"could not reach {urlsplit(url).hostname}: {exc.reason}") from exc
    except TimeoutError as exc:
        raise _timeout(url, timeout_s) from exc
    except (OSError, ValueError) as exc:  # connection reset, malformed response, bad port number
        raise FetchError(f"could not fetch {url}: {exc}") from exc
    logger.debug("fetched url=%s bytes=%d content_type=%s", final_url, size, content_type)
    return FetchedPage(final_url, b"".join(chunks), content_type, charset)


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
