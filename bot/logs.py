"""Logging set-up, called only by the shells (CLI and server): one line per record, bounded, optionally to a file."""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

__all__ = ["configure_logging", "OneLineFormatter", "MAX_MESSAGE_CHARS"]

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
MAX_MESSAGE_CHARS = 2000  # a message from outside (a 100 MB request body) never becomes a 100 MB log line
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class OneLineFormatter(logging.Formatter):
    """Each record is one line whose message cannot forge another: control characters (newlines included) are
    escaped and a long message is cut. A traceback follows on lines of its own, each marked with `  | `.

        >>> record = logging.makeLogRecord({"msg": "body=%s", "args": ("ok\\nERROR bot FORGED",), "levelname": "INFO"})
        >>> OneLineFormatter("%(levelname)s %(message)s").format(record)
        'INFO body=ok\\\\nERROR bot FORGED'
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        if len(message) > MAX_MESSAGE_CHARS:
            message = f"{message[:MAX_MESSAGE_CHARS]}… ({len(message) - MAX_MESSAGE_CHARS} more characters cut)"
        record.message = _escape(message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return "\n".join("  | " + _escape(line) for line in super().formatException(ei).splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("  | " + _escape(line) for line in stack_info.splitlines())


def configure_logging(level: str | int = "INFO", *, log_file: str | Path | None = None) -> None:
    """Records at `level` and above to stderr, and to a rotating `log_file` (10 MB x 5 files) when given."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
            )
        )
    formatter = OneLineFormatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    # libraries that log request bodies or headers at INFO (Bolt logs a refused request's body) stay at WARNING
    for noisy in ("httpx", "urllib3", "filelock", "transformers", "slack_bolt", "slack_sdk"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
