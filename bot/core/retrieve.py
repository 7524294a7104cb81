"""Retrieval: turn a natural-language question into a safe FTS5 query and fetch the best passages by BM25."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence

from bot.core.records import Passage
from bot.store.base import Store

__all__ = ["Retriever", "fts_query", "query_terms", "ranked_queries", "STOP_WORDS", "MAX_RANKED", "MAX_QUERY_TERMS"]

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
MAX_QUERY_TERMS = 32  # QABOT_MAX_QUERY_TERMS: the rarest words of a long question are searched
ALONE_WEIGHT = 0.5  # a follow-up ("Where did she speak?") says little alone: its own search counts half
PREFERRED_ARTICLE_BONUS = 0.3  # articles already cited in a conversation: as if a third better matched

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
    :param max_terms: the most search terms of one question: its rarest ones (a 700-word question must not cost
        seconds and gigabytes of BM25).
    """

    def __init__(
        self, store: Store, *, top_k: int = 5, max_ranked: int = MAX_RANKED, max_terms: int = MAX_QUERY_TERMS
    ) -> None:
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        if max_terms <= 0:
            raise ValueError(f"max_terms must be positive, got {max_terms}")
        self.store, self.top_k, self.max_ranked, self.max_terms = store, top_k, max_ranked, max_terms

    def run(
        self,
        question: str,
        *,
        top_k: int | None = None,
        context: Sequence[str] = (),
        prefer_articles: Collection[int] = (),
        collections: Collection[str] | None = None,
    ) -> list[Passage]:
        """The best passages for `question`, best first.

        :param collections: search only articles of these collections (the store filters inside its SQL, so
            nothing else is ever returned); None searches every article.
        :param context: earlier questions of a conversation ("Who runs Rosoboronexport?" before "Where did he
            speak?"): their words join the search with less weight than the question's own.
        :param prefer_articles: ids of articles cited earlier in the conversation, ranked a little higher.
        """
        limit = self.top_k if top_k is None else top_k
        context = [text for text in context if text.strip()]
        if not context and not prefer_articles:
            return self._search(question, limit, collections)
        # Two searches, the question widened by its context and the question alone, each scored relative to its own
        # best passage; a passage's score adds both, the second counting ALONE_WEIGHT. The question's own words
        # take part in both, so they weigh more than the earlier questions' words.
        candidates = max(limit * 3, 10)
        scores: dict[int, float] = {}
        found: dict[int, Passage] = {}
        searches = [(" ".join([question, *context]), 1.0)] + ([(question, ALONE_WEIGHT)] if context else [])
        for text, weight in searches:
            passages = self._search(text, candidates, collections)
            best = min((p.bm25 for p in passages), default=0.0)
            for passage in passages:
                found.setdefault(passage.id, passage)
                relative = passage.bm25 / best if best < 0 else 0.0
                scores[passage.id] = scores.get(passage.id, 0.0) + weight * relative
        for passage_id, passage in found.items():
            if passage.article.id in prefer_articles:
                scores[passage_id] += PREFERRED_ARTICLE_BONUS
        ranked = sorted(found.values(), key=lambda p: (-scores[p.id], p.bm25))[:limit]
        logger.debug(
            "retrieved with context=%d preferred=%d passages=%d", len(context), len(prefer_articles), len(ranked)
        )
        return ranked

    def _search(self, question: str, limit: int, collections: Collection[str] | None) -> list[Passage]:
        terms = query_terms(question)
        if not terms:
            return []
        counts = self.store.passage_counts(terms, up_to=self.max_ranked)
        if len(terms) > self.max_terms:
            rarest = set(sorted((t for t in terms if counts[t]), key=counts.__getitem__)[: self.max_terms])
            terms = [t for t in terms if t in rarest]
            if not terms:
                return []
        queries = ranked_queries(terms, counts, self.max_ranked)
        passages = self.store.search(queries, limit=limit, collections=collections)
        logger.debug("retrieved queries=%r passages=%d", queries, len(passages))
        return passages
