"""Sentences and passages keep exact character offsets into the article body."""

from __future__ import annotations

import random

import pytest

from bot.core.records import Sentence
from bot.core.text import group_passages, normalize_whitespace, split_sentences
from bot.sources.files import article_from_text


def texts(body: str) -> list[str]:
    return [s.text for s in split_sentences(body)]


def assert_offsets_exact(body: str, sentences: list[Sentence]) -> None:
    assert [body[s.char_start : s.char_end] for s in sentences] == [s.text for s in sentences]
    assert [s.index for s in sentences] == list(range(len(sentences)))
    ends = [s.char_end for s in sentences]
    starts = [s.char_start for s in sentences]
    assert all(end <= next_start for end, next_start in zip(ends, starts[1:]))  # in order, never overlapping
    # no text is lost between sentences: only whitespace is left out
    assert "".join("".join(s.text.split()) for s in sentences) == "".join(body.split())


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "Dr. Lee met Mr. Smith at 3 p.m. on Friday. They talked.",
            ["Dr. Lee met Mr. Smith at 3 p.m. on Friday.", "They talked."],
        ),
        ("The U.S. Senate voted on Monday. It passed.", ["The U.S. Senate voted on Monday.", "It passed."]),
        (
            "Prices rose 3.5 percent. The economy grew 2.1 percent.",
            ["Prices rose 3.5 percent.", "The economy grew 2.1 percent."],
        ),
        ('He said, "We are done." Then he left.', ['He said, "We are done."', "Then he left."]),
        ("She said “It’s over.” He agreed.", ["She said “It’s over.”", "He agreed."]),
        ("Nuland’s view isn’t new. Turkey's view is.", ["Nuland’s view isn’t new.", "Turkey's view is."]),
        (
            "First paragraph has no full stop\n\nSecond paragraph.",
            ["First paragraph has no full stop", "Second paragraph."],
        ),
        ("", []),
        ("  \n\n  ", []),
    ],
)
def test_split_sentences_handles_abbreviations_decimals_quotes_and_apostrophes(body, expected):
    sentences = split_sentences(body)
    assert [s.text for s in sentences] == expected
    assert_offsets_exact(body, sentences)


@pytest.mark.parametrize("name", ["kestrel-foods-ceo.txt", "riverton-bridge.md"])
def test_sentence_offsets_map_back_exactly_in_test_articles(articles_dir, name):
    article = article_from_text((articles_dir / name).read_text(encoding="utf-8"), source=name)
    sentences = split_sentences(article.body)
    assert len(sentences) == 5
    assert_offsets_exact(article.body, sentences)


def test_sentence_offsets_map_back_exactly_in_the_sample_article(sample_article):
    article = article_from_text(sample_article.read_text(encoding="utf-8"), source=str(sample_article))
    sentences = split_sentences(article.body)
    assert_offsets_exact(article.body, sentences)
    assert (
        "Northwind Rail CEO Marta Lindqvist told reporters at the Baltic Transport Forum in Gdansk that the first "
        "four trains had already passed their safety tests."
    ) in [s.text for s in sentences]
    assert sentences[0].text.startswith("Northwind Rail will put twelve new electric trains")
    assert (
        "The previous chief executive, Pieter de Vries, resigned in 2022 after a report found that maintenance "
        "had been postponed for years." in [s.text for s in sentences]
    )


def test_sentence_offsets_stay_exact_on_random_messy_text():
    pieces = [
        "Dr. Lee",
        "paid $3.50",
        "in the U.S.",
        "on Monday.",
        "She left.",
        '"We are done," he said.',
        "“Curly quotes.”",
        "It’s Turkey’s.",
        "e.g. this",
        "No. 5",
        "Wow!",
        "Really?",
        "(Aside.)",
        "...",
        "\n",
        "\n\n",
        "  ",
        "\t",
        "a.m.",
        "1.5 percent.",
        "'Single.'",
        "—",
        "…",
        "🙂",
        "Inc.",
        ":",
    ]
    rng = random.Random(20240310)
    for _ in range(300):
        body = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert_offsets_exact(body, split_sentences(body))


def make_sentences(word_counts: list[int]) -> list[Sentence]:
    sentences, cursor = [], 0
    for index, count in enumerate(word_counts):
        text = " ".join(["word"] * count)
        sentences.append(Sentence(index, cursor, cursor + len(text), text))
        cursor += len(text) + 1
    return sentences


def test_group_passages_fills_up_to_max_words_with_one_sentence_overlap():
    assert group_passages(make_sentences([30, 30, 30, 30, 30]), max_words=80, overlap=1) == [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 4),
    ]
    assert group_passages(make_sentences([10, 10, 10, 10]), max_words=80) == [(0, 3)]
    assert group_passages(make_sentences([10, 10, 10, 10]), max_words=20, overlap=0) == [(0, 1), (2, 3)]


def test_group_passages_keeps_an_overlong_sentence_as_its_own_passage():
    assert group_passages(make_sentences([5, 200, 5]), max_words=80) == [(0, 0), (1, 1), (2, 2)]


def test_group_passages_invariants_on_random_lengths():
    rng = random.Random(7)
    for _ in range(200):
        counts = [rng.randint(1, 60) for _ in range(rng.randint(1, 30))]
        max_words, overlap = rng.randint(20, 120), rng.randint(0, 2)
        groups = group_passages(make_sentences(counts), max_words=max_words, overlap=overlap)
        assert groups[0][0] == 0 and groups[-1][1] == len(counts) - 1  # every sentence is in some passage
        for first, last in groups:
            assert first <= last
            assert first == last or sum(counts[first : last + 1]) <= max_words
        for (first_a, last_a), (first_b, _) in zip(groups, groups[1:]):
            assert first_a < first_b <= last_a + 1  # moves forward, never skips a sentence


def test_group_passages_of_no_sentences_is_empty():
    assert group_passages([]) == []


@pytest.mark.parametrize("max_words, overlap", [(0, 1), (-5, 1), (80, -1)])
def test_group_passages_rejects_bad_sizes(max_words, overlap):
    with pytest.raises(ValueError):
        group_passages(make_sentences([3]), max_words=max_words, overlap=overlap)


def test_normalize_whitespace_unifies_newlines_and_keeps_one_blank_line():
    assert (
        normalize_whitespace("  Title \r\n\r\n\r\n\r\nFirst\u00a0line  \t here.\rNext.\n\n\n")
        == "Title\n\nFirst line here.\nNext."
    )


def test_slack_markup_in_an_article_stays_inside_one_sentence():
    body = "Alert for <!channel> and <@U123> now. Next one!"
    assert [s.text for s in split_sentences(body)] == ["Alert for <!channel> and <@U123> now.", "Next one!"]
