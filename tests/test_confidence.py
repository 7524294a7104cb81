"""The answer decision: evidence for each candidate, the calibrated confidence, and falling back without one."""

from __future__ import annotations

import json
import logging
import math

import pytest

from bot.core.confidence import FEATURES, Calibrator, gather_evidence, normalise_answer, question_kind, type_fit
from bot.core.records import ArticleRef, Passage, Span
from bot.core.service import build_calibrator
from bot.errors import ConfigError
from bot.settings import Settings


def _passage(index: int, text: str, *, article: int, bm25: float) -> Passage:
    return Passage(
        id=index,
        article=ArticleRef(article, f"Article {article}", f"{article}.txt"),
        char_start=0,
        char_end=len(text),
        text=text,
        bm25=bm25,
    )


def _span(passages: list[Passage], index: int, text: str, *, score: float, logit: float, null: float = 0.0) -> Span:
    start = passages[index].text.index(text)
    return Span(index, start, start + len(text), text, score, logit, null)


def test_evidence_counts_agreement_margins_and_question_words():
    passages = [
        _passage(0, "Ada Park founded the robotics club in 2019.", article=1, bm25=-8.0),
        _passage(1, "The club's founder, ada park, still coaches.", article=2, bm25=-4.0),
        _passage(2, "The robotics club meets every week.", article=3, bm25=-2.0),
    ]
    spans = [
        _span(passages, 0, "Ada Park", score=0.8, logit=9.0, null=2.0),
        _span(passages, 1, "ada park", score=0.6, logit=7.0),
        _span(passages, 2, "every week", score=0.3, logit=4.0),
    ]
    evidence = gather_evidence(
        "Who founded the robotics club?", passages, spans, sentence_of=lambda passage, span: passage.text
    )
    assert [e.span.text for e in evidence] == ["Ada Park", "every week"]  # one candidate per normalised answer
    best, other = evidence[0].features, evidence[1].features
    assert set(best) == set(FEATURES)
    assert (best["agree_passages"], best["agree_articles"], best["null_margin"], best["runner_up_margin"]) == (
        1.0,
        1.0,
        7.0,
        5.0,
    )
    assert (best["passage_rank"], best["bm25_relative"], best["type_fit"], best["candidate_rank"]) == (
        0.0,
        1.0,
        1.0,
        0.0,
    )
    assert best["sentence_overlap"] == pytest.approx(3 / 3)  # founded, robotics, club
    assert (other["logit_gap"], other["bm25_relative"], other["type_fit"], other["candidate_rank"]) == (
        -5.0,
        0.25,
        -1.0,
        1.0,
    )
    assert best["log_score"] == pytest.approx(math.log(0.8))


def test_an_answer_made_of_the_question_words_is_marked():
    passages = [_passage(0, "The robotics club was founded by Ada Park.", article=1, bm25=-3.0)]
    spans = [_span(passages, 0, "robotics club", score=0.5, logit=5.0)]
    [evidence] = gather_evidence("Who founded the robotics club?", passages, spans, sentence_of=lambda p, s: p.text)
    assert evidence.features["answer_in_question"] == 1.0


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many trains will run?", "count"),
        ("In which year was it founded?", "when"),
        ("When did it open?", "when"),
        ("Whose car was it?", "who"),
        ("In what city is it?", "where"),
        ("What is the fee?", "other"),
    ],
)
def test_question_kinds(question, kind):
    assert question_kind(question) == kind


def test_answer_types_fit_or_not():
    assert [type_fit("count", a) for a in ("twelve", "3,400", "trains")] == [1.0, 1.0, -1.0]
    assert [type_fit("where", a) for a in ("Gdansk", "at noon")] == [1.0, -1.0]
    assert normalise_answer("The  Baltic Forum!") == "baltic forum"


def test_a_calibration_file_gives_probabilities_and_outcomes(tmp_path):
    weights = [0.0] * len(FEATURES)
    weights[FEATURES.index("agree_articles")] = 1.0
    path = tmp_path / "calibration.json"
    path.write_text(
        json.dumps(
            {
                "features": list(FEATURES),
                "weights": weights,
                "bias": -1.0,
                "means": [0.0] * len(FEATURES),
                "scales": [1.0] * len(FEATURES),
                "platt": [2.0, 0.5],
                "answer_threshold": 0.9,
                "hedge_threshold": 0.5,
                "fallback": {"answer_threshold": 0.6, "hedge_threshold": 0.3},
            }
        )
    )
    calibrator = Calibrator.load(path)
    features = dict.fromkeys(FEATURES, 0.0) | {"agree_articles": 2.0}
    assert calibrator.candidate_score(features) == 1.0
    assert calibrator.probability(features) == pytest.approx(1 / (1 + math.exp(-2.5)))
    assert [calibrator.outcome(p) for p in (0.95, 0.9, 0.6, 0.49)] == ["confident", "confident", "unsure", "none"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "Cannot read the calibration file"),
        ('{"features": ["log_score"], "weights": [1]}', "was fitted on other features"),
        ("[1, 2]", "is not a calibration file"),
    ],
)
def test_broken_calibration_files_are_config_errors(tmp_path, content, problem):
    path = tmp_path / "calibration.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=problem):
        Calibrator.load(path)


def test_the_bot_falls_back_to_the_raw_score_with_one_warning_naming_the_file(tmp_path, tiny_reader_dir, caplog):
    missing = tmp_path / "nowhere.json"
    with caplog.at_level(logging.INFO, logger="bot.service"):
        calibrator = build_calibrator(
            Settings(_env_file=None, reader_model=str(tiny_reader_dir), calibration_file=missing)
        )
    assert (calibrator.is_calibrated, calibrator.answer_threshold) == (False, 0.45)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and f"file={missing}" in record.message


def test_a_broken_file_beside_the_model_keeps_its_fallback_threshold(tmp_path, caplog):
    model = tmp_path / "model"
    model.mkdir()
    (model / "calibration.json").write_text(
        json.dumps({"features": ["x"], "fallback": {"answer_threshold": 0.7, "hedge_threshold": 0.3}})
    )
    with caplog.at_level(logging.WARNING, logger="bot.service"):
        calibrator = build_calibrator(Settings(_env_file=None, reader_model=str(model)))
    assert (calibrator.is_calibrated, calibrator.answer_threshold, calibrator.hedge_threshold) == (False, 0.7, 0.3)
    assert len(caplog.records) == 1


def test_thresholds_in_the_settings_override_the_calibrated_ones(tmp_path):
    calibrator = build_calibrator(
        Settings(_env_file=None, reader_model=str(tmp_path), answer_threshold=0.3, hedge_threshold=0.6)
    )
    assert (calibrator.answer_threshold, calibrator.hedge_threshold) == (0.3, 0.3)  # a hedge never exceeds it
