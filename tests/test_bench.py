"""Benchmarks: a smoke run on a tiny SQuAD file with the tiny random reader (shape of the report, never speed)."""

from __future__ import annotations

import json
import math
import sys

import pytest
from click.testing import CliRunner

from bot.bench.corpus import build_articles, ensure_corpus_db, load_squad_corpus, pick_questions
from bot.bench.report import BenchReport, render_markdown, write_markdown
from bot.bench.run import run_benchmarks
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
    data = report.to_dict()
    numbers = list(_numbers(data))
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
