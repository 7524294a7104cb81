"""Retrieval: turn a natural-language question into a safe FTS5 query and fetch the best passages by BM25."""

from __future__ import annotations

import logging
import re

from bot.core.records import Passage
from bot.store.base import Store

__all__ = ["Retriever", "fts_query", "ranked_queries", "STOP_WORDS", "MAX_RANKED"]

logger = logging.getLogger(__name__)

# Words that carry no topic: dropped from the query so "Who is the CEO of X?" searches for "CEO" and "X".
STOP_WORDS = frozenset(
    """
a about above after again against all am an and any are as at be because been before being below between both but
by can could did do does doing down during each few for from further had has have having he her here hers herself
him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only
or other our ours ourselves out over own same she should so some such than that the their theirs them themselves
then there these they this those through to too under until up very was we were what when where which while who
whom whose why will with would you your yours yourself yourselves s t d ll m re ve tell know please give name
""".split()
)

# BM25 costs FTS5 a few µs for each passage that matches, and an OR of common words ("year", "first", "city")
# matches a tenth to a third of a 100k-article store. So a question is ranked among the passages holding one of its
# rarer words: its rarest words that appear in at most this many passages together (see `ranked_queries`). At 100k
# articles, 8,000 keeps recall@5 within a point of ranking every match, in a fifth of the time.
MAX_RANKED = 8000

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
    return _any_of(query_terms(question))


def _any_of(terms: list[str]) -> str:
    return " OR ".join(f'"{term}"' for term in terms)


def ranked_queries(terms: list[str], counts: dict[str, int], max_ranked: int = MAX_RANKED) -> list[str]:
    """FTS5 expressions for `Store.search` that rank the passages holding a rare term by BM25 over all `terms`.

    `counts` says how many passages hold each term (counted at least up to `max_ranked`). The rare terms are the
    rarest ones found in at most `max_ranked` passages together; the other terms present are common. FTS5's bm25()
    sums over the phrases of its expression, and each expression below holds a phrase once, so none overrates a
    passage and each gives the passages it is meant for their full score; the best score over all is exact:

    - `rare AND common`: passages with a rare and a common term;
    - `r AND (other rare)`, for each rare term but the commonest: passages with two rare terms or more;
    - `rarest`: passages whose only term is the rarest one.

    Passages whose only term is another rare one are left out: they seldom rank, and scoring them costs the most.
    With no rare or no common term, it is the plain OR of all terms.

        >>> ranked_queries(["ceo", "kestrel", "year"], {"ceo": 900, "kestrel": 30, "year": 45_000})
        ['("ceo" OR "kestrel") AND ("year")', '"kestrel" AND ("ceo")', '"kestrel"']
    """
    rare: list[str] = []
    total = 0
    for term in sorted((t for t in terms if counts[t]), key=counts.__getitem__):
        total += counts[term]
        if total > max_ranked:
            break
        rare.append(term)
    common = [t for t in terms if counts[t] and t not in rare]
    if not rare or not common:
        return [_any_of(terms)]
    in_order = [t for t in terms if t in rare]
    return (
        [f"({_any_of(in_order)}) AND ({_any_of(common)})"]
        + [f'"{term}" AND ({_any_of([t for t in in_order if t != term])})' for term in rare[:-1]]
        + [f'"{rare[0]}"']
    )


class Retriever:
    """Find the passages most likely to answer a question (FTS5 + BM25).

    :param store: the article store.
    :param top_k: passages returned per question.
    :param max_ranked: how many passages the rare words of a question may hold together (see `MAX_RANKED`).
    """

    def __init__(self, store: Store, *, top_k: int = 5, max_ranked: int = MAX_RANKED) -> None:
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        self.store, self.top_k, self.max_ranked = store, top_k, max_ranked

    def run(self, question: str, *, top_k: int | None = None) -> list[Passage]:
        terms = query_terms(question)
        if not terms:
            return []
        counts = self.store.passage_counts(terms, up_to=self.max_ranked)
        queries = ranked_queries(terms, counts, self.max_ranked)
        passages = self.store.search(queries, limit=self.top_k if top_k is None else top_k)
        logger.debug("retrieved queries=%r passages=%d", queries, len(passages))
        return passages
