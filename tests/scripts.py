"""Loading a development script of `scripts/` as a module, so its tests can call its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(file_name: str) -> ModuleType:
    """`scripts/<file_name>` imported under a name of its own (it is no package)."""
    spec = importlib.util.spec_from_file_location(f"qa_bot_script_{Path(file_name).stem}", SCRIPTS / file_name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
