"""A page's own metadata, read from its <head> and JSON-LD: canonical url, publication date and author.

Trafilatura finds the readable text; these few fields are read here, where the rules are ours and tested: a saved
news page keeps its canonical link (so the answer's title links to it) and its date.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["PageMeta", "page_meta"]

_DATE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})")
_ARTICLE_TYPES = {"article", "newsarticle", "blogposting", "report", "webpage", "reportagenewsarticle"}


@dataclass(frozen=True)
class PageMeta:
    """What the page says about itself; None where it says nothing usable."""

    url: str | None = None
    published_at: str | None = None  # YYYY-MM-DD
    author: str | None = None


def page_meta(html: str) -> PageMeta:
    """Canonical url (`<link rel="canonical">`, else `og:url`, else JSON-LD `url`), publication date
    (`article:published_time`, else JSON-LD `datePublished`, else the first `<time datetime>`) and author
    (`<meta name="author">`/`article:author`, else JSON-LD `author`) of an HTML page.

        >>> page_meta('<link rel="canonical" href="https://x.example/a"><meta name="author" content="Jo">')
        PageMeta(url='https://x.example/a', published_at=None, author='Jo')
    """
    import lxml.html
    from lxml.etree import ParserError

    try:
        tree = lxml.html.fromstring(html)
    except (ParserError, ValueError):
        return PageMeta()
    metas = {}
    for meta in tree.iter("meta"):
        name = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").strip().lower()
        content = (meta.get("content") or "").strip()
        if name and content and name not in metas:
            metas[name] = content
    ld = list(_json_ld(tree))
    canonical = next(
        (link.get("href", "").strip() for link in tree.iter("link") if "canonical" in (link.get("rel") or "").lower()),
        "",
    )
    url = _web_url(canonical) or _web_url(metas.get("og:url")) or _web_url(_first(ld, "url"))
    times = (el.get("datetime") for el in tree.iter("time"))
    published = (
        _date(metas.get("article:published_time"))
        or _date(_first(ld, "datePublished"))
        or _date(metas.get("datepublished"))
        or next((d for d in map(_date, times) if d), None)
    )
    author = _author(metas.get("author")) or _author(metas.get("article:author")) or _ld_author(ld)
    return PageMeta(url=url, published_at=published, author=author)


def _json_ld(tree) -> Iterator[dict]:
    """The article-like objects of the page's JSON-LD scripts (top level, in lists and in @graph)."""
    for script in tree.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json" or not script.text:
            continue
        try:
            data = json.loads(script.text)
        except json.JSONDecodeError:
            continue
        stack = data if isinstance(data, list) else [data]
        for item in stack:
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("@graph"), list):
                stack.extend(item["@graph"])
            kinds = item.get("@type")
            kinds = kinds if isinstance(kinds, list) else [kinds]
            if any(isinstance(kind, str) and kind.lower() in _ARTICLE_TYPES for kind in kinds):
                yield item


def _first(objects: list[dict], key: str) -> str | None:
    for item in objects:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _ld_author(objects: list[dict]) -> str | None:
    for item in objects:
        author = item.get("author")
        people = author if isinstance(author, list) else [author]
        found = [p.get("name") if isinstance(p, dict) else p for p in people]
        names = [n.strip() for n in found if isinstance(n, str) and n.strip()]
        if names:
            return ", ".join(names)
    return None


def _author(value: str | None) -> str | None:
    # article:author is often a profile URL rather than a name: not worth showing as a name
    if not value or value.startswith(("http://", "https://")):
        return None
    return " ".join(value.split())


def _web_url(value: str | None) -> str | None:
    return value if value and value.startswith(("http://", "https://")) else None


def _date(value: str | None) -> str | None:
    match = _DATE.match(value or "")
    return match.group(1) if match else None
