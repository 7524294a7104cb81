"""PostgreSQL beside SQLite (issue 16): the same corpus in both engines, the same questions answered by both.

The PostgreSQL corpora are built once per size (`bot.bench.corpus.ensure_pg_corpus`); each question is then
answered through `AnsweringService` from the SQLite file and from PostgreSQL with the same loaded reader, the
engine that goes first alternating question by question, so the machine's noise falls on both alike.

    row = measure_engines(SQLiteStore(db_path), PostgresStore(url), reader, questions, top_k=5, articles=10_000)
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.bench.corpus import BenchQuestion
from bot.bench.report import EngineRow, WayResult, size_label
from bot.bench.tally import Tally
from bot.core.confidence import Calibrator
from bot.core.reader import Reader
from bot.core.retrieve import Retriever
from bot.core.service import AnsweringService
from bot.store.base import Store

__all__ = ["measure_engines"]


def measure_engines(
    sqlite_store: Store,
    pg_store: Store,
    reader: Reader,
    questions: Sequence[BenchQuestion],
    *,
    top_k: int,
    articles: int,
    passages: int,
    warmup: Sequence[BenchQuestion] = (),
) -> EngineRow:
    """Answer every question from both stores, interleaved: times, EM/F1 and answer-in-passages of each engine, and
    how often both retrieved the same passages in the same order."""
    always = Calibrator.raw(answer_threshold=0.0, hedge_threshold=0.0)  # every question answered, as in SQuAD v1.1
    engines = []
    for store in (sqlite_store, pg_store):
        retriever = Retriever(store, top_k=top_k)
        service = AnsweringService(store=store, retriever=retriever, reader=reader, calibrator=always)
        engines.append((service, retriever, Tally()))
    same = 0
    for index, question in enumerate([*warmup, *questions]):
        retrieved: list[list[str]] = []
        for service, retriever, tally in engines if index % 2 == 0 else engines[::-1]:
            answer = service.answer(question.question)
            if index < len(warmup):
                continue
            retrieved.append(tally.add_answered(question, answer.text, service, retriever))
        if retrieved:
            same += retrieved[0] == retrieved[1]
    sqlite_way: WayResult = engines[0][2].result()
    pg_way: WayResult = engines[1][2].result()
    return EngineRow(
        articles=articles,
        label=size_label(articles),
        passages=passages,
        questions=len(questions),
        sqlite=sqlite_way,
        postgres=pg_way,
        same_passages=100 * same / max(len(questions), 1),
    )
