"""Retrieval: turn a natural-language question into a safe FTS5 query and fetch the best passages by BM25."""

from __future__ import annotations

import logging
import re

from bot.records import Passage
from bot.store import Store

__all__ = ["Retriever", "fts_query", "STOP_WORDS"]

logger = logging.getLogger(__name__)

# Words that carry no topic: dropped from the query so "Who is the CEO of X?" searches for "CEO" and "X".
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both but
by can could did do does doing down during each few for from further had has have having he her here hers herself
him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only
or other our ours ourselves out over own same she should so some such than that the their theirs them themselves
then there these they this those through to too under until up very was we were what when where which while who
whom whose why will with would you your yours yourself yourselves s t d ll m re ve tell know please give name
""".split())

# Letters and digits, with apostrophes inside a word ("Turkey's", "Turkey’s"); everything else separates words.
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def query_terms(question: str) -> list[str]:
    """The words of a question worth searching for, lower-cased, in order, without duplicates.

    Possessive and contracted forms are split the way the FTS tokenizer splits them (both ' and ’ separate).
    When every word is a stop word the words are kept, so "Who is it?" still searches for something.
    """
    words: list[str] = []
    for match in _WORD.findall(question.lower()):
        words.extend(part for part in re.split(r"['’]", match) if part)
    content = [w for w in words if w not in STOP_WORDS]
    chosen = content or words
    return list(dict.fromkeys(chosen))


def fts_query(question: str) -> str:
    """A safe FTS5 MATCH expression for any user text: each term quoted, terms joined with OR (BM25 ranks them).

    Quoting makes FTS5 syntax (`*`, `-`, `:`, `NEAR`, `AND`, parentheses) plain text. Returns "" for no terms.

        >>> fts_query('Who is the CEO of "Rosoboronexport"?')
        '"ceo" OR "rosoboronexport"'
    """
    return " OR ".join(f'"{term}"' for term in query_terms(question))


class Retriever:
    """Find the passages most likely to answer a question (FTS5 + BM25).

    :param store: the article store.
    :param top_k: passages returned per question.
    """

    def __init__(self, store: Store, *, top_k: int = 5) -> None:
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        self.store, self.top_k = store, top_k

    def run(self, question: str, *, top_k: int | None = None) -> list[Passage]:
        query = fts_query(question)
        passages = self.store.search(query, limit=self.top_k if top_k is None else top_k)
        logger.debug("retrieved query=%r passages=%d", query, len(passages))
        return passages
