"""Retrieval: any user text becomes a safe FTS5 query, stop words never make a good question miss."""

from __future__ import annotations

import random
import re

import pytest

from bot.core.records import Article, Passage
from bot.core.retrieve import Retriever, fts_query, query_terms, ranked_queries
from bot.store import SQLiteStore

KESTREL = "Kestrel Foods names a new chief executive"
RIVERTON = "Riverton bridge reopens after repairs"
ELM = "Elm Street Chess Club wins regional title"

SAFE_QUERY = re.compile(r'^("[^"\s]+"( OR "[^"\s]+")*)?$')

HOSTILE = [
    "",
    " ",
    "\t\n",
    '"',
    '""',
    '"""',
    "'",
    "*",
    "-",
    ":",
    "(",
    ")",
    "()",
    "^",
    "+",
    "NEAR",
    "AND",
    "OR",
    "NOT",
    "NEAR(",
    "NEAR(a b, 2)",
    "a AND",
    "OR OR OR",
    "NOT NOT",
    "AND club",
    "club NOT chess",
    "-club",
    "club*",
    "*club",
    "title:club",
    "text:bridge",
    "{title text}: club",
    "^club",
    '"club',
    'club"',
    '"club" "bridge',
    "club -- x",
    "a'b",
    "'; DROP TABLE articles; --",
    "%",
    "_",
    "\\",
    "\x00",
    "🙂",
    "🙂🙂 club 🙂",
    "ﬁ",
    "İstanbul",
    "a\u0301",
    "\u0301",
    "x\u200by",
    "\u202e",
    "Who?",
    "?!?",
    "...",
    "’",
    "‘quoted’",
    "“club”",
    "Kestrel’s",
    "bridge's",
    "club " * 2000,
    " ".join(f"word{i}" for i in range(1500)),
    "x" * 10_000,
]


def titles(passages: list[Passage]) -> list[str]:
    return [p.article.title for p in passages]


@pytest.mark.parametrize(
    "question, expected",
    [
        ("Who is the CEO of Kestrel Foods?", '"ceo" OR "kestrel" OR "foods"'),
        ('Who is the CEO of "Rosoboronexport"?', '"ceo" OR "rosoboronexport"'),
        ("What did Turkey’s agency buy?", '"turkey" OR "agency" OR "buy"'),
        ("What did Turkey's agency buy?", '"turkey" OR "agency" OR "buy"'),
        ("Who is it?", '"who" OR "is" OR "it"'),
        ("club club CLUB", '"club"'),
        ('club* -bridge NEAR(x) title:y AND "z', '"club" OR "bridge" OR "near" OR "x" OR "title" OR "y" OR "z"'),
        ("", ""),
        ("?!", ""),
    ],
)
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
    alphabet = list("\"'*-:()^+{}[],.;!?%_\\/ \t\n’‘“”🙂é") + [
        "NEAR",
        "AND",
        "OR",
        "NOT",
        "club",
        "bridge",
        "ß",
        "\u0301",
    ]
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


@pytest.mark.parametrize(
    "question", ["What happened to the company's shares?", "What happened to the company’s shares?"]
)
def test_question_apostrophe_matches_curly_apostrophe_in_body(store, question):
    # Kestrel's body says "The company’s shares" with a curly apostrophe.
    assert titles(Retriever(store, top_k=1).run(question)) == [KESTREL]
    assert store.search('"company’s"', limit=1) == store.search('"company\'s"', limit=1)


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


# Common words do not make a question slow: only passages holding one of its rarer words are ranked ------------

RANKED_EXPRESSION = re.compile(r'(?:"[^"\s]+"|\(|\)| AND | OR )+')


def town_store(tmp_path) -> SQLiteStore:
    """Twelve one-passage articles that all say "year" and "town"; a few also hold a rarer word."""
    store = SQLiteStore(tmp_path / "towns.db")
    for i in range(12):
        store.add_article(
            Article(
                title=f"Town {i}", body=f"Town {i} grew every year. The town year {i} was calm.", source=f"town-{i}.txt"
            )
        )
    store.add_article(
        Article(title="Zanzibar", body="The town of Zanzibar chose a mayor that year.", source="zanzibar.txt")
    )
    store.add_article(Article(title="Harbor", body="A harbor opened in the town that year.", source="harbor.txt"))
    store.add_article(Article(title="Zanzibar harbor", body="Zanzibar built its harbor.", source="zh.txt"))
    return store


def test_ranked_queries_require_a_rare_term_and_score_every_term():
    counts = {"ceo": 900, "kestrel": 30, "year": 45_000, "typo": 0}
    assert ranked_queries(["ceo", "kestrel", "year", "typo"], counts, 1000) == [
        '("ceo" OR "kestrel") AND ("year")',
        '"kestrel" AND ("ceo")',
        '"kestrel"',
    ]


@pytest.mark.parametrize(
    "counts",
    [
        {"ceo": 9000, "year": 45_000},  # every term common
        {"ceo": 40, "year": 400},  # every term rare
        {"ceo": 0, "year": 0},  # nothing stored
        {"ceo": 0, "year": 45_000},  # the rare word is a typo
    ],
)
def test_ranked_queries_fall_back_to_all_terms(counts):
    assert ranked_queries(["ceo", "year"], counts, 1000) == ['"ceo" OR "year"']


def test_a_rare_word_beats_a_common_one(tmp_path):
    store = town_store(tmp_path)
    retriever = Retriever(store, top_k=3, max_ranked=4)
    assert titles(retriever.run("Which year did the town of Zanzibar choose a mayor?"))[0] == "Zanzibar"
    assert titles(retriever.run("When was the town harbor of Zanzibar built?"))[0] == "Zanzibar harbor"


def test_passages_with_rare_words_keep_their_plain_bm25_order_and_score(tmp_path):
    store = town_store(tmp_path)
    question = "Zanzibar harbor town year"  # rare: zanzibar, harbor (2 passages each); common: town, year
    everything = store.search(fts_query(question), limit=50)
    expected = [(p.id, p.bm25) for p in everything if "Zanzibar" in p.text or "harbor" in p.text]
    found = Retriever(store, top_k=5, max_ranked=4).run(question)
    assert [p.id for p in found] == [i for i, _ in expected]
    assert [p.bm25 for p in found] == pytest.approx([score for _, score in expected])


@pytest.mark.parametrize(
    "question",
    [
        "Which year did the town of Zanzibar choose a mayor?",
        "Zanzibar harbor?",
        "What harbor opened in the town?",
        "town Zanzibar",
        "mayor of Zanzibar town",
    ],
)
def test_every_passage_found_has_its_plain_bm25_score(tmp_path, question):
    store = town_store(tmp_path)
    everything = {p.id: p.bm25 for p in store.search(fts_query(question), limit=50)}
    found = Retriever(store, top_k=5, max_ranked=4).run(question)
    assert found
    assert [p.bm25 for p in found] == pytest.approx([everything[p.id] for p in found])
    assert [p.bm25 for p in found] == sorted(p.bm25 for p in found)


@pytest.mark.parametrize(
    "question", ["What year was the town?", "Who is it?", "year town town year", "Which town was Zanzibr in that year?"]
)
def test_questions_of_common_words_still_search_everything(tmp_path, question):
    store = town_store(tmp_path)
    found = Retriever(store, top_k=5, max_ranked=4).run(question)
    assert [p.id for p in found] == [p.id for p in store.search(fts_query(question), limit=5)]


def test_hostile_strings_are_safe_when_common_words_are_left_out(store):
    retriever = Retriever(store, top_k=3, max_ranked=1)
    for text in HOSTILE:
        terms = query_terms(text)
        for expression in ranked_queries(terms, store.passage_counts(terms, up_to=1), 1) if terms else []:
            assert RANKED_EXPRESSION.fullmatch(expression), (text, expression)
        assert len(retriever.run(text)) <= 3


def test_a_follow_up_is_searched_with_the_earlier_questions_and_prefers_their_articles(
    tmp_path, sample_article, articles_dir
):
    from pathlib import Path

    from bot.core.ingest import ingest_paths

    store = SQLiteStore(tmp_path / "qa.db")
    examples = Path(__file__).resolve().parents[1] / "examples" / "articles"
    assert ingest_paths(store, [sample_article, articles_dir, examples]).failures == []
    store.add_article(
        Article(
            title="Press day",
            source="press.txt",
            body="Reporters waited outside the stadium, where she would speak to them after the match.",
        )
    )
    retriever = Retriever(store, top_k=2)
    follow_up, earlier = "Where did she speak to reporters?", "Who is the CEO of Northwind Rail?"
    lindqvist = "Marta Lindqvist told reporters at the Baltic Transport Forum"

    alone = retriever.run(follow_up)
    assert alone[0].article.title == "Press day" and not any(lindqvist in p.text for p in alone)
    widened = retriever.run(follow_up, context=[earlier, "  "])
    assert any(lindqvist in p.text for p in widened)  # the earlier question's words bring its article in
    northwind = next(p.article.id for p in widened if lindqvist in p.text)
    first = retriever.run(follow_up, context=[earlier], prefer_articles={northwind})[0]
    assert lindqvist in first.text  # and the article cited earlier in the thread wins the close call
