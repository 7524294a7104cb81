"""User-facing text: templates in prompts/ rendered by name, so wording changes never touch code."""

from __future__ import annotations

import importlib.resources
import string
from functools import cache

from bot.errors import TemplateError

__all__ = ["render", "template_names", "placeholders", "percent"]


def _prompts_dir():
    return importlib.resources.files("bot.prompts")


@cache
def _load(name: str) -> str:
    resource = _prompts_dir() / f"{name}.md"
    if not resource.is_file():
        raise TemplateError(f"Missing template prompts/{name}.md. Known templates: {', '.join(template_names())}.")
    return resource.read_text(encoding="utf-8").rstrip("\n")


def template_names() -> list[str]:
    """Names of every template in prompts/ (file names without `.md`)."""
    return sorted(entry.name[:-3] for entry in _prompts_dir().iterdir() if entry.name.endswith(".md"))


def placeholders(name: str) -> set[str]:
    """The `{named}` placeholders a template uses."""
    return {field for _, field, _, _ in string.Formatter().parse(_load(name)) if field}


def render(name: str, **values: object) -> str:
    """Render prompts/<name>.md with named values (`{question}`); extra values are ignored.

    :raises TemplateError: when the template is missing or uses a placeholder that was not given.
    """
    missing = placeholders(name) - values.keys()
    if missing:
        raise TemplateError(f"Template prompts/{name}.md needs {', '.join(sorted(missing))}, which were not given.")
    return _load(name).format_map(values)


def percent(score: float) -> str:
    """A 0..1 confidence as users read it everywhere: `0.934` → `"93%"`."""
    return f"{score:.0%}"
