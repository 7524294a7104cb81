"""The answering service: retrieval, reading and citation wired together; `build_service` connects the parts."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path

from bot.core import messages
from bot.core.compose import compose_answer
from bot.core.confidence import CALIBRATION_FILE_NAME, Calibrator
from bot.core.reader import Reader
from bot.core.records import Answer
from bot.core.retrieve import Retriever, query_terms
from bot.errors import ConfigError
from bot.settings import Settings
from bot.store import open_store
from bot.store.base import Store

__all__ = ["AnsweringService", "build_service", "build_reader", "build_calibrator"]

logger = logging.getLogger(__name__)


class AnsweringService:
    """Answer one question from the store: BM25 passages → reader spans → cited `Answer`.

        service = build_service(load_settings())
        answer = service.answer("Who is the CEO of Rosoboronexport?")

    :param store: where articles live (also used to cite sentences).
    :param retriever: finds the passages to read.
    :param reader: the extractive QA model.
    :param calibrator: turns the evidence for a candidate into a confidence and an outcome.
    :param max_question_chars: longer questions are cut (with a note in the answer).
    """

    def __init__(
        self,
        *,
        store: Store,
        retriever: Retriever,
        reader: Reader,
        calibrator: Calibrator,
        max_question_chars: int = 1000,
    ) -> None:
        self.store, self.retriever, self.reader, self.calibrator = store, retriever, reader, calibrator
        self.max_question_chars = max_question_chars
        self.last_timings_ms: dict[str, float] = {}

    def warm_up(self) -> None:
        """Load the model now (at server start) instead of on the first question."""
        self.reader.load()

    def answer(
        self,
        question: str,
        *,
        context: Sequence[str] = (),
        prefer_articles: Collection[int] = (),
        collections: Collection[str] | None = None,
    ) -> Answer:
        """Answer `question`; in a conversation, `context` holds the earlier questions (they widen the search, the
        reader reads only `question`) and `prefer_articles` the ids of articles cited so far. With `collections`
        only articles of those collections are searched (see `bot.core.access`); None reads every article."""
        question = " ".join(question.split())
        notes = []
        if len(question) > self.max_question_chars:
            question = question[: self.max_question_chars].rsplit(" ", 1)[0] or question[: self.max_question_chars]
            notes.append(messages.render("note_question_cut", chars=f"{self.max_question_chars:,}"))
        if len(query_terms(question)) > self.retriever.max_terms:
            notes.append(messages.render("note_terms_cut", terms=self.retriever.max_terms))
        context = [" ".join(text.split())[: self.max_question_chars] for text in context if text and text.strip()]
        question_id = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        passages = self.retriever.run(
            question, context=context, prefer_articles=prefer_articles, collections=collections
        )
        retrieved = time.perf_counter()
        spans = self.reader.run(question, [p.text for p in passages]) if passages else []
        read = time.perf_counter()
        answer = compose_answer(question, passages, spans, store=self.store, calibrator=self.calibrator)
        if notes:
            answer = dataclasses.replace(answer, notes=tuple(notes))
        self.last_timings_ms = {
            "retrieve": (retrieved - started) * 1000,
            "read": (read - retrieved) * 1000,
            "total": (time.perf_counter() - started) * 1000,
        }
        logger.info(
            "answered question_id=%s passages=%d outcome=%s score=%.3f retrieve_ms=%.0f read_ms=%.0f scope=%s",
            question_id,
            len(passages),
            answer.outcome,
            answer.score,
            self.last_timings_ms["retrieve"],
            self.last_timings_ms["read"],
            "all" if collections is None else ",".join(sorted(collections)) or "none",
        )
        return answer


def build_reader(settings: Settings) -> Reader:
    """The reader described by the settings (not loaded yet).

    :raises ConfigError: when no reader model is configured.
    """
    return Reader.from_config(settings.reader_config())


def build_calibrator(settings: Settings) -> Calibrator:
    """The calibration for the reader: `QABOT_CALIBRATION_FILE`, else `calibration.json` beside the model.

    A missing or unreadable file falls back to the raw span score and the file's fallback threshold (the shipped
    default when none is known), with one warning naming the file; the bot never fails to start over it.
    Thresholds set in the settings override the calibrated ones.
    """
    path = settings.calibration_file
    if path is None and settings.reader_model and Path(settings.reader_model).is_dir():
        path = Path(settings.reader_model) / CALIBRATION_FILE_NAME
    expected = settings.calibration_file is not None or (path is not None and path.exists())
    try:
        if path is None or not expected:
            raise ConfigError(f"no calibration for the reader model {settings.reader_model}")
        calibrator = Calibrator.load(path)
    except ConfigError as exc:
        fallback = Calibrator.fallback_thresholds(path) if path is not None and expected else None
        calibrator = Calibrator.raw(
            **(dict(zip(("answer_threshold", "hedge_threshold"), fallback)) if fallback else {})
        )
        # a file that was asked for (or is there but broken) deserves a warning; a model without one is normal
        logger.log(
            logging.WARNING if expected else logging.INFO,
            "calibration unavailable file=%s (%s); using the raw span score with threshold %.2f",
            path,
            str(exc).splitlines()[0],
            calibrator.answer_threshold,
        )
    return calibrator.with_thresholds(answer=settings.answer_threshold, hedge=settings.hedge_threshold)


def build_service(
    settings: Settings,
    *,
    store: Store | None = None,
    reader: Reader | None = None,
    calibrator: Calibrator | None = None,
) -> AnsweringService:
    """The one place where settings become a working service; tests pass their own store, reader or calibrator."""
    store = store or open_store(settings.database)
    reader = reader or build_reader(settings)
    calibrator = calibrator or build_calibrator(settings)
    return AnsweringService(
        store=store,
        retriever=Retriever(store, top_k=settings.top_k, max_terms=settings.max_query_terms),
        reader=reader,
        calibrator=calibrator,
        max_question_chars=settings.max_question_chars,
    )
