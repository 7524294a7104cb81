"""Time `qa-bot report` over a generated table of stored questions (issue 13's target: 100k in under 2 s).

    python scripts/report_timing.py --questions 100000

Fills a fresh SQLite file in a temporary folder with articles, questions (a third of them unanswered, spread over
the last 90 days, in three collections) and feedback, then times `build_report` for the last 7 and 90 days.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core.insights import build_report, question_terms  # noqa: E402
from bot.store.state import SlackState  # noqa: E402

SUBJECTS = [
    f"{a} {b}"
    for a in ("acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne")
    for b in ("bank", "shipping", "mining", "railways", "airlines", "pharma")
]
TEMPLATES = [
    "Who is the CEO of {s}?",
    "When was {s} founded?",
    "How many employees does {s} have?",
    "Where is the headquarters of {s}?",
    "What did {s} report in its annual results?",
    "Who founded {s}?",
]


def fill(state: SlackState, *, questions: int, seed: int = 13) -> None:
    rng = random.Random(seed)
    now = time.time()
    db = state.db
    with db.conn:
        db.conn.executemany(
            "insert into articles (id, key, title, body, source, content_hash, collection) values (?, ?, ?, '', 's', "
            "?, ?)",
            [(i, f"k{i}", f"Article {i}", f"h{i}", ("general", "legal", "board")[i % 3]) for i in range(1, 501)],
        )
        rows, votes = [], []
        for n in range(questions):
            question = rng.choice(TEMPLATES).format(s=rng.choice(SUBJECTS))
            outcome = rng.choices(("confident", "unsure", "none"), weights=(5, 2, 3))[0]
            cited = [] if outcome == "none" else rng.sample(range(1, 501), rng.randint(1, 3))
            searched = rng.choice(("general", "general,legal", "board,general"))
            asked_at = now - rng.random() * 90 * 86400
            answer_id = f"q{n:07d}"
            rows.append(
                (
                    answer_id,
                    question,
                    json.dumps(cited),
                    cited[0] if cited else None,
                    outcome,
                    searched,
                    "C0001",
                    "T0001",
                    f"U{n % 500:04d}",
                    asked_at,
                    " ".join(question_terms(question)),
                )
            )
            if cited and rng.random() < 0.1:
                clicked = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(asked_at + 60))
                votes.append((answer_id, "U0001", rng.choice(("up", "down")), question, cited[0], clicked))
        db.conn.executemany(
            "insert into slack_answers (id, question, cited, article_id, outcome, searched, channel, team, user, "
            "asked_at, terms, score, text, blocks, created_at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', '[]', '')",
            rows,
        )
        db.conn.executemany(
            "insert into slack_feedback (answer_id, user, vote, question, article_id, clicked_at) "
            "values (?, ?, ?, ?, ?, ?)",
            votes,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        state = SlackState(Path(folder) / "qa.db")
        fill(state, questions=args.questions)
        for days, scope in ((7, None), (90, None), (90, frozenset({"general"}))):
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                report = build_report(state.db, days=days, collections=scope)
                times.append(time.perf_counter() - start)
            print(
                f"{args.questions} questions, --days {days}, scope {sorted(scope) if scope else 'all'}: "
                f"{report.questions} in the period, {len(report.gaps)} gaps shown; "
                f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
            )
        start = time.perf_counter()
        gone = state.forget_questions(before=time.time() - 30 * 86400)
        print(f"forget_questions (older than 30 days): {gone} deleted in {(time.perf_counter() - start) * 1000:.0f} ms")
        state.close()


if __name__ == "__main__":
    main()
