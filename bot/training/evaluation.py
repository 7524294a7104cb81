"""Measure the reader: SQuAD exact match/F1, abstention on wrong passages, the answer threshold, and speed per dtype.

Everything goes through the production `Reader`, so the numbers describe what the bot does.

    report = evaluate_reader("runs/reader/validation.json", model_dir="runs/reader", limit=500)
    calibration = calibrate_reader("runs/reader/validation.json", model_dir="runs/reader")
    calibration.threshold  # the default answer threshold to ship
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.core.reader import Reader
from bot.errors import ConfigError
from bot.training.squad import SquadQuestion, best_scores, load_squad

__all__ = [
    "ReaderEvaluation",
    "CalibrationCase",
    "ThresholdRow",
    "Calibration",
    "evaluate_reader",
    "collect_calibration_cases",
    "threshold_table",
    "choose_threshold",
    "calibrate_reader",
    "reader_speed",
    "render_report",
    "DEFAULT_THRESHOLDS",
]

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(20))  # 0.00, 0.05, ..., 0.95
# Four right answers in five on the hard calibration mix (half the cases have no answer in any passage, the
# distractors come from the same article). Not 0.9: SQuAD train has one gold answer per question, so a right
# answer spanned differently counts as wrong and measured precision levels off near 0.9 at any threshold.
TARGET_PRECISION = 0.8
CORRECT_F1 = 0.5  # an answer counts as right when its token F1 with a gold answer reaches this


@dataclass(frozen=True)
class ReaderEvaluation:
    """SQuAD scores of a reader over one file, each question read with its own paragraph (SQuAD 2.0 style).

    `threshold=None` always answers with the best span (the official v1.1 protocol); with a threshold, spans
    scoring below it count as "no answer", which is right on an unanswerable question. `has_answer_*` cover the
    answerable questions only (comparable with a v1.1 file); `no_answer_accuracy` (None without unanswerable
    questions) is the share of unanswerable ones left unanswered, also per `negative_kind`. `best_f1` is overall
    F1 at the raw-score threshold `best_f1_threshold` that maximises it, as the official SQuAD 2.0 script reports.
    """

    path: str
    model: str
    dtype: str
    count: int
    exact_match: float
    f1: float
    answered: int
    no_answer_accuracy: float | None
    threshold: float | None
    seconds: float
    answers_per_s: float
    has_answer_exact_match: float | None = None
    has_answer_f1: float | None = None
    no_answer_accuracy_by_kind: dict[str, float] = field(default_factory=dict)
    best_f1: float | None = None
    best_f1_threshold: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def best_threshold(scored: Sequence[tuple[float, float, bool]]) -> tuple[float, float]:
    """(best overall F1 in percent, its threshold) over (score, F1 if answered, is_impossible) triples.

    Answering means score >= threshold; an abstention scores 1 on an unanswerable question and 0 otherwise.
    Thresholds tried: 0 (always answer), every observed score, and just above the highest (never answer).

        >>> best_threshold([(0.9, 1.0, False), (0.2, 0.0, True)])
        (100.0, 0.9)
    """
    if not scored:
        return 0.0, 0.0
    total = sum(f1 for _score, f1, _impossible in scored)  # threshold 0: everything answered
    best, best_at = total, 0.0
    ordered = sorted(scored)
    for index, (score, f1, impossible) in enumerate(ordered):  # raising the threshold past `score` drops it
        total += (1.0 if impossible else 0.0) - f1
        if index + 1 < len(ordered) and ordered[index + 1][0] == score:
            continue
        at = ordered[index + 1][0] if index + 1 < len(ordered) else min(1.0, score + 1e-6)
        if total > best:
            best, best_at = total, at
    return 100.0 * best / len(scored), round(best_at, 6)


def _make_reader(
    model_dir: str | Path,
    *,
    max_length: int,
    doc_stride: int,
    max_answer_tokens: int,
    dtype: str,
    threads: int | None,
    device: str = "cpu",
) -> Reader:
    try:
        reader = Reader(
            model_dir,
            max_length=max_length,
            doc_stride=doc_stride,
            max_answer_tokens=max_answer_tokens,
            dtype=dtype,
            threads=threads,
            device=device,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return reader.load()


def evaluate_reader(
    path: str | Path,
    *,
    model_dir: str | Path,
    limit: int | None = None,
    threshold: float | None = None,
    max_length: int = 384,
    doc_stride: int = 128,
    max_answer_tokens: int = 30,
    dtype: str = "float32",
    threads: int | None = None,
    device: str = "cpu",
    reader: Reader | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReaderEvaluation:
    """Exact match and F1 (percent) of the reader on a SQuAD file, reading each question's own paragraph.

        report = evaluate_reader("validation.json", model_dir="models/minilm-squad-reader", limit=1000)
        report.exact_match, report.f1, report.answers_per_s

    :param limit: evaluate only the first N questions.
    :param threshold: answer only when the best span's score reaches it (None: always answer).
    :param dtype: "float32", "bfloat16" or "int8" (see `Reader`).
    :param device: "cpu", or a GPU such as "cuda" (training runs there evaluate there).
    :param reader: an already built reader (or a test double) to use instead of loading `model_dir`.
    :param progress: called with (done, total) after each question.
    :raises DatasetError: the file is missing or not SQuAD.
    :raises ReaderError: the model cannot be loaded.
    """
    questions = load_squad(path, limit=limit)
    reader = reader or _make_reader(
        model_dir,
        max_length=max_length,
        doc_stride=doc_stride,
        max_answer_tokens=max_answer_tokens,
        dtype=dtype,
        threads=threads,
        device=device,
    )
    total_em = total_f1 = has_em = has_f1 = 0.0
    answered = 0
    kinds: dict[str, list[int]] = {}  # negative kind -> [unanswered, total]
    scored: list[tuple[float, float, bool]] = []
    started = time.perf_counter()
    for done, question in enumerate(questions, start=1):
        span = reader.best(question.question, [question.context])
        prediction = span.text if span is not None and (threshold is None or span.score >= threshold) else ""
        em, f1 = best_scores(prediction, question.gold_texts)
        total_em, total_f1 = total_em + em, total_f1 + f1
        answered += bool(prediction)
        if question.is_impossible:
            for kind in ("all", question.kind or "impossible"):
                tally = kinds.setdefault(kind, [0, 0])
                tally[0] += not prediction
                tally[1] += 1
        else:
            has_em, has_f1 = has_em + em, has_f1 + f1
        span_f1 = best_scores(span.text, question.gold_texts)[1] if span is not None else float(question.is_impossible)
        scored.append((span.score if span is not None else 0.0, span_f1, question.is_impossible))
        if progress is not None:
            progress(done, len(questions))
    seconds = time.perf_counter() - started
    impossible = kinds.pop("all", [0, 0])
    answerable = len(questions) - impossible[1]
    best_f1, best_at = best_threshold(scored)
    report = ReaderEvaluation(
        path=str(path),
        model=str(model_dir),
        dtype=dtype,
        count=len(questions),
        exact_match=100.0 * total_em / len(questions),
        f1=100.0 * total_f1 / len(questions),
        answered=answered,
        no_answer_accuracy=100.0 * impossible[0] / impossible[1] if impossible[1] else None,
        threshold=threshold,
        seconds=seconds,
        answers_per_s=len(questions) / seconds if seconds > 0 else 0.0,
        has_answer_exact_match=100.0 * has_em / answerable if answerable else None,
        has_answer_f1=100.0 * has_f1 / answerable if answerable else None,
        no_answer_accuracy_by_kind={kind: 100.0 * right / total for kind, (right, total) in sorted(kinds.items())},
        best_f1=best_f1,
        best_f1_threshold=best_at,
    )
    logger.info(
        "evaluated path=%s count=%d em=%.2f f1=%.2f answers_per_s=%.1f",
        path,
        report.count,
        report.exact_match,
        report.f1,
        report.answers_per_s,
    )
    return report


# ----------------------------------------------------------------------------------------------------------
# Calibration of the answer threshold


@dataclass(frozen=True)
class CalibrationCase:
    """One simulated question to the bot: `passages` paragraphs of one article, with or without the answer.

    :param score: score of the best span over all passages (what the bot compares with its threshold).
    :param is_correct: for an answerable case, whether that span's F1 with a gold answer reaches 0.5;
        always False for an unanswerable case (any answer there is wrong).
    """

    question_id: str
    is_answerable: bool
    score: float
    is_correct: bool


@dataclass(frozen=True)
class ThresholdRow:
    """What one threshold would do on the calibration cases (shares in 0..1).

    :param precision: right answers / answers given, over all cases (answers on unanswerable cases are wrong).
    :param coverage: right answers / answerable cases.
    :param abstention: share of unanswerable cases where the bot says it does not know.
    """

    threshold: float
    answered: int
    precision: float
    coverage: float
    abstention: float


@dataclass(frozen=True)
class Calibration:
    """The threshold table over held-out cases and the threshold chosen from it (see `choose_threshold`)."""

    threshold: float
    target_precision: float
    reached_target: bool
    rows: tuple[ThresholdRow, ...]
    answerable: int
    unanswerable: int
    passages: int

    def to_dict(self) -> dict:
        return {**asdict(self), "rows": [asdict(row) for row in self.rows]}


def _paragraphs_by_article(questions: Sequence[SquadQuestion]) -> dict[int, list[str]]:
    paragraphs: dict[int, list[str]] = {}
    for question in questions:
        contexts = paragraphs.setdefault(question.article_index, [])
        if question.context not in contexts:
            contexts.append(question.context)
    return paragraphs


def collect_calibration_cases(
    questions: Sequence[SquadQuestion],
    *,
    reader: Reader,
    passages: int = 5,
    unanswerable_share: float = 0.5,
    seed: int = 13,
    paragraphs: Mapping[int, list[str]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[CalibrationCase]:
    """Ask the reader each question the way the bot would, over `passages` paragraphs of the question's article.

    An answerable case holds the question's own paragraph among other paragraphs of the article; an unanswerable
    case (about `unanswerable_share` of them, chosen with `seed`) holds only paragraphs that contain none of the
    gold answers, as when retrieval finds the right topic but not the fact.

    :param paragraphs: every paragraph of each article (by `article_index`) to draw the other passages from;
        default: the paragraphs of `questions`.
    """
    if passages <= 0:
        raise ConfigError(f"passages must be positive, got {passages}.")
    rng = random.Random(seed)
    paragraphs = _paragraphs_by_article(questions) if paragraphs is None else paragraphs
    cases = []
    for done, question in enumerate(questions, start=1):
        golds = [text.lower() for text in question.gold_texts if text]
        others = [
            p
            for p in paragraphs[question.article_index]
            if p != question.context and not any(gold in p.lower() for gold in golds)
        ]
        is_answerable = not question.is_impossible and rng.random() >= unanswerable_share
        if is_answerable or not others:
            is_answerable = not question.is_impossible
            contexts = [question.context, *rng.sample(others, min(len(others), passages - 1))]
        else:
            contexts = rng.sample(others, min(len(others), passages))
        rng.shuffle(contexts)
        span = reader.best(question.question, contexts)
        score = span.score if span is not None else 0.0
        is_correct = is_answerable and span is not None and best_scores(span.text, question.gold_texts)[1] >= CORRECT_F1
        cases.append(CalibrationCase(question.question_id, is_answerable, score, is_correct))
        if progress is not None:
            progress(done, len(questions))
    return cases


def threshold_table(
    cases: Sequence[CalibrationCase], *, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> list[ThresholdRow]:
    """Precision, coverage and abstention of each candidate threshold (a case is answered when score >= threshold)."""
    answerable = sum(case.is_answerable for case in cases)
    unanswerable = len(cases) - answerable
    rows = []
    for threshold in thresholds:
        given = [case for case in cases if case.score >= threshold]
        right = sum(case.is_correct for case in given)
        abstained = sum(not case.is_answerable and case.score < threshold for case in cases)
        rows.append(
            ThresholdRow(
                threshold=threshold,
                answered=len(given),
                precision=right / len(given) if given else 1.0,
                coverage=right / answerable if answerable else 0.0,
                abstention=abstained / unanswerable if unanswerable else 1.0,
            )
        )
    return rows


def choose_threshold(rows: Sequence[ThresholdRow], *, target_precision: float = TARGET_PRECISION) -> float:
    """The lowest threshold whose precision reaches `target_precision`, i.e. the most right answers at that precision.

    A wrong answer with a citation costs the bot more trust than "I don't know", so precision is the constraint
    and coverage what is maximised. When no threshold reaches the target, the one with the best harmonic mean of
    precision and coverage is returned.
    """
    if not rows:
        raise ConfigError("No thresholds to choose from.")
    ordered = sorted(rows, key=lambda row: row.threshold)
    for row in ordered:
        if row.answered and row.precision >= target_precision:
            return row.threshold

    def harmonic(row: ThresholdRow) -> float:
        total = row.precision + row.coverage
        return 2 * row.precision * row.coverage / total if total else 0.0

    return max(ordered, key=harmonic).threshold


def calibrate_reader(
    path: str | Path,
    *,
    model_dir: str | Path,
    limit: int | None = None,
    passages: int = 5,
    unanswerable_share: float = 0.5,
    target_precision: float = TARGET_PRECISION,
    max_length: int = 384,
    doc_stride: int = 128,
    max_answer_tokens: int = 30,
    dtype: str = "float32",
    threads: int | None = None,
    seed: int = 13,
    reader: Reader | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Choose the answer threshold on held-out questions (e.g. the `validation.json` written by training).

        calibration = calibrate_reader("runs/reader/validation.json", model_dir="runs/reader", limit=1000)
        calibration.threshold, calibration.rows[0].precision

    :param limit: use only the first N questions of the file.
    :param passages: paragraphs read per question, as the bot reads `top_k` passages.
    :param unanswerable_share: share of cases whose passages hold no answer.
    :param reader: an already built reader (or a test double) to use instead of loading `model_dir`.
    """
    questions = load_squad(path)
    reader = reader or _make_reader(
        model_dir,
        max_length=max_length,
        doc_stride=doc_stride,
        max_answer_tokens=max_answer_tokens,
        dtype=dtype,
        threads=threads,
    )
    asked = questions
    if limit is not None and limit < len(questions):
        # a sample across the whole file, in file order; every article's paragraphs stay available as passages
        picked = set(random.Random(seed).sample(range(len(questions)), limit))
        asked = [question for index, question in enumerate(questions) if index in picked]
    cases = collect_calibration_cases(
        asked,
        reader=reader,
        passages=passages,
        unanswerable_share=unanswerable_share,
        seed=seed,
        paragraphs=_paragraphs_by_article(questions),
        progress=progress,
    )
    rows = threshold_table(cases)
    threshold = choose_threshold(rows, target_precision=target_precision)
    answerable = sum(case.is_answerable for case in cases)
    logger.info("calibrated path=%s cases=%d threshold=%.2f", path, len(cases), threshold)
    chosen = next(row for row in rows if row.threshold == threshold)
    return Calibration(
        threshold=threshold,
        target_precision=target_precision,
        reached_target=bool(chosen.answered) and chosen.precision >= target_precision,
        rows=tuple(rows),
        answerable=answerable,
        unanswerable=len(cases) - answerable,
        passages=passages,
    )


# ----------------------------------------------------------------------------------------------------------
# Speed per dtype


def reader_speed(
    path: str | Path,
    *,
    model_dir: str | Path,
    dtypes: Sequence[str] = ("float32", "bfloat16", "int8"),
    passages: int = 5,
    repeats: int = 10,
    max_length: int = 384,
    doc_stride: int = 128,
    threads: int | None = None,
    seed: int = 13,
) -> dict[str, dict]:
    """Median and best milliseconds for one question over `passages` paragraphs of its article, for each dtype.

    The question and paragraphs come from the SQuAD file (chosen with `seed`); each dtype gets one untimed
    warm-up call. The same answer text from each dtype is kept, to spot a dtype that changes answers.

        reader_speed("validation.json", model_dir="runs/reader", dtypes=("float32", "int8"))
        # {"float32": {"median_ms": 180.0, "min_ms": 171.2, "answer": "..."}, "int8": {...}}
    """
    if repeats <= 0:
        raise ConfigError(f"repeats must be positive, got {repeats}.")
    questions = load_squad(path)
    paragraphs = _paragraphs_by_article(questions)
    rng = random.Random(seed)
    question = rng.choice(questions)
    others = [p for p in paragraphs[question.article_index] if p != question.context]
    contexts = [question.context, *rng.sample(others, min(len(others), passages - 1))]
    results: dict[str, dict] = {}
    for dtype in dtypes:
        reader = _make_reader(
            model_dir, max_length=max_length, doc_stride=doc_stride, max_answer_tokens=30, dtype=dtype, threads=threads
        )
        span = reader.best(question.question, contexts)  # warm-up
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            reader.best(question.question, contexts)
            timings.append((time.perf_counter() - started) * 1000)
        results[dtype] = {
            "median_ms": statistics.median(timings),
            "min_ms": min(timings),
            "answer": span.text if span else "",
        }
        logger.info("speed dtype=%s median_ms=%.1f passages=%d", dtype, results[dtype]["median_ms"], len(contexts))
    return results


# ----------------------------------------------------------------------------------------------------------
# Rendering for the command line


def render_report(
    *,
    evaluation: ReaderEvaluation | None = None,
    calibration: Calibration | None = None,
    speed: dict[str, dict] | None = None,
) -> str:
    """Plain-text report of whichever measurements were made (Markdown tables, readable in a terminal)."""
    parts = []
    if evaluation is not None:
        lines = [
            f"Reader {evaluation.model} ({evaluation.dtype}) on {evaluation.path}",
            f"- questions: {evaluation.count}, answered: {evaluation.answered}"
            + (f" (threshold {evaluation.threshold:.2f})" if evaluation.threshold is not None else ""),
            f"- exact match: {evaluation.exact_match:.2f}",
            f"- F1: {evaluation.f1:.2f}",
            f"- answers/second: {evaluation.answers_per_s:.1f}",
        ]
        if evaluation.no_answer_accuracy is not None:
            lines.append(
                f"- has-answer exact match / F1: {evaluation.has_answer_exact_match:.2f} / "
                f"{evaluation.has_answer_f1:.2f}"
            )
            lines.append(
                f"- no-answer accuracy: {evaluation.no_answer_accuracy:.2f}"
                + "".join(f", {kind} {value:.2f}" for kind, value in evaluation.no_answer_accuracy_by_kind.items())
            )
            lines.append(f"- best F1: {evaluation.best_f1:.2f} at threshold {evaluation.best_f1_threshold:.4f}")
        parts.append("\n".join(lines))
    if calibration is not None:
        lines = [
            f"Threshold calibration: {calibration.answerable} answerable and {calibration.unanswerable} "
            f"unanswerable cases, {calibration.passages} passages each",
            "| threshold | answered | precision | coverage | abstention |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row.threshold:.2f} | {row.answered} | "
            f"{f'{row.precision:.3f}' if row.answered else 'n/a'} | {row.coverage:.3f} | "
            f"{row.abstention:.3f} |"
            for row in calibration.rows
        ]
        how = (
            f"lowest with precision >= {calibration.target_precision:.2f}"
            if calibration.reached_target
            else f"no threshold reaches precision {calibration.target_precision:.2f}; best precision/coverage balance"
        )
        lines.append(f"Chosen threshold: {calibration.threshold:.2f} ({how})")
        parts.append("\n".join(lines))
    if speed:
        lines = ["| dtype | median ms | min ms | answer |", "|---|---:|---:|---|"]
        lines += [
            f"| {dtype} | {entry['median_ms']:.1f} | {entry['min_ms']:.1f} | {entry['answer']} |"
            for dtype, entry in speed.items()
        ]
        parts.append("One question over several passages:\n" + "\n".join(lines))
    return "\n\n".join(parts)
