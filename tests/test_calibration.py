"""Fitting the answer decision: runs through the pipeline, the fit, out-of-fold thresholds, the file the bot reads."""

from __future__ import annotations

import json
import random

import pytest

from bot.core.confidence import FEATURES, Calibrator
from bot.core.reader import Reader
from bot.errors import DatasetError
from bot.training.calibration import (
    ANSWER_PRECISION,
    CalibrationCase,
    calibrate,
    collect_cases,
    operating_point,
    reliability_plot,
    report_from_cases,
)
from bot.training.squad import write_squad_json


def _synthetic_cases(n: int = 600, seed: int = 3) -> list[CalibrationCase]:
    """Half answerable; a candidate is right more often the higher its span score and the more articles agree."""
    rng = random.Random(seed)
    cases = []
    for index in range(n):
        kind = "answerable" if index % 2 == 0 else ("sentence_removed" if index % 4 == 1 else "article_missing")
        case = CalibrationCase(f"q{index}", kind, article=(index // 2) % 10, golds=["x"])
        for rank in range(3):
            quality = rng.random() if kind == "answerable" else 0.4 * rng.random()
            features = dict.fromkeys(FEATURES, 0.0) | {
                "log_score": quality * 4 - 4,
                "candidate_rank": float(rank),
                "agree_articles": float(rng.random() < quality),
            }
            right = kind == "answerable" and rng.random() < quality and rank == 0
            case.candidates.append(features)
            case.right.append(right)
            case.f1.append(float(right))
            case.texts.append(f"answer {rank}")
        cases.append(case)
    return cases


def test_thresholds_are_chosen_out_of_fold_and_the_file_round_trips(tmp_path):
    report = report_from_cases(_synthetic_cases(), model="tiny")
    calibrator = report.calibrator
    assert 0.0 < calibrator.hedge_threshold <= calibrator.answer_threshold < 1.0
    assert report.chosen.precision >= ANSWER_PRECISION
    assert report.chosen.unanswerable_answered < 0.05
    path = report.write(tmp_path / "calibration.json")
    loaded = Calibrator.load(path)
    assert (loaded.weights, loaded.scale, loaded.answer_threshold) == (
        calibrator.weights,
        calibrator.scale,
        calibrator.answer_threshold,
    )
    data = json.loads(path.read_text())
    assert data["fit"]["cases"] == {"answerable": 300, "sentence_removed": 150, "article_missing": 150}
    assert Calibrator.fallback_thresholds(path) == (report.fallback_answer_threshold, report.fallback_hedge_threshold)
    assert reliability_plot(report, tmp_path / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_operating_points_count_hedges_as_abstentions():
    from bot.training.calibration import Decision

    decisions = [
        Decision("answerable", 0, 0.95, True, 1.0, 0.9, True, 1.0),
        Decision("answerable", 0, 0.4, False, 0.2, 0.5, False, 0.2),
        Decision("article_missing", 0, 0.3, False, 0.0, 0.6, False, 0.0),
    ]
    point = operating_point(decisions, 0.5)
    assert (point.answered, point.precision, point.answerable_answered, point.unanswerable_answered) == (
        1,
        1.0,
        0.5,
        0.0,
    )
    assert point.squad2_f1 == pytest.approx(100 * (1.0 + 0 + 1) / 3)


def _tiny_squad(tmp_path, n_articles: int = 4):
    articles = []
    for a in range(n_articles):
        paragraphs = []
        for p in range(2):
            context = (
                f"The office number {a}{p} opened in {1900 + p}. It was run by Ada Park{a}. "
                "The river town kept a market by the bridge."
            )
            paragraphs.append(
                {
                    "context": context,
                    "qas": [
                        {
                            "id": f"{a}-{p}",
                            "question": f"When did office number {a}{p} open?",
                            "answers": [{"text": str(1900 + p), "answer_start": context.index(str(1900 + p))}],
                        }
                    ],
                }
            )
        articles.append({"title": f"Town {a}", "paragraphs": paragraphs})
    return write_squad_json(tmp_path / "train.json", articles)


def test_cases_cover_answerable_removed_sentence_and_missing_article(tmp_path, tiny_reader_dir):
    reader = Reader(tiny_reader_dir, max_length=64, doc_stride=16).load()
    cases = collect_cases(
        _tiny_squad(tmp_path),
        reader=reader,
        questions=2,
        distractors=1,
        validation_articles=2,
        min_questions=1,
        workdir=tmp_path,
    )
    kinds = [case.kind for case in cases]
    assert kinds.count("answerable") == 2 and {"sentence_removed", "article_missing"} <= set(kinds)
    for case in cases:
        assert len(case.candidates) == len(case.right) == len(case.texts) and case.golds
        assert not any(case.right) or case.kind == "answerable"  # nothing is right without the answer


def test_calibrate_says_how_many_questions_it_needs(tmp_path, tiny_reader_dir):
    with pytest.raises(DatasetError, match=r"gives 4 held-out questions; calibration needs at least 200"):
        calibrate(train_path=_tiny_squad(tmp_path), model_dir=tiny_reader_dir, validation_articles=2)
