"""What the calibrated answer decision costs: the old rule and the new one on the same passages and spans.

The old rule (before calibration) took the highest-logit span whose in-passage score reached the threshold, cited it
and cited up to two alternatives. The new one gathers evidence for each distinct candidate, scores it with the
calibration, and cites the chosen answer, its supporting and conflicting articles and alternatives. Both run on the
same retrieved passages and reader spans, in alternating order question by question, so machine noise hits both.

    timing = measure_decision(store, reader, ["Who founded the club?"], calibrator=calibrator)
    timing.new_ms.median - timing.old_ms.median
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.compose import cite, compose_answer
from bot.core.confidence import DEFAULT_ANSWER_THRESHOLD, Calibrator
from bot.core.reader import Reader
from bot.core.records import Passage, Span
from bot.core.retrieve import Retriever
from bot.store.base import Store

__all__ = ["DecisionTiming", "measure_decision", "old_decision"]


@dataclass(frozen=True)
class DecisionTiming:
    """Median and 95th-percentile milliseconds per question of each decision, and how many questions were timed."""

    questions: int
    old_median_ms: float
    old_p95_ms: float
    new_median_ms: float
    new_p95_ms: float

    @property
    def added_median_ms(self) -> float:
        return self.new_median_ms - self.old_median_ms


def old_decision(
    question: str, passages: Sequence[Passage], spans: Sequence[Span], *, store: Store, threshold: float
) -> tuple[str | None, list]:
    """The decision as it was before calibration (kept here only to time against)."""
    ranked = sorted(spans, key=lambda s: (-s.logit, -s.score))
    confident = [span for span in ranked if span.score >= threshold]
    if not confident:
        return None, []
    top = confident[0]
    citations = [cite(store, passages[top.context_index], top)]
    seen = {passages[top.context_index].article.id}
    for span in ranked:
        if len(citations) > 2:
            break
        article = passages[span.context_index].article.id
        if span.score >= threshold / 2 and article not in seen:
            seen.add(article)
            citations.append(cite(store, passages[span.context_index], span))
    return top.text, citations


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def measure_decision(
    store: Store, reader: Reader, questions: Sequence[str], *, calibrator: Calibrator, top_k: int = 5
) -> DecisionTiming:
    """Time both decisions per question (retrieval and reading done once, untimed)."""
    retriever = Retriever(store, top_k=top_k)
    old_ms: list[float] = []
    new_ms: list[float] = []
    for index, question in enumerate(questions):
        passages = retriever.run(question)
        spans = reader.run(question, [p.text for p in passages]) if passages else []
        for which in ("old", "new") if index % 2 == 0 else ("new", "old"):
            started = time.perf_counter()
            if which == "old":
                old_decision(question, passages, spans, store=store, threshold=DEFAULT_ANSWER_THRESHOLD)
            else:
                compose_answer(question, passages, spans, store=store, calibrator=calibrator)
            (old_ms if which == "old" else new_ms).append((time.perf_counter() - started) * 1000)
    if not questions:
        return DecisionTiming(0, 0.0, 0.0, 0.0, 0.0)
    return DecisionTiming(
        len(questions), statistics.median(old_ms), _p95(old_ms), statistics.median(new_ms), _p95(new_ms)
    )
