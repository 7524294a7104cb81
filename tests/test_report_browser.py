"""`qa-bot report --html FILE` as an admin sees it: the page the real command writes, loaded in headless Chromium
(Debian's `chromium`, installed by .ci/run). It must render without errors, show the headline counts, draw one bar
per day and outcome at the right height, and show question text as text, never as markup.

Skipped, with the reason, where no Chromium is installed; in CI (CI set) a missing Chromium fails instead.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from bot.core.insights import question_terms
from bot.core.records import Article
from bot.store.sqlite import SQLiteStore
from bot.store.state import AskedQuestion, SlackState, StoredAnswer
from tests.headless import Chromium, find_chromium

DAY = 86400.0
INJECTED = 'Is <script>console.error("injected")</script> & <b>Initech</b> safe?'
# (days ago, question, outcome): 8 questions over three days, 4 answered, 2 hedged, 2 not answered
QUESTIONS = [
    (3, "Who founded Acme?", "confident"),
    (3, "When was Acme founded?", "confident"),
    (3, "Who runs Globex?", "none"),
    (2, "Where is Acme based?", "confident"),
    (2, "How big is Acme?", "unsure"),
    (1, "Who owns Acme?", "confident"),
    (1, "When did Acme start?", "unsure"),
    (1, INJECTED, "none"),
]
COLOURS = {"confident": (0x2E, 0x7D, 0x32), "unsure": (0xF9, 0xA8, 0x25), "none": (0xC6, 0x28, 0x28)}
LABELS = {"confident": "answered", "unsure": "hedged", "none": "not answered"}


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("No chromium on PATH in CI: .ci/run installs Debian's chromium before the tests.")
        pytest.skip("No chromium on PATH, so the HTML report is not loaded in a browser (apt-get install chromium).")
    with Chromium.launch(binary) as running:
        yield running


def _day(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d")


@pytest.fixture
def report_page(tmp_path):
    """The page `qa-bot report --html` writes for QUESTIONS, asked 1 to 3 days ago, with one 👍 and one 👎."""
    db = tmp_path / "qa.db"
    store = SQLiteStore(db)
    acme = store.add_article(Article(title="Acme history", body="Acme was founded in 1901.", source="acme.txt"))
    store.close()
    now = time.time()
    state = SlackState(db)
    for index, (days_ago, question, outcome) in enumerate(QUESTIONS):
        cited = (acme.article_id,) if outcome != "none" else ()
        state.save_answer(
            StoredAnswer(
                id=f"a{index}",
                question=question,
                answer="1901" if outcome == "confident" else None,
                article_id=cited[0] if cited else None,
                score=0.5,
                text="",
                blocks=[],
                asked=AskedQuestion(
                    outcome=outcome,
                    cited=cited,
                    searched=frozenset({"general"}),
                    channel="C0001",
                    team="T0001",
                    user="U0001",
                    terms=question_terms(question),
                    asked_at=now - days_ago * DAY,
                ),
            )
        )
    for answer_id, vote in (("a0", "up"), ("a1", "down")):
        state.record_feedback(answer_id=answer_id, user="U0002", vote=vote, channel="C0001", message_ts="1.2")
    state.close()
    page = tmp_path / "report.html"
    command = [sys.executable, "-m", "bot", "report", "--db", str(db), "--html", str(page)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    days = {days_ago: _day(now - days_ago * DAY) for days_ago in (1, 2, 3)}
    return page, _day(now - 7 * DAY), _day(now), days


def test_the_html_report_renders_without_errors_with_its_counts_chart_and_tables(browser, report_page):
    path, since, until, days = report_page
    page = browser.open(path.as_uri())
    seen = page.evaluate(
        """(() => {
        const text = (el) => el.textContent.replace(/\\s+/g, " ").trim();
        const svg = document.querySelector("svg");
        const box = svg.getBoundingClientRect();
        return {
            title: document.title,
            headline: text(document.querySelector("h1")),
            summary: text(document.querySelector("p")),
            headings: [...document.querySelectorAll("h2")].map(text),
            scripts: document.scripts.length,
            chart: {width: box.width, height: box.height, top: box.top},
            bars: [...svg.querySelectorAll("rect")].filter((r) => r.querySelector("title")).map((r) => {
                const b = r.getBoundingClientRect();
                return {title: text(r.querySelector("title")), width: b.width, height: Math.round(b.height)};
            }),
            labels: [...svg.querySelectorAll("text")].map(text),
            tables: [...document.querySelectorAll("table")].map((t) =>
                [...t.querySelectorAll("tr")].map((tr) => [...tr.cells].map(text))),
        };
    })()"""
    )
    assert page.problems == []
    assert seen["title"] == f"qa-bot report, {since} to {until}"
    assert seen["headline"] == f"Questions and knowledge gaps, {since} to {until} (7 days)"
    assert seen["summary"] == "8 questions asked: 4 answered (50%), 2 hedged (25%), 2 not answered (25%)."
    assert seen["headings"] == [
        "Daily questions by outcome",
        "Knowledge gaps: what to ingest next",
        "Most-cited articles",
        "👍 / 👎 by article",
    ]
    assert seen["scripts"] == 0  # the question's <script> is shown as text, never run
    assert (seen["chart"]["width"], seen["chart"]["height"]) == (720, 240)

    # one bar segment per day and outcome, stacked, 64 px a question (the peak day, 3 questions, fills 192 px)
    expected = [
        (days[3], "confident", 2),
        (days[3], "none", 1),
        (days[2], "confident", 1),
        (days[2], "unsure", 1),
        (days[1], "confident", 1),
        (days[1], "unsure", 1),
        (days[1], "none", 1),
    ]
    assert [(bar["title"], bar["height"]) for bar in seen["bars"]] == [
        (f"{day} {LABELS[outcome]}: {n}", 64 * n) for day, outcome, n in expected
    ]
    assert all(bar["width"] > 100 for bar in seen["bars"])
    assert seen["labels"] == ["3", *(day[5:] for day in (days[3], days[2], days[1])), *LABELS.values()]

    gaps, cited, votes = seen["tables"]
    assert gaps == [
        ["Questions", "Not answered", "👎", "Content words", "Latest question"],
        ["1", "0", "1", "acme found", "When was Acme founded?"],
        ["1", "1", "0", "b console error initech inject safe script", INJECTED],
        ["1", "1", "0", "globex run", "Who runs Globex?"],
    ]
    assert cited[1:] == [["6", "1", "Acme history"]]
    assert votes[1:] == [["1", "1", "1", "Acme history"]]


def test_the_html_report_screenshot_shows_the_chart_in_its_three_colours(browser, report_page):
    from PIL import Image

    path, *_ = report_page
    page = browser.open(path.as_uri())
    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    assert image.size == (1024, page.evaluate("document.documentElement.scrollHeight"))
    counts = {colour: n for n, colour in image.getcolors(maxcolors=1 << 20)}
    bar_px = {outcome: counts.get(colour, 0) for outcome, colour in COLOURS.items()}
    # the bars are about 183 px wide and 64 px a question (4, 2 and 2 questions), the legend's squares 10 x 10
    assert bar_px["confident"] > 3 * 183 * 64 and bar_px["unsure"] > 183 * 64 and bar_px["none"] > 183 * 64, bar_px
    assert page.problems == []


def test_the_browser_check_catches_a_page_that_does_not_render_cleanly(browser, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body><h1>x</h1>'
        '<img src="missing.png"><script>console.error("bad data"); drawChart();</script></body></html>',
        encoding="utf-8",
    )
    page = browser.open(broken.as_uri())
    # the failed image load and the script race: chromium reports them in either order
    assert sorted(page.problems) == sorted(
        [
            "console.error: bad data",
            "uncaught: ReferenceError: drawChart is not defined",
            f"error (network): Failed to load resource: net::ERR_FILE_NOT_FOUND {(tmp_path / 'missing.png').as_uri()}",
        ]
    )
