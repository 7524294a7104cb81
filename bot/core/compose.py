"""Turn reader spans into an `Answer`: choose the best, cite its sentence and article, add alternatives."""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.records import Answer, Citation, Passage, Span
from bot.store.base import Store

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
        sentence = store.article_body(passage.article.id)[first_start : sentences[-1].char_end]
    return Citation(
        article=passage.article,
        sentence=sentence,
        sentence_start=first_start,
        answer_start=answer_start - first_start,
        answer_end=answer_end - first_start,
    )


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def compose_answer(
    question: str,
    passages: Sequence[Passage],
    spans: Sequence[Span],
    *,
    store: Store,
    threshold: float,
    max_alternatives: int = 2,
) -> Answer:
    """The answer to give: among spans whose score reaches `threshold`, the one with the highest logit;
    with none, "no confident answer".

    The score (probability within its own passage, "no answer" included) decides *whether* to answer; the logit,
    which is not normalised per passage, decides *which* passage wins: a passage with one plausible-looking name
    gets a high in-passage probability even when it is about something else (F1 +6 at 10k articles, BENCHMARKS.md).
    Alternatives are the next spans from *other* articles whose text differs from the answer and whose score
    reaches half the threshold; they are offered only with an answer. `searched` lists every article read.

    :param spans: reader output for `passages`, in any order (`span.context_index` indexes `passages`).
    """
    searched = tuple(dict.fromkeys(p.article.title for p in passages))
    ranked = sorted(spans, key=lambda s: (-s.logit, -s.score))
    confident = [span for span in ranked if span.score >= threshold]
    if not confident:
        best_score = max((span.score for span in ranked), default=0.0)
        return Answer(question=question, text=None, score=best_score, searched=searched)
    top = confident[0]
    ranked.remove(top)

    top_passage = passages[top.context_index]
    seen_articles, seen_texts = {top_passage.article.id}, {_normalise(top.text)}
    alternatives: list[Answer] = []
    for span in ranked:
        if len(alternatives) >= max_alternatives:
            break
        if span.score < threshold / 2:
            continue
        passage = passages[span.context_index]
        if passage.article.id in seen_articles or _normalise(span.text) in seen_texts:
            continue
        seen_articles.add(passage.article.id)
        seen_texts.add(_normalise(span.text))
        alternatives.append(
            Answer(question=question, text=span.text, score=span.score, citation=cite(store, passage, span))
        )
    return Answer(
        question=question,
        text=top.text,
        score=top.score,
        citation=cite(store, top_passage, top),
        alternatives=tuple(alternatives),
        searched=searched,
    )
