"""Fit the answer decision: open-corpus runs through the whole pipeline, a logistic regression, chosen thresholds.

`qa-bot calibrate` asks held-out SQuAD questions (whole articles the reader never trained on, the same split as
`train-reader`) through retrieval and the reader, against stores built for the purpose:

- *answerable*: the store holds every held-out article (plus distractor articles from the rest of the file);
- *sentence removed*: the question's article is stored without the sentence(s) holding its answer;
- *article missing*: the question's article is not stored at all.

Every distinct candidate answer of every case becomes one row (its `FEATURES` and whether it is right: token F1
with a gold answer >= 0.5; nothing is right on an unanswerable case). A logistic regression over those rows is the
calibrated confidence; the bot answers with the candidate it trusts most. Thresholds are chosen on out-of-fold
predictions (two folds by article), so the reported precision is not measured on the data it was fitted on:

    report = calibrate(train_path="train-v1.1.json.gz", model_dir="models/minilm-squad-reader")
    report.write("models/minilm-squad-reader/calibration.json")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bot.core.compose import cite
from bot.core.confidence import FEATURES, Calibrator, gather_evidence
from bot.core.reader import Reader
from bot.core.records import Article
from bot.core.retrieve import Retriever
from bot.core.text import split_sentences
from bot.errors import ConfigError, DatasetError
from bot.store.sqlite import SQLiteStore
from bot.training.data import split_articles
from bot.training.squad import SquadQuestion, best_scores, read_squad_json, squad_questions

__all__ = [
    "CalibrationCase",
    "CalibrationReport",
    "collect_cases",
    "fit",
    "calibrate",
    "MIN_CASES",
    "ANSWER_PRECISION",
    "HEDGE_PRECISION",
]

logger = logging.getLogger(__name__)

ANSWER_PRECISION = 0.9  # confident answers: at least nine in ten right
HEDGE_PRECISION = 0.5  # hedged replies: still right at least half of the time
RIGHT_F1 = 0.5  # an answer is right when its token F1 with a gold answer reaches this
MIN_CASES = 200  # fewer answerable cases than this cannot place a threshold at precision 0.9
KINDS = ("answerable", "sentence_removed", "article_missing")
THRESHOLD_GRID = tuple(round(0.01 * step, 2) for step in range(1, 100))


@dataclass
class CalibrationCase:
    """One question asked through the pipeline against one store, with the evidence for each candidate."""

    question: str
    kind: str  # one of KINDS
    article: int  # index of its held-out article (folds are made by article)
    golds: list[str]
    candidates: list[dict[str, float]] = field(default_factory=list)  # FEATURES of each candidate, logit order
    right: list[bool] = field(default_factory=list)
    f1: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def is_answerable(self) -> bool:
        return self.kind == "answerable"


# ----------------------------------------------------------------------------------------------------------
# Building the runs


def _article_of(entry: dict, index: int, *, drop: tuple[int, int] | None = None) -> tuple[Article, list[int]]:
    """A SQuAD article as the bot would store it (paragraphs joined), optionally without body[drop[0]:drop[1]]."""
    contexts = [paragraph["context"] for paragraph in entry["paragraphs"]]
    starts, position = [], 0
    for context in contexts:
        starts.append(position)
        position += len(context) + 2
    body = "\n\n".join(contexts)
    if drop is not None:
        body = (body[: drop[0]].rstrip() + " " + body[drop[1] :].lstrip()).strip()
    title = str(entry.get("title", f"article {index}")).replace("_", " ")
    return Article(title=title, body=body, source=f"squad:{index}:{title}", key=f"squad-{index}"), starts


def _answer_sentences(body: str, start: int, end: int) -> tuple[int, int] | None:
    sentences = [s for s in split_sentences(body) if s.char_end > start and s.char_start < end]
    return (sentences[0].char_start, sentences[-1].char_end) if sentences else None


def _fill_store(path: Path, articles: Sequence[Article]) -> SQLiteStore:
    store = SQLiteStore(path)
    for article in articles:
        store.add_article(article)
    return store


def collect_cases(
    train_path: str | Path,
    *,
    reader: Reader,
    questions: int = 1000,
    distractors: int = 100,
    validation_articles: int = 40,
    seed: int = 13,
    top_k: int = 5,
    workdir: str | Path | None = None,
    min_questions: int = MIN_CASES,
    progress: Callable[[int, int], None] | None = None,
) -> list[CalibrationCase]:
    """Ask `questions` answerable and as many unanswerable held-out questions (half each kind) through the pipeline.

    :param distractors: articles from the training part of the file stored beside the held-out ones, so retrieval
        has an open corpus to search.
    :raises DatasetError: when the file holds too few held-out questions.
    """
    articles = read_squad_json(train_path)["data"]
    training, held_out = split_articles(articles, validation_articles=validation_articles, seed=seed)
    rng = random.Random(seed)
    asked = [q for q in squad_questions(held_out, source=str(train_path)) if not q.is_impossible]
    if len(asked) < min_questions:
        raise DatasetError(
            f"{train_path} gives {len(asked)} held-out questions; calibration needs at least "
            f"{min_questions} (hold out more articles with --validation-articles)."
        )
    extra = [
        _article_of(entry, 10_000 + i)[0]
        for i, entry in enumerate(rng.sample(training, min(distractors, len(training))))
    ]
    stored = [_article_of(entry, i) for i, entry in enumerate(held_out)]
    rng.shuffle(asked)
    answerable = asked[:questions]
    unanswerable = asked[questions : questions * 2] if len(asked) >= 2 * questions else asked[:questions]
    removed, missing = unanswerable[: len(unanswerable) // 2], unanswerable[len(unanswerable) // 2 :]
    total = len(answerable) + len(removed) + len(missing)
    cases: list[CalibrationCase] = []

    def ask(store: SQLiteStore, question, kind: str) -> None:
        case = CalibrationCase(question.question, kind, question.article_index, [a.text for a in question.answers])
        _read_case(case, store=store, reader=reader, top_k=top_k)
        cases.append(case)
        if progress is not None:
            progress(len(cases), total)

    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        folder = Path(scratch)
        store = _fill_store(folder / "all.db", [article for article, _ in stored] + extra)
        for question in answerable:
            ask(store, question, "answerable")
        store.close()
        # each question of `removed` gets a store in which only its own answer sentence is gone; questions are
        # grouped so that one store removes one sentence from each of several articles
        rounds: list[dict[int, SquadQuestion]] = []
        for question in removed:
            free = next((r for r in rounds if question.article_index not in r), None)
            if free is None:
                free = {}
                rounds.append(free)
            free[question.article_index] = question
        for number, chosen in enumerate(rounds):
            bodies, keep = [], []
            for index, (article, starts) in enumerate(stored):
                removal = chosen.get(index)
                if removal is None:
                    bodies.append(article)
                    continue
                question = removal
                offset = starts[question.paragraph_index]
                span = _answer_sentences(
                    article.body, offset + question.answers[0].answer_start, offset + question.answers[0].answer_end
                )
                dropped = _article_of(held_out[index], index, drop=span)[0] if span else article
                if span and not any(gold.lower() in dropped.body.lower() for gold in question.gold_texts):
                    keep.append(question)
                bodies.append(dropped)
            store = _fill_store(folder / f"removed-{number}.db", bodies + extra)
            for question in keep:
                ask(store, question, "sentence_removed")
            total -= len(chosen) - len(keep)
            store.close()
        folds = 5
        for fold in range(folds):
            store = _fill_store(
                folder / f"missing-{fold}.db",
                [article for i, (article, _) in enumerate(stored) if i % folds != fold] + extra,
            )
            for question in missing:
                if question.article_index % folds == fold:
                    ask(store, question, "article_missing")
            store.close()
    return cases


def _read_case(case: CalibrationCase, *, store: SQLiteStore, reader: Reader, top_k: int) -> None:
    passages = Retriever(store, top_k=top_k).run(case.question)
    spans = reader.run(case.question, [p.text for p in passages]) if passages else []
    evidence = gather_evidence(
        case.question, passages, spans, sentence_of=lambda passage, span: cite(store, passage, span).sentence
    )
    for item in evidence:
        f1 = best_scores(item.span.text, case.golds)[1] if case.is_answerable else 0.0
        case.candidates.append(item.features)
        case.right.append(f1 >= RIGHT_F1)
        case.f1.append(f1)
        case.texts.append(item.span.text)


# ----------------------------------------------------------------------------------------------------------
# Fitting and choosing thresholds


def _matrix(cases: Sequence[CalibrationCase]) -> tuple[np.ndarray, np.ndarray]:
    rows = [[candidate[name] for name in FEATURES] for case in cases for candidate in case.candidates]
    labels = [right for case in cases for right in case.right]
    return np.array(rows, dtype=np.float64).reshape(-1, len(FEATURES)), np.array(labels, dtype=bool)


def fit(cases: Sequence[CalibrationCase], *, regularisation: float = 1.0) -> Calibrator:
    """The ranking fit: a logistic regression over every candidate of `cases` (no Platt scaling, default thresholds)."""
    from sklearn.linear_model import LogisticRegression

    x, y = _matrix(cases)
    if y.all() or not y.any():
        raise ConfigError("Calibration needs both right and wrong candidates; these runs have only one kind.")
    means, scales = x.mean(axis=0), x.std(axis=0)
    scales[scales == 0] = 1.0
    model = LogisticRegression(C=regularisation, max_iter=2000).fit((x - means) / scales, y)
    return Calibrator(
        weights=tuple(float(w) for w in model.coef_[0]),
        bias=float(model.intercept_[0]),
        means=tuple(float(m) for m in means),
        scales=tuple(float(s) for s in scales),
    )


def fit_platt(scores: Sequence[float], right: Sequence[bool]) -> tuple[float, float]:
    """(scale, shift) so that sigmoid(scale * score + shift) is the probability that a chosen candidate is right."""
    from sklearn.linear_model import LogisticRegression

    y = np.array(right, dtype=bool)
    if y.all() or not y.any():
        return 1.0, 0.0
    model = LogisticRegression(C=100.0, max_iter=1000).fit(np.array(scores, dtype=np.float64).reshape(-1, 1), y)
    return float(model.coef_[0][0]), float(model.intercept_[0])


@dataclass(frozen=True)
class Decision:
    """What the bot would do with one case: its most trusted candidate, that confidence, and whether it is right."""

    kind: str
    score: float  # the ranking score of the chosen candidate
    confidence: float
    right: bool
    f1: float
    raw_score: float  # span score of the candidate the raw (uncalibrated) rule picks
    raw_right: bool
    raw_f1: float


def decide(cases: Sequence[CalibrationCase], calibrator: Calibrator) -> list[Decision]:
    """The candidate each case would be answered with (calibrated, and raw for comparison)."""
    decisions = []
    for case in cases:
        if not case.candidates:
            decisions.append(Decision(case.kind, -50.0, 0.0, False, 0.0, 0.0, False, 0.0))
            continue
        scores = [calibrator.candidate_score(candidate) for candidate in case.candidates]
        best = int(np.argmax(scores))
        # raw rule: the highest logit among spans reaching the threshold; over a sweep, the first candidate
        decisions.append(
            Decision(
                case.kind,
                scores[best],
                calibrator.probability(case.candidates[best]),
                case.right[best],
                case.f1[best],
                float(np.exp(case.candidates[0]["log_score"])),
                case.right[0],
                case.f1[0],
            )
        )
    return decisions


@dataclass(frozen=True)
class OperatingPoint:
    """The bot's behaviour at one answer threshold (hedges count as abstentions)."""

    threshold: float
    answered: int
    precision: float | None
    answerable_answered: float  # share of answerable cases answered (confidently)
    answerable_right: float  # share of answerable cases answered right
    unanswerable_answered: float  # share of unanswerable cases answered
    squad2_f1: float  # abstention scores 1 on an unanswerable case, 0 on an answerable one


def operating_point(decisions: Sequence[Decision], threshold: float, *, raw: bool = False) -> OperatingPoint:
    answerable = [d for d in decisions if d.kind == "answerable"]
    unanswerable = [d for d in decisions if d.kind != "answerable"]
    score = (lambda d: d.raw_score) if raw else (lambda d: d.confidence)
    right = (lambda d: d.raw_right) if raw else (lambda d: d.right)
    f1 = (lambda d: d.raw_f1) if raw else (lambda d: d.f1)
    given = [d for d in decisions if score(d) >= threshold]
    total_f1 = sum(f1(d) for d in answerable if score(d) >= threshold) + sum(score(d) < threshold for d in unanswerable)
    return OperatingPoint(
        threshold=threshold,
        answered=len(given),
        precision=sum(right(d) and d.kind == "answerable" for d in given) / len(given) if given else None,
        answerable_answered=sum(score(d) >= threshold for d in answerable) / max(1, len(answerable)),
        answerable_right=sum(right(d) and score(d) >= threshold for d in answerable) / max(1, len(answerable)),
        unanswerable_answered=sum(score(d) >= threshold for d in unanswerable) / max(1, len(unanswerable)),
        squad2_f1=100.0 * total_f1 / max(1, len(decisions)),
    )


def lowest_threshold(
    decisions: Sequence[Decision],
    precision: float,
    *,
    raw: bool = False,
    min_answers: int = 20,
    grid: Sequence[float] = THRESHOLD_GRID,
) -> float:
    """The lowest threshold at which the answers given (at least `min_answers` of them, so that a handful of lucky
    answers does not decide) reach `precision`; the highest threshold of the grid when none does."""
    for threshold in grid:
        point = operating_point(decisions, threshold, raw=raw)
        if point.answered >= min_answers and point.precision is not None and point.precision >= precision:
            return threshold
    return grid[-1]


@dataclass
class CalibrationReport:
    """A fitted calibration with the evidence for it; `write` stores the `calibration.json` the bot reads."""

    calibrator: Calibrator
    fallback_answer_threshold: float
    fallback_hedge_threshold: float
    counts: dict[str, int]
    table: list[OperatingPoint]
    chosen: OperatingPoint
    raw_chosen: OperatingPoint
    reliability: list[dict]
    model: str
    seconds: float

    def to_dict(self) -> dict:
        calibrator = self.calibrator
        return {
            "version": 1,
            "model": self.model,
            "features": list(FEATURES),
            "means": list(calibrator.means),
            "scales": list(calibrator.scales),
            "weights": list(calibrator.weights),
            "bias": calibrator.bias,
            "platt": [calibrator.scale, calibrator.shift],
            "answer_threshold": calibrator.answer_threshold,
            "hedge_threshold": calibrator.hedge_threshold,
            "fallback": {
                "answer_threshold": self.fallback_answer_threshold,
                "hedge_threshold": self.fallback_hedge_threshold,
            },
            "fit": {
                "cases": self.counts,
                "answer_precision": ANSWER_PRECISION,
                "hedge_precision": HEDGE_PRECISION,
                "right_f1": RIGHT_F1,
                "out_of_fold": asdict(self.chosen),
                "raw_out_of_fold": asdict(self.raw_chosen),
                "table": [asdict(point) for point in self.table],
                "reliability": self.reliability,
                "seconds": round(self.seconds, 1),
            },
        }

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        temporary.replace(path)
        return path


def _reliability(decisions: Sequence[Decision], bins: int = 10) -> list[dict]:
    rows = []
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        inside = [d for d in decisions if low <= d.confidence < high or (index == bins - 1 and d.confidence == 1.0)]
        if inside:
            rows.append(
                {
                    "low": low,
                    "high": high,
                    "count": len(inside),
                    "mean_confidence": float(np.mean([d.confidence for d in inside])),
                    "right": float(np.mean([d.right and d.kind == "answerable" for d in inside])),
                }
            )
    return rows


def report_from_cases(cases: Sequence[CalibrationCase], *, model: str, seconds: float = 0.0) -> CalibrationReport:
    """Fit on two folds by article for honest thresholds, then on everything for the shipped weights.

    The ranking fit picks each case's candidate; a Platt fit on the out-of-fold scores of the picked candidates
    turns them into the probability of being right (the best of several candidates overrates itself otherwise).
    """
    folds = [[c for c in cases if c.article % 2 == k] for k in (0, 1)]
    picked: list[Decision] = []
    for k in (0, 1):
        picked += decide(folds[k], fit(folds[1 - k]))
    scale, shift = fit_platt([d.score for d in picked], [d.right for d in picked])
    out_of_fold = [
        dataclasses.replace(d, confidence=1.0 / (1.0 + math.exp(-(scale * d.score + shift)))) for d in picked
    ]
    answer_at = lowest_threshold(out_of_fold, ANSWER_PRECISION)
    hedge_at = min(lowest_threshold(out_of_fold, HEDGE_PRECISION), answer_at)
    raw_answer = lowest_threshold(out_of_fold, ANSWER_PRECISION, raw=True)
    raw_hedge = min(lowest_threshold(out_of_fold, HEDGE_PRECISION, raw=True), raw_answer)
    final = dataclasses.replace(fit(cases), scale=scale, shift=shift).with_thresholds(answer=answer_at, hedge=hedge_at)
    counts = {kind: sum(c.kind == kind for c in cases) for kind in KINDS}
    table = [operating_point(out_of_fold, t) for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
    return CalibrationReport(
        final,
        raw_answer,
        raw_hedge,
        counts,
        table,
        operating_point(out_of_fold, answer_at),
        operating_point(out_of_fold, raw_answer, raw=True),
        _reliability(out_of_fold),
        model,
        seconds,
    )


def calibrate(
    *,
    train_path: str | Path,
    model_dir: str | Path,
    questions: int = 1000,
    distractors: int = 100,
    validation_articles: int = 40,
    seed: int = 13,
    top_k: int = 5,
    threads: int | None = None,
    cases_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationReport:
    """Build the runs (or reuse them from `cases_path`), fit, and choose the thresholds.

    :param cases_path: a JSON file of cases: read when it exists (refit without re-asking), written otherwise.
    """
    started = time.perf_counter()
    cases_file = Path(cases_path) if cases_path else None
    if cases_file is not None and cases_file.is_file():
        cases = [CalibrationCase(**row) for row in json.loads(cases_file.read_text(encoding="utf-8"))]
    else:
        reader = Reader(model_dir, threads=threads).load()
        cases = collect_cases(
            train_path,
            reader=reader,
            questions=questions,
            distractors=distractors,
            validation_articles=validation_articles,
            seed=seed,
            top_k=top_k,
            progress=progress,
        )
        if cases_file is not None:
            cases_file.write_text(json.dumps([asdict(case) for case in cases]), encoding="utf-8")
    if sum(case.is_answerable for case in cases) < MIN_CASES:
        raise DatasetError(
            f"Only {sum(c.is_answerable for c in cases)} answerable cases; calibration needs at least "
            f"{MIN_CASES} (ask more with --questions)."
        )
    return report_from_cases(cases, model=str(model_dir), seconds=time.perf_counter() - started)


def reliability_plot(report: CalibrationReport, path: str | Path) -> Path:
    """A reliability diagram (PNG): how often answers were right against the confidence the bot gave them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.reliability
    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.plot([r["mean_confidence"] for r in rows], [r["right"] for r in rows], marker="o", label="qa-bot")
    for r in rows:
        axes.annotate(
            str(r["count"]), (r["mean_confidence"], r["right"]), textcoords="offset points", xytext=(4, -10), fontsize=7
        )
    axes.axvline(report.calibrator.answer_threshold, color="green", linewidth=0.8, label="answer threshold")
    axes.axvline(report.calibrator.hedge_threshold, color="orange", linewidth=0.8, label="hedge threshold")
    axes.set_xlabel("calibrated confidence (out of fold)")
    axes.set_ylabel("share of answers that were right")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)
