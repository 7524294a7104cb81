"""Feeds end to end, offline: a loopback HTTP server serves an RSS feed, an Atom feed and the pages they link to
(private addresses allowed in these tests only); the real fetcher, feedparser, the store and the CLI. The store's
and the CLI's tests run on SQLite and on PostgreSQL (`engine`)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.core.feeds import FeedLimits, FeedPoller, backoff_s, poll_feeds
from bot.core.records import Article
from bot.store.feeds import FeedStore, SeenEntry
from tests.conftest import rows

WORDS = "harbour ferry council budget captain engineer bridge mill river library station tram market"


def page_html(n: int, *, edition: int = 1) -> bytes:
    words = WORDS.split()
    sentences = " ".join(
        f"Story {n} edition {edition} says the {words[(n + i) % len(words)]} report number {i} was read aloud "
        f"in the hall on day {i + 1}."
        for i in range(6)
    )
    return (
        f"<html><head><title>Story {n}</title></head><body><article><h1>Story {n}</h1><p>{sentences}</p>"
        f"<p>The town expects more news about story {n} next week, officials said.</p></article></body></html>"
    ).encode()


def rss(base: str, numbers, *, title: str = "Town News") -> bytes:
    items = "".join(
        f"<item><title>Story {n}</title><link>{base}/p/{n}</link><guid>story-{n}</guid>"
        f"<pubDate>Mon, 0{1 + n % 9} Jan 2024 10:00:00 GMT</pubDate></item>"
        for n in numbers
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>{items}</channel></rss>'.encode()


def atom(base: str, numbers) -> bytes:
    entries = "".join(
        f'<entry><title>Story {n}</title><link href="{base}/p/{n}"/><id>urn:story:{n}</id>'
        f"<published>2024-02-0{1 + n % 9}T08:30:00Z</published><updated>2024-02-0{1 + n % 9}T08:30:00Z</updated>"
        f"</entry>"
        for n in numbers
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>City Atom</title>'
        f"<id>urn:city</id><updated>2024-02-09T00:00:00Z</updated>{entries}</feed>"
    ).encode()


class Site:
    """The loopback site: `feeds[path] = bytes` (served with an ETag), pages /p/N generated, /hang/N never
    answers until the test ends; `hits` counts requests per path, `not_modified` the 304s."""

    def __init__(self) -> None:
        self.feeds: dict[str, bytes] = {}
        self.editions: dict[int, int] = {}
        self.hits: Counter[str] = Counter()
        self.not_modified = 0
        self.release = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                site.hits[self.path] += 1
                if self.path in site.feeds:
                    body = site.feeds[self.path]
                    etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
                    if self.headers.get("If-None-Match") == etag:
                        site.not_modified += 1
                        self.send_response(304)
                        self.send_header("ETag", etag)
                        self.end_headers()
                        return
                    kind = "text/html" if body.lstrip().startswith(b"<html") else "application/rss+xml"
                    return self._send(body, kind, {"ETag": etag})
                if self.path.startswith("/p/"):
                    n = int(self.path.rsplit("/", 1)[1])
                    return self._send(page_html(n, edition=site.editions.get(n, 1)), "text/html; charset=utf-8")
                if self.path.startswith("/hang/"):
                    site.release.wait(10)
                    return
                self.send_error(404)

            def _send(self, body: bytes, kind: str, headers: dict | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    running = Site()
    yield running
    running.close()


@pytest.fixture
def store(new_store):
    """An empty library of the test's engine, with its feed tables."""
    return new_store()


LIMITS = FeedLimits(timeout_s=5, allow_private=True, max_entries=50, budget_s=60, interval_s=60)


def subscribe(store, site, path: str, body: bytes, *, collection: str = "general") -> None:
    site.feeds[path] = body
    FeedStore(store).add(site.url(path), title=None, collection=collection)


def test_rss_and_atom_entries_are_stored_with_their_dates_and_an_unchanged_feed_costs_one_request(store, site):
    subscribe(store, site, "/rss.xml", rss(site.base, [1, 2]))
    subscribe(store, site, "/atom.xml", atom(site.base, [3]))
    reports = poll_feeds(store, limits=LIMITS)
    assert [(r.status, r.added, r.failures) for r in reports] == [("polled", 2, []), ("polled", 1, [])]
    assert rows(store, "select title, source, url, published_at from articles order by url") == [
        {
            "title": "Story 1",
            "source": "Town News",
            "url": site.url("/p/1"),
            "published_at": "2024-01-02T10:00:00+00:00",
        },
        {
            "title": "Story 2",
            "source": "Town News",
            "url": site.url("/p/2"),
            "published_at": "2024-01-03T10:00:00+00:00",
        },
        {
            "title": "Story 3",
            "source": "City Atom",
            "url": site.url("/p/3"),
            "published_at": "2024-02-04T08:30:00+00:00",
        },
    ]
    hits_before = sum(site.hits.values())
    again = poll_feeds(store, limits=LIMITS)
    assert [r.status for r in again] == ["not_modified", "not_modified"]
    assert (sum(site.hits.values()) - hits_before, site.not_modified) == (2, 2)  # one request per feed


def test_the_same_entry_in_two_feeds_or_from_a_file_is_stored_once_and_keeps_its_source(store, site):
    store.add_article(
        Article(title="Story 5", body="A saved copy of story five.", source="saved/5.html", url=site.url("/p/5"))
    )
    subscribe(store, site, "/a.xml", rss(site.base, [4, 5], title="Feed A"))
    subscribe(store, site, "/b.xml", rss(site.base, [4, 6], title="Feed B"))
    reports = poll_feeds(store, limits=LIMITS)
    assert [(r.added, r.known) for r in reports] == [(1, 1), (1, 1)]
    assert rows(store, "select url, source from articles order by url") == [
        {"url": site.url("/p/4"), "source": "Feed A"},
        {"url": site.url("/p/5"), "source": "saved/5.html"},
        {"url": site.url("/p/6"), "source": "Feed B"},
    ]
    assert (site.hits["/p/4"], site.hits["/p/5"]) == (1, 0)
    assert FeedStore(store).get(site.url("/b.xml")).entries == 2


def test_an_entry_is_known_by_its_link_as_an_article_url_or_by_the_id_or_link_another_feed_recorded(store):
    saved = store.add_article(Article(title="Saved", body="A saved page.", source="s.html", url="https://x.org/1"))
    other = store.add_article(Article(title="Other", body="Another page.", source="o.html", url="https://x.org/o"))
    feeds = FeedStore(store)
    feeds.add("https://x.org/feed.xml", title=None)
    feed_id = feeds.get("https://x.org/feed.xml").id
    feeds.record_entry(feed_id, key="guid-2", link="https://x.org/2", fingerprint="f", article_id=other.article_id)
    new = [(f"https://x.org/new/{n}", f"new-{n}") for n in range(1_200)]  # more than one `in (...)` list
    pairs = [("https://x.org/1", "guid-1"), ("https://x.org/moved", "guid-2"), ("https://x.org/2", "guid-9"), *new]
    assert feeds.stored_articles(pairs) == {
        ("https://x.org/1", "guid-1"): saved.article_id,
        ("https://x.org/moved", "guid-2"): other.article_id,
        ("https://x.org/2", "guid-9"): other.article_id,
    }
    assert feeds.stored_article(link="https://x.org/2", key="guid-9") == other.article_id
    assert feeds.seen_entries(feed_id) == {"guid-2": SeenEntry("f", other.article_id)}


def test_a_changed_entry_is_updated_in_place(store, site):
    subscribe(store, site, "/rss.xml", rss(site.base, [7]))
    poll_feeds(store, limits=LIMITS)
    site.editions[7] = 2
    site.feeds["/rss.xml"] = site.feeds["/rss.xml"].replace(b"Jan 2024 10:00", b"Jan 2024 11:00")
    [report] = poll_feeds(store, limits=LIMITS)
    assert (report.added, report.updated) == (0, 1)
    [article] = rows(store, "select body, published_at from articles")
    assert ("edition 2" in article["body"], article["published_at"]) == (True, "2024-01-08T11:00:00+00:00")


def test_a_feed_of_10000_entries_stores_at_most_the_cap_per_poll_and_the_rest_later(store, site):
    subscribe(store, site, "/big.xml", rss(site.base, range(10_000)))
    started = time.monotonic()
    [report] = poll_feeds(store, limits=LIMITS)
    elapsed = time.monotonic() - started
    assert (report.status, report.added, report.deferred, report.failures) == ("polled", 50, 9_950, [])
    assert store.article_count() == 50
    assert elapsed < 30, f"a poll of 50 new entries took {elapsed:.1f} s"  # the target is 10 s on 2 idle cores
    site.feeds["/big.xml"] += b" "  # a new ETag: the feed is read again and the next 50 come in
    [second] = poll_feeds(store, limits=LIMITS)
    assert (second.added, second.deferred, store.article_count()) == (50, 9_900, 100)


def test_pages_that_time_out_are_reported_and_the_rest_still_goes_in(store, site):
    feed = rss(site.base, [8, 9]).replace(
        b"<item>", f"<item><title>Hang</title><link>{site.base}/hang/1</link><guid>h</guid></item><item>".encode(), 1
    )
    subscribe(store, site, "/rss.xml", feed)
    [report] = poll_feeds(store, limits=FeedLimits(timeout_s=0.5, allow_private=True, budget_s=30))
    assert report.added == 2
    [failure] = report.failures
    assert (failure.path, failure.reason) == (
        site.url("/hang/1"),
        f"{site.url('/hang/1')} did not answer within 0.5 s (QABOT_FETCH_TIMEOUT_S); try again later",
    )


def test_a_poll_stops_at_its_time_budget_and_leaves_the_rest_for_later(store, site):
    body = rss(site.base, []).replace(
        b"</channel>",
        b"".join(f"<item><link>{site.base}/hang/{n}</link><guid>h{n}</guid></item>".encode() for n in range(8))
        + b"</channel>",
    )
    subscribe(store, site, "/rss.xml", body)
    started = time.monotonic()
    [report] = poll_feeds(store, limits=FeedLimits(timeout_s=5, allow_private=True, budget_s=0.5))
    assert time.monotonic() - started < 3
    assert (report.added, report.out_of_time, report.deferred + len(report.failures)) == (0, True, 8)


def test_a_feed_that_is_html_fails_with_its_url_and_the_others_still_go_in(store, site):
    subscribe(store, site, "/page.html", page_html(1))
    subscribe(store, site, "/rss.xml", rss(site.base, [2]))
    bad, good = poll_feeds(store, limits=LIMITS)
    assert (bad.status, bad.error) == (
        "failed",
        f"{site.url('/page.html')} is not an RSS or Atom feed: it is text/html; subscribe to the feed's own address "
        "(often linked as RSS on the page)",
    )
    assert (good.status, good.added) == ("polled", 1)
    feed = FeedStore(store).get(site.url("/page.html"))
    assert (feed.failures, feed.last_error, feed.retry_at is not None) == (1, bad.error, True)


def test_backoff_doubles_with_each_failure_up_to_a_day():
    assert [backoff_s(n, interval_s=1800) for n in (1, 2, 3, 4, 20)] == [0.0, 1800.0, 5400.0, 12600.0, 86400.0]


def test_a_feed_backing_off_waits_unless_all_is_asked(store, site):
    subscribe(store, site, "/page.html", page_html(1))
    limits = FeedLimits(allow_private=True, interval_s=3600)
    poll_feeds(store, limits=limits)
    poll_feeds(store, limits=limits)  # second failure: the next try is an interval away
    assert [r.status for r in poll_feeds(store, limits=limits)] == ["waiting"]
    assert [r.status for r in poll_feeds(store, limits=limits, force=True)] == ["failed"]


def test_the_poller_thread_polls_at_once_and_reports_each_pass(new_store, site):
    subscribe(new_store(), site, "/rss.xml", rss(site.base, [1]), collection="legal")
    passes: list = []
    done = threading.Event()
    poller = FeedPoller(
        new_store,  # its own connection, as serve's poller has
        limits=FeedLimits(allow_private=True, interval_s=3600),
        on_pass=lambda reports: (passes.append(reports), done.set()),
    ).start()
    assert done.wait(20)
    poller.stop(timeout_s=5)
    assert [(r.url, r.added) for r in passes[0]] == [(site.url("/rss.xml"), 1)]
    assert rows(new_store(), "select title, collection from articles") == [{"title": "Story 1", "collection": "legal"}]


def test_serves_poller_polls_the_feeds_of_its_database_into_its_library(db, engine, store, site, caplog):
    from bot.settings import Settings
    from bot.slack.server import start_feed_poller

    subscribe(store, site, "/rss.xml", rss(site.base, [1, 2]), collection="legal")
    where = {"database_url": db} if engine == "postgres" else {"db_path": db}
    settings = Settings(_env_file=None, fetch_allow_private=True, **where)
    done = threading.Event()
    poller = start_feed_poller(settings, on_pass=lambda reports: done.set())
    assert done.wait(20)
    poller.stop(timeout_s=5)
    assert rows(store, "select title, collection from articles order by title") == [
        {"title": "Story 1", "collection": "legal"},
        {"title": "Story 2", "collection": "legal"},
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# The command line -----------------------------------------------------------------------------------------------


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env={"QABOT_FETCH_ALLOW_PRIVATE": "true", **(env or {})})


def test_cli_feeds_add_list_poll_remove_and_stats(db, site):
    site.feeds["/rss.xml"] = rss(site.base, [1, 2])
    url = site.url("/rss.xml")
    added = invoke("feeds", "add", url, "--db", db)
    assert (added.exit_code, added.stdout) == (
        0,
        f"Subscribed to {url} (Town News); its entries go into collection general. Poll it now with: qa-bot feeds "
        "poll\n",
    )
    assert invoke("feeds", "add", url, "--db", db).stdout == (
        f"{url} is already subscribed, into collection general; nothing changed.\n"
    )
    polled = invoke("feeds", "poll", "--db", db)
    assert (polled.exit_code, polled.stdout) == (
        0,
        f"feed {url}: 2 added, 0 updated, 0 unchanged, 0 already stored, 0 left for the next poll, 0 failed.\n",
    )
    assert invoke("feeds", "poll", "--db", db).stdout == f"feed {url}: not modified since the last poll.\n"
    [row] = json.loads(invoke("feeds", "list", "--json", "--db", db).stdout)
    assert (row["url"], row["title"], row["collection"], row["entries"], row["failures"]) == (
        url,
        "Town News",
        "general",
        2,
        0,
    )
    assert json.loads(invoke("articles", "stats", "--json", "--db", db).stdout)["feeds"] == 1
    removed = invoke("feeds", "remove", url, "--db", db)
    assert (removed.exit_code, removed.stdout) == (
        0,
        f"Unsubscribed from {url}; the articles it brought stay (qa-bot articles delete removes them).\n",
    )
    assert invoke("feeds", "remove", url, "--db", db).exit_code == 1
    assert json.loads(invoke("articles", "stats", "--json", "--db", db).stdout)["articles"] == 2


def test_cli_feeds_add_of_an_html_page_is_refused_with_the_reason(tmp_path, site):
    site.feeds["/page.html"] = page_html(1)
    result = invoke("feeds", "add", site.url("/page.html"), "--db", str(tmp_path / "qa.db"))
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {site.url('/page.html')} is not an RSS or Atom feed: it is text/html; subscribe to the feed's own "
        "address (often linked as RSS on the page)\n",
    )


def test_cli_feeds_poll_exits_1_when_a_feed_failed_and_still_polls_the_others(db, store, site):
    subscribe(store, site, "/page.html", page_html(1))
    subscribe(store, site, "/rss.xml", rss(site.base, [3]))
    result = invoke("feeds", "poll", "--db", db)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"failed feed {site.url('/page.html')}: {site.url('/page.html')} is not an RSS")
    assert "1 added" in result.stdout


def test_feeds_are_refused_from_private_addresses_by_default(tmp_path, site):
    site.feeds["/rss.xml"] = rss(site.base, [1])
    result = CliRunner().invoke(cli, ["feeds", "add", site.url("/rss.xml"), "--db", str(tmp_path / "qa.db")])
    assert result.exit_code == 1
    assert "is a private or local address (127.0.0.1)" in result.stderr
    assert site.hits == Counter()


# Collections ----------------------------------------------------------------------------------------------------

ACCESS_YAML = """\
collections:
  general: {channels: "*", dms: true}
  legal:   {channels: [C0LEGAL1], dms: [U0ALICE]}
"""


def titles(result) -> list[str]:
    """The titles an `articles list --json` printed, sorted (a poll stores entries in the order their pages came)."""
    assert result.exit_code == 0, result.output
    return sorted(row["title"] for row in json.loads(result.stdout))


def test_a_feed_added_with_a_collection_stores_its_entries_there_out_of_reach_of_general(
    db, tmp_path, site, monkeypatch, tiny_reader_dir
):
    import bot.core.service
    from tests.fakes.reader import FakeReader

    site.feeds["/rss.xml"] = rss(site.base, [1, 2], title="Counsel Notes")
    url = site.url("/rss.xml")
    added = invoke("feeds", "add", "--collection", "legal", url, "--db", db)
    assert (added.exit_code, added.stdout) == (
        0,
        f"Subscribed to {url} (Counsel Notes); its entries go into collection legal. Poll it now with: qa-bot feeds "
        "poll\n",
    )
    listed = invoke("feeds", "list", "--db", db).stdout.splitlines()
    assert listed[0] == "id\turl\ttitle\tcollection\tentries\tlast_polled_at\tfailures\tlast_error"
    assert listed[1].split("\t")[:5] == ["1", url, "Counsel Notes", "legal", "0"]
    assert invoke("feeds", "poll", "--db", db).exit_code == 0
    assert titles(invoke("articles", "list", "--collection", "legal", "--json", "--db", db)) == ["Story 1", "Story 2"]
    assert titles(invoke("articles", "list", "--collection", "general", "--json", "--db", db)) == []

    # asked where only general may be read, the stories are not even searched; in #legal they are
    (tmp_path / "access.yaml").write_text(ACCESS_YAML, encoding="utf-8")
    monkeypatch.setattr(
        bot.core.service, "build_reader", lambda settings: FakeReader(settings.reader_config(), point_at="the")
    )
    env = {"QABOT_ACCESS_FILE": str(tmp_path / "access.yaml"), "QABOT_READER_MODEL": str(tiny_reader_dir)}
    question = "What report was read aloud in the hall on day 3?"
    in_general = invoke("ask", "--json", "--db", db, "--channel", "C0001", question, env=env)
    assert in_general.exit_code == 0, in_general.output
    assert {key: json.loads(in_general.stdout)[key] for key in ("answer", "searched", "tentative")} == {
        "answer": None,
        "searched": [],
        "tentative": None,
    }
    assert "Story" not in in_general.stdout
    in_legal = invoke("ask", "--json", "--db", db, "--channel", "C0LEGAL1", question, env=env)
    assert in_legal.exit_code == 0, in_legal.output
    assert sorted(json.loads(in_legal.stdout)["searched"]) == ["Story 1", "Story 2"]


def test_adding_a_feed_again_with_another_collection_moves_it_with_its_articles(db, store, site):
    store.add_article(  # story 5 came from a file into `board` first: the feed only records it
        Article(
            title="Story 5",
            body="A saved copy of story five.",
            source="5.html",
            url=site.url("/p/5"),
            collection="board",
        )
    )
    site.feeds["/rss.xml"] = rss(site.base, [4, 5])
    url = site.url("/rss.xml")
    assert invoke("feeds", "add", url, "--db", db).exit_code == 0
    assert invoke("feeds", "poll", "--db", db).exit_code == 0
    moved = invoke("feeds", "add", url, "--collection", "legal", "--db", db)
    assert (moved.exit_code, moved.stdout) == (
        0,
        f"Moved the feed {url} from collection general to legal; its new entries go into legal, and its stored "
        "articles still in general moved with it: 1.\n",
    )
    assert json.loads(invoke("feeds", "list", "--json", "--db", db).stdout)[0]["collection"] == "legal"
    assert titles(invoke("articles", "list", "--collection", "legal", "--json", "--db", db)) == ["Story 4"]
    assert titles(invoke("articles", "list", "--collection", "board", "--json", "--db", db)) == ["Story 5"]
    site.feeds["/rss.xml"] = rss(site.base, [4, 5, 6])
    assert invoke("feeds", "poll", "--db", db).exit_code == 0
    assert titles(invoke("articles", "list", "--collection", "legal", "--json", "--db", db)) == ["Story 4", "Story 6"]
    assert invoke("feeds", "add", url, "--collection", "legal", "--db", db).stdout == (
        f"{url} is already subscribed, into collection legal; nothing changed.\n"
    )


def test_a_bad_collection_name_is_refused_as_ingest_refuses_it_before_any_fetch(tmp_path, site):
    site.feeds["/rss.xml"] = rss(site.base, [1])
    db = str(tmp_path / "qa.db")
    feed = invoke("feeds", "add", "--collection", "Legal!", site.url("/rss.xml"), "--db", db)
    ingest = invoke("ingest", "--collection", "Legal!", str(tmp_path), "--db", db)
    rule = (
        "Error: Invalid value for '--collection': 'Legal!' is not a collection name: use lower-case letters, digits, "
        "'-' and '_' (e.g. legal, board-2024)"
    )
    assert (feed.exit_code, feed.stderr.splitlines()[-1]) == (2, rule)
    assert (ingest.exit_code, ingest.stderr.splitlines()[-1]) == (2, rule)
    assert site.hits == Counter()
