"""Benchmarks on this machine: ingestion, answer latency per corpus size, memory, cold start, a naive baseline.

Corpora are built from the SQuAD v1.1 training contexts so retrieval sees real term statistics; the questions
come from the same file with their gold answers. Everything is measured through the production classes
(`Store.add_article`, `AnsweringService`, `Reader`), so this module sits beside `service` (it takes plain
arguments and never reads `Settings`).

    report = run_benchmarks("train-v1.1.json.gz", model="models/reader", sizes=(1000, 10000))
    print(render_markdown(report))
"""

from __future__ import annotations

import cProfile
import json
import logging
import math
import os
import platform
import pstats
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.errors import ConfigError
from bot.reader import Reader
from bot.records import Article
from bot.retrieve import Retriever, fts_query
from bot.service import AnsweringService
from bot.squad import best_scores, read_squad_json
from bot.store import PASSAGE_MAX_WORDS, Store
from bot.text import split_sentences

__all__ = ["BenchQuestion", "SquadData", "load_squad_corpus", "build_articles", "pick_questions", "ensure_corpus_db",
           "run_benchmarks", "render_markdown", "write_markdown", "TARGETS"]

logger = logging.getLogger(__name__)

SEED = 13
CORPUS_VERSION = 1  # bump when build_articles changes, so stored databases are rebuilt
WARMUP_QUESTIONS = 5
COLD_START_QUESTIONS = 20
INGEST_ARTICLES = 1000
PROFILE_ARTICLES = 200
# What the project promised for a 2-core CPU: (name, report path, comparison, limit, unit).
TARGETS = (
    ("answer median at 10k", ("answering", 10_000, "pipeline", "total_ms", "median"), "<=", 200, "ms"),
    ("answer p95 at 10k", ("answering", 10_000, "pipeline", "total_ms", "p95"), "<=", 400, "ms"),
    ("answer median at 100k", ("answering", 100_000, "pipeline", "total_ms", "median"), "<=", 300, "ms"),
    ("retrieval median at 100k", ("answering", 100_000, "pipeline", "retrieve_ms", "median"), "<=", 20, "ms"),
    ("ingestion", ("ingestion", "articles_per_s"), ">=", 500, "articles/s"),
    ("cold start (largest corpus)", ("cold_start_s",), "<=", 5, "s"),
    ("peak RSS of qa-bot ask (largest corpus)", ("peak_rss_mb",), "<=", 1024, "MB"),
    ("speed-up over naive (worst size)", ("speedup",), ">=", 3, "x"),
    ("F1 minus naive F1 (worst size)", ("f1_gain",), ">=", 0, "points"),
)
_BEGIN, _END = "<!-- bench:begin -->", "<!-- bench:end -->"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")

Progress = Callable[[str], None]


# Corpus -------------------------------------------------------------------------------------------------------

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
        paragraphs, titles, questions = [], [], []
        for article in data:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    golds = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                    if golds:
                        questions.append(BenchQuestion(qa["question"], golds, len(paragraphs)))
                paragraphs.append(paragraph["context"])
                titles.append(article["title"].replace("_", " "))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} is not in SQuAD v1.1 format (missing or bad field {exc}). Pass the SQuAD "
                          "train file, e.g. --squad ../shared/data/squad/train-v1.1.json.gz") from exc
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
        while last + 1 < len(squad.paragraphs) and squad.titles[last + 1] == title and last - first < 2 \
                and rng.random() < 0.6:
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
                raise ConfigError(f"Cannot make {n_articles} different articles from {len(squad.paragraphs)} "
                                  "paragraphs; use smaller sizes or a larger SQuAD file.")
            continue
        repeats = 0
        seen.add(body)
        title = " / ".join(squad.titles[c] for c in chosen)
        articles.append((Article(title=title, body=body, source="squad-mix", key=f"mix:{len(articles)}"), ()))
    return articles


def pick_questions(squad: SquadData, articles: Sequence[tuple[Article, tuple[int, ...]]], n: int, *,
                   seed: int = SEED) -> list[BenchQuestion]:
    """Up to `n` seeded questions whose paragraph is stored verbatim in `articles`."""
    present = {i for _, ids in articles for i in ids}
    pool = [q for q in squad.questions if q.paragraph in present]
    random.Random(seed).shuffle(pool)
    return pool[:n]


def _used_bytes(store: Store) -> int:
    # Pages in use, so a file that grew and shrank (or holds the naive index built later) is measured fairly.
    pragma = {name: next(store.db.query(f"pragma {name}")) for name in ("page_count", "freelist_count", "page_size")}
    return (pragma["page_count"]["page_count"] - pragma["freelist_count"]["freelist_count"]) \
        * pragma["page_size"]["page_size"]


def _count(store: Store, table: str) -> int:
    return store.db[table].count


def ensure_corpus_db(squad: SquadData, n_articles: int, workdir: Path, *, squad_path: Path,
                     progress: Progress | None = None) -> tuple[Path, dict]:
    """The database of the first `n_articles` benchmark articles, built once through `Store.add_article`.

    A `.json` file next to it records how it was built (and how fast); both are reused when they match.
    Each database also gets an article-level FTS index (`articles_fts`) for the naive baseline.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / f"squad-{n_articles}.db"
    meta_path = db_path.with_suffix(".json")
    recipe = {"articles": n_articles, "seed": SEED, "corpus_version": CORPUS_VERSION,
              "source_bytes": squad_path.stat().st_size, "passage_max_words": PASSAGE_MAX_WORDS,
              "sentence_splitter": "sentencex"}
    if meta_path.is_file() and db_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("recipe") == recipe:
            return db_path, {**meta, "built_this_run": False}
    meta_path.unlink(missing_ok=True)
    articles = build_articles(squad, n_articles)
    store = _fresh_store(db_path)
    started = time.perf_counter()
    with store.bulk():
        for done, (article, _) in enumerate(articles, start=1):
            store.add_article(article)
            if progress and done % 10_000 == 0:
                progress(f"  built {done}/{n_articles} articles")
    seconds = time.perf_counter() - started
    meta = {"recipe": recipe, "articles": _count(store, "articles"), "passages": _count(store, "passages"),
            "sentences": _count(store, "sentences"), "build_s": seconds, "build_articles_per_s": n_articles / seconds,
            "db_mb": _used_bytes(store) / 1e6}
    store.db["articles"].enable_fts(["title", "body"], tokenize="porter")
    store.close()
    logger.info("bench corpus built articles=%d seconds=%.0f db=%s", n_articles, seconds, db_path)
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return db_path, {**meta, "built_this_run": True}


# Measurements ---------------------------------------------------------------------------------------------------

def _summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "p95": 0.0, "mean": 0.0}
    median, p95 = np.percentile(values, [50, 95])
    return {"median": float(median), "p95": float(p95), "mean": float(np.mean(values))}


class _Tally:
    """Per-question timings and scores of one way of answering."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {"retrieve_ms": [], "read_ms": [], "total_ms": []}
        self.em: list[float] = []
        self.f1: list[float] = []
        self.in_context: list[float] = []

    def add(self, question: BenchQuestion, prediction: str | None, contexts: Sequence[str], **times_ms: float) -> None:
        for name, value in times_ms.items():
            self.times[name].append(value)
        em, f1 = best_scores(prediction or "", question.answers)
        self.em.append(em)
        self.f1.append(f1)
        self.in_context.append(float(any(gold in text for gold in question.answers for text in contexts)))

    def report(self) -> dict:
        result: dict = {name: _summary(values) for name, values in self.times.items() if values}
        for name, values in (("em", self.em), ("f1", self.f1), ("answer_in_context", self.in_context)):
            result[name] = 100 * float(np.mean(values)) if values else 0.0
        return result


_NAIVE_SQL = ("select a.body from articles_fts join articles a on a.id = articles_fts.rowid "
              "where articles_fts match :query order by bm25(articles_fts, 0.5, 1.0) limit :limit")


def _naive_answer_contexts(store: Store, question: str, top_k: int) -> list[str]:
    """The bodies of the top-k articles by article-level BM25 (the `articles_fts` index built for the baseline)."""
    query = fts_query(question)
    return [row["body"] for row in store.db.query(_NAIVE_SQL, {"query": query, "limit": top_k})] if query else []


def _naive_answer(store: Store, reader: Reader, question: str,
                  top_k: int) -> tuple[str | None, list[str], float, float]:
    """Read the top-k whole articles with the reader's sliding window.

    :returns: (answer text or None, the article bodies read, retrieve ms, read ms)
    """
    started = time.perf_counter()
    bodies = _naive_answer_contexts(store, question, top_k)
    retrieved = time.perf_counter()
    span = reader.best(question, bodies) if bodies else None
    read = time.perf_counter()
    return span.text if span else None, bodies, (retrieved - started) * 1000, (read - retrieved) * 1000


def measure_answering(store: Store, reader: Reader, questions: Sequence[BenchQuestion], *, top_k: int,
                      warmup: Sequence[BenchQuestion] = ()) -> dict:
    """Our pipeline and the naive baseline on the same questions, interleaved question by question."""
    retriever = Retriever(store, top_k=top_k)
    service = AnsweringService(store=store, retriever=retriever, reader=reader, threshold=0.0)
    for question in warmup:
        service.answer(question.question)
        _naive_answer(store, reader, question.question, top_k)
    pipeline, naive = _Tally(), _Tally()
    for question in questions:
        answer = service.answer(question.question)
        timings = service.last_timings_ms
        passages = [p.text for p in retriever.run(question.question)]  # untimed: only for answer_in_context
        pipeline.add(question, answer.text, passages, retrieve_ms=timings["retrieve"], read_ms=timings["read"],
                     total_ms=timings["total"])
        text, bodies, retrieve_ms, read_ms = _naive_answer(store, reader, question.question, top_k)
        naive.add(question, text, bodies, retrieve_ms=retrieve_ms, read_ms=read_ms, total_ms=retrieve_ms + read_ms)
    result = {"questions": len(questions), "pipeline": pipeline.report(), "naive": naive.report()}
    result["speedup"] = result["naive"]["total_ms"]["median"] / max(result["pipeline"]["total_ms"]["median"], 1e-9)
    return result


def _fresh_store(db_path: Path) -> Store:
    for stale in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        stale.unlink(missing_ok=True)
    return Store(db_path)


def _profile_ingestion(articles: Sequence[Article], db_path: Path) -> dict:
    """cProfile of storing `articles`: where the time goes, and how many transactions each article commits."""
    store = _fresh_store(db_path)
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    profiler = cProfile.Profile()
    profiler.enable()
    with store.bulk():
        for article in articles:
            store.add_article(article)
    profiler.disable()
    store.db.conn.set_trace_callback(None)
    store.close()
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (calls, primitive, own_s, cumulative_s, callers)}
    total = sum(own for _, _, own, _, _ in stats.values()) or 1e-9

    def cumulative(file_end: str, name: str) -> float:
        return sum(cum for (file, _, func), (_, _, _, cum, _) in stats.items()
                   if func == name and file.replace("\\", "/").endswith(file_end)) / total

    top = sorted(stats.items(), key=lambda item: -item[1][2])[:8]
    return {
        "articles": len(articles),
        "commits_per_article": sum(s.strip().upper() == "COMMIT" for s in statements) / max(len(articles), 1),
        "split_share": cumulative("bot/text.py", "split_sentences"),
        "sqlite_share": sum(own for (_, _, func), (_, _, own, _, _) in stats.items() if "sqlite3." in func) / total,
        "top": [{"function": f"{Path(file).name}:{line}({name})" if line else name, "own_share": own / total,
                 "calls": calls} for (file, line, name), (calls, _, own, _, _) in top],
    }


def measure_ingestion(articles: Sequence[Article], workdir: Path) -> dict:
    """Articles/s into a fresh database through `Store.add_article`, the time sentence splitting alone takes,
    and a profile of the first `PROFILE_ARTICLES` articles."""
    db_path = workdir / "ingest-probe.db"
    store = _fresh_store(db_path)
    started = time.perf_counter()
    with store.bulk():  # as `qa-bot ingest` stores a batch
        for article in articles:
            store.add_article(article)
    seconds = time.perf_counter() - started
    used_mb = _used_bytes(store) / 1e6
    store.close()
    started = time.perf_counter()
    for article in articles:
        split_sentences(article.body)
    split_s = time.perf_counter() - started
    profile = _profile_ingestion(articles[:PROFILE_ARTICLES], db_path)
    for stale in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        stale.unlink(missing_ok=True)
    return {"articles": len(articles), "seconds": seconds, "articles_per_s": len(articles) / seconds,
            "db_mb_per_1k_articles": used_mb * 1000 / max(len(articles), 1), "split_s": split_s,
            "split_articles_per_s": len(articles) / max(split_s, 1e-9), "profile": profile}


def _qa_bot_command() -> list[str]:
    script = Path(sys.executable).with_name("qa-bot")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bot"]


class _PeakRss(threading.Thread):
    """Follows a process's VmHWM, its peak resident memory since exec (Linux /proc), until it exits.

    `wait4`'s ru_maxrss cannot be used: a child spawned from this big process inherits our peak at exec.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.status_path, self.peak_kb, self.stopped = Path(f"/proc/{pid}/status"), 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                lines = self.status_path.read_text(encoding="utf-8").splitlines()
            except OSError:
                return
            for line in lines:
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            self.stopped.wait(0.02)


def measure_cold_start(db_path: Path, questions: Sequence[BenchQuestion], *, model: str, top_k: int, dtype: str,
                       max_length: int, doc_stride: int, threads: int | None) -> dict:
    """A fresh `qa-bot ask --json` answering questions from stdin: seconds to the first answer, peak RSS.

    :raises ConfigError: when `qa-bot ask` fails or answers fewer questions than it was asked.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("QABOT_")}
    env.update(PYTHONUNBUFFERED="1", QABOT_READER_MODEL=model, QABOT_TOP_K=str(top_k), QABOT_READER_DTYPE=dtype,
               QABOT_MAX_LENGTH=str(max_length), QABOT_DOC_STRIDE=str(doc_stride))
    if threads:
        env["QABOT_THREADS"] = str(threads)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
        started = time.perf_counter()
        process = subprocess.Popen([*_qa_bot_command(), "ask", "--json", "--db", str(db_path)], env=env, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        memory = _PeakRss(process.pid)
        memory.start()
        process.stdin.write("".join(q.question.replace("\n", " ") + "\n" for q in questions))
        process.stdin.close()
        first_line = process.stdout.readline()
        first_s = time.perf_counter() - started
        answered = 1 + sum(1 for _ in process.stdout) if first_line else 0
        process.wait()
        total_s = time.perf_counter() - started
        memory.stopped.set()
        memory.join()
        errors.seek(0)
        if process.returncode != 0 or answered != len(questions):
            raise ConfigError(f"qa-bot ask failed on {db_path} (exit {process.returncode}): "
                              f"{errors.read().strip()[-500:]}")
    return {"first_answer_s": first_s, "questions": answered, "total_s": total_s, "peak_rss_mb": memory.peak_kb / 1024}


@dataclass(frozen=True)
class _Variant:
    name: str
    dtype: str
    threads: int
    top_k: int
    max_length: int
    doc_stride: int


def reader_variants(*, dtype: str, threads: int, top_k: int, max_length: int, doc_stride: int) -> list[_Variant]:
    """The configured reader first, then one change at a time (dtype, threads, top_k), then int8 with fewer passages.

    No max_length variant: a passage of about 80 words almost always fits one window of under 200 tokens.
    """
    base = _Variant("configured", dtype, threads, top_k, max_length, doc_stride)
    variants = [base]
    for other in ("float32", "bfloat16", "int8"):
        if other != dtype:
            variants.append(_Variant(f"dtype={other}", other, threads, top_k, max_length, doc_stride))
    other_threads = 1 if threads != 1 else os.cpu_count() or 1
    if other_threads != threads:
        variants.append(_Variant(f"threads={other_threads}", dtype, other_threads, top_k, max_length, doc_stride))
    for k in sorted({1, max(1, top_k - 2), top_k + 3} - {top_k}):
        variants.append(_Variant(f"top_k={k}", dtype, threads, k, max_length, doc_stride))
    variants.append(_Variant(f"int8, top_k={max(1, top_k - 2)}", "int8", threads, max(1, top_k - 2), max_length,
                             doc_stride))
    return variants


def measure_reader_options(store: Store, model: str, questions: Sequence[BenchQuestion], variants: Sequence[_Variant],
                           *, warmup: Sequence[BenchQuestion] = ()) -> list[dict]:
    """Reading time and quality of each variant on the same retrieved passages, interleaved per question."""
    import torch

    readers = [Reader(model, dtype=v.dtype, max_length=v.max_length, doc_stride=v.doc_stride).load() for v in variants]
    retriever = Retriever(store, top_k=max(v.top_k for v in variants))
    tallies = [_Tally() for _ in variants]
    for index, question in enumerate([*warmup, *questions]):
        passages = [p.text for p in retriever.run(question.question)]
        for variant, reader, tally in zip(variants, readers, tallies):
            torch.set_num_threads(variant.threads)  # a process-wide setting: set it for every read
            contexts = passages[: variant.top_k]
            started = time.perf_counter()
            spans = reader.run(question.question, contexts) if contexts else []
            read_ms = (time.perf_counter() - started) * 1000
            if index >= len(warmup):
                tally.add(question, spans[0].text if spans else None, contexts, read_ms=read_ms)
    torch.set_num_threads(variants[0].threads)
    return [{"name": v.name, "dtype": v.dtype, "threads": v.threads, "top_k": v.top_k, "max_length": v.max_length,
             **{key: value for key, value in t.report().items() if key != "answer_in_context"}}
            for v, t in zip(variants, tallies)]


def measure_reading_cost(store: Store, model: str, questions: Sequence[BenchQuestion], *, top_k: int,
                         max_length: int, doc_stride: int, read_ms_median: float) -> dict:
    """Forward-pass FLOPs per question (from the model shape and the windows read) against a plain matmul's speed,
    for our passages and for the naive baseline's whole articles."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    local = Path(model).is_dir()
    config = AutoConfig.from_pretrained(model, local_files_only=local)
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local)
    hidden, layers, inner = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    retriever = Retriever(store, top_k=top_k)

    def cost(question: str, contexts: list[str]) -> tuple[int, int, float]:
        """(windows, tokens read with padding, FLOPs) of one reader call, tokenised as `Reader.run` does."""
        if not contexts:
            return 0, 0, 0.0
        encoded = tokenizer([question] * len(contexts), contexts, truncation="only_second", max_length=max_length,
                            stride=doc_stride, return_overflowing_tokens=True, padding="longest")
        n_windows, seq_len = len(encoded["input_ids"]), len(encoded["input_ids"][0])
        # per token and layer: QKV and output projections (4h² MACs), feed-forward (2hi MACs), attention scores
        # and weighted values (2·seq·h MACs); 2 FLOPs per MAC
        per_token = layers * 2 * (4 * hidden * hidden + 2 * hidden * inner + 2 * seq_len * hidden)
        return n_windows, n_windows * seq_len, float(per_token * n_windows * seq_len)

    ours, naive = [], []
    for question in questions:
        ours.append(cost(question.question, [p.text for p in retriever.run(question.question)]))
        naive.append(cost(question.question, _naive_answer_contexts(store, question.question, top_k)))
    size = 1024
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    started, repeats = time.perf_counter(), 20
    for _ in range(repeats):
        torch.mm(a, b)
    matmul_gflops = 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e9
    def median(rows: list[tuple[int, int, float]], column: int) -> float:
        return float(np.median([row[column] for row in rows])) if rows else 0.0

    gflop = median(ours, 2) / 1e9
    achieved = gflop / (read_ms_median / 1000) if read_ms_median > 0 else 0.0
    return {"hidden_size": hidden, "layers": layers, "intermediate_size": inner,
            "windows_median": median(ours, 0), "tokens_median": median(ours, 1), "gflop_per_question_median": gflop,
            "naive_windows_median": median(naive, 0), "naive_tokens_median": median(naive, 1),
            "naive_gflop_per_question_median": median(naive, 2) / 1e9, "read_ms_median": read_ms_median,
            "achieved_gflop_per_s": achieved, "matmul_gflop_per_s": matmul_gflops,
            "efficiency": achieved / matmul_gflops if matmul_gflops else 0.0}


# The whole run --------------------------------------------------------------------------------------------------

def _machine() -> dict:
    import torch

    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_cores": os.cpu_count(), "cpu_model": cpu_model, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def _label(n_articles: int) -> str:
    return f"{n_articles // 1000}k" if n_articles >= 1000 and n_articles % 1000 == 0 else str(n_articles)


def _evaluate_targets(report: dict) -> list[dict]:
    by_size = {row["articles"]: row for row in report["answering"]}
    worst = {
        "cold_start_s": report["cold_start"]["first_answer_s"], "peak_rss_mb": report["cold_start"]["peak_rss_mb"],
        "speedup": min((row["speedup"] for row in report["answering"]), default=None),
        "f1_gain": min((row["pipeline"]["f1"] - row["naive"]["f1"] for row in report["answering"]), default=None),
    }
    results = []
    for name, path, comparison, limit, unit in TARGETS:
        if path[0] == "answering":
            row = by_size.get(path[1])
            measured = row[path[2]][path[3]][path[4]] if row else None
        elif path[0] == "ingestion":
            measured = report["ingestion"][path[1]]
        else:
            measured = worst[path[0]]
        if measured is None:
            continue
        met = measured <= limit if comparison == "<=" else measured >= limit
        results.append({"name": name, "target": f"{comparison} {limit} {unit}", "measured": measured, "unit": unit,
                        "met": met})
    return results


def run_benchmarks(squad_path: str | Path, *, model: str | None, sizes: Sequence[int] = (1000, 10_000, 100_000),
                   n_questions: int = 200, top_k: int = 5, dtype: str = "float32", max_length: int = 384,
                   doc_stride: int = 128, threads: int | None = None, workdir: str | Path = "bench-data",
                   ingest_articles: int = INGEST_ARTICLES, command: str = "", progress: Progress | None = None) -> dict:
    """Build (or reuse) the corpora, then measure everything on this machine; returns the report as a dict.

    :param squad_path: SQuAD v1.1 JSON (optionally .gz) supplying contexts, questions and gold answers.
    :param model: reader model folder, used for every reading here and in the cold-start subprocess.
    :param sizes: corpus sizes in articles; questions come from the smallest, which every larger one contains.
    :param n_questions: measured questions per size (after `WARMUP_QUESTIONS` unmeasured ones).
    :param top_k, dtype, max_length, doc_stride, threads: the configured reader and retriever; the
        reader-options table changes one of them at a time.
    :param workdir: where corpus databases are built and kept between runs (ignored by git).
    :param ingest_articles: articles ingested into a fresh database to measure ingestion speed.
    :param command: the command line, recorded in the report.
    :raises QABotError: when the data or the model cannot be read, or `qa-bot ask` fails.
    """
    import torch

    say = progress or (lambda message: None)
    if not model:
        raise ConfigError("No reader model configured. Pass --model DIR or set QABOT_READER_MODEL to a local "
                          "extractive-QA model folder (for development: ../shared/models/dev-reader).")
    if not sizes or min(sizes) <= 0 or n_questions <= 0:
        raise ConfigError(f"sizes and questions must be positive, got sizes={list(sizes)} questions={n_questions}")
    sizes = sorted(set(sizes))
    squad_path, workdir = Path(squad_path), Path(workdir)
    squad = load_squad_corpus(squad_path)
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    report: dict = {"command": command, "machine": _machine(),
                    "model": {"path": str(model), "name": Path(str(model)).name},
                    "settings": {"top_k": top_k, "dtype": dtype, "max_length": max_length, "doc_stride": doc_stride,
                                 "threads": threads, "passage_max_words": PASSAGE_MAX_WORDS,
                                 "questions": n_questions, "warmup_questions": WARMUP_QUESTIONS, "seed": SEED,
                                 "answer_threshold": 0.0}}

    say(f"building or reusing corpora {', '.join(map(_label, sizes))} in {workdir}")
    corpora = []
    for n in sizes:
        db_path, meta = ensure_corpus_db(squad, n, workdir, squad_path=squad_path, progress=say)
        corpora.append((n, db_path, meta))
    smallest = build_articles(squad, sizes[0])
    picked = pick_questions(squad, smallest, n_questions + WARMUP_QUESTIONS)
    questions = picked[:n_questions]
    warmup = picked[n_questions:] or questions[:WARMUP_QUESTIONS]
    if not questions:
        raise ConfigError(f"No SQuAD question has its paragraph in the {sizes[0]}-article corpus; use a larger size.")
    report["corpora"] = [{"articles": n, "label": _label(n), **{key: meta[key] for key in (
        "passages", "sentences", "db_mb", "build_articles_per_s", "built_this_run")},
        "db_mb_per_1k_articles": meta["db_mb"] * 1000 / n} for n, _, meta in corpora]

    say(f"ingestion: {ingest_articles} articles into a fresh database")
    probe = [article for article, _ in build_articles(squad, max(ingest_articles, 1))]
    report["ingestion"] = measure_ingestion(probe, workdir)

    reader = Reader(model, dtype=dtype, max_length=max_length, doc_stride=doc_stride, threads=threads).load()
    report["answering"] = []
    for n, db_path, meta in corpora:
        say(f"answering at {_label(n)}: {len(questions)} questions, pipeline and naive side by side")
        store = Store(db_path)
        row = {"articles": n, "label": _label(n), "passages": meta["passages"],
               **measure_answering(store, reader, questions, top_k=top_k, warmup=warmup)}
        store.close()
        report["answering"].append(row)

    largest_n, largest_db, _ = corpora[-1]
    say(f"cold start at {_label(largest_n)}: a fresh qa-bot ask")
    report["cold_start"] = {"articles": largest_n, "label": _label(largest_n), **measure_cold_start(
        largest_db, questions[:COLD_START_QUESTIONS], model=model, top_k=top_k, dtype=dtype, max_length=max_length,
        doc_stride=doc_stride, threads=threads)}

    options_n, options_db, _ = min(corpora, key=lambda c: abs(math.log(c[0] / 10_000)))
    say(f"reader options at {_label(options_n)}")
    store = Store(options_db)
    variants = reader_variants(dtype=dtype, threads=threads, top_k=top_k, max_length=max_length,
                               doc_stride=doc_stride)
    report["reader_options"] = {"articles": options_n, "label": _label(options_n), "questions": len(questions),
                                "variants": measure_reader_options(store, model, questions, variants, warmup=warmup)}
    configured_read = next(row for row in report["answering"] if row["articles"] == options_n)
    report["reading_cost"] = {"articles": options_n, **measure_reading_cost(
        store, model, questions, top_k=top_k, max_length=max_length, doc_stride=doc_stride,
        read_ms_median=configured_read["pipeline"]["read_ms"]["median"])}
    store.close()
    report["bench_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["targets"] = _evaluate_targets(report)
    return report


# Rendering ------------------------------------------------------------------------------------------------------

def _ms(summary: dict) -> str:
    return f"{summary['median']:.0f} / {summary['p95']:.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(report: dict) -> str:
    """The report as Markdown tables (what `--out` writes between the bench markers)."""
    machine, settings = report["machine"], report["settings"]
    lines = [f"Command: `{report['command']}`" if report["command"] else "", "",
             f"Machine: {machine['cpu_cores']} CPU cores ({machine['cpu_model']}), torch {machine['torch']} with "
             f"{settings['threads']} threads, Python {machine['python']}. Reader model: `{report['model']['name']}`, "
             f"dtype {settings['dtype']}, top_k {settings['top_k']}, max_length {settings['max_length']}, passages "
             f"of about {settings['passage_max_words']} words. Times are median / p95 over "
             f"{report['answering'][0]['questions']} questions (after {settings['warmup_questions']} warm-up), "
             "in ms unless marked.", "", "### Answering", ""]
    lines += _table(
        ["corpus", "passages", "retrieve ms", "read ms", "total ms", "EM", "F1", "answer in passages %"],
        [[row["label"], row["passages"], _ms(row["pipeline"]["retrieve_ms"]), _ms(row["pipeline"]["read_ms"]),
          _ms(row["pipeline"]["total_ms"]), f"{row['pipeline']['em']:.1f}", f"{row['pipeline']['f1']:.1f}",
          f"{row['pipeline']['answer_in_context']:.0f}"] for row in report["answering"]])
    cold = report["cold_start"]
    lines += [f"Cold start at {cold['label']}: a fresh `qa-bot ask --json` process gave its first answer after "
              f"**{cold['first_answer_s']:.1f} s** and {cold['questions']} answers after {cold['total_s']:.1f} s; "
              f"its peak RSS was **{cold['peak_rss_mb']:.0f} MB**. This benchmark process peaked at "
              f"{report['bench_peak_rss_mb']:.0f} MB (SQuAD data and several readers loaded).", ""]
    lines += [f"### Passages vs naive (top-{settings['top_k']} whole articles by BM25, sliding window)", ""]
    lines += _table(
        ["corpus", "ours total ms", "naive retrieve ms", "naive read ms", "naive total ms", "speed-up (median)",
         "ours EM / F1", "naive EM / F1", "answer in articles %"],
        [[row["label"], _ms(row["pipeline"]["total_ms"]), _ms(row["naive"]["retrieve_ms"]),
          _ms(row["naive"]["read_ms"]), _ms(row["naive"]["total_ms"]), f"{row['speedup']:.1f}x",
          f"{row['pipeline']['em']:.1f} / {row['pipeline']['f1']:.1f}",
          f"{row['naive']['em']:.1f} / {row['naive']['f1']:.1f}", f"{row['naive']['answer_in_context']:.0f}"]
         for row in report["answering"]])
    ingestion, profile = report["ingestion"], report["ingestion"]["profile"]
    lines += ["### Ingestion", "",
              f"Fresh database, {ingestion['articles']} articles through `Store.add_article` in `Store.bulk()` "
              f"(as `qa-bot ingest` stores a batch): "
              f"**{ingestion['articles_per_s']:.0f} articles/s**, {ingestion['db_mb_per_1k_articles']:.1f} MB per "
              f"1k articles. Sentence splitting alone runs at {ingestion['split_articles_per_s']:.0f} articles/s. "
              f"cProfile of {profile['articles']} articles: `split_sentences` (sentencex) "
              f"{profile['split_share']:.0%} of the time; SQLite calls {profile['sqlite_share']:.0%}; "
              f"{profile['commits_per_article']:.1f} commits per article.", ""]
    lines += _table(["corpus", "articles", "passages", "sentences", "DB MB", "MB per 1k articles",
                     "built at articles/s"],
                    [[c["label"], c["articles"], c["passages"], c["sentences"], f"{c['db_mb']:.0f}",
                      f"{c['db_mb_per_1k_articles']:.1f}",
                      f"{c['build_articles_per_s']:.0f}" + ("" if c["built_this_run"] else " (earlier run)")]
                     for c in report["corpora"]])
    lines += ["Top functions by own time in that profile:", ""]
    lines += _table(["function", "share of time", "calls"],
                    [[f"`{p['function']}`", f"{p['own_share']:.0%}", p["calls"]] for p in profile["top"]])
    options = report["reader_options"]
    lines += [f"### Reader options at {options['label']} (same retrieved passages, interleaved per question)", ""]
    lines += _table(["variant", "dtype", "threads", "top_k", "max_length", "read ms", "EM", "F1"],
                    [[v["name"], v["dtype"], v["threads"], v["top_k"], v["max_length"], _ms(v["read_ms"]),
                      f"{v['em']:.1f}", f"{v['f1']:.1f}"] for v in options["variants"]])
    cost = report["reading_cost"]
    lines += ["### Reading cost", "",
              f"At {_label(cost['articles'])}, a question reads a median {cost['windows_median']:.0f} windows, "
              f"{cost['tokens_median']:.0f} tokens with padding: {cost['gflop_per_question_median']:.1f} GFLOP "
              f"through {cost['layers']} layers of width {cost['hidden_size']} (the naive baseline: "
              f"{cost['naive_windows_median']:.0f} windows, {cost['naive_tokens_median']:.0f} tokens, "
              f"{cost['naive_gflop_per_question_median']:.1f} GFLOP). At the measured {cost['read_ms_median']:.0f} ms "
              f"that is {cost['achieved_gflop_per_s']:.0f} GFLOP/s, against {cost['matmul_gflop_per_s']:.0f} GFLOP/s "
              f"for a plain 1024² float32 matmul on this machine ({cost['efficiency']:.0%}).", "", "### Targets", ""]
    lines += _table(["target", "wanted", "measured", "met"],
                    [[t["name"], t["target"], f"{t['measured']:.1f} {t['unit']}", "yes" if t["met"] else "**no**"]
                     for t in report["targets"]])
    return "\n".join(lines).strip() + "\n"


def write_markdown(path: str | Path, markdown: str) -> None:
    """Put the rendered report between the bench markers of `path`, keeping the text around them.

    A file without markers (or no file) gets a title and the markers, so hand-written analysis can follow.
    """
    path = Path(path)
    block = f"{_BEGIN}\n{markdown}{_END}"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if _BEGIN in old and _END in old:
        before, rest = old.split(_BEGIN, 1)
        new = before + block + rest.split(_END, 1)[1]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "# Benchmarks\n\n") + block + "\n"
    path.write_text(new, encoding="utf-8")
