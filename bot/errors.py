"""The project's exceptions: one base class, so the shells can turn any of them into a clear message."""

__all__ = [
    "QABotError",
    "ConfigError",
    "StoreError",
    "DiskFullError",
    "IngestError",
    "ReaderError",
    "TemplateError",
    "FetchError",
    "DatasetError",
    "TrainingError",
]


class QABotError(Exception):
    """Base class for every error qa-bot raises on purpose; its message is meant for the user."""


# Configuration and set-up
class ConfigError(QABotError):
    """A setting is missing or invalid (environment, `.env` file or command-line option)."""


class TemplateError(QABotError):
    """A user-facing template in prompts/ is missing or asks for a value that was not given."""


# Storage and ingestion
class StoreError(QABotError):
    """The SQLite database could not be opened, read or written."""


class DiskFullError(StoreError):
    """The database could not grow: the disk (or the file's size limit) is full. Nothing after it can be stored."""


class IngestError(QABotError):
    """One input (file, URL or pasted text) could not be turned into an article; the message says why."""


class FetchError(IngestError):
    """A URL could not be fetched or held no readable text."""


# Answering
class ReaderError(QABotError):
    """The question-answering model could not be loaded or run."""


# Training and evaluation
class DatasetError(QABotError):
    """A SQuAD-format training or evaluation file is missing or malformed."""


class TrainingError(QABotError):
    """Training could not start or continue (missing base model, incompatible checkpoint, bad options)."""
