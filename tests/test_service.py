"""The answering service: retrieval, reading and citation wired together by build_service."""

from __future__ import annotations

import pytest

import bot.settings
from bot.core.reader import ReaderConfig
from bot.core.records import Answer
from bot.core.service import build_reader, build_service
from bot.errors import ConfigError
from bot.settings import Settings
from tests.fakes.reader import FakeReader


def test_answer_cites_the_sentence_the_reader_points_at(settings, store):
    service = build_service(settings, store=store, reader=FakeReader(settings.reader_config(), point_at="haddad"))
    answer = service.answer("  Who   founded the Elm Street chess club?  ")
    assert (answer.question, answer.text) == ("Who founded the Elm Street chess club?", "Haddad")
    assert answer.citation.sentence == "The club was founded by Noor Haddad in 2015."
    assert answer.citation.article.title == "Elm Street Chess Club wins regional title"
    assert answer.citation.article.url == "https://news.example.org/elm-street-chess"
    assert answer.citation.sentence[answer.citation.answer_start : answer.citation.answer_end] == "Haddad"
    assert answer.score > 0.9


def test_random_model_answer_is_quoted_from_a_stored_sentence(settings, store):
    service = build_service(settings.model_copy(update={"answer_threshold": 0.0}), store=store)
    answer = service.answer("Who is the CEO of Kestrel Foods?")
    citation = answer.citation
    assert answer.is_answered
    assert citation.sentence[citation.answer_start : citation.answer_end] == answer.text
    body = store.article_body(citation.article.id)
    assert body[citation.sentence_start : citation.sentence_start + len(citation.sentence)] == citation.sentence
    assert "Kestrel Foods names a new chief executive" in answer.searched
    assert set(service.last_timings_ms) == {"retrieve", "read", "total"}


def test_unconfident_answer_is_no_answer_listing_what_was_searched(settings, store):
    service = build_service(settings.model_copy(update={"answer_threshold": 1.0}), store=store)
    answer = service.answer("Who founded the Elm Street chess club?")
    assert (answer.text, answer.citation, answer.alternatives) == (None, None, ())
    assert answer.searched[0] == "Elm Street Chess Club wins regional title"


def test_question_matching_no_article_searches_nothing(service):
    answer = service.answer("Zanzibar volcano?")
    assert answer == Answer(question="Zanzibar volcano?", text=None, score=0.0)


def test_top_k_setting_limits_the_passages_read(settings, store):
    service = build_service(settings.model_copy(update={"top_k": 1}), store=store)
    assert len(service.answer("club bridge company").searched) == 1


def test_warm_up_loads_the_model(service):
    assert not service.reader.is_loaded
    service.warm_up()
    assert service.reader.is_loaded


def test_reader_is_built_from_settings(settings):
    reader = build_reader(settings.model_copy(update={"max_length": 256, "doc_stride": 64, "max_answer_tokens": 12}))
    assert reader.config == ReaderConfig(settings.reader_model, max_length=256, doc_stride=64, max_answer_tokens=12)


def test_no_reader_model_configured_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(bot.settings, "shipped_reader_dir", lambda: None)
    with pytest.raises(
        ConfigError,
        match=r"^No reader model configured, and this install has no shipped "
        r"minilm-squad-reader\. Set QABOT_READER_MODEL ",
    ):
        build_service(Settings(db_path=tmp_path / "qa.db"))


@pytest.mark.slow
def test_shipped_reader_answers_from_the_sample_article_and_the_examples(tmp_path, sample_article):
    from pathlib import Path

    from bot.core.ingest import ingest_paths
    from bot.store import SQLiteStore

    examples = Path(__file__).resolve().parents[1] / "examples" / "articles"
    store = SQLiteStore(tmp_path / "qa.db")
    assert ingest_paths(store, [sample_article, examples]).failures == []
    service = build_service(Settings(db_path=tmp_path / "qa.db"), store=store)  # the default: the shipped reader

    # confident or hedged (the calibrated threshold asks for precision 0.9), the answer and its sentence are shown
    asked = service.answer("Who is the CEO of Northwind Rail?")
    ceo = asked if asked.is_answered else asked.tentative
    assert (asked.outcome != "none", ceo.text, ceo.citation.sentence, ceo.citation.article.source) == (
        True,
        "Marta Lindqvist",
        "Northwind Rail CEO Marta Lindqvist told reporters at the Baltic Transport Forum in Gdansk that the first four "
        "trains had already passed their safety tests.",
        str(sample_article),
    )
    # a follow-up in the same conversation: "she" and "reporters" alone do not say which article
    where = service.answer(
        "Where did she speak to reporters?",
        context=["Who is the CEO of Northwind Rail?"],
        prefer_articles={ceo.citation.article.id},
    )
    shown = where if where.is_answered else where.tentative
    assert shown.citation.article.source == str(sample_article)
    assert shown.text in (
        "Baltic Transport Forum",
        "Baltic Transport Forum in Gdansk",
        "the Baltic Transport Forum in Gdansk",
        "Gdansk",
    )

    founder = service.answer("Who founded the Lakeside Robotics Club?")
    assert (founder.text, founder.citation.sentence, founder.citation.article.title) == (
        "Ada Park",
        "The club was founded by Ada Park, a former aerospace engineer, in 2019.",
        "Lakeside Robotics Club wins the state cup",
    )


def test_a_very_long_question_is_cut_and_searched_by_its_rarest_words(settings, store, caplog):
    import json

    service = build_service(settings.model_copy(update={"max_question_chars": 200, "max_query_terms": 4}), store=store)
    rare = " ".join(f"zq{i}x" for i in range(300))  # words no article holds
    answer = service.answer(f"Who founded the Elm Street chess club {rare}?")
    assert answer.notes == (
        "Your question was long: I read its first 200 characters.",
        "I searched for the 4 rarest words of your question.",
    )
    assert answer.searched == ("Elm Street Chess Club wins regional title",)  # only words found in articles count
    assert json.loads(json.dumps(answer.to_dict()))["notes"] == list(answer.notes)
