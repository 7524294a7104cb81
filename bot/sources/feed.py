"""RSS and Atom feeds: the bytes our fetcher downloaded → entries (id, link, title, published date).

feedparser only parses here; it is never given a URL, so it never fetches anything by itself (not the feed, not
a redirect, not an external entity): every request goes through `bot.sources.fetch`, with its private-address
check and deadline.

    feed = parse_feed(page.body, url=page.url, content_type=page.content_type)
    for entry in feed.entries:
        print(entry.key, entry.link, entry.published_at)
"""

from __future__ import annotations

import calendar
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin

from bot.errors import FetchError

__all__ = ["FeedEntry", "ParsedFeed", "parse_feed"]

HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class FeedEntry:
    """One entry of a feed: `key` is its id (guid), else its link; `fingerprint` changes when the entry does."""

    key: str
    link: str
    title: str
    published_at: str | None
    fingerprint: str


@dataclass(frozen=True)
class ParsedFeed:
    """A parsed feed: its title and entries in the feed's order (usually newest first), duplicates dropped."""

    title: str | None
    entries: list[FeedEntry]


def _date(entry: dict, name: str) -> str | None:
    parsed = dict.get(entry, f"{name}_parsed")  # not .get(): feedparser would map updated to published
    if not parsed:
        return None
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC).isoformat(timespec="seconds")


def parse_feed(body: bytes, *, url: str, content_type: str = "") -> ParsedFeed:
    """Parse RSS 0.9x/1.0/2.0 or Atom bytes; relative entry links are resolved against the feed's URL.

    :raises FetchError: when the bytes are not a feed (an HTML page, garbage), naming the URL and what it was.
    """
    import feedparser

    # response_headers only tells feedparser the content type and base URL; it has no URL to fetch
    parsed = feedparser.parse(body, response_headers={"content-type": content_type or "application/xml"})
    if not parsed.get("version"):
        what = content_type if content_type in HTML_TYPES else (content_type or "unknown content")
        reason = parsed.get("bozo_exception")
        detail = f" ({reason})" if reason and content_type not in HTML_TYPES else ""
        raise FetchError(
            f"{url} is not an RSS or Atom feed: it is {what}{detail}; subscribe to the feed's own address "
            "(often linked as RSS on the page)"
        )
    entries: list[FeedEntry] = []
    seen: set[str] = set()
    for raw in parsed.entries:
        link = (raw.get("link") or "").strip()
        if not link:
            continue  # nothing to fetch
        link = urljoin(url, link)
        key = (raw.get("id") or "").strip() or link
        if key in seen:
            continue
        seen.add(key)
        title = " ".join((raw.get("title") or "").split())
        published = _date(raw, "published") or _date(raw, "updated")
        updated = _date(raw, "updated") or ""
        digest = hashlib.sha256("\x00".join([title, link, published or "", updated]).encode("utf-8")).hexdigest()
        entries.append(FeedEntry(key=key, link=link, title=title, published_at=published, fingerprint=digest[:16]))
    feed_title = " ".join((parsed.feed.get("title") or "").split()) or None
    return ParsedFeed(title=feed_title, entries=entries)
