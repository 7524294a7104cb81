"""Word files (.docx) → `Article` (python-docx): paragraphs and headings in order; the title from the document's
title property, else its first heading."""

from __future__ import annotations

import zipfile
from pathlib import Path

from bot.core.records import Article
from bot.core.text import normalize_whitespace
from bot.errors import IngestError

__all__ = ["article_from_docx"]


def article_from_docx(path: Path, *, source: str, key: str | None = None) -> Article:
    """A .docx document: each paragraph and heading a paragraph of the body.

    :raises IngestError: when the file is not a Word document (e.g. a ZIP of something else) or has no text.
    """
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(f"not a Word document (.docx): {exc or type(exc).__name__}") from exc
    except OSError as exc:
        raise IngestError(f"unreadable: {exc.strerror or exc}") from exc
    paragraphs = [(p.style.name if p.style is not None else "", p.text.strip()) for p in document.paragraphs]
    paragraphs = [(style, text) for style, text in paragraphs if text]
    title = (document.core_properties.title or "").strip()
    if not title:
        heading = next((i for i, (style, _) in enumerate(paragraphs) if style.startswith(("Heading", "Title"))), None)
        if heading is None and paragraphs:
            heading = 0  # no heading: the first paragraph is the title, as in a .txt file
        if heading is not None:
            title = paragraphs.pop(heading)[1]
    body = normalize_whitespace("\n\n".join(text for _, text in paragraphs))
    if not body:
        raise IngestError(
            "no text: the document has no paragraphs" if not title else f"no body: only a title ({title[:60]!r})"
        )
    return Article(title=title, body=body, source=source, key=key)
