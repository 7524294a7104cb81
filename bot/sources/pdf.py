"""PDF files → `Article` (pypdf): the text of each page, with the body offset where each page starts, so every
sentence keeps its page and citations can say "p. N"."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.core.records import Article
from bot.core.text import normalize_whitespace
from bot.errors import IngestError

__all__ = ["article_from_pdf"]


def article_from_pdf(path: Path, *, source: str, key: str | None = None) -> Article:
    """A PDF's text layer, page by page: the title from its metadata, else its first line.

    :raises IngestError: for an encrypted or unreadable PDF, or one without a text layer (a scan).
    """
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings repeat what the IngestError below says

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise IngestError("encrypted PDF: save an unprotected copy (e.g. qpdf --decrypt) and ingest that")
        pages = [normalize_whitespace(page.extract_text() or "") for page in reader.pages]
        title = str(reader.metadata.get("/Title") or "").strip() if reader.metadata else ""
    except IngestError:
        raise
    except OSError as exc:
        raise IngestError(f"unreadable: {exc.strerror or exc}") from exc
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise IngestError(f"not a readable PDF ({exc or type(exc).__name__}); is the file complete?") from exc
    if not any(pages):
        raise IngestError("no text layer: OCR is not supported")
    body, page_starts = "", []
    for text in pages:
        if body and text:
            body += "\n\n"  # a paragraph break: no sentence runs from one page into the next
        page_starts.append(len(body))
        body += text
    if not title:
        title = body.split("\n", 1)[0].strip()[:120]
    return Article(title=title, body=body, source=source, key=key, page_starts=tuple(page_starts))
