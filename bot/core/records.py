"""Plain, frozen records passed between stages. All offsets are character offsets into an article body."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Article", "ArticleRef", "Sentence", "Passage", "Span", "Citation", "Answer"]


@dataclass(frozen=True)
class ArticleRef:
    """What a citation shows about an article: enough to find and link it."""

    id: int
    title: str
    source: str
    url: str | None = None
    published_at: str | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "url": self.url,
            "published_at": self.published_at,
        }


@dataclass(frozen=True)
class Article:
    """An article as ingested, before it has a database id."""

    title: str
    body: str
    source: str
    url: str | None = None
    published_at: str | None = None
    key: str | None = None  # identity for updates; defaults to url, then source

    @property
    def identity(self) -> str:
        return self.key or self.url or self.source


@dataclass(frozen=True)
class Sentence:
    """One sentence of an article body: `body[char_start:char_end] == text`."""

    index: int
    char_start: int
    char_end: int
    text: str


@dataclass(frozen=True)
class Passage:
    """A window of consecutive sentences, the unit that is searched and read.

    `text == article body[char_start:char_end]`; `bm25` is the retrieval score (lower is better, as SQLite reports it).
    """

    id: int
    article: ArticleRef
    char_start: int
    char_end: int
    text: str
    bm25: float = 0.0


@dataclass(frozen=True)
class Span:
    """A candidate answer found by the reader in one context (passage) of the batch.

    :param context_index: which of the contexts given to the reader it comes from.
    :param char_start: start offset inside that context; `context[char_start:char_end] == text`.
    :param score: probability of this span in its context (0..1), used for the answer threshold.
    :param logit: start + end logits; comparable across contexts, used to rank candidates.
    """

    context_index: int
    char_start: int
    char_end: int
    text: str
    score: float
    logit: float


@dataclass(frozen=True)
class Citation:
    """An answer located in its article: the whole sentence around it and where the answer sits in that sentence."""

    article: ArticleRef
    sentence: str
    sentence_start: int  # offset of the sentence in the article body
    answer_start: int  # offset of the answer inside `sentence`
    answer_end: int


@dataclass(frozen=True)
class Answer:
    """What the bot says to a question: an answer with its citation, or `text=None` with what was searched."""

    question: str
    text: str | None
    score: float
    citation: Citation | None = None
    alternatives: tuple[Answer, ...] = ()
    searched: tuple[str, ...] = field(default=())

    @property
    def is_answered(self) -> bool:
        return self.text is not None

    def to_dict(self) -> dict:
        """The JSON shape of `qa-bot ask --json`."""
        citation = self.citation
        return {
            "question": self.question,
            "answer": self.text,
            "score": round(self.score, 4),
            "sentence": citation.sentence if citation else None,
            "article": citation.article.to_dict() if citation else None,
            "answer_in_sentence": [citation.answer_start, citation.answer_end] if citation else None,
            "alternatives": [alt.to_dict() for alt in self.alternatives],
            "searched": list(self.searched),
        }
