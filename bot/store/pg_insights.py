"""The admins' report (`qa-bot report`, `/qa-report`) read from PostgreSQL: the queries of
`bot.core.insights.build_report` in PostgreSQL's dialect, assembled into the same `Report`.

`build_report` speaks SQLite (`date(x, 'unixepoch')`, `json_each`, `sum(bool)`); this module asks the same
questions of the `slack_` tables of `bot.store.pg_state` and hands the rows to the same `assemble_report`, so both
engines give one report for the same questions (`tests/test_state.py` compares them whole). A change to the
report's queries belongs in both places.

    report = build_pg_report(conn, days=7, collections=None)
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from bot.core.insights import TOP_ARTICLES, TOP_GAPS, Report, assemble_report, report_window, searched_within

__all__ = ["build_pg_report"]

_WINDOW = "a.asked_at >= %(since)s and a.asked_at < %(now)s"


def build_pg_report(
    conn: psycopg.Connection[Any],
    *,
    days: int = 7,
    collections: frozenset[str] | None = None,
    now: float | None = None,
    top_gaps: int | None = None,
) -> Report:
    """The insights for the `days` before `now`, over the questions whose searched collections all lie in
    `collections` (None: every question), as `bot.core.insights.build_report` computes them.

    :raises psycopg.Error: when the tables cannot be read (`PostgresSlackState.report` says so in one line, after
        one more try on a new connection when the server dropped the last).
    """
    now, since, since_iso = report_window(days, now)
    scope = _scope(conn, collections)
    params: dict[str, object] = {
        "since": since,
        "now": now,
        "since_iso": since_iso,
        "top": TOP_ARTICLES,
        "scope": scope,
    }
    where_scope = "true" if scope is None else "a.searched = any(%(scope)s)"
    outcome_rows = _rows(
        conn,
        "select to_char(to_timestamp(a.asked_at) at time zone 'UTC', 'YYYY-MM-DD'), a.outcome, count(*) "
        f"from slack_answers a where {_WINDOW} and {where_scope} group by 1, 2",
        params,
    )
    cited = _rows(
        conn,
        "select c.id, count(*) from slack_answers a, unnest(a.cited) as c(id) "
        f"where {_WINDOW} and {where_scope} group by 1 order by 2 desc, 1 limit %(top)s",
        params,
    )
    votes = _rows(
        conn,
        "select f.article_id, count(*) filter (where f.vote = 'up'), count(*) filter (where f.vote = 'down') "
        "from slack_feedback f join slack_answers a on a.id = f.answer_id "
        f"where f.clicked_at >= %(since_iso)s and f.article_id is not null and {where_scope} "
        "group by 1 order by 3 desc, 2 desc, 1 limit %(top)s",
        params,
    )
    disliked = "select answer_id from slack_feedback where vote = 'down' and clicked_at >= %(since_iso)s"
    gap_rows = _rows(
        conn,
        f"select a.question, a.terms, a.outcome = 'none', a.id in ({disliked}), a.asked_at "
        f"from slack_answers a where {where_scope} and (({_WINDOW} and a.outcome = 'none') or a.id in ({disliked}))"
        " order by a.asked_at, a.id",
        params,
    )
    ids = sorted({row[0] for row in cited} | {row[0] for row in votes})
    titles = dict(_rows(conn, "select id, title from articles where id = any(%(ids)s)", {"ids": ids}))
    return assemble_report(
        days=days,
        since_iso=since_iso,
        now=now,
        outcome_rows=outcome_rows,
        cited=cited,
        votes=votes,
        gap_rows=gap_rows,
        titles=titles,
        top_gaps=TOP_GAPS if top_gaps is None else top_gaps,
    )


def _rows(conn: psycopg.Connection[Any], sql: str, params: dict[str, object]) -> list[tuple]:
    """Rows as plain tuples, whatever row factory the connection has."""
    with conn.cursor(row_factory=tuple_row) as cursor:
        return cursor.execute(sql, params).fetchall()


def _scope(conn: psycopg.Connection[Any], collections: frozenset[str] | None) -> list[str] | None:
    """The `searched` values whose collections all lie in `collections`; None for no scoping (every question)."""
    if collections is None:
        return None
    # only a handful of distinct `searched` values exist; deciding them here keeps the SQL a plain `= any`
    return [
        key
        for (key,) in _rows(conn, "select distinct searched from slack_answers where searched is not null", {})
        if searched_within(key, collections)
    ]
