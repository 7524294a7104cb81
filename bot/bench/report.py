"""The benchmark report: its records, the project's targets, and the Markdown tables of BENCHMARKS.md.

`bot.bench.run.run_benchmarks` fills a `BenchReport`; this module defines it, judges it against what the project
promised (`TARGETS`, `evaluate_targets`), renders it (`render_markdown`) and puts the tables between the bench
markers of a file without touching the hand-written analysis around them (`write_markdown`). A run of some parts
only (`qa-bot bench --parts`) replaces just its own sections there and its own rows of the targets table
(`merge=True`). A stored report (`qa-bot bench --json`) is read back with `BenchReport.from_dict` and rendered
again without measuring anything.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TARGETS",
    "Target",
    "TargetResult",
    "Summary",
    "WayResult",
    "AnsweringRow",
    "ColdStart",
    "CorpusRow",
    "IngestionResult",
    "VariantResult",
    "ReaderOptionsResult",
    "ReadingCost",
    "EngineRow",
    "ScopingRow",
    "ScopingResult",
    "PARTS",
    "BenchReport",
    "evaluate_targets",
    "size_label",
    "render_markdown",
    "write_markdown",
]

_BEGIN, _END = "<!-- bench:begin -->", "<!-- bench:end -->"

# What `qa-bot bench --parts` can measure; `engines` needs a PostgreSQL server (--postgres).
PARTS = ("answering", "ingestion", "cold-start", "reader-options", "scoping", "engines")


def size_label(n_articles: int) -> str:
    """A corpus size as the report writes it: `10000` → `"10k"`."""
    return f"{n_articles // 1000}k" if n_articles >= 1000 and n_articles % 1000 == 0 else str(n_articles)


# Records ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Median, 95th percentile and mean of one measurement (ms)."""

    median: float = 0.0
    p95: float = 0.0
    mean: float = 0.0

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """The summary of some measurements (all zero for none)."""
        import numpy as np

        if not values:
            return cls()
        median, p95 = np.percentile(values, [50, 95])
        return cls(float(median), float(p95), float(np.mean(values)))


@dataclass(frozen=True)
class WayResult:
    """One way of answering (our pipeline, the naive baseline, a reader variant) over the measured questions.

    Times are `None` when that way does not measure them (reader variants time only reading).
    """

    em: float
    f1: float
    answer_in_context: float
    read_ms: Summary
    retrieve_ms: Summary | None = None
    total_ms: Summary | None = None


@dataclass(frozen=True)
class AnsweringRow:
    """Our pipeline and the naive baseline at one corpus size; `speedup` compares their median totals."""

    articles: int
    label: str
    passages: int
    questions: int
    pipeline: WayResult
    naive: WayResult
    speedup: float


@dataclass(frozen=True)
class ColdStart:
    """A fresh `qa-bot ask --json` on the largest corpus: seconds to its first answer and its peak memory."""

    articles: int
    label: str
    first_answer_s: float
    questions: int
    total_s: float
    peak_rss_mb: float


@dataclass(frozen=True)
class CorpusRow:
    """One benchmark corpus database and how it was built."""

    articles: int
    label: str
    passages: int
    sentences: int
    db_mb: float
    db_mb_per_1k_articles: float
    build_articles_per_s: float
    built_this_run: bool


@dataclass(frozen=True)
class IngestionResult:
    """Storing articles into a fresh database, with a cProfile of the first few hundred (`profile`)."""

    articles: int
    seconds: float
    articles_per_s: float
    db_mb_per_1k_articles: float
    split_s: float
    split_articles_per_s: float
    profile: dict[str, Any]


@dataclass(frozen=True)
class VariantResult:
    """One reader variant (dtype, threads, top_k...) read over the same passages as the configured reader."""

    name: str
    dtype: str
    threads: int
    top_k: int
    max_length: int
    read_ms: Summary
    em: float
    f1: float


@dataclass(frozen=True)
class ReaderOptionsResult:
    """Every reader variant at the corpus size nearest 10k."""

    articles: int
    label: str
    questions: int
    variants: list[VariantResult]


@dataclass(frozen=True)
class ReadingCost:
    """Forward-pass FLOPs per question against a plain matmul's speed, ours and the naive baseline's."""

    articles: int
    hidden_size: int
    layers: int
    intermediate_size: int
    windows_median: float
    tokens_median: float
    gflop_per_question_median: float
    naive_windows_median: float
    naive_tokens_median: float
    naive_gflop_per_question_median: float
    read_ms_median: float
    achieved_gflop_per_s: float
    matmul_gflop_per_s: float
    efficiency: float


@dataclass(frozen=True)
class EngineRow:
    """SQLite and PostgreSQL answering the same questions at one corpus size, interleaved; `same_passages` is the
    share of questions (%) both engines gave the reader the same passages for, in the same order."""

    articles: int
    label: str
    passages: int
    questions: int
    sqlite: WayResult
    postgres: WayResult
    same_passages: float


@dataclass(frozen=True)
class ScopingRow:
    """Retrieval with one scope on one corpus (`general`: every article there; `split`: articles in three
    collections), against unscoped on the same corpus: `added_ms` compares medians, `added_paired_ms` is the
    median of the per-question differences."""

    scope: str
    corpus: str
    retrieve_ms: Summary
    added_ms: float
    added_paired_ms: float
    answer_in_passages: float
    same_as_unscoped: float


@dataclass(frozen=True)
class ScopingResult:
    """Scoped and unscoped retrieval at the largest corpus; `split` names the split copy's collections."""

    articles: int
    label: str
    questions: int
    split: list[str]
    rows: list[ScopingRow]

    def row(self, scope: str, corpus: str) -> ScopingRow | None:
        return next((r for r in self.rows if (r.scope, r.corpus) == (scope, corpus)), None)


@dataclass(frozen=True)
class TargetResult:
    """One target, judged: what was wanted, what was measured, and whether it was met."""

    name: str
    target: str
    measured: float
    unit: str
    met: bool


@dataclass
class BenchReport:
    """Everything one `qa-bot bench` run measured; `machine`, `model` and `settings` describe the set-up.

    A part left out of the run (`parts`) is None, or an empty list.
    """

    command: str
    machine: dict[str, Any]
    model: dict[str, Any]
    settings: dict[str, Any]
    corpora: list[CorpusRow]
    ingestion: IngestionResult | None
    answering: list[AnsweringRow]
    cold_start: ColdStart | None
    reader_options: ReaderOptionsResult | None
    reading_cost: ReadingCost | None
    bench_peak_rss_mb: float
    targets: list[TargetResult] = field(default_factory=list)
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    engines: list[EngineRow] = field(default_factory=list)
    pg_corpora: list[CorpusRow] = field(default_factory=list)
    scoping: ScopingResult | None = None

    @property
    def is_partial(self) -> bool:
        """Whether only some parts were measured (`engines`, which needs a server, does not count): the report then
        has no first lines of its own, and its sections name the command that measured them."""
        return not set(PARTS) - {"engines"} <= set(self.parts)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (what `qa-bot bench --json` prints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchReport:
        """A report read back from `to_dict()` output (e.g. a stored `qa-bot bench --json`)."""

        def summary(value: dict | None) -> Summary | None:
            return Summary(**value) if value is not None else None

        def way(value: dict) -> WayResult:
            return WayResult(
                em=value["em"],
                f1=value["f1"],
                answer_in_context=value["answer_in_context"],
                read_ms=Summary(**value["read_ms"]),
                retrieve_ms=summary(value.get("retrieve_ms")),
                total_ms=summary(value.get("total_ms")),
            )

        options = data.get("reader_options")
        scoping = data.get("scoping")
        return cls(
            command=data["command"],
            machine=data["machine"],
            model=data["model"],
            settings=data["settings"],
            corpora=[CorpusRow(**row) for row in data["corpora"]],
            ingestion=IngestionResult(**data["ingestion"]) if data.get("ingestion") else None,
            answering=[
                AnsweringRow(**{**row, "pipeline": way(row["pipeline"]), "naive": way(row["naive"])})
                for row in data["answering"]
            ],
            cold_start=ColdStart(**data["cold_start"]) if data.get("cold_start") else None,
            reader_options=ReaderOptionsResult(
                **{
                    **options,
                    "variants": [
                        VariantResult(**{**v, "read_ms": Summary(**v["read_ms"])}) for v in options["variants"]
                    ],
                }
            )
            if options
            else None,
            reading_cost=ReadingCost(**data["reading_cost"]) if data.get("reading_cost") else None,
            bench_peak_rss_mb=data["bench_peak_rss_mb"],
            targets=[TargetResult(**t) for t in data["targets"]],
            parts=data.get("parts", list(PARTS)),
            engines=[
                EngineRow(**{**row, "sqlite": way(row["sqlite"]), "postgres": way(row["postgres"])})
                for row in data.get("engines", [])
            ],
            pg_corpora=[CorpusRow(**row) for row in data.get("pg_corpora", [])],
            scoping=ScopingResult(
                **{
                    **scoping,
                    "rows": [ScopingRow(**{**r, "retrieve_ms": Summary(**r["retrieve_ms"])}) for r in scoping["rows"]],
                }
            )
            if scoping
            else None,
        )


# Targets --------------------------------------------------------------------------------------------------------

Measure = Callable[[BenchReport], float | None]


@dataclass(frozen=True)
class Target:
    """A promise about the bot's speed or quality: `measure(report)` compared with `limit` (None: not measured)."""

    name: str
    measure: Measure
    comparison: str  # "<=" or ">="
    limit: float
    unit: str

    def judge(self, report: BenchReport) -> TargetResult | None:
        measured = self.measure(report)
        if measured is None:
            return None
        met = measured <= self.limit if self.comparison == "<=" else measured >= self.limit
        return TargetResult(self.name, f"{self.comparison} {self.limit:g} {self.unit}", measured, self.unit, met)


def _at(articles: int, read: Callable[[AnsweringRow], float]) -> Measure:
    """Measure one answering row (the corpus of `articles` articles), when that size was measured."""

    def measure(report: BenchReport) -> float | None:
        row = next((row for row in report.answering if row.articles == articles), None)
        return read(row) if row else None

    return measure


def _total(way: WayResult) -> Summary:
    return way.total_ms or Summary()


def _retrieve(way: WayResult) -> Summary:
    return way.retrieve_ms or Summary()


def _engines_at(articles: int, read: Callable[[EngineRow], float]) -> Measure:
    """Measure one row of the engine comparison, when that size was measured."""

    def measure(report: BenchReport) -> float | None:
        row = next((row for row in report.engines if row.articles == articles), None)
        return read(row) if row else None

    return measure


def _recall_gap(report: BenchReport) -> float | None:
    """The largest gap between PostgreSQL's and SQLite's answer-in-passages over the sizes measured (points)."""
    gaps = [abs(row.postgres.answer_in_context - row.sqlite.answer_in_context) for row in report.engines]
    return max(gaps) if gaps else None


def _scoped(articles: int, scope: str, corpus: str, read: Callable[[ScopingRow, ScopingResult], float]) -> Measure:
    """Measure one way of scoping, when the scoping part ran at `articles`."""

    def measure(report: BenchReport) -> float | None:
        result = report.scoping
        row = result.row(scope, corpus) if result and result.articles == articles else None
        return read(row, result) if row and result else None

    return measure


def _recall_change(row: ScopingRow, result: ScopingResult) -> float:
    unscoped = result.row("unscoped", row.corpus)
    return row.answer_in_passages - (unscoped.answer_in_passages if unscoped else 0.0)


# What the project promised for a 2-core CPU.
TARGETS = (
    Target("answer median at 10k", _at(10_000, lambda row: _total(row.pipeline).median), "<=", 200, "ms"),
    Target("answer p95 at 10k", _at(10_000, lambda row: _total(row.pipeline).p95), "<=", 400, "ms"),
    Target("answer median at 100k", _at(100_000, lambda row: _total(row.pipeline).median), "<=", 300, "ms"),
    Target("retrieval median at 100k", _at(100_000, lambda row: _retrieve(row.pipeline).median), "<=", 20, "ms"),
    Target(
        "ingestion",
        lambda report: report.ingestion.articles_per_s if report.ingestion else None,
        ">=",
        500,
        "articles/s",
    ),
    Target(
        "cold start (largest corpus)",
        lambda report: report.cold_start.first_answer_s if report.cold_start else None,
        "<=",
        5,
        "s",
    ),
    Target(
        "peak RSS of qa-bot ask (largest corpus)",
        lambda report: report.cold_start.peak_rss_mb if report.cold_start else None,
        "<=",
        1024,
        "MB",
    ),
    Target(
        "speed-up over naive (worst size)",
        lambda report: min((row.speedup for row in report.answering), default=None),
        ">=",
        3,
        "x",
    ),
    Target(
        "F1 minus naive F1 (worst size)",
        lambda report: min((row.pipeline.f1 - row.naive.f1 for row in report.answering), default=None),
        ">=",
        0,
        "points",
    ),
    # Issue 13: questions scoped to collections.
    Target(
        "scoped to every collection at 100k: added retrieval median",
        _scoped(100_000, "every collection", "general", lambda row, _: row.added_ms),
        "<=",
        5,
        "ms",
    ),
    Target(
        "scoped to the question's collection at 100k: added retrieval median",
        _scoped(100_000, "the question's collection", "split", lambda row, _: row.added_ms),
        "<=",
        5,
        "ms",
    ),
    Target(
        "scoped to the question's collection at 100k: answer in passages change",
        _scoped(100_000, "the question's collection", "split", _recall_change),
        ">=",
        0,
        "points",
    ),
    # Issue 16: the library in PostgreSQL.
    Target("PostgreSQL answer in passages vs SQLite (largest gap)", _recall_gap, "<=", 2, "points"),
    Target(
        "PostgreSQL retrieval median at 100k",
        _engines_at(100_000, lambda row: _retrieve(row.postgres).median),
        "<=",
        30,
        "ms",
    ),
    Target(
        "PostgreSQL answer median at 100k",
        _engines_at(100_000, lambda row: _total(row.postgres).median),
        "<=",
        300,
        "ms",
    ),
)


def evaluate_targets(report: BenchReport) -> list[TargetResult]:
    """Every target the report measured, judged."""
    return [result for result in (target.judge(report) for target in TARGETS) if result is not None]


# Rendering ------------------------------------------------------------------------------------------------------


def _ms(summary: Summary | None) -> str:
    summary = summary or Summary()
    return f"{summary.median:.0f} / {summary.p95:.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _preamble(report: BenchReport) -> list[str]:
    if report.is_partial:
        return []
    machine, settings = report.machine, report.settings
    questions = report.answering[0].questions if report.answering else settings["questions"]
    return [
        f"Command: `{report.command}`" if report.command else "",
        "",
        f"Machine: {machine['cpu_cores']} CPU cores ({machine['cpu_model']}), torch {machine['torch']} with "
        f"{settings['threads']} threads, Python {machine['python']}. Reader model: `{report.model['name']}`, "
        f"dtype {settings['dtype']}, top_k {settings['top_k']}, max_length {settings['max_length']}, passages "
        f"of about {settings['passage_max_words']} words. Times are median / p95 over "
        f"{questions} questions (after {settings['warmup_questions']} warm-up), "
        "in ms unless marked.",
        "",
    ]


def _answering(report: BenchReport) -> list[str]:
    if not report.answering:
        return []
    lines = ["### Answering", ""]
    lines += _table(
        ["corpus", "passages", "retrieve ms", "read ms", "total ms", "EM", "F1", "answer in passages %"],
        [
            [
                row.label,
                row.passages,
                _ms(row.pipeline.retrieve_ms),
                _ms(row.pipeline.read_ms),
                _ms(row.pipeline.total_ms),
                f"{row.pipeline.em:.1f}",
                f"{row.pipeline.f1:.1f}",
                f"{row.pipeline.answer_in_context:.0f}",
            ]
            for row in report.answering
        ],
    )
    if cold := report.cold_start:
        lines += [
            f"Cold start at {cold.label}: a fresh `qa-bot ask --json` process gave its first answer after "
            f"**{cold.first_answer_s:.1f} s** and {cold.questions} answers after {cold.total_s:.1f} s; "
            f"its peak RSS was **{cold.peak_rss_mb:.0f} MB**. This benchmark process peaked at "
            f"{report.bench_peak_rss_mb:.0f} MB (SQuAD data and several readers loaded).",
            "",
        ]
    lines += [f"### Passages vs naive (top-{report.settings['top_k']} whole articles by BM25, sliding window)", ""]
    return lines + _table(
        [
            "corpus",
            "ours total ms",
            "naive retrieve ms",
            "naive read ms",
            "naive total ms",
            "speed-up (median)",
            "ours EM / F1",
            "naive EM / F1",
            "answer in articles %",
        ],
        [
            [
                row.label,
                _ms(row.pipeline.total_ms),
                _ms(row.naive.retrieve_ms),
                _ms(row.naive.read_ms),
                _ms(row.naive.total_ms),
                f"{row.speedup:.1f}x",
                f"{row.pipeline.em:.1f} / {row.pipeline.f1:.1f}",
                f"{row.naive.em:.1f} / {row.naive.f1:.1f}",
                f"{row.naive.answer_in_context:.0f}",
            ]
            for row in report.answering
        ],
    )


def _ingestion(report: BenchReport) -> list[str]:
    ingestion = report.ingestion
    if ingestion is None:
        return []
    profile = ingestion.profile
    lines = [
        "### Ingestion",
        "",
        f"Fresh database, {ingestion.articles} articles through `Store.add_article` in `Store.bulk()` "
        f"(as `qa-bot ingest` stores a batch): "
        f"**{ingestion.articles_per_s:.0f} articles/s**, {ingestion.db_mb_per_1k_articles:.1f} MB per "
        f"1k articles. Sentence splitting alone runs at {ingestion.split_articles_per_s:.0f} articles/s. "
        f"cProfile of {profile['articles']} articles: `split_sentences` (sentencex) "
        f"{profile['split_share']:.0%} of the time; SQLite calls {profile['sqlite_share']:.0%}; "
        f"{profile['commits_per_article']:.1f} commits per article.",
        "",
    ]
    lines += _corpus_table(report.corpora)
    lines += ["Top functions by own time in that profile:", ""]
    return lines + _table(
        ["function", "share of time", "calls"],
        [[f"`{p['function']}`", f"{p['own_share']:.0%}", p["calls"]] for p in profile["top"]],
    )


def _corpus_table(corpora: Sequence[CorpusRow]) -> list[str]:
    return _table(
        ["corpus", "articles", "passages", "sentences", "DB MB", "MB per 1k articles", "built at articles/s"],
        [
            [
                c.label,
                c.articles,
                c.passages,
                c.sentences,
                f"{c.db_mb:.0f}",
                f"{c.db_mb_per_1k_articles:.1f}",
                f"{c.build_articles_per_s:.0f}" + ("" if c.built_this_run else " (earlier run)"),
            ]
            for c in corpora
        ],
    )


def _reader_options(report: BenchReport) -> list[str]:
    options = report.reader_options
    if options is None:
        return []
    lines = [f"### Reader options at {options.label} (same retrieved passages, interleaved per question)", ""]
    lines += _table(
        ["variant", "dtype", "threads", "top_k", "max_length", "read ms", "EM", "F1"],
        [
            [v.name, v.dtype, v.threads, v.top_k, v.max_length, _ms(v.read_ms), f"{v.em:.1f}", f"{v.f1:.1f}"]
            for v in options.variants
        ],
    )
    if (cost := report.reading_cost) is None:
        return lines
    return lines + [
        "### Reading cost",
        "",
        f"At {size_label(cost.articles)}, a question reads a median {cost.windows_median:.0f} windows, "
        f"{cost.tokens_median:.0f} tokens with padding: {cost.gflop_per_question_median:.1f} GFLOP "
        f"through {cost.layers} layers of width {cost.hidden_size} (the naive baseline: "
        f"{cost.naive_windows_median:.0f} windows, {cost.naive_tokens_median:.0f} tokens, "
        f"{cost.naive_gflop_per_question_median:.1f} GFLOP). At the measured {cost.read_ms_median:.0f} ms "
        f"that is {cost.achieved_gflop_per_s:.0f} GFLOP/s, against {cost.matmul_gflop_per_s:.0f} GFLOP/s "
        f"for a plain 1024² float32 matmul on this machine ({cost.efficiency:.0%}).",
        "",
    ]


def _measured_by(report: BenchReport) -> list[str]:
    """A partial run's sections name their own command (the block's first line names the full run's)."""
    if not report.is_partial or not report.command:
        return []
    questions = report.settings["questions"]
    return [
        f"Measured by `{report.command}` ({questions} questions after {report.settings['warmup_questions']} "
        "warm-up; times are median / p95 in ms).",
        "",
    ]


def _engines(report: BenchReport) -> list[str]:
    if not report.engines:
        return []
    lines = ["### PostgreSQL beside SQLite (same corpus, same questions, interleaved)", "", *_measured_by(report)]
    lines += _table(
        ["corpus", "engine", "retrieve ms", "read ms", "total ms", "EM", "F1", "answer in passages %"],
        [
            [
                row.label if engine == "SQLite" else "",
                engine,
                _ms(way.retrieve_ms),
                _ms(way.read_ms),
                _ms(way.total_ms),
                f"{way.em:.1f}",
                f"{way.f1:.1f}",
                f"{way.answer_in_context:.1f}",
            ]
            for row in report.engines
            for engine, way in (("SQLite", row.sqlite), ("PostgreSQL", row.postgres))
        ],
    )
    same = ", ".join(f"{row.same_passages:.0f}% at {row.label}" for row in report.engines)
    lines += [f"Both engines gave the reader the same passages in the same order for {same} of the questions.", ""]
    if report.pg_corpora:
        lines += ["PostgreSQL corpora, built once through `PostgresStore.add_article` in `Store.bulk()`:", ""]
        lines += _corpus_table(report.pg_corpora)
    return lines


def _scoping(report: BenchReport) -> list[str]:
    result = report.scoping
    if result is None:
        return []
    lines = [
        f"### Scoping at {result.label} (collections, side by side per question)",
        "",
        *_measured_by(report),
        f"Retrieval only, {result.questions} questions. `general`: the corpus as built, every article in `general`; "
        f"`split`: a copy with its articles in three collections by a hash of their key ({', '.join(result.split)}). "
        "Added ms: the scope's median less the unscoped median on the same corpus (in brackets: the median of the "
        "per-question differences).",
        "",
    ]
    return lines + _table(
        ["corpus", "scope", "retrieve ms", "added ms", "answer in passages %", "same passages as unscoped %"],
        [
            [
                row.corpus,
                row.scope,
                _ms(row.retrieve_ms),
                "" if row.scope == "unscoped" else f"{row.added_ms:+.1f} ({row.added_paired_ms:+.1f})",
                f"{row.answer_in_passages:.1f}",
                "" if row.scope == "unscoped" else f"{row.same_as_unscoped:.0f}",
            ]
            for row in result.rows
        ],
    )


def _targets(report: BenchReport) -> list[str]:
    return ["### Targets", ""] + _table(
        ["target", "wanted", "measured", "met"],
        [[t.name, t.target, f"{t.measured:.1f} {t.unit}", "yes" if t.met else "**no**"] for t in report.targets],
    )


def render_markdown(report: BenchReport) -> str:
    """The report as Markdown tables (what `--out` writes between the bench markers); a part that was not run has
    no section."""
    lines = _preamble(report)
    for section in (_answering, _ingestion, _reader_options, _engines, _scoping, _targets):
        lines += section(report)
    return "\n".join(lines).strip() + "\n"


def _sections(block: str) -> tuple[str, list[tuple[str, str]]]:
    """The text before the first `### ` heading, and each section as (its key, its text from the heading on).

    A heading's key is its words before any " (" or " at ": "Reader options at 10k (...)" is "Reader options".
    """
    parts = re.split(r"(?m)^(?=### )", block)
    preamble, sections = parts[0], []
    for part in parts[1:]:
        heading = part.splitlines()[0][4:]
        sections.append((re.split(r" \(| at ", heading, maxsplit=1)[0].strip(), part))
    return preamble, sections


def _target_rows(section: str) -> dict[str, str]:
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("target", "") and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = line
    return rows


def merge_markdown(old: str, new: str) -> str:
    """`old`'s bench block with `new`'s sections in place of the ones of the same name (new ones go before the
    targets) and the targets table's rows replaced or added by name; `new`'s first lines (before its first section)
    replace `old`'s when it has any. What `new` does not measure stays as it was.
    """
    old_preamble, old_sections = _sections(old)
    new_preamble, new_sections = _sections(new)
    preamble = new_preamble if new_preamble.strip() else old_preamble
    merged = dict(old_sections)
    for key, text in new_sections:
        if key == "Targets" and key in merged:
            rows = _target_rows(merged[key])
            rows.update(_target_rows(text))
            merged[key] = "### Targets\n\n" + "\n".join(_table(["target", "wanted", "measured", "met"], [])[:2])
            merged[key] += "\n" + "\n".join(rows.values()) + "\n\n"
        else:
            merged[key] = text if text.endswith("\n\n") else text.rstrip("\n") + "\n\n"
    order = [key for key, _ in old_sections if key != "Targets"]
    order += [key for key, _ in new_sections if key not in order and key != "Targets"]
    if "Targets" in merged:
        order.append("Targets")
    return (preamble + "".join(merged[key] for key in order)).rstrip("\n") + "\n"


def write_markdown(path: str | Path, markdown: str, *, merge: bool = False) -> None:
    """Put the rendered report between the bench markers of `path`, keeping the text around them.

    With `merge` (what `qa-bot bench --out` does), `markdown`'s sections and its rows of the targets table replace
    their namesakes inside the markers and the other measurements there stay (`merge_markdown`): a run of some
    parts, or one without PostgreSQL, erases nothing it did not measure again. A file without markers (or no
    file) gets a title and the markers, so hand-written analysis can follow.
    """
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if _BEGIN in old and _END in old:
        before, rest = old.split(_BEGIN, 1)
        inside, after = rest.split(_END, 1)
        body = merge_markdown(inside.strip("\n") + "\n", markdown) if merge else markdown
        new = before + f"{_BEGIN}\n{body}{_END}" + after
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "# Benchmarks\n\n") + f"{_BEGIN}\n{markdown}{_END}" + "\n"
    path.write_text(new, encoding="utf-8")
