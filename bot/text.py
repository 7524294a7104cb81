"""Pure text functions: sentences and passages with exact character offsets into the article body."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from bot.records import Sentence

__all__ = ["split_sentences", "group_passages", "normalize_whitespace", "escape_slack"]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SPACE_RUN = re.compile(r"[ \t\r\f\v]+")


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd  # a rule-based splitter that knows abbreviations, decimals and quotes, and needs no download

    return pysbd.Segmenter(language="en", clean=False, char_span=False)


def normalize_whitespace(text: str) -> str:
    """Tidy a body before it is stored: unify newlines, trim line ends, at most one blank line between paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    lines = [_SPACE_RUN.sub(" ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _paragraph_bounds(body: str) -> Iterator[tuple[int, int]]:
    start = 0
    for match in _PARAGRAPH_BREAK.finditer(body):
        yield start, match.start()
        start = match.end()
    yield start, len(body)


def split_sentences(body: str) -> list[Sentence]:
    """Split a body into sentences whose offsets map back exactly: `body[s.char_start:s.char_end] == s.text`.

    Paragraph breaks always end a sentence; inside a paragraph pysbd decides.

        >>> [s.text for s in split_sentences("Dr. Lee paid $3.50 in the U.S. on Monday. She left.")]
        ['Dr. Lee paid $3.50 in the U.S. on Monday.', 'She left.']
    """
    sentences: list[Sentence] = []
    for para_start, para_end in _paragraph_bounds(body):
        paragraph = body[para_start:para_end]
        if not paragraph.strip():
            continue
        cursor, first_in_paragraph = 0, len(sentences)
        for piece in _segmenter().segment(paragraph):
            stripped = piece.strip()
            if not stripped:
                continue
            found = paragraph.find(stripped, cursor)
            if found < 0:  # pysbd altered the text: keep the rest of the paragraph as one sentence, offsets intact
                found = cursor + (len(paragraph[cursor:]) - len(paragraph[cursor:].lstrip()))
                stripped = paragraph[found:].rstrip()
            start = para_start + found
            if found == cursor and len(sentences) > first_in_paragraph:
                # No space between two pieces ("<!channel>", "Yahoo!Inc") is never a sentence boundary: merge.
                previous = sentences.pop()
                start = previous.char_start
            end = para_start + found + len(stripped)
            sentences.append(Sentence(len(sentences), start, end, body[start:end]))
            cursor = found + len(stripped)
            if cursor >= len(paragraph.rstrip()):
                break
    return sentences


def group_passages(sentences: list[Sentence], *, max_words: int = 80, overlap: int = 1) -> list[tuple[int, int]]:
    """Group consecutive sentences into passages of about `max_words` words, as (first, last) sentence indexes.

    Consecutive passages share `overlap` sentences so an answer near a boundary is read with its context.
    A sentence longer than `max_words` becomes a passage of its own (the reader's doc stride handles it).
    """
    if max_words <= 0 or overlap < 0:
        raise ValueError(f"max_words must be positive and overlap not negative, got {max_words}, {overlap}")
    groups: list[tuple[int, int]] = []
    first = 0
    while first < len(sentences):
        last, words = first, len(sentences[first].text.split())
        while last + 1 < len(sentences) and words + len(sentences[last + 1].text.split()) <= max_words:
            last += 1
            words += len(sentences[last].text.split())
        groups.append((first, last))
        if last + 1 >= len(sentences):
            break
        first = max(last + 1 - overlap, first + 1)
    return groups


def escape_slack(text: str) -> str:
    """Escape `&`, `<`, `>` so quoted text can never become a mention, a channel ping or a link in Slack."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
