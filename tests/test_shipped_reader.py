"""The reader that ships in models/minilm-squad-reader: it is the default, it is small, and it answers the examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.core.ingest import ingest_paths
from bot.core.service import build_service
from bot.settings import SHIPPED_READER_NAME, Settings, shipped_reader_dir
from bot.store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / SHIPPED_READER_NAME
EXAMPLES = ROOT / "examples" / "articles"


def test_default_reader_model_is_the_shipped_one():
    assert shipped_reader_dir() == MODEL_DIR
    assert Settings().reader_model == str(MODEL_DIR)


def test_shipped_model_is_fp16_under_50_mb_with_a_complete_card():
    from safetensors import safe_open

    size = sum(path.stat().st_size for path in MODEL_DIR.rglob("*") if path.is_file())
    assert size < 50 * 1024 * 1024
    with safe_open(MODEL_DIR / "model.safetensors", framework="pt") as weights:
        dtypes = {str(weights.get_slice(name).get_dtype()) for name in weights.keys()}
    assert dtypes == {"F16"}
    assert json.loads((MODEL_DIR / "config.json").read_text())["architectures"] == ["BertForQuestionAnswering"]
    card = (MODEL_DIR / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "_TBD_" not in card and "draft" not in card.lower()


@pytest.fixture(scope="module")
def examples_service(tmp_path_factory):
    """The default settings (so the shipped reader) over the example articles from the Quick start."""
    db_path = tmp_path_factory.mktemp("shipped") / "qa.db"
    store = SQLiteStore(db_path)
    assert ingest_paths(store, [EXAMPLES]).failures == []
    return build_service(Settings(db_path=db_path), store=store)


@pytest.mark.slow
def test_shipped_reader_answers_the_quick_start_questions(examples_service):
    founder = examples_service.answer("Who founded the Lakeside Robotics Club?")
    assert (founder.text, founder.citation.sentence, founder.citation.article.title) == (
        "Ada Park",
        "The club was founded by Ada Park, a former aerospace engineer, in 2019.",
        "Lakeside Robotics Club wins the state cup",
    )
    fare = examples_service.answer("How much does a ferry ticket cost?")
    shown = fare if fare.is_answered else fare.tentative  # confident or hedged: the price and its sentence are shown
    assert "4.50" in shown.text and shown.citation.sentence == "A single ticket costs $4.50, the same as the bus."


@pytest.mark.slow
def test_shipped_reader_says_it_does_not_know_when_no_article_holds_the_answer(examples_service):
    answer = examples_service.answer("Who won the 1998 football World Cup final?")
    assert not answer.is_answered
    assert answer.searched
