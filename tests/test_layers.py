"""The package layers: the answering core never reaches into the shells, and cheap commands stay cheap."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[1] / "bot"
LOWER = ("core", "store", "sources")
UPPER = ("bot.slack", "bot.training", "bot.bench")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    "path", sorted(p for layer in LOWER for p in (BOT / layer).rglob("*.py")), ids=lambda p: str(p.relative_to(BOT))
)
def test_lower_layers_never_import_slack_training_or_bench(path):
    upward = sorted(name for name in imported_modules(path) if name.startswith(UPPER) or name in ("bot.cli",))
    assert upward == [], f"{path.relative_to(BOT.parent)} imports {upward}"


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=BOT.parent)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_the_lower_layers_loads_no_shell():
    loaded = modules_after(
        "import bot.core.service, bot.core.ingest, bot.store, bot.store.migrations, bot.store.state, bot.sources.fetch"
    )
    assert sorted(name for name in loaded if name.startswith(UPPER)) == []


def test_import_bot_is_cheap():
    loaded = modules_after("import bot")
    assert {"torch", "transformers", "slack_bolt", "bot.core", "bot.settings"} & loaded == set()
