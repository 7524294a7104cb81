"""Citations and answers: a span is quoted with the exact stored sentence(s) of its article."""

from __future__ import annotations

import math

import pytest

from bot.core.compose import cite, compose_answer
from bot.core.confidence import FEATURES, Calibrator
from bot.core.records import Answer, Article, ArticleRef, Citation, Passage, Span
from bot.store import SQLiteStore

ELM_REF = ArticleRef(
    1,
    "Elm Street Chess Club wins regional title",
    "Springfield Weekly",
    "https://news.example.org/elm-street-chess",
    "2024-03-10",
)


def passage_of(store: SQLiteStore, word: str) -> Passage:
    (passage,) = store.search(f'"{word}"', limit=1)
    return passage


def span_of(
    passage: Passage,
    text: str,
    *,
    context_index: int = 0,
    score: float = 0.9,
    logit: float = 5.0,
    end_text: str | None = None,
) -> Span:
    """A reader span over `text` (or from `text` up to the end of `end_text`) inside the passage."""
    start = passage.text.index(text)
    end = passage.text.index(end_text) + len(end_text) if end_text else start + len(text)
    return Span(context_index, start, end, passage.text[start:end], score, logit)


def test_citation_is_the_exact_sentence_holding_the_answer(store):
    passage = passage_of(store, "haddad")
    citation = cite(store, passage, span_of(passage, "Noor Haddad"))
    assert citation == Citation(
        article=ELM_REF,
        sentence="The club was founded by Noor Haddad in 2015.",
        sentence_start=75,
        answer_start=24,
        answer_end=35,
    )
    assert citation.sentence[citation.answer_start : citation.answer_end] == "Noor Haddad"


def test_answer_across_two_sentences_quotes_both_exactly_as_stored(store):
    passage = passage_of(store, "haddad")
    citation = cite(store, passage, span_of(passage, "2015", end_text="Sam Lee"))
    assert (
        citation.sentence
        == "The club was founded by Noor Haddad in 2015. Its youngest player, Sam Lee, is nine years old."
    )
    assert citation.sentence == store.article_body(1)[75:168]
    assert citation.sentence[citation.answer_start : citation.answer_end] == "2015. Its youngest player, Sam Lee"


def test_citation_in_a_later_passage_of_a_long_article(tmp_path):
    store = SQLiteStore(tmp_path / "long.db")
    filler = [f"Paragraph {n} repeats the same twelve words about the weather in the valley today." for n in range(12)]
    body = " ".join(filler[:9]) + " The harbour master is Ines Caldwell. " + " ".join(filler[9:])
    store.add_article(Article(title="Valley weather", body=body, source="valley.txt"))
    passage = passage_of(store, "caldwell")
    assert passage.char_start > 0  # not the first passage: offsets must be shifted into the body
    citation = cite(store, passage, span_of(passage, "Ines Caldwell"))
    assert (citation.sentence, citation.sentence_start) == (
        "The harbour master is Ines Caldwell.",
        body.index("The harbour master"),
    )
    assert citation.sentence[citation.answer_start : citation.answer_end] == "Ines Caldwell"


def raw(answer: float, hedge: float | None = None) -> Calibrator:
    """The uncalibrated decision: span scores against thresholds (the hedge at half the answer threshold)."""
    return Calibrator.raw(answer_threshold=answer, hedge_threshold=answer / 2 if hedge is None else hedge)


def test_answer_below_the_hedge_threshold_is_no_answer_with_searched_titles(store):
    passages = store.search('"club" OR "bridge"', limit=5)
    spans = [span_of(passages[0], passages[0].text[:12], score=0.2)]
    answer = compose_answer("Who?", passages, spans, store=store, calibrator=raw(0.5, hedge=0.25))
    assert answer == Answer(question="Who?", text=None, score=0.2, searched=tuple(p.article.title for p in passages))
    assert (answer.is_answered, answer.outcome) == (False, "none")


def test_an_unsure_answer_is_only_tentative_with_its_sentence(store):
    passages = [passage_of(store, "haddad")]
    answer = compose_answer(
        "Who founded the club?",
        passages,
        [span_of(passages[0], "Noor Haddad", score=0.3)],
        store=store,
        calibrator=raw(0.5, hedge=0.25),
    )
    assert (answer.text, answer.outcome, answer.score) == (None, "unsure", 0.3)
    assert (answer.tentative.text, answer.tentative.citation.sentence) == (
        "Noor Haddad",
        "The club was founded by Noor Haddad in 2015.",
    )
    shown = answer.to_dict()
    assert (shown["answer"], shown["tentative"]["answer"], shown["tentative"]["article"]["title"]) == (
        None,
        "Noor Haddad",
        ELM_REF.title,
    )


def test_no_spans_is_no_answer(store):
    passages = store.search('"club"', limit=5)
    assert compose_answer("Who?", passages, [], store=store, calibrator=raw(0.25)) == Answer(
        question="Who?", text=None, score=0.0, searched=("Elm Street Chess Club wins regional title",)
    )


def test_no_passages_is_no_answer_with_nothing_searched(store):
    assert compose_answer("Who?", [], [], store=store, calibrator=raw(0.0)) == Answer(
        question="Who?", text=None, score=0.0
    )


def test_best_span_is_the_answer_with_its_citation(store):
    passages = [passage_of(store, "haddad"), passage_of(store, "ortiz")]
    spans = [
        span_of(passages[1], "Lena Ortiz", context_index=1, score=0.2),  # under the hedge threshold
        span_of(passages[0], "Noor Haddad", context_index=0, score=0.8),
    ]
    answer = compose_answer("Who founded the club?", passages, spans, store=store, calibrator=raw(0.5))
    assert (answer.text, answer.score, answer.citation.article, answer.alternatives) == (
        "Noor Haddad",
        0.8,
        ELM_REF,
        (),
    )
    assert answer.searched == ("Elm Street Chess Club wins regional title", "Riverton bridge reopens after repairs")
    assert (answer.outcome, answer.tentative, answer.supporting, answer.conflicting) == ("confident", None, (), ())


def test_alternatives_come_from_other_articles_with_distinct_text_at_most_two(store):
    store.add_article(Article(title="Fourth article", body="Quill Benton founded the quiz league.", source="4.txt"))
    elm, kestrel, riverton, fourth = (passage_of(store, w) for w in ("haddad", "velasquez", "ortiz", "quill"))
    passages = [elm, kestrel, riverton, fourth]
    spans = [
        span_of(elm, "Noor Haddad", context_index=0, score=0.9),
        span_of(elm, "Sam Lee", context_index=0, score=0.8),  # same article as the answer
        span_of(kestrel, "Amara Velasquez", context_index=1, score=0.45),
        span_of(kestrel, "Tom Becker", context_index=1, score=0.4),  # second span of an article already used
        span_of(riverton, "Lena Ortiz", context_index=2, score=0.35),
        span_of(fourth, "Quill Benton", context_index=3, score=0.3),  # would be a third alternative
    ]
    answer = compose_answer("Who?", passages, spans, store=store, calibrator=raw(0.5))
    assert answer.text == "Noor Haddad"
    assert [(alt.text, alt.citation.article.title, alt.citation.sentence) for alt in answer.alternatives] == [
        (
            "Amara Velasquez",
            "Kestrel Foods names a new chief executive",
            "Kestrel Foods said on Monday that Dr. Amara Velasquez will become its CEO in May.",
        ),
        (
            "Lena Ortiz",
            "Riverton bridge reopens after repairs",
            "Engineer Lena Ortiz said the bridge's steel beams were replaced.",
        ),
    ]


def test_the_same_answer_in_another_article_supports_it_and_low_scores_are_left_out(store):
    store.add_article(
        Article(title="Fourth article", body="Coach NOOR HADDAD also runs the quiz league.", source="4.txt")
    )
    elm, kestrel, fourth = (passage_of(store, w) for w in ("founded", "velasquez", "coach"))
    passages = [elm, fourth, kestrel]
    spans = [
        span_of(elm, "Noor Haddad", context_index=0, score=0.9),
        span_of(fourth, "NOOR HADDAD", context_index=1, score=0.8),  # the answer again, in capitals
        span_of(kestrel, "Amara Velasquez", context_index=2, score=0.2),  # under the hedge threshold
    ]
    answer = compose_answer("Who?", passages, spans, store=store, calibrator=raw(0.5))
    assert (answer.text, answer.alternatives, answer.conflicting) == ("Noor Haddad", (), ())
    assert [article.title for article in answer.supporting] == ["Fourth article"]
    assert answer.to_dict()["supporting"] == [fourth.article.to_dict()]


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9])
def test_threshold_is_inclusive(store, threshold):
    passage = passage_of(store, "haddad")
    answer = compose_answer(
        "Who?", [passage], [span_of(passage, "Noor Haddad", score=threshold)], store=store, calibrator=raw(threshold)
    )
    assert answer.text == "Noor Haddad"


def test_without_calibration_the_highest_logit_among_confident_spans_wins_across_passages(store):
    passages = [passage_of(store, "haddad"), passage_of(store, "ortiz")]
    spans = [
        span_of(passages[1], "Lena Ortiz", context_index=1, score=0.95, logit=4.0),  # sure, but weak evidence
        span_of(passages[0], "Noor Haddad", context_index=0, score=0.7, logit=9.0),
        span_of(passages[0], "Sam Lee", context_index=0, score=0.1, logit=12.0),
    ]  # strongest, not confident
    answer = compose_answer("Who founded the club?", passages, spans, store=store, calibrator=raw(0.5))
    assert (answer.text, answer.score) == ("Noor Haddad", 0.7)
    assert [other.text for other in answer.conflicting] == ["Lena Ortiz"]  # confident too, and different


def test_confident_answers_that_disagree_are_shown_newest_first(store):
    store.add_article(
        Article(
            title="Club update", body="The club was founded by Ada Park.", source="u.txt", published_at="2025-01-05"
        )
    )
    store.add_article(Article(title="Club history", body="The club was founded by Ivo Marsh.", source="h.txt"))
    elm, update, history = (passage_of(store, w) for w in ("haddad", "park", "marsh"))
    passages = [elm, history, update]
    spans = [
        span_of(elm, "Noor Haddad", context_index=0, score=0.9, logit=9.0),
        span_of(history, "Ivo Marsh", context_index=1, score=0.8, logit=8.0),
        span_of(update, "Ada Park", context_index=2, score=0.7, logit=7.0),
    ]
    answer = compose_answer("Who founded the club?", passages, spans, store=store, calibrator=raw(0.5))
    assert answer.text == "Noor Haddad"
    # dated answers newest first, undated ones last
    assert [(o.text, o.citation.article.published_at) for o in answer.conflicting] == [
        ("Ada Park", "2025-01-05"),
        ("Ivo Marsh", None),
    ]


def test_a_calibrated_confidence_chooses_the_answer_other_articles_agree_with(store):
    store.add_article(Article(title="Club profile", body="Noor Haddad started the club in a garage.", source="p.txt"))
    elm, riverton, profile = (passage_of(store, w) for w in ("founded", "ortiz", "garage"))
    passages = [riverton, elm, profile]
    spans = [
        span_of(riverton, "Lena Ortiz", context_index=0, score=0.6, logit=9.0),
        span_of(elm, "Noor Haddad", context_index=1, score=0.6, logit=8.0),
        span_of(profile, "Noor Haddad", context_index=2, score=0.6, logit=7.0),
    ]
    weights = [2.0 if name == "agree_articles" else 0.0 for name in FEATURES]
    calibrator = Calibrator(
        weights=tuple(weights),
        bias=0.0,
        means=(0.0,) * len(FEATURES),
        scales=(1.0,) * len(FEATURES),
        answer_threshold=0.8,
        hedge_threshold=0.4,
    )
    answer = compose_answer("Who founded the club?", passages, spans, store=store, calibrator=calibrator)
    assert (answer.text, answer.citation.article.title) == ("Noor Haddad", ELM_REF.title)
    assert answer.score == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert [article.title for article in answer.supporting] == ["Club profile"]
    assert [alt.text for alt in answer.alternatives] == ["Lena Ortiz"]  # 0.5: only worth a mention
