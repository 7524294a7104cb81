"""Ingestion: every bad input is reported with its path and reason, and everything else still goes in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bot.core.ingest import IngestFailure, ingest_paths
from bot.core.records import Article
from bot.errors import IngestError
from bot.sources.files import article_from_text
from bot.sources.html import article_from_html
from bot.store import SQLiteStore

GOOD_TEXT = "Harbor ferry starts service\n\nThe ferry was built by Northwind Marine. It carries 150 passengers.\n"

PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Library opens seed bank | Town Crier</title>
<meta property="article:published_time" content="2024-04-02"></head>
<body>
<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/weather">Weather</a></nav>
<article>
<h1>Library opens a seed bank</h1>
<p>The Maple Grove public library opened a seed bank on Tuesday, lending packets of vegetable seeds to anyone
with a library card.</p>
<p>Librarian Ruth Okonkwo said the bank started with 60 varieties donated by local gardeners. Borrowers are asked
to return seeds from their own harvest in the autumn.</p>
</article>
<footer>© 2024 Town Crier. Contact us. Privacy policy.</footer>
</body></html>
"""


def table_counts(store: SQLiteStore) -> dict[str, int]:
    return {name: store.db[name].count for name in ("articles", "sentences", "passages", "passages_fts")}


def titles(store: SQLiteStore) -> list[str]:
    return [row["title"] for row in store.db.query("select title from articles order by title")]


@pytest.fixture
def empty_store(tmp_path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "qa.db")


def test_ingest_test_articles_adds_all_three(empty_store, articles_dir):
    report = ingest_paths(empty_store, [articles_dir])
    assert (report.added, report.updated, report.unchanged, report.failures) == (3, 0, 0, [])
    assert titles(empty_store) == [
        "Elm Street Chess Club wins regional title",
        "Kestrel Foods names a new chief executive",
        "Riverton bridge reopens after repairs",
    ]


@pytest.mark.parametrize(
    "name, content, reason",
    [
        (
            "latin1.txt",
            "Café news\n\nThe café opened.".encode("latin-1"),
            "not UTF-8 (byte 0xe9 at offset 3); convert the file to UTF-8 and ingest it again",
        ),
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"  \n\n \t\n", "empty file"),
        ("title-only.txt", b"Just a headline\n\n", "no body: only a title line ('Just a headline') was found"),
        ("broken.json", b'{"title": "A", "body": "B"', "malformed JSON at line 1, column 27: Expecting ',' delimiter"),
        ("no-body.json", b'{"title": "A headline"}', 'record 1: no body (expected a non-empty "body" or "text")'),
        ("no-title.json", b'{"body": "Some text."}', 'record 1: missing "title"'),
        ("not-object.json", b'["just a string"]', "record 1: expected a JSON object with title and body, got str"),
        (
            "slides.key",
            b"PK",
            "unsupported file type .key; use one of .txt .md .markdown .html .htm .json .jsonl .pdf .docx",
        ),
        (
            "README",
            b"hello",
            "unsupported file type (none); use one of .txt .md .markdown .html .htm .json .jsonl .pdf .docx",
        ),
        ("nav-only.html", b"<html><body><nav></nav></body></html>", "no readable article text found in the HTML"),
    ],
)
def test_bad_file_is_reported_with_path_and_reason_and_the_rest_is_ingested(
    empty_store, tmp_path, name, content, reason
):
    bad = tmp_path / name
    bad.write_bytes(content)
    (tmp_path / "good.txt").write_text(GOOD_TEXT, encoding="utf-8")
    report = ingest_paths(empty_store, [bad, tmp_path / "good.txt"])
    assert report.failures == [IngestFailure(str(bad), reason)]
    assert (report.added, report.failed) == (1, 1)
    assert titles(empty_store) == ["Harbor ferry starts service"]


def test_missing_path_is_reported(empty_store, tmp_path):
    (tmp_path / "good.txt").write_text(GOOD_TEXT, encoding="utf-8")
    report = ingest_paths(empty_store, [tmp_path / "nope.txt", tmp_path / "good.txt"])
    assert report.failures == [IngestFailure(str(tmp_path / "nope.txt"), "no such file or folder")]
    assert report.added == 1


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file_is_reported(empty_store, tmp_path):
    locked = tmp_path / "locked.txt"
    locked.write_text(GOOD_TEXT, encoding="utf-8")
    locked.chmod(0)
    try:
        report = ingest_paths(empty_store, [locked])
    finally:
        locked.chmod(0o644)
    assert report.failures == [IngestFailure(str(locked), "unreadable: Permission denied")]


def test_read_error_is_reported_even_when_running_as_root(empty_store, tmp_path, monkeypatch):
    locked = tmp_path / "locked.txt"
    locked.write_text(GOOD_TEXT, encoding="utf-8")
    (tmp_path / "good.md").write_text("# Other\n\nOther text.", encoding="utf-8")
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    report = ingest_paths(empty_store, [tmp_path])
    assert report.failures == [IngestFailure(str(locked), "unreadable: Permission denied")]
    assert titles(empty_store) == ["Other"]


def test_jsonl_with_one_bad_line_stores_the_good_lines_and_names_the_bad_one(empty_store, tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_text(
        json.dumps({"title": "First post", "body": "Alpha text."}) + "\n"
        "{not json}\n"
        "\n"
        + json.dumps({"title": "Second post"})
        + "\n"
        + json.dumps({"title": "Third post", "text": "Gamma text."})
        + "\n",
        encoding="utf-8",
    )
    report = ingest_paths(empty_store, [path])
    assert report.failures == [
        IngestFailure(
            str(path), "line 2: malformed JSON at column 2: Expecting property name enclosed in double quotes"
        ),
        IngestFailure(str(path), 'line 4: no body (expected a non-empty "body" or "text")'),
    ]
    assert titles(empty_store) == ["First post", "Third post"]


def test_json_keeps_url_published_at_and_source(empty_store, articles_dir):
    ingest_paths(empty_store, [articles_dir / "elm-street-chess.json"])
    row = next(empty_store.db.query("select title, source, url, published_at from articles"))
    assert row == {
        "title": "Elm Street Chess Club wins regional title",
        "source": "Springfield Weekly",
        "url": "https://news.example.org/elm-street-chess",
        "published_at": "2024-03-10",
    }


def test_json_list_stores_good_records_and_reports_bad_ones(empty_store, tmp_path):
    path = tmp_path / "list.json"
    path.write_text(
        json.dumps(
            [{"title": "One", "body": "First."}, {"title": "Two", "body": ""}, {"title": "Three", "body": "Third."}]
        ),
        encoding="utf-8",
    )
    report = ingest_paths(empty_store, [path])
    assert report.failures == [IngestFailure(str(path), 'record 2: no body (expected a non-empty "body" or "text")')]
    assert titles(empty_store) == ["One", "Three"]


def test_html_keeps_title_and_article_text_and_drops_navigation_and_footer(empty_store, tmp_path):
    path = tmp_path / "seed-bank.html"
    path.write_text(PAGE, encoding="utf-8")
    assert ingest_paths(empty_store, [path]).added == 1
    row = next(empty_store.db.query("select title, body, source, published_at from articles"))
    assert row == {
        "title": "Library opens a seed bank",
        "body": "The Maple Grove public library opened a seed bank on Tuesday, lending packets of vegetable seeds to "
        "anyone with a library card.\n\nLibrarian Ruth Okonkwo said the bank started with 60 varieties "
        "donated by local gardeners. Borrowers are asked to return seeds from their own harvest in the autumn.",
        "source": str(path),
        "published_at": "2024-04-02",
    }


def test_html_with_url_keeps_it(tmp_path):
    article = article_from_html(PAGE, source="slack", url="https://crier.example/seed-bank")
    assert (article.title, article.url, article.identity) == (
        "Library opens a seed bank",
        "https://crier.example/seed-bank",
        "https://crier.example/seed-bank",
    )


def test_markdown_heading_marks_are_removed_from_the_title():
    article = article_from_text("\n\n## Big news\n\nBody line one.\nBody line two.", source="n.md")
    assert article == Article(title="Big news", body="Body line one.\nBody line two.", source="n.md")
    closed = article_from_text("## Big news ##\nBody.", source="n.md")
    assert closed.title == "Big news"


def test_pasted_text_without_body_raises():
    with pytest.raises(IngestError, match=r"^no body: only a title line \('Only this'\) was found$"):
        article_from_text("Only this", source="pasted")


def test_second_run_changes_nothing(empty_store, articles_dir):
    ingest_paths(empty_store, [articles_dir])
    before = table_counts(empty_store)
    report = ingest_paths(empty_store, [articles_dir])
    assert (report.added, report.updated, report.unchanged, report.failed) == (0, 0, 3, 0)
    assert table_counts(empty_store) == before == {"articles": 3, "sentences": 15, "passages": 3, "passages_fts": 3}


def test_changed_file_is_updated_not_duplicated(empty_store, tmp_path):
    path = tmp_path / "ferry.txt"
    path.write_text(GOOD_TEXT, encoding="utf-8")
    ingest_paths(empty_store, [path])
    path.write_text(
        "Harbor ferry starts service\n\nThe ferry was built by Seaworthy Yards. It is fully electric.\n",
        encoding="utf-8",
    )
    report = ingest_paths(empty_store, [path])
    assert (report.added, report.updated, report.unchanged) == (0, 1, 0)
    assert table_counts(empty_store) == {"articles": 1, "sentences": 2, "passages": 1, "passages_fts": 1}
    assert [row["text"] for row in empty_store.db.query("select text from sentences order by idx")] == [
        "The ferry was built by Seaworthy Yards.",
        "It is fully electric.",
    ]
    assert [p.text for p in empty_store.search('"seaworthy"', limit=5)] == [
        "The ferry was built by Seaworthy Yards. It is fully electric."
    ]
    assert empty_store.search('"northwind"', limit=5) == []


def test_changed_file_given_by_another_path_spelling_is_updated(empty_store, tmp_path, monkeypatch):
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "ferry.txt").write_text(GOOD_TEXT, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert ingest_paths(empty_store, ["articles/"]).added == 1
    (folder / "ferry.txt").write_text(GOOD_TEXT.replace("Northwind Marine", "Seaworthy Yards"), encoding="utf-8")
    report = ingest_paths(empty_store, [folder / "ferry.txt"])
    assert (report.added, report.updated) == (0, 1)
    assert empty_store.article_count() == 1


def test_the_database_inside_an_ingested_folder_is_not_reported_as_a_bad_file(tmp_path):
    (tmp_path / "good.txt").write_text(GOOD_TEXT, encoding="utf-8")
    store = SQLiteStore(tmp_path / "qa.db")
    store.add_article(Article(title="Seed", body="Seed text.", source="seed"))  # creates qa.db-wal and -shm too
    report = ingest_paths(store, [tmp_path])
    assert (report.added, report.failures) == (1, [])


def test_jsonl_records_sharing_a_title_are_separate_articles(empty_store, tmp_path):
    path = tmp_path / "updates.jsonl"
    path.write_text(
        json.dumps({"title": "Weekly update", "body": "The canteen reopens on Monday."})
        + "\n"
        + json.dumps({"title": "Weekly update", "body": "The lifts are serviced on Friday."})
        + "\n",
        encoding="utf-8",
    )
    first = ingest_paths(empty_store, [path])
    again = ingest_paths(empty_store, [path])
    assert [(r.added, r.updated, r.unchanged) for r in (first, again)] == [(2, 0, 0), (0, 0, 2)]
    assert [row["body"] for row in empty_store.db.query("select body from articles order by id")] == [
        "The canteen reopens on Monday.",
        "The lifts are serviced on Friday.",
    ]


ARTICLE_BODY = PAGE[PAGE.index("<article>") : PAGE.index("</article>") + len("</article>")]


@pytest.mark.parametrize(
    "head, expected",
    [
        (
            '<link rel="canonical" href="https://crier.example/seed-bank">'
            '<meta property="og:url" content="https://crier.example/og">'
            '<meta property="article:published_time" content="2024-04-02T08:00:00Z">'
            '<meta name="author" content="Jo Reyes">',
            ("https://crier.example/seed-bank", "2024-04-02", "Jo Reyes"),
        ),
        ('<meta property="og:url" content="https://crier.example/og">', ("https://crier.example/og", None, None)),
        (
            '<script type="application/ld+json">{"@context": "https://schema.org", "@graph": [{"@type": "WebSite"}, '
            '{"@type": "NewsArticle", "url": "https://crier.example/ld", "datePublished": "2024-04-05T10:00:00+02:00",'
            ' "author": [{"@type": "Person", "name": "Ana Lind"}, {"@type": "Person", "name": "Bo Chen"}]}]}</script>',
            ("https://crier.example/ld", "2024-04-05", "Ana Lind, Bo Chen"),
        ),
        ("", (None, None, None)),
    ],
    ids=["canonical-and-meta", "og-url", "json-ld", "nothing"],
)
def test_html_file_keeps_its_canonical_url_date_and_author(empty_store, tmp_path, head, expected):
    path = tmp_path / "page.htm"
    path.write_text(f"<html><head><title>Seed bank</title>{head}</head><body>{ARTICLE_BODY}</body></html>")
    assert ingest_paths(empty_store, [path]).added == 1
    row = next(empty_store.db.query("select url, published_at, author, source from articles"))
    assert row == dict(zip(("url", "published_at", "author"), expected, strict=True)) | {"source": str(path)}


def test_html_time_element_gives_the_date(tmp_path):
    page = f'<html><body><time datetime="2024-04-03">3 April</time>{ARTICLE_BODY}</body></html>'
    assert article_from_html(page, source="saved.html").published_at == "2024-04-03"


def test_a_given_url_wins_over_the_canonical_link():
    page = f'<html><head><link rel="canonical" href="https://crier.example/c"></head><body>{ARTICLE_BODY}</body></html>'
    assert (
        article_from_html(page, source="slack", url="https://crier.example/asked").url == "https://crier.example/asked"
    )


def test_ask_json_shows_the_author(tmp_path, monkeypatch, tiny_reader_dir):
    from click.testing import CliRunner

    import bot.core.service
    from bot.cli import cli
    from tests.fakes.reader import FakeReader

    (tmp_path / "chess.html").write_text(
        '<html><head><title>Chess club</title><meta name="author" content="Jo Reyes"></head><body><article>'
        "<h1>Elm Street chess club</h1><p>The Elm Street chess club was founded by Noor Haddad in 2015, in the "
        "back room of the Boston library.</p><p>It meets every Monday and welcomes players of any age.</p>"
        "</article></body></html>"
    )
    monkeypatch.setenv("QABOT_READER_MODEL", str(tiny_reader_dir))
    monkeypatch.setattr(
        bot.core.service, "build_reader", lambda settings: FakeReader(settings.reader_config(), point_at="haddad")
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", "qa.db", "ingest", "chess.html"]).exit_code == 0
    result = runner.invoke(cli, ["--db", "qa.db", "ask", "--json", "Who founded the Elm Street chess club?"])
    data = json.loads(result.stdout)
    assert (data["answer"], data["article"]["title"], data["article"]["author"]) == (
        "Haddad",
        "Elm Street chess club",
        "Jo Reyes",
    )
