"""What scoping a question to collections costs retrieval (issue 13): scoped and unscoped searches side by side.

Two corpora of the same articles: the benchmark database as built (every article in `general`), and a copy whose
articles are split into three collections by a hash of their key (`ensure_split_db`). Each question is searched
unscoped and scoped on both, in a rotating order, so the machine's noise falls on every way alike:

- scoped to every collection there is, against unscoped on the same database (what a user allowed everything pays);
- on the split copy, scoped to the collection holding the question's article, against unscoped there.

    result = measure_scoping(general_db, split_db, questions, own_collection=..., top_k=5, articles=100_000)
"""

from __future__ import annotations

import json
import statistics
import time
import zlib
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from bot.bench.corpus import BenchQuestion, Progress, SquadData, build_articles
from bot.bench.report import ScopingResult, ScopingRow, Summary, size_label
from bot.core.retrieve import Retriever
from bot.store.sqlite import SQLiteStore

__all__ = ["SPLIT", "split_collection", "ensure_split_db", "question_collections", "measure_scoping"]

# The split copy's collections and their shares of the articles, in tenths.
SPLIT = (("handbook", 5), ("support", 3), ("legal", 2))
SPLIT_VERSION = 1  # bump when SPLIT or split_collection changes, so stored copies are rebuilt


def split_collection(key: str) -> str:
    """The collection of a benchmark article in the split copy, from its key (crc32: the same in every run)."""
    bucket = zlib.crc32(key.encode("utf-8")) % 10
    for name, tenths in SPLIT:
        if bucket < tenths:
            return name
        bucket -= tenths
    raise AssertionError("SPLIT's shares must add up to ten tenths")


def ensure_split_db(db_path: Path, recipe: dict, *, progress: Progress | None = None) -> Path:
    """A copy of the corpus database at `db_path` (built with `recipe`) with its articles split into `SPLIT`'s
    collections; built once, next to it, and reused while both recipes match."""
    split_path = db_path.with_name(f"{db_path.stem}-split.db")
    meta_path = split_path.with_suffix(".json")
    wanted = {"corpus": recipe, "split": [list(pair) for pair in SPLIT], "split_version": SPLIT_VERSION}
    if meta_path.is_file() and split_path.is_file() and json.loads(meta_path.read_text("utf-8")) == wanted:
        return split_path
    meta_path.unlink(missing_ok=True)
    if progress:
        progress(f"  copying {db_path.name} to split its articles into {len(SPLIT)} collections")
    for stale in (split_path, Path(f"{split_path}-wal"), Path(f"{split_path}-shm")):
        stale.unlink(missing_ok=True)
    source, copy = SQLiteStore(db_path), SQLiteStore(split_path)
    try:
        source.db.conn.backup(copy.db.conn)
        copy.db.conn.create_function("split_collection", 1, split_collection, deterministic=True)
        with copy.db.conn:
            copy.db.execute("update articles set collection = split_collection(key)")
    finally:
        source.close()
        copy.close()
    meta_path.write_text(json.dumps(wanted, indent=2), encoding="utf-8")
    return split_path


def question_collections(squad: SquadData, n_articles: int, questions: Sequence[BenchQuestion]) -> list[str]:
    """The split collection of the article holding each question's paragraph (the first `n_articles` articles)."""
    key_of = {paragraph: str(article.key) for article, ids in build_articles(squad, n_articles) for paragraph in ids}
    return [split_collection(key_of[question.paragraph]) for question in questions]


# One way of searching: its name, which database, and the scope of a question (None: unscoped).
_Way = tuple[str, str, Callable[[int], Collection[str] | None]]


def measure_scoping(
    general_db: Path,
    split_db: Path,
    questions: Sequence[BenchQuestion],
    *,
    own_collection: Sequence[str],
    top_k: int,
    articles: int,
    warmup: Sequence[BenchQuestion] = (),
) -> ScopingResult:
    """Retrieval time, answer-in-passages and sameness of each way of scoping, per question in a rotating order.

    :param own_collection: the split collection of each question's article (`question_collections`).
    """
    stores = {"general": SQLiteStore(general_db), "split": SQLiteStore(split_db)}
    try:
        every = {name: set(store.collection_names()) for name, store in stores.items()}
        ways: list[_Way] = [
            ("unscoped", "general", lambda i: None),
            ("every collection", "general", lambda i: every["general"]),
            ("unscoped", "split", lambda i: None),
            ("every collection", "split", lambda i: every["split"]),
            ("the question's collection", "split", lambda i: {own_collection[i]}),
        ]
        retrievers = {name: Retriever(store, top_k=top_k) for name, store in stores.items()}
        times: list[list[float]] = [[] for _ in ways]
        found: list[list[list[str]]] = [[] for _ in ways]
        hits: list[list[bool]] = [[] for _ in ways]
        for index, question in enumerate([*warmup, *questions]):
            measured = index - len(warmup)
            for offset in range(len(ways)):
                way = (index + offset) % len(ways)
                _, db, scope = ways[way]
                started = time.perf_counter()
                passages = retrievers[db].run(question.question, collections=scope(max(measured, 0)))
                elapsed_ms = (time.perf_counter() - started) * 1000
                if measured >= 0:
                    times[way].append(elapsed_ms)
                    found[way].append([p.text for p in passages])
                    hits[way].append(any(gold in p.text for gold in question.answers for p in passages))
    finally:
        for store in stores.values():
            store.close()
    baseline = {db: next(i for i, (name, d, _) in enumerate(ways) if d == db and name == "unscoped") for db in stores}
    rows = []
    for way, (name, db, _) in enumerate(ways):
        base = baseline[db]
        rows.append(
            ScopingRow(
                scope=name,
                corpus=db,
                retrieve_ms=Summary.of(times[way]),
                added_ms=statistics.median(times[way]) - statistics.median(times[base]) if times[way] else 0.0,
                added_paired_ms=statistics.median(a - b for a, b in zip(times[way], times[base]))
                if times[way]
                else 0.0,
                answer_in_passages=100 * sum(hits[way]) / max(len(hits[way]), 1),
                same_as_unscoped=100 * sum(a == b for a, b in zip(found[way], found[base])) / max(len(found[way]), 1),
            )
        )
    return ScopingResult(
        articles=articles,
        label=size_label(articles),
        questions=len(questions),
        split=[f"{name} {tenths * 10}%" for name, tenths in SPLIT],
        rows=rows,
    )
