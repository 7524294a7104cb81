"""Article files on disk: `.txt`/`.md` (first line the title), `.html`, `.json`/`.jsonl` records → `Article`s.

A bad record or file comes out as an `IngestFailure` with its path and a reason a user can act on. Inside a folder,
hidden files and files of other types come out as `IngestSkip`s: listed, but not failures (a cron job over a folder
holding a stray README must not fail).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.core.records import Article
from bot.core.text import normalize_whitespace
from bot.errors import IngestError
from bot.sources.html import article_from_html

__all__ = [
    "IngestFailure",
    "IngestSkip",
    "SUPPORTED_SUFFIXES",
    "article_from_text",
    "expand_paths",
    "read_articles",
    "suffix_of",
]

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".json", ".jsonl", ".pdf", ".docx")
_TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_HTML_SUFFIXES = (".html", ".htm")


@dataclass(frozen=True)
class IngestFailure:
    """One input that could not be stored, and why (a sentence a user can act on)."""

    path: str
    reason: str


@dataclass(frozen=True)
class IngestSkip:
    """A file inside a folder that was left out on purpose (hidden, or not an article type), and why."""

    path: str
    reason: str


def suffix_of(path: Path) -> str:
    """The file type as qa-bot matches it: the last suffix, lower-cased (`REPORT.MD` → `.md`)."""
    return path.suffix.lower()


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
    author = record.get("author")
    source = record.get("source") or path
    return Article(
        title=normalize_whitespace(title),
        body=normalize_whitespace(body),
        source=str(source),
        url=str(url) if url else None,
        published_at=str(published) if published else None,
        author=str(author) if author else None,
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
    suffix = suffix_of(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(f"unsupported file type {suffix or '(none)'}; use one of {' '.join(SUPPORTED_SUFFIXES)}")
    source = str(path)
    key = str(path.resolve())  # one identity however the path was spelled, so an edited file is updated in place
    if suffix in (".pdf", ".docx"):  # binary formats: their libraries read the file
        if path.stat().st_size == 0:
            raise IngestError("empty file")
        if suffix == ".pdf":
            from bot.sources.pdf import article_from_pdf

            yield article_from_pdf(path, source=source, key=key)
        else:
            from bot.sources.docx import article_from_docx

            yield article_from_docx(path, source=source, key=key)
        return
    text = _decode(path)
    if not text.strip():
        raise IngestError("empty file")
    if suffix in _TEXT_SUFFIXES:
        yield article_from_text(text, source=source, key=key)
    elif suffix in _HTML_SUFFIXES:
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
                    functools.partial(
                        _article_from_record, record, path=source, where=f"record {index + 1}", key_path=key
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
                _guard(functools.partial(_jsonl_record, line, path=source, lineno=lineno, key_path=key), source), seen
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


def expand_paths(paths: Iterable[Path], *, skip: set[Path]) -> Iterator[Path | IngestFailure | IngestSkip]:
    """Files to read: each file given, and every article file under each folder given (recursively).

    Inside a folder, a hidden file or folder (its name starts with ".") and a file of an unsupported type come out
    as an `IngestSkip` (a hidden folder once, not every file in it); `skip` is left out silently (the database
    itself). A file named explicitly is always read, so an unsupported one fails there; a path that does not
    exist comes out as an `IngestFailure`.
    """
    for path in paths:
        if path.is_dir():
            yield from _folder_entries(path, skip=skip)
        elif path.exists():
            yield path
        else:
            yield IngestFailure(str(path), "no such file or folder")


def _folder_entries(folder: Path, *, skip: set[Path]) -> Iterator[Path | IngestSkip]:
    found: list[tuple[Path, IngestSkip | None]] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        for name in [d for d in dirs if d.startswith(".")]:
            dirs.remove(name)  # not descended into: a .git folder holds thousands of files
            found.append((here / name, IngestSkip(str(here / name) + os.sep, "hidden folder")))
        for name in files:
            child = here / name
            if child.resolve() in skip or not child.is_file():
                continue
            if name.startswith("."):
                found.append((child, IngestSkip(str(child), "hidden file")))
            elif suffix_of(child) not in SUPPORTED_SUFFIXES:
                kind = suffix_of(child) or "(none)"
                found.append((child, IngestSkip(str(child), f"unsupported file type {kind}")))
            else:
                found.append((child, None))
    for child, skipped in sorted(found, key=lambda entry: entry[0]):
        yield skipped or child
