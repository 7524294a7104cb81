"""Retrieval: any user text becomes a safe FTS5 query, stop words never make a good question miss."""

from __future__ import annotations

import random
import re

import pytest

from bot.records import Passage
from bot.retrieve import Retriever, fts_query, query_terms

KESTREL = "Kestrel Foods names a new chief executive"
RIVERTON = "Riverton bridge reopens after repairs"
ELM = "Elm Street Chess Club wins regional title"

SAFE_QUERY = re.compile(r'^("[^"\s]+"( OR "[^"\s]+")*)?$')

HOSTILE = [
    "", " ", "\t\n", '"', '""', '"""', "'", "*", "-", ":", "(", ")", "()", "^", "+", "NEAR", "AND", "OR", "NOT",
    "NEAR(", "NEAR(a b, 2)", "a AND", "OR OR OR", "NOT NOT", "AND club", "club NOT chess", "-club", "club*", "*club",
    "title:club", "text:bridge", "{title text}: club", "^club", '"club', 'club"', '"club" "bridge', "club -- x",
    "a'b", "'; DROP TABLE articles; --", "%", "_", "\\", "\x00", "🙂", "🙂🙂 club 🙂", "ﬁ", "İstanbul", "a\u0301",
    "\u0301", "x\u200by", "\u202e", "Who?", "?!?", "...", "’", "‘quoted’", "“club”", "Kestrel’s", "bridge's",
    "club " * 2000, " ".join(f"word{i}" for i in range(1500)), "x" * 10_000,
]


def titles(passages: list[Passage]) -> list[str]:
    return [p.article.title for p in passages]


@pytest.mark.parametrize("question, expected", [
    ("Who is the CEO of Kestrel Foods?", '"ceo" OR "kestrel" OR "foods"'),
    ('Who is the CEO of "Rosoboronexport"?', '"ceo" OR "rosoboronexport"'),
    ("What did Turkey’s agency buy?", '"turkey" OR "agency" OR "buy"'),
    ("What did Turkey's agency buy?", '"turkey" OR "agency" OR "buy"'),
    ("Who is it?", '"who" OR "is" OR "it"'),
    ("club club CLUB", '"club"'),
    ('club* -bridge NEAR(x) title:y AND "z', '"club" OR "bridge" OR "near" OR "x" OR "title" OR "y" OR "z"'),
    ("", ""),
    ("?!", ""),
])
def test_fts_query_quotes_every_term_and_drops_stop_words(question, expected):
    assert fts_query(question) == expected


def test_query_terms_keep_order_and_split_possessives():
    assert query_terms("Where did Lena Ortiz’s bridge's beams go?") == ["lena", "ortiz", "bridge", "beams", "go"]


def test_hostile_strings_never_reach_fts_as_syntax(store):
    for text in HOSTILE:
        query = fts_query(text)
        assert SAFE_QUERY.match(query), (text, query)
        passages = store.search(query, limit=5)
        assert all(isinstance(p, Passage) for p in passages)


def test_random_hostile_strings_never_raise(store):
    alphabet = list('"\'*-:()^+{}[],.;!?%_\\/ \t\n’‘“”🙂é') + ["NEAR", "AND", "OR", "NOT", "club", "bridge", "ß", "\u0301"]
    rng = random.Random(1234)
    retriever = Retriever(store, top_k=3)
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert SAFE_QUERY.match(fts_query(text)), text
        passages = retriever.run(text)
        assert len(passages) <= 3


def test_stop_words_do_not_make_a_good_question_miss(store):
    assert titles(Retriever(store, top_k=3).run("Who is the CEO of Kestrel Foods?"))[0] == KESTREL
    assert titles(Retriever(store, top_k=3).run("Who founded the Elm Street chess club?"))[0] == ELM


@pytest.mark.parametrize("question", ["What happened to the company's shares?", "What happened to the company’s shares?"])
def test_question_apostrophe_matches_curly_apostrophe_in_body(store, question):
    # Kestrel's body says "The company’s shares" with a curly apostrophe.
    assert titles(Retriever(store, top_k=1).run(question)) == [KESTREL]
    assert store.search('"company’s"', limit=1) == store.search("\"company's\"", limit=1)


@pytest.mark.parametrize("question", ["Were the bridge’s beams replaced?", "Were the bridge's beams replaced?"])
def test_question_apostrophe_matches_straight_apostrophe_in_body(store, question):
    # Riverton's body says "the bridge's steel beams" with a straight apostrophe.
    assert titles(Retriever(store, top_k=1).run(question)) == [RIVERTON]


def test_retriever_returns_at_most_top_k_and_run_can_override_it(store):
    retriever = Retriever(store, top_k=1)
    assert len(retriever.run("the club bridge company")) == 1
    assert len(retriever.run("the club bridge company", top_k=3)) == 3


def test_question_with_no_words_finds_nothing(store):
    assert Retriever(store).run("?? !!") == []


def test_question_about_something_not_stored_finds_nothing(store):
    assert Retriever(store).run("Zanzibar volcano?") == []


@pytest.mark.parametrize("top_k", [0, -1])
def test_retriever_rejects_non_positive_top_k(store, top_k):
    with pytest.raises(ValueError, match=f"top_k must be positive, got {top_k}"):
        Retriever(store, top_k=top_k)
