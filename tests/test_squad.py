"""SQuAD files and the official v1.1 metric (normalisation, exact match, token F1, max over golds)."""

from __future__ import annotations

import gzip
import json

import pytest

from bot.training.squad import (
    DatasetError,
    SquadAnswer,
    SquadQuestion,
    best_scores,
    exact_match,
    f1_score,
    load_squad,
    normalize_answer,
    squad_metrics,
    write_squad_json,
)

ARTICLES = [
    {
        "title": "Denver",
        "paragraphs": [
            {
                "context": "The Denver Broncos won Super Bowl 50.",
                "qas": [
                    {
                        "id": "q1",
                        "question": "Who won Super Bowl 50?",
                        "answers": [
                            {"text": "Denver Broncos", "answer_start": 4},
                            {"text": "The Denver Broncos", "answer_start": 0},
                        ],
                    }
                ],
            },
            {
                "context": "It was played in Santa Clara.",
                "qas": [
                    {
                        "id": "q2",
                        "question": "Where was it played?",
                        "answers": [{"text": "Santa Clara", "answer_start": 17}],
                    },
                    {"id": "q3", "question": "Who sang?", "answers": [], "is_impossible": True},
                ],
            },
        ],
    },
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  an  apple,  a pear ", "apple pear"),
        ("Theater", "theater"),  # "the" only as a whole word
        ("U.S.", "us"),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_ignores_case_punctuation_and_articles():
    assert [exact_match("the Denver Broncos.", "Denver Broncos"), exact_match("Broncos", "Denver Broncos")] == [
        1.0,
        0.0,
    ]


def test_f1_is_token_overlap():
    # prediction 3 tokens, gold 2, overlap 2: precision 2/3, recall 1
    assert f1_score("Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    assert f1_score("Carolina Panthers", "Denver Broncos") == 0.0


def test_f1_counts_repeated_tokens_once_each():
    assert f1_score("new new york", "new york") == pytest.approx(0.8)


def test_best_scores_take_the_maximum_over_golds():
    assert best_scores("Broncos", ["Denver Broncos", "Broncos"]) == (1.0, 1.0)
    assert best_scores("Denver", ["Denver Broncos", "Santa Clara"]) == (0.0, pytest.approx(2 / 3))


def test_unanswerable_gold_is_empty():
    assert [best_scores("", []), best_scores("Santa Clara", []), best_scores("", ["Santa Clara"])] == [
        (1.0, 1.0),
        (0.0, 0.0),
        (0.0, 0.0),
    ]


def test_answer_made_only_of_articles_or_punctuation_is_empty():
    assert best_scores("the", []) == (1.0, 1.0)


def test_load_squad_flattens_questions(tmp_path):
    path = write_squad_json(tmp_path / "set.json", ARTICLES)
    questions = load_squad(path)
    assert questions[0] == SquadQuestion(
        article_index=0,
        article_title="Denver",
        paragraph_index=0,
        context="The Denver Broncos won Super Bowl 50.",
        question_id="q1",
        question="Who won Super Bowl 50?",
        answers=(SquadAnswer("Denver Broncos", 4), SquadAnswer("The Denver Broncos", 0)),
    )
    assert [(q.question_id, q.paragraph_index, q.is_impossible, q.gold_texts) for q in questions] == [
        ("q1", 0, False, ["Denver Broncos", "The Denver Broncos"]),
        ("q2", 1, False, ["Santa Clara"]),
        ("q3", 1, True, [""]),
    ]
    assert all(q.context[a.answer_start : a.answer_end] == a.text for q in questions for a in q.answers)


def test_load_squad_reads_gzip_and_limits(tmp_path):
    path = tmp_path / "set.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump({"version": "1.1", "data": ARTICLES}, handle)
    assert [q.question_id for q in load_squad(path, limit=2)] == ["q1", "q2"]


def test_squad_metrics_in_percent(tmp_path):
    questions = load_squad(write_squad_json(tmp_path / "set.json", ARTICLES))
    metrics = squad_metrics({"q1": "the Denver Broncos", "q2": "Clara", "q3": ""}, questions)
    assert metrics == {
        "exact_match": pytest.approx(200 / 3),
        "f1": pytest.approx((1 + 2 / 3 + 1) / 3 * 100),
        "count": 3,
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No SQuAD file at"),
        ("{not json", "is not valid JSON (line 1"),
        ('{"version": "1.1"}', 'expected an object with a "data" list'),
        ('{"data": [{"title": "A", "paragraphs": [{"qas": []}]}]}', "article 0 ('A') is not in SQuAD format"),
    ],
)
def test_bad_files_raise_dataset_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_squad(path)
