"""The SQLite store: add/update/unchanged, passages and sentences with exact offsets, BM25 search."""

from __future__ import annotations

import pytest

from bot.core.records import Article, ArticleRef, Sentence
from bot.errors import StoreError
from bot.store import SQLiteStore, StoredOutcome

ARTICLE = Article(
    title="Harbor ferry",
    body="The ferry was built by Northwind Marine. It carries 150 passengers.\n\nA second ferry joins in 2025.",
    source="notes/ferry.txt",
)


def table_counts(store: SQLiteStore) -> dict[str, int]:
    return {name: store.db[name].count for name in ("articles", "sentences", "passages")}


def test_add_article_stores_sentences_and_passages_with_exact_offsets(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    outcome = store.add_article(ARTICLE)
    assert outcome == StoredOutcome("added", 1, "Harbor ferry")
    sentences = list(store.db.query("select idx, char_start, char_end, text from sentences order by idx"))
    assert sentences == [
        {"idx": 0, "char_start": 0, "char_end": 40, "text": "The ferry was built by Northwind Marine."},
        {"idx": 1, "char_start": 41, "char_end": 67, "text": "It carries 150 passengers."},
        {"idx": 2, "char_start": 69, "char_end": 98, "text": "A second ferry joins in 2025."},
    ]
    passages = list(store.db.query("select char_start, char_end, title, text from passages"))
    assert passages == [{"char_start": 0, "char_end": 98, "title": "Harbor ferry", "text": ARTICLE.body}]


def test_add_article_twice_is_unchanged(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    store.add_article(ARTICLE)
    before = table_counts(store)
    assert store.add_article(ARTICLE) == StoredOutcome("unchanged", 1, "Harbor ferry")
    assert table_counts(store) == before == {"articles": 1, "sentences": 3, "passages": 1}


def test_changed_article_with_same_source_is_updated_in_place(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    store.add_article(ARTICLE)
    changed = Article(
        title="Harbor ferry", body="The ferry was built by Seaworthy Yards. It is electric.", source="notes/ferry.txt"
    )
    assert store.add_article(changed) == StoredOutcome("updated", 1, "Harbor ferry")
    assert table_counts(store) == {"articles": 1, "sentences": 2, "passages": 1}
    assert [p.text for p in store.search('"seaworthy"', limit=5)] == [changed.body]
    assert store.search('"northwind"', limit=5) == []
    assert store.article_body(1) == changed.body


def test_articles_with_the_same_url_are_one_article(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    first = Article(title="Old", body="Old text here.", source="a.json", url="https://example.org/x")
    second = Article(title="New", body="New text here.", source="b.json", url="https://example.org/x")
    assert [store.add_article(first).status, store.add_article(second).status] == ["added", "updated"]
    assert list(store.db.query("select title, source, url from articles")) == [
        {"title": "New", "source": "b.json", "url": "https://example.org/x"}
    ]


def test_search_returns_passages_with_their_article(store):
    passages = store.search('"haddad"', limit=5)
    assert [(p.article, p.text) for p in passages] == [
        (
            ArticleRef(
                id=1,
                title="Elm Street Chess Club wins regional title",
                source="Springfield Weekly",
                url="https://news.example.org/elm-street-chess",
                published_at="2024-03-10",
            ),
            store.article_body(1),
        )
    ]
    assert passages[0].bm25 < 0  # SQLite's bm25(): lower is better


def test_search_ranks_the_most_relevant_passage_first(store):
    titles = [p.article.title for p in store.search('"bridge" OR "county" OR "club"', limit=5)]
    assert titles[0] == "Riverton bridge reopens after repairs"
    assert sorted(titles) == ["Elm Street Chess Club wins regional title", "Riverton bridge reopens after repairs"]


def test_search_respects_limit(store):
    assert len(store.search('"the"', limit=2)) == 2


def test_search_of_empty_query_returns_nothing(store):
    assert store.search("", limit=5) == []


def test_search_with_raw_fts_syntax_error_raises_store_error(store):
    with pytest.raises(StoreError, match="Search failed for '\"unbalanced'"):
        store.search('"unbalanced', limit=5)


def test_search_sql_can_be_shown_without_running_it(tmp_path):
    sql = SQLiteStore(tmp_path / "qa.db").search_sql()
    assert "where passages_fts match :query order by rank limit :limit" in sql  # ranked before any join
    assert sql.endswith("order by hits.rank")


def test_passage_text_is_the_body_slice(store):
    for row in store.db.query(
        "select p.char_start, p.char_end, p.text, a.body from passages p join articles a on a.id = p.article_id"
    ):
        assert row["body"][row["char_start"] : row["char_end"]] == row["text"]


def test_sentences_covering_returns_every_sentence_a_range_touches(store):
    body = store.article_body(1)
    start = body.index("Haddad")
    assert store.sentences_covering(1, start, start + len("Haddad")) == [
        Sentence(1, 75, 119, "The club was founded by Noor Haddad in 2015.")
    ]
    across = store.sentences_covering(1, body.index("2015"), body.index("youngest"))
    assert [s.text for s in across] == [
        "The club was founded by Noor Haddad in 2015.",
        "Its youngest player, Sam Lee, is nine years old.",
    ]


def test_article_body_of_unknown_id_raises_store_error(store):
    with pytest.raises(StoreError, match="No article with id 99"):
        store.article_body(99)


def test_unopenable_database_raises_store_error_naming_the_path(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(StoreError, match=f"Cannot open the database {folder}: .*Check the path"):
        SQLiteStore(folder)


def test_reopening_a_database_keeps_its_articles(tmp_path):
    SQLiteStore(tmp_path / "qa.db").add_article(ARTICLE)
    reopened = SQLiteStore(tmp_path / "qa.db")
    assert reopened.article_count() == 1
    assert [p.article.title for p in reopened.search('"ferry"', limit=5)] == ["Harbor ferry"]


def test_article_edited_to_match_another_article_is_still_updated(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    store.add_article(Article(title="Ferry", body="The ferry is electric.", source="a.txt"))
    store.add_article(Article(title="Bus", body="The bus is diesel.", source="b.txt"))
    # a.txt is overwritten with a copy of b.txt: its old text must not stay searchable
    outcome = store.add_article(Article(title="Bus", body="The bus is diesel.", source="a.txt"))
    assert outcome == StoredOutcome("updated", 1, "Bus")
    assert store.search('"ferry"', limit=5) == []


def test_same_content_from_a_new_source_is_unchanged(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    store.add_article(ARTICLE)
    moved = Article(title=ARTICLE.title, body=ARTICLE.body, source="moved/ferry.txt")
    assert store.add_article(moved) == StoredOutcome("unchanged", 1, "Harbor ferry")
    assert store.article_count() == 1


def test_an_article_that_fails_half_way_leaves_nothing_behind(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "qa.db")
    article = Article(title="Half", body="One sentence here. Another one there.", source="half.txt")

    def fail_after_sentences(article_id, article, sentences):
        store.db["sentences"].insert_all(
            [{"article_id": article_id, "idx": 0, "char_start": 0, "char_end": 3, "text": "One"}]
        )
        raise StoreError("disk full")

    monkeypatch.setattr(store, "_insert_parts", fail_after_sentences)
    with pytest.raises(StoreError, match="disk full"):
        store.add_article(article)
    assert table_counts(store) == {"articles": 0, "sentences": 0, "passages": 0}


def numbered(n: int) -> list[Article]:
    return [
        Article(title=f"Note {i}", body=f"Note number {i} is here. It has two sentences.", source=f"n{i}.txt")
        for i in range(n)
    ]


def stored_in_a_second_connection(path) -> int:
    other = SQLiteStore(path)
    try:
        return other.db["articles"].count
    finally:
        other.close()


def test_bulk_commits_every_n_articles_and_the_rest_at_the_end(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    seen_by_others = []
    with store.bulk(every=3):
        for article in numbered(7):
            store.add_article(article)
            seen_by_others.append(stored_in_a_second_connection(tmp_path / "qa.db"))
    assert seen_by_others == [0, 0, 3, 3, 3, 6, 6]
    assert stored_in_a_second_connection(tmp_path / "qa.db") == 7


def test_bulk_keeps_what_was_stored_when_interrupted(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    with pytest.raises(KeyboardInterrupt):
        with store.bulk(every=100):
            for article in numbered(4):
                store.add_article(article)
            raise KeyboardInterrupt
    assert stored_in_a_second_connection(tmp_path / "qa.db") == 4


def test_a_failing_article_inside_bulk_loses_only_itself(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "qa.db")
    real_insert_parts = store._insert_parts

    def fail_on_note_1(article_id, article, sentences):
        real_insert_parts(article_id, article, sentences)
        if article.title == "Note 1":
            raise StoreError("disk full")

    monkeypatch.setattr(store, "_insert_parts", fail_on_note_1)
    outcomes = []
    with store.bulk(every=100):
        for article in numbered(3):
            try:
                outcomes.append(store.add_article(article).status)
            except StoreError:
                outcomes.append("failed")
        assert store.add_article(numbered(1)[0]).status == "unchanged"  # sees its own batch
    assert outcomes == ["added", "failed", "added"]
    titles = [
        row["title"] for row in SQLiteStore(tmp_path / "qa.db").db.query("select title from articles order by id")
    ]
    assert titles == ["Note 0", "Note 2"]
    assert table_counts(store) == {"articles": 2, "sentences": 4, "passages": 2}


def test_passage_counts_count_stemmed_terms_and_stop_early(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    for article in numbered(5):
        store.add_article(article)
    store.add_article(ARTICLE)
    counts = store.passage_counts(["note", "notes", "sentences", "ferry", "zanzibar", 'say "hi"'], up_to=3)
    # "notes" is stemmed like the index; counting stops at up_to + 1 (= "more than 3")
    assert counts == {"note": 4, "notes": 4, "sentences": 4, "ferry": 1, "zanzibar": 0, 'say "hi"': 0}
    assert store.passage_counts(["note"], up_to=10) == {"note": 5}
    assert store.passage_counts([], up_to=10) == {}


def test_search_of_several_expressions_keeps_each_passage_once_with_its_best_score(store):
    both = store.search(['"bridge" OR "club"', '"club"'], limit=5)
    alone = {p.id: p.bm25 for p in store.search('"bridge" OR "club"', limit=5)}
    assert sorted(p.id for p in both) == sorted(alone)
    assert [p.bm25 for p in both] == sorted(alone.values())  # the first expression never scores a passage lower
    assert store.search(['"haddad"', '"ferry"'], limit=5) == store.search('"haddad"', limit=5)
    assert store.search([], limit=5) == store.search(["", ""], limit=5) == []


def test_search_sql_of_several_expressions_can_be_shown(tmp_path):
    sql = SQLiteStore(tmp_path / "qa.db").search_sql(2)
    assert "match :query order by rank limit :limit" in sql and "match :query_1 order by rank limit :limit" in sql
    assert "union all" in sql and sql.endswith("order by hits.rank")
