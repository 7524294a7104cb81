"""Turn reader spans into an `Answer`: weigh the candidates, cite the most trusted one, add what agrees or differs."""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.confidence import Calibrator, Evidence, gather_evidence, normalise_answer
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
        page=sentences[0].page if sentences else None,
    )


def _published(answer: Answer) -> str:
    return (answer.citation.article.published_at or "") if answer.citation else ""


def _newest_first(answers: Sequence[Answer]) -> tuple[Answer, ...]:
    """Dated answers newest first (ISO dates sort as text), undated ones after them in their order."""
    dated = sorted((a for a in answers if _published(a)), key=_published, reverse=True)
    return (*dated, *(a for a in answers if not _published(a)))


def compose_answer(
    question: str,
    passages: Sequence[Passage],
    spans: Sequence[Span],
    *,
    store: Store,
    calibrator: Calibrator,
    max_alternatives: int = 2,
) -> Answer:
    """The answer to give: the candidate the calibrator trusts most, as a confident answer, a tentative one or none.

    Each distinct candidate (`gather_evidence`) gets a calibrated confidence; the most trusted one decides the
    outcome (`Calibrator.outcome`). With a confident answer come the other articles that give the same answer
    (`supporting`), confident different answers from other articles (`conflicting`, newest first) and up to
    `max_alternatives` further candidates from other articles that reach the hedge threshold (at most
    `max_alternatives` conflicting ones too). `searched` lists every article read.

    :param spans: reader output for `passages`, in any order (`span.context_index` indexes `passages`).
    """
    searched = tuple(dict.fromkeys(p.article.title for p in passages))
    citations: dict[tuple[int, int, int], Citation] = {}

    def citation_of(passage: Passage, span: Span) -> Citation:
        key = (span.context_index, span.char_start, span.char_end)
        if key not in citations:
            citations[key] = cite(store, passage, span)
        return citations[key]

    evidence = gather_evidence(
        question, passages, spans, sentence_of=lambda passage, span: citation_of(passage, span).sentence
    )
    if not evidence:
        return Answer(question=question, text=None, score=0.0, searched=searched)
    scored = [(calibrator.probability(e.features), index, e) for index, e in enumerate(evidence)]
    if calibrator.is_calibrated:
        trusted = sorted(scored, key=lambda item: (-item[0], item[1]))
    else:
        # the raw span score is a probability within one passage only: it says whether to answer, while the logit
        # (comparable across passages) says which passage wins, as before calibration existed
        order = {"confident": 0, "unsure": 1, "none": 2}
        trusted = sorted(scored, key=lambda item: (order[calibrator.outcome(item[0])], item[1]))
    confidence, _, best = trusted[0]

    def as_answer(probability: float, item: Evidence) -> Answer:
        return Answer(
            question=question, text=item.span.text, score=probability, citation=citation_of(item.passage, item.span)
        )

    outcome = calibrator.outcome(confidence)
    if outcome == "none":
        return Answer(question=question, text=None, score=confidence, searched=searched)
    if outcome == "unsure":
        return Answer(
            question=question, text=None, score=confidence, tentative=as_answer(confidence, best), searched=searched
        )

    key, article_id = normalise_answer(best.span.text), best.passage.article.id
    supporting = {
        passages[s.context_index].article.id: passages[s.context_index].article
        for s in spans
        if normalise_answer(s.text) == key and passages[s.context_index].article.id != article_id
    }
    conflicting: list[Answer] = []
    alternatives: list[Answer] = []
    shown = {article_id}
    for probability, _, item in trusted[1:]:
        other = item.passage.article.id
        if other in shown or other in supporting or probability < calibrator.hedge_threshold:
            continue
        if probability >= calibrator.answer_threshold and len(conflicting) < max_alternatives:
            conflicting.append(as_answer(probability, item))
        elif probability < calibrator.answer_threshold and len(alternatives) < max_alternatives:
            alternatives.append(as_answer(probability, item))
        else:
            continue
        shown.add(other)
    answer = as_answer(confidence, best)
    return Answer(
        question=question,
        text=answer.text,
        score=confidence,
        citation=answer.citation,
        alternatives=tuple(alternatives),
        searched=searched,
        supporting=tuple(supporting.values()),
        conflicting=_newest_first(conflicting),
    )
