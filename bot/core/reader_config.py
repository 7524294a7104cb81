"""How the reader reads: `ReaderConfig`, the one place where reader defaults and their checks live.

Kept apart from `bot.core.reader` so settings and the command line can use it without importing numpy or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DTYPES", "ReaderConfig", "doc_stride_fits"]

# "float32"; "bfloat16" (autocast); "int8" (dynamic quantisation of the linear layers)
DTYPES = ("float32", "bfloat16", "int8")


def doc_stride_fits(doc_stride: int, max_length: int) -> bool:
    """Whether windows of `max_length` tokens overlapping by `doc_stride` make progress through a long passage."""
    return doc_stride < max_length // 2


@dataclass(frozen=True)
class ReaderConfig:
    """The reader's model and how it reads; checked when built, so a bad value fails before any model loads.

        config = ReaderConfig("models/minilm-squad-reader", dtype="int8", threads=2)
        reader = Reader.from_config(config)
        config.max_length  # 384

    :param model: local directory (or Hugging Face id, when online) of an extractive QA checkpoint.
    :param max_length: tokens per window (question + context).
    :param doc_stride: tokens shared by consecutive windows of a long passage; under half of `max_length`.
    :param max_answer_tokens: longest answer, in tokens.
    :param dtype: one of `DTYPES`: "float32", "bfloat16" (autocast) or "int8" (dynamic quantisation).
    :param threads: torch CPU threads; None keeps torch's choice.
    :param device: where the model runs: "cpu" (the bot's case) or a torch device such as "cuda" (training runs and
        evaluations on a GPU).
    :raises ValueError: naming the bad value.
    """

    model: str
    max_length: int = 384
    doc_stride: int = 128
    max_answer_tokens: int = 30
    dtype: str = "float32"
    threads: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if isinstance(self.model, Path):
            object.__setattr__(self, "model", str(self.model))
        if not self.model:
            raise ValueError("model must name a reader model folder or id, got an empty string")
        if self.max_length <= 0 or self.max_answer_tokens <= 0 or self.doc_stride <= 0:
            raise ValueError(
                f"max_length, doc_stride and max_answer_tokens must be positive, got {self.max_length}, "
                f"{self.doc_stride} and {self.max_answer_tokens}"
            )
        if not doc_stride_fits(self.doc_stride, self.max_length):
            raise ValueError(
                f"doc_stride must be under half of max_length, got {self.doc_stride} and {self.max_length}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be {', '.join(DTYPES[:-1])} or {DTYPES[-1]}, got {self.dtype!r}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads must be positive or None, got {self.threads}")
        if not self.device:
            raise ValueError("device must name a torch device such as 'cpu' or 'cuda', got an empty string")
        if self.device != "cpu" and self.dtype == "int8":
            raise ValueError(f"dtype 'int8' (dynamic quantisation) runs on the CPU only, not on {self.device!r}")
