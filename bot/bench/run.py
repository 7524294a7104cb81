"""Benchmarks on this machine: ingestion, answer latency per corpus size, memory, cold start, a naive baseline.

Corpora are built from the SQuAD v1.1 training contexts so retrieval sees real term statistics; the questions
come from the same file with their gold answers (`bot.bench.corpus`). Everything is measured through the
production classes (`Store.add_article`, `AnsweringService`, `Reader`), so this module sits beside `service` (it
takes a `ReaderConfig` and plain arguments and never reads `Settings`). Results are the records of
`bot.bench.report`, which also judges and renders them.

    report = run_benchmarks("train-v1.1.json.gz", reader=ReaderConfig("models/reader"), sizes=(1000, 10000))
    print(render_markdown(report))  # from bot.bench.report
"""

from __future__ import annotations

import cProfile
import dataclasses
import math
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.bench.corpus import (
    SEED,
    BenchQuestion,
    Progress,
    build_articles,
    ensure_corpus_db,
    ensure_pg_corpus,
    fresh_store,
    load_squad_corpus,
    pick_questions,
    used_bytes,
)
from bot.bench.engines import measure_engines
from bot.bench.report import (
    PARTS,
    AnsweringRow,
    BenchReport,
    ColdStart,
    CorpusRow,
    IngestionResult,
    ReaderOptionsResult,
    ReadingCost,
    Summary,
    VariantResult,
    WayResult,
    evaluate_targets,
    size_label,
)
from bot.bench.scoping import ensure_split_db, measure_scoping, question_collections
from bot.bench.tally import Tally
from bot.core.confidence import Calibrator
from bot.core.reader import DTYPES, Reader, ReaderConfig
from bot.core.records import Article
from bot.core.retrieve import Retriever, fts_query
from bot.core.service import AnsweringService
from bot.core.text import split_sentences
from bot.errors import ConfigError
from bot.store.sqlite import PASSAGE_MAX_WORDS, SQLiteStore

__all__ = [
    "run_benchmarks",
    "parse_parts",
    "measure_answering",
    "measure_ingestion",
    "measure_cold_start",
    "reader_variants",
    "measure_reader_options",
    "measure_reading_cost",
    "ReaderVariant",
]

WARMUP_QUESTIONS = 5
COLD_START_QUESTIONS = 20
INGEST_ARTICLES = 1000
PROFILE_ARTICLES = 200


# Measurements ---------------------------------------------------------------------------------------------------


_NAIVE_SQL = (
    "select a.body from articles_fts join articles a on a.id = articles_fts.rowid "
    "where articles_fts match :query order by bm25(articles_fts, 0.5, 1.0) limit :limit"
)


def _naive_answer_contexts(store: SQLiteStore, question: str, top_k: int) -> list[str]:
    """The bodies of the top-k articles by article-level BM25 (the `articles_fts` index built for the baseline)."""
    query = fts_query(question)
    return [row["body"] for row in store.db.query(_NAIVE_SQL, {"query": query, "limit": top_k})] if query else []


def _naive_answer(
    store: SQLiteStore, reader: Reader, question: str, top_k: int
) -> tuple[str | None, list[str], float, float]:
    """Read the top-k whole articles with the reader's sliding window.

    :returns: (answer text or None, the article bodies read, retrieve ms, read ms)
    """
    started = time.perf_counter()
    bodies = _naive_answer_contexts(store, question, top_k)
    retrieved = time.perf_counter()
    span = reader.best(question, bodies) if bodies else None
    read = time.perf_counter()
    return span.text if span else None, bodies, (retrieved - started) * 1000, (read - retrieved) * 1000


def measure_answering(
    store: SQLiteStore,
    reader: Reader,
    questions: Sequence[BenchQuestion],
    *,
    top_k: int,
    warmup: Sequence[BenchQuestion] = (),
) -> tuple[WayResult, WayResult, float]:
    """Our pipeline and the naive baseline on the same questions, interleaved question by question.

    The baseline reads through its own connection: sharing one would let its article-level index and whole bodies
    evict our passages from SQLite's page cache, which no real deployment of either approach would suffer.

    :returns: (pipeline, naive, speed-up of the pipeline's median total over the baseline's)
    """
    retriever = Retriever(store, top_k=top_k)
    always = Calibrator.raw(answer_threshold=0.0, hedge_threshold=0.0)  # every question answered, as in SQuAD v1.1
    service = AnsweringService(store=store, retriever=retriever, reader=reader, calibrator=always)
    naive_store = SQLiteStore(store.path)
    try:
        for question in warmup:
            service.answer(question.question)
            _naive_answer(naive_store, reader, question.question, top_k)
        pipeline, naive = Tally(), Tally()
        for question in questions:
            answer = service.answer(question.question)
            pipeline.add_answered(question, answer.text, service, retriever)
            text, bodies, retrieve_ms, read_ms = _naive_answer(naive_store, reader, question.question, top_k)
            naive.add(question, text, bodies, retrieve_ms=retrieve_ms, read_ms=read_ms, total_ms=retrieve_ms + read_ms)
    finally:
        naive_store.close()
    ours, theirs = pipeline.result(), naive.result()
    speedup = (theirs.total_ms or Summary()).median / max((ours.total_ms or Summary()).median, 1e-9)
    return ours, theirs, speedup


def _profile_ingestion(articles: Sequence[Article], db_path: Path) -> dict:
    """cProfile of storing `articles`: where the time goes, and how many transactions each article commits."""
    store = fresh_store(db_path)
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
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]  # {(file, line, name): (calls, primitive, own_s, cumulative_s, callers)}
    total = sum(own for _, _, own, _, _ in stats.values()) or 1e-9

    def cumulative(file_end: str, name: str) -> float:
        return (
            sum(
                cum
                for (file, _, func), (_, _, _, cum, _) in stats.items()
                if func == name and file.replace("\\", "/").endswith(file_end)
            )
            / total
        )

    top = sorted(stats.items(), key=lambda item: -item[1][2])[:8]
    return {
        "articles": len(articles),
        "commits_per_article": sum(s.strip().upper() == "COMMIT" for s in statements) / max(len(articles), 1),
        "split_share": cumulative("bot/core/text.py", "split_sentences"),
        "sqlite_share": sum(own for (_, _, func), (_, _, own, _, _) in stats.items() if "sqlite3." in func) / total,
        "top": [
            {
                "function": f"{Path(file).name}:{line}({name})" if line else name,
                "own_share": own / total,
                "calls": calls,
            }
            for (file, line, name), (calls, _, own, _, _) in top
        ],
    }


def measure_ingestion(articles: Sequence[Article], workdir: Path) -> IngestionResult:
    """Articles/s into a fresh database through `Store.add_article`, the time sentence splitting alone takes,
    and a profile of the first `PROFILE_ARTICLES` articles."""
    db_path = workdir / "ingest-probe.db"
    store = fresh_store(db_path)
    started = time.perf_counter()
    with store.bulk():  # as `qa-bot ingest` stores a batch
        for article in articles:
            store.add_article(article)
    seconds = time.perf_counter() - started
    used_mb = used_bytes(store) / 1e6
    store.close()
    started = time.perf_counter()
    for article in articles:
        split_sentences(article.body)
    split_s = time.perf_counter() - started
    profile = _profile_ingestion(articles[:PROFILE_ARTICLES], db_path)
    for stale in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        stale.unlink(missing_ok=True)
    return IngestionResult(
        articles=len(articles),
        seconds=seconds,
        articles_per_s=len(articles) / seconds,
        db_mb_per_1k_articles=used_mb * 1000 / max(len(articles), 1),
        split_s=split_s,
        split_articles_per_s=len(articles) / max(split_s, 1e-9),
        profile=profile,
    )


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


def measure_cold_start(
    db_path: Path, questions: Sequence[BenchQuestion], *, reader: ReaderConfig, top_k: int, articles: int
) -> ColdStart:
    """A fresh `qa-bot ask --json` answering questions from stdin: seconds to the first answer, peak RSS.

    :raises ConfigError: when `qa-bot ask` fails or answers fewer questions than it was asked.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("QABOT_")}
    env.update(
        PYTHONUNBUFFERED="1",
        QABOT_READER_MODEL=reader.model,
        QABOT_TOP_K=str(top_k),
        QABOT_READER_DTYPE=reader.dtype,
        QABOT_MAX_LENGTH=str(reader.max_length),
        QABOT_DOC_STRIDE=str(reader.doc_stride),
        QABOT_MAX_ANSWER_TOKENS=str(reader.max_answer_tokens),
    )
    if reader.threads:
        env["QABOT_THREADS"] = str(reader.threads)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*_qa_bot_command(), "ask", "--json", "--db", str(db_path)],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert process.stdin is not None and process.stdout is not None  # both are pipes
        memory = _PeakRss(process.pid)
        memory.start()
        process.stdin.write("".join(q.question.replace("\n", " ") + "\n" for q in questions))
        process.stdin.close()
        first_line = process.stdout.readline()
        first_s = time.perf_counter() - started
        answered = 1 + len(process.stdout.readlines()) if first_line else 0
        process.wait()
        total_s = time.perf_counter() - started
        memory.stopped.set()
        memory.join()
        errors.seek(0)
        if process.returncode != 0 or answered != len(questions):
            raise ConfigError(
                f"qa-bot ask failed on {db_path} (exit {process.returncode}): {errors.read().strip()[-500:]}"
            )
    return ColdStart(
        articles=articles,
        label=size_label(articles),
        first_answer_s=first_s,
        questions=answered,
        total_s=total_s,
        peak_rss_mb=memory.peak_kb / 1024,
    )


@dataclass(frozen=True)
class ReaderVariant:
    """A named way of reading: a reader configuration and how many passages it reads."""

    name: str
    reader: ReaderConfig
    top_k: int


def reader_variants(config: ReaderConfig, *, top_k: int) -> list[ReaderVariant]:
    """The configured reader first, then one change at a time (dtype, threads, top_k), then int8 with fewer passages.

    No max_length variant: a passage of about 80 words almost always fits one window of under 200 tokens.
    `config.threads` must be set (the benchmark fills in torch's choice).
    """
    threads = config.threads or 1
    variants = [ReaderVariant("configured", config, top_k)]
    for other in DTYPES:
        if other != config.dtype:
            variants.append(ReaderVariant(f"dtype={other}", dataclasses.replace(config, dtype=other), top_k))
    other_threads = 1 if threads != 1 else os.cpu_count() or 1
    if other_threads != threads:
        variants.append(
            ReaderVariant(f"threads={other_threads}", dataclasses.replace(config, threads=other_threads), top_k)
        )
    for k in sorted({1, max(1, top_k - 2), top_k + 3} - {top_k}):
        variants.append(ReaderVariant(f"top_k={k}", config, k))
    variants.append(
        ReaderVariant(f"int8, top_k={max(1, top_k - 2)}", dataclasses.replace(config, dtype="int8"), max(1, top_k - 2))
    )
    return variants


def measure_reader_options(
    store: SQLiteStore,
    questions: Sequence[BenchQuestion],
    variants: Sequence[ReaderVariant],
    *,
    warmup: Sequence[BenchQuestion] = (),
) -> list[VariantResult]:
    """Reading time and quality of each variant on the same retrieved passages, interleaved per question."""
    import torch

    # threads are set per read below (a process-wide setting), not by each reader
    readers = [Reader.from_config(dataclasses.replace(v.reader, threads=None)).load() for v in variants]
    retriever = Retriever(store, top_k=max(v.top_k for v in variants))
    tallies = [Tally() for _ in variants]
    for index, question in enumerate([*warmup, *questions]):
        passages = [p.text for p in retriever.run(question.question)]
        for variant, reader, tally in zip(variants, readers, tallies):
            torch.set_num_threads(variant.reader.threads or 1)  # a process-wide setting: set it for every read
            contexts = passages[: variant.top_k]
            started = time.perf_counter()
            spans = reader.run(question.question, contexts) if contexts else []
            read_ms = (time.perf_counter() - started) * 1000
            if index >= len(warmup):
                tally.add(question, spans[0].text if spans else None, contexts, read_ms=read_ms)
    torch.set_num_threads(variants[0].reader.threads or 1)
    results = []
    for variant, tally in zip(variants, tallies):
        way = tally.result()
        results.append(
            VariantResult(
                name=variant.name,
                dtype=variant.reader.dtype,
                threads=variant.reader.threads or 1,
                top_k=variant.top_k,
                max_length=variant.reader.max_length,
                read_ms=way.read_ms,
                em=way.em,
                f1=way.f1,
            )
        )
    return results


def measure_reading_cost(
    store: SQLiteStore,
    reader: ReaderConfig,
    questions: Sequence[BenchQuestion],
    *,
    top_k: int,
    read_ms_median: float,
    articles: int,
) -> ReadingCost:
    """Forward-pass FLOPs per question (from the model shape and the windows read) against a plain matmul's speed,
    for our passages and for the naive baseline's whole articles."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    model, max_length, doc_stride = reader.model, reader.max_length, reader.doc_stride
    local = Path(model).is_dir()
    config = AutoConfig.from_pretrained(model, local_files_only=local)
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local)
    hidden, layers, inner = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    retriever = Retriever(store, top_k=top_k)

    def cost(question: str, contexts: list[str]) -> tuple[int, int, float]:
        """(windows, tokens read with padding, FLOPs) of one reader call, tokenised as `Reader.run` does."""
        if not contexts:
            return 0, 0, 0.0
        encoded = tokenizer(
            [question] * len(contexts),
            contexts,
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            padding="longest",
        )
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
    matmul_gflops = 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9

    def median(rows: list[tuple[int, int, float]], column: int) -> float:
        return float(np.median([row[column] for row in rows])) if rows else 0.0

    gflop = median(ours, 2) / 1e9
    achieved = gflop / (read_ms_median / 1000) if read_ms_median > 0 else 0.0
    return ReadingCost(
        articles=articles,
        hidden_size=hidden,
        layers=layers,
        intermediate_size=inner,
        windows_median=median(ours, 0),
        tokens_median=median(ours, 1),
        gflop_per_question_median=gflop,
        naive_windows_median=median(naive, 0),
        naive_tokens_median=median(naive, 1),
        naive_gflop_per_question_median=median(naive, 2) / 1e9,
        read_ms_median=read_ms_median,
        achieved_gflop_per_s=achieved,
        matmul_gflop_per_s=matmul_gflops,
        efficiency=achieved / matmul_gflops if matmul_gflops else 0.0,
    )


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
    return {
        "cpu_cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def _corpus_row(n: int, meta: dict) -> CorpusRow:
    return CorpusRow(
        articles=n,
        label=size_label(n),
        passages=meta["passages"],
        sentences=meta["sentences"],
        db_mb=meta["db_mb"],
        db_mb_per_1k_articles=meta["db_mb"] * 1000 / n,
        build_articles_per_s=meta["build_articles_per_s"],
        built_this_run=meta["built_this_run"],
    )


def parse_parts(parts: str | Sequence[str] | None, *, postgres_url: str | None) -> list[str]:
    """The parts a run measures, in `PARTS` order: all of them by default (`engines` only with a PostgreSQL URL).

        >>> parse_parts("scoping, engines", postgres_url="postgresql://localhost/postgres")
        ['scoping', 'engines']

    :raises ConfigError: for a part that does not exist, or `engines` without a PostgreSQL URL.
    """
    if parts is None:
        return [part for part in PARTS if part != "engines" or postgres_url]
    names = [part.strip() for part in (parts.split(",") if isinstance(parts, str) else parts) if part.strip()]
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise ConfigError(
            f"Unknown benchmark part(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PARTS)}."
        )
    if "engines" in names and not postgres_url:
        raise ConfigError(
            "The engines part compares SQLite with PostgreSQL: pass --postgres with the URL of a PostgreSQL "
            "server, e.g. --postgres postgresql://postgres@127.0.0.1:5432/postgres"
        )
    return [part for part in PARTS if part in names]


def run_benchmarks(
    squad_path: str | Path,
    *,
    reader: ReaderConfig | None,
    sizes: Sequence[int] = (1000, 10_000, 100_000),
    n_questions: int = 200,
    top_k: int = 5,
    workdir: str | Path = "bench-data",
    ingest_articles: int = INGEST_ARTICLES,
    command: str = "",
    progress: Progress | None = None,
    parts: Sequence[str] | None = None,
    postgres_url: str | None = None,
) -> BenchReport:
    """Build (or reuse) the corpora, then measure everything on this machine (or the chosen `parts`).

        report = run_benchmarks("train-v1.1.json.gz", reader=settings.reader_config(), sizes=(1000, 10000))

    :param squad_path: SQuAD v1.1 JSON (optionally .gz) supplying contexts, questions and gold answers.
    :param reader: the configured reader, used for every reading here and in the cold-start subprocess; the
        reader-options table changes one of its fields (or `top_k`) at a time. None: a `ConfigError`.
    :param sizes: corpus sizes in articles; questions come from the smallest, which every larger one contains.
    :param n_questions: measured questions per size (after `WARMUP_QUESTIONS` unmeasured ones).
    :param top_k: passages the retriever gives the reader.
    :param workdir: where corpus databases are built and kept between runs (ignored by git).
    :param ingest_articles: articles ingested into a fresh database to measure ingestion speed.
    :param command: the command line, recorded in the report.
    :param parts: what to measure, of `PARTS` (see `parse_parts`); None: everything.
    :param postgres_url: a PostgreSQL server where the `engines` part builds its corpora (`qabot_bench_<size>`).
    :raises QABotError: when the data or the model cannot be read, or `qa-bot ask` fails.
    """
    import torch

    say = progress or (lambda message: None)
    if reader is None:
        raise ConfigError(
            "No reader model configured. Pass --model DIR or set QABOT_READER_MODEL to a local "
            "extractive-QA model folder."
        )
    if not sizes or min(sizes) <= 0 or n_questions <= 0:
        raise ConfigError(f"sizes and questions must be positive, got sizes={list(sizes)} questions={n_questions}")
    chosen = parse_parts(parts, postgres_url=postgres_url)
    sizes = sorted(set(sizes))
    squad_path, workdir = Path(squad_path), Path(workdir)
    squad = load_squad_corpus(squad_path)
    reader = dataclasses.replace(reader, threads=reader.threads or torch.get_num_threads())
    threads = reader.threads or 1
    torch.set_num_threads(threads)
    settings = {
        "top_k": top_k,
        "dtype": reader.dtype,
        "max_length": reader.max_length,
        "doc_stride": reader.doc_stride,
        "max_answer_tokens": reader.max_answer_tokens,
        "threads": threads,
        "passage_max_words": PASSAGE_MAX_WORDS,
        "questions": n_questions,
        "warmup_questions": WARMUP_QUESTIONS,
        "seed": SEED,
        "answer_threshold": 0.0,
    }

    say(f"building or reusing corpora {', '.join(map(size_label, sizes))} in {workdir}")
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
    corpus_rows = [_corpus_row(n, meta) for n, _, meta in corpora]

    ingestion = None
    if "ingestion" in chosen:
        say(f"ingestion: {ingest_articles} articles into a fresh database")
        probe = [article for article, _ in build_articles(squad, max(ingest_articles, 1))]
        ingestion = measure_ingestion(probe, workdir)

    loaded = Reader.from_config(reader).load() if {"answering", "engines", "reader-options"} & set(chosen) else None
    answering = []
    if "answering" in chosen:
        assert loaded is not None
        for n, db_path, meta in corpora:
            say(f"answering at {size_label(n)}: {len(questions)} questions, pipeline and naive side by side")
            store = SQLiteStore(db_path)
            pipeline, naive, speedup = measure_answering(store, loaded, questions, top_k=top_k, warmup=warmup)
            store.close()
            answering.append(
                AnsweringRow(
                    articles=n,
                    label=size_label(n),
                    passages=meta["passages"],
                    questions=len(questions),
                    pipeline=pipeline,
                    naive=naive,
                    speedup=speedup,
                )
            )

    largest_n, largest_db, largest_meta = corpora[-1]
    cold_start = None
    if "cold-start" in chosen:
        say(f"cold start at {size_label(largest_n)}: a fresh qa-bot ask")
        cold_start = measure_cold_start(
            largest_db, questions[:COLD_START_QUESTIONS], reader=reader, top_k=top_k, articles=largest_n
        )

    reader_options = reading_cost = None
    if "reader-options" in chosen:
        assert loaded is not None
        options_n, options_db, _ = min(corpora, key=lambda c: abs(math.log(c[0] / 10_000)))
        say(f"reader options at {size_label(options_n)}")
        store = SQLiteStore(options_db)
        variants = reader_variants(reader, top_k=top_k)
        reader_options = ReaderOptionsResult(
            articles=options_n,
            label=size_label(options_n),
            questions=len(questions),
            variants=measure_reader_options(store, questions, variants, warmup=warmup),
        )
        configured = next((row for row in answering if row.articles == options_n), None)
        if configured is not None:  # the reading cost takes the answering part's read time
            reading_cost = measure_reading_cost(
                store,
                reader,
                questions,
                top_k=top_k,
                articles=options_n,
                read_ms_median=configured.pipeline.read_ms.median,
            )
        store.close()

    scoping = None
    if "scoping" in chosen:
        say(f"scoping at {size_label(largest_n)}: unscoped and scoped retrieval side by side")
        split_db = ensure_split_db(largest_db, largest_meta["recipe"], progress=say)
        scoping = measure_scoping(
            largest_db,
            split_db,
            questions,
            own_collection=question_collections(squad, sizes[0], questions),
            top_k=top_k,
            articles=largest_n,
            warmup=warmup,
        )

    engines, pg_corpora = [], []
    if "engines" in chosen:
        assert loaded is not None and postgres_url is not None
        from bot.store.postgres import PostgresStore

        for n, db_path, meta in corpora:
            say(f"PostgreSQL at {size_label(n)}: building or reusing its corpus")
            url, pg_meta = ensure_pg_corpus(squad, n, postgres_url, squad_path=squad_path, progress=say)
            pg_corpora.append(_corpus_row(n, pg_meta))
            say(f"engines at {size_label(n)}: {len(questions)} questions, SQLite and PostgreSQL side by side")
            lite, pg = SQLiteStore(db_path), PostgresStore(url)
            try:
                engines.append(
                    measure_engines(
                        lite,
                        pg,
                        loaded,
                        questions,
                        top_k=top_k,
                        articles=n,
                        passages=meta["passages"],
                        warmup=warmup,
                    )
                )
            finally:
                lite.close()
                pg.close()

    report = BenchReport(
        command=command,
        machine=_machine(),
        model={"path": reader.model, "name": Path(reader.model).name},
        settings=settings,
        corpora=corpus_rows,
        ingestion=ingestion,
        answering=answering,
        cold_start=cold_start,
        reader_options=reader_options,
        reading_cost=reading_cost,
        bench_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        parts=chosen,
        engines=engines,
        pg_corpora=pg_corpora,
        scoping=scoping,
    )
    report.targets = evaluate_targets(report)
    return report
