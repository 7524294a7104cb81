"""The benchmark corpus: SQuAD questions, articles recombined from SQuAD contexts, and their databases.

`bot.bench.run` measures on corpora of 1k to 100k articles; this module makes them. It reads the SQuAD v1.1
training file (`load_squad_corpus`), turns its contexts into articles, real ones first and then perturbed
mixtures, so a smaller corpus is always a prefix of a larger one (`build_articles`), picks seeded questions whose
paragraph is stored verbatim (`pick_questions`), and builds each database once through `Store.add_article`,
reusing it while its recipe matches (`ensure_corpus_db`). It is kept apart from the measurements because it
decides *what* is measured: change it and `CORPUS_VERSION` must change too.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bot.bench.report import size_label
from bot.core.records import Article
from bot.errors import ConfigError
from bot.store.base import Store
from bot.store.sqlite import PASSAGE_MAX_WORDS, SQLiteStore
from bot.training.squad import read_squad_json

__all__ = [
    "BenchQuestion",
    "SquadData",
    "load_squad_corpus",
    "build_articles",
    "pick_questions",
    "ensure_corpus_db",
    "ensure_pg_corpus",
    "pg_corpus_url",
    "SEED",
    "CORPUS_VERSION",
    "Progress",
    "fresh_store",
    "used_bytes",
]

logger = logging.getLogger(__name__)

SEED = 13
CORPUS_VERSION = 1  # bump when build_articles changes, so stored databases are rebuilt
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchQuestion:
    """A SQuAD question and its gold answers; `paragraph` indexes `SquadData.paragraphs`."""

    question: str
    answers: tuple[str, ...]
    paragraph: int


@dataclass(frozen=True)
class SquadData:
    """SQuAD contexts in file order, with the title of each and the questions asked about it."""

    paragraphs: tuple[str, ...]
    titles: tuple[str, ...]
    questions: tuple[BenchQuestion, ...]


def load_squad_corpus(path: str | Path) -> SquadData:
    """Read the paragraphs, titles and answerable questions of a SQuAD file (plain or .gz).

    :raises QABotError: when the file is missing or not in the SQuAD layout.
    """
    path = Path(path)
    data = read_squad_json(path)["data"]
    try:
        paragraphs: list[str] = []
        titles: list[str] = []
        questions: list[BenchQuestion] = []
        for article in data:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    golds = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                    if golds:
                        questions.append(BenchQuestion(qa["question"], golds, len(paragraphs)))
                paragraphs.append(paragraph["context"])
                titles.append(article["title"].replace("_", " "))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path} is not in SQuAD v1.1 format (missing or bad field {exc}). Pass the SQuAD "
            "train file, e.g. --squad ../shared/data/squad/train-v1.1.json.gz"
        ) from exc
    if not paragraphs:
        raise ConfigError(f"{path} holds no SQuAD paragraphs.")
    return SquadData(tuple(paragraphs), tuple(titles), tuple(questions))


def _perturb(paragraph: str, rng: random.Random) -> str:
    # Recombined articles must not repeat a paragraph verbatim: rotate its sentences and drop one of longer ones.
    sentences = _SENTENCE_END.split(paragraph)
    if len(sentences) > 1:
        shift = rng.randrange(1, len(sentences))
        sentences = sentences[shift:] + sentences[:shift]
    if len(sentences) >= 4:
        del sentences[rng.randrange(len(sentences))]
    return " ".join(sentences)


def build_articles(squad: SquadData, n_articles: int, *, seed: int = SEED) -> list[tuple[Article, tuple[int, ...]]]:
    """`n_articles` articles with the paragraph indexes each one holds verbatim; smaller sizes are prefixes.

    First come real articles: each SQuAD title's paragraphs in runs of 1–3, in a seeded order. Past those
    (9,758 for the full train file), each article joins 1–3 perturbed paragraphs from different titles.
    """
    rng = random.Random(seed)
    real: list[tuple[Article, tuple[int, ...]]] = []
    seen: set[str] = set()
    first = 0
    while first < len(squad.paragraphs):
        title = squad.titles[first]
        last = first
        while (
            last + 1 < len(squad.paragraphs)
            and squad.titles[last + 1] == title
            and last - first < 2
            and rng.random() < 0.6
        ):
            last += 1
        ids = tuple(range(first, last + 1))
        body = "\n\n".join(squad.paragraphs[i] for i in ids)
        if body not in seen:  # SQuAD repeats a few paragraphs; the store would skip the copy
            seen.add(body)
            real.append((Article(title=title, body=body, source="squad", key=f"squad:{first}"), ids))
        first = last + 1
    rng.shuffle(real)
    articles = real[:n_articles]
    distinct_titles, repeats = len(set(squad.titles)), 0
    while len(articles) < n_articles:
        chosen: list[int] = []
        for _ in range(rng.randint(1, min(3, distinct_titles))):
            candidate = rng.randrange(len(squad.paragraphs))
            while any(squad.titles[candidate] == squad.titles[c] for c in chosen):
                candidate = rng.randrange(len(squad.paragraphs))
            chosen.append(candidate)
        body = "\n\n".join(_perturb(squad.paragraphs[c], rng) for c in chosen)
        if body in seen:
            repeats += 1
            if repeats > 1000:
                raise ConfigError(
                    f"Cannot make {n_articles} different articles from {len(squad.paragraphs)} "
                    "paragraphs; use smaller sizes or a larger SQuAD file."
                )
            continue
        repeats = 0
        seen.add(body)
        title = " / ".join(squad.titles[c] for c in chosen)
        articles.append((Article(title=title, body=body, source="squad-mix", key=f"mix:{len(articles)}"), ()))
    return articles


def pick_questions(
    squad: SquadData, articles: Sequence[tuple[Article, tuple[int, ...]]], n: int, *, seed: int = SEED
) -> list[BenchQuestion]:
    """Up to `n` seeded questions whose paragraph is stored verbatim in `articles`."""
    present = {i for _, ids in articles for i in ids}
    pool = [q for q in squad.questions if q.paragraph in present]
    random.Random(seed).shuffle(pool)
    return pool[:n]


def fresh_store(db_path: Path) -> SQLiteStore:
    """An empty store at `db_path`, replacing any database (and its WAL files) there."""
    for stale in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        stale.unlink(missing_ok=True)
    return SQLiteStore(db_path)


def used_bytes(store: SQLiteStore) -> int:
    """Bytes in the database's pages in use (page count less free pages, times the page size)."""
    # Pages in use, so a file that grew and shrank (or holds the naive index built later) is measured fairly.
    pragma = {name: next(store.db.query(f"pragma {name}")) for name in ("page_count", "freelist_count", "page_size")}
    return (pragma["page_count"]["page_count"] - pragma["freelist_count"]["freelist_count"]) * pragma["page_size"][
        "page_size"
    ]


def _count(store: SQLiteStore, table: str) -> int:
    return store.db[table].count


def corpus_recipe(n_articles: int, squad_path: Path) -> dict:
    """What a built corpus depends on: a stored database is reused only while its recipe is this one."""
    return {
        "articles": n_articles,
        "seed": SEED,
        "corpus_version": CORPUS_VERSION,
        "source_bytes": squad_path.stat().st_size,
        "passage_max_words": PASSAGE_MAX_WORDS,
        "sentence_splitter": "sentencex",
    }


def _store_articles(
    store: Store, articles: Sequence[tuple[Article, object]], *, progress: Progress | None, where: str = ""
) -> float:
    """Store the benchmark articles in one `bulk()`, saying how far it got every 10,000; returns the seconds taken."""
    started = time.perf_counter()
    with store.bulk():
        for done, (article, _) in enumerate(articles, start=1):
            store.add_article(article)
            if progress and done % 10_000 == 0:
                progress(f"  built {done}/{len(articles)} articles{where}")
    return time.perf_counter() - started


def ensure_corpus_db(
    squad: SquadData, n_articles: int, workdir: Path, *, squad_path: Path, progress: Progress | None = None
) -> tuple[Path, dict]:
    """The database of the first `n_articles` benchmark articles, built once through `Store.add_article`.

    A `.json` file next to it records how it was built (and how fast); both are reused when they match.
    Each database also gets an article-level FTS index (`articles_fts`) for the naive baseline.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / f"squad-{n_articles}.db"
    meta_path = db_path.with_suffix(".json")
    recipe = corpus_recipe(n_articles, squad_path)
    if meta_path.is_file() and db_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("recipe") == recipe:
            return db_path, {**meta, "built_this_run": False}
    meta_path.unlink(missing_ok=True)
    store = fresh_store(db_path)
    seconds = _store_articles(store, build_articles(squad, n_articles), progress=progress)
    meta = {
        "recipe": recipe,
        "articles": _count(store, "articles"),
        "passages": _count(store, "passages"),
        "sentences": _count(store, "sentences"),
        "build_s": seconds,
        "build_articles_per_s": n_articles / seconds,
        "db_mb": used_bytes(store) / 1e6,
    }
    store.db.table("articles").enable_fts(["title", "body"], tokenize="porter")
    store.close()
    logger.info("bench corpus built articles=%d seconds=%.0f db=%s", n_articles, seconds, db_path)
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return db_path, {**meta, "built_this_run": True}


# The same corpora in PostgreSQL -------------------------------------------------------------------------------

PG_DATABASE_PREFIX = "qabot_bench_"


def pg_corpus_url(server_url: str, n_articles: int) -> str:
    """The URL of the benchmark database of `n_articles` articles on the server of `server_url`: the same URL with
    its database replaced by `qabot_bench_<size>`.

        >>> pg_corpus_url("postgresql://postgres@127.0.0.1:5432/postgres", 10_000)
        'postgresql://postgres@127.0.0.1:5432/qabot_bench_10k'
    """
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{PG_DATABASE_PREFIX}{size_label(n_articles)}"))


def _create_pg_database(server_url: str, name: str) -> None:
    """Create the database `name` on the server of `server_url` unless it exists (never drops one)."""
    import psycopg
    from psycopg import sql

    from bot.store.postgres import connect_pg

    admin = connect_pg(server_url)
    try:
        if admin.execute("select 1 from pg_database where datname = %s", [name]).fetchone() is None:
            admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise ConfigError(
            f"Cannot create the benchmark database {name} through {server_url.split('@')[-1]}: "
            f"{' '.join(str(exc).split())}. Pass --postgres with a user that may create databases."
        ) from exc
    finally:
        admin.close()


def ensure_pg_corpus(
    squad: SquadData,
    n_articles: int,
    server_url: str,
    *,
    squad_path: Path,
    progress: Progress | None = None,
) -> tuple[str, dict]:
    """The PostgreSQL database of the first `n_articles` benchmark articles (`qabot_bench_<size>` on the server of
    `server_url`, created when missing), built once through `PostgresStore.add_article` in `bulk()`.

    The same articles as `ensure_corpus_db`'s SQLite file. Its `bench_corpus` table records how it was built (and
    how fast); the database is reused while that recipe matches, else emptied and built again (never dropped).

    :returns: (the database URL, what the build recorded, with `built_this_run`)
    :raises QABotError: when the server cannot be reached or the database cannot be created.
    """
    from bot.store.pg_migrations import latest_pg_version
    from bot.store.postgres import PostgresStore

    url = pg_corpus_url(server_url, n_articles)
    _create_pg_database(server_url, urlsplit(url).path.lstrip("/"))
    recipe = {**corpus_recipe(n_articles, squad_path), "engine": "postgresql", "pg_schema_version": latest_pg_version()}
    store = PostgresStore(url)
    try:
        store.conn.execute("create table if not exists bench_corpus (recipe text not null, meta text not null)")
        row = store.conn.execute("select recipe, meta from bench_corpus").fetchone()
        if row is not None and json.loads(row["recipe"]) == recipe:
            return url, {**json.loads(row["meta"]), "built_this_run": False}
        store.conn.execute(
            "truncate bench_corpus, articles, sentences, passages, passage_terms, passage_postings "
            "restart identity cascade; update corpus_stats set passages = 0, tokens = 0"
        )
        seconds = _store_articles(store, build_articles(squad, n_articles), progress=progress, where=" in PostgreSQL")
        started = time.perf_counter()
        store.conn.execute("vacuum analyze")  # what autovacuum does after a large ingest, done now: same plans each run
        counts = store.query(
            "select (select count(*) from articles) as articles, (select count(*) from passages) as passages, "
            "(select count(*) from sentences) as sentences, pg_database_size(current_database()) as db_bytes"
        )[0]
        meta = {
            "recipe": recipe,
            "articles": counts["articles"],
            "passages": counts["passages"],
            "sentences": counts["sentences"],
            "build_s": seconds,
            "build_articles_per_s": n_articles / seconds,
            "vacuum_analyze_s": time.perf_counter() - started,
            "db_mb": counts["db_bytes"] / 1e6,
        }
        store.conn.execute(
            "insert into bench_corpus (recipe, meta) values (%s, %s)", [json.dumps(recipe), json.dumps(meta)]
        )
    finally:
        store.close()
    logger.info("bench corpus built engine=postgresql articles=%d seconds=%.0f", n_articles, seconds)
    return url, {**meta, "built_this_run": True}
