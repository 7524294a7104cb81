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
    author: str | None = None
    collection: str = "general"  # who may read it: see bot.core.access

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "url": self.url,
            "published_at": self.published_at,
            "author": self.author,
            "collection": self.collection,
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
    author: str | None = None
    # Paged documents (PDF): body offset where each page starts, page 1 at 0. Sentences keep their page and
    # passages never span two pages.
    page_starts: tuple[int, ...] = ()
    collection: str = "general"  # who may read it (bot.core.access); re-ingesting under another one moves it

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
    page: int | None = None  # 1-based page of a paged document (PDF); None otherwise


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
    :param null_logit: start + end logits of "no answer" ([CLS]) in the span's window: `logit - null_logit` is how
        much more the reader believes this span than that the window holds no answer.
    """

    context_index: int
    char_start: int
    char_end: int
    text: str
    score: float
    logit: float
    null_logit: float = 0.0


@dataclass(frozen=True)
class Citation:
    """An answer located in its article: the whole sentence around it and where the answer sits in that sentence."""

    article: ArticleRef
    sentence: str
    sentence_start: int  # offset of the sentence in the article body
    answer_start: int  # offset of the answer inside `sentence`
    answer_end: int
    page: int | None = None  # the sentence's page in a paged document (PDF)


@dataclass(frozen=True)
class Answer:
    """What the bot says to a question: a confident answer with its citation, an unsure `tentative` one, or neither.

    `text` is set only when the bot is confident; `score` is the calibrated confidence (the estimated probability
    that the best candidate is right). `supporting` are other articles that give the same answer; `conflicting` are
    confident, different answers from other articles, newest first.
    """

    question: str
    text: str | None
    score: float
    citation: Citation | None = None
    alternatives: tuple[Answer, ...] = ()
    searched: tuple[str, ...] = field(default=())
    tentative: Answer | None = None
    supporting: tuple[ArticleRef, ...] = ()
    conflicting: tuple[Answer, ...] = ()
    notes: tuple[str, ...] = ()  # what the bot did to the question ("only its first 1,000 characters were read")

    @property
    def is_answered(self) -> bool:
        return self.text is not None

    @property
    def outcome(self) -> str:
        """ "confident", "unsure" (only a tentative answer) or "none"."""
        return "confident" if self.is_answered else "unsure" if self.tentative is not None else "none"

    def cited_articles(self) -> list[ArticleRef]:
        """Every article this reply shows: the answer's, the tentative one's, conflicting, supporting, alternatives."""
        found = [
            a.citation.article
            for a in (self, self.tentative, *self.conflicting, *self.alternatives)
            if a is not None and a.citation is not None
        ]
        return list({article.id: article for article in (*found, *self.supporting)}.values())

    def to_dict(self) -> dict:
        """The JSON shape of `qa-bot ask --json`."""
        citation = self.citation
        return {
            "question": self.question,
            "answer": self.text,
            "score": round(self.score, 4),
            "sentence": citation.sentence if citation else None,
            "page": citation.page if citation else None,
            "article": citation.article.to_dict() if citation else None,
            "answer_in_sentence": [citation.answer_start, citation.answer_end] if citation else None,
            "alternatives": [alt.to_dict() for alt in self.alternatives],
            "searched": list(self.searched),
            "tentative": self.tentative.to_dict() if self.tentative else None,
            "supporting": [article.to_dict() for article in self.supporting],
            "conflicting": [other.to_dict() for other in self.conflicting],
            "notes": list(self.notes),
        }
