"""Insights for admins: what people asked in a period, how the bot answered, which articles it cited and which
got 👍/👎, and the knowledge gaps (unanswered and 👎 questions grouped by their stemmed content words).

    report = build_report(state.db, days=7, collections=None)       # None: every question
    click.echo(render_markdown(report))                             # or json.dumps(report.to_dict())

Reads the `slack_answers` and `slack_feedback` tables (`bot.store.state`). A report scoped to `collections` (what a
channel may read) counts only questions whose searched collections all lie inside them, so nothing asked where
another collection could be read ever shows up in it.
"""

from __future__ import annotations

import html
import re
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import sqlite_utils

from bot.core import messages
from bot.core.confidence import content_words
from bot.errors import StoreError

__all__ = ["Gap", "Report", "build_report", "question_terms", "render_html", "render_markdown", "stem"]

OUTCOMES = ("confident", "unsure", "none")
TOP_ARTICLES = 10
TOP_GAPS = 20
NEAR_DUPLICATE = 2 / 3  # a term set inside another and this alike (Jaccard) is the same gap: one word more or less
_DAY_S = 86400.0


def stem(word: str) -> str:
    """A light English suffix stripper, enough to group "ships"/"ship" and "founded"/"founding"/"found".

    >>> [stem(w) for w in ("ships", "companies", "founded", "running", "class", "ceo's", "news")]
    ['ship', 'company', 'found', 'run', 'class', 'ceo', 'news']
    """
    word = word.lower().removesuffix("'s")
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("ing", "ed"):
        root = word[: -len(suffix)]
        if word.endswith(suffix) and len(root) >= 3 and re.search("[aeiouy]", root):
            word = root
            if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # running -> run
            return word
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "ws")):
        return word[:-1]
    return word


def question_terms(question: str) -> tuple[str, ...]:
    """The stemmed content words of a question, sorted: questions with the same terms are the same gap.

    >>> question_terms("Who founded the companies?"), question_terms("Which company was founded by whom?")
    (('company', 'found'), ('company', 'found'))
    """
    return tuple(sorted({stem(word) for word in content_words(question)}))


@dataclass(frozen=True)
class ArticleRow:
    """One article in the report's tables: how often it was cited, or its 👍/👎 in the period."""

    article_id: int
    title: str
    cited: int = 0
    up: int = 0
    down: int = 0


@dataclass(frozen=True)
class Gap:
    """Questions the bot could not answer, or whose answer got 👎, that share (nearly) the same content words."""

    terms: tuple[str, ...]
    questions: int
    unanswered: int
    disliked: int
    example: str  # the most recent of them


@dataclass(frozen=True)
class Report:
    """What `qa-bot report` and `/qa-report` show for the `days` before `until`."""

    days: int
    since: str
    until: str
    questions: int
    outcomes: dict[str, int]
    cited: list[ArticleRow] = field(default_factory=list)
    votes: list[ArticleRow] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    daily: list[dict] = field(default_factory=list)  # {"day": "2026-11-30", "confident": 3, "unsure": 1, "none": 0}

    def share(self, outcome: str) -> float:
        """The fraction of the period's questions with `outcome` (0 when nobody asked)."""
        return self.outcomes.get(outcome, 0) / self.questions if self.questions else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        for gap in data["gaps"]:
            gap["terms"] = list(gap["terms"])
        data["shares"] = {outcome: round(self.share(outcome), 4) for outcome in OUTCOMES}
        return data


def build_report(
    db: sqlite_utils.Database,
    *,
    days: int = 7,
    collections: frozenset[str] | None = None,
    now: float | None = None,
    top_gaps: int = TOP_GAPS,
) -> Report:
    """The insights for the `days` before `now`, over the questions whose searched collections all lie in
    `collections` (None: every question).

    :raises StoreError: when the tables cannot be read.
    """
    now, since, since_iso = report_window(days, now)
    try:
        scope_sql, scope_args = _scope(db, since=since, collections=collections)
        outcome_rows = db.execute(
            "select date(a.asked_at, 'unixepoch'), a.outcome, count(*) from slack_answers a "
            f"where a.asked_at >= ? and a.asked_at < ? and {scope_sql} group by 1, 2",
            [since, now, *scope_args],
        ).fetchall()
        cited = db.execute(
            "select cast(j.value as integer), count(*) from slack_answers a, json_each(a.cited) j "
            f"where a.asked_at >= ? and a.asked_at < ? and {scope_sql} group by 1 order by 2 desc, 1 limit ?",
            [since, now, *scope_args, TOP_ARTICLES],
        ).fetchall()
        votes = db.execute(
            "select f.article_id, sum(f.vote = 'up'), sum(f.vote = 'down') from slack_feedback f "
            "join slack_answers a on a.id = f.answer_id "
            f"where f.clicked_at >= ? and f.article_id is not null and {scope_sql} "
            "group by 1 order by 3 desc, 2 desc, 1 limit ?",
            [since_iso, *scope_args, TOP_ARTICLES],
        ).fetchall()
        gap_rows = db.execute(
            "select a.question, a.terms, a.outcome = 'none', a.id in (select answer_id from slack_feedback "
            "where vote = 'down' and clicked_at >= ?), a.asked_at from slack_answers a "
            f"where {scope_sql} and ((a.asked_at >= ? and a.asked_at < ? and a.outcome = 'none') or a.id in "
            "(select answer_id from slack_feedback where vote = 'down' and clicked_at >= ?))",
            [since_iso, *scope_args, since, now, since_iso],
        ).fetchall()
        titles = _titles(db, {row[0] for row in cited} | {row[0] for row in votes})
    except sqlite3.Error as exc:
        raise StoreError(f"Could not read the questions for the report: {exc}") from exc
    return assemble_report(
        days=days,
        since_iso=since_iso,
        now=now,
        outcome_rows=outcome_rows,
        cited=cited,
        votes=votes,
        gap_rows=gap_rows,
        titles=titles,
        top_gaps=top_gaps,
    )


def report_window(days: int, now: float | None) -> tuple[float, float, str]:
    """`now` (default: the clock), the start of the `days` before it, and that start as ISO text.

    :raises ValueError: when `days` is not positive.
    """
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    now = time.time() if now is None else now
    since = now - days * _DAY_S
    return now, since, _iso(since)


def searched_within(searched: str, collections: frozenset[str]) -> bool:
    """Whether a question's `searched` value (its collections joined by commas, "*" for all) lies in `collections`."""
    return searched != "*" and set(filter(None, searched.split(","))) <= collections


def assemble_report(
    *,
    days: int,
    since_iso: str,
    now: float,
    outcome_rows: Iterable[Sequence],
    cited: Iterable[Sequence],
    votes: Iterable[Sequence],
    gap_rows: Iterable[Sequence],
    titles: dict[int, str],
    top_gaps: int,
) -> Report:
    """The report from the rows both engines' queries return: (day, outcome, count); (article id, citations);
    (article id, up, down); the gap questions as `group_gaps` takes them; article titles by id."""
    outcomes: Counter[str] = Counter()
    daily: dict[str, Counter[str]] = defaultdict(Counter)
    for day, outcome, n in outcome_rows:
        outcomes[outcome or "unknown"] += n
        daily[day][outcome or "unknown"] += n
    return Report(
        days=days,
        since=since_iso,
        until=_iso(now),
        questions=sum(outcomes.values()),
        outcomes={outcome: outcomes.get(outcome, 0) for outcome in OUTCOMES},
        cited=[ArticleRow(article_id, titles.get(article_id, ""), cited=n) for article_id, n in cited],
        votes=[ArticleRow(article_id, titles.get(article_id, ""), up=up, down=down) for article_id, up, down in votes],
        gaps=group_gaps(gap_rows)[:top_gaps],
        daily=[{"day": day, **{o: daily[day].get(o, 0) for o in OUTCOMES}} for day in sorted(daily)],
    )


def group_gaps(rows: Iterable[Sequence]) -> list[Gap]:
    """(question, terms, unanswered, disliked, asked_at) rows as gaps, most frequent first: the same stemmed
    content words are one gap, and a term set within another and at least `NEAR_DUPLICATE` alike (Jaccard: one
    word more or less, for two words or more) merges into the more frequent."""
    groups: dict[tuple[str, ...], list] = {}
    for question, terms, unanswered, disliked, asked_at in rows:
        key = tuple(terms.split()) if terms else question_terms(question or "")
        group = groups.setdefault(key, [0, 0, 0, "", -1.0])
        group[0] += 1
        group[1] += int(bool(unanswered))
        group[2] += int(bool(disliked))
        if (asked_at or 0) > group[4]:
            group[3], group[4] = question or "", asked_at or 0
    # most asked first; of equally asked, the fewest words (the most general wording) names the merged gap
    ordered = sorted(groups.items(), key=lambda item: (-item[1][0], len(item[0]), item[0]))
    clusters: list[list] = []  # [terms, counts..., example, asked_at]
    by_term: dict[str, list[int]] = defaultdict(list)
    for key, group in ordered:
        terms = set(key)
        best, best_score = None, NEAR_DUPLICATE
        for index in {i for term in key for i in by_term[term]}:
            other = set(clusters[index][0])
            if not (terms <= other or other <= terms):
                continue  # another subject in the same wording ("Who founded Acme?" / "Who founded Globex?")
            score = len(terms & other) / len(terms | other)
            if score >= best_score and (best is None or score > best_score or index < best):
                best, best_score = index, score
        if best is None:
            by_term_index = len(clusters)
            clusters.append([key, *group])
            for term in key:
                by_term[term].append(by_term_index)
            continue
        cluster = clusters[best]
        for i in (1, 2, 3):
            cluster[i] += group[i - 1]
        if group[4] > cluster[5]:
            cluster[4], cluster[5] = group[3], group[4]
    gaps = [Gap(tuple(c[0]), questions=c[1], unanswered=c[2], disliked=c[3], example=c[4]) for c in clusters]
    return sorted(gaps, key=lambda gap: (-gap.questions, gap.terms))


def render_markdown(report: Report, *, scope: str | None = None) -> str:
    """The report as Markdown: a summary line and tables of gaps, cited articles and 👍/👎 (prompts/report*.md).

    :param scope: where the report was asked for, when it covers only what that place may read.
    """
    none = messages.render("report_empty_table")
    gaps = (
        "\n".join(
            [messages.render("report_gaps_header")]
            + [
                f"| {gap.questions} | {gap.unanswered} | {gap.disliked} | {' '.join(gap.terms) or '-'} | "
                f"{_cell(gap.example)} |"
                for gap in report.gaps
            ]
        )
        if report.gaps
        else none
    )
    cited = (
        "\n".join(
            [messages.render("report_cited_header")]
            + [f"| {row.cited} | {row.article_id} | {_cell(row.title)} |" for row in report.cited]
        )
        if report.cited
        else none
    )
    votes = (
        "\n".join(
            [messages.render("report_votes_header")]
            + [f"| {row.up} | {row.down} | {row.article_id} | {_cell(row.title)} |" for row in report.votes]
        )
        if report.votes
        else none
    )
    return messages.render(
        "report",
        since=report.since[:10],
        until=report.until[:10],
        days=report.days,
        scope=messages.render("report_scope", scope=scope) if scope else "",
        questions=report.questions,
        confident=report.outcomes["confident"],
        unsure=report.outcomes["unsure"],
        none=report.outcomes["none"],
        confident_share=messages.percent(report.share("confident")),
        unsure_share=messages.percent(report.share("unsure")),
        none_share=messages.percent(report.share("none")),
        gaps=gaps,
        cited=cited,
        votes=votes,
    ).strip()


def _scope(db: sqlite_utils.Database, *, since: float, collections: frozenset[str] | None) -> tuple[str, list]:
    """A `where` clause keeping the questions whose searched collections all lie in `collections`."""
    if collections is None:
        return "1", []
    # only a handful of distinct `searched` values exist; deciding them here keeps the SQL a plain `in`
    keys = [
        key
        for (key,) in db.execute("select distinct searched from slack_answers where searched is not null")
        if searched_within(key, collections)
    ]
    if not keys:
        return "0", []
    return f"a.searched in ({', '.join('?' for _ in keys)})", keys


def _titles(db: sqlite_utils.Database, ids: set[int]) -> dict[int, str]:
    if not ids or "articles" not in db.table_names():
        return {}
    marks = ", ".join("?" for _ in ids)
    return {row[0]: row[1] for row in db.execute(f"select id, title from articles where id in ({marks})", list(ids))}


def _cell(text: str, limit: int = 80) -> str:
    """Text fit for one Markdown table cell: one line, pipes escaped, at most `limit` characters."""
    text = " ".join((text or "").split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


_PAGE_STYLE = """\
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin-bottom: 1rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }"""
_COLOURS = {"confident": "#2e7d32", "unsure": "#f9a825", "none": "#c62828"}


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page: the summary, a stacked bar chart of daily questions by outcome
    (inline SVG, no scripts) and the three tables (prompts/report_page.md)."""
    labels = dict(zip(OUTCOMES, messages.render("report_outcomes").split("|"), strict=True))
    empty = f"<p>{html.escape(messages.render('report_empty_table').strip('_'))}</p>"

    def table(header: str, rows: list[list[object]]) -> str:
        if not rows:
            return empty
        names = [cell.strip() for cell in messages.render(header).splitlines()[0].strip("|").split("|")]
        head = "".join(f"<th>{html.escape(name)}</th>" for name in names)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    return messages.render(
        "report_page",
        style=_PAGE_STYLE,
        since=report.since[:10],
        until=report.until[:10],
        days=report.days,
        questions=report.questions,
        confident=report.outcomes["confident"],
        unsure=report.outcomes["unsure"],
        none=report.outcomes["none"],
        confident_share=messages.percent(report.share("confident")),
        unsure_share=messages.percent(report.share("unsure")),
        none_share=messages.percent(report.share("none")),
        chart=daily_chart_svg(report.daily, labels=labels),
        gaps=table(
            "report_gaps_header",
            [[g.questions, g.unanswered, g.disliked, " ".join(g.terms), g.example] for g in report.gaps],
        ),
        cited=table("report_cited_header", [[r.cited, r.article_id, r.title] for r in report.cited]),
        votes=table("report_votes_header", [[r.up, r.down, r.article_id, r.title] for r in report.votes]),
    )


def daily_chart_svg(daily: list[dict], *, labels: dict[str, str], width: int = 720, height: int = 240) -> str:
    """Stacked bars of questions per day by outcome, as inline SVG with a legend.

    >>> daily_chart_svg([], labels={}).startswith("<svg")
    True
    """
    top, bottom, left = 24, 24, 32
    plot_h = height - top - bottom
    peak = max((sum(day[o] for o in OUTCOMES) for day in daily), default=0) or 1
    step = (width - left) / max(len(daily), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}">',
        f'<text x="0" y="{top + 4}" font-size="11">{peak}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" stroke="#999"/>',
    ]
    for index, day in enumerate(daily):
        x, y = left + index * step, float(height - bottom)
        for outcome in OUTCOMES:
            bar_h = day[outcome] / peak * plot_h
            if bar_h:
                y -= bar_h
                parts.append(
                    f'<rect x="{x + step * 0.1:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{bar_h:.1f}" '
                    f'fill="{_COLOURS[outcome]}"><title>{html.escape(day["day"])} '
                    f"{html.escape(labels.get(outcome, outcome))}: {day[outcome]}</title></rect>"
                )
        if len(daily) <= 14 or index % max(len(daily) // 7, 1) == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{height - 8}" font-size="10" text-anchor="middle">'
                f"{html.escape(day['day'][5:])}</text>"
            )
    for index, outcome in enumerate(OUTCOMES):
        x = left + index * 130
        parts.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{_COLOURS[outcome]}"/>')
        parts.append(f'<text x="{x + 14}" y="13" font-size="11">{html.escape(labels.get(outcome, outcome))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
