"""HTML pages → `Article`: title and readable text extracted with trafilatura (menus, footers and ads dropped)."""

from __future__ import annotations

import json

from bot.core.records import Article
from bot.errors import IngestError
from bot.sources.html_meta import page_meta

__all__ = ["article_from_html"]


def article_from_html(html: str, *, source: str, url: str | None = None, key: str | None = None) -> Article:
    """A web page: title and readable text extracted with trafilatura (menus, footers and ads dropped).

    Without `url`, the page's canonical link (or og:url) is its url; its publication date and author come from
    its metadata (see `page_meta`), else from what trafilatura finds.
    """
    import trafilatura

    extracted = trafilatura.extract(
        html, output_format="json", with_metadata=True, include_comments=False, include_tables=False, url=url
    )
    if not extracted:
        raise IngestError("no readable article text found in the HTML")
    data = json.loads(extracted)
    title = (data.get("title") or "").strip()
    paragraphs = [line.strip() for line in (data.get("text") or "").split("\n") if line.strip()]
    if paragraphs and title and paragraphs[0] == title:
        paragraphs = paragraphs[1:]
    if not title and paragraphs:
        title = paragraphs[0][:120]
    body = "\n\n".join(paragraphs)
    if not body:
        raise IngestError("no readable article text found in the HTML")
    meta = page_meta(html)
    return Article(
        title=title,
        body=body,
        source=source,
        url=url or meta.url,
        published_at=meta.published_at or data.get("date"),
        author=meta.author or data.get("author") or None,
        key=key,
    )
