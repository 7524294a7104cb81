"""Per-question timings and scores of one way of answering, summed up as a `WayResult` (median / p95 times, EM, F1,
how often a gold answer was in the text read).

    tally = Tally()
    tally.add(question, "Noor Haddad", ["...passages read..."], retrieve_ms=9.5, read_ms=150.2, total_ms=160.1)
    way = tally.result()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bot.bench.corpus import BenchQuestion
from bot.bench.report import Summary, WayResult
from bot.training.squad import best_scores

if TYPE_CHECKING:
    from bot.core.retrieve import Retriever
    from bot.core.service import AnsweringService

__all__ = ["Tally"]


class Tally:
    """Per-question timings and scores of one way of answering."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {"retrieve_ms": [], "read_ms": [], "total_ms": []}
        self.em: list[float] = []
        self.f1: list[float] = []
        self.in_context: list[float] = []

    def add(self, question: BenchQuestion, prediction: str | None, contexts: Sequence[str], **times_ms: float) -> None:
        for name, value in times_ms.items():
            self.times[name].append(value)
        em, f1 = best_scores(prediction or "", question.answers)
        self.em.append(em)
        self.f1.append(f1)
        self.in_context.append(float(any(gold in text for gold in question.answers for text in contexts)))

    def add_answered(
        self, question: BenchQuestion, prediction: str | None, service: AnsweringService, retriever: Retriever
    ) -> list[str]:
        """`add` the answer `service` just gave, with its timings and the passages it read (retrieved again,
        untimed, only for answer-in-passages); returns those passages."""
        timings = service.last_timings_ms
        passages = [p.text for p in retriever.run(question.question)]
        self.add(
            question,
            prediction,
            passages,
            retrieve_ms=timings["retrieve"],
            read_ms=timings["read"],
            total_ms=timings["total"],
        )
        return passages

    def result(self) -> WayResult:
        def percent(values: list[float]) -> float:
            return 100 * float(np.mean(values)) if values else 0.0

        def times(name: str) -> Summary | None:
            return Summary.of(self.times[name]) if self.times[name] else None

        return WayResult(
            em=percent(self.em),
            f1=percent(self.f1),
            answer_in_context=percent(self.in_context),
            read_ms=times("read_ms") or Summary(),
            retrieve_ms=times("retrieve_ms"),
            total_ms=times("total_ms"),
        )
