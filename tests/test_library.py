"""`qa-bot articles`: list, show, delete and count the stored articles, as a user sees them, on SQLite and on
PostgreSQL (`engine`): the same output from both but for the database's name and size."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

import bot.cli_library
from bot.cli import cli
from bot.store import SQLiteStore
from tests.conftest import rows

FERRY = "Harbor ferry starts service\n\nThe ferry was built by Northwind Marine. It carries 150 passengers.\n"
BRIDGE = "# Riverton bridge reopens\n\nThe bridge reopened on Monday. Repairs took two years. Lena Ortiz led them.\n"
MILL = {
    "title": "Mill museum opens",
    "body": "The old mill opened as a museum. Entry is free on Sundays.",
    "url": "https://news.example.org/mill",
    "published_at": "2024-03-10",
    "source": "Springfield Weekly",
    "author": "Ana Lind",
}
ADDED = ["2024-04-01T09:00:00+00:00", "2024-05-01T09:00:00+00:00", "2024-06-01T09:00:00+00:00"]


@dataclass(frozen=True)
class Library:
    """The test library: its store, what `--db` names and what messages call it."""

    store: object
    db: str
    label: str


def table_counts(library: Library) -> dict[str, int]:
    """Rows per table; `search` counts the search index's rows (FTS5's, or PostgreSQL's BM25 statistics)."""
    store = library.store
    search = (
        "select count(*) as n from passages_fts"
        if isinstance(store, SQLiteStore)
        else "select passages as n from corpus_stats"
    )
    counts = {
        name: rows(store, f"select count(*) as n from {name}")[0]["n"] for name in ("articles", "sentences", "passages")
    }
    return {**counts, "search": rows(store, search)[0]["n"]}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def library(runner, tmp_path, new_store, engine) -> Library:
    """qa.db in the working directory, or the run's PostgreSQL database, with three articles (ids 1..3) added on
    known dates."""
    store = new_store()
    db = label = "qa.db"  # tmp_path is the working directory
    if engine == "postgres":
        db = label = store.url  # the test server's URL holds no password
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "a-ferry.txt").write_text(FERRY, encoding="utf-8")
    (folder / "b-bridge.md").write_text(BRIDGE, encoding="utf-8")
    (folder / "c-mill.json").write_text(json.dumps(MILL), encoding="utf-8")
    assert runner.invoke(cli, ["ingest", "--db", db, "lib"]).exit_code == 0
    for article_id, added in enumerate(ADDED, start=1):
        write(store, "update articles set ingested_at = ? where id = ?", [added, article_id])
    return Library(store, db, label)


def write(store, sql: str, params=()) -> None:
    """One write statement on either engine (`?` placeholders), committed."""
    if isinstance(store, SQLiteStore):
        with store.db.conn:
            store.db.execute(sql, params)
    else:
        store.conn.execute(sql.replace("?", "%s"), params)


def test_list_prints_a_header_and_one_tab_separated_row_per_article(runner, library):
    result = runner.invoke(cli, ["--db", library.db, "articles", "list"])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "id\ttitle\tsource\turl\tpublished_at\tadded\tpassages\n"
        f"1\tHarbor ferry starts service\tlib/a-ferry.txt\t-\t-\t{ADDED[0]}\t1\n"
        f"2\tRiverton bridge reopens\tlib/b-bridge.md\t-\t-\t{ADDED[1]}\t1\n"
        f"3\tMill museum opens\tSpringfield Weekly\thttps://news.example.org/mill\t2024-03-10\t{ADDED[2]}\t1\n"
    )


def test_list_json_is_one_array(runner, library):
    result = runner.invoke(cli, ["articles", "list", "--json", "--db", library.db, "--since", "2024-05-01"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {
            "id": 2,
            "title": "Riverton bridge reopens",
            "source": "lib/b-bridge.md",
            "url": None,
            "published_at": None,
            "author": None,
            "added": ADDED[1],
            "passages": 1,
            "collection": "general",
        },
        {
            "id": 3,
            "title": "Mill museum opens",
            "source": "Springfield Weekly",
            "url": "https://news.example.org/mill",
            "published_at": "2024-03-10",
            "author": "Ana Lind",
            "added": ADDED[2],
            "passages": 1,
            "collection": "general",
        },
    ]


def test_list_filters_on_collection(runner, library):
    write(library.store, "update articles set collection = 'legal' where id = 2")
    legal = runner.invoke(cli, ["articles", "list", "--db", library.db, "--collection", "legal", "--json"])
    assert [(row["id"], row["collection"]) for row in json.loads(legal.stdout)] == [(2, "legal")]
    general = runner.invoke(cli, ["articles", "list", "--db", library.db, "--collection", "general", "--json"])
    assert [row["id"] for row in json.loads(general.stdout)] == [1, 3]


def test_list_filters_on_source_text_in_any_case(runner, library):
    result = runner.invoke(cli, ["articles", "list", "--db", library.db, "--source", "SPRINGFIELD", "--json"])
    assert [row["id"] for row in json.loads(result.stdout)] == [3]


def test_list_with_no_match_prints_an_empty_array_and_says_so(runner, library):
    result = runner.invoke(cli, ["articles", "list", "--db", library.db, "--since", "2030-01-01", "--json"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "[]\n",
        f"No stored article in {library.label} matches.\n",
    )


def test_list_of_a_missing_database_says_so_and_creates_nothing(runner, tmp_path):
    result = runner.invoke(cli, ["articles", "list", "--db", "nope.db"])
    assert (result.exit_code, result.stderr) == (
        1,
        "Error: No articles are stored in nope.db yet. Add some first: qa-bot ingest ./articles\n",
    )
    assert not (tmp_path / "nope.db").exists()


def test_show_by_url_prints_metadata_and_opening_lines(runner, library):
    result = runner.invoke(cli, ["articles", "show", "--db", library.db, "https://news.example.org/mill"])
    assert (result.exit_code, result.stdout) == (
        0,
        "#3 Mill museum opens\n"
        "source: Springfield Weekly\n"
        "url: https://news.example.org/mill\n"
        "published: 2024-03-10\n"
        "author: Ana Lind\n"
        f"added: {ADDED[2]}\n"
        "passages: 1\n"
        "\n"
        "The old mill opened as a museum. Entry is free on Sundays.\n",
    )


def test_show_of_an_unknown_id_says_so_and_exits_1(runner, library):
    result = runner.invoke(cli, ["articles", "show", "--db", library.db, "42"])
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: No article with id or url 42 in {library.label}. See them all: qa-bot articles list\n",
    )


def test_delete_removes_the_article_its_sentences_passages_and_search_rows(runner, library):
    before = table_counts(library)
    result = runner.invoke(cli, ["articles", "delete", "--db", library.db, "2", "--yes"])
    assert (result.exit_code, result.stdout) == (
        0,
        f"Deleted 1 article(s) from {library.label}: #2 Riverton bridge reopens.\n",
    )
    assert table_counts(library) == {
        "articles": before["articles"] - 1,
        "sentences": before["sentences"] - 3,
        "passages": before["passages"] - 1,
        "search": before["search"] - 1,
    }
    assert library.store.search('"bridge"', limit=5) == []
    assert [p.article.id for p in library.store.search('"ferry"', limit=5)] == [1]


def test_delete_of_an_unknown_id_says_so_exits_1_and_deletes_nothing(runner, library):
    before = table_counts(library)
    result = runner.invoke(cli, ["articles", "delete", "--db", library.db, "1", "42", "--yes"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"No article with id or url 42 in {library.label}. See them all: qa-bot articles list\n",
    )
    assert table_counts(library) == before


def test_delete_on_a_terminal_asks_first_and_no_keeps_everything(runner, library, monkeypatch):
    monkeypatch.setattr(bot.cli_library, "stdin_is_terminal", lambda: True)
    before = table_counts(library)
    result = runner.invoke(cli, ["articles", "delete", "--db", library.db, "1", "3"], input="n\n")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        f"Delete 2 article(s) from {library.label}: #1 Harbor ferry starts service; #3 Mill museum opens? [y/N]: n\n",
        "Aborted!\n",
    )
    assert table_counts(library) == before
    result = runner.invoke(cli, ["articles", "delete", "--db", library.db, "1", "3"], input="y\n")
    assert result.exit_code == 0
    assert table_counts(library)["articles"] == 1


def test_stats_counts_the_library(runner, library, tmp_path):
    result = runner.invoke(cli, ["articles", "stats", "--db", library.db, "--json"])
    stats = json.loads(result.stdout)
    if isinstance(library.store, SQLiteStore):  # the file with its write-ahead log
        size = sum(p.stat().st_size for p in (tmp_path / "qa.db", tmp_path / "qa.db-wal") if p.exists())
    else:  # the whole database, as the server counts it
        size = rows(library.store, "select sum(pg_total_relation_size(relid)) as n from pg_stat_user_tables")[0]["n"]
    assert stats == {
        "db_path": library.label,
        "articles": 3,
        "passages": 3,
        "sentences": 7,
        "db_bytes": size,
        "last_ingest": ADDED[2],
        "feeds": 0,
    }


def test_stats_as_text(runner, library):
    result = runner.invoke(cli, ["articles", "stats", "--db", library.db])
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{library.label}: 3 articles, 3 passages, 7 sentences, ")
    assert lines[0].endswith(" KB on disk.")
    assert lines[1] == f"Last ingest: {ADDED[2]}. Feeds: 0."
