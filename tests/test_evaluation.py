"""eval-reader: SQuAD scores through the Reader, threshold calibration on mixed passages, speed per dtype."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.core.records import Span
from bot.training.evaluation import (
    CalibrationCase,
    ReaderEvaluation,
    ThresholdRow,
    calibrate_reader,
    choose_threshold,
    collect_calibration_cases,
    evaluate_reader,
    reader_speed,
    render_report,
    threshold_table,
)
from bot.training.squad import DatasetError, load_squad, write_squad_json

PARAGRAPHS = [
    ("Ada Park founded the chess club in 2019.", "Who founded the chess club?", "Ada Park"),
    ("The library opened on a Monday in May.", "On which day did the library open?", "Monday"),
    ("The bridge was repaired by Lena Ortiz.", "Who repaired the bridge?", "Lena Ortiz"),
    ("Tom Becker was the chief executive.", "Who was the chief executive?", "Tom Becker"),
    ("The mill stood by the river for a century.", "Where did the mill stand?", "by the river"),
    ("Sam Lee won the county chess title.", "Who won the chess title?", "Sam Lee"),
]


def _squad(paragraphs=PARAGRAPHS, *, impossible: str | None = None) -> list[dict]:
    article = {
        "title": "Town",
        "paragraphs": [
            {
                "context": context,
                "qas": [
                    {
                        "id": f"q{i}",
                        "question": question,
                        "answers": [{"text": answer, "answer_start": context.index(answer)}],
                    }
                ],
            }
            for i, (context, question, answer) in enumerate(paragraphs)
        ],
    }
    if impossible:
        article["paragraphs"][0]["qas"].append(
            {"id": "q-none", "question": impossible, "answers": [], "is_impossible": True}
        )
    return [article]


class FakeReader:
    """Answers from a table {question: (answer text, score)}, found in whichever context holds it."""

    def __init__(self, answers: dict[str, tuple[str, float]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, list[str]]] = []

    def best(self, question, contexts):
        self.calls.append((question, list(contexts)))
        text, score = self.answers.get(question, ("", 0.0))
        for index, context in enumerate(contexts):
            if text and text in context:
                start = context.index(text)
                return Span(index, start, start + len(text), text, score, 0.0)
        first = contexts[0].split()[0]  # a wrong answer when the right one is not there
        return Span(0, 0, len(first), first, score, 0.0)


@pytest.fixture
def squad_file(tmp_path):
    return write_squad_json(tmp_path / "set.json", _squad(impossible="Who sang at the opening?"))


def test_evaluate_reader_scores_each_question_on_its_own_paragraph(squad_file):
    # the fake falls back to the paragraph's first word: "The" (empty once normalised) or "Sam" (F1 2/3 with Sam Lee)
    fake = FakeReader(
        {
            "Who founded the chess club?": ("Ada Park", 0.9),
            "Who repaired the bridge?": ("bridge", 0.2),  # wrong and unsure
            "Who was the chief executive?": ("Tom Becker", 0.8),
        }
    )
    always = evaluate_reader(squad_file, model_dir="fake", reader=fake)
    thresholded = evaluate_reader(squad_file, model_dir="fake", reader=fake, threshold=0.5)

    assert [contexts for _, contexts in fake.calls[:7]] == [[q.context] for q in load_squad(squad_file)]
    trimmed = {key: value for key, value in always.to_dict().items() if key not in ("seconds", "answers_per_s")}
    assert trimmed == {
        "path": str(squad_file),
        "model": "fake",
        "dtype": "float32",
        "count": 7,
        "exact_match": pytest.approx(200 / 7),
        "f1": pytest.approx((2 + 2 / 3) / 7 * 100),
        "answered": 7,
        "no_answer_accuracy": 0.0,
        "threshold": None,
        # SQuAD 2.0 parts: the answerable six alone, and the lowest threshold that drops the
        # fallbacks (unsure "The"/"Sam" and the unanswerable one) but keeps Ada Park and Tom Becker
        "has_answer_exact_match": pytest.approx(200 / 6),
        "has_answer_f1": pytest.approx((2 + 2 / 3) / 6 * 100),
        "no_answer_accuracy_by_kind": {"impossible": 0.0},
        "best_f1": pytest.approx(300 / 7),
        "best_f1_threshold": 0.2,
    }
    # with a threshold the unsure answers become "no answer": right for the unanswerable question only
    assert (thresholded.answered, thresholded.exact_match, thresholded.no_answer_accuracy) == (
        2,
        pytest.approx(300 / 7),
        100.0,
    )
    assert always.answers_per_s > 0


def test_evaluate_reader_with_the_tiny_model_reports_bounded_scores(squad_file, tiny_reader_dir):
    report = evaluate_reader(squad_file, model_dir=tiny_reader_dir, limit=3, max_length=64, doc_stride=16)
    # without a threshold every question gets a span, so the unanswerable one (second in the file) is missed
    assert (report.count, report.answered, report.no_answer_accuracy) == (3, 3, 0.0)
    assert 0.0 <= report.exact_match <= report.f1 <= 100.0


def test_evaluate_reader_on_a_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="No SQuAD file at"):
        evaluate_reader(tmp_path / "missing.json", model_dir="fake", reader=FakeReader({}))


def test_calibration_cases_mix_right_and_wrong_paragraphs_of_the_article(squad_file):
    questions = [q for q in load_squad(squad_file) if not q.is_impossible]
    fake = FakeReader({question: (answer, 0.7) for _, question, answer in PARAGRAPHS})
    cases = collect_calibration_cases(questions, reader=fake, passages=3, unanswerable_share=0.5, seed=1)

    assert {case.is_answerable for case in cases} == {True, False}
    for case, question, (asked, contexts) in zip(cases, questions, fake.calls):
        assert asked == question.question and len(contexts) == 3
        assert (question.context in contexts) == case.is_answerable
        if not case.is_answerable:
            assert not any(question.answers[0].text in context for context in contexts)
        assert case.is_correct == case.is_answerable  # the fake is right whenever the answer is there


def test_threshold_table_counts_answers_on_unanswerable_cases_as_wrong():
    cases = [
        CalibrationCase("a", True, 0.9, True),
        CalibrationCase("b", True, 0.6, False),
        CalibrationCase("c", False, 0.5, False),
        CalibrationCase("d", False, 0.1, False),
    ]
    assert threshold_table(cases, thresholds=(0.0, 0.55, 0.95)) == [
        ThresholdRow(threshold=0.0, answered=4, precision=0.25, coverage=0.5, abstention=0.0),
        ThresholdRow(threshold=0.55, answered=2, precision=0.5, coverage=0.5, abstention=1.0),
        ThresholdRow(threshold=0.95, answered=0, precision=1.0, coverage=0.0, abstention=1.0),
    ]


def test_choose_threshold_takes_the_lowest_that_reaches_the_precision_target():
    rows = [
        ThresholdRow(0.1, 10, 0.7, 0.9, 0.2),
        ThresholdRow(0.2, 8, 0.92, 0.8, 0.7),
        ThresholdRow(0.3, 5, 0.95, 0.5, 0.9),
    ]
    assert choose_threshold(rows, target_precision=0.9) == 0.2
    # unreachable target: best balance of precision and coverage
    assert choose_threshold(rows, target_precision=0.99) == 0.2


def test_calibrate_reader_picks_a_threshold_between_right_and_wrong_scores(tmp_path):
    path = write_squad_json(tmp_path / "set.json", _squad())
    answers = {question: (answer, 0.8) for _, question, answer in PARAGRAPHS}
    calibration = calibrate_reader(
        path, model_dir="fake", reader=FakeReader(answers), passages=2, seed=3, target_precision=0.9
    )
    # right answers score 0.8; wrong first-word answers on answer-less passages also score 0.8 -> precision
    # is the share of answerable cases at every threshold up to 0.8, and nothing is answered above it
    assert calibration.answerable + calibration.unanswerable == len(PARAGRAPHS)
    assert calibration.rows[0].precision == pytest.approx(calibration.answerable / len(PARAGRAPHS))
    assert calibration.to_dict()["rows"][0]["threshold"] == 0.0
    assert [row.answered for row in calibration.rows if row.threshold > 0.8] == [0] * 3
    # no threshold gives 90% precision here, so the chosen one balances precision and coverage instead
    assert (calibration.reached_target, calibration.threshold) == (False, 0.0)
    assert "no threshold reaches precision 0.90" in render_report(calibration=calibration)


def test_render_report_lists_the_scores():
    evaluation = ReaderEvaluation(
        path="v.json",
        model="m",
        dtype="int8",
        count=10,
        exact_match=50.0,
        f1=61.234,
        answered=8,
        no_answer_accuracy=None,
        threshold=0.3,
        seconds=2.0,
        answers_per_s=5.0,
    )
    assert render_report(evaluation=evaluation) == (
        "Reader m (int8) on v.json\n- questions: 10, answered: 8 (threshold 0.30)\n- exact match: 50.00\n"
        "- F1: 61.23\n- answers/second: 5.0"
    )


def test_eval_reader_command_prints_json(squad_file, tiny_reader_dir):
    result = CliRunner().invoke(
        cli, ["eval-reader", str(squad_file), "--model", str(tiny_reader_dir), "--limit", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["evaluation"]["count"] == 2


def test_eval_reader_command_calibrates_to_the_target_precision_asked_for(squad_file, tiny_reader_dir):
    def calibration(*extra: str) -> dict:
        result = CliRunner().invoke(
            cli,
            [
                "eval-reader",
                str(squad_file),
                "--model",
                str(tiny_reader_dir),
                "--limit",
                "2",
                "--passages",
                "2",
                "--calibrate",
                "--skip-scores",
                "--json",
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["calibration"]

    assert calibration()["target_precision"] == 0.8
    assert calibration("--target-precision", "0.5")["target_precision"] == 0.5


def test_eval_reader_command_on_a_missing_file_is_one_error_line(tiny_reader_dir, tmp_path):
    result = CliRunner().invoke(cli, ["eval-reader", str(tmp_path / "nope.json"), "--model", str(tiny_reader_dir)])
    assert (result.exit_code, result.output) == (
        1,
        f"Error: No SQuAD file at {tmp_path / 'nope.json'}. Give the path of a SQuAD-format .json or .json.gz file.\n",
    )


def test_reader_speed_reports_each_dtype(squad_file, tiny_reader_dir):
    speed = reader_speed(
        squad_file,
        model_dir=tiny_reader_dir,
        dtypes=("float32", "int8"),
        passages=3,
        repeats=2,
        max_length=64,
        doc_stride=16,
    )
    assert list(speed) == ["float32", "int8"]
    assert all(entry["median_ms"] >= entry["min_ms"] > 0 for entry in speed.values())
