"""The store, retrieval and ingestion behaviours on both engines: every test runs on SQLite and on PostgreSQL
(skipped, with the reason, where no PostgreSQL server answers)."""

from __future__ import annotations

import pytest

from bot.core.ingest import ingest_paths
from bot.core.records import Article
from bot.core.retrieve import Retriever, fts_query
from bot.errors import StoreError
from bot.store import StoredOutcome
from tests.conftest import DATA_DIR, NEWS_ARTICLE, POSTGRES_ADMIN_URL, rows

EXAMPLES = DATA_DIR.parents[2] / "examples" / "articles"
ARTICLE = Article(
    title="Riverton bridge",
    body="The Riverton bridge reopened on Monday. Repairs took three months. The county paid for them.",
    source="notes/bridge.txt",
)


def counts(store) -> dict[str, int]:
    return {t: rows(store, f"select count(*) as n from {t}")[0]["n"] for t in ("articles", "sentences", "passages")}


def test_add_article_stores_sentences_and_passages_with_exact_offsets(new_store):
    store = new_store()
    outcome = store.add_article(ARTICLE)
    assert outcome == StoredOutcome("added", outcome.article_id, "Riverton bridge")
    sentences = rows(store, "select idx, char_start, char_end, text from sentences order by idx")
    assert [(s["idx"], ARTICLE.body[s["char_start"] : s["char_end"]]) for s in sentences] == [
        (0, "The Riverton bridge reopened on Monday."),
        (1, "Repairs took three months."),
        (2, "The county paid for them."),
    ]
    assert rows(store, "select char_start, char_end, title, text from passages") == [
        {"char_start": 0, "char_end": len(ARTICLE.body), "title": "Riverton bridge", "text": ARTICLE.body}
    ]


def test_same_content_is_unchanged_and_a_changed_source_is_updated_in_place(new_store):
    store = new_store()
    first = store.add_article(ARTICLE)
    assert store.add_article(ARTICLE).status == "unchanged"
    moved = Article(title=ARTICLE.title, body=ARTICLE.body, source="elsewhere.txt")
    assert store.add_article(moved).status == "unchanged"  # same content from a new source
    edited = Article(title=ARTICLE.title, body=ARTICLE.body + " It has four lanes.", source=ARTICLE.source)
    assert store.add_article(edited) == StoredOutcome("updated", first.article_id, "Riverton bridge")
    assert counts(store) == {"articles": 1, "sentences": 4, "passages": 1}
    assert [p.text for p in store.search('"lanes"', limit=5)] == [edited.body]


def test_ingesting_into_another_collection_moves_the_article_and_search_filters_by_collection(new_store):
    store = new_store()
    store.add_article(ARTICLE)
    legal = Article(title=ARTICLE.title, body=ARTICLE.body, source=ARTICLE.source, collection="legal")
    assert store.add_article(legal).moved_from == "general"
    assert store.collection_names() == ["legal"]
    assert store.search('"bridge"', limit=5, collections={"general"}) == []
    assert [p.article.collection for p in store.search('"bridge"', limit=5, collections={"legal"})] == ["legal"]


def test_search_returns_passages_with_their_article_and_ranks_the_best_first(new_store):
    store = new_store()
    assert ingest_paths(store, [DATA_DIR]).added == 3
    found = store.search(fts_query("Who is the CEO of Kestrel Foods?"), limit=5)
    assert found[0].article.title == "Kestrel Foods names a new chief executive"
    assert [p.bm25 for p in found] == sorted(p.bm25 for p in found) and found[0].bm25 < 0
    best = found[0]
    assert store.article_body(best.article.id)[best.char_start : best.char_end] == best.text
    assert len(store.search('"the"', limit=2)) == 2
    assert store.search("", limit=5) == []


def test_raw_fts_syntax_error_raises_store_error(new_store):
    store = new_store()
    store.add_article(ARTICLE)
    with pytest.raises(StoreError, match="Search failed for '\"unbalanced'"):
        store.search('"unbalanced', limit=5)


def test_several_expressions_keep_each_passage_once_with_its_best_score(new_store):
    store = new_store()
    ingest_paths(store, [DATA_DIR])
    both = store.search(['"bridge" OR "club"', '"club"'], limit=5)
    alone = {p.id: p.bm25 for p in store.search('"bridge" OR "club"', limit=5)}
    assert sorted(p.id for p in both) == sorted(alone)
    assert [p.bm25 for p in both] == pytest.approx(sorted(alone.values()))
    assert store.search(['"haddad"', '"ferry"'], limit=5) == store.search('"haddad"', limit=5)


def test_passage_counts_count_stemmed_terms_and_stop_early(new_store):
    store = new_store()
    for i in range(5):
        store.add_article(Article(title=f"Note {i}", body=f"Note {i} has two sentences. Number {i}.", source=f"{i}"))
    store.add_article(Article(title="Ferry", body="The ferry runs daily.", source="ferry.txt"))
    got = store.passage_counts(["note", "notes", "sentences", "ferry", "zanzibar", 'say "hi"'], up_to=3)
    assert got == {"note": 4, "notes": 4, "sentences": 4, "ferry": 1, "zanzibar": 0, 'say "hi"': 0}
    assert store.passage_counts(["note"], up_to=10) == {"note": 5}
    assert store.passage_counts([], up_to=10) == {}


def test_sentences_covering_and_unknown_article(new_store):
    store = new_store()
    article_id = store.add_article(ARTICLE).article_id
    covering = store.sentences_covering(article_id, 30, 45)
    assert [s.text for s in covering] == ["The Riverton bridge reopened on Monday.", "Repairs took three months."]
    with pytest.raises(StoreError, match="No article with id 999"):
        store.article_body(999)
    assert store.article_count() == 1


def test_a_second_connection_sees_what_the_first_stored_and_bulk_commits(new_store):
    store = new_store()
    with store.bulk(every=2):
        for i in range(3):
            store.add_article(Article(title=f"Note {i}", body=f"Note {i} is here.", source=f"n{i}"))
    other = new_store()
    assert other.article_count() == 3
    assert [p.article.title for p in other.search('"note"', limit=5)] == ["Note 0", "Note 1", "Note 2"]


def test_ingest_twice_changes_nothing_and_a_changed_file_is_updated(new_store, tmp_path):
    store = new_store()
    report = ingest_paths(store, [DATA_DIR])
    assert (report.added, report.failures) == (3, [])
    again = ingest_paths(store, [DATA_DIR])
    assert (again.added, again.unchanged) == (0, 3)
    note = tmp_path / "note.txt"
    note.write_text("Ferry\nThe ferry leaves at nine.\n", encoding="utf-8")
    ingest_paths(store, [note])
    note.write_text("Ferry\nThe ferry leaves at ten.\n", encoding="utf-8")
    assert ingest_paths(store, [note]).updated == 1
    assert [p.text for p in store.search('"ferry"', limit=5)] == ["The ferry leaves at ten."]


def test_a_rare_word_beats_a_common_one(new_store):
    store = new_store()
    for i in range(12):
        body = f"Town {i} grew every year. The town year {i} was calm."
        store.add_article(Article(title=f"Town {i}", body=body, source=f"town-{i}.txt"))
    store.add_article(Article(title="Zanzibar", body="The town of Zanzibar chose a mayor that year.", source="z"))
    store.add_article(Article(title="Zanzibar harbor", body="Zanzibar built its harbor.", source="zh"))
    retriever = Retriever(store, top_k=3, max_ranked=4)
    assert retriever.run("Which year did the town of Zanzibar choose a mayor?")[0].article.title == "Zanzibar"
    question = "Zanzibar harbor town year"
    everything = {p.id: p.bm25 for p in store.search(fts_query(question), limit=50)}
    found = retriever.run(question)
    assert [p.bm25 for p in found] == pytest.approx([everything[p.id] for p in found])


QUESTIONS = [
    "Who is the CEO of Kestrel Foods?",
    "When did the Riverton bridge reopen?",
    "Who founded the chess club on Elm Street?",
    "Who founded the Lakeside Robotics Club?",
    "How much does a ferry ticket cost?",
    "Who is the CEO of Northwind Rail?",
    "What did the water report find?",
]


@pytest.mark.parametrize("question", QUESTIONS)
def test_postgres_ranks_like_fts5(tmp_path, postgres_url, question):
    """PostgreSQL's BM25 from stored term statistics against FTS5's bm25() on the same articles: the same
    passages in the same order, scores within 2% (the two tokenizers count a few tokens differently)."""
    from bot.store import SQLiteStore
    from bot.store.postgres import PostgresStore

    lite, pg = SQLiteStore(tmp_path / "rank.db"), PostgresStore(postgres_url)
    pg.conn.execute("truncate articles, sentences, passages, passage_terms, passage_postings restart identity cascade")
    pg.conn.execute("update corpus_stats set passages = 0, tokens = 0")
    try:
        for store in (lite, pg):
            assert ingest_paths(store, [DATA_DIR, EXAMPLES, NEWS_ARTICLE]).failures == []
        ours, theirs = (Retriever(store, top_k=5).run(question) for store in (pg, lite))
        assert [(p.article.source, p.char_start) for p in ours] == [(p.article.source, p.char_start) for p in theirs]
        assert [p.bm25 for p in ours] == pytest.approx([p.bm25 for p in theirs], rel=0.02)
    finally:
        lite.close()
        pg.close()


def _postgres_statistics(store) -> tuple[dict[str, int], dict[str, int]]:
    """The stored BM25 statistics (lexemes held by a passage or more, corpus totals) and the same counted afresh;
    also checks that the postings are exactly the passages' lexemes with their weighted frequencies."""
    stored = {r["lexeme"]: r["df"] for r in store.query("select lexeme, df from passage_terms where df <> 0")}
    counted = {
        r["lexeme"]: r["df"]
        for r in store.query("select u.lexeme, count(*) as df from passages p, unnest(p.tsv) u group by u.lexeme")
    }
    totals = store.query("select passages, tokens from corpus_stats")[0]
    assert totals == store.query("select count(*) as passages, coalesce(sum(n_tokens), 0) as tokens from passages")[0]
    postings = "select lexeme, passage_id, f, n_tokens from passage_postings order by 1, 2"
    expected = (
        "select u.lexeme, p.id as passage_id, (select sum(case when w = 'A' then 0.5 else 1.0 end)"
        " from unnest(u.weights) w)::real as f, p.n_tokens from passages p, unnest(p.tsv) u order by 1, 2"
    )
    assert store.query(postings) == store.query(expected)
    return stored, counted


def test_postgres_bulk_writes_the_batch_statistics_once_and_they_match_the_passages(new_store, engine, monkeypatch):
    """Inside `bulk()` the term statistics of a batch are written before its commit: an update, a failed article
    and a search in the middle of the batch leave them equal to a fresh count of the stored passages."""
    if engine != "postgres":
        pytest.skip("PostgreSQL keeps its own BM25 statistics")
    store = new_store()
    real_insert_parts = store._insert_parts

    def fail_on_note_1(article_id, article, sentences):
        counts = real_insert_parts(article_id, article, sentences)
        if article.title == "Note 1":
            store.conn.execute("select 1/0")  # a database error after the passages went in
        return counts

    monkeypatch.setattr(store, "_insert_parts", fail_on_note_1)
    with store.bulk(every=2):
        ingest_paths(store, [DATA_DIR])
        outcomes = []
        for i in range(3):
            try:
                outcomes.append(
                    store.add_article(Article(title=f"Note {i}", body=f"Note {i} is here.", source=f"n{i}"))
                )
            except StoreError:
                outcomes.append(None)
        edited = Article(title="Note 0", body="Note 0 moved to the harbor.", source="n0")
        assert store.add_article(edited).status == "updated"
        assert [p.text for p in store.search('"harbor"', limit=5)] == [edited.body]  # the batch's own statistics
    assert outcomes[1] is None and {o.status for o in outcomes if o} == {"added"}
    stored, counted = _postgres_statistics(store)
    assert stored == counted and "harbor" in stored


def test_a_postgresql_library_of_schema_version_4_gains_the_postings_of_its_passages(make_postgres_db):
    """Migration 5 fills `passage_postings` from the stored passages: the same search results after it."""
    from bot.store.postgres import PostgresStore

    url = make_postgres_db()
    store = PostgresStore(url)
    ingest_paths(store, [DATA_DIR, EXAMPLES])
    before = [(p.id, p.bm25) for p in Retriever(store, top_k=5).run("Who is the CEO of Kestrel Foods?")]
    store.conn.execute("drop table passage_postings; update schema_version set version = 4")
    store.close()
    upgraded = PostgresStore(url)
    try:
        assert upgraded.query("select version from schema_version") == [{"version": 5}]
        stored, counted = _postgres_statistics(upgraded)
        assert stored == counted
        after = [(p.id, p.bm25) for p in Retriever(upgraded, top_k=5).run("Who is the CEO of Kestrel Foods?")]
        assert after == before and before
    finally:
        upgraded.close()


def test_postgres_ranks_phrases_of_several_words_from_the_tsvectors_with_the_same_scores(new_store, engine):
    """A phrase of several words goes through the GIN index and the tsvectors, one word through the postings: a
    one-word phrase scores the same either way."""
    if engine != "postgres":
        pytest.skip("the two ways to rank are PostgreSQL's")
    store = new_store()
    ingest_paths(store, [DATA_DIR, EXAMPLES])
    by_postings = {p.id: p.bm25 for p in store.search('"bridge" OR "ferry"', limit=10)}
    with_phrase = {p.id: p.bm25 for p in store.search('"bridge" OR "ferry" OR "zebra crossing"', limit=10)}
    assert by_postings and with_phrase == pytest.approx(by_postings)
    found = store.search('"riverton bridge"', limit=5)
    assert found and all("riverton bridge" in f"{p.article.title} {p.text}".lower() for p in found)


# Choosing the engine: QABOT_DATABASE_URL, --db, and what a bad URL says -----------------------------------


def test_an_unreachable_database_url_is_one_line_naming_the_host_without_the_password(monkeypatch):
    from click.testing import CliRunner

    from bot.cli import cli

    monkeypatch.setenv("QABOT_DATABASE_URL", "postgresql://postgres:s3cret@127.0.0.1:1/qa")
    for args in (["ingest", str(DATA_DIR)], ["ask", "Who?"], ["db", "upgrade"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, args
        assert result.output.startswith("Error: Cannot connect to PostgreSQL at 127.0.0.1:1 (database qa): ")
        assert len(result.output.strip().splitlines()) == 1 and "s3cret" not in result.output
        assert "Traceback" not in result.output


UNREACHABLE_URLS = {  # the URL, and how its one line starts
    "postgresql://postgres:s3cret@127.0.0.1:1/qa": "Error: Cannot connect to PostgreSQL at 127.0.0.1:1 (database qa): ",
    POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/qa_bot_no_such_database": (
        "Error: Cannot connect to PostgreSQL at 127.0.0.1:5432 (database qa_bot_no_such_database): "
    ),
}


@pytest.mark.parametrize(
    "args",
    [
        ["feeds", "list"],
        ["feeds", "add", "https://news.example.org/rss.xml"],
        ["feeds", "remove", "https://news.example.org/rss.xml"],
        ["feeds", "poll"],
        ["articles", "list"],
        ["articles", "show", "1"],
        ["articles", "delete", "1", "--yes"],
        ["articles", "stats"],
        ["report"],
    ],
    ids=" ".join,
)
@pytest.mark.parametrize("url", list(UNREACHABLE_URLS), ids=["unreachable", "no-such-database"])
def test_feeds_articles_and_report_with_a_bad_database_url_say_so_in_one_line(monkeypatch, args, url):
    from click.testing import CliRunner

    from bot.cli import cli

    monkeypatch.setenv("QABOT_DATABASE_URL", url)
    result = CliRunner().invoke(cli, args)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith(UNREACHABLE_URLS[url]) and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.endswith(". Check QABOT_DATABASE_URL or --db.\n")
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


def test_db_option_wins_over_database_url_which_wins_over_db_path(monkeypatch, tmp_path):
    from bot.cli_common import settings_for

    monkeypatch.setenv("QABOT_DB_PATH", "env.db")
    assert settings_for().database == "env.db"
    monkeypatch.setenv("QABOT_DATABASE_URL", "postgresql://u:pw@db.internal/qa")
    assert settings_for().database == "postgresql://u:pw@db.internal/qa"
    assert settings_for().database_label == "postgresql://u@db.internal/qa"
    assert settings_for(db_path="flag.db").database == "flag.db"
    assert settings_for(db_path="sqlite:///other.db").database == "other.db"
    assert settings_for(db_path="postgresql://h/x").database == "postgresql://h/x"


def test_a_database_url_of_another_kind_is_refused_without_echoing_it(monkeypatch):
    from bot.errors import ConfigError
    from bot.settings import load_settings

    monkeypatch.setenv("QABOT_DATABASE_URL", "mysql://root:s3cret@db/qa")
    with pytest.raises(ConfigError, match="QABOT_DATABASE_URL: must start with postgresql://") as raised:
        load_settings()
    assert "s3cret" not in str(raised.value)


def test_ingest_ask_and_db_upgrade_through_a_postgresql_url(postgres_url, monkeypatch, tiny_reader_dir):
    from click.testing import CliRunner

    from bot.cli import cli
    from bot.store.pg_migrations import latest_pg_version
    from bot.store.postgres import PostgresStore

    emptied = PostgresStore(postgres_url)
    emptied.conn.execute(
        "truncate articles, sentences, passages, passage_terms, passage_postings restart identity cascade;"
        "update corpus_stats set passages = 0, tokens = 0"
    )
    emptied.close()
    monkeypatch.setenv("QABOT_READER_MODEL", str(tiny_reader_dir))
    runner = CliRunner()
    upgraded = runner.invoke(cli, ["--db", postgres_url, "db", "upgrade"])
    assert upgraded.exit_code == 0 and f"schema version {latest_pg_version()}" in upgraded.output
    ingested = runner.invoke(cli, ["--db", postgres_url, "ingest", str(DATA_DIR)])
    assert ingested.exit_code == 0, ingested.output
    assert f"Ingested into {postgres_url}: 3 added" in ingested.output
    asked = runner.invoke(cli, ["ask", "--json", "--db", postgres_url, "Who is the CEO of Kestrel Foods?"])
    assert asked.exit_code == 0, asked.output
    assert "Kestrel Foods" in " ".join(asked.output.split('"searched"')[1:])
