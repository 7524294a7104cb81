"""The benchmark report: its records, the project's targets, and the Markdown tables of BENCHMARKS.md.

`bot.bench.run.run_benchmarks` fills a `BenchReport`; this module defines it, judges it against what the project
promised (`TARGETS`, `evaluate_targets`), renders it (`render_markdown`) and puts the tables between the bench
markers of a file without touching the hand-written analysis around them (`write_markdown`). A stored report
(`qa-bot bench --json`) is read back with `BenchReport.from_dict` and rendered again without measuring anything.
"""

from __future__ import annotations

import dataclasses
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
    "BenchReport",
    "evaluate_targets",
    "size_label",
    "render_markdown",
    "write_markdown",
]

_BEGIN, _END = "<!-- bench:begin -->", "<!-- bench:end -->"


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
class TargetResult:
    """One target, judged: what was wanted, what was measured, and whether it was met."""

    name: str
    target: str
    measured: float
    unit: str
    met: bool


@dataclass
class BenchReport:
    """Everything one `qa-bot bench` run measured; `machine`, `model` and `settings` describe the set-up."""

    command: str
    machine: dict[str, Any]
    model: dict[str, Any]
    settings: dict[str, Any]
    corpora: list[CorpusRow]
    ingestion: IngestionResult
    answering: list[AnsweringRow]
    cold_start: ColdStart
    reader_options: ReaderOptionsResult
    reading_cost: ReadingCost
    bench_peak_rss_mb: float
    targets: list[TargetResult] = field(default_factory=list)

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

        options = data["reader_options"]
        return cls(
            command=data["command"],
            machine=data["machine"],
            model=data["model"],
            settings=data["settings"],
            corpora=[CorpusRow(**row) for row in data["corpora"]],
            ingestion=IngestionResult(**data["ingestion"]),
            answering=[
                AnsweringRow(**{**row, "pipeline": way(row["pipeline"]), "naive": way(row["naive"])})
                for row in data["answering"]
            ],
            cold_start=ColdStart(**data["cold_start"]),
            reader_options=ReaderOptionsResult(
                **{
                    **options,
                    "variants": [
                        VariantResult(**{**v, "read_ms": Summary(**v["read_ms"])}) for v in options["variants"]
                    ],
                }
            ),
            reading_cost=ReadingCost(**data["reading_cost"]),
            bench_peak_rss_mb=data["bench_peak_rss_mb"],
            targets=[TargetResult(**t) for t in data["targets"]],
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


# What the project promised for a 2-core CPU.
TARGETS = (
    Target("answer median at 10k", _at(10_000, lambda row: _total(row.pipeline).median), "<=", 200, "ms"),
    Target("answer p95 at 10k", _at(10_000, lambda row: _total(row.pipeline).p95), "<=", 400, "ms"),
    Target("answer median at 100k", _at(100_000, lambda row: _total(row.pipeline).median), "<=", 300, "ms"),
    Target("retrieval median at 100k", _at(100_000, lambda row: _retrieve(row.pipeline).median), "<=", 20, "ms"),
    Target("ingestion", lambda report: report.ingestion.articles_per_s, ">=", 500, "articles/s"),
    Target("cold start (largest corpus)", lambda report: report.cold_start.first_answer_s, "<=", 5, "s"),
    Target("peak RSS of qa-bot ask (largest corpus)", lambda report: report.cold_start.peak_rss_mb, "<=", 1024, "MB"),
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


def render_markdown(report: BenchReport) -> str:
    """The report as Markdown tables (what `--out` writes between the bench markers)."""
    machine, settings = report.machine, report.settings
    lines = [
        f"Command: `{report.command}`" if report.command else "",
        "",
        f"Machine: {machine['cpu_cores']} CPU cores ({machine['cpu_model']}), torch {machine['torch']} with "
        f"{settings['threads']} threads, Python {machine['python']}. Reader model: `{report.model['name']}`, "
        f"dtype {settings['dtype']}, top_k {settings['top_k']}, max_length {settings['max_length']}, passages "
        f"of about {settings['passage_max_words']} words. Times are median / p95 over "
        f"{report.answering[0].questions} questions (after {settings['warmup_questions']} warm-up), "
        "in ms unless marked.",
        "",
        "### Answering",
        "",
    ]
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
    cold = report.cold_start
    lines += [
        f"Cold start at {cold.label}: a fresh `qa-bot ask --json` process gave its first answer after "
        f"**{cold.first_answer_s:.1f} s** and {cold.questions} answers after {cold.total_s:.1f} s; "
        f"its peak RSS was **{cold.peak_rss_mb:.0f} MB**. This benchmark process peaked at "
        f"{report.bench_peak_rss_mb:.0f} MB (SQuAD data and several readers loaded).",
        "",
    ]
    lines += [f"### Passages vs naive (top-{settings['top_k']} whole articles by BM25, sliding window)", ""]
    lines += _table(
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
    ingestion, profile = report.ingestion, report.ingestion.profile
    lines += [
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
    lines += _table(
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
            for c in report.corpora
        ],
    )
    lines += ["Top functions by own time in that profile:", ""]
    lines += _table(
        ["function", "share of time", "calls"],
        [[f"`{p['function']}`", f"{p['own_share']:.0%}", p["calls"]] for p in profile["top"]],
    )
    options = report.reader_options
    lines += [f"### Reader options at {options.label} (same retrieved passages, interleaved per question)", ""]
    lines += _table(
        ["variant", "dtype", "threads", "top_k", "max_length", "read ms", "EM", "F1"],
        [
            [v.name, v.dtype, v.threads, v.top_k, v.max_length, _ms(v.read_ms), f"{v.em:.1f}", f"{v.f1:.1f}"]
            for v in options.variants
        ],
    )
    cost = report.reading_cost
    lines += [
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
        "### Targets",
        "",
    ]
    lines += _table(
        ["target", "wanted", "measured", "met"],
        [[t.name, t.target, f"{t.measured:.1f} {t.unit}", "yes" if t.met else "**no**"] for t in report.targets],
    )
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
