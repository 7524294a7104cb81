"""Benchmarks: a smoke run on a tiny SQuAD file with the tiny random reader (shape of the report, never speed)."""

from __future__ import annotations

import json
import math
import sys

import pytest
from click.testing import CliRunner

from bot.bench.corpus import build_articles, ensure_corpus_db, load_squad_corpus, pick_questions
from bot.bench.report import (
    BenchReport,
    EngineRow,
    ScopingResult,
    ScopingRow,
    Summary,
    WayResult,
    evaluate_targets,
    merge_markdown,
    render_markdown,
    write_markdown,
)
from bot.bench.run import parse_parts, run_benchmarks
from bot.bench.scoping import SPLIT, split_collection
from bot.cli import cli
from bot.core.reader_config import ReaderConfig
from bot.errors import QABotError

# Four articles, six paragraphs, eight questions; answers are copied from their contexts.
TINY_SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Kestrel_Foods",
            "paragraphs": [
                {
                    "context": "Kestrel Foods is a company in Riverton. "
                    "Dr. Amara Velasquez was the chief executive in 2015.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Who was the chief executive of Kestrel Foods?",
                            "answers": [{"text": "Dr. Amara Velasquez", "answer_start": 40}],
                        }
                    ],
                },
                {
                    "context": "Tom Becker bought shares of the company on Monday. He paid $3.50 for each.",
                    "qas": [
                        {
                            "id": "q2",
                            "question": "Who bought shares on Monday?",
                            "answers": [{"text": "Tom Becker", "answer_start": 0}],
                        }
                    ],
                },
            ],
        },
        {
            "title": "Riverton_Mill_Bridge",
            "paragraphs": [
                {
                    "context": "The Riverton mill bridge was closed for repairs in May. The engineer was Lena Ortiz.",
                    "qas": [
                        {
                            "id": "q3",
                            "question": "Who was the engineer of the bridge?",
                            "answers": [{"text": "Lena Ortiz", "answer_start": 71}],
                        },
                        {
                            "id": "q4",
                            "question": "When was the bridge closed?",
                            "answers": [{"text": "May", "answer_start": 51}],
                        },
                    ],
                }
            ],
        },
        {
            "title": "Elm_Street_Chess_Club",
            "paragraphs": [
                {
                    "context": "The county chess club on Elm Street was founded by Noor Haddad. "
                    "It meets at the library.",
                    "qas": [
                        {
                            "id": "q5",
                            "question": "Who founded the chess club?",
                            "answers": [{"text": "Noor Haddad", "answer_start": 51}],
                        }
                    ],
                },
                {
                    "context": "Sam Lee is the best player of the club. He was born in Boston.",
                    "qas": [
                        {
                            "id": "q6",
                            "question": "Where was Sam Lee born?",
                            "answers": [{"text": "Boston", "answer_start": 55}],
                        }
                    ],
                },
            ],
        },
        {
            "title": "Boston_Library",
            "paragraphs": [
                {
                    "context": "The Boston library opened in 2015. It is on Elm Street.",
                    "qas": [
                        {
                            "id": "q7",
                            "question": "When did the library open?",
                            "answers": [{"text": "2015", "answer_start": 29}],
                        },
                        {
                            "id": "q8",
                            "question": "Which street is the library on?",
                            "answers": [{"text": "Elm Street", "answer_start": 44}],
                        },
                    ],
                }
            ],
        },
    ],
}


@pytest.fixture
def squad_file(tmp_path):
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(TINY_SQUAD), encoding="utf-8")
    return path


def _numbers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def test_corpora_are_nested_and_questions_come_from_stored_paragraphs(squad_file):
    squad = load_squad_corpus(squad_file)
    small, large = build_articles(squad, 3), build_articles(squad, 9)
    assert large[:3] == small
    assert len({article.body for article, _ in large}) == 9  # recombined articles never repeat one
    stored = {i for _, ids in small for i in ids}
    questions = pick_questions(squad, small, 100)
    assert questions and {q.paragraph for q in questions} <= stored
    for question in questions:
        assert all(gold in squad.paragraphs[question.paragraph] for gold in question.answers)


def test_load_squad_corpus_names_the_file_it_cannot_read(tmp_path):
    with pytest.raises(QABotError, match="missing.json"):
        load_squad_corpus(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory, tiny_reader_dir):
    """One benchmark run at 3 and 6 articles, 4 questions, with the tiny random reader (about 10 s)."""
    folder = tmp_path_factory.mktemp("bench")
    squad_file = folder / "tiny-squad.json"
    squad_file.write_text(json.dumps(TINY_SQUAD), encoding="utf-8")
    # One torch thread: two would stall each other on a machine that is busy with other work.
    return run_benchmarks(
        squad_file,
        reader=ReaderConfig(str(tiny_reader_dir), threads=1),
        sizes=(6, 3),
        n_questions=4,
        workdir=folder / "work",
        ingest_articles=6,
        command="qa-bot bench --squad tiny.json",
    )


def test_smoke_run_reports_every_section(smoke_report):
    report = smoke_report
    assert [c.articles for c in report.corpora] == [3, 6]
    assert all(c.built_this_run for c in report.corpora)
    assert (report.ingestion.articles, report.ingestion.profile["articles"]) == (6, 6)
    for row in report.answering:
        assert row.questions == 4
        for way in (row.pipeline, row.naive):
            assert None not in (way.retrieve_ms, way.total_ms)
    assert (report.cold_start.articles, report.cold_start.questions) == (6, 4)
    if sys.platform == "linux":  # read from the child's own /proc status while it ran
        assert report.cold_start.peak_rss_mb > 0
    names = [v.name for v in report.reader_options.variants]
    assert names[0] == "configured" and {"dtype=int8", "dtype=bfloat16", "top_k=1", "top_k=3", "top_k=8"} <= set(names)
    assert report.settings["threads"] == 1
    assert {t.name for t in report.targets} >= {"ingestion", "cold start (largest corpus)"}
    assert report.parts == ["answering", "ingestion", "cold-start", "reader-options", "scoping"]  # no --postgres
    assert report.scoping is not None and (report.scoping.articles, report.scoping.questions) == (6, 4)
    assert [(row.corpus, row.scope) for row in report.scoping.rows] == [
        ("general", "unscoped"),
        ("general", "every collection"),
        ("split", "unscoped"),
        ("split", "every collection"),
        ("split", "the question's collection"),
    ]
    assert report.scoping.row("every collection", "general").same_as_unscoped == 100  # the same passages
    data = report.to_dict()
    numbers = list(_numbers({**data, "scoping": None}))  # a scope may cost less than none: added ms below 0
    assert numbers and all(math.isfinite(n) and n >= 0 for n in numbers)
    assert json.loads(json.dumps(data)) == data
    assert BenchReport.from_dict(json.loads(json.dumps(data))) == report


def test_markdown_has_a_table_per_section(smoke_report):
    markdown = render_markdown(smoke_report)
    for heading in (
        "### Answering",
        "### Passages vs naive",
        "### Ingestion",
        "### Reader options",
        "### Reading cost",
        "### Scoping at 6 (collections",
        "### Targets",
    ):
        assert heading in markdown
    assert "| corpus | passages | retrieve ms | read ms | total ms |" in markdown
    assert markdown.count("|---|") >= 6
    assert "Command: `qa-bot bench --squad tiny.json`" in markdown


def test_cli_bench_passes_the_settings_and_writes_the_report(
    monkeypatch, smoke_report, squad_file, tiny_reader_dir, tmp_path
):
    calls = []
    monkeypatch.setattr(
        "bot.bench.run.run_benchmarks", lambda path, **options: calls.append((path, options)) or smoke_report
    )
    monkeypatch.setenv("QABOT_TOP_K", "3")
    out = tmp_path / "BENCH.md"
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "--squad",
            str(squad_file),
            "--sizes",
            "3,6",
            "--questions",
            "4",
            "--model",
            str(tiny_reader_dir),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == smoke_report.to_dict()
    ((path, options),) = calls
    assert (path, options["sizes"], options["n_questions"], options["top_k"], options["reader"]) == (
        squad_file,
        [3, 6],
        4,
        3,
        ReaderConfig(str(tiny_reader_dir)),
    )
    assert options["command"].startswith(f"qa-bot bench --squad {squad_file} --sizes 3,6 --questions 4 ")
    assert render_markdown(smoke_report) in out.read_text(encoding="utf-8")


def test_cli_bench_rejects_sizes_that_are_not_numbers(squad_file, tiny_reader_dir):
    result = CliRunner().invoke(
        cli, ["bench", "--squad", str(squad_file), "--sizes", "1k", "--model", str(tiny_reader_dir)]
    )
    assert result.exit_code == 2
    assert "Invalid value for --sizes: expected whole numbers separated by commas, got '1k'" in result.output


def test_bench_without_a_reader_model_says_how_to_set_one(squad_file, tmp_path):
    with pytest.raises(QABotError, match="QABOT_READER_MODEL"):
        run_benchmarks(squad_file, reader=None, sizes=(3,), workdir=tmp_path)


def test_corpus_database_is_built_once_and_reused(squad_file, tmp_path):
    squad = load_squad_corpus(squad_file)
    path, first = ensure_corpus_db(squad, 4, tmp_path, squad_path=squad_file)
    again_path, again = ensure_corpus_db(squad, 4, tmp_path, squad_path=squad_file)
    assert (first["built_this_run"], again["built_this_run"], again_path) == (True, False, path)
    assert first["articles"] == 4 and first["passages"] >= 4


def test_write_markdown_replaces_only_the_marked_block(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_markdown(path, "first table\n")
    path.write_text(path.read_text(encoding="utf-8") + "\n## Analysis\nhand-written\n", encoding="utf-8")
    write_markdown(path, "second table\n")
    text = path.read_text(encoding="utf-8")
    assert text == (
        "# Benchmarks\n\n<!-- bench:begin -->\nsecond table\n<!-- bench:end -->\n\n## Analysis\nhand-written\n"
    )


def test_the_decision_timing_runs_both_rules_on_the_same_spans(store, tiny_reader_dir):
    from bot.bench.decision import measure_decision, old_decision
    from bot.core.confidence import Calibrator
    from tests.fakes.reader import FakeReader

    reader = FakeReader(tiny_reader_dir, point_at="haddad").load()
    questions = ["Who founded the chess club?", "Who founded the club in 2015?", "Who repaired the bridge?"]
    timing = measure_decision(store, reader, questions, calibrator=Calibrator.raw(answer_threshold=0.5))
    assert timing.questions == 3 and timing.old_median_ms > 0 and timing.new_median_ms > 0
    passages = store.search('"founded"', limit=5)
    spans = reader.run(questions[0], [p.text for p in passages])
    text, citations = old_decision(questions[0], passages, spans, store=store, threshold=0.0)
    assert text == "Haddad" and citations[0].sentence == "The club was founded by Noor Haddad in 2015."


# Parts, PostgreSQL beside SQLite, scoping ------------------------------------------------------------------------


def test_parse_parts_defaults_to_everything_the_run_can_measure():
    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    everything = ["answering", "ingestion", "cold-start", "reader-options", "scoping"]
    assert parse_parts(None, postgres_url=None) == everything
    assert parse_parts(None, postgres_url=url) == [*everything, "engines"]
    assert parse_parts(" engines,scoping ", postgres_url=url) == ["scoping", "engines"]  # in PARTS order
    with pytest.raises(QABotError, match="Unknown benchmark part.s. cold; choose from answering, ingestion"):
        parse_parts("scoping,cold", postgres_url=None)
    with pytest.raises(QABotError, match="pass --postgres with the URL of a PostgreSQL server"):
        parse_parts("engines", postgres_url=None)


def test_cli_bench_says_engines_need_a_postgres_url(squad_file, tiny_reader_dir):
    result = CliRunner().invoke(
        cli, ["bench", "--squad", str(squad_file), "--parts", "engines", "--model", str(tiny_reader_dir)]
    )
    assert result.exit_code == 2
    assert "Invalid value for --parts: The engines part compares SQLite with PostgreSQL" in result.output


def _way(retrieve_ms: float, total_ms: float, recall: float) -> WayResult:
    return WayResult(
        em=50.0,
        f1=60.0,
        answer_in_context=recall,
        read_ms=Summary(150, 200, 155),
        retrieve_ms=Summary(retrieve_ms, 2 * retrieve_ms, retrieve_ms),
        total_ms=Summary(total_ms, 300, total_ms),
    )


def _scoping_row(scope: str, corpus: str, added_ms: float, recall: float) -> ScopingRow:
    return ScopingRow(scope, corpus, Summary(8 + added_ms, 20, 9), added_ms, added_ms / 2, recall, 100.0)


def _partial_report() -> BenchReport:
    """A run of the engines and scoping parts only, at 10k and 100k articles (numbers made up)."""
    report = BenchReport(
        command="qa-bot bench --parts scoping,engines",
        machine={"cpu_cores": 2, "cpu_model": "test", "torch": "2", "python": "3.11"},
        model={"path": "m", "name": "m"},
        settings={
            "threads": 2,
            "dtype": "float32",
            "top_k": 5,
            "max_length": 384,
            "passage_max_words": 80,
            "questions": 200,
            "warmup_questions": 5,
        },
        corpora=[],
        ingestion=None,
        answering=[],
        cold_start=None,
        reader_options=None,
        reading_cost=None,
        bench_peak_rss_mb=100.0,
        parts=["scoping", "engines"],
        engines=[
            EngineRow(10_000, "10k", 49234, 200, _way(7, 165, 84.5), _way(11, 170, 85.0), 81.0),
            EngineRow(100_000, "100k", 452077, 200, _way(9, 170, 76.0), _way(25, 190, 73.5), 80.0),
        ],
        scoping=ScopingResult(
            100_000,
            "100k",
            200,
            ["handbook 50%", "support 30%", "legal 20%"],
            [
                _scoping_row("unscoped", "general", 0.0, 76.0),
                _scoping_row("every collection", "general", 0.7, 76.0),
                _scoping_row("unscoped", "split", 0.0, 76.0),
                _scoping_row("the question's collection", "split", 0.9, 82.0),
            ],
        ),
    )
    report.targets = evaluate_targets(report)
    return report


def test_engine_and_scoping_targets_are_judged_from_their_rows():
    judged = {t.name: (round(t.measured, 6), t.met) for t in _partial_report().targets}
    assert judged == {
        "scoped to every collection at 100k: added retrieval median": (0.7, True),
        "scoped to the question's collection at 100k: added retrieval median": (0.9, True),
        "scoped to the question's collection at 100k: answer in passages change": (6.0, True),
        "PostgreSQL answer in passages vs SQLite (largest gap)": (2.5, False),
        "PostgreSQL retrieval median at 100k": (25.0, True),
        "PostgreSQL answer median at 100k": (190.0, True),
    }


def test_a_partial_report_renders_its_own_sections_and_reads_back():
    report = _partial_report()
    markdown = render_markdown(report)
    assert markdown.startswith("### PostgreSQL beside SQLite (same corpus, same questions, interleaved)\n\n")
    assert "Measured by `qa-bot bench --parts scoping,engines` (200 questions after 5 warm-up" in markdown
    assert "| 100k | SQLite | 9 / 18 | 150 / 200 | 170 / 300 | 50.0 | 60.0 | 76.0 |" in markdown
    assert "|  | PostgreSQL | 25 / 50 | 150 / 200 | 190 / 300 | 50.0 | 60.0 | 73.5 |" in markdown
    assert "same passages in the same order for 81% at 10k, 80% at 100k of the questions" in markdown
    assert "| split | the question's collection | 9 / 20 | +0.9 (+0.5) | 82.0 | 100 |" in markdown
    assert "| PostgreSQL retrieval median at 100k | <= 30 ms | 25.0 ms | yes |" in markdown
    for absent in ("### Answering", "### Ingestion", "### Reader options", "Machine:"):
        assert absent not in markdown
    assert BenchReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_merging_a_partial_run_keeps_every_other_measurement(tmp_path):
    old = (
        "Command: `qa-bot bench` (the full run)\n\n"
        "### Answering\n\n| corpus | total ms |\n|---|---|\n| 1k | 163 |\n\n"
        "### Scoping at 10k (collections, old)\n\nold scoping table\n\n"
        "### Targets\n\n| target | wanted | measured | met |\n|---|---|---|---|\n"
        "| answer median at 10k | <= 200 ms | 167.3 ms | yes |\n"
        "| scoped to every collection at 100k: added retrieval median | <= 5 ms | 6.1 ms | **no** |\n"
    )
    new = (
        "### PostgreSQL beside SQLite (same corpus)\n\npg table\n\n"
        "### Scoping at 100k (collections, side by side per question)\n\nnew scoping table\n\n"
        "### Targets\n\n| target | wanted | measured | met |\n|---|---|---|---|\n"
        "| scoped to every collection at 100k: added retrieval median | <= 5 ms | 0.7 ms | yes |\n"
        "| PostgreSQL retrieval median at 100k | <= 30 ms | 25.0 ms | yes |\n"
    )
    assert merge_markdown(old, new) == (
        "Command: `qa-bot bench` (the full run)\n\n"
        "### Answering\n\n| corpus | total ms |\n|---|---|\n| 1k | 163 |\n\n"
        "### Scoping at 100k (collections, side by side per question)\n\nnew scoping table\n\n"
        "### PostgreSQL beside SQLite (same corpus)\n\npg table\n\n"
        "### Targets\n\n| target | wanted | measured | met |\n|---|---|---|---|\n"
        "| answer median at 10k | <= 200 ms | 167.3 ms | yes |\n"
        "| scoped to every collection at 100k: added retrieval median | <= 5 ms | 0.7 ms | yes |\n"
        "| PostgreSQL retrieval median at 100k | <= 30 ms | 25.0 ms | yes |\n"
    )
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n<!-- bench:begin -->\n{old}<!-- bench:end -->\n\n## Analysis\nkept\n", "utf-8")
    write_markdown(path, new, merge=True)
    assert path.read_text("utf-8") == (
        f"# Benchmarks\n\n<!-- bench:begin -->\n{merge_markdown(old, new)}<!-- bench:end -->\n\n## Analysis\nkept\n"
    )


def test_split_collections_follow_the_article_key_in_the_planned_shares():
    keys = [f"mix:{i}" for i in range(5000)]
    shares = {name: sum(split_collection(key) == name for key in keys) / len(keys) for name, _ in SPLIT}
    assert [split_collection(key) for key in keys[:50]] == [split_collection(key) for key in keys[:50]]
    assert all(abs(shares[name] - tenths / 10) < 0.03 for name, tenths in SPLIT)


def test_engines_part_builds_each_corpus_in_postgresql_once_and_answers_from_both(
    squad_file, tiny_reader_dir, tmp_path, postgres_url, monkeypatch
):
    """The engines part on a tiny corpus: databases made under a random prefix on the test server, dropped after."""
    import secrets

    import psycopg
    from psycopg import sql

    import bot.bench.corpus as corpus
    from tests.conftest import POSTGRES_ADMIN_URL

    prefix = f"qa_bot_test_bench_{secrets.token_hex(3)}_"
    monkeypatch.setattr(corpus, "PG_DATABASE_PREFIX", prefix)
    try:
        report = run_benchmarks(
            squad_file,
            reader=ReaderConfig(str(tiny_reader_dir), threads=1),
            sizes=(3, 6),
            n_questions=4,
            workdir=tmp_path / "work",
            parts=["engines"],
            postgres_url=POSTGRES_ADMIN_URL,
        )
        assert report.parts == ["engines"] and report.answering == [] and report.scoping is None
        assert [(row.articles, row.questions) for row in report.engines] == [(3, 4), (6, 4)]
        assert [(c.articles, c.built_this_run) for c in report.pg_corpora] == [(3, True), (6, True)]
        assert [c.passages for c in report.pg_corpora] == [c.passages for c in report.corpora]
        for row in report.engines:  # the same articles: the same passages reach the reader
            assert row.postgres.answer_in_context == row.sqlite.answer_in_context
        url, again = corpus.ensure_pg_corpus(
            load_squad_corpus(squad_file), 6, POSTGRES_ADMIN_URL, squad_path=squad_file
        )
        assert (url.rsplit("/", 1)[1], again["built_this_run"]) == (f"{prefix}6", False)
    finally:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True)
        for size in (3, 6):
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(f"{prefix}{size}")))
        admin.close()
