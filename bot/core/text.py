"""Pure text functions: sentences and passages with exact character offsets into the article body."""

from __future__ import annotations

import re
from collections.abc import Iterator

import sentencex

from bot.core.records import Sentence

__all__ = ["split_sentences", "group_passages", "normalize_whitespace"]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SPACE_RUN = re.compile(r"[ \t\r\f\v]+")


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

    Paragraph breaks always end a sentence; inside a paragraph sentencex decides (rule-based, knows
    abbreviations, decimals and quotes, compiled, no download). Pieces that touch without a space
    ("<!channel>", "Yahoo!Inc") are never split.

        >>> [s.text for s in split_sentences("Dr. Lee paid $3.50 in the U.S. on Monday. She left.")]
        ['Dr. Lee paid $3.50 in the U.S. on Monday.', 'She left.']
    """
    sentences: list[Sentence] = []
    for para_start, para_end in _paragraph_bounds(body):
        paragraph = body[para_start:para_end]
        if not paragraph.strip():
            continue
        first_in_paragraph = len(sentences)
        for bound in sentencex.get_sentence_boundaries("en", paragraph):
            piece = paragraph[bound["start_index"] : bound["end_index"]]
            if not piece.strip():
                continue
            start = para_start + bound["start_index"] + (len(piece) - len(piece.lstrip()))
            end = para_start + bound["start_index"] + len(piece.rstrip())
            if len(sentences) > first_in_paragraph and sentences[-1].char_end == start:
                start = sentences.pop().char_start  # no space between the pieces: not a sentence boundary
            sentences.append(Sentence(len(sentences), start, end, body[start:end]))
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
