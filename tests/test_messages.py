"""User-facing templates in prompts/: every one renders, and a missing template or value fails clearly."""

from __future__ import annotations

import pytest

from bot.core import messages
from bot.errors import TemplateError

CORE_TEMPLATES = {
    "answer",
    "alternative",
    "error",
    "help",
    "ingest_failure",
    "ingest_report",
    "no_answer",
    "not_indexed",
}


def test_core_templates_exist():
    assert CORE_TEMPLATES <= set(messages.template_names())


@pytest.mark.parametrize("name", messages.template_names())
def test_every_template_renders_with_sample_values(name):
    values = {field: f"<sample {field}>" for field in messages.placeholders(name)}
    rendered = messages.render(name, **values)
    assert rendered.strip()
    for value in values.values():
        assert value in rendered
    assert "{" not in rendered.replace("{}", "")  # no placeholder left unfilled


def test_answer_template_renders_exactly():
    assert messages.render(
        "answer",
        answer="Noor Haddad",
        sentence="The club was founded by Noor Haddad in 2015.",
        title="Elm Street Chess Club wins regional title",
        source="Springfield Weekly",
        date=", 2024-03-10",
        confidence="87%",
        alternatives="",
    ) == (
        "Noor Haddad\n"
        "  “The club was founded by Noor Haddad in 2015.”\n"
        "  — Elm Street Chess Club wins regional title (Springfield Weekly, 2024-03-10)\n"
        "  confidence: 87%"
    )


def test_placeholders_are_listed():
    assert messages.placeholders("no_answer") == {"question", "searched"}


def test_missing_placeholder_raises_template_error():
    with pytest.raises(TemplateError) as caught:
        messages.render("no_answer", question="Who?")
    assert str(caught.value) == "Template prompts/no_answer.md needs searched, which were not given."


def test_missing_template_raises_template_error_naming_the_known_ones():
    with pytest.raises(TemplateError, match=r"^Missing template prompts/nope\.md\. Known templates: .*answer.*"):
        messages.render("nope")


def test_extra_values_are_ignored():
    assert messages.render("not_indexed", db_path="qa.db", unused="x") == (
        "No articles are stored in qa.db yet. Add some first: qa-bot ingest ./articles"
    )
