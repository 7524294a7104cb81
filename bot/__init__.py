"""qa-bot: answer questions from stored articles with an extractive reader and exact sentence citations.

The public API, imported on first use so `import bot` stays cheap (no torch, no Slack):

    from bot import build_service, load_settings
    answer = build_service(load_settings()).answer("Who founded the Lakeside Robotics Club?")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Answer": "bot.core.records",
    "Article": "bot.core.records",
    "AnsweringService": "bot.core.service",
    "build_service": "bot.core.service",
    "ingest_paths": "bot.core.ingest",
    "Reader": "bot.core.reader",
    "ReaderConfig": "bot.core.reader_config",
    "Settings": "bot.settings",
    "load_settings": "bot.settings",
    "Store": "bot.store.base",
    "SQLiteStore": "bot.store.sqlite",
    "QABotError": "bot.errors",
}

__all__ = [
    "__version__",
    "Answer",
    "AnsweringService",
    "Article",
    "QABotError",
    "Reader",
    "ReaderConfig",
    "SQLiteStore",
    "Settings",
    "Store",
    "build_service",
    "ingest_paths",
    "load_settings",
]

if TYPE_CHECKING:
    from bot.core.ingest import ingest_paths
    from bot.core.reader import Reader
    from bot.core.reader_config import ReaderConfig
    from bot.core.records import Answer, Article
    from bot.core.service import AnsweringService, build_service
    from bot.errors import QABotError
    from bot.settings import Settings, load_settings
    from bot.store.base import Store
    from bot.store.sqlite import SQLiteStore


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
