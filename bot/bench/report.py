"""The benchmark report, judged and rendered: the project's targets and the Markdown tables of BENCHMARKS.md.

`bot.bench.run.run_benchmarks` returns a plain dict; this module only reads such dicts. `_evaluate_targets` compares
a report with what the project promised (`TARGETS`), `render_markdown` turns it into the tables, and
`write_markdown` puts them between the bench markers of a file without touching the hand-written analysis around
them. Keeping the presentation here leaves `bot.bench.run` with the measurements alone, and lets a stored report
(`qa-bot bench --json`) be rendered again without measuring anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["TARGETS", "render_markdown", "write_markdown"]

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


def _label(n_articles: int) -> str:
    return f"{n_articles // 1000}k" if n_articles >= 1000 and n_articles % 1000 == 0 else str(n_articles)


# Targets --------------------------------------------------------------------------------------------------------

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
