"""Turn reader spans into an `Answer`: choose the best, cite its sentence and article, add alternatives."""

from __future__ import annotations

from collections.abc import Sequence

from bot.records import Answer, Citation, Passage, Span
from bot.store import Store

__all__ = ["compose_answer", "cite"]


def cite(store: Store, passage: Passage, span: Span) -> Citation:
    """Locate a span of a passage in its article: the whole sentence(s) holding it, and the answer's place there."""
    answer_start = passage.char_start + span.char_start
    answer_end = passage.char_start + span.char_end
    sentences = store.sentences_covering(passage.article.id, answer_start, answer_end)
    if not sentences:  # cannot happen for passages built by the store; fall back to the passage itself
        first_start, sentence = passage.char_start, passage.text
    elif len(sentences) == 1:
        first_start, sentence = sentences[0].char_start, sentences[0].text
    else:  # an answer across a sentence boundary: quote every sentence it touches, exactly as stored
        first_start = sentences[0].char_start
        sentence = store.article_body(passage.article.id)[first_start:sentences[-1].char_end]
    return Citation(article=passage.article, sentence=sentence, sentence_start=first_start,
                    answer_start=answer_start - first_start, answer_end=answer_end - first_start)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def compose_answer(question: str, passages: Sequence[Passage], spans: Sequence[Span], *, store: Store,
                   threshold: float, max_alternatives: int = 2) -> Answer:
    """The answer to give: the best span if its score reaches `threshold`, else "no confident answer".

    Alternatives are the best spans from *other* articles whose text differs from the answer and whose score
    reaches half the threshold; they are offered only with an answer. `searched` lists every article read.

    :param spans: reader output for `passages`, best first (`span.context_index` indexes `passages`).
    """
    searched = tuple(dict.fromkeys(p.article.title for p in passages))
    ranked = sorted(spans, key=lambda s: (-s.score, -s.logit))
    if not ranked or ranked[0].score < threshold:
        best_score = ranked[0].score if ranked else 0.0
        return Answer(question=question, text=None, score=best_score, searched=searched)

    top = ranked[0]
    top_passage = passages[top.context_index]
    seen_articles, seen_texts = {top_passage.article.id}, {_normalise(top.text)}
    alternatives: list[Answer] = []
    for span in ranked[1:]:
        if len(alternatives) >= max_alternatives or span.score < threshold / 2:
            break
        passage = passages[span.context_index]
        if passage.article.id in seen_articles or _normalise(span.text) in seen_texts:
            continue
        seen_articles.add(passage.article.id)
        seen_texts.add(_normalise(span.text))
        alternatives.append(Answer(question=question, text=span.text, score=span.score,
                                   citation=cite(store, passage, span)))
    return Answer(question=question, text=top.text, score=top.score, citation=cite(store, top_passage, top),
                  alternatives=tuple(alternatives), searched=searched)
