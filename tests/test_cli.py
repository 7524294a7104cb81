"""The qa-bot command line: exit codes, the exact lines a user sees, and the JSON shape of `ask --json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import bot.core.service
import bot.settings
from bot.cli import cli
from tests.fakes.reader import FakeReader

ELM_QUESTION = "Who founded the Elm Street chess club?"
NO_READER = (
    "Error: No reader model configured, and this install has no shipped minilm-squad-reader. Set "
    "QABOT_READER_MODEL to a local extractive-QA model folder or a Hugging Face model id.\n"
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def indexed(runner, articles_dir):
    """qa.db in the working directory (tmp_path) with the three test articles."""
    result = runner.invoke(cli, ["ingest", "--db", "qa.db", str(articles_dir)])
    assert result.exit_code == 0, result.output


@pytest.fixture
def tiny_reader_env(monkeypatch, tiny_reader_dir):
    monkeypatch.setenv("QABOT_READER_MODEL", str(tiny_reader_dir))


@pytest.fixture
def reader_points_at_haddad(monkeypatch, tiny_reader_env):
    """The CLI's service reads with a fake reader whose model points at the token "haddad"."""
    monkeypatch.setattr(
        bot.core.service, "build_reader", lambda settings: FakeReader(settings.reader_config(), point_at="haddad")
    )


# ingest ------------------------------------------------------------------------------------------------------


def test_ingest_prints_the_counts_line(runner, articles_dir):
    result = runner.invoke(cli, ["ingest", "--db", "qa.db", str(articles_dir)])
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "Ingested into qa.db: 3 added, 0 updated, 0 unchanged, 0 skipped, 0 failed.\n",
        "",
    )


def test_ingest_twice_reports_unchanged(runner, articles_dir, indexed):
    result = runner.invoke(cli, ["ingest", "--db", "qa.db", str(articles_dir)])
    assert (result.exit_code, result.stdout) == (
        0,
        "Ingested into qa.db: 0 added, 0 updated, 3 unchanged, 0 skipped, 0 failed.\n",
    )


def test_ingest_uses_qabot_db_path(runner, articles_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("QABOT_DB_PATH", str(tmp_path / "env.db"))
    result = runner.invoke(cli, ["ingest", str(articles_dir / "riverton-bridge.md")])
    assert (
        result.stdout == f"Ingested into {tmp_path / 'env.db'}: 1 added, 0 updated, 0 unchanged, 0 skipped, 0 failed.\n"
    )


def test_ingest_with_bad_files_reports_each_one_and_exits_1(runner, articles_dir, tmp_path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "slides.key").write_bytes(b"%PDF")
    result = runner.invoke(cli, ["ingest", "--db", "qa.db", str(articles_dir), "empty.txt", "slides.key", "nope.md"])
    assert result.exit_code == 1
    assert result.stdout == "Ingested into qa.db: 3 added, 0 updated, 0 unchanged, 0 skipped, 3 failed.\n"
    assert result.stderr == (
        "failed empty.txt: empty file\n"
        "failed slides.key: unsupported file type .key; use one of "
        ".txt .md .markdown .html .htm .json .jsonl .pdf .docx\n"
        "failed nope.md: no such file or folder\n"
    )


def test_ingest_of_a_folder_with_stray_files_lists_them_as_skipped_and_exits_0(runner, tmp_path):
    folder = tmp_path / "library"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "config").write_text("[core]\n", encoding="utf-8")
    (folder / ".notes.txt").write_text("Hidden\n\nNot for the bot.", encoding="utf-8")
    (folder / "README").write_text("hello", encoding="utf-8")
    (folder / "budget.xlsx").write_bytes(b"PK")
    (folder / "FERRY.TXT").write_text("Ferry starts\n\nThe ferry carries 150 passengers.", encoding="utf-8")
    (folder / "bridge.markdown").write_text("# Bridge reopens\n\nThe bridge reopened on Monday.", encoding="utf-8")
    (folder / "mill.HTM").write_text(
        "<html><head><title>Mill repairs</title></head><body><article><p>The old mill was repaired by the county "
        "over the summer, and it opens to visitors in May.</p></article></body></html>",
        encoding="utf-8",
    )
    result = runner.invoke(cli, ["ingest", "--db", "qa.db", "library"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "Ingested into qa.db: 3 added, 0 updated, 0 unchanged, 4 skipped, 0 failed.\n",
        "skipped library/.git/: hidden folder\n"
        "skipped library/.notes.txt: hidden file\n"
        "skipped library/README: unsupported file type (none)\n"
        "skipped library/budget.xlsx: unsupported file type .xlsx\n",
    )


def test_ingest_of_a_folder_exits_1_when_a_supported_file_fails(runner, tmp_path):
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "notes.xlsx").write_bytes(b"PK")
    (tmp_path / "library" / "empty.md").write_text("", encoding="utf-8")
    result = runner.invoke(cli, ["ingest", "--db", "qa.db", "library"])
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "Ingested into qa.db: 0 added, 0 updated, 0 unchanged, 1 skipped, 1 failed.\n",
        "skipped library/notes.xlsx: unsupported file type .xlsx\nfailed library/empty.md: empty file\n",
    )


def test_db_may_come_before_the_subcommand(runner, articles_dir):
    result = runner.invoke(cli, ["--db", "first.db", "ingest", str(articles_dir)])
    assert (result.exit_code, result.stdout) == (
        0,
        "Ingested into first.db: 3 added, 0 updated, 0 unchanged, 0 skipped, 0 failed.\n",
    )


def test_db_after_the_subcommand_wins_over_the_one_before(runner, articles_dir):
    result = runner.invoke(cli, ["--db", "first.db", "ingest", "--db", "second.db", str(articles_dir)])
    assert result.stdout == "Ingested into second.db: 3 added, 0 updated, 0 unchanged, 0 skipped, 0 failed.\n"


def test_ingest_needs_a_path(runner):
    result = runner.invoke(cli, ["ingest"])
    assert result.exit_code == 2
    assert "Missing argument 'PATHS...'" in result.stderr


# ask ---------------------------------------------------------------------------------------------------------


def test_ask_prints_the_answer_with_its_sentence_and_source(runner, indexed, reader_points_at_haddad):
    result = runner.invoke(cli, ["ask", "--db", "qa.db", ELM_QUESTION])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "Haddad\n"
        "  “The club was founded by Noor Haddad in 2015.”\n"
        "  — Elm Street Chess Club wins regional title (https://news.example.org/elm-street-chess, 2024-03-10)\n"
        "  confidence: 100%\n"
    )


def test_ask_json_prints_one_object_with_the_documented_keys(runner, indexed, reader_points_at_haddad):
    result = runner.invoke(cli, ["ask", "--json", "--db", "qa.db", ELM_QUESTION])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data == {
        "question": ELM_QUESTION,
        "answer": "Haddad",
        "score": data["score"],
        "sentence": "The club was founded by Noor Haddad in 2015.",
        "page": None,
        "article": {
            "id": 1,
            "title": "Elm Street Chess Club wins regional title",
            "source": "Springfield Weekly",
            "url": "https://news.example.org/elm-street-chess",
            "published_at": "2024-03-10",
            "author": None,
            "collection": "general",
        },
        "answer_in_sentence": [29, 35],
        "alternatives": [],
        "searched": ["Elm Street Chess Club wins regional title"],
        "tentative": None,
        "supporting": [],
        "conflicting": [],
        "notes": [],
    }
    assert 0.99 <= data["score"] <= 1.0


def test_ask_json_without_a_confident_answer(runner, indexed, tiny_reader_env, monkeypatch):
    monkeypatch.setenv("QABOT_ANSWER_THRESHOLD", "1")
    result = runner.invoke(cli, ["ask", "--json", "--db", "qa.db", ELM_QUESTION])
    data = json.loads(result.stdout)
    assert (data["answer"], data["sentence"], data["article"], data["alternatives"], data["answer_in_sentence"]) == (
        None,
        None,
        None,
        [],
        None,
    )
    assert data["searched"][0] == "Elm Street Chess Club wins regional title"


def test_ask_without_a_confident_answer_lists_what_was_searched(runner, indexed, tiny_reader_env, monkeypatch):
    monkeypatch.setenv("QABOT_ANSWER_THRESHOLD", "1")
    result = runner.invoke(cli, ["ask", "--db", "qa.db", "Who founded the Elm Street chess club in Springfield?"])
    assert result.exit_code == 0
    assert result.stdout == (
        "No confident answer to “Who founded the Elm Street chess club in Springfield?”.\n"
        "Searched: Elm Street Chess Club wins regional title\n"
    )


def test_ask_about_nothing_stored_says_no_article_matched(runner, indexed, tiny_reader_env):
    result = runner.invoke(cli, ["ask", "--db", "qa.db", "Zanzibar volcano?"])
    assert result.stdout == (
        "No confident answer to “Zanzibar volcano?”.\nSearched: no article matched the question's words\n"
    )


def test_ask_batch_reads_one_question_per_stdin_line(runner, indexed, tiny_reader_env):
    questions = ["Who is the CEO of Kestrel Foods?", "", "  ", "Who founded the Elm Street chess club?"]
    result = runner.invoke(cli, ["ask", "--json", "--db", "qa.db"], input="\n".join(questions) + "\n")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [json.loads(line)["question"] for line in lines] == [
        "Who is the CEO of Kestrel Foods?",
        "Who founded the Elm Street chess club?",
    ]


def test_ask_without_question_or_stdin_is_a_usage_error(runner, indexed, tiny_reader_env):
    result = runner.invoke(cli, ["ask", "--db", "qa.db"], input="")
    assert result.exit_code == 2
    assert "Give a question, or one question per line on stdin." in result.stderr


def test_ask_without_a_reader_model_is_one_error_line(runner, indexed, monkeypatch):
    monkeypatch.setattr(bot.settings, "shipped_reader_dir", lambda: None)
    result = runner.invoke(cli, ["ask", "--db", "qa.db", ELM_QUESTION])
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", NO_READER)


def test_ask_with_a_missing_model_folder_is_one_error_line(runner, indexed, monkeypatch, tmp_path):
    monkeypatch.setenv("QABOT_READER_MODEL", str(tmp_path / "gone"))
    result = runner.invoke(cli, ["ask", "--db", "qa.db", ELM_QUESTION])
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: Reader model directory {tmp_path / 'gone'} does not exist. Set QABOT_READER_MODEL to a folder "
        "holding config.json, the weights and tokenizer files.\n",
    )


def test_ask_on_an_empty_database_says_to_ingest_first(runner, tiny_reader_env):
    result = runner.invoke(cli, ["ask", "--db", "empty.db", ELM_QUESTION])
    assert (result.exit_code, result.stderr) == (
        1,
        "Error: No articles are stored in empty.db yet. Add some first: qa-bot ingest ./articles\n",
    )
    assert not Path("empty.db").exists()  # a mistyped --db leaves no empty database behind


@pytest.mark.parametrize(
    "name, value, line",
    [
        ("QABOT_TOP_K", "0", "Error: Invalid setting QABOT_TOP_K: Input should be greater than 0 (got '0').\n"),
        (
            "QABOT_MAX_LENGTH",
            "128",
            "Error: Invalid setting QABOT_DOC_STRIDE: must be under half of QABOT_MAX_LENGTH (128) (got 128).\n",
        ),
    ],
)
def test_invalid_setting_is_one_error_line(runner, indexed, tiny_reader_env, monkeypatch, name, value, line):
    monkeypatch.setenv(name, value)
    result = runner.invoke(cli, ["ask", "--db", "qa.db", ELM_QUESTION])
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", line)


# the program -------------------------------------------------------------------------------------------------


def test_python_dash_m_bot_help_works():
    result = subprocess.run([sys.executable, "-m", "bot", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: qa-bot [OPTIONS] COMMAND [ARGS]...\n")
    assert "\n  ask " in result.stdout and "\n  ingest " in result.stdout


def test_version_option(runner):
    result = runner.invoke(cli, ["--version"], prog_name="qa-bot")
    assert (result.exit_code, result.stdout) == (0, "qa-bot, version 0.1.0\n")


def test_an_unsure_answer_prints_as_a_hedge_and_agreeing_or_disagreeing_articles_are_named():
    from bot.cli import format_answer
    from bot.core.records import Answer, ArticleRef, Citation

    def cited(text: str, sentence: str, article: ArticleRef, score: float) -> Answer:
        start = sentence.index(text)
        return Answer(
            question="Who founded it?",
            text=text,
            score=score,
            citation=Citation(article, sentence, 0, start, start + len(text)),
        )

    elm = ArticleRef(1, "Elm club", "elm.txt", published_at="2024-03-10")
    other = ArticleRef(2, "Club history", "history.txt", published_at="2025-01-02")
    hedge = Answer(
        question="Who founded it?",
        text=None,
        score=0.4,
        tentative=cited("Noor Haddad", "It was founded by Noor Haddad.", elm, 0.4),
    )
    assert format_answer(hedge) == (
        "I'm not sure. The closest I found:\nNoor Haddad\n  “It was founded by Noor Haddad.”"
        "\n  — Elm club (elm.txt, 2024-03-10)\n  confidence: 40%"
    )
    sure = cited("Noor Haddad", "It was founded by Noor Haddad.", elm, 0.9)
    sure = Answer(
        question=sure.question,
        text=sure.text,
        score=0.9,
        citation=sure.citation,
        supporting=(other,),
        conflicting=(cited("Ivo Marsh", "Ivo Marsh founded it.", other, 0.8),),
    )
    assert format_answer(sure).splitlines()[-4:] == [
        "  confidence: 90%",
        "  also in 1 other article: Club history",
        "  other articles disagree (newest first):",
        "  - Ivo Marsh — Club history, 2025-01-02 (confidence: 80%)",
    ]


def test_ask_with_context_searches_with_the_earlier_question_and_ignores_empty_ones(runner, indexed, tiny_reader_env):
    plain = runner.invoke(cli, ["ask", "--json", "--db", "qa.db", "Who spoke?"])
    widened = runner.invoke(
        cli,
        [
            "ask",
            "--json",
            "--db",
            "qa.db",
            "--context",
            "",
            "--context",
            "Who repaired the Riverton bridge?",
            "Who spoke?",
        ],
    )
    assert (plain.exit_code, widened.exit_code) == (0, 0)
    assert "Riverton bridge reopens after repairs" not in json.loads(plain.stdout)["searched"]
    assert "Riverton bridge reopens after repairs" in json.loads(widened.stdout)["searched"]
