"""Logging set-up, called only by the shells (CLI and server)."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(level: str | int = "INFO") -> None:
    """One line per record on stderr: time, level, module, message (key=value fields)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
    for noisy in ("httpx", "urllib3", "filelock", "transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
