"""Ingestion: article files (.txt .md .html .json .jsonl), pasted text and web pages → articles in the store.

A bad input is reported with its path and reason and skipped; everything else still goes in.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import IngestError, StoreError
from bot.records import Article
from bot.store import Store, StoredOutcome
from bot.text import normalize_whitespace

__all__ = [
    "IngestReport",
    "IngestFailure",
    "ingest_paths",
    "ingest_article",
    "read_articles",
    "article_from_text",
    "article_from_html",
    "SUPPORTED_SUFFIXES",
]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".json", ".jsonl")


@dataclass(frozen=True)
class IngestFailure:
    """One input that could not be stored, and why (a sentence a user can act on)."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """Counts of one ingestion run, with every failure."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failures: list[IngestFailure] = field(default_factory=list)
    outcomes: list[StoredOutcome] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def record(self, outcome: StoredOutcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        self.outcomes.append(outcome)


# Parsing -----------------------------------------------------------------------------------------------------


def article_from_text(text: str, *, source: str, url: str | None = None, key: str | None = None) -> Article:
    """Plain text or Markdown: the first non-empty line is the title, the rest is the body.

    :raises IngestError: when there is no title or no body.
    """
    lines = normalize_whitespace(text).split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise IngestError("empty: no text at all")
    title = lines[0].strip().strip("#").strip()  # a Markdown heading, "# Title" or "## Title ##", is the title
    body = normalize_whitespace("\n".join(lines[1:]))
    if not body:
        raise IngestError(f"no body: only a title line ({title[:60]!r}) was found")
    return Article(title=title, body=body, source=source, url=url, key=key)


def article_from_html(html: str, *, source: str, url: str | None = None, key: str | None = None) -> Article:
    """A web page: title and readable text extracted with trafilatura (menus, footers and ads dropped)."""
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
    return Article(title=title, body=body, source=source, url=url, published_at=data.get("date"), key=key)


def _article_from_record(record: object, *, path: str, where: str, key_path: str) -> Article:
    if not isinstance(record, dict):
        raise IngestError(f"{where}: expected a JSON object with title and body, got {type(record).__name__}")
    title = record.get("title")
    body = record.get("body", record.get("text"))
    if not isinstance(title, str) or not title.strip():
        raise IngestError(f'{where}: missing "title"')
    if not isinstance(body, str) or not normalize_whitespace(body):
        raise IngestError(f'{where}: no body (expected a non-empty "body" or "text")')
    url = record.get("url") or None
    published = record.get("published_at")
    source = record.get("source") or path
    return Article(
        title=normalize_whitespace(title),
        body=normalize_whitespace(body),
        source=str(source),
        url=str(url) if url else None,
        published_at=str(published) if published else None,
        key=None if url else f"{key_path}#{normalize_whitespace(title)}",
    )


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"unreadable: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "convert the file to UTF-8 and ingest it again"
        ) from exc


def read_articles(path: Path) -> Iterator[Article | IngestFailure]:
    """The articles in one file; a JSON/JSONL record that is broken comes out as an `IngestFailure`.

    :raises IngestError: when the whole file is unusable (unreadable, not UTF-8, empty, malformed JSON).
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(f"unsupported file type {suffix or '(none)'}; use one of {' '.join(SUPPORTED_SUFFIXES)}")
    text = _decode(path)
    if not text.strip():
        raise IngestError("empty file")
    source = str(path)
    key = str(path.resolve())  # one identity however the path was spelled, so an edited file is updated in place
    if suffix in (".txt", ".md"):
        yield article_from_text(text, source=source, key=key)
    elif suffix in (".html", ".htm"):
        yield article_from_html(text, source=source, key=key)
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IngestError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
        records = data if isinstance(data, list) else [data]
        seen: dict[str, int] = {}
        for index, record in enumerate(records):
            yield _distinct_key(
                _guard(
                    lambda r=record, i=index: _article_from_record(
                        r, path=source, where=f"record {i + 1}", key_path=key
                    ),
                    source,
                ),
                seen,
            )
    else:  # .jsonl
        seen = {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            yield _distinct_key(
                _guard(lambda ln=line, n=lineno: _jsonl_record(ln, path=source, lineno=n, key_path=key), source), seen
            )


def _distinct_key(item: Article | IngestFailure, seen: dict[str, int]) -> Article | IngestFailure:
    # Records without url are keyed by file and title; a title repeated in one file gets "#2", "#3", ... so the
    # records don't overwrite each other and ingesting the file again changes nothing.
    if isinstance(item, Article) and item.key:
        seen[item.key] = count = seen.get(item.key, 0) + 1
        if count > 1:
            return dataclasses.replace(item, key=f"{item.key}#{count}")
    return item


def _jsonl_record(line: str, *, path: str, lineno: int, key_path: str) -> Article:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise IngestError(f"line {lineno}: malformed JSON at column {exc.colno}: {exc.msg}") from exc
    return _article_from_record(record, path=path, where=f"line {lineno}", key_path=key_path)


def _guard(make: Callable[[], Article], source: str) -> Article | IngestFailure:
    try:
        return make()
    except IngestError as exc:
        return IngestFailure(source, str(exc))


def _database_files(store: Store) -> set[Path]:
    # The database (and its -wal/-shm/-journal files) may sit in a folder being ingested: it is not an article.
    db = Path(store.path).resolve()
    return {db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))}


def _expand(paths: Iterable[Path], *, skip: set[Path]) -> Iterator[Path | IngestFailure]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if (
                    child.is_file()
                    and not any(part.startswith(".") for part in child.relative_to(path).parts)
                    and child.resolve() not in skip
                ):
                    yield child
        elif path.exists():
            yield path
        else:
            yield IngestFailure(str(path), "no such file or folder")


# Storing -----------------------------------------------------------------------------------------------------


def ingest_article(store: Store, article: Article) -> StoredOutcome:
    """Store one article (its own transaction); see `Store.add_article` for added/updated/unchanged."""
    return store.add_article(article)


def ingest_paths(store: Store, paths: Iterable[str | Path], *, progress: bool = False) -> IngestReport:
    """Ingest files and folders (recursively); report counts and every failure, never stop at a bad file.

    report = ingest_paths(Store("qa.db"), ["examples/articles/"])
    print(report.added, report.failures)
    """
    from tqdm import tqdm

    report = IngestReport()
    items = list(_expand((Path(p) for p in paths), skip=_database_files(store)))
    with store.bulk():
        for item in tqdm(items, desc="ingesting", unit="file", disable=not progress or len(items) < 20, leave=False):
            if isinstance(item, IngestFailure):
                report.failures.append(item)
                continue
            try:
                for article in read_articles(item):
                    if isinstance(article, IngestFailure):
                        report.failures.append(article)
                    else:
                        report.record(ingest_article(store, article))
            except (IngestError, StoreError) as exc:
                report.failures.append(IngestFailure(str(item), str(exc)))
    for failure in report.failures:
        # INFO, not WARNING: the shells show every failure to the user already, so default output isn't doubled.
        logger.info("ingest skipped path=%s reason=%s", failure.path, failure.reason)
    logger.info(
        "ingested added=%d updated=%d unchanged=%d failed=%d",
        report.added,
        report.updated,
        report.unchanged,
        report.failed,
    )
    return report
