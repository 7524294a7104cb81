"""The answering service: retrieval, reading and citation wired together; `build_service` connects the parts."""

from __future__ import annotations

import logging
import time
import uuid

from bot.core.compose import compose_answer
from bot.core.reader import Reader
from bot.core.records import Answer
from bot.core.retrieve import Retriever
from bot.settings import Settings
from bot.store.base import Store
from bot.store.sqlite import SQLiteStore

__all__ = ["AnsweringService", "build_service", "build_reader"]

logger = logging.getLogger(__name__)


class AnsweringService:
    """Answer one question from the store: BM25 passages → reader spans → cited `Answer`.

        service = build_service(load_settings())
        answer = service.answer("Who is the CEO of Rosoboronexport?")

    :param store: where articles live (also used to cite sentences).
    :param retriever: finds the passages to read.
    :param reader: the extractive QA model.
    :param threshold: minimum span score for an answer.
    """

    def __init__(self, *, store: Store, retriever: Retriever, reader: Reader, threshold: float) -> None:
        self.store, self.retriever, self.reader, self.threshold = store, retriever, reader, threshold
        self.last_timings_ms: dict[str, float] = {}

    def warm_up(self) -> None:
        """Load the model now (at server start) instead of on the first question."""
        self.reader.load()

    def answer(self, question: str) -> Answer:
        question = " ".join(question.split())
        question_id = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        passages = self.retriever.run(question)
        retrieved = time.perf_counter()
        spans = self.reader.run(question, [p.text for p in passages]) if passages else []
        read = time.perf_counter()
        answer = compose_answer(question, passages, spans, store=self.store, threshold=self.threshold)
        self.last_timings_ms = {
            "retrieve": (retrieved - started) * 1000,
            "read": (read - retrieved) * 1000,
            "total": (time.perf_counter() - started) * 1000,
        }
        logger.info(
            "answered question_id=%s passages=%d answered=%s score=%.3f retrieve_ms=%.0f read_ms=%.0f",
            question_id,
            len(passages),
            answer.is_answered,
            answer.score,
            self.last_timings_ms["retrieve"],
            self.last_timings_ms["read"],
        )
        return answer


def build_reader(settings: Settings) -> Reader:
    """The reader described by the settings (not loaded yet).

    :raises ConfigError: when no reader model is configured.
    """
    return Reader.from_config(settings.reader_config())


def build_service(settings: Settings, *, store: Store | None = None, reader: Reader | None = None) -> AnsweringService:
    """The one place where settings become a working service; tests pass their own store or reader."""
    store = store or SQLiteStore(settings.db_path)
    reader = reader or build_reader(settings)
    return AnsweringService(
        store=store,
        retriever=Retriever(store, top_k=settings.top_k),
        reader=reader,
        threshold=settings.answer_threshold,
    )
